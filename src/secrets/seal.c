/*
 * seal.c
 *		AES-256-GCM sealing of tokens and passwords, with a key ring read from
 *		the server's key file or environment (src/secrets/secrets.c).
 *
 * EIGHTMS_SEAL_KEYS holds "id:base64(32 bytes)" entries separated by commas
 * (or spaces); EIGHTMS_SEAL_ACTIVE_KEY names the id new seals use (default:
 * the highest).  They are read when the library loads.  Loaded through
 * shared_preload_libraries, the postmaster reads them once and wipes them
 * from the file's bytes and its environment, so child processes and programs
 * the server runs do not inherit them; backends keep the parsed keys from
 * the fork.  Keys live
 * only in process memory and are wiped when the process exits.
 *
 * A sealed value is laid out as
 *
 *		version (1 byte, 0x01) | key id (2 bytes, big-endian) |
 *		nonce (12 bytes) | ciphertext (as long as the plaintext) | tag (16 bytes)
 *
 * and the associated data is the 15-byte header followed by the context
 * string's bytes, so a value sealed for one account or column cannot be
 * opened as another's, and its key id cannot be swapped.
 */
#include "postgres.h"

#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/base64.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"

#include "errcodes.h"
#include "preload.h"
#include "seal.h"
#include "seal_gcm.h"
#include "secrets.h"

#define SEAL_VERSION		0x01
#define SEAL_HEADER_LEN		(1 + 2 + SEAL_GCM_NONCE_LEN)
#define SEAL_OVERHEAD		(SEAL_HEADER_LEN + SEAL_GCM_TAG_LEN)
#define SEAL_MAX_KEYS		32

typedef struct SealKey
{
	int			id;
	uint8		key[SEAL_GCM_KEY_LEN];
	bool		ready;			/* gcm contexts prepared in this process */
	SealGcmKey	gcm;
} SealKey;

/*
 * The key ring.  Process-local by design: key material must not reach shared
 * memory, a table or a GUC.
 */
static struct
{
	int			nkeys;
	int			active;			/* index into keys[], or -1 */
	const char *problem;		/* why there is no usable ring; never key bytes */
	pid_t		wipe_pid;		/* process that registered the exit wipe */
	SealKey		keys[SEAL_MAX_KEYS];
}			ring = {0, -1, "EIGHTMS_SEAL_KEYS is not set in the server's environment", 0};

/*
 * Nonces come from the strong random source in bulk: one call per 340 seals
 * instead of one per seal, which is most of a seal's cost otherwise.  The
 * pool belongs to one process; a forked child never reuses its parent's
 * bytes because the pool is refilled when the pid changes.
 */
#define NONCE_POOL_SIZE (SEAL_GCM_NONCE_LEN * 340)

static struct
{
	pid_t		pid;
	int			used;
	uint8		bytes[NONCE_POOL_SIZE];
}			nonce_pool = {0, NONCE_POOL_SIZE};

static void
next_nonce(uint8 *nonce)
{
	if (nonce_pool.pid != MyProcPid || nonce_pool.used + SEAL_GCM_NONCE_LEN > NONCE_POOL_SIZE)
	{
		if (!pg_strong_random(nonce_pool.bytes, NONCE_POOL_SIZE))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random nonce")));
		nonce_pool.pid = MyProcPid;
		nonce_pool.used = 0;
	}
	memcpy(nonce, nonce_pool.bytes + nonce_pool.used, SEAL_GCM_NONCE_LEN);
	/* Spent bytes are cleared so no nonce can be handed out twice. */
	memset(nonce_pool.bytes + nonce_pool.used, 0, SEAL_GCM_NONCE_LEN);
	nonce_pool.used += SEAL_GCM_NONCE_LEN;
}

static void
wipe_ring(int code, Datum arg)
{
	for (int i = 0; i < ring.nkeys; i++)
	{
		if (ring.keys[i].ready)
			seal_gcm_key_free(&ring.keys[i].gcm);
		ring.keys[i].ready = false;
	}
	OPENSSL_cleanse(ring.keys, sizeof(ring.keys));
	ring.nkeys = 0;
	ring.active = -1;
}

/*
 * Parse the key ring.  Errors name the entry by position, never its bytes.
 */
