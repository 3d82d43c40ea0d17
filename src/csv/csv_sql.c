/*
 * csv_sql.c
 *		SQL functions over the CSV reader (src/csv/csv.c) for the contacts
 *		import and export (sql/contacts_import.sql, doc/contacts.md):
 *
 *		csv_rows(csv bytea, delimiter text)		the records of a file, one row
 *												each: line, fields, error
 *		csv_line_ends(csv bytea)				how many physical lines end in it
 *		csv_line(fields text[], delimiter text)	one record written back, quoted
 *
 *		The reader stays free of server headers; it gets palloc here through
 *		its allocator hooks.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "csv/csv.h"

PG_FUNCTION_INFO_V1(eightms_csv_rows);
PG_FUNCTION_INFO_V1(eightms_csv_line_ends);
PG_FUNCTION_INFO_V1(eightms_csv_line);

static void *
csv_palloc(void *ctx, size_t size)
{
	return MemoryContextAlloc((MemoryContext) ctx, size);
}

static void *
csv_repalloc(void *ctx, void *ptr, size_t size)
{
	return ptr ? repalloc(ptr, size) : MemoryContextAlloc((MemoryContext) ctx, size);
}

static void
csv_pfree(void *ctx, void *ptr)
{
	if (ptr)
		pfree(ptr);
}

/* The delimiter a caller names: NULL or '' detects it. */
static char
delimiter_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *d;

	if (PG_ARGISNULL(argno))
		return 0;
	d = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (d[0] == '\0')
		return 0;
	if (strcmp(d, ",") == 0 || strcmp(d, ";") == 0 || strcmp(d, "\t") == 0)
		return d[0];
	if (strcmp(d, "tab") == 0)
		return '\t';
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the delimiter is a comma, a semicolon or a tab"),
			 errhint("Pass ',', ';', 'tab' (or a tab character), or NULL to detect it from the header.")));
	return 0;					/* keep the compiler quiet */
}

/*
 * csv_rows(csv, delimiter) -> (line bigint, fields text[], error text,
 * delimiter text): every record of the file in order, the header included.
 * A rejected record has no fields and the reader's stable name of its
 * error; the delimiter is set on the first record only (given or
 * detected).  Bytes that are not UTF-8 refuse the whole file (22021), as a
 * text value could not hold them; a delimiter the header does not settle
 * refuses it too.  Materialized: the rows go to a tuplestore, which spills
 * to a temporary file past work_mem, while the reader itself holds one
 * record.
 */
