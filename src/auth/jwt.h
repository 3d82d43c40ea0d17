/*
 * jwt.h
 *		Tokens (src/auth/jwt.c, src/auth/jwt_keys.c): the claims of a token whose
 *		signature holds (HS256, RS256, ES256), its lifetime checked apart,
 *		and the public keys of eightms.jwt_public_key_file (keys_generation
 *		changes when they do).
 */
#ifndef EIGHTMS_JWT_H
#define EIGHTMS_JWT_H

#include "utils/jsonb.h"

extern Jsonb *eightms_jwt_verify_token(const char *t, size_t len, float8 *exp, float8 *nbf,
										bool *asymmetric);
extern void eightms_jwt_check_lifetime(float8 exp, float8 nbf);
extern bool eightms_jwt_public_key_verify(bool rsa, const char *data, size_t len,
										  const uint8 *sig, int siglen);
extern uint64 eightms_jwt_keys_generation(void);
extern void eightms_relay_mac(const char *data, size_t len, uint8 *mac);

/* Reads EIGHTMS_JWT_SECRET (after eightms_secrets_init). */
extern void eightms_jwt_init(void);

/* Defines eightms.jwt_public_key_file. */
extern void eightms_jwt_keys_init(void);

#endif							/* EIGHTMS_JWT_H */