static void
load_ring(const char *spec, const char *active_spec)
{
	char	   *copy = strdup(spec);
	char	   *save = NULL;
	char	   *tok;
	int			pos = 0;
	static char problem[160];

	problem[0] = '\0';
	ring.nkeys = 0;
	ring.active = -1;
	ring.problem = NULL;
	if (copy == NULL)
	{
		ring.problem = "out of memory reading EIGHTMS_SEAL_KEYS";
		return;
	}

	for (tok = strtok_r(copy, ", \t\n;", &save); tok != NULL; tok = strtok_r(NULL, ", \t\n;", &save))
	{
		char	   *colon = strchr(tok, ':');
		char	   *end;
		long		id;
		uint8		buf[SEAL_GCM_KEY_LEN + 8];
		int			len;

		pos++;
		if (colon == NULL)
		{
			snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS entry %d is not of the form id:base64", pos);
			break;
		}
		*colon = '\0';
		id = strtol(tok, &end, 10);
		if (end == tok || *end != '\0' || id < 1 || id > 65535)
		{
			snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS entry %d has an id that is not an integer from 1 to 65535", pos);
			break;
		}
		len = pg_b64_dec_len(strlen(colon + 1));
		if (len > (int) sizeof(buf)
			|| (len = pg_b64_decode(colon + 1, strlen(colon + 1), (char *) buf, sizeof(buf))) != SEAL_GCM_KEY_LEN)
		{
			OPENSSL_cleanse(buf, sizeof(buf));
			snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS entry %d (key id %ld) is not 32 bytes in base64", pos, id);
			break;
		}
		for (int i = 0; i < ring.nkeys; i++)
			if (ring.keys[i].id == id)
			{
				snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS names key id %ld twice", id);
				break;
			}
		if (problem[0] != '\0')
		{
			OPENSSL_cleanse(buf, sizeof(buf));
			break;
		}
		if (ring.nkeys == SEAL_MAX_KEYS)
		{
			OPENSSL_cleanse(buf, sizeof(buf));
			snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS holds more than %d keys", SEAL_MAX_KEYS);
			break;
		}
		ring.keys[ring.nkeys].id = (int) id;
		memcpy(ring.keys[ring.nkeys].key, buf, SEAL_GCM_KEY_LEN);
		ring.keys[ring.nkeys].ready = false;
		ring.nkeys++;
		OPENSSL_cleanse(buf, sizeof(buf));
	}
	OPENSSL_cleanse(copy, strlen(spec));
	free(copy);

	if (problem[0] == '\0' && ring.nkeys == 0)
		snprintf(problem, sizeof(problem), "EIGHTMS_SEAL_KEYS holds no keys");

	if (problem[0] == '\0')
	{
		if (active_spec != NULL && active_spec[0] != '\0')
		{
			char	   *end;
			long		id = strtol(active_spec, &end, 10);

			for (int i = 0; i < ring.nkeys; i++)
				if (ring.keys[i].id == id && *end == '\0')
					ring.active = i;
			if (ring.active < 0)
				snprintf(problem, sizeof(problem),
						 "EIGHTMS_SEAL_ACTIVE_KEY names a key id that EIGHTMS_SEAL_KEYS does not hold");
		}
		else
		{
			ring.active = 0;
			for (int i = 1; i < ring.nkeys; i++)
				if (ring.keys[i].id > ring.keys[ring.active].id)
					ring.active = i;
		}
	}

	if (problem[0] != '\0')
	{
		OPENSSL_cleanse(ring.keys, sizeof(ring.keys));
		ring.nkeys = 0;
		ring.active = -1;
		ring.problem = problem;
	}
}

/*
 * Called from _PG_init.  A missing or malformed ring never stops the server;
 * sealing then fails with an error that says what to set.
 */
void
eightms_seal_init(void)
{
	const char *problem = NULL;
	const char *spec;

	/* Only the postmaster reads secrets (require_ring says so). */
	if (!eightms_preloaded())
		return;
	spec = eightms_secret("EIGHTMS_SEAL_KEYS", &problem);
	if (spec != NULL)
		load_ring(spec, eightms_secret("EIGHTMS_SEAL_ACTIVE_KEY", NULL));
	else
		ring.problem = problem;

	/*
	 * The process that read the keys (the postmaster, or a backend loading
	 * the library itself) wipes them when it exits; forked backends register
	 * their own wipe on first use, since a fork drops the parent's exit
	 * callbacks.
	 */
	if (ring.nkeys > 0)
	{
		on_proc_exit(wipe_ring, (Datum) 0);
		ring.wipe_pid = MyProcPid;
	}

	if (process_shared_preload_libraries_in_progress && !IsUnderPostmaster)
	{
		/*
		 * Backends inherit the parsed ring by fork; eightms_secrets_forget()
		 * then removes the variables from the environment.
		 */
		if (ring.problem != NULL && spec != NULL)
			ereport(WARNING,
					(errmsg("eightms: the seal key ring is unusable: %s", ring.problem),
					 errhint("Sealing and unsealing will fail until the server is restarted with a valid EIGHTMS_SEAL_KEYS.")));
	}
}

