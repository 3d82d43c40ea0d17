/*
 * phone_sql.c
 *		SQL functions over the phone-number engine (phone.c): e164,
 *		try_e164, phone_type, phone_region.
 *
 * A NULL region means the default region of the account the request acts
 * on, so these functions are not STRICT and are STABLE.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "phone.h"

#define TABLES (&phone_tables_v9_0_35)

/*
 * A text argument: PG_GETARG_TEXT_PP without its function call for what
 * the call would hand back unchanged (neither compressed nor external:
 * every row of a plain table of numbers).
 */
static inline text *
arg_text(FunctionCallInfo fcinfo, int argno)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(PG_GETARG_DATUM(argno));

	if (VARATT_IS_COMPRESSED(v) || VARATT_IS_EXTERNAL(v))
		v = pg_detoast_datum_packed(v);
	return (text *) v;
}

/* No region given: the current account's default region. */
static pg_noinline void
default_region(char *region)
{
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT a.default_region FROM eightms.account a"
					" WHERE a.account_id = eightms.current_account_id()", true, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v != NULL && strlen(v) <= 3)
		{
			strcpy(region, v);
			found = true;
		}
	}
	SPI_finish();
	/* None: only numbers with a country code can be read. */
	if (!found)
		region[0] = '\0';
}

/* resolve_region's general case: any other text, or no region at all. */
static pg_noinline bool
resolve_region_slow(FunctionCallInfo fcinfo, int argno, char *region, const PhoneRegion **def,
					bool raise)
{
	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
	{
		text	   *r = arg_text(fcinfo, argno);
		int			len = VARSIZE_ANY_EXHDR(r);

		if (len > 3)
		{
			if (!raise)
				return false;
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid region \"%s\"", text_to_cstring(r)),
					 errhint("Use an ISO 3166-1 alpha-2 code such as \"US\" or \"GB\".")));
		}
		for (int i = 0; i < len; i++)
		{
			unsigned char c = (unsigned char) VARDATA_ANY(r)[i];

			/* pg_toupper, without its call for the ASCII letters */
			region[i] = (c >= 'a' && c <= 'z') ? c - ('a' - 'A') : c < 0x80 ? c : pg_toupper(c);
		}
		region[len] = '\0';
		*def = phone_region(TABLES, region);
		return true;
	}
	default_region(region);
	*def = phone_region(TABLES, region);
	return true;
}

/*
 * The region to read the number in, as text for the messages and *def for
 * the engine: the argument, or the account's default.  Two ASCII letters,
 * as nearly every call has them (a column or a literal), are upper-cased
 * and looked up here without a loop or a call.
 */
static inline bool
resolve_region(FunctionCallInfo fcinfo, int argno, char *region, const PhoneRegion **def,
			   bool raise)
{
	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(PG_GETARG_DATUM(argno));
		const unsigned char *s = NULL;

		if (VARATT_IS_1B(v))
		{
			if (!VARATT_IS_1B_E(v) && VARSIZE_1B(v) == VARHDRSZ_SHORT + 2)
				s = (const unsigned char *) VARDATA_1B(v);
		}
		else if (VARATT_IS_4B_U(v) && VARSIZE_4B(v) == VARHDRSZ + 2)
			s = (const unsigned char *) VARDATA_4B(v);
		if (s != NULL && (unsigned) ((s[0] | 0x20) - 'a') < 26
			&& (unsigned) ((s[1] | 0x20) - 'a') < 26)
		{
			region[0] = (char) (s[0] & ~0x20);
			region[1] = (char) (s[1] & ~0x20);
			region[2] = '\0';
			*def = phone_region_az(TABLES, region[0], region[1]);
			return true;
		}
	}
	return resolve_region_slow(fcinfo, argno, region, def, raise);
}

/*
 * Parse and check.  Returns the error message for an unusable number, or
 * NULL with *out filled.
 */
