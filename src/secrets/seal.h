/*
 * seal.h
 *		Sealing (src/secrets/seal.c), as the module entry sees it.
 */
#ifndef EIGHTMS_SEAL_H
#define EIGHTMS_SEAL_H

/* Reads the key ring (after eightms_secrets_init). */
extern void eightms_seal_init(void);

#endif							/* EIGHTMS_SEAL_H */
