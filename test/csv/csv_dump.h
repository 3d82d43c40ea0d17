/*
 * csv_dump.h
 *		The tests' view of a parse: every record as one text line, so that a
 *		case's expected result, the chunked and the whole parse, and Python's
 *		csv module can be compared as strings.  Shared by the unit tests, the
 *		command the differential check drives, and the fuzz target.
 *
 *		A record:	"<line>: [field] [field]\n" (bytes outside printable
 *					ASCII, '[', ']' and '\' as \xHH)
 *		A rejected record:	"<line>: ! <error name> <line>:<column>\n"
 *		The parser stopped:	"! <error name> <line>:<column>\n"
 */
#ifndef CSV_DUMP_H
#define CSV_DUMP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv/csv.h"

typedef struct DumpBuf
{
	char	   *s;
	size_t		len;
	size_t		cap;
} DumpBuf;

static void
dump_put(DumpBuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 256;
		b->s = realloc(b->s, b->cap);
		if (b->s == NULL)
			abort();
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
dump_printf(DumpBuf *b, const char *fmt, long long x, long long y)
{
	char		t[64];
	int			n = snprintf(t, sizeof(t), fmt, x, y);

	dump_put(b, t, (size_t) n);
}

/*
 * Called on each field before it is printed (the fuzz target checks that
 * it lies in memory the parser allocated); may be NULL.
 */
typedef void (*DumpFieldCheck) (const CsvField *field);

/*
 * Parse data with the options, fed in chunks whose sizes cycle through
 * chunks[0..nchunks) (a zero size feeds an empty chunk; no sizes: all at
 * once), and append the dump to out.  Returns the last status.
 */
static CsvStatus
csv_dump(const CsvOptions *options, const char *data, size_t len,
		 const size_t *chunks, size_t nchunks, DumpFieldCheck check, DumpBuf *out)
{
	CsvParser  *p = csv_create(options);
	CsvRecord	r;
	CsvStatus	s = CSV_NEED_INPUT;
	size_t		pos = 0;
	size_t		k = 0;
	int			empties = 0;

	if (p == NULL)
	{
		dump_put(out, "! create\n", 9);
		return CSV_FAILED;
	}
	for (;;)
	{
		if (s == CSV_NEED_INPUT)
		{
			if (pos >= len)
				csv_finish(p);
			else
			{
				size_t		n = nchunks ? chunks[k++ % nchunks] : len;

				/* empty chunks are fed, but two in a row would never end */
				if (n == 0 && empties++ > 0)
					n = 1;
				if (n > 0)
					empties = 0;
				if (n > len - pos)
					n = len - pos;
				csv_feed(p, data + pos, n);
				pos += n;
			}
		}
		s = csv_next(p, &r);
		if (s == CSV_END)
			break;
		if (s == CSV_FAILED)
		{
			dump_put(out, "! ", 2);
			dump_put(out, csv_error_name(r.error), strlen(csv_error_name(r.error)));
			dump_printf(out, " %lld:%lld\n", r.error_line, r.error_column);
			break;
		}
		if (s != CSV_RECORD)
			continue;
		dump_printf(out, "%lld:", r.line, 0);
		if (r.error != CSV_OK)
		{
			dump_put(out, " ! ", 3);
			dump_put(out, csv_error_name(r.error), strlen(csv_error_name(r.error)));
			dump_printf(out, " %lld:%lld", r.error_line, r.error_column);
		}
		for (size_t i = 0; i < r.nfields; i++)
		{
			if (check)
				check(&r.fields[i]);
			dump_put(out, " [", 2);
			for (size_t j = 0; j < r.fields[i].len; j++)
			{
				unsigned char c = (unsigned char) r.fields[i].data[j];

				if (c < 0x20 || c >= 0x7F || c == '[' || c == ']' || c == '\\')
				{
					char		t[8];

					snprintf(t, sizeof(t), "\\x%02X", c);
					dump_put(out, t, 4);
				}
				else
					dump_put(out, (const char *) &c, 1);
			}
			dump_put(out, "]", 1);
		}
		dump_put(out, "\n", 1);
	}
	csv_destroy(p);
	return s;
}

#endif							/* CSV_DUMP_H */