static void
require_ring(void)
{
	eightms_require_preload("Sealing and unsealing");
	if (ring.nkeys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no seal key ring is loaded"),
				 errdetail("%s.", ring.problem),
				 errhint("Put EIGHTMS_SEAL_KEYS=\"1:<base64 of 32 random bytes>\" (e.g. from \"head -c 32 /dev/urandom | base64\") in the file eightms.secrets_file names, mode 0600 and owned by the server's user, or in the server's environment, and restart the server.")));

	/* Each process wipes its copy of the keys when it exits. */
	if (ring.wipe_pid != MyProcPid)
	{
		on_proc_exit(wipe_ring, (Datum) 0);
		ring.wipe_pid = MyProcPid;
	}
}

static SealKey *
ready_key(int idx)
{
	SealKey    *k = &ring.keys[idx];

	if (!k->ready)
	{
		if (!seal_gcm_key_init(&k->gcm, k->key))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not prepare the AES-256-GCM cipher")));
		k->ready = true;
	}
	return k;
}

static void
unseal_failed(void)
{
	/* One error for every failure: nothing here should help a forger. */
	ereport(ERROR,
			(errcode(ERRCODE_EIGHTMS_UNSEAL_FAILED),
			 errmsg("could not unseal value"),
			 errhint("The value is damaged, was sealed for another context, or its key is not in EIGHTMS_SEAL_KEYS.")));
}

static bytea *
seal_bytes_internal(const uint8 *pt, size_t ptlen, const char *ctx, size_t ctxlen, int idx)
{
	SealKey    *k;
	bytea	   *out;
	uint8	   *p;

	require_ring();
	k = ready_key(idx);
	if (ptlen > MaxAllocSize - VARHDRSZ - SEAL_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value too large to seal")));

	out = (bytea *) palloc(VARHDRSZ + SEAL_OVERHEAD + ptlen);
	SET_VARSIZE(out, VARHDRSZ + SEAL_OVERHEAD + ptlen);
	p = (uint8 *) VARDATA(out);
	p[0] = SEAL_VERSION;
	p[1] = (uint8) (k->id >> 8);
	p[2] = (uint8) (k->id & 0xff);
	next_nonce(p + 3);
	if (!seal_gcm_encrypt(&k->gcm, p + 3, p, SEAL_HEADER_LEN,
						  (const uint8 *) ctx, ctxlen, pt, ptlen,
						  p + SEAL_HEADER_LEN, p + SEAL_HEADER_LEN + ptlen))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("AES-256-GCM encryption failed")));
	return out;
}

/* Find the ring index of a sealed value's key, or -1. */
static int
sealed_key_index(const uint8 *p, size_t len)
{
	int			id;

	if (len < SEAL_OVERHEAD || p[0] != SEAL_VERSION)
		return -1;
	id = (p[1] << 8) | p[2];
	for (int i = 0; i < ring.nkeys; i++)
		if (ring.keys[i].id == id)
			return i;
	return -1;
}

/*
 * Open a sealed value into a new varlena (text and bytea share the layout),
 * decrypting straight into it.
 */
static struct varlena *
unseal_internal(bytea *sealed, const char *ctx, size_t ctxlen)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(sealed);
	size_t		len = VARSIZE_ANY_EXHDR(sealed);
	int			idx;
	size_t		n;
	struct varlena *out;

	require_ring();
	idx = sealed_key_index(p, len);
	if (idx < 0)
		unseal_failed();
	n = len - SEAL_OVERHEAD;
	out = (struct varlena *) palloc(VARHDRSZ + n);
	SET_VARSIZE(out, VARHDRSZ + n);
	if (!seal_gcm_decrypt(&ready_key(idx)->gcm, p + 3, p, SEAL_HEADER_LEN,
						  (const uint8 *) ctx, ctxlen,
						  p + SEAL_HEADER_LEN, n, p + SEAL_HEADER_LEN + n,
						  (uint8 *) VARDATA(out)))
	{
		OPENSSL_cleanse(VARDATA(out), n);
		unseal_failed();
	}
	return out;
}

