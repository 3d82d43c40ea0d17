/*
 * jwt.c
 *		HS256 JSON Web Tokens, as PostgREST verifies them.
 *
 * The secret is EIGHTMS_JWT_SECRET from the key file or the server's
 * environment (src/secrets/secrets.c; the same value PostgREST is given, used as its
 * literal bytes, at least 32 of them).  Like the seal keys, the postmaster
 * reads it once and wipes it from both; it never reaches a table, a GUC or a
 * message.
 */
#include "postgres.h"

#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/xact.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "util/base64url.h"
#include "jwt.h"
#include "preload.h"
#include "secrets/secrets.h"

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
	const char *s;

	/* Only the postmaster reads secrets (require_secret says so). */
	if (!eightms_preloaded())
		return;
	s = eightms_secret("EIGHTMS_JWT_SECRET", &problem);
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
	eightms_require_preload("Signing and verifying tokens with EIGHTMS_JWT_SECRET");
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

/*
 * The MAC of a claims relay (src/auth/claims.c): HMAC-SHA256 with the JWT
 * secret over a label and the relay's text.  The label holds a newline,
 * which no token's signing input (base64url, a dot) can, so a relay's MAC
 * is never a token's signature and no token's signature a relay's MAC.
 */
void
eightms_relay_mac(const char *data, size_t len, uint8 *mac)
{
	static const char label[] = "eightms claims relay v1\n";
	char	   *buf;

	require_secret();
	buf = palloc(sizeof(label) - 1 + len);
	memcpy(buf, label, sizeof(label) - 1);
	memcpy(buf + sizeof(label) - 1, data, len);
	hmac_sha256(buf, sizeof(label) - 1 + len, mac);
	pfree(buf);
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

/*
 * Verifying a request's bearer token (the pre-request hook's entry point).
 *
 * jwt_decode() above accepts only HS256, the device tokens eightms mints.
 * A request may also carry a dashboard token from an auth provider, signed
 * with an asymmetric key: RS256 or ES256, checked against the public keys
 * of eightms.jwt_public_key_file (src/auth/jwt_keys.c).  The token's header
 * names its algorithm, and each algorithm has its own key: an HS256 token
 * is checked only with the shared secret, never with a public key's bytes,
 * so a token cannot choose how it is verified.
 */
static void
refuse_token(const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid JWT: %s", why),
			 hint ? errhint("%s", hint) : 0));
}

/* The value of a top-level string member of a JSON object, or NULL. */
static JsonbValue *
object_string(Jsonb *jb, const char *key)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
	return (v != NULL && v->type == jbvString) ? v : NULL;
}

/* base64url text decoded and read as JSON, or an error naming the part. */
static Jsonb *
decode_json_part(const char *s, size_t n, const char *part)
{
	char	   *json = palloc(n + 1);
	int			len = base64url_decode(s, n, (uint8 *) json, n);

	if (len < 0)
		refuse_token(psprintf("%s is not base64url", part), NULL);
	json[len] = '\0';
	/* jsonb_in's own errors would quote the token's text. */
	if (pg_parse_json(makeJsonLexContextCstringLen(json, len, PG_UTF8, true),
					  &nullSemAction) != JSON_SUCCESS)
		refuse_token(psprintf("%s is not JSON", part), NULL);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

/*
 * A numeric time claim (exp, nbf) as seconds since the epoch; absent gives
 * dflt, anything but a number is refused as jwt_verify() refuses it.
 */
static float8
time_claim(Jsonb *claims, const char *key, float8 dflt, const char *why)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&claims->root, key, strlen(key), NULL);

	if (v == NULL)
		return dflt;
	if (v->type != jbvNumeric)
		refuse_token(why, NULL);
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
}

/*
 * The claims of a token whose signature holds: HS256 with the secret, or
 * RS256 / ES256 with a configured public key.  Sets *exp and *nbf (+/-
 * infinity when absent) for eightms_jwt_check_lifetime(), which the caller
 * runs on every use: a verified token may be kept, its lifetime may not.
 * *asymmetric says whether a public key verified it.
 * Every failure is 28000 and never quotes the token.
 */
Jsonb *
eightms_jwt_verify_token(const char *t, size_t len, float8 *exp, float8 *nbf,
						 bool *asymmetric)
{
	const char *dot1;
	const char *dot2;
	Jsonb	   *header;
	JsonbValue *alg;
	Jsonb	   *claims;

	if (len > JWT_MAX_TOKEN)
		refuse_token("token too long", NULL);
	dot1 = memchr(t, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (dot1 + 1 - t)) : NULL;
	if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', len - (dot2 + 1 - t)) != NULL)
		refuse_token("not three dot-separated parts", NULL);

	header = decode_json_part(t, dot1 - t, "header");
	alg = object_string(header, "alg");
	if (alg == NULL)
		refuse_token("the header names no algorithm", NULL);
	if (alg->val.string.len == 5 && memcmp(alg->val.string.val, "HS256", 5) == 0)
	{
		uint8		mac[32];
		uint8		given[33];
		int			glen;

		require_secret();
		hmac_sha256(t, dot2 - t, mac);
		glen = base64url_decode(dot2 + 1, len - (dot2 + 1 - t), given, sizeof(given));
		*asymmetric = false;
		if (glen != 32 || CRYPTO_memcmp(mac, given, 32) != 0)
			refuse_token("signature does not match",
						  "Device tokens are signed with the server's JWT secret; pair the phone again for a new one.");
	}
	else if (alg->val.string.len == 5
			 && (memcmp(alg->val.string.val, "RS256", 5) == 0
				 || memcmp(alg->val.string.val, "ES256", 5) == 0))
	{
		size_t		slen = len - (dot2 + 1 - t);
		uint8	   *sig = palloc(slen + 1);
		int			n = base64url_decode(dot2 + 1, slen, sig, slen + 1);

		if (n < 0)
			refuse_token("signature is not base64url", NULL);
		*asymmetric = true;
		if (!eightms_jwt_public_key_verify(alg->val.string.val[0] == 'R', t, dot2 - t, sig, n))
			refuse_token("signature does not match",
						  "Dashboard tokens must be signed with a key of eightms.jwt_public_key_file.");
	}
	else
		refuse_token("algorithm is not HS256, RS256 or ES256", NULL);

	claims = decode_json_part(dot1 + 1, dot2 - dot1 - 1, "payload");
	if (!JB_ROOT_IS_OBJECT(claims))
		refuse_token("claims are not a JSON object", NULL);
	*exp = time_claim(claims, "exp", get_float8_infinity(), "expired");
	*nbf = time_claim(claims, "nbf", -get_float8_infinity(), "not valid yet");
	return claims;
}

/* exp and nbf against the transaction's start, as jwt_verify() checks them. */
void
eightms_jwt_check_lifetime(float8 exp, float8 nbf)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	float8		now_s = (float8) (now - SetEpochTimestamp()) / USECS_PER_SEC;

	if (exp <= now_s)
		refuse_token("expired", "Get a new token.");
	if (nbf > now_s)
		refuse_token("not valid yet", NULL);
}
