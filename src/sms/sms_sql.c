/*
 * sms_sql.c
 *		SQL functions over src/sms/sms_encoding.c: sms_info and sms_fold.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "sms_encoding.h"

PG_FUNCTION_INFO_V1(eightms_sms_info);
PG_FUNCTION_INFO_V1(eightms_sms_fold);

static void
invalid_body(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("the message body is not valid UTF-8"),
			 errhint("eightms needs a UTF-8 database to encode SMS.")));
}

/* sms_info(body) -> (encoding, segments, characters, units, fold_changes_encoding) */
Datum
eightms_sms_info(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(body);
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	SmsInfo		info;
	bool		fold_changes = false;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	/* The result type, worked out once per call site: bulk sends call this per row. */
	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "sms_info must return a record");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = desc;
	}
	if (!sms_analyze(VARDATA_ANY(body), len, &info))
		invalid_body();
	/*
	 * Folding only puts GSM-7 characters in place of others, so it can change
	 * the encoding of a UCS-2 body only.
	 */
	if (info.encoding == SMS_UCS2)
	{
		char	   *buf = palloc(len + 1);
		size_t		n = sms_fold(VARDATA_ANY(body), len, buf);
		SmsInfo		folded;

		if (n == (size_t) -1 || !sms_analyze(buf, n, &folded))
			invalid_body();
		fold_changes = folded.encoding != info.encoding;
		pfree(buf);
	}
	values[0] = CStringGetTextDatum(info.encoding == SMS_GSM7 ? "gsm7" : "ucs2");
	values[1] = Int32GetDatum(info.segments);
	values[2] = Int32GetDatum(info.characters);
	values[3] = Int32GetDatum(info.units);
	values[4] = BoolGetDatum(fold_changes);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

Datum
eightms_sms_fold(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(body);
	text	   *out = (text *) palloc(VARHDRSZ + len);
	size_t		n = sms_fold(VARDATA_ANY(body), len, VARDATA(out));

	if (n == (size_t) -1)
		invalid_body();
	SET_VARSIZE(out, VARHDRSZ + n);
	PG_RETURN_TEXT_P(out);
}