PG_FUNCTION_INFO_V1(eightms_seal);
PG_FUNCTION_INFO_V1(eightms_seal_bytes);
PG_FUNCTION_INFO_V1(eightms_unseal);
PG_FUNCTION_INFO_V1(eightms_unseal_bytes);
PG_FUNCTION_INFO_V1(eightms_sealed_key_id);
PG_FUNCTION_INFO_V1(eightms_reseal);
PG_FUNCTION_INFO_V1(eightms_seal_status);

Datum
eightms_seal(PG_FUNCTION_ARGS)
{
	text	   *pt = PG_GETARG_TEXT_PP(0);
	text	   *ctx = PG_GETARG_TEXT_PP(1);

	require_ring();
	PG_RETURN_BYTEA_P(seal_bytes_internal((uint8 *) VARDATA_ANY(pt), VARSIZE_ANY_EXHDR(pt),
										  VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx), ring.active));
}

Datum
eightms_seal_bytes(PG_FUNCTION_ARGS)
{
	bytea	   *pt = PG_GETARG_BYTEA_PP(0);
	text	   *ctx = PG_GETARG_TEXT_PP(1);

	require_ring();
	PG_RETURN_BYTEA_P(seal_bytes_internal((uint8 *) VARDATA_ANY(pt), VARSIZE_ANY_EXHDR(pt),
										  VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx), ring.active));
}

Datum
eightms_unseal(PG_FUNCTION_ARGS)
{
	bytea	   *sealed = PG_GETARG_BYTEA_PP(0);
	text	   *ctx = PG_GETARG_TEXT_PP(1);
	text	   *result = (text *) unseal_internal(sealed, VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx));

	/* Sealed by seal(text): must be text in the database encoding. */
	if (!pg_verifymbstr(VARDATA(result), VARSIZE(result) - VARHDRSZ, true))
	{
		OPENSSL_cleanse(VARDATA(result), VARSIZE(result) - VARHDRSZ);
		unseal_failed();
	}
	PG_RETURN_TEXT_P(result);
}

Datum
eightms_unseal_bytes(PG_FUNCTION_ARGS)
{
	bytea	   *sealed = PG_GETARG_BYTEA_PP(0);
	text	   *ctx = PG_GETARG_TEXT_PP(1);

	PG_RETURN_BYTEA_P((bytea *) unseal_internal(sealed, VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx)));
}

Datum
eightms_sealed_key_id(PG_FUNCTION_ARGS)
{
	bytea	   *sealed = PG_GETARG_BYTEA_PP(0);
	const uint8 *p = (const uint8 *) VARDATA_ANY(sealed);

	if (VARSIZE_ANY_EXHDR(sealed) < SEAL_OVERHEAD || p[0] != SEAL_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("not a sealed value"),
				 errdetail("A sealed value starts with version byte 0x01 and is at least %d bytes long.",
						   SEAL_OVERHEAD)));
	PG_RETURN_INT32((p[1] << 8) | p[2]);
}

/* Re-seal under the active key; a value already under it is returned as is. */
Datum
eightms_reseal(PG_FUNCTION_ARGS)
{
	bytea	   *sealed = PG_GETARG_BYTEA_PP(0);
	text	   *ctx = PG_GETARG_TEXT_PP(1);
	struct varlena *pt;
	bytea	   *result;

	pt = unseal_internal(sealed, VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx));
	if (sealed_key_index((const uint8 *) VARDATA_ANY(sealed), VARSIZE_ANY_EXHDR(sealed)) == ring.active)
		result = PG_GETARG_BYTEA_P_COPY(0);
	else
		result = seal_bytes_internal((uint8 *) VARDATA(pt), VARSIZE(pt) - VARHDRSZ,
									 VARDATA_ANY(ctx), VARSIZE_ANY_EXHDR(ctx), ring.active);
	OPENSSL_cleanse(VARDATA(pt), VARSIZE(pt) - VARHDRSZ);
	pfree(pt);
	PG_RETURN_BYTEA_P(result);
}

/* Loaded key ids and which is active; never key material. */
Datum
eightms_seal_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	bool		nulls[3];

	InitMaterializedSRF(fcinfo, 0);
	if (ring.nkeys == 0)
	{
		nulls[0] = nulls[1] = true;
		nulls[2] = false;
		values[2] = CStringGetTextDatum(ring.problem);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}
	for (int i = 0; i < ring.nkeys; i++)
	{
		nulls[0] = nulls[1] = false;
		nulls[2] = true;
		values[0] = Int32GetDatum(ring.keys[i].id);
		values[1] = BoolGetDatum(i == ring.active);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
