/*
 * preload.h
 *		Whether the library was loaded through shared_preload_libraries,
 *		which the bridge (a worker and shared memory) and the secrets (read
 *		by the postmaster only) need.
 */
#ifndef EIGHTMS_PRELOAD_H
#define EIGHTMS_PRELOAD_H

/* Called first by _PG_init. */
extern void eightms_preload_init(void);

extern bool eightms_preloaded(void);

/*
 * Raise 55000 unless preloaded: what (a function, "sealing", ...) cannot
 * work otherwise.
 */
extern void eightms_require_preload(const char *what);

#endif							/* EIGHTMS_PRELOAD_H */
