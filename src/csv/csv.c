/*
 * csv.c
 *		The streaming CSV reader of csv.h.  Each input byte goes through
 *		three stages: the byte order mark (skipped at the very start only),
 *		delimiter detection (which holds the first line back until it has
 *		seen it whole, then replays it), and the record state machine, which
 *		also keeps the position and checks UTF-8.  The rules, and why they
 *		are what they are, are in doc/csv.md.
 */
#include <stdlib.h>
#include <string.h>

#include "csv/csv.h"

/* The record state machine */
typedef enum
{
	S_RECORD_START,				/* between records: line ends are skipped */
	S_FIELD_START,
	S_UNQUOTED,
	S_QUOTED,
	S_QUOTE_IN_QUOTED			/* a quote inside a quoted field: closing, or doubled */
} State;

/* Delimiter detection over the first non-empty line */
typedef enum
{
	D_LINE_START,				/* empty lines before the header */
	D_FIELD_START,
	D_UNQUOTED,
	D_QUOTED,
	D_QUOTE_IN_QUOTED,
	D_DONE
} DetectState;

static const char candidates[3] = {',', ';', '\t'};
static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

struct CsvParser
{
	CsvAllocator a;
	char		delimiter;
	size_t		max_field;
	size_t		max_record;
	size_t		max_fields;

	/* the caller's chunk */
	const unsigned char *in;
	size_t		in_len;
	size_t		in_pos;
	bool		finished;		/* csv_finish was called */
	bool		eof_done;		/* the last record, if any, was returned */
	bool		failed;
	CsvRecord	failure;

	/* bytes of the byte order mark seen so far; -1 once past it */
	int			bom_seen;

	/* detection: the raw bytes held back, replayed once it is decided */
	bool		detecting;
	DetectState dstate;
	bool		d_prev_cr;
	int64_t		d_line;
	size_t		counts[3];
	unsigned char *raw;
	size_t		raw_len;
	size_t		raw_cap;
	size_t		replay_pos;

	/* position of the next byte */
	int64_t		line;
	int64_t		column;
	bool		prev_cr;

	/* UTF-8: continuation bytes still needed, their range, the lead's place */
	int			u8_need;
	unsigned char u8_lo;
	unsigned char u8_hi;
	int64_t		u8_line;
	int64_t		u8_column;

	/* the record being read */
	State		state;
	bool		emitted;		/* the record was returned: reset it first */
	int64_t		rec_line;
	CsvError	rec_error;
	int64_t		err_line;
	int64_t		err_column;
	int64_t		quote_line;
	int64_t		quote_column;
	char	   *buf;
	size_t		buf_len;
	size_t		buf_cap;
	size_t	   *starts;			/* where each field starts in buf */
	CsvField   *fields;			/* what the caller gets */
	size_t		nfields;
	size_t		fields_cap;
};

static const char *const error_names[CSV_ERROR_COUNT] = {
	[CSV_OK] = "ok",
	[CSV_ERR_TEXT_AFTER_QUOTE] = "text_after_quote",
	[CSV_ERR_UNTERMINATED_QUOTE] = "unterminated_quote",
	[CSV_ERR_INVALID_UTF8] = "invalid_utf8",
	[CSV_ERR_NUL_BYTE] = "nul_byte",
	[CSV_ERR_FIELD_TOO_LONG] = "field_too_long",
	[CSV_ERR_RECORD_TOO_LONG] = "record_too_long",
	[CSV_ERR_TOO_MANY_FIELDS] = "too_many_fields",
	[CSV_ERR_AMBIGUOUS_DELIMITER] = "ambiguous_delimiter",
	[CSV_ERR_NO_MEMORY] = "no_memory",
};

static const char *const error_messages[CSV_ERROR_COUNT] = {
	[CSV_OK] = "no error",
	[CSV_ERR_TEXT_AFTER_QUOTE] = "text follows the closing quote of a field",
	[CSV_ERR_UNTERMINATED_QUOTE] = "a quoted field is not closed before the end of the input",
	[CSV_ERR_INVALID_UTF8] = "the bytes are not valid UTF-8",
	[CSV_ERR_NUL_BYTE] = "a zero byte is not allowed in text",
	[CSV_ERR_FIELD_TOO_LONG] = "a field is longer than the limit",
	[CSV_ERR_RECORD_TOO_LONG] = "a record is longer than the limit",
	[CSV_ERR_TOO_MANY_FIELDS] = "a record has more fields than the limit",
	[CSV_ERR_AMBIGUOUS_DELIMITER] = "the header line has as many of two delimiters: give the delimiter",
	[CSV_ERR_NO_MEMORY] = "out of memory",
};

