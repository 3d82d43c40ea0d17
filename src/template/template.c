/*
 * template.c
 *		Message templates: parsing a body into literal text and
 *		placeholders, and rendering it with a contact's values.  The syntax
 *		is in template.h and doc/contacts.md ("Templates").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

static const char *const error_names[TPL_ERROR_COUNT] = {
	"ok", "unclosed", "unknown", "nested", "no_memory"
};

static const char *const error_messages[TPL_ERROR_COUNT] = {
	"no error",
	"unclosed placeholder (no }} after it)",
	"unknown placeholder",
	"placeholder inside another placeholder",
	"out of memory"
};

const char *
tpl_error_name(TplError error)
{
	return (unsigned) error < TPL_ERROR_COUNT ? error_names[error] : "unknown_error";
}

const char *
tpl_error_message(TplError error)
{
	return (unsigned) error < TPL_ERROR_COUNT ? error_messages[error] : "unknown error";
}

static void *
default_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void
default_release(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The code points in s[0..len): every byte that does not continue one. */
static long
count_chars(const char *s, size_t len)
{
	long		n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

static void
trim(const char **s, size_t *len)
{
	while (*len > 0 && is_blank(**s))
	{
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && is_blank((*s)[*len - 1]))
		(*len)--;
}

static bool
is_word(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* A custom field's name as contact fields are named: [a-z][a-z0-9_]{0,39} */
static bool
is_field_name(const char *s, size_t len)
{
	if (len < 1 || len > 40 || s[0] < 'a' || s[0] > 'z')
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static void
add_part(Template *t, int slot, const char *text, size_t len)
{
	/* Empty literal text is left out; a placeholder stays even without fallback. */
	if (slot == TPL_SLOT_TEXT && len == 0)
		return;
	t->parts[t->nparts].slot = slot;
	t->parts[t->nparts].text = text;
	t->parts[t->nparts].len = len;
	t->nparts++;
}

/* The slot of a placeholder's name (blanks trimmed), or -2 when unknown. */
static int
slot_of(Template *t, const char *name, size_t len, long position)
{
	if (is_word(name, len, "first_name"))
		return TPL_SLOT_FIRST_NAME;
	if (is_word(name, len, "last_name"))
		return TPL_SLOT_LAST_NAME;
	if (is_word(name, len, "company"))
		return TPL_SLOT_COMPANY;
	if (len > 7 && memcmp(name, "custom.", 7) == 0 && is_field_name(name + 7, len - 7))
	{
		const char *f = name + 7;
		size_t		flen = len - 7;
		int			i;

		for (i = 0; i < t->nfields; i++)
			if (t->fields[i].len == flen && memcmp(t->fields[i].name, f, flen) == 0)
				return TPL_SLOT_CUSTOM + i;
		t->fields[i].name = f;
		t->fields[i].len = flen;
		t->fields[i].position = position;
		t->nfields++;
		return TPL_SLOT_CUSTOM + i;
	}
	return -2;
}

TplError
tpl_parse(const char *body, size_t len, const TplAllocator *allocator, Template **out, long *position)
{
	size_t		braces = 0;
	size_t		nparts,
				nfields,
				size;
	Template   *t;
	size_t		i = 0,
				text_start = 0;
	long		chars = 0;
	TplError	err = TPL_OK;

	*out = NULL;
	*position = 0;
	/*
	 * Each "{{" (two braces) adds at most two parts, the text before it and
	 * itself, so braces + 1 parts and half as many fields are enough.
	 */
	for (size_t k = 0; k < len; k++)
		if (body[k] == '{')
			braces++;
	nparts = braces + 1;
	nfields = braces / 2 + 1;
	size = sizeof(Template) + nparts * sizeof(TplPart) + nfields * sizeof(TplField);
	t = allocator ? allocator->alloc(allocator->ctx, size) : default_alloc(NULL, size);
	if (t == NULL)
		return TPL_ERR_NO_MEMORY;
	t->parts = (TplPart *) (t + 1);
	t->nparts = 0;
	t->fields = (TplField *) (t->parts + nparts);
	t->nfields = 0;

	while (i < len)
	{
		if (body[i] == '\\' && len - i >= 3 && body[i + 1] == '{' && body[i + 2] == '{')
		{
			/* An escaped "{{": the text so far, then the braces alone. */
			add_part(t, TPL_SLOT_TEXT, body + text_start, i - text_start);
			add_part(t, TPL_SLOT_TEXT, body + i + 1, 2);
			chars += 3;
			i += 3;
			text_start = i;
			continue;
		}
		if (body[i] == '{' && len - i >= 2 && body[i + 1] == '{')
		{
			long		at = chars + 1;
			size_t		j = i + 2,
						bar = 0;
			bool		has_bar = false;
			const char *name,
					   *fallback;
			size_t		name_len,
						fallback_len;
			int			slot;

			/* The first "}}" closes it; a "{{" before that is refused. */
			while (j + 1 < len && !(body[j] == '}' && body[j + 1] == '}'))
			{
				if (body[j] == '{' && body[j + 1] == '{')
				{
					err = TPL_ERR_NESTED;
					break;
				}
				if (body[j] == '|' && !has_bar)
				{
					has_bar = true;
					bar = j;
				}
				j++;
			}
			if (err == TPL_OK && j + 1 >= len)
				err = TPL_ERR_UNCLOSED;
			if (err != TPL_OK)
			{
				*position = at;
				break;
			}
			name = body + i + 2;
			name_len = (has_bar ? bar : j) - (i + 2);
			trim(&name, &name_len);
			fallback = has_bar ? body + bar + 1 : body + j;
			fallback_len = has_bar ? j - (bar + 1) : 0;
			trim(&fallback, &fallback_len);
			slot = slot_of(t, name, name_len, at);
			if (slot == -2)
			{
				err = TPL_ERR_UNKNOWN;
				*position = at;
				break;
			}
			add_part(t, TPL_SLOT_TEXT, body + text_start, i - text_start);
			add_part(t, slot, fallback, fallback_len);
			chars += count_chars(body + i, j + 2 - i);
			i = j + 2;
			text_start = i;
			continue;
		}
		if (((unsigned char) body[i] & 0xC0) != 0x80)
			chars++;
		i++;
	}
	if (err != TPL_OK)
	{
		tpl_free(t, allocator);
		return err;
	}
	add_part(t, TPL_SLOT_TEXT, body + text_start, len - text_start);
	*out = t;
	return TPL_OK;
}

void
tpl_free(Template *t, const TplAllocator *allocator)
{
	if (t == NULL)
		return;
	if (allocator == NULL)
		default_release(NULL, t);
	else if (allocator->release != NULL)
		allocator->release(allocator->ctx, t);
}

/* What a part renders: its text, the value, or the value's fallback. */
static TplValue
part_value(const TplPart *p, const TplValue *values)
{
	TplValue	v = {p->text, p->len};

	if (p->slot != TPL_SLOT_TEXT && values[p->slot].data != NULL && values[p->slot].len > 0)
		v = values[p->slot];
	return v;
}

size_t
tpl_render_size(const Template *t, const TplValue *values)
{
	size_t		n = 0;

	for (int i = 0; i < t->nparts; i++)
		n += part_value(&t->parts[i], values).len;
	return n;
}

size_t
tpl_render(const Template *t, const TplValue *values, char *out)
{
	size_t		n = 0;

	for (int i = 0; i < t->nparts; i++)
	{
		TplValue	v = part_value(&t->parts[i], values);

		if (v.len > 0)
			memcpy(out + n, v.data, v.len);
		n += v.len;
	}
	return n;
}
