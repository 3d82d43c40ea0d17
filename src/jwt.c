/*
 * jwt.c
 *		HS256 JSON Web Tokens, as PostgREST verifies them.
 *
 * The secret is EIGHTMS_JWT_SECRET from the key file or the server's
 * environment (src/secrets.c; the same value PostgREST is given, used as its
 * literal bytes, at least 32 of them).  Like the seal keys, the postmaster
 * reads it once and wipes it from both; it never reaches a table, a GUC or a
 * message.
 */
#include "postgres.h"

#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "eightms.h"
#include "base64url.h"

#define JWT_MIN_SECRET	32
#define JWT_MAX_SECRET	512
#define JWT_MAX_TOKEN	(64 * 1024)

static struct
{
	int			len;			/* 0: none loaded */
	const char *problem;
	pid_t		wipe_pid;
	uint8		secret[JWT_MAX_SECRET];
}			jwt = {0, "EIGHTMS_JWT_SECRET is not set in the server's environment", 0};

/* base64url('{"alg":"HS256","typ":"JWT"}') */
static const char jwt_header_b64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

static void
wipe_secret(int code, Datum arg)
{
	OPENSSL_cleanse(jwt.secret, sizeof(jwt.secret));
	jwt.len = 0;
}

void
eightms_jwt_init(void)
{
	const char *problem = NULL;
	const char *s = eightms_secret("EIGHTMS_JWT_SECRET", &problem);

	if (s == NULL)
		jwt.problem = problem;
	else
	{
		size_t		n = strlen(s);

		if (n < JWT_MIN_SECRET)
			jwt.problem = "EIGHTMS_JWT_SECRET is shorter than 32 bytes";
		else if (n > JWT_MAX_SECRET)
			jwt.problem = "EIGHTMS_JWT_SECRET is longer than 512 bytes";
		else
		{
			memcpy(jwt.secret, s, n);
			jwt.len = (int) n;
			jwt.problem = NULL;
			/* The reading process wipes it at exit, as seal.c does. */
			on_proc_exit(wipe_secret, (Datum) 0);
			jwt.wipe_pid = MyProcPid;
		}
	}
	if (process_shared_preload_libraries_in_progress && !IsUnderPostmaster)
	{
		if (s != NULL && jwt.problem != NULL)
			ereport(WARNING,
					(errmsg("eightms: %s; device tokens cannot be signed or verified", jwt.problem)));
	}
}

static void
require_secret(void)
{
	if (jwt.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no JWT secret is loaded"),
				 errdetail("%s.", jwt.problem),
				 errhint("Put EIGHTMS_JWT_SECRET (the same secret PostgREST uses, at least 32 bytes) in the file eightms.secrets_file names, or in the server's environment, and restart the server.")));
	if (jwt.wipe_pid != MyProcPid)
	{
		on_proc_exit(wipe_secret, (Datum) 0);
		jwt.wipe_pid = MyProcPid;
	}
}

static void
hmac_sha256(const char *data, size_t len, uint8 *mac)
{
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), jwt.secret, jwt.len, (const unsigned char *) data, len, mac, &maclen) == NULL
		|| maclen != 32)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("HMAC-SHA256 failed")));
}

PG_FUNCTION_INFO_V1(eightms_jwt_encode);
PG_FUNCTION_INFO_V1(eightms_jwt_decode);

/*
 * jwt_encode(payload text): the HS256 token for an already serialised JSON
 * payload.  jwt_sign() in SQL adds iat and exp and calls this.
 */
Datum
eightms_jwt_encode(PG_FUNCTION_ARGS)
{
	text	   *payload = PG_GETARG_TEXT_PP(0);
	size_t		plen = VARSIZE_ANY_EXHDR(payload);
	size_t		hlen = sizeof(jwt_header_b64) - 1;
	size_t		blen = base64url_encoded_len(plen);
	char	   *buf;
	size_t		n;
	uint8		mac[32];

	require_secret();
	if (plen > JWT_MAX_TOKEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("JWT claims are too large"),
				 errdetail("The serialised claims are %zu bytes; at most %d are allowed.", plen, JWT_MAX_TOKEN)));

	buf = palloc(hlen + 1 + blen + 1 + base64url_encoded_len(32) + 1);
	memcpy(buf, jwt_header_b64, hlen);
	buf[hlen] = '.';
	n = hlen + 1 + base64url_encode((const uint8 *) VARDATA_ANY(payload), plen, buf + hlen + 1);
	hmac_sha256(buf, n, mac);
	buf[n++] = '.';
	n += base64url_encode(mac, sizeof(mac), buf + n);
	OPENSSL_cleanse(mac, sizeof(mac));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, (int) n));
}

static void
invalid_token(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid JWT: %s", why)));
}

/*
 * jwt_decode(token text) returns jsonb: the claims of a token whose HS256
 * signature matches (compared in constant time) and whose header says
 * HS256.  exp and nbf are checked by jwt_verify() in SQL.
 */
Datum
eightms_jwt_decode(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	const char *t = VARDATA_ANY(token);
	size_t		len = VARSIZE_ANY_EXHDR(token);
	const char *dot1;
	const char *dot2;
	uint8		mac[32];
	uint8		given[33];
	int			glen;
	char	   *json;
	int			jlen;
	Jsonb	   *header;
	JsonbValue	key;
	JsonbValue *alg;

	require_secret();
	if (len > JWT_MAX_TOKEN)
		invalid_token("token too long");
	dot1 = memchr(t, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (dot1 + 1 - t)) : NULL;
	if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', len - (dot2 + 1 - t)) != NULL)
		invalid_token("not three dot-separated parts");

	hmac_sha256(t, dot2 - t, mac);
	glen = base64url_decode(dot2 + 1, len - (dot2 + 1 - t), given, sizeof(given));
	if (glen != 32 || CRYPTO_memcmp(mac, given, 32) != 0)
		invalid_token("signature does not match");

	/* The header must say HS256: a token cannot choose its own algorithm. */
	json = palloc(len);
	jlen = base64url_decode(t, dot1 - t, (uint8 *) json, len);
	if (jlen < 0)
		invalid_token("header is not base64url");
	json[jlen] = '\0';
	header = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	if (!JB_ROOT_IS_OBJECT(header))
		invalid_token("header is not a JSON object");
	key.type = jbvString;
	key.val.string.val = "alg";
	key.val.string.len = 3;
	alg = findJsonbValueFromContainer(&header->root, JB_FOBJECT, &key);
	if (alg == NULL || alg->type != jbvString || alg->val.string.len != 5
		|| memcmp(alg->val.string.val, "HS256", 5) != 0)
		invalid_token("algorithm is not HS256");

	jlen = base64url_decode(dot1 + 1, dot2 - dot1 - 1, (uint8 *) json, len);
	if (jlen < 0)
		invalid_token("payload is not base64url");
	json[jlen] = '\0';
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}
