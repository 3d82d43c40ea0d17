/*
 * tz_name.c
 *		eightms.is_timezone_name(text): whether a text is the name of a
 *		time zone of the server's database, as pg_timezone_names lists them.
 *
 * The check runs in the CHECK constraints of accounts and contacts, so once
 * per row an import or an update writes.  Reading pg_timezone_names loads
 * every zone file of the database on each call; this reads them once per
 * backend into a hash of their names and answers from it.  The zones are
 * the ones pg_timezone_names shows: every zone the server can load, less
 * those it cannot place at the current time.
 * Names compare exactly: "europe/paris" is not a name, though the server
 * would accept it in AT TIME ZONE.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Long enough for every name in the IANA database (the longest has 32). */
#define TZ_NAME_MAX 64

typedef struct TzNameEntry
{
	char		name[TZ_NAME_MAX];
} TzNameEntry;

static HTAB *tz_names = NULL;

static void
load_tz_names(void)
{
	HASHCTL		ctl;
	HTAB	   *names;
	pg_tzenum  *tzenum;
	pg_tz	   *tz;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	ctl.keysize = TZ_NAME_MAX;
	ctl.entrysize = sizeof(TzNameEntry);
	ctl.hcxt = TopMemoryContext;
	names = hash_create("eightms time zone names", 1024, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	tzenum = pg_tzenumerate_start();
	while ((tz = pg_tzenumerate_next(tzenum)) != NULL)
	{
		struct pg_tm tm;
		fsec_t		fsec;
		int			tzoff;
		const char *tzn = NULL;
		const char *name = pg_get_timezone_name(tz);

		/* As pg_timezone_names: a zone it cannot place now is left out. */
		if (timestamp2tm(now, &tzoff, &tm, &fsec, &tzn, tz) != 0)
			continue;
		if (strlen(name) >= TZ_NAME_MAX)
			continue;
		(void) hash_search(names, name, HASH_ENTER, NULL);
	}
	pg_tzenumerate_end(tzenum);

	/* Published only once complete: an error above leaves it to be built again. */
	tz_names = names;
}

/* Letters first, then letters, digits, _ + - in parts separated by one '/'. */
static bool
tz_name_shape_ok(const char *s, int len)
{
	bool		part_start = true;

	if (len == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '/')
		{
			if (part_start)
				return false;
			part_start = true;
			continue;
		}
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-'))
			return false;
		part_start = false;
	}
	return !part_start;
}

PG_FUNCTION_INFO_V1(eightms_is_timezone_name);

Datum
eightms_is_timezone_name(PG_FUNCTION_ARGS)
{
	text	   *arg = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(arg);
	char		name[TZ_NAME_MAX];

	if (len >= TZ_NAME_MAX || !tz_name_shape_ok(VARDATA_ANY(arg), len))
		PG_RETURN_BOOL(false);
	memset(name, 0, sizeof(name));
	memcpy(name, VARDATA_ANY(arg), len);

	if (tz_names == NULL)
		load_tz_names();
	PG_RETURN_BOOL(hash_search(tz_names, name, HASH_FIND, NULL) != NULL);
}
