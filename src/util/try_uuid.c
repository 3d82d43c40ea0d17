/*
 * try_uuid.c
 *		eightms.try_uuid(text): the uuid a text spells, or NULL; and
 *		eightms.ids_are_distinct(jsonb): whether a batch of reports names
 *		each message once.
 *
 * Phones send message ids back in JSON; one malformed id must name no
 * message rather than fail the batch, and PostgreSQL 15's uuid input has no
 * soft-error form (pg_input_is_valid came in 16).  A regular expression did
 * the job, at a cost paid for every id of every report; this accepts
 * exactly what uuid_in accepts: 32 hex digits, a hyphen allowed after any group of four but the
 * last, the whole optionally in braces.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "hex.h"
#include "try_uuid.h"

PG_FUNCTION_INFO_V1(eightms_try_uuid);
PG_FUNCTION_INFO_V1(eightms_ids_are_distinct);

/* The uuid the len bytes at s spell, as uuid_in reads it; false if none. */
bool
eightms_parse_uuid(const char *s, size_t len, pg_uuid_t *out)
{
	const char *end = s + len;
	bool		braces = false;

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
			return false;
		out->data[i] = (unsigned char) (hi << 4 | lo);
		s += 2;
		if (s < end && *s == '-' && i % 2 == 1 && i < UUID_LEN - 1)
			s++;
	}
	if (braces)
	{
		if (s >= end || *s != '}')
			return false;
		s++;
	}
	return s == end;
}

Datum
eightms_try_uuid(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	if (!eightms_parse_uuid(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), result))
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(result);
}

static int
uuid_order(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * True when the argument is an array whose every element is an object with
 * an "id" that try_uuid reads (elem ->> 'id' as text), all of them
 * different: exactly
 *		(SELECT count(DISTINCT eightms.try_uuid(x ->> 'id')) = count(*)
 *		   FROM jsonb_array_elements(reports) x)
 * for an array, false for anything else.  report_messages takes its one-pass
 * path when this holds; the query above sorted the ids of every batch to
 * find out (bench/README.md has the figures).
 */
Datum
eightms_ids_are_distinct(PG_FUNCTION_ARGS)
{
	Jsonb	   *reports = PG_GETARG_JSONB_P(0);
	uint32		n;
	pg_uuid_t  *ids;

	if (!JB_ROOT_IS_ARRAY(reports) || JB_ROOT_IS_SCALAR(reports))
		PG_RETURN_BOOL(false);
	n = JB_ROOT_COUNT(reports);
	ids = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&reports->root, i);
		JsonbValue *id;
		bool		ok;

		if (elem == NULL || elem->type != jbvBinary ||
			!JsonContainerIsObject(elem->val.binary.data))
			PG_RETURN_BOOL(false);
		id = getKeyJsonValueFromContainer(elem->val.binary.data, "id", 2, NULL);
		if (id == NULL)
			PG_RETURN_BOOL(false);
		if (id->type == jbvString)
			ok = eightms_parse_uuid(id->val.string.val, id->val.string.len, &ids[i]);
		else if (id->type == jbvNumeric)
		{
			/* ->> gives a number's text, which may be 32 decimal digits */
			char	   *t = DatumGetCString(DirectFunctionCall1(numeric_out,
																NumericGetDatum(id->val.numeric)));

			ok = eightms_parse_uuid(t, strlen(t), &ids[i]);
		}
		else
			ok = false;			/* null, a boolean, an array or an object */
		if (!ok)
			PG_RETURN_BOOL(false);
	}
	qsort(ids, n, sizeof(pg_uuid_t), uuid_order);
	for (uint32 i = 1; i < n; i++)
		if (memcmp(&ids[i - 1], &ids[i], UUID_LEN) == 0)
			PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(true);
}
