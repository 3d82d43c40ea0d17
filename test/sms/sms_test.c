/*
 * sms_test.c
 *		Unit tests for src/sms/sms_encoding.c: encodings, units and segment counts
 *		at every boundary the GSM 03.38 and UCS-2 rules define (the cases the
 *		public segment calculators publish: 160/153 septets, 70/67 units,
 *		extension characters costing two septets, escape pairs and surrogate
 *		pairs never split across segments), and look-alike folding.
 *		Prints "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sms/sms_encoding.h"

static int	passed,
			failed;

static char *
repeat(const char *unit, int n)
{
	size_t		u = strlen(unit);
	char	   *s = malloc(u * n + 1);

	for (int i = 0; i < n; i++)
		memcpy(s + u * i, unit, u);
	s[u * n] = '\0';
	return s;
}

static char *
concat3(char *a, const char *b, char *c)
{
	char	   *s = malloc(strlen(a) + strlen(b) + strlen(c) + 1);

	strcpy(s, a);
	strcat(s, b);
	strcat(s, c);
	return s;
}

static void
expect(const char *name, const char *body, SmsEncoding enc, int segments, int chars, int units)
{
	SmsInfo		i;
	bool		ok = sms_analyze(body, strlen(body), &i)
		&& i.encoding == enc && i.segments == segments && i.characters == chars && i.units == units;

	if (ok)
		passed++;
	else
	{
		failed++;
		printf("# got %s, %d segments, %d characters, %d units\n",
			   i.encoding == SMS_GSM7 ? "gsm7" : "ucs2", i.segments, i.characters, i.units);
	}
	printf("%s - %s\n", ok ? "ok" : "not ok", name);
}

static void
expect_fold(const char *name, const char *in, const char *want)
{
	char		out[256];
	size_t		n = sms_fold(in, strlen(in), out);
	bool		ok = n != (size_t) -1 && n == strlen(want) && memcmp(out, want, n) == 0;

	if (ok)
		passed++;
	else
		failed++;
	printf("%s - %s\n", ok ? "ok" : "not ok", name);
}

int
main(void)
{
	SmsInfo		i;

	expect("plain ASCII is GSM-7", "Hello world!", SMS_GSM7, 1, 12, 12);
	expect("160 septets fit one message", repeat("a", 160), SMS_GSM7, 1, 160, 160);
	expect("161 septets need two segments", repeat("a", 161), SMS_GSM7, 2, 161, 161);
	expect("306 septets fill two 153-septet segments", repeat("a", 306), SMS_GSM7, 2, 306, 306);
	expect("307 septets need three", repeat("a", 307), SMS_GSM7, 3, 307, 307);
	expect("the euro sign is GSM-7 and costs two septets", "€", SMS_GSM7, 1, 1, 2);
	expect("80 euro signs (160 septets) fit one message", repeat("€", 80), SMS_GSM7, 1, 80, 160);
	expect("81 euro signs: 76 pairs in the first segment, the rest in the second",
		   repeat("€", 81), SMS_GSM7, 2, 81, 162);
	expect("an escape pair is never split: 152 + [2] + 152 is three segments",
		   concat3(repeat("a", 152), "€", repeat("a", 152)), SMS_GSM7, 3, 305, 306);
	expect("extension characters ^{}\\[~]| each cost two septets", "^{}\\[~]|", SMS_GSM7, 1, 8, 16);
	expect("GSM-7 letters beyond ASCII: Ä Ö Ñ Ü § ¿ à é Δ Ω", "ÄÖÑÜ§¿àéΔΩ", SMS_GSM7, 1, 10, 10);
	expect("newlines and carriage returns are GSM-7", "a\r\nb", SMS_GSM7, 1, 4, 4);
	expect("a lower-case c cedilla is not GSM-7 (only Ç is)", "ça", SMS_UCS2, 1, 2, 2);
	expect("a backtick is not GSM-7", "`", SMS_UCS2, 1, 1, 1);
	expect("one curly quote makes the whole message UCS-2", "It’s here", SMS_UCS2, 1, 9, 9);
	expect("an emoji is UCS-2 and costs two UTF-16 units", "Hi 😀", SMS_UCS2, 1, 4, 5);
	expect("70 UCS-2 units fit one message", repeat("ж", 70), SMS_UCS2, 1, 70, 70);
	expect("71 UCS-2 units need two segments", repeat("ж", 71), SMS_UCS2, 2, 71, 71);
	expect("134 UCS-2 units fill two 67-unit segments", repeat("ж", 134), SMS_UCS2, 2, 134, 134);
	expect("a surrogate pair is never split: 66 + [2] + 66 is three segments",
		   concat3(repeat("ж", 66), "😀", repeat("ж", 66)), SMS_UCS2, 3, 133, 134);
	expect("35 emoji (70 units) fit one message", repeat("😀", 35), SMS_UCS2, 1, 35, 70);
	expect("36 emoji need two segments", repeat("😀", 36), SMS_UCS2, 2, 36, 72);
	expect("an empty body is one (empty) message", "", SMS_GSM7, 1, 0, 0);
	expect("CJK is UCS-2", "你好", SMS_UCS2, 1, 2, 2);
	if (!sms_analyze("\xff\xfe", 2, &i))
	{
		passed++;
		printf("ok - invalid UTF-8 is refused\n");
	}
	else
	{
		failed++;
		printf("not ok - invalid UTF-8 is refused\n");
	}

	expect_fold("curly quotes fold to straight ones", "It’s “great”", "It's \"great\"");
	expect_fold("dashes fold to a hyphen-minus", "a – b — c", "a - b - c");
	expect_fold("an ellipsis folds to three dots", "wait…", "wait...");
	expect_fold("no-break and thin spaces fold to a space", "10\xc2\xa0" "am\xe2\x80\x89" "ok", "10 am ok");
	expect_fold("zero-width spaces are dropped", "a\xe2\x80\x8b" "b", "ab");
	expect_fold("what has no look-alike is kept", "Grüße 😀", "Grüße 😀");
	{
		char		out[64];
		size_t		n = sms_fold("It’s …", strlen("It’s …"), out);

		if (n != (size_t) -1 && sms_analyze(out, n, &i) && i.encoding == SMS_GSM7)
		{
			passed++;
			printf("ok - folding brings a typographic message back to GSM-7\n");
		}
		else
		{
			failed++;
			printf("not ok - folding brings a typographic message back to GSM-7\n");
		}
	}
	/*
	 * Every ASCII character against GSM 03.38 as the standard lists it: one
	 * septet for the default alphabet, two for the extension table, UCS-2
	 * for the rest (the engine looks ASCII up in a table of its own).
	 */
	{
		const char *basic = "@$\n\r_ !\"#%&'()*+,-./0123456789:;<=>?"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
		const char *ext = "\f^{}\\[~]|";
		int			wrong = 0;

		for (int c = 1; c < 128; c++)
		{
			char		body[2] = {(char) c, '\0'};
			SmsInfo		i;

			if (!sms_analyze(body, 1, &i))
				wrong++;
			else if (strchr(basic, c) ? !(i.encoding == SMS_GSM7 && i.units == 1)
					 : strchr(ext, c) ? !(i.encoding == SMS_GSM7 && i.units == 2)
					 : i.encoding != SMS_UCS2)
			{
				printf("# ASCII %d: %s, %d units\n", c, i.encoding == SMS_GSM7 ? "gsm7" : "ucs2", i.units);
				wrong++;
			}
		}
		if (wrong == 0)
			passed++;
		else
			failed++;
		printf("%s - each ASCII character costs what GSM 03.38 says\n", wrong == 0 ? "ok" : "not ok");
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
