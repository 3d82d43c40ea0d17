/*
 * preload.c
 *		Whether the library was loaded through shared_preload_libraries.
 *
 * Loaded by a backend on first use instead, the library has no bridge
 * worker, no shared memory and no secrets (only the postmaster reads them):
 * the functions that need those refuse with one clear error rather than
 * answer empty or unsigned.  Backends inherit the flag from the postmaster
 * by fork, and processes that start by exec load the preloaded libraries
 * again in the same state.
 */
#include "postgres.h"

#include "miscadmin.h"

#include "preload.h"

static bool preloaded = false;

void
eightms_preload_init(void)
{
	preloaded = process_shared_preload_libraries_in_progress;
}

bool
eightms_preloaded(void)
{
	return preloaded;
}

void
eightms_require_preload(const char *what)
{
	if (!preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eightms is not loaded through shared_preload_libraries"),
				 errdetail("%s needs the library preloaded: its background worker, shared memory and secrets exist only then.", what),
				 errhint("Add eightms to shared_preload_libraries and restart the server.")));
}
