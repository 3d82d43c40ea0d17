/*
 * json_time.c
 *		eightms.json_time(jsonb): the time a phone wrote in its JSON (a
 *		report's "at", an inbound message's "received_at"), or NULL.
 *
 * A phone's batch must not fail for one unreadable time: the phone would
 * send the same batch again and again, and the inbound messages in it would
 * never be stored.  So this never raises for bad input.  It reads
 *
 * - a JSON number: milliseconds since 1970-01-01 UTC, what Android keeps
 *   (SmsMessage.getTimestampMillis);
 * - a JSON string in ISO 8601's extended form (2026-11-29T10:11:12.345Z,
 *   an offset of +hh, +hhmm or +hh:mm, or none for the session's time
 *   zone), read here without a subtransaction;
 * - any other string through timestamptz's own input, in a subtransaction
 *   that turns its data errors into NULL.  PostgreSQL 15 has no soft-error
 *   input functions (they came in 16).
 *
 * Anything else, and infinite or out-of-range times, give NULL.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(eightms_json_time);

/* Longer than any time timestamptz_in reads (MAXDATELEN). */
#define MAX_TIME_TEXT 128

/* n decimal digits at s as a number, or -1 if any is not a digit. */
static int
digits(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * ISO 8601's extended form, as far as timestamptz_in reads it the same way:
 * the fields in range (a 24:00 hour, a leap second, more than six digits of
 * fraction or an offset beyond 15:59 are left to timestamptz_in).  Returns
 * false when s is not in this form; true with *out set, or *out left as
 * DT_NOEND when the time is out of range.
 */
static bool
read_iso8601(const char *s, int len, TimestampTz *out)
{
	const char *p = s,
			   *end = s + len;
	struct pg_tm tm = {0};
	fsec_t		fsec = 0;
	int			tz;
	bool		zone = false;

	if (len < 10 || p[4] != '-' || p[7] != '-')
		return false;
	tm.tm_year = digits(p, 4);
	tm.tm_mon = digits(p + 5, 2);
	tm.tm_mday = digits(p + 8, 2);
	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > MONTHS_PER_YEAR || tm.tm_mday < 1
		|| tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1])
		return false;
	p += 10;
	if (p < end)
	{
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		p++;
		if (end - p < 5 || p[2] != ':')
			return false;
		tm.tm_hour = digits(p, 2);
		tm.tm_min = digits(p + 3, 2);
		if (tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59)
			return false;
		p += 5;
		if (p < end && *p == ':')
		{
			if (end - p < 3 || (tm.tm_sec = digits(p + 1, 2)) < 0 || tm.tm_sec > 59)
				return false;
			p += 3;
			if (p < end && *p == '.')
			{
				int			n = 0;

				p++;
				while (p + n < end && p[n] >= '0' && p[n] <= '9')
					n++;
				if (n < 1 || n > 6)
					return false;
				fsec = digits(p, n);
				for (int i = n; i < 6; i++)
					fsec *= 10;
				p += n;
			}
		}
		if (p < end && (*p == 'Z' || *p == 'z'))
		{
			tz = 0;
			zone = true;
			p++;
		}
		else if (p < end && (*p == '+' || *p == '-'))
		{
			int			sign = *p == '+' ? -1 : 1;	/* tz counts seconds west */
			int			hh,
						mm = 0;

			p++;
			if (end - p < 2 || (hh = digits(p, 2)) < 0 || hh > 15)
				return false;
			p += 2;
			if (p < end && *p == ':')
				p++;
			if (p < end)
			{
				if (end - p < 2 || (mm = digits(p, 2)) < 0 || mm > 59)
					return false;
				p += 2;
			}
			tz = sign * (hh * SECS_PER_HOUR + mm * SECS_PER_MINUTE);
			zone = true;
		}
		if (p != end)
			return false;
	}
	/* No offset: local time in the session's time zone, as timestamptz_in. */
	if (!zone)
		tz = DetermineTimeZoneOffset(&tm, session_timezone);
	if (tm2timestamp(&tm, fsec, &tz, out) != 0)
		*out = DT_NOEND;
	return true;
}

/*
 * timestamptz_in on any other text, in a subtransaction: a data error (bad
 * syntax, a field out of range, an unknown time zone) gives false; any
 * other error (a cancel, out of memory) goes on up.
 */
static bool
read_other(const char *s, int len, TimestampTz *out)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *str = pnstrdup(s, len);
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(str),
													   ObjectIdGetDatum(InvalidOid),
													   Int32GetDatum(-1)));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pfree(str);
	return ok;
}

/* Milliseconds since the Unix epoch; false when not finite or out of range. */
static bool
read_epoch_ms(Numeric n, TimestampTz *out)
{
	double		ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
														NumericGetDatum(n)));
	double		us;

	if (!isfinite(ms))
		return false;
	us = rint(ms * 1000.0) - (double) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	if (!(us >= (double) MIN_TIMESTAMP && us < (double) END_TIMESTAMP))
		return false;
	*out = (TimestampTz) us;
	return true;
}

Datum
eightms_json_time(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	JsonbValue	v;
	TimestampTz t;
	bool		ok;

	if (!JsonbExtractScalar(&jb->root, &v))
		PG_RETURN_NULL();
	if (v.type == jbvNumeric)
		ok = read_epoch_ms(v.val.numeric, &t);
	else if (v.type == jbvString && v.val.string.len <= MAX_TIME_TEXT)
		ok = read_iso8601(v.val.string.val, v.val.string.len, &t)
			|| read_other(v.val.string.val, v.val.string.len, &t);
	else
		ok = false;
	if (!ok || TIMESTAMP_NOT_FINITE(t))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(t);
}