const char *
csv_error_name(CsvError error)
{
	return (unsigned) error < CSV_ERROR_COUNT ? error_names[error] : "unknown";
}

const char *
csv_error_message(CsvError error)
{
	return (unsigned) error < CSV_ERROR_COUNT ? error_messages[error] : "unknown error";
}

static void *
std_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void *
std_resize(void *ctx, void *ptr, size_t size)
{
	(void) ctx;
	return realloc(ptr, size);
}

static void
std_release(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

static void
release(CsvParser *p, void *ptr)
{
	if (ptr != NULL && p->a.release != NULL)
		p->a.release(p->a.ctx, ptr);
}

/* Stop the parser for good; csv_next returns CSV_FAILED from now on. */
static void
fail(CsvParser *p, CsvError error, int64_t line, int64_t column)
{
	if (p->failed)
		return;
	p->failed = true;
	memset(&p->failure, 0, sizeof(p->failure));
	p->failure.line = line;
	p->failure.error = error;
	p->failure.error_line = line;
	p->failure.error_column = column;
}

/*
 * Grow *ptr (of *cap elements of size elem) to hold need elements, doubling
 * up to limit.  False (and the parser failed) when the allocator says no.
 */
static bool
grow(CsvParser *p, void **ptr, size_t *cap, size_t need, size_t elem, size_t limit)
{
	size_t		n = *cap;
	void	   *q;

	if (need <= n)
		return true;
	while (n < need)
		n = n > limit / 2 ? limit : n * 2;
	q = p->a.resize(p->a.ctx, *ptr, n * elem);
	if (q == NULL)
	{
		fail(p, CSV_ERR_NO_MEMORY, p->line, p->column);
		return false;
	}
	*ptr = q;
	*cap = n;
	return true;
}

CsvParser *
csv_create(const CsvOptions *options)
{
	CsvOptions	o = {0};
	CsvAllocator a = {std_alloc, std_resize, std_release, NULL};
	CsvParser  *p;

	if (options != NULL)
		o = *options;
	if (o.delimiter != 0 && o.delimiter != ',' && o.delimiter != ';' && o.delimiter != '\t')
		return NULL;
	if (o.allocator != NULL)
	{
		if (o.allocator->alloc == NULL || o.allocator->resize == NULL)
			return NULL;
		a = *o.allocator;
	}
	p = a.alloc(a.ctx, sizeof(CsvParser));
	if (p == NULL)
		return NULL;
	memset(p, 0, sizeof(CsvParser));
	p->a = a;
	p->delimiter = o.delimiter;
	p->max_field = o.max_field ? o.max_field : CSV_DEFAULT_MAX_FIELD;
	p->max_record = o.max_record ? o.max_record : CSV_DEFAULT_MAX_RECORD;
	p->max_fields = o.max_fields ? o.max_fields : CSV_DEFAULT_MAX_FIELDS;
	p->detecting = (o.delimiter == 0);
	p->dstate = D_LINE_START;
	p->d_line = 1;
	p->line = 1;
	p->column = 1;
	p->state = S_RECORD_START;
	p->buf_cap = p->max_record < 256 ? p->max_record : 256;
	p->fields_cap = p->max_fields < 16 ? p->max_fields : 16;
	p->buf = a.alloc(a.ctx, p->buf_cap);
	p->starts = a.alloc(a.ctx, p->fields_cap * sizeof(size_t));
	p->fields = a.alloc(a.ctx, p->fields_cap * sizeof(CsvField));
	if (p->buf == NULL || p->starts == NULL || p->fields == NULL)
	{
		csv_destroy(p);
		return NULL;
	}
	return p;
}

void
csv_destroy(CsvParser *p)
{
	if (p == NULL)
		return;
	release(p, p->buf);
	release(p, p->starts);
	release(p, p->fields);
	release(p, p->raw);
	release(p, p);
}

void
csv_feed(CsvParser *p, const char *data, size_t len)
{
	p->in = (const unsigned char *) data;
	p->in_len = len;
	p->in_pos = 0;
}

void
csv_finish(CsvParser *p)
{
	p->finished = true;
}

char
csv_delimiter(const CsvParser *p)
{
	return p->detecting ? 0 : p->delimiter;
}

/* ---- the record ---------------------------------------------------------- */

/* The record's first error wins; later ones are not reported. */
static void
reject(CsvParser *p, CsvError error, int64_t line, int64_t column)
{
	if (p->rec_error != CSV_OK)
		return;
	p->rec_error = error;
	p->err_line = line;
	p->err_column = column;
}

/* starts and fields grow together, up to max_fields */
static bool
grow_fields(CsvParser *p, size_t need)
{
	size_t		n = p->fields_cap;
	size_t	   *starts;
	CsvField   *fields;

	if (need <= n)
		return true;
	while (n < need)
		n = n > p->max_fields / 2 ? p->max_fields : n * 2;
	starts = p->a.resize(p->a.ctx, p->starts, n * sizeof(size_t));
	if (starts != NULL)
		p->starts = starts;
	fields = starts != NULL ? p->a.resize(p->a.ctx, p->fields, n * sizeof(CsvField)) : NULL;
	if (fields == NULL)
	{
		fail(p, CSV_ERR_NO_MEMORY, p->line, p->column);
		return false;
	}
	p->fields = fields;
	p->fields_cap = n;
	return true;
}

static void
new_field(CsvParser *p, int64_t line, int64_t column)
{
	if (p->rec_error != CSV_OK || p->failed)
		return;
	if (p->nfields >= p->max_fields)
		reject(p, CSV_ERR_TOO_MANY_FIELDS, line, column);
	else if (grow_fields(p, p->nfields + 1))
		p->starts[p->nfields++] = p->buf_len;
}

static void
add(CsvParser *p, unsigned char c, int64_t line, int64_t column)
{
	if (p->rec_error != CSV_OK || p->failed)
		return;
	if (p->buf_len - p->starts[p->nfields - 1] >= p->max_field)
		reject(p, CSV_ERR_FIELD_TOO_LONG, line, column);
	else if (p->buf_len >= p->max_record)
		reject(p, CSV_ERR_RECORD_TOO_LONG, line, column);
	else if (grow(p, (void **) &p->buf, &p->buf_cap, p->buf_len + 1, 1, p->max_record))
		p->buf[p->buf_len++] = (char) c;
}

/*
 * UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF) and NUL, one byte at a time, so that a character may span
 * chunks.  A bad sequence is placed at its first byte.
 */
static void
check_utf8(CsvParser *p, unsigned char c, int64_t line, int64_t column)
{
	if (p->u8_need > 0)
	{
		if (c >= p->u8_lo && c <= p->u8_hi)
		{
			p->u8_need--;
			p->u8_lo = 0x80;
			p->u8_hi = 0xBF;
			return;
		}
		reject(p, CSV_ERR_INVALID_UTF8, p->u8_line, p->u8_column);
		p->u8_need = 0;
		/* and c is judged as the start of what follows */
	}
	if (c < 0x80)
	{
		if (c == 0)
			reject(p, CSV_ERR_NUL_BYTE, line, column);
		return;
	}
	p->u8_lo = 0x80;
	p->u8_hi = 0xBF;
	p->u8_line = line;
	p->u8_column = column;
	if (c >= 0xC2 && c <= 0xDF)
		p->u8_need = 1;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		p->u8_need = 2;
		if (c == 0xE0)
			p->u8_lo = 0xA0;
		else if (c == 0xED)
			p->u8_hi = 0x9F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		p->u8_need = 3;
		if (c == 0xF0)
			p->u8_lo = 0x90;
		else if (c == 0xF4)
			p->u8_hi = 0x8F;
	}
	else
		reject(p, CSV_ERR_INVALID_UTF8, line, column);
}