Datum
eightms_csv_rows(PG_FUNCTION_ARGS)
{
	bytea	   *csv = PG_GETARG_BYTEA_PP(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext rowcxt;
	CsvAllocator alloc;
	CsvOptions	options;
	CsvParser  *p;
	CsvRecord	rec;
	CsvStatus	s;
	bool		first = true;
	bool		finished = false;

	memset(&options, 0, sizeof(options));
	options.delimiter = delimiter_arg(fcinfo, 1);
	alloc.alloc = csv_palloc;
	alloc.resize = csv_repalloc;
	alloc.release = csv_pfree;
	alloc.ctx = CurrentMemoryContext;
	options.allocator = &alloc;

	InitMaterializedSRF(fcinfo, 0);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "csv_rows record", ALLOCSET_DEFAULT_SIZES);

	p = csv_create(&options);
	if (p == NULL)
		elog(ERROR, "csv_create failed");
	csv_feed(p, VARDATA_ANY(csv), VARSIZE_ANY_EXHDR(csv));
	for (;;)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, true};
		MemoryContext old;

		s = csv_next(p, &rec);
		if (s == CSV_NEED_INPUT && !finished)
		{
			csv_finish(p);
			finished = true;
			continue;
		}
		if (s == CSV_END || s == CSV_NEED_INPUT)
			break;
		if (s == CSV_FAILED)
		{
			if (rec.error == CSV_ERR_AMBIGUOUS_DELIMITER)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("line %lld: the header names as many commas, semicolons or tabs, so the delimiter is not clear",
								(long long) rec.error_line),
						 errhint("Pass the delimiter: ',', ';' or 'tab'.")));
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("line %lld: %s", (long long) rec.error_line, csv_error_message(rec.error))));
		}
		if (rec.error == CSV_ERR_INVALID_UTF8)
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("line %lld, byte %lld: the file is not UTF-8",
							(long long) rec.error_line, (long long) rec.error_column),
					 errhint("Save the file as UTF-8 (\"CSV UTF-8\" in a spreadsheet) and import it again.")));

		old = MemoryContextSwitchTo(rowcxt);
		values[0] = Int64GetDatum(rec.line);
		if (rec.error != CSV_OK)
		{
			nulls[1] = true;
			values[2] = CStringGetTextDatum(csv_error_name(rec.error));
		}
		else
		{
			Datum	   *elems = palloc(sizeof(Datum) * (rec.nfields ? rec.nfields : 1));

			for (size_t i = 0; i < rec.nfields; i++)
				elems[i] = PointerGetDatum(cstring_to_text_with_len(rec.fields[i].data,
																	(int) rec.fields[i].len));
			values[1] = PointerGetDatum(construct_array(elems, (int) rec.nfields, TEXTOID, -1, false,
														TYPALIGN_INT));
			nulls[2] = true;
		}
		if (first)
		{
			char		d = csv_delimiter(p);

			nulls[3] = (d == 0);
			values[3] = CStringGetTextDatum(d == '\t' ? "tab" : d == ';' ? ";" : ",");
			first = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	csv_destroy(p);
	MemoryContextDelete(rowcxt);
	return (Datum) 0;
}

/*
 * csv_line_ends(csv) -> bigint: the line ends in the bytes (CRLF, LF or a
 * lone CR, as the reader counts them), so that a job numbers the lines of
 * a chunk after those of the chunks before it.
 */
Datum
eightms_csv_line_ends(PG_FUNCTION_ARGS)
{
	bytea	   *csv = PG_GETARG_BYTEA_PP(0);
	const char *d = VARDATA_ANY(csv);
	size_t		len = VARSIZE_ANY_EXHDR(csv);
	int64		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (d[i] == '\n')
			n++;
		else if (d[i] == '\r' && (i + 1 == len || d[i + 1] != '\n'))
			n++;
	}
	PG_RETURN_INT64(n);
}

/*
 * csv_line(fields, delimiter) -> text: one record as RFC 4180 writes it,
 * without its line end: a field holding the delimiter, a quote, CR or LF
 * (or with a space at either end, which spreadsheets trim) is quoted, its
 * quotes doubled; NULL is an empty field.  The reader reads it back as it
 * was.
 */
Datum
eightms_csv_line(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	char		delim = delimiter_arg(fcinfo, 1);
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	StringInfoData buf;

	if (delim == 0)
		delim = ',';
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		text	   *t;
		const char *s;
		int			len;
		bool		quote = false;

		if (i > 0)
			appendStringInfoChar(&buf, delim);
		if (enulls[i])
			continue;
		t = DatumGetTextPP(elems[i]);
		s = VARDATA_ANY(t);
		len = VARSIZE_ANY_EXHDR(t);
		if (len > 0 && (s[0] == ' ' || s[len - 1] == ' '))
			quote = true;
		for (int j = 0; j < len && !quote; j++)
			if (s[j] == delim || s[j] == '"' || s[j] == '\r' || s[j] == '\n')
				quote = true;
		if (!quote)
		{
			appendBinaryStringInfo(&buf, s, len);
			continue;
		}
		appendStringInfoChar(&buf, '"');
		for (int j = 0; j < len; j++)
		{
			if (s[j] == '"')
				appendStringInfoChar(&buf, '"');
			appendStringInfoChar(&buf, s[j]);
		}
		appendStringInfoChar(&buf, '"');
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
