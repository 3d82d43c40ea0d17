/*
 * secrets.h
 *		The server's secrets (src/secrets/secrets.c): a secret's value from the key
 *		file or the environment, valid only while the library loads, or NULL
 *		and why.
 */
#ifndef EIGHTMS_SECRETS_H
#define EIGHTMS_SECRETS_H

/* Defines eightms.secrets_file and reads it (preloaded only). */
extern void eightms_secrets_init(void);

extern const char *eightms_secret(const char *name, const char **problem);

/* Once every capability has its copy: wipe the file's bytes and the environment. */
extern void eightms_secrets_forget(void);

extern void eightms_check_statement_logging(void);

#endif							/* EIGHTMS_SECRETS_H */
