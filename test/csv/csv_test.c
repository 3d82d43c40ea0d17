/*
 * csv_test.c
 *		Unit tests for src/csv/csv.c: each case's exact records (fields, the
 *		line each starts on, rejections with their code and place), the same
 *		result for the case cut into two chunks at every byte offset and fed
 *		a byte at a time, and the contract around it: the allocator hooks,
 *		memory bounded by the record and not the file, failure of the
 *		allocator, stable error names.  Prints "N passed, N failed".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv_dump.h"

static int	passed,
			failed;

static void
report(int ok, const char *what, const char *name)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s - %s: %s\n", ok ? "ok" : "not ok", name, what);
}

typedef struct Case
{
	const char *name;
	const char *input;
	size_t		len;			/* 0: strlen(input) */
	char		delimiter;
	size_t		max_field;
	size_t		max_record;
	size_t		max_fields;
	const char *expected;
} Case;

static const Case cases[] = {
	{"LF line ends", "a,b\n1,2\n", 0, ',', 0, 0, 0, "1: [a] [b]\n2: [1] [2]\n"},
	{"CRLF line ends", "a,b\r\n1,2\r\n", 0, ',', 0, 0, 0, "1: [a] [b]\n2: [1] [2]\n"},
	{"lone CR line ends", "a,b\r1,2\r", 0, ',', 0, 0, 0, "1: [a] [b]\n2: [1] [2]\n"},
	{"a last line without a line end", "a,b\n1,2", 0, ',', 0, 0, 0, "1: [a] [b]\n2: [1] [2]\n"},
	{"a quoted delimiter", "a,b\n\"x,y\",z\n", 0, ',', 0, 0, 0, "1: [a] [b]\n2: [x,y] [z]\n"},
	{"doubled quotes", "a\n\"say \"\"hi\"\"\"\n", 0, ',', 0, 0, 0, "1: [a]\n2: [say \"hi\"]\n"},
	{"LF inside quotes, and the line after", "a,b\n\"l1\nl2\",x\n3,4\n", 0, ',', 0, 0, 0,
	"1: [a] [b]\n2: [l1\\x0Al2] [x]\n4: [3] [4]\n"},
	{"CRLF inside quotes kept as it is", "\"l1\r\nl2\"\r\nz\r\n", 0, ',', 0, 0, 0,
	"1: [l1\\x0D\\x0Al2]\n3: [z]\n"},
	{"lone CR inside quotes", "\"l1\rl2\"\rz", 0, ',', 0, 0, 0, "1: [l1\\x0Dl2]\n3: [z]\n"},
	{"the UTF-8 BOM at the start is skipped", "\xEF\xBB\xBF" "a,b\n", 0, ',', 0, 0, 0, "1: [a] [b]\n"},
	{"a BOM elsewhere is data", "a\n\xEF\xBB\xBF" "b\n", 0, ',', 0, 0, 0, "1: [a]\n2: [\\xEF\\xBB\\xBFb]\n"},
	{"half a BOM is data, and not UTF-8", "\xEF\xBB" "a\nb\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n2: [b]\n"},
	{"half a BOM alone", "\xEF\xBB", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"only a BOM", "\xEF\xBB\xBF", 0, ',', 0, 0, 0, ""},
	{"no input", "", 0, ',', 0, 0, 0, ""},
	{"no input, detecting", "", 0, 0, 0, 0, 0, ""},
	{"empty lines are skipped and counted", "a\n\n\r\n\rb\n", 0, ',', 0, 0, 0, "1: [a]\n5: [b]\n"},
	{"empty lines before the header", "\n\r\na;b\n", 0, 0, 0, 0, 0, "3: [a] [b]\n"},
	{"CRLF then an empty CRLF line", "a\r\n\r\nb", 0, ',', 0, 0, 0, "1: [a]\n3: [b]\n"},
	{"a quoted empty field is a record", "a\n\"\"\n", 0, ',', 0, 0, 0, "1: [a]\n2: []\n"},
	{"a line of spaces is a record", "a\n  \n", 0, ',', 0, 0, 0, "1: [a]\n2: [  ]\n"},
	{"a trailing delimiter", "a,\n", 0, ',', 0, 0, 0, "1: [a] []\n"},
	{"a trailing delimiter at the end", "a,", 0, ',', 0, 0, 0, "1: [a] []\n"},
	{"only delimiters", ",,\n", 0, ',', 0, 0, 0, "1: [] [] []\n"},
	{"a quote inside an unquoted field is text", "5'11\",x\n", 0, ',', 0, 0, 0, "1: [5'11\"] [x]\n"},
	{"a space before a quote makes it text", "a, \"b\"\n", 0, ',', 0, 0, 0, "1: [a] [ \"b\"]\n"},
	{"quoted then closed at a CRLF", "\"a\"\r\nb\r\n", 0, ',', 0, 0, 0, "1: [a]\n2: [b]\n"},
	{"text after a closing quote rejects the record", "a,b\n\"x\"y,z\n1,2\n", 0, ',', 0, 0, 0,
	"1: [a] [b]\n2: ! text_after_quote 2:4\n3: [1] [2]\n"},
	{"a space after a closing quote", "\"x\" ,y\n", 0, ',', 0, 0, 0, "1: ! text_after_quote 1:4\n"},
	{"text after a quote on the record's second line", "\"a\nb\"x\nc\n", 0, ',', 0, 0, 0,
	"1: ! text_after_quote 2:3\n3: [c]\n"},
	{"a quote after text after a quote is text", "\"a\"b\"c\nd\n", 0, ',', 0, 0, 0,
	"1: ! text_after_quote 1:4\n2: [d]\n"},
	{"an unterminated quote at the end", "a\n\"abc\nd\n", 0, ',', 0, 0, 0, "1: [a]\n2: ! unterminated_quote 2:1\n"},
	{"a lone quote", "\"", 0, ',', 0, 0, 0, "1: ! unterminated_quote 1:1\n"},
	{"an unterminated quote outranks earlier errors", "x\"y\",\"\xFF\n", 0, ',', 0, 0, 0,
	"1: ! unterminated_quote 1:6\n"},
	{"invalid UTF-8 rejects its record only", "a\nb\xFF" "c\nd\n", 0, ',', 0, 0, 0,
	"1: [a]\n2: ! invalid_utf8 2:2\n3: [d]\n"},
	{"a sequence cut by a line end", "x\xC3\ny\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:2\n2: [y]\n"},
	{"a sequence cut by a delimiter", "\xE2\x82,y\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"a sequence cut by the end", "x\xE2\x82", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:2\n"},
	{"an overlong form", "\xC0\xAF\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"an overlong three-byte form", "\xE0\x80\xAF\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"a surrogate", "ok,\xED\xA0\x80\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:4\n"},
	{"past U+10FFFF", "\xF4\x90\x80\x80\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"a stray continuation byte", "a\x80\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:2\n"},
	{"the first error of a record is the one", "\xFF,\"a\"b\n", 0, ',', 0, 0, 0, "1: ! invalid_utf8 1:1\n"},
	{"UTF-8 of two, three and four bytes", "\xC3\xA9,\xE2\x82\xAC,\xF0\x9F\x98\x80,\xF4\x8F\xBF\xBF\n", 0, ',', 0, 0, 0,
	"1: [\\xC3\\xA9] [\\xE2\\x82\\xAC] [\\xF0\\x9F\\x98\\x80] [\\xF4\\x8F\\xBF\\xBF]\n"},
	{"a NUL byte", "a\0b\nc\n", 5, ',', 0, 0, 0, "1: ! nul_byte 1:2\n2: [c]\n"},
	{"';' detected", "a;b,c;d\n1;2,3;4\n", 0, 0, 0, 0, 0, "1: [a] [b,c] [d]\n2: [1] [2,3] [4]\n"},
	{"tab detected", "a\tb\n1\t2\n", 0, 0, 0, 0, 0, "1: [a] [b]\n2: [1] [2]\n"},
	{"',' detected", "a,b;c,d\n", 0, 0, 0, 0, 0, "1: [a] [b;c] [d]\n"},
	{"delimiters inside quotes do not count", "\"a,b,c\";d\n", 0, 0, 0, 0, 0, "1: [a,b,c] [d]\n"},
	{"doubled quotes in a quoted header field", "\"a\"\",\";b\n", 0, 0, 0, 0, 0, "1: [a\",] [b]\n"},
	{"a tie is refused", "a,b;c\n1,2\n", 0, 0, 0, 0, 0, "! ambiguous_delimiter 1:1\n"},
	{"a tie on a later line is placed there", "\n\na\tb;c\n", 0, 0, 0, 0, 0, "! ambiguous_delimiter 3:1\n"},
	{"no delimiter: one column", "phone\n+1 650\n", 0, 0, 0, 0, 0, "1: [phone]\n2: [+1 650]\n"},
	{"a header without a line end", "a;b", 0, 0, 0, 0, 0, "1: [a] [b]\n"},
	{"detection under an unterminated quote", "\"a,b\n", 0, 0, 0, 0, 0, "1: ! unterminated_quote 1:1\n"},
	{"detection after a BOM, columns without it", "\xEF\xBB\xBF\"x\"y;z\n", 0, 0, 0, 0, 0,
	"1: ! text_after_quote 1:4\n"},
	{"detection stops at max_record", "a;b;c;d\n1;2\n", 0, 0, 0, 4, 0, "1: [a] [b] [c] [d]\n2: [1] [2]\n"},
	{"a given ';' beats detection", "a,b;c\n", 0, ';', 0, 0, 0, "1: [a,b] [c]\n"},
	{"a given tab", "a,b\tc\n", 0, '\t', 0, 0, 0, "1: [a,b] [c]\n"},
	{"a field over max_field", "abc,abcd,x\nok\n", 0, ',', 3, 0, 0, "1: ! field_too_long 1:8\n2: [ok]\n"},
	{"a field of exactly max_field", "abc\n", 0, ',', 3, 0, 0, "1: [abc]\n"},
	{"a quoted field over max_field", "\"a\nbc\"\nok\n", 0, ',', 3, 0, 0, "1: ! field_too_long 2:2\n3: [ok]\n"},
	{"a record over max_record", "ab,cd,ef\nx\n", 0, ',', 0, 5, 0, "1: ! record_too_long 1:8\n2: [x]\n"},
	{"more fields than max_fields", "a,b,c\nd\n", 0, ',', 0, 0, 2, "1: ! too_many_fields 1:4\n2: [d]\n"},
	{"exactly max_fields", "a,b\n", 0, ',', 0, 0, 2, "1: [a] [b]\n"},
};

static void
run_case(const Case *c)
{
	CsvOptions	o = {c->delimiter, c->max_field, c->max_record, c->max_fields, NULL};
	size_t		len = c->len ? c->len : strlen(c->input);
	DumpBuf		whole = {0};
	int			same = 1;
	size_t		one = 1;
	static const size_t mixed[] = {0, 2, 1, 0, 3};

	csv_dump(&o, c->input, len, NULL, 0, NULL, &whole);
	report(strcmp(whole.s ? whole.s : "", c->expected) == 0, "records", c->name);
	if (strcmp(whole.s ? whole.s : "", c->expected) != 0)
		printf("# expected:\n%s# got:\n%s", c->expected, whole.s ? whole.s : "");

	/* two chunks cut at every offset, a byte at a time, and odd sizes */
	for (size_t cut = 0; cut <= len + 1 && same; cut++)
	{
		DumpBuf		d = {0};
		size_t		sizes[2] = {cut, len};

		if (cut == len + 1)
			csv_dump(&o, c->input, len, &one, 1, NULL, &d);
		else
			csv_dump(&o, c->input, len, sizes, 2, NULL, &d);
		if (strcmp(d.s ? d.s : "", whole.s ? whole.s : "") != 0)
		{
			printf("# chunked at %zu:\n%s", cut, d.s ? d.s : "");
			same = 0;
		}
		free(d.s);
	}
	if (same)
	{
		DumpBuf		d = {0};

		csv_dump(&o, c->input, len, mixed, 5, NULL, &d);
		same = strcmp(d.s ? d.s : "", whole.s ? whole.s : "") == 0;
		free(d.s);
	}
	report(same, "the same in chunks cut at every offset", c->name);
	free(whole.s);
}

/* ---- an allocator that counts, bounds and can refuse --------------------- */

typedef struct Arena
{
	size_t		live;			/* bytes allocated now */
	size_t		peak;
	long		calls;
	long		fail_after;		/* refuse the call after this many; -1 never */
	int			released;
} Arena;

typedef struct Header
{
	size_t		size;
	max_align_t align;
} Header;

static void *
arena_alloc(void *ctx, size_t size)
{
	Arena	   *a = ctx;
	Header	   *h;

	if (a->fail_after >= 0 && a->calls >= a->fail_after)
		return NULL;
	a->calls++;
	h = malloc(sizeof(Header) + size);
	h->size = size;
	a->live += size;
	if (a->live > a->peak)
		a->peak = a->live;
	return h + 1;
}

static void *
arena_resize(void *ctx, void *ptr, size_t size)
{
	Arena	   *a = ctx;
	Header	   *h = (Header *) ptr - 1;
	void	   *q = arena_alloc(ctx, size);

	if (q == NULL)
		return NULL;
	memcpy(q, ptr, h->size < size ? h->size : size);
	a->live -= h->size;
	free(h);
	return q;
}

static void
arena_release(void *ctx, void *ptr)
{
	Arena	   *a = ctx;
	Header	   *h = (Header *) ptr - 1;

	a->released++;
	a->live -= h->size;
	free(h);
}

static void
test_allocator(void)
{
	Arena		a = {0, 0, 0, -1, 0};
	CsvAllocator hooks = {arena_alloc, arena_resize, arena_release, &a};
	CsvOptions	o = {0, 0, 0, 0, &hooks};
	const char *in = "name;phone\n\"Ann\";+1 650 253 0000\n";
	DumpBuf		d = {0};

	csv_dump(&o, in, strlen(in), NULL, 0, NULL, &d);
	report(strcmp(d.s, "1: [name] [phone]\n2: [Ann] [+1 650 253 0000]\n") == 0 && a.calls > 0,
		   "records through the hooks", "allocator");
	report(a.live == 0 && a.released > 0, "everything allocated is released by csv_destroy", "allocator");
	free(d.s);
}

/* A context allocator (palloc's way): a bump allocator with no release. */
static _Alignas(max_align_t) char pool[65536];
static size_t pool_used;

static void *
pool_alloc(void *ctx, size_t size)
{
	void	   *q;

	(void) ctx;
	size = (size + 15) & ~(size_t) 15;
	if (pool_used + sizeof(size_t) + 16 + size > sizeof(pool))
		return NULL;
	q = pool + pool_used + 16;
	memcpy(pool + pool_used, &size, sizeof(size_t));
	pool_used += 16 + size;
	return q;
}

static void *
pool_resize(void *ctx, void *ptr, size_t size)
{
	size_t		old;
	void	   *q = pool_alloc(ctx, size);

	memcpy(&old, (char *) ptr - 16, sizeof(size_t));
	if (q != NULL)
		memcpy(q, ptr, old < size ? old : size);
	return q;
}

static void
test_no_release(void)
{
	CsvAllocator hooks = {pool_alloc, pool_resize, NULL, NULL};
	CsvOptions	o = {',', 0, 0, 0, &hooks};
	DumpBuf		d = {0};

	csv_dump(&o, "a,b\n", 4, NULL, 0, NULL, &d);
	report(strcmp(d.s, "1: [a] [b]\n") == 0, "works with no release hook", "allocator");
	free(d.s);
}

/*
 * 10 MB of records in 4 KB chunks: the peak is the parser's own, the
 * longest record's, not the file's.
 */
static void
test_memory_bound(void)
{
	Arena		a = {0, 0, 0, -1, 0};
	CsvAllocator hooks = {arena_alloc, arena_resize, arena_release, &a};
	CsvOptions	o = {0, 0, 0, 0, &hooks};
	const char *row = "\"Doe, Jane\";+44 20 7946 0018;jane@example.com;\"say \"\"hi\"\"\"\r\n";
	size_t		rowlen = strlen(row);
	size_t		n = 10 * 1000 * 1000 / rowlen;
	char	   *in = malloc(n * rowlen);
	CsvParser  *p = csv_create(&o);
	CsvRecord	r;
	CsvStatus	s;
	size_t		records = 0,
				bad = 0;

	for (size_t i = 0; i < n; i++)
		memcpy(in + i * rowlen, row, rowlen);
	for (size_t pos = 0; pos < n * rowlen; pos += 4096)
	{
		csv_feed(p, in + pos, n * rowlen - pos < 4096 ? n * rowlen - pos : 4096);
		while ((s = csv_next(p, &r)) == CSV_RECORD)
		{
			records++;
			if (r.error != CSV_OK || r.nfields != 4 || r.line != (int64_t) records
				|| r.fields[3].len != 8 || memcmp(r.fields[3].data, "say \"hi\"", 8) != 0)
				bad++;
		}
	}
	csv_finish(p);
	while ((s = csv_next(p, &r)) == CSV_RECORD)
		records++;
	report(s == CSV_END && records == n && bad == 0, "10 MB in 4 KB chunks: every record, on its line", "memory");
	report(a.peak < 4096, "the peak allocation stays under 4 KB for 10 MB", "memory");
	printf("# %zu records, peak %zu bytes\n", records, a.peak);
	csv_destroy(p);
	free(in);
}

/* A record as long as the limit allows, then one over it, then a short one. */
static void
test_long_records(void)
{
	Arena		a = {0, 0, 0, -1, 0};
	CsvAllocator hooks = {arena_alloc, arena_resize, arena_release, &a};
	CsvOptions	o = {',', 100000, 100000, 0, &hooks};
	size_t		len = 100000 + 1 + 100001 + 1 + 2;
	char	   *in = malloc(len);
	DumpBuf		d = {0};

	memset(in, 'x', len);
	in[100000] = '\n';
	in[200002] = '\n';
	memcpy(in + len - 2, "ok", 2);
	csv_dump(&o, in, len, NULL, 0, NULL, &d);
	const char *tail = "\n2: ! field_too_long 2:100001\n3: [ok]\n";

	report(d.len > 100000 && strcmp(d.s + d.len - strlen(tail), tail) == 0,
		   "the limit is a limit: at it accepted, over it rejected, then on", "limits");
	/* a resize holds the old and the new buffer for a moment */
	report(a.peak < 2 * 100000 + 8192, "memory stays within twice the record limit", "limits");
	printf("# peak %zu bytes for a limit of 100000\n", a.peak);
	free(in);
	free(d.s);
}

/* The allocator refusing at each call in turn: CSV_FAILED, never a crash. */
static void
test_no_memory(void)
{
	const char *in = "a;\"b\"\nc;d;e;f;g;h;i;j;k;l;m;n;o;p;q;r;s;t;u\n";
	int			all_ok = 1;

	for (long n = 0; n < 40; n++)
	{
		Arena		a = {0, 0, 0, n, 0};
		CsvAllocator hooks = {arena_alloc, arena_resize, arena_release, &a};
		CsvOptions	o = {0, 0, 0, 0, &hooks};
		CsvParser  *p = csv_create(&o);
		CsvRecord	r;
		CsvStatus	s;

		if (p == NULL)
		{
			all_ok &= (a.live == 0);
			continue;
		}
		csv_feed(p, in, strlen(in));
		while ((s = csv_next(p, &r)) == CSV_RECORD)
			;
		if (s == CSV_NEED_INPUT)
		{
			csv_finish(p);
			while ((s = csv_next(p, &r)) == CSV_RECORD)
				;
		}
		if (s == CSV_FAILED)
			all_ok &= (r.error == CSV_ERR_NO_MEMORY && csv_next(p, &r) == CSV_FAILED);
		else
			all_ok &= (s == CSV_END);
		csv_destroy(p);
		all_ok &= (a.live == 0);
	}
	report(all_ok, "a refusing allocator fails the parse cleanly and leaks nothing", "no memory");
}

static void
test_api(void)
{
	CsvOptions	bad = {'|', 0, 0, 0, NULL};
	CsvOptions	detect = {0, 0, 0, 0, NULL};
	CsvParser  *p;
	CsvRecord	r;
	static const char *const names[] = {
		"ok", "text_after_quote", "unterminated_quote", "invalid_utf8", "nul_byte",
		"field_too_long", "record_too_long", "too_many_fields", "ambiguous_delimiter", "no_memory"
	};
	int			names_ok = (CSV_ERROR_COUNT == sizeof(names) / sizeof(names[0]));

	report(csv_create(&bad) == NULL, "a delimiter other than , ; or tab is refused", "api");

	p = csv_create(&detect);
	csv_feed(p, "a\tb", 3);
	report(csv_next(p, &r) == CSV_NEED_INPUT && csv_delimiter(p) == 0,
		   "the delimiter is unknown before the header's end", "api");
	csv_feed(p, "\n1\t2\n", 5);
	report(csv_next(p, &r) == CSV_RECORD && csv_delimiter(p) == '\t' && r.nfields == 2,
		   "and known once the header is read", "api");
	report(csv_next(p, &r) == CSV_RECORD && csv_next(p, &r) == CSV_NEED_INPUT,
		   "NEED_INPUT once the chunk is used", "api");
	csv_finish(p);
	report(csv_next(p, &r) == CSV_END && csv_next(p, &r) == CSV_END, "END, and END again", "api");
	csv_destroy(p);

	for (int i = 0; i < CSV_ERROR_COUNT && names_ok; i++)
		names_ok = strcmp(csv_error_name((CsvError) i), names[i]) == 0
			&& csv_error_message((CsvError) i)[0] != '\0';
	report(names_ok && strcmp(csv_error_name(CSV_ERROR_COUNT), "unknown") == 0,
		   "error names are the stable ones", "api");
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	test_allocator();
	test_no_release();
	test_memory_bound();
	test_long_records();
	test_no_memory();
	test_api();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