static const char *
check_number(text *raw, const PhoneRegion *def, bool strict, PhoneNumber *out)
{
	PhoneError	err = phone_parse_in(TABLES, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), def, out);

	if (err != PHONE_OK)
		return phone_error_message(err);
	if (strict)
		return phone_is_valid(TABLES, out) ? NULL : "not valid for its region";
	switch (phone_possible(TABLES, out))
	{
		case PHONE_IS_POSSIBLE:
		case PHONE_IS_POSSIBLE_LOCAL_ONLY:
			return NULL;
		case PHONE_LENGTH_TOO_SHORT:
			return "too short";
		case PHONE_LENGTH_TOO_LONG:
			return "too long";
		case PHONE_INVALID_COUNTRY:
			return "invalid country code";
		default:
			return "not valid for its region";
	}
}

static Datum
e164_common(FunctionCallInfo fcinfo, bool raise)
{
	text	   *raw;
	char		region[4];
	const PhoneRegion *def;
	bool		strict = PG_NARGS() > 2 && !PG_ARGISNULL(2) ? PG_GETARG_BOOL(2) : true;
	PhoneNumber p;
	const char *why;
	text	   *result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	raw = arg_text(fcinfo, 0);
	if (!resolve_region(fcinfo, 1, region, &def, raise))
		PG_RETURN_NULL();
	if (!strict)
	{
		/* Formatted in place: "+", three digits, the national number, a zero. */
		int			len;

		result = (text *) palloc(VARHDRSZ + 4 + sizeof(p.nsn));
		len = phone_e164_possible(TABLES, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), def,
								  VARDATA(result));
		if (len >= 0)
		{
			SET_VARSIZE(result, VARHDRSZ + len);
			PG_RETURN_TEXT_P(result);
		}
		pfree(result);
		if (!raise)
			PG_RETURN_NULL();
	}
	/* A strict call, or an error to explain: the number read again. */
	why = check_number(raw, def, strict, &p);
	if (why != NULL)
	{
		if (!raise)
			PG_RETURN_NULL();

		/*
		 * The message says why, never the number: it may be a person's, and
		 * errors reach logs and clients' error trackers.  A caller that
		 * needs to say which one failed names it by its position.
		 */
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid phone number: %s", why),
				 region[0] ? errdetail("Read in region %s%s.", region,
									   strict ? ", requiring a valid number" : ", requiring a possible number")
				 : errdetail("No region was given and the request acts on no account."),
				 region[0] ? 0 : errhint("Write the number with its country code (+44 ...), or pass a region such as 'US'.")));
	}
	/* Formatted in place: "+", three digits, the national number, a zero. */
	result = (text *) palloc(VARHDRSZ + 4 + sizeof(p.nsn));
	SET_VARSIZE(result, VARHDRSZ + phone_format_e164(&p, VARDATA(result)));
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(eightms_e164);
PG_FUNCTION_INFO_V1(eightms_try_e164);
PG_FUNCTION_INFO_V1(eightms_phone_type);
PG_FUNCTION_INFO_V1(eightms_phone_region);

Datum
eightms_e164(PG_FUNCTION_ARGS)
{
	return e164_common(fcinfo, true);
}

Datum
eightms_try_e164(PG_FUNCTION_ARGS)
{
	return e164_common(fcinfo, false);
}

Datum
eightms_phone_type(PG_FUNCTION_ARGS)
{
	char		region[4];
	const PhoneRegion *def;
	PhoneNumber p;
	text	   *raw;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	raw = PG_GETARG_TEXT_PP(0);
	if (!resolve_region(fcinfo, 1, region, &def, false))
		PG_RETURN_NULL();
	if (phone_parse_in(TABLES, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), def, &p) != PHONE_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(phone_type_name(phone_type(TABLES, &p))));
}

Datum
eightms_phone_region(PG_FUNCTION_ARGS)
{
	char		region[4];
	const PhoneRegion *def;
	PhoneNumber p;
	text	   *raw;
	const char *r;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	raw = PG_GETARG_TEXT_PP(0);
	if (!resolve_region(fcinfo, 1, region, &def, false))
		PG_RETURN_NULL();
	if (phone_parse_in(TABLES, VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), def, &p) != PHONE_OK)
		PG_RETURN_NULL();
	r = phone_region_of(TABLES, &p);
	if (r == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(r));
}
