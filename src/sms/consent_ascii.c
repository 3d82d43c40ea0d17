/*
 * consent_ascii.c
 *		eightms.consent_ascii(text): an ASCII SMS body as
 *		eightms.consent_normalize reads it, or NULL for any other body.
 *
 * Nearly every inbound SMS is plain ASCII, and receive_messages hands each
 * one to the consent rules.  For ASCII the rules' normal form comes down to
 * this: Unicode normalization leaves ASCII as it is, of the characters the
 * rules drop only the apostrophe and the backquote are ASCII, every run of
 * other characters than letters and digits becomes one space, letters are
 * upper-cased and the ends trimmed.  Done here in one pass, it gives the
 * same text as the general path (two normalizations and two regular
 * expressions in sql/consent.sql), which takes every other body.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(eightms_consent_ascii);

Datum
eightms_consent_ascii(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(body);
	int			len = VARSIZE_ANY_EXHDR(body);
	char	   *out = palloc(len + 1);
	int			n = 0;
	bool		gap = false;	/* a run of separators since the last word */

	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x80)
			PG_RETURN_NULL();
		if (c == '\'' || c == '`')
			continue;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		{
			/* A separator run becomes one space, none before the first word. */
			if (gap && n > 0)
				out[n++] = ' ';
			gap = false;
			out[n++] = (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c;
		}
		else
			gap = true;
	}
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, n));
}
