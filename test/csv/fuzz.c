/*
 * fuzz.c
 *		libFuzzer target for the CSV reader (make csv-fuzz): any bytes, with
 *		the options (delimiter given or detected, small limits or the
 *		defaults) and the chunk sizes taken from the first two bytes.  Beyond
 *		what ASan and UBSan catch, it traps when an invariant breaks:
 *		- the records are the same whole, in the chunk sizes of the second
 *		  byte, and (for short inputs) a byte at a time;
 *		- every field lies inside a block the parser allocated and still holds;
 *		- line numbers do not decrease, a rejection is placed on or after its
 *		  record's line, and no line is past the input's last;
 *		- an accepted record's fields are no longer than the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv_dump.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parser's live blocks, to check that fields point into one of them. */
#define MAX_BLOCKS 16
static struct
{
	char	   *p;
	size_t		size;
}			blocks[MAX_BLOCKS];

static void
track(void *p, size_t size)
{
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (blocks[i].p == NULL)
		{
			blocks[i].p = p;
			blocks[i].size = size;
			return;
		}
	__builtin_trap();			/* more blocks than the parser ever holds */
}

static void
untrack(void *p)
{
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (blocks[i].p == p)
		{
			blocks[i].p = NULL;
			return;
		}
	__builtin_trap();			/* released what it did not allocate */
}

static void *
t_alloc(void *ctx, size_t size)
{
	void	   *p = malloc(size);

	(void) ctx;
	if (p != NULL)
		track(p, size);
	return p;
}

static void *
t_resize(void *ctx, void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size);

	(void) ctx;
	if (p != NULL)
	{
		untrack(ptr);
		track(p, size);
	}
	return p;
}

static void
t_release(void *ctx, void *ptr)
{
	(void) ctx;
	untrack(ptr);
	free(ptr);
}

static void
check_field(const CsvField *f)
{
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (blocks[i].p != NULL && f->data >= blocks[i].p
			&& f->len <= blocks[i].size && f->data - blocks[i].p <= (ptrdiff_t) (blocks[i].size - f->len))
			return;
	__builtin_trap();
}

static void
check_lines(const char *dump, const uint8_t *data, size_t size)
{
	long long	prev = 0;
	long long	last = 1;

	/* the physical lines of the input: CR, LF and CRLF each end one */
	for (size_t i = 0; i < size; i++)
		if (data[i] == '\r' || (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')))
			last++;
	for (const char *s = dump; *s; s = strchr(s, '\n') + 1)
	{
		long long	line,
					eline,
					ecol;
		char		name[32];

		if (*s == '!')
		{
			if (sscanf(s, "! %31s %lld:%lld", name, &eline, &ecol) != 3 || eline < 1 || eline > last || ecol < 1)
				__builtin_trap();
			continue;
		}
		if (sscanf(s, "%lld:", &line) != 1 || line < prev || line > last)
			__builtin_trap();
		prev = line;
		if (strncmp(strchr(s, ':'), ": ! ", 4) == 0
			&& (sscanf(strchr(s, ':') + 4, "%31s %lld:%lld", name, &eline, &ecol) != 3
				|| eline < line || eline > last || ecol < 1 || ecol > (long long) size + 1))
			__builtin_trap();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char delimiters[4] = {0, ',', ';', '\t'};
	CsvAllocator hooks = {t_alloc, t_resize, t_release, NULL};
	CsvOptions	o = {0};
	DumpBuf		whole = {0},
				chunked = {0},
				bytes = {0};
	size_t		sizes[4];
	size_t		one = 1;
	const char *in;
	size_t		len;

	if (size < 2)
		return 0;
	o.delimiter = delimiters[data[0] & 3];
	if (data[0] & 4)
	{
		/* limits small enough for the fuzzer to reach */
		o.max_field = 1 + ((data[0] >> 3) & 7);
		o.max_record = 1 + ((data[0] >> 3) & 15) * 2;
		o.max_fields = 1 + (data[0] >> 5);
	}
	o.allocator = &hooks;
	sizes[0] = data[1] & 7;
	sizes[1] = 1 + (data[1] >> 3);
	sizes[2] = 1;
	sizes[3] = (data[1] * 7) & 15;
	in = (const char *) data + 2;
	len = size - 2;

	csv_dump(&o, in, len, NULL, 0, check_field, &whole);
	csv_dump(&o, in, len, sizes, 4, check_field, &chunked);
	if (strcmp(whole.s ? whole.s : "", chunked.s ? chunked.s : "") != 0)
		__builtin_trap();
	if (len <= 256)
	{
		csv_dump(&o, in, len, &one, 1, check_field, &bytes);
		if (strcmp(whole.s ? whole.s : "", bytes.s ? bytes.s : "") != 0)
			__builtin_trap();
	}
	check_lines(whole.s ? whole.s : "", data + 2, len);
	for (int i = 0; i < MAX_BLOCKS; i++)
		if (blocks[i].p != NULL)
			__builtin_trap();	/* csv_destroy left a block */
	free(whole.s);
	free(chunked.s);
	free(bytes.s);
	return 0;
}
