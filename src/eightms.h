/*
 * eightms.h
 *		Declarations shared by the eightms module's C files.
 *
 * Each capability lives in its own file under src/ and exposes one
 * initialisation function that _PG_init() calls; the GUCs it owns are
 * defined there, under the reserved "eightms." prefix.
 */
#ifndef EIGHTMS_H
#define EIGHTMS_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

/* GUCs owned by the module entry (src/eightms.c). */
extern int	eightms_invitation_ttl;
extern bool eightms_require_verified_email;

/*
 * SQLSTATEs of eightms's own.  Class "E8" is implementation-defined space
 * (the standard leaves classes starting with a letter past H to products).
 */
/* E8S01: a sealed value could not be opened (tampered, wrong context, unknown key) */
#define ERRCODE_EIGHTMS_UNSEAL_FAILED	MAKE_SQLSTATE('E','8','S','0','1')

/* The value of a hexadecimal digit, or -1 for any other character. */
static inline int
eightms_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The request's verified claims (src/claims.c): what claims ->> key gives,
 * and binding what the pre-request hook verified to the transaction.
 */
extern char *eightms_claim_text(Jsonb *claims, const char *key);
extern void eightms_bind_claims(Jsonb *claims, const char *claims_text, const pg_uuid_t *account);

/*
 * Tokens (src/jwt.c, src/jwt_keys.c): the claims of a token whose signature
 * holds (HS256, RS256, ES256), its lifetime checked apart, and the public
 * keys of eightms.jwt_public_key_file (keys_generation changes when they do).
 */
extern Jsonb *eightms_jwt_verify_token(const char *t, size_t len, float8 *exp, float8 *nbf,
										bool *asymmetric);
extern void eightms_jwt_check_lifetime(float8 exp, float8 nbf);
extern bool eightms_jwt_public_key_verify(bool rsa, const char *data, size_t len,
										  const uint8 *sig, int siglen);
extern uint64 eightms_jwt_keys_generation(void);

/* The uuid the len bytes at s spell, as uuid_in reads it (src/try_uuid.c). */
extern bool eightms_parse_uuid(const char *s, size_t len, pg_uuid_t *out);

/*
 * The server's secrets (src/secrets.c): a secret's value from the key file
 * or the environment, valid only while the library loads, or NULL and why.
 */
extern const char *eightms_secret(const char *name, const char **problem);
extern void eightms_secrets_forget(void);
extern void eightms_check_statement_logging(void);

/* Start-up work of each capability, called from _PG_init. */
extern void eightms_claims_init(void);
extern void eightms_secrets_init(void);
extern void eightms_seal_init(void);
extern void eightms_jwt_init(void);
extern void eightms_jwt_keys_init(void);
extern void eightms_bridge_init(void);

#endif							/* EIGHTMS_H */
