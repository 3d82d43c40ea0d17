/*
 * seal_gcm.c
 *		AES-256-GCM with a cipher context kept ready per key.
 *
 * Setting a key expands the AES key schedule and the GHASH tables; doing
 * that once per key rather than once per value is most of what makes a seal
 * cheap.  Each call then only sets the nonce on the prepared context.
 */
#include "seal_gcm.h"

#include <limits.h>

#include <openssl/evp.h>

int
seal_gcm_key_init(SealGcmKey *k, const uint8_t *key)
{
	EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new();
	EVP_CIPHER_CTX *dec = EVP_CIPHER_CTX_new();

	k->enc = k->dec = NULL;
	if (enc == NULL || dec == NULL
		|| EVP_EncryptInit_ex(enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
		|| EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_SET_IVLEN, SEAL_GCM_NONCE_LEN, NULL) != 1
		|| EVP_EncryptInit_ex(enc, NULL, NULL, key, NULL) != 1
		|| EVP_DecryptInit_ex(dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
		|| EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_IVLEN, SEAL_GCM_NONCE_LEN, NULL) != 1
		|| EVP_DecryptInit_ex(dec, NULL, NULL, key, NULL) != 1)
	{
		EVP_CIPHER_CTX_free(enc);
		EVP_CIPHER_CTX_free(dec);
		return 0;
	}
	k->enc = enc;
	k->dec = dec;
	return 1;
}

void
seal_gcm_key_free(SealGcmKey *k)
{
	/* EVP_CIPHER_CTX_free cleanses the key schedule it held. */
	EVP_CIPHER_CTX_free(k->enc);
	EVP_CIPHER_CTX_free(k->dec);
	k->enc = k->dec = NULL;
}

static int
add_aad(EVP_CIPHER_CTX *ctx, int encrypting, const uint8_t *aad, size_t len)
{
	int			outl;

	if (len == 0)
		return 1;
	if (len > INT_MAX)
		return 0;
	if (encrypting)
		return EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) len) == 1;
	return EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int) len) == 1;
}

int
seal_gcm_encrypt(SealGcmKey *k, const uint8_t *nonce,
				 const uint8_t *aad1, size_t aad1len,
				 const uint8_t *aad2, size_t aad2len,
				 const uint8_t *pt, size_t ptlen,
				 uint8_t *ct, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = k->enc;
	int			outl = 0;
	int			finl = 0;

	if (ctx == NULL || ptlen > INT_MAX)
		return 0;
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
		|| !add_aad(ctx, 1, aad1, aad1len)
		|| !add_aad(ctx, 1, aad2, aad2len))
		return 0;
	if (ptlen > 0 && EVP_EncryptUpdate(ctx, ct, &outl, pt, (int) ptlen) != 1)
		return 0;
	if (EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1)
		return 0;
	return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_GCM_TAG_LEN, tag) == 1;
}

int
seal_gcm_decrypt(SealGcmKey *k, const uint8_t *nonce,
				 const uint8_t *aad1, size_t aad1len,
				 const uint8_t *aad2, size_t aad2len,
				 const uint8_t *ct, size_t ctlen,
				 const uint8_t *tag, uint8_t *pt)
{
	EVP_CIPHER_CTX *ctx = k->dec;
	int			outl = 0;
	int			finl = 0;

	if (ctx == NULL || ctlen > INT_MAX)
		return 0;
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
		|| !add_aad(ctx, 0, aad1, aad1len)
		|| !add_aad(ctx, 0, aad2, aad2len))
		return 0;
	if (ctlen > 0 && EVP_DecryptUpdate(ctx, pt, &outl, ct, (int) ctlen) != 1)
		return 0;
	/* The tag is an input here; OpenSSL compares it in constant time. */
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_GCM_TAG_LEN, (void *) tag) != 1)
		return 0;
	return EVP_DecryptFinal_ex(ctx, pt + outl, &finl) == 1;
}
