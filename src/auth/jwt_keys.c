/*
 * jwt_keys.c
 *		Public keys for dashboard tokens signed by an auth provider (RS256,
 *		ES256), read from the file eightms.jwt_public_key_file names.
 *
 * Device tokens are HS256 with the secret eightms shares with PostgREST
 * (src/auth/jwt.c); an auth provider signs its tokens with a private key of its
 * own and publishes the public half, as PEM or as a JWKS document.  The file
 * may hold either: one or more PEM public keys (RSA, or EC on P-256), or a
 * JWKS ({"keys": [...]}, kty RSA or EC with crv P-256; keys whose "use" is
 * not "sig" are skipped).  A token is accepted when any key of its
 * algorithm's type verifies it, so a provider's key rotation (old and new
 * key side by side) needs no change here.
 *
 * Each backend reads the file when it first needs it and again when the
 * setting or the file (its size, modification time or inode) changes.  The
 * keys are public: nothing here is secret.
 */
#include "postgres.h"

#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "fmgr.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "jwt.h"
#include "util/base64url.h"

#define MAX_KEYS		32
#define MAX_KEY_FILE	(1024 * 1024)

static char *jwt_public_key_file = NULL;

static struct
{
	bool		loaded;			/* keys[] reflects the file as stat'ed below */
	uint64		generation;		/* changes whenever keys[] may have */
	struct stat st;
	int			n;
	EVP_PKEY   *key[MAX_KEYS];
	bool		rsa[MAX_KEYS];	/* RSA (RS256); otherwise EC P-256 (ES256) */
}			ring;

static void
forget_keys(void)
{
	for (int i = 0; i < ring.n; i++)
		EVP_PKEY_free(ring.key[i]);
	ring.n = 0;
	ring.loaded = false;
	ring.generation++;
}

static void
public_key_file_changed(const char *newval, void *extra)
{
	forget_keys();
}

void
eightms_jwt_keys_init(void)
{
	DefineCustomStringVariable("eightms.jwt_public_key_file",
							   "File with the auth provider's public keys for RS256 and ES256 tokens.",
							   "PEM public keys (RSA, or EC on P-256) or a JWKS document. Empty: only HS256 tokens, signed with the server's JWT secret, are accepted.",
							   &jwt_public_key_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, public_key_file_changed, NULL);
}

/* Keep a key of a type tokens use; false (and freed) otherwise. */
static bool
keep_key(EVP_PKEY *key)
{
	char		group[64];
	bool		rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;

	if (ring.n < MAX_KEYS
		&& (rsa
			|| (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC
				&& EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
												  group, sizeof(group), NULL)
				&& strcmp(group, SN_X9_62_prime256v1) == 0)))
	{
		ring.rsa[ring.n] = rsa;
		ring.key[ring.n++] = key;
		return true;
	}
	EVP_PKEY_free(key);
	return false;
}

/* A JWKS member's base64url value, decoded into buf; its length or -1. */
static int
jwk_bytes(JsonbContainer *jwk, const char *name, uint8 *buf, size_t cap)
{
	JsonbValue *v = getKeyJsonValueFromContainer(jwk, name, strlen(name), NULL);

	if (v == NULL || v->type != jbvString)
		return -1;
	return base64url_decode(v->val.string.val, v->val.string.len, buf, cap);
}

static bool
jwk_is(JsonbContainer *jwk, const char *name, const char *value)
{
	JsonbValue *v = getKeyJsonValueFromContainer(jwk, name, strlen(name), NULL);

	return v != NULL && v->type == jbvString && v->val.string.len == strlen(value)
		&& memcmp(v->val.string.val, value, v->val.string.len) == 0;
}

/* An EVP_PKEY of the given type from OpenSSL parameters, or NULL. */
static EVP_PKEY *
key_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY   *key = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0
		|| EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		key = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return key;
}

/* One JWKS entry as a key, or NULL when it is of no use to us. */
static EVP_PKEY *
jwk_key(JsonbContainer *jwk)
{
	uint8		a[1024];
	uint8		b[1024];
	OSSL_PARAM_BLD *bld;
	EVP_PKEY   *key = NULL;
	JsonbValue *use = getKeyJsonValueFromContainer(jwk, "use", 3, NULL);

	if (use != NULL && !jwk_is(jwk, "use", "sig"))
		return NULL;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL)
		return NULL;
	if (jwk_is(jwk, "kty", "RSA"))
	{
		int			nlen = jwk_bytes(jwk, "n", a, sizeof(a));
		int			elen = jwk_bytes(jwk, "e", b, sizeof(b));
		BIGNUM	   *n = nlen > 0 ? BN_bin2bn(a, nlen, NULL) : NULL;
		BIGNUM	   *e = elen > 0 ? BN_bin2bn(b, elen, NULL) : NULL;

		if (n != NULL && e != NULL
			&& OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
			&& OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			key = key_from_params("RSA", bld);
		BN_free(n);
		BN_free(e);
	}
	else if (jwk_is(jwk, "kty", "EC") && jwk_is(jwk, "crv", "P-256"))
	{
		/* The uncompressed point: 0x04, x, y. */
		a[0] = 0x04;
		if (jwk_bytes(jwk, "x", a + 1, 32) == 32 && jwk_bytes(jwk, "y", a + 33, 32) == 32
			&& OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1, 0)
			&& OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a, 65))
			key = key_from_params("EC", bld);
	}
	OSSL_PARAM_BLD_free(bld);
	return key;
}

