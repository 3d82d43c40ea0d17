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

/* GUCs owned by the module entry (src/eightms.c). */
extern int	eightms_invitation_ttl;
extern bool eightms_require_verified_email;

#endif							/* EIGHTMS_H */
