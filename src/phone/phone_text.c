/*
 * phone_text.c
 *		Code points: the Unicode classes libphonenumber takes from ICU (digits,
 *		letters and numbers, plus signs, punctuation) and UTF-8 decoding.
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

/* ------------------------------------------------------------------ text */

/* digit_zeros[] and letter_number_ranges[], generated from ICU. */
#include "tables/unicode.h"

static int	digit_value_slow(uint32_t c);

/*
 * ASCII classes, one lookup instead of a chain of comparisons:
 *	C_PUNCT  is_punct()
 *	C_ALPHA  is_ascii_alpha()
 *	C_PLAIN  what may_have_extension() finds no extension in
 *	C_LABEL  is_label_char()
 */
#define C_PUNCT 1
#define C_ALPHA 2
#define C_PLAIN 4
#define C_LABEL 8

static const uint8_t ascii_class[128] = {
	['\t'] = C_LABEL,
	[' '] = C_PUNCT | C_PLAIN | C_LABEL,
	['#'] = C_LABEL,
	['('] = C_PUNCT | C_PLAIN,
	[')'] = C_PUNCT | C_PLAIN,
	['*'] = C_PUNCT,
	['+'] = C_PLAIN,
	[','] = C_LABEL,
	['-'] = C_PUNCT | C_PLAIN | C_LABEL,
	['.'] = C_PUNCT | C_PLAIN | C_LABEL,
	['/'] = C_PUNCT | C_PLAIN,
	['0'] = C_PLAIN,
	['1'] = C_PLAIN,
	['2'] = C_PLAIN,
	['3'] = C_PLAIN,
	['4'] = C_PLAIN,
	['5'] = C_PLAIN,
	['6'] = C_PLAIN,
	['7'] = C_PLAIN,
	['8'] = C_PLAIN,
	['9'] = C_PLAIN,
	[':'] = C_LABEL,
	[';'] = C_LABEL,
	['='] = C_LABEL,
	['['] = C_PUNCT,
	[']'] = C_PUNCT,
	['~'] = C_PUNCT | C_LABEL,
	['A'] = C_ALPHA | C_LABEL,
	['B'] = C_ALPHA,
	['C'] = C_ALPHA,
	['D'] = C_ALPHA,
	['E'] = C_ALPHA | C_LABEL,
	['F'] = C_ALPHA,
	['G'] = C_ALPHA,
	['H'] = C_ALPHA,
	['I'] = C_ALPHA | C_LABEL,
	['J'] = C_ALPHA,
	['K'] = C_ALPHA,
	['L'] = C_ALPHA,
	['M'] = C_ALPHA,
	['N'] = C_ALPHA | C_LABEL,
	['O'] = C_ALPHA | C_LABEL,
	['P'] = C_ALPHA,
	['Q'] = C_ALPHA,
	['R'] = C_ALPHA,
	['S'] = C_ALPHA | C_LABEL,
	['T'] = C_ALPHA | C_LABEL,
	['U'] = C_ALPHA,
	['V'] = C_ALPHA,
	['W'] = C_ALPHA,
	['X'] = C_PUNCT | C_ALPHA | C_LABEL,
	['Y'] = C_ALPHA,
	['Z'] = C_ALPHA,
	['a'] = C_ALPHA | C_LABEL,
	['b'] = C_ALPHA,
	['c'] = C_ALPHA,
	['d'] = C_ALPHA,
	['e'] = C_ALPHA | C_LABEL,
	['f'] = C_ALPHA,
	['g'] = C_ALPHA,
	['h'] = C_ALPHA,
	['i'] = C_ALPHA | C_LABEL,
	['j'] = C_ALPHA,
	['k'] = C_ALPHA,
	['l'] = C_ALPHA,
	['m'] = C_ALPHA,
	['n'] = C_ALPHA | C_LABEL,
	['o'] = C_ALPHA | C_LABEL,
	['p'] = C_ALPHA,
	['q'] = C_ALPHA,
	['r'] = C_ALPHA,
	['s'] = C_ALPHA | C_LABEL,
	['t'] = C_ALPHA | C_LABEL,
	['u'] = C_ALPHA,
	['v'] = C_ALPHA,
	['w'] = C_ALPHA,
	['x'] = C_PUNCT | C_ALPHA | C_LABEL,
	['y'] = C_ALPHA,
	['z'] = C_ALPHA,
};

