/*
 * claims.h
 *		The request's verified claims (src/auth/claims.c): what claims ->> key
 *		gives, and binding what the pre-request hook verified to the
 *		transaction.
 */
#ifndef EIGHTMS_CLAIMS_H
#define EIGHTMS_CLAIMS_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

extern char *eightms_claim_text(Jsonb *claims, const char *key);
extern void eightms_bind_claims(Jsonb *claims, const char *claims_text, const pg_uuid_t *account);
extern bool eightms_bound_account(pg_uuid_t *account);

/* Defines eightms.verified_claims. */
extern void eightms_claims_init(void);

#endif							/* EIGHTMS_CLAIMS_H */
