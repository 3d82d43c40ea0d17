/*
 * webhook_signature.c
 *		Verifying the signatures webhook senders put on their requests:
 *		Stripe's HMAC-SHA256 "Stripe-Signature" header and Ed25519
 *		signatures such as GoHighLevel's "X-GHL-Signature".
 *
 * Both verify the raw body bytes: a json parameter keeps them, jsonb does
 * not.
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "util/hex.h"

#define STRIPE_MAX_SIGNATURES 8

PG_FUNCTION_INFO_V1(eightms_stripe_signature_valid);

/*
 * stripe_signature_valid(payload text, header text, secret text,
 *						  tolerance int) returns boolean
 *
 * The header is "t=<unix time>,v1=<hex>[,v1=<hex>...]" (other schemes such as
 * v0 are ignored).  True when some v1 equals HMAC-SHA256(secret,
 * "<t>.<payload>"), compared in constant time, and t is within tolerance
 * seconds of now.
 */
Datum
eightms_stripe_signature_valid(PG_FUNCTION_ARGS)
{
	text	   *payload = PG_GETARG_TEXT_PP(0);
	char	   *header = text_to_cstring(PG_GETARG_TEXT_PP(1));
	text	   *secret = PG_GETARG_TEXT_PP(2);
	int32		tolerance = PG_GETARG_INT32(3);
	uint8		sigs[STRIPE_MAX_SIGNATURES][32];
	int			nsigs = 0;
	bool		have_t = false;
	int64		t = 0;
	char	   *save = NULL;
	char	   *item;
	int64		now;
	EVP_MAC    *mac;
	EVP_MAC_CTX *mctx;
	OSSL_PARAM	params[2];
	uint8		expected[32];
	size_t		outl = 0;
	char		tbuf[32];
	bool		ok = false;

	if (tolerance < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tolerance must not be negative")));
	if (VARSIZE_ANY_EXHDR(secret) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the webhook signing secret is empty"),
				 errhint("Use the endpoint's signing secret (whsec_...) from the Stripe dashboard.")));

	for (item = strtok_r(header, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
	{
		while (*item == ' ')
			item++;
		if (strncmp(item, "t=", 2) == 0 && !have_t)
		{
			char	   *end;

			t = strtoll(item + 2, &end, 10);
			have_t = (end != item + 2 && *end == '\0');
		}
		else if (strncmp(item, "v1=", 3) == 0 && nsigs < STRIPE_MAX_SIGNATURES
				 && strlen(item + 3) == 64)
		{
			bool		good = true;

			for (int i = 0; i < 32 && good; i++)
			{
				int			hi = eightms_hex_value(item[3 + 2 * i]);
				int			lo = eightms_hex_value(item[4 + 2 * i]);

				good = (hi >= 0 && lo >= 0);
				sigs[nsigs][i] = (uint8) ((hi << 4) | lo);
			}
			if (good)
				nsigs++;
		}
	}
	if (!have_t || nsigs == 0)
		PG_RETURN_BOOL(false);

	now = (int64) (GetCurrentTimestamp() / USECS_PER_SEC) +
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	if (t < now - tolerance || t > now + tolerance)
		PG_RETURN_BOOL(false);

	/* HMAC over "<t>.<payload>" without copying the payload. */
	snprintf(tbuf, sizeof(tbuf), INT64_FORMAT ".", t);
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	mctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (mctx == NULL
		|| EVP_MAC_init(mctx, (const unsigned char *) VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret), params) != 1
		|| EVP_MAC_update(mctx, (const unsigned char *) tbuf, strlen(tbuf)) != 1
		|| EVP_MAC_update(mctx, (const unsigned char *) VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload)) != 1
		|| EVP_MAC_final(mctx, expected, &outl, sizeof(expected)) != 1 || outl != 32)
	{
		EVP_MAC_CTX_free(mctx);
		EVP_MAC_free(mac);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("HMAC-SHA256 failed")));
	}
	EVP_MAC_CTX_free(mctx);
	EVP_MAC_free(mac);

	/* Compare against every v1 so the time taken says nothing. */
	for (int i = 0; i < nsigs; i++)
		ok |= (CRYPTO_memcmp(expected, sigs[i], 32) == 0);
	OPENSSL_cleanse(expected, sizeof(expected));
	PG_RETURN_BOOL(ok);
}

/* Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of 32 bytes. */
static EVP_PKEY *
ed25519_public_key(const char *spec)
{
	EVP_PKEY   *pkey = NULL;

	if (strncmp(spec, "-----BEGIN", 10) == 0)
	{
		BIO		   *bio = BIO_new_mem_buf(spec, -1);

		if (bio != NULL)
		{
			pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
			BIO_free(bio);
		}
		if (pkey != NULL && EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519)
		{
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	else
	{
		uint8		raw[48];
		int			n = -1;

		if (pg_b64_dec_len(strlen(spec)) <= (int) sizeof(raw))
			n = pg_b64_decode(spec, strlen(spec), (char *) raw, sizeof(raw));
		if (n == 32)
			pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32);
	}
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Ed25519 public key"),
				 errhint("Give the key as PEM (-----BEGIN PUBLIC KEY-----) or as base64 of its 32 bytes.")));
	return pkey;
}

PG_FUNCTION_INFO_V1(eightms_ed25519_verify);

/*
 * ed25519_verify(message bytea, signature text, public_key text) returns
 * boolean: signature is base64 of the 64-byte Ed25519 signature.
 */
Datum
eightms_ed25519_verify(PG_FUNCTION_ARGS)
{
	bytea	   *msg = PG_GETARG_BYTEA_PP(0);
	char	   *sig_b64 = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *keyspec = text_to_cstring(PG_GETARG_TEXT_PP(2));
	EVP_PKEY   *pkey = ed25519_public_key(keyspec);
	EVP_MD_CTX *md;
	uint8		sig[72];
	int			siglen = -1;
	int			rc;

	if (pg_b64_dec_len(strlen(sig_b64)) <= (int) sizeof(sig))
		siglen = pg_b64_decode(sig_b64, strlen(sig_b64), (char *) sig, sizeof(sig));
	if (siglen != 64)
	{
		EVP_PKEY_free(pkey);
		PG_RETURN_BOOL(false);
	}
	md = EVP_MD_CTX_new();
	rc = (md != NULL
		  && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) == 1
		  && EVP_DigestVerify(md, sig, 64, (const unsigned char *) VARDATA_ANY(msg),
							  VARSIZE_ANY_EXHDR(msg)) == 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	PG_RETURN_BOOL(rc);
}