/* One byte through the state machine; true when it ends a record. */
static bool
step(CsvParser *p, unsigned char c)
{
	int64_t		line = p->line;
	int64_t		column = p->column;
	bool		after_cr = p->prev_cr;
	bool		eol = (c == '\r' || c == '\n');

	/* the next byte's position: CR, LF and CRLF each end one line */
	if (c == '\r')
	{
		p->line++;
		p->column = 1;
	}
	else if (c == '\n')
	{
		if (!after_cr)
			p->line++;
		p->column = 1;
	}
	else
		p->column++;
	p->prev_cr = (c == '\r');

	if (p->state == S_RECORD_START)
	{
		/* an empty line, or the LF of the CRLF that ended a record */
		if (eol)
			return false;
		p->state = S_FIELD_START;
		p->rec_line = line;
		p->rec_error = CSV_OK;
		p->buf_len = 0;
		p->nfields = 0;
		new_field(p, line, column);
	}

	check_utf8(p, c, line, column);

	switch (p->state)
	{
		case S_QUOTED:
			if (c == '"')
				p->state = S_QUOTE_IN_QUOTED;
			else
				add(p, c, line, column);
			return false;
		case S_QUOTE_IN_QUOTED:
			if (c == '"')
			{
				add(p, c, line, column);
				p->state = S_QUOTED;
				return false;
			}
			if (c != p->delimiter && !eol)
			{
				/* kept as unquoted text, as Python does, but rejected */
				reject(p, CSV_ERR_TEXT_AFTER_QUOTE, line, column);
				p->state = S_UNQUOTED;
				return false;
			}
			break;
		case S_FIELD_START:
			if (c == '"')
			{
				p->state = S_QUOTED;
				p->quote_line = line;
				p->quote_column = column;
				return false;
			}
			break;
		default:
			break;
	}
	/* unquoted text, or the end of a field */
	if (c == p->delimiter)
	{
		new_field(p, line, column);
		p->state = S_FIELD_START;
		return false;
	}
	if (eol)
	{
		p->state = S_RECORD_START;
		return true;
	}
	add(p, c, line, column);
	p->state = S_UNQUOTED;
	return false;
}

