/*
 * template.h
 *		Message templates (doc/contacts.md, "Templates"): a body with
 *		placeholders {{first_name}}, {{last_name}}, {{company}} and
 *		{{custom.<field>}}, each with an optional fallback after a bar
 *		({{first_name|there}}), parsed once and rendered for many contacts.
 *		Plain C: no PostgreSQL headers, so that it is unit tested and fuzzed
 *		outside the server; the extension gives it palloc through the
 *		allocator hooks.
 *
 *		The syntax:
 *		- "{{", then the name with any blanks around it, an optional "|" and
 *		  fallback, then "}}"; the fallback is everything up to the "}}",
 *		  blanks trimmed at both ends;
 *		- "\{{" is a literal "{{" (the backslash dropped); a backslash
 *		  anywhere else, a lone brace and a "}}" outside a placeholder are
 *		  literal text;
 *		- a value that is missing or empty renders its fallback, or nothing.
 *
 *		A parsed template points into the body it was parsed from: the body
 *		must outlive it.
 */
#ifndef EIGHTMS_TEMPLATE_H
#define EIGHTMS_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* Why a body was refused.  Values and names are stable. */
typedef enum TplError
{
	TPL_OK = 0,
	TPL_ERR_UNCLOSED,			/* "{{" without a "}}" after it */
	TPL_ERR_UNKNOWN,			/* a name that is not a placeholder */
	TPL_ERR_NESTED,				/* "{{" inside a placeholder */
	TPL_ERR_NO_MEMORY,			/* the allocator returned NULL */
	TPL_ERROR_COUNT
} TplError;

/* "ok", "unclosed", ...: the stable name of a code */
extern const char *tpl_error_name(TplError error);

/* A short English sentence for a code, without any of the body's bytes */
extern const char *tpl_error_message(TplError error);

typedef struct TplAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void		(*release) (void *ctx, void *ptr);	/* may be NULL */
	void	   *ctx;
} TplAllocator;

/* The values a placeholder takes: its slot in the values array */
#define TPL_SLOT_FIRST_NAME	0
#define TPL_SLOT_LAST_NAME	1
#define TPL_SLOT_COMPANY	2
#define TPL_SLOT_CUSTOM		3		/* custom field i is slot 3 + i */
#define TPL_SLOT_TEXT		(-1)	/* literal text, not a placeholder */

typedef struct TplPart
{
	int			slot;			/* TPL_SLOT_*, or TPL_SLOT_TEXT */
	const char *text;			/* literal text, or the fallback */
	size_t		len;
} TplPart;

/* A custom field a template names, at its first placeholder */
typedef struct TplField
{
	const char *name;
	size_t		len;
	long		position;		/* character (code point) of its "{{", from 1 */
} TplField;

typedef struct Template
{
	TplPart    *parts;
	int			nparts;
	TplField   *fields;			/* each custom field once, in order of appearance */
	int			nfields;
} Template;

/* A value: data NULL or len 0 means missing (the fallback renders). */
typedef struct TplValue
{
	const char *data;
	size_t		len;
} TplValue;

/*
 * Parse body (len bytes, UTF-8).  On success *out holds the template (one
 * block from the allocator; NULL hooks mean malloc and free) and TPL_OK is
 * returned; otherwise the error and, in *position, the character (code
 * point, from 1) of the "{{" that opens the placeholder at fault.
 */
extern TplError tpl_parse(const char *body, size_t len, const TplAllocator *allocator,
						  Template **out, long *position);

/* Release a template from tpl_parse with the same allocator. */
extern void tpl_free(Template *t, const TplAllocator *allocator);

/*
 * The rendered length for these values (values has TPL_SLOT_CUSTOM +
 * t->nfields entries), then the rendering itself into out (that many
 * bytes; not terminated); tpl_render returns the bytes written.
 */
extern size_t tpl_render_size(const Template *t, const TplValue *values);
extern size_t tpl_render(const Template *t, const TplValue *values, char *out);

#endif							/* EIGHTMS_TEMPLATE_H */