/* The digit value of a code point, or -1. */
static inline int
digit_value(uint32_t c)
{
	if (c - '0' <= 9)
		return (int) (c - '0');
	if (c < 0x660)
		return -1;
	return digit_value_slow(c);
}

/* Outside ASCII: the last run of ten whose zero is at or below c. */
static int
digit_value_slow(uint32_t c)
{
	size_t		lo = 1,
				hi = sizeof(digit_zeros) / sizeof(digit_zeros[0]);

	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;

		if (digit_zeros[mid] <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (c - digit_zeros[lo - 1] <= 9)
		return (int) (c - digit_zeros[lo - 1]);
	return -1;
}

static bool
is_plus(uint32_t c)
{
	return c == '+' || c == 0xFF0B;
}

static inline bool
is_ascii_alpha(uint32_t c)
{
	return c < 0x80 && (ascii_class[c] & C_ALPHA);
}

/*
 * libphonenumber's VALID_PUNCTUATION (plus the star sign), as its C++ build
 * has it: without the full-width tilde, which only starts an extension.
 */
static inline bool
is_punct(uint32_t c)
{
	if (c < 0x80)
		return (ascii_class[c] & C_PUNCT) != 0;
	return (c >= 0x2010 && c <= 0x2015) || c == 0x2212 || c == 0x30FC
		|| (c >= 0xFF0D && c <= 0xFF0F) || c == 0x00A0 || c == 0x00AD || c == 0x200B
		|| c == 0x2060 || c == 0x3000 || c == 0xFF08 || c == 0xFF09 || c == 0xFF3B
		|| c == 0xFF3D || c == 0x2053 || c == 0x223C;
}

/* Letters and numbers (\p{L}, \p{N}), for trimming the end of the input. */
static bool
is_letter_or_number(uint32_t c)
{
	size_t		lo = 0,
				hi = sizeof(letter_number_ranges) / sizeof(letter_number_ranges[0]);

	if (c < 0x80)
		return is_ascii_alpha(c) || (c >= '0' && c <= '9');
	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;

		if (letter_number_ranges[mid][1] < c)
			lo = mid + 1;
		else if (letter_number_ranges[mid][0] > c)
			hi = mid;
		else
			return true;
	}
	return false;
}

/*
 * libphonenumber decodes its input with a UTF-8 reader that also refuses
 * code points not valid for interchange: C0 controls but tab, line feed,
 * form feed and carriage return; DEL and the C1 controls; noncharacters.
 * Any of them anywhere in the input, it reads as no number.
 */
static bool
interchange_valid(uint32_t c)
{
	if (c < 0x20)
		return c == '\t' || c == '\n' || c == '\f' || c == '\r';
	if (c >= 0x7F && c <= 0x9F)
		return false;
	if (c >= 0xFDD0 && c <= 0xFDEF)
		return false;
	return (c & 0xFFFE) != 0xFFFE;
}

/* Line terminators, where a regular expression's "." stops (ICU). */
static bool
is_line_end(uint32_t c)
{
	return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x85
		|| c == 0x2028 || c == 0x2029;
}

/*
 * Decode UTF-8; -1 on invalid input.  *printable: the input was printable
 * ASCII only (no code point libphonenumber refuses, no line end).
 */
static int
decode(const char *s, size_t len, uint32_t *cp, int max, bool *printable)
{
	int			n = 0;
	size_t		i = 0;
	unsigned	other = 0;

	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		uint32_t	v;
		int			extra;

		if (n == max)
			return -1;
		if (c < 0x80)
		{
			cp[n++] = c;
			i++;
			other |= (unsigned) (c - 0x20) >= 0x5F;
			continue;
		}
		other = 1;
		if ((c & 0xE0) == 0xC0)
		{
			v = c & 0x1F;
			extra = 1;
		}
		else if ((c & 0xF0) == 0xE0)
		{
			v = c & 0x0F;
			extra = 2;
		}
		else if ((c & 0xF8) == 0xF0)
		{
			v = c & 0x07;
			extra = 3;
		}
		else
			return -1;
		for (int k = 1; k <= extra; k++)
		{
			if (i + k >= len || ((unsigned char) s[i + k] & 0xC0) != 0x80)
				return -1;
			v = (v << 6) | ((unsigned char) s[i + k] & 0x3F);
		}
		if ((extra == 1 && v < 0x80) || (extra == 2 && v < 0x800) || (extra == 3 && v < 0x10000)
			|| v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
			return -1;
		cp[n++] = v;
		i += extra + 1;
	}
	*printable = other == 0;
	return n;
}
