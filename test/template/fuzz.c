/*
 * fuzz.c
 *		libFuzzer target for the template parser (make template-fuzz): any
 *		bytes as a body.  Beyond what ASan and UBSan catch, it traps when an
 *		invariant breaks:
 *		- a refusal's position, and each custom field's, is a character of
 *		  the body (1 to its number of code points);
 *		- every part's text and every field's name lie inside the body, and
 *		  a field's name is a valid field name, named once;
 *		- rendering writes exactly the length tpl_render_size said, and with
 *		  every value missing it is no longer than the body (only pieces of
 *		  the body are rendered);
 *		- a body without a brace is accepted and renders as itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template/template.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
inside(const char *p, size_t n, const char *body, size_t len)
{
	return n == 0 || (p >= body && n <= len && (size_t) (p - body) <= len - n);
}

static void
render_check(const Template *t, const TplValue *values, size_t bound)
{
	size_t		n = tpl_render_size(t, values);
	char	   *out = malloc(n + 1);

	if (out == NULL)
		return;
	if (tpl_render(t, values, out) != n || n > bound)
		__builtin_trap();
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *) data;
	Template   *t;
	long		pos;
	long		chars = 0;
	TplError	err;

	for (size_t i = 0; i < size; i++)
		if ((data[i] & 0xC0) != 0x80)
			chars++;
	err = tpl_parse(body, size, NULL, &t, &pos);
	if (err != TPL_OK)
	{
		if (t != NULL || pos < 1 || pos > chars || err >= TPL_ERROR_COUNT)
			__builtin_trap();
		return 0;
	}
	if (t == NULL || t->nparts < 0 || t->nfields < 0)
		__builtin_trap();
	for (int i = 0; i < t->nparts; i++)
		if (!inside(t->parts[i].text, t->parts[i].len, body, size)
			|| t->parts[i].slot < TPL_SLOT_TEXT || t->parts[i].slot >= TPL_SLOT_CUSTOM + t->nfields)
			__builtin_trap();
	for (int i = 0; i < t->nfields; i++)
	{
		const TplField *f = &t->fields[i];

		if (!inside(f->name, f->len, body, size) || f->len < 1 || f->len > 40
			|| f->position < 1 || f->position > chars)
			__builtin_trap();
		for (size_t k = 0; k < f->len; k++)
			if (!((f->name[k] >= 'a' && f->name[k] <= 'z') || (k > 0 && ((f->name[k] >= '0' && f->name[k] <= '9') || f->name[k] == '_'))))
				__builtin_trap();
		for (int j = 0; j < i; j++)
			if (t->fields[j].len == f->len && memcmp(t->fields[j].name, f->name, f->len) == 0)
				__builtin_trap();
	}

	{
		TplValue   *values = calloc(TPL_SLOT_CUSTOM + t->nfields, sizeof(TplValue));

		if (values != NULL)
		{
			/* every value missing: only pieces of the body */
			render_check(t, values, size);
			/* every value a piece of the body itself */
			for (int i = 0; i < TPL_SLOT_CUSTOM + t->nfields; i++)
			{
				values[i].data = body + (size ? (size_t) i % size : 0);
				values[i].len = size ? size - (size_t) i % size : 0;
			}
			render_check(t, values, (size_t) -1);
			free(values);
		}
	}
	if (memchr(body, '{', size) == NULL)
	{
		char	   *out = malloc(size + 1);

		if (out != NULL)
		{
			if (tpl_render(t, NULL, out) != size || (size && memcmp(out, body, size) != 0))
				__builtin_trap();
			free(out);
		}
	}
	tpl_free(t, NULL);
	return 0;
}
