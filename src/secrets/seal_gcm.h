/*
 * seal_gcm.h
 *		AES-256-GCM with a cipher context kept ready per key.
 *
 * Plain C on OpenSSL, no PostgreSQL headers, so the known-answer tests and
 * benchmarks can drive it outside the server.
 */
#ifndef SEAL_GCM_H
#define SEAL_GCM_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_GCM_KEY_LEN	32
#define SEAL_GCM_NONCE_LEN	12
#define SEAL_GCM_TAG_LEN	16

typedef struct SealGcmKey
{
	void	   *enc;			/* EVP_CIPHER_CTX with the key schedule set */
	void	   *dec;
} SealGcmKey;

/* Prepare both contexts for a 32-byte key; 0 on failure. */
extern int	seal_gcm_key_init(SealGcmKey *k, const uint8_t *key);
extern void seal_gcm_key_free(SealGcmKey *k);

/*
 * Encrypt ptlen bytes into ct (same length) and write the tag.  The
 * associated data is aad1 followed by aad2 (either may be empty).  Returns 1
 * on success.
 */
extern int	seal_gcm_encrypt(SealGcmKey *k, const uint8_t *nonce,
							 const uint8_t *aad1, size_t aad1len,
							 const uint8_t *aad2, size_t aad2len,
							 const uint8_t *pt, size_t ptlen,
							 uint8_t *ct, uint8_t *tag);

/* Decrypt and authenticate; returns 1 only when the tag matches. */
extern int	seal_gcm_decrypt(SealGcmKey *k, const uint8_t *nonce,
							 const uint8_t *aad1, size_t aad1len,
							 const uint8_t *aad2, size_t aad2len,
							 const uint8_t *ct, size_t ctlen,
							 const uint8_t *tag, uint8_t *pt);

#endif							/* SEAL_GCM_H */
