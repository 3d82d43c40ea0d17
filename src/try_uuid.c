/*
 * try_uuid.c
 *		eightms.try_uuid(text): the uuid a text spells, or NULL.
 *
 * Phones send message ids back in JSON; one malformed id must name no
 * message rather than fail the batch, and PostgreSQL 15's uuid input has no
 * soft-error form (pg_input_is_valid came in 16).  A regular expression did
 * the job at several microseconds a call; this accepts exactly what uuid_in
 * accepts: 32 hex digits, a hyphen allowed after any group of four but the
 * last, the whole optionally in braces.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "eightms.h"

PG_FUNCTION_INFO_V1(eightms_try_uuid);

Datum
eightms_try_uuid(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(in);
	const char *end = s + VARSIZE_ANY_EXHDR(in);
	bool		braces = false;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	if (s < end && *s == '{')
	{
		braces = true;
		s++;
	}
	for (int i = 0; i < UUID_LEN; i++)
	{
		int			hi,
					lo;

		if (end - s < 2 || (hi = eightms_hex_value(s[0])) < 0 || (lo = eightms_hex_value(s[1])) < 0)
			PG_RETURN_NULL();
		result->data[i] = (unsigned char) (hi << 4 | lo);
		s += 2;
		if (s < end && *s == '-' && i % 2 == 1 && i < UUID_LEN - 1)
			s++;
	}
	if (braces)
	{
		if (s >= end || *s != '}')
			PG_RETURN_NULL();
		s++;
	}
	if (s != end)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(result);
}
