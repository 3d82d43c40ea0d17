/*
 * csv.h
 *		A streaming CSV reader (RFC 4180 with the tolerance documented in
 *		doc/csv.md).  Plain C: no PostgreSQL headers, so that it is unit
 *		tested, compared with Python's csv module and fuzzed outside the
 *		server; the extension gives it palloc through the allocator hooks.
 *
 *		The caller feeds the input in chunks of any size and pulls records:
 *
 *			p = csv_create(&options);
 *			for each chunk:
 *				csv_feed(p, chunk, len);
 *				while ((s = csv_next(p, &rec)) == CSV_RECORD)
 *					use rec;
 *				(s is CSV_NEED_INPUT, or CSV_FAILED)
 *			csv_finish(p);
 *			while ((s = csv_next(p, &rec)) == CSV_RECORD)
 *				use rec;
 *			(s is CSV_END, or CSV_FAILED)
 *			csv_destroy(p);
 *
 *		A chunk must stay readable until csv_next has returned
 *		CSV_NEED_INPUT for it (the parser copies what it keeps).  A record's
 *		fields point into a buffer the parser owns; they are valid until the
 *		next call on the parser.  Memory is bounded by the limits (the
 *		longest record), not by the input.
 */
#ifndef EIGHTMS_CSV_H
#define EIGHTMS_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Why a record was rejected (CsvRecord.error), or why the parser stopped
 * (CSV_FAILED).  The values and csv_error_name()'s strings are stable: the
 * import reports them to clients.  Keep CSV_ERROR_COUNT last.
 */
typedef enum CsvError
{
	CSV_OK = 0,
	CSV_ERR_TEXT_AFTER_QUOTE,	/* "ab"c: bytes after a closing quote */
	CSV_ERR_UNTERMINATED_QUOTE, /* a quoted field still open at the end */
	CSV_ERR_INVALID_UTF8,		/* bytes that are not UTF-8 */
	CSV_ERR_NUL_BYTE,			/* a zero byte (text cannot hold it) */
	CSV_ERR_FIELD_TOO_LONG,		/* a field over max_field bytes */
	CSV_ERR_RECORD_TOO_LONG,	/* a record's fields over max_record bytes */
	CSV_ERR_TOO_MANY_FIELDS,	/* more than max_fields fields */
	/* the two below stop the parser (CSV_FAILED) */
	CSV_ERR_AMBIGUOUS_DELIMITER,	/* detection found a tie: give it */
	CSV_ERR_NO_MEMORY,			/* the allocator returned NULL */
	CSV_ERROR_COUNT
} CsvError;

/* "ok", "text_after_quote", ...: the stable name of a code */
extern const char *csv_error_name(CsvError error);

/* A short English sentence for a code, without any of the input's bytes */
extern const char *csv_error_message(CsvError error);

/*
 * Allocator hooks: alloc and resize return NULL on failure (or do not return,
 * as palloc does); release may be NULL when the memory goes with a context.
 */
typedef struct CsvAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *(*resize) (void *ctx, void *ptr, size_t size);
	void		(*release) (void *ctx, void *ptr);
	void	   *ctx;
} CsvAllocator;

#define CSV_DEFAULT_MAX_FIELD	(64 * 1024)
#define CSV_DEFAULT_MAX_RECORD	(1024 * 1024)
#define CSV_DEFAULT_MAX_FIELDS	1024

typedef struct CsvOptions
{
	char		delimiter;		/* ',', ';' or '\t'; 0 detects it */
	size_t		max_field;		/* bytes of one field; 0: the default */
	size_t		max_record;		/* bytes of all fields of a record; 0: the default */
	size_t		max_fields;		/* fields of one record; 0: the default */
	const CsvAllocator *allocator;	/* NULL: malloc, realloc, free */
} CsvOptions;

typedef struct CsvField
{
	const char *data;			/* not NUL-terminated */
	size_t		len;
} CsvField;

typedef struct CsvRecord
{
	int64_t		line;			/* physical line (1-based) where it starts */
	const CsvField *fields;		/* nfields of them; none when error is set */
	size_t		nfields;
	CsvError	error;			/* CSV_OK, or why the record is rejected */
	int64_t		error_line;		/* where the error is: physical line, */
	int64_t		error_column;	/* and byte (1-based, the BOM not counted) */
} CsvRecord;

typedef enum CsvStatus
{
	CSV_NEED_INPUT,				/* the chunk is used up: feed or finish */
	CSV_RECORD,					/* *record is set (check its error) */
	CSV_END,					/* finished, and no record is left */
	CSV_FAILED					/* stopped: *record says why and where */
} CsvStatus;

typedef struct CsvParser CsvParser;

/* NULL when the options are invalid or the first allocation fails */
extern CsvParser *csv_create(const CsvOptions *options);
extern void csv_feed(CsvParser *p, const char *data, size_t len);
extern void csv_finish(CsvParser *p);
extern CsvStatus csv_next(CsvParser *p, CsvRecord *record);

/* The delimiter in use: given, detected, or 0 while not yet known */
extern char csv_delimiter(const CsvParser *p);
extern void csv_destroy(CsvParser *p);

#endif							/* EIGHTMS_CSV_H */