static void
load_jwks(const char *text)
{
	Jsonb	   *doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	JsonbValue *keys = JB_ROOT_IS_OBJECT(doc)
		? getKeyJsonValueFromContainer(&doc->root, "keys", 4, NULL) : NULL;

	if (keys == NULL || keys->type != jbvBinary || !JsonContainerIsArray(keys->val.binary.data))
		return;
	for (int i = 0; i < JsonContainerSize(keys->val.binary.data); i++)
	{
		JsonbValue *jwk = getIthJsonbValueFromContainer(keys->val.binary.data, i);
		EVP_PKEY   *key;

		if (jwk == NULL || jwk->type != jbvBinary || !JsonContainerIsObject(jwk->val.binary.data))
			continue;
		key = jwk_key(jwk->val.binary.data);
		if (key != NULL)
			keep_key(key);
	}
}

static void
load_pem(const char *text, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(text, (int) len);
	EVP_PKEY   *key;

	if (bio == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	while ((key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL)
		keep_key(key);
	BIO_free(bio);
}

static void
no_key(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid JWT: no public key to verify it with"),
			 errdetail("%s", detail),
			 errhint("Set eightms.jwt_public_key_file to a file with the auth provider's public keys (PEM or JWKS), readable by the server.")));
}

/* Bring the keys up to date with the setting and the file. */
static void
load_keys(void)
{
	const char *path = jwt_public_key_file;
	struct stat st;
	FILE	   *f;
	char	   *text;
	size_t		len;

	if (path == NULL || path[0] == '\0')
		no_key("eightms.jwt_public_key_file is not set.");
	if (stat(path, &st) != 0)
	{
		forget_keys();
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read eightms.jwt_public_key_file \"%s\": %m", path)));
	}
	if (ring.loaded && st.st_size == ring.st.st_size && st.st_ino == ring.st.st_ino
		&& st.st_mtim.tv_sec == ring.st.st_mtim.tv_sec && st.st_mtim.tv_nsec == ring.st.st_mtim.tv_nsec)
		return;
	forget_keys();
	if (st.st_size > MAX_KEY_FILE)
		no_key("eightms.jwt_public_key_file is larger than 1 MB.");
	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read eightms.jwt_public_key_file \"%s\": %m", path)));
	text = palloc(st.st_size + 1);
	len = fread(text, 1, st.st_size, f);
	FreeFile(f);
	text[len] = '\0';

	if (strspn(text, " \t\r\n") < len && text[strspn(text, " \t\r\n")] == '{')
		load_jwks(text);
	else
		load_pem(text, len);
	ERR_clear_error();
	ring.st = st;
	ring.loaded = true;
}

/*
 * Which keys a token verified earlier was verified with: a token kept
 * across requests is verified again once this changes (the file or the
 * setting changed).
 */
uint64
eightms_jwt_keys_generation(void)
{
	load_keys();
	return ring.generation;
}

/*
 * Whether signature sig over data verifies under some configured key: RSA
 * PKCS #1 v1.5 with SHA-256 (RS256), or ECDSA P-256 with SHA-256 (ES256,
 * whose signature is r and s, 32 bytes each).
 */
bool
eightms_jwt_public_key_verify(bool rsa, const char *data, size_t len,
							  const uint8 *sig, int siglen)
{
	uint8	   *der = NULL;
	int			derlen = 0;
	bool		ok = false;
	bool		any = false;

	load_keys();
	if (!rsa)
	{
		ECDSA_SIG  *es;
		BIGNUM	   *r;
		BIGNUM	   *s;

		if (siglen != 64)
			return false;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, 32, NULL);
		s = BN_bin2bn(sig + 32, 32, NULL);
		if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s))
		{
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		}
		derlen = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		if (derlen <= 0)
			return false;
	}
	for (int i = 0; i < ring.n && !ok; i++)
	{
		EVP_MD_CTX *ctx;

		if (ring.rsa[i] != rsa)
			continue;
		any = true;
		ctx = EVP_MD_CTX_new();
		if (ctx != NULL
			&& EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, ring.key[i]) == 1
			&& EVP_DigestVerify(ctx, rsa ? sig : der, rsa ? siglen : derlen,
								(const unsigned char *) data, len) == 1)
			ok = true;
		EVP_MD_CTX_free(ctx);
	}
	OPENSSL_free(der);
	ERR_clear_error();
	if (!any)
		no_key(rsa ? "eightms.jwt_public_key_file holds no RSA key for RS256 tokens."
			   : "eightms.jwt_public_key_file holds no P-256 key for ES256 tokens.");
	return ok;
}