/* The end of the input: true when it ends a record. */
static bool
step_eof(CsvParser *p)
{
	if (p->state == S_RECORD_START)
		return false;
	if (p->u8_need > 0)
	{
		reject(p, CSV_ERR_INVALID_UTF8, p->u8_line, p->u8_column);
		p->u8_need = 0;
	}
	/* whatever else went wrong, the open quote swallowed the rest */
	if (p->state == S_QUOTED)
	{
		p->rec_error = CSV_OK;
		reject(p, CSV_ERR_UNTERMINATED_QUOTE, p->quote_line, p->quote_column);
	}
	p->state = S_RECORD_START;
	return true;
}

static void
emit(CsvParser *p, CsvRecord *r)
{
	memset(r, 0, sizeof(*r));
	r->line = p->rec_line;
	r->error = p->rec_error;
	p->emitted = true;
	if (p->rec_error != CSV_OK)
	{
		r->error_line = p->err_line;
		r->error_column = p->err_column;
		return;
	}
	for (size_t i = 0; i < p->nfields; i++)
	{
		size_t		end = i + 1 < p->nfields ? p->starts[i + 1] : p->buf_len;

		p->fields[i].data = p->buf + p->starts[i];
		p->fields[i].len = end - p->starts[i];
	}
	r->fields = p->fields;
	r->nfields = p->nfields;
}

/* ---- delimiter detection ------------------------------------------------- */

static int
candidate(unsigned char c)
{
	for (int i = 0; i < 3; i++)
		if (c == (unsigned char) candidates[i])
			return i;
	return -1;
}

/*
 * One byte of the header through detection, which reads it as the record
 * machine would with any candidate as the delimiter: a quote opens a field
 * only at its start, and delimiters inside quotes do not count.
 */
static void
detect_step(CsvParser *p, unsigned char c)
{
	int			k = candidate(c);
	bool		eol = (c == '\r' || c == '\n');

	switch (p->dstate)
	{
		case D_LINE_START:
			if (eol)
			{
				if (c == '\r' || !p->d_prev_cr)
					p->d_line++;
				p->d_prev_cr = (c == '\r');
				return;
			}
			/* FALLTHROUGH */
		case D_FIELD_START:
			if (c == '"')
			{
				p->dstate = D_QUOTED;
				return;
			}
			break;
		case D_QUOTED:
			if (c == '"')
				p->dstate = D_QUOTE_IN_QUOTED;
			return;
		case D_QUOTE_IN_QUOTED:
			if (c == '"')
			{
				p->dstate = D_QUOTED;
				return;
			}
			break;
		default:
			break;
	}
	if (k >= 0)
	{
		p->counts[k]++;
		p->dstate = D_FIELD_START;
	}
	else if (eol)
		p->dstate = D_DONE;
	else
		p->dstate = D_UNQUOTED;
}

/*
 * Decide from the counts: the most frequent candidate; none at all is a
 * single column, read with ','; a tie for the most is refused.
 */
static void
detect_decide(CsvParser *p)
{
	int			best = 0;

	for (int i = 1; i < 3; i++)
		if (p->counts[i] > p->counts[best])
			best = i;
	for (int i = 0; i < 3; i++)
		if (i != best && p->counts[i] == p->counts[best] && p->counts[best] > 0)
		{
			fail(p, CSV_ERR_AMBIGUOUS_DELIMITER, p->d_line, 1);
			return;
		}
	p->delimiter = candidates[best];
	p->detecting = false;
	p->replay_pos = 0;
}

/* Hold a byte back for detection; decide at the header's end or the limit. */
static void
detect_byte(CsvParser *p, unsigned char c)
{
	if (p->raw == NULL)
	{
		p->raw_cap = p->max_record < 256 ? p->max_record : 256;
		p->raw = p->a.alloc(p->a.ctx, p->raw_cap);
		if (p->raw == NULL)
		{
			fail(p, CSV_ERR_NO_MEMORY, p->d_line, 1);
			return;
		}
	}
	if (!grow(p, (void **) &p->raw, &p->raw_cap, p->raw_len + 1, 1, p->max_record))
		return;
	p->raw[p->raw_len++] = c;
	detect_step(p, c);
	if (p->dstate == D_DONE || p->raw_len >= p->max_record)
		detect_decide(p);
}

/* ---- the pull loop ------------------------------------------------------- */

/*
 * A byte past the byte order mark and detection into the record machine;
 * true when a record is complete.
 */
static bool
push(CsvParser *p, unsigned char c)
{
	if (p->bom_seen >= 0)
	{
		if (c == bom[p->bom_seen])
		{
			if (++p->bom_seen == 3)
				p->bom_seen = -1;
			return false;
		}
		/* not a mark after all: its first bytes are data (none ends a line) */
		for (int i = 0, n = p->bom_seen; i < n; i++)
		{
			p->bom_seen = -1;
			(void) push(p, bom[i]);
		}
		p->bom_seen = -1;
	}
	if (p->detecting)
	{
		detect_byte(p, c);
		return false;
	}
	return step(p, c);
}

CsvStatus
csv_next(CsvParser *p, CsvRecord *record)
{
	if (p->emitted)
	{
		p->emitted = false;
		p->buf_len = 0;
		p->nfields = 0;
		p->rec_error = CSV_OK;
	}
	for (;;)
	{
		bool		done;

		if (p->failed)
		{
			*record = p->failure;
			return CSV_FAILED;
		}
		/* the header was replayed: its raw copy is not needed any more */
		if (p->raw != NULL && !p->detecting && p->replay_pos >= p->raw_len)
		{
			release(p, p->raw);
			p->raw = NULL;
			p->raw_len = p->raw_cap = p->replay_pos = 0;
		}
		if (!p->detecting && p->replay_pos < p->raw_len)
			done = step(p, p->raw[p->replay_pos++]);
		else if (p->in_pos < p->in_len)
			done = push(p, p->in[p->in_pos++]);
		else if (!p->finished)
			return CSV_NEED_INPUT;
		else if (p->bom_seen > 0)
		{
			/* the input was a prefix of the mark: data after all */
			int			n = p->bom_seen;

			p->bom_seen = -1;
			for (int i = 0; i < n; i++)
				(void) push(p, bom[i]);
			continue;
		}
		else if (p->detecting)
		{
			detect_decide(p);
			continue;
		}
		else
		{
			if (p->eof_done || !step_eof(p))
			{
				p->eof_done = true;
				return CSV_END;
			}
			p->eof_done = true;
			emit(p, record);
			return CSV_RECORD;
		}
		if (p->failed)
			continue;
		if (done)
		{
			emit(p, record);
			return CSV_RECORD;
		}
	}
}
