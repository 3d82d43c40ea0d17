/*
 * phone.c
 *		Parse, validate and format phone numbers as libphonenumber does
 *		(PhoneNumberUtil::Parse, Format(E164), IsValidNumber, GetNumberType,
 *		GetRegionCodeForNumber), over tables generated from Google's metadata.
 *
 * Plain C, no allocation: every buffer is on the stack and bounded by the
 * 250-character input limit libphonenumber also applies.
 */
#include "phone.h"

#include <string.h>

#define MAXCP PHONE_MAX_INPUT

/* Rare paths kept out of the inline fast ones, and hot steps kept in them. */
#define NOINLINE __attribute__((noinline))
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Parsing reads the first cache line of a PhoneRegion alone (src/phone.h). */
_Static_assert(offsetof(PhoneRegion, npp_first) + sizeof(uint16_t) <= 64,
			   "PhoneRegion: what parsing reads must fit in its first cache line");

enum
{
	OP_SET, OP_SPLIT, OP_JMP, OP_SAVE, OP_END, OP_MATCH
};

/* ------------------------------------------------------------------ text */

/* digit_zeros[] and letter_number_ranges[], generated from ICU. */
#include "phonemeta/unicode.h"

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

/* ------------------------------------------------------- metadata lookups */

static const PhoneRegion *
region_by_id(const PhoneTables *t, const char *id)
{
	int			i;

	if (id == NULL || id[0] < 'A' || id[0] > 'Z' || id[1] < 'A' || id[1] > 'Z' || id[2] != '\0')
		return NULL;
	i = t->id_index[(id[0] - 'A') * 26 + (id[1] - 'A')];
	return i < 0 ? NULL : &t->regions[i];
}

/* The main region (or non-geographic entity) for a calling code. */
static const PhoneRegion *
region_for_code(const PhoneTables *t, int cc)
{
	if (cc <= 0 || cc >= 1000 || t->cc_count[cc] == 0)
		return NULL;
	return &t->regions[t->cc_list[t->cc_first[cc]]];
}

/* ------------------------------------------------------------- matching */

static bool
dfa_full_match(const PhoneTables *t, int32_t start, const char *digits, int len)
{
	uint32_t	s = (uint32_t) start;

	if (start < 0)
		return false;
	for (int i = 0; i < len; i++)
	{
		s = t->dfa_next[s][digits[i] - '0'];
		if (s == 0)
			return false;
	}
	return t->dfa_accept[s] != 0;
}

/*
 * Leftmost-first backtracking match of a prefix program at the start of
 * digits, as RE2's Consume.  The depth is bounded by the program and the
 * input, both small; a step budget guards against pathological programs.
 */
typedef struct Matcher
{
	const PhoneInst *prog;
	const char *s;
	int			len;
	int			caps[8];
	int			budget;
} Matcher;

static int
run(Matcher *m, int pc, int sp)
{
	for (;;)
	{
		const PhoneInst *in = &m->prog[pc];

		if (--m->budget < 0)
			return -1;
		switch (in->op)
		{
			case OP_SET:
				if (sp >= m->len || !((in->x >> (m->s[sp] - '0')) & 1))
					return -1;
				sp++;
				pc++;
				break;
			case OP_JMP:
				pc = in->x;
				break;
			case OP_SPLIT:
				{
					int			saved[8];
					int			r;

					memcpy(saved, m->caps, sizeof(saved));
					r = run(m, in->x, sp);
					if (r >= 0)
						return r;
					memcpy(m->caps, saved, sizeof(saved));
					pc = in->y;
					break;
				}
			case OP_SAVE:
				if (in->x < 8)
					m->caps[in->x] = sp;
				pc++;
				break;
			case OP_END:
				if (sp != m->len)
					return -1;
				pc++;
				break;
			case OP_MATCH:
				return sp;
			default:
				return -1;
		}
	}
}

/* prefix_match's backtracking part: the program from the start of digits. */
static NOINLINE int
prefix_run(const PhoneTables *t, int32_t prog, const char *digits, int len, int *caps)
{
	Matcher		m;
	int			r;

	m.prog = t->prog + 0;
	m.s = digits;
	m.len = len;
	m.budget = 100000;
	for (int i = 0; i < 8; i++)
		m.caps[i] = -1;
	r = run(&m, prog, 0);
	if (caps)
		memcpy(caps, m.caps, sizeof(m.caps));
	return r;
}

/*
 * Length of the anchored match at the start of digits, or -1; caps (8
 * slots), when wanted, get the groups.  dfa is the pattern's DFA, or -1.
 *
 * The DFA goes first, to the first accepting state: where it dies before
 * one, no prefix matches (it ignores the end-of-input assertion, so it may
 * say yes where the program says no, never the other way round).  An
 * accepting state marked 2 has no way on and comes from a pattern without
 * "$": the match ends there, and only the groups need the program.
 * first has bit d set where the DFA does not die on a first digit d.
 * Inline: most calls end in the DFA, in a few steps.
 */
static inline int
prefix_match(const PhoneTables *t, int32_t prog, int32_t dfa, uint16_t first, const char *digits,
			 int len, int *caps)
{
	if (prog < 0)
		return -1;
	if (dfa >= 0)
	{
		uint32_t	s = (uint32_t) dfa;
		int			i = 0;

		/* Where most walks end, the first digit, told by one bit. */
		if (len > 0 && !((first >> (digits[0] - '0')) & 1))
			goto none;
		while (!t->dfa_accept[s])
		{
			if (i == len || (s = t->dfa_next[s][digits[i++] - '0']) == 0)
				goto none;
		}
		if (t->dfa_accept[s] == 2 && caps == NULL)
			return i;
	}
	return prefix_run(t, prog, digits, len, caps);

none:
	if (caps)
		for (int k = 0; k < 8; k++)
			caps[k] = -1;
	return -1;
}

/* ---------------------------------------------------------- validation */

static PhoneLength
test_length(const PhoneRegion *r, int len)
{
	uint32_t	lens = r->lengths;
	int			min,
				max;

	if (lens == 0)
		return PHONE_INVALID_LENGTH;
	if (len < 32 && ((r->local_only >> len) & 1))
		return PHONE_IS_POSSIBLE_LOCAL_ONLY;
	min = __builtin_ctz(lens);
	max = 31 - __builtin_clz(lens);
	if (len == min)
		return PHONE_IS_POSSIBLE;
	if (len < min)
		return PHONE_LENGTH_TOO_SHORT;
	if (len > max)
		return PHONE_LENGTH_TOO_LONG;
	return ((lens >> len) & 1) ? PHONE_IS_POSSIBLE : PHONE_INVALID_LENGTH;
}

static bool
matches_desc(const PhoneTables *t, const PhoneDesc *d, const char *nsn, int len)
{
	if (d->dfa < 0)
		return false;
	if (d->lengths != 0 && (len >= 32 || !((d->lengths >> len) & 1)))
		return false;
	return dfa_full_match(t, d->dfa, nsn, len);
}

static PhoneType
type_helper(const PhoneTables *t, const PhoneRegion *r, const char *nsn, int len)
{
	static const struct
	{
		int			desc;
		PhoneType	type;
	}			order[] = {
		{PHONE_DESC_PREMIUM_RATE, PHONE_PREMIUM_RATE},
		{PHONE_DESC_TOLL_FREE, PHONE_TOLL_FREE},
		{PHONE_DESC_SHARED_COST, PHONE_SHARED_COST},
		{PHONE_DESC_VOIP, PHONE_VOIP},
		{PHONE_DESC_PERSONAL, PHONE_PERSONAL_NUMBER},
		{PHONE_DESC_PAGER, PHONE_PAGER},
		{PHONE_DESC_UAN, PHONE_UAN},
		{PHONE_DESC_VOICEMAIL, PHONE_VOICEMAIL},
	};

	if (!dfa_full_match(t, r->general, nsn, len))
		return PHONE_UNKNOWN;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (matches_desc(t, &r->desc[order[i].desc], nsn, len))
			return order[i].type;
	if (matches_desc(t, &r->desc[PHONE_DESC_FIXED_LINE], nsn, len))
	{
		if (r->same_fixed_mobile)
			return PHONE_FIXED_LINE_OR_MOBILE;
		if (matches_desc(t, &r->desc[PHONE_DESC_MOBILE], nsn, len))
			return PHONE_FIXED_LINE_OR_MOBILE;
		return PHONE_FIXED_LINE;
	}
	if (!r->same_fixed_mobile && matches_desc(t, &r->desc[PHONE_DESC_MOBILE], nsn, len))
		return PHONE_MOBILE;
	return PHONE_UNKNOWN;
}

/* ------------------------------------------------------------- parsing */

/*
 * strip_national_prefix for a region with a transform rule: the prefix
 * pattern's groups say what replaces it.
 */
static NOINLINE const char *
strip_with_transform(const PhoneTables *t, const PhoneRegion *r, const char *num, int *len,
					 char *buf)
{
	int			caps[8];
	int			end;
	bool		viable;
	int			n;

	end = prefix_match(t, r->npp, r->npp_dfa, r->npp_first, num, *len, caps);
	if (end < 0)
		return num;
	viable = !r->npp_never_general && dfa_full_match(t, r->general, num, *len);

	{
		int			g = r->npp_groups >= 2 ? 2 : 1;

		if (caps[2 * g] >= 0 && caps[2 * g + 1] > caps[2 * g])
		{
			/* Replace the prefix with the transform rule, $n substituted. */
			n = 0;
			for (const char *p = r->transform; *p; p++)
			{
				if (*p == '$' && p[1] >= '0' && p[1] <= '9')
				{
					int			k = *++p - '0';

					if (k < 4 && caps[2 * k] >= 0 && caps[2 * k + 1] >= caps[2 * k])
					{
						memcpy(buf + n, num + caps[2 * k], caps[2 * k + 1] - caps[2 * k]);
						n += caps[2 * k + 1] - caps[2 * k];
					}
				}
				else if (n < 32)
					buf[n++] = *p;
			}
			memcpy(buf + n, num + end, *len - end);
			n += *len - end;
			if (viable && !dfa_full_match(t, r->general, buf, n))
				return num;
			if (n > MAXCP)
				return num;
			*len = n;
			return buf;
		}
	}
	if (viable && !dfa_full_match(t, r->general, num + end, *len - end))
		return num;
	*len -= end;
	return num + end;
}

/*
 * MaybeStripNationalPrefixAndCarrierCode on the digits num[0, *len), read
 * in place: returns where the number starts then (num when nothing goes, a
 * point in it when a prefix goes, buf, of MAXCP + 64 bytes, when the
 * transform rule rewrites it), *len its length.  Inline where it is called:
 * on its own it cost a call, a frame and *len in memory on every parse.
 */
static ALWAYS_INLINE const char *
strip_national_prefix(const PhoneTables *t, const PhoneRegion *r, const char *num, int *len,
					  char *buf)
{
	int			end;

	if (*len == 0 || r->npp < 0)
		return num;
	/* The groups only matter to a transform rule. */
	if (r->npp_groups >= 1 && r->transform[0] != '\0')
		return strip_with_transform(t, r, num, len, buf);
	end = prefix_match(t, r->npp, r->npp_dfa, r->npp_first, num, *len, NULL);
	if (end < 0)
		return num;

	/*
	 * Not when the number matched the general pattern and what is left does
	 * not: the stripped number first, as it nearly always matches.  Most
	 * regions' general pattern never starts with their national prefix
	 * (tables' npp_never_general), and there is nothing to weigh.
	 */
	if (!r->npp_never_general
		&& !dfa_full_match(t, r->general, num + end, *len - end)
		&& dfa_full_match(t, r->general, num, *len))
		return num;
	*len -= end;
	return num + end;
}

/* Keypad letters, A to Z. */
static const char keypad[] = "22233344455566677778889999";

/* Normalize: vanity letters when there are three or more, digits only. */
static int
normalize(const uint32_t *cp, int n, char *out)
{
	int			letters = 0;
	int			o = 0;

	/* Digits alone, unless three letters turn up on the way. */
	for (int i = 0; i < n && letters < 3; i++)
	{
		int			d = digit_value(cp[i]);

		if (d >= 0)
			out[o++] = (char) ('0' + d);
		else
			letters += is_ascii_alpha(cp[i]);
	}
	if (letters < 3)
		return o;
	/* Vanity: ASCII digits and keypad letters (other digits are dropped). */
	o = 0;
	for (int i = 0; i < n; i++)
	{
		uint32_t	c = cp[i];

		if (c >= '0' && c <= '9')
			out[o++] = (char) c;
		else if (is_ascii_alpha(c))
			out[o++] = keypad[(c | 0x20) - 'a'];
	}
	return o;
}

/* ------------------------------------------------------------ extensions */

static bool
is_ext_sep(uint32_t c, bool comma)
{
	return c == ' ' || c == 0xA0 || c == '\t' || (comma && c == ',');
}

static bool
is_after_label(uint32_t c)
{
	return c == ' ' || c == 0xA0 || c == '\t' || c == ',' || c == '-';
}

static uint32_t
lower(uint32_t c)
{
	/* ASCII first: nearly every character the extension search looks at */
	if (c < 0x80)
		return c - 'A' <= 'Z' - 'A' ? c + 32 : c;
	if (c >= 0xFF21 && c <= 0xFF3A)
		return c + 32;
	if (c >= 0x410 && c <= 0x42F)
		return c + 32;
	if (c == 0xD3)
		return 0xF3;
	return c;
}

/*
 * At position i, after the label: [:.．]? [ \t,-]* digits{1,max} #? end.
 * Returns the start of the digits, or -1.
 */
static int
ext_tail(const uint32_t *cp, int n, int i, int max, bool hash_required)
{
	int			d0;
	int			nd = 0;

	if (i < n && (cp[i] == ':' || cp[i] == '.' || cp[i] == 0xFF0E) && !hash_required)
		i++;
	if (!hash_required)
		while (i < n && is_after_label(cp[i]))
			i++;
	d0 = i;
	while (i < n && digit_value(cp[i]) >= 0)
	{
		i++;
		nd++;
	}
	if (nd < 1 || nd > max)
		return -1;
	if (i < n && cp[i] == '#')
		i++;
	else if (hash_required)
		return -1;
	return i == n ? d0 : -1;
}

/* Match one of libphonenumber's label words at i; returns the end or -1. */
static int
match_word(const uint32_t *cp, int n, int i, const uint32_t *w)
{
	for (; *w; w++, i++)
		if (i >= n || lower(cp[i]) != *w)
			return -1;
	return i;
}

/* The extension alternatives, in the order libphonenumber tries them. */
static int
ext_at(const uint32_t *cp, int n, int s)
{
	int			i,
				j,
				d;
	uint32_t	c0 = s < n ? lower(cp[s]) : 0;

	/* Each form starts with a separator, a label's first letter or a mark. */
	if (!(c0 == ' ' || c0 == 0xA0 || c0 == '\t' || c0 == ',' || c0 == ';' || c0 == '-'
		  || c0 == 'e' || c0 == 'x' || c0 == 'a' || c0 == 'i' || c0 == '#' || c0 == '~'
		  || c0 == 0xFF45 || c0 == 0xFF58 || c0 == 0xFF49 || c0 == 0xFF03 || c0 == 0xFF5E
		  || c0 == 0x434))
		return -1;

	/* ;ext=digits{1,20} */
	{
		static const uint32_t rfc[] = {';', 'e', 'x', 't', '=', 0};

		j = c0 == ';' ? match_word(cp, n, s, rfc) : -1;
		if (j >= 0)
		{
			int			nd = 0;

			for (i = j; i < n && digit_value(cp[i]) >= 0; i++)
				nd++;
			if (i == n && nd >= 1 && nd <= 20)
				return j;
		}
	}
	/* explicit labels */
	i = s;
	while (i < n && is_ext_sep(cp[i], true))
		i++;
	{
		static const uint32_t anexo[] = {'a', 'n', 'e', 'x', 'o', 0};
		static const uint32_t dob[] = {0x434, 0x43E, 0x431, 0};
		int			ends[8];
		int			ne = 0;

		/* e?xt(?:ensi(?:o\u0301?|ó))?n? : try the longer spellings first */
		j = i;
		if (j < n && lower(cp[j]) == 'e')
			j++;
		if (j + 1 < n && lower(cp[j]) == 'x' && lower(cp[j + 1]) == 't')
		{
			int			k = j + 2;
			static const uint32_t ensi[] = {'e', 'n', 's', 'i', 0};
			int			m = match_word(cp, n, k, ensi);

			if (m >= 0)
			{
				if (m < n && lower(cp[m]) == 'o')
				{
					int			o = m + 1;

					if (o < n && cp[o] == 0x301)
					{
						if (o + 1 < n && lower(cp[o + 1]) == 'n')
							ends[ne++] = o + 2;
						ends[ne++] = o + 1;
					}
					if (o < n && lower(cp[o]) == 'n')
						ends[ne++] = o + 1;
					ends[ne++] = o;
				}
				else if (m < n && lower(cp[m]) == 0xF3)
				{
					if (m + 1 < n && lower(cp[m + 1]) == 'n')
						ends[ne++] = m + 2;
					ends[ne++] = m + 1;
				}
			}
			if (k < n && lower(cp[k]) == 'n')
				ends[ne++] = k + 1;
			ends[ne++] = k;
		}
		/* ｅ?ｘｔｎ? */
		j = i;
		if (j < n && lower(cp[j]) == 0xFF45)
			j++;
		if (j + 1 < n && lower(cp[j]) == 0xFF58 && lower(cp[j + 1]) == 0xFF54)
		{
			if (j + 2 < n && lower(cp[j + 2]) == 0xFF4E)
				ends[ne++] = j + 3;
			ends[ne++] = j + 2;
		}
		/* the words' first letters, before the calls */
		if (i < n && lower(cp[i]) == 0x434 && (j = match_word(cp, n, i, dob)) >= 0)
			ends[ne++] = j;
		if (i < n && (cp[i] | 0x20) == 'a' && (j = match_word(cp, n, i, anexo)) >= 0)
			ends[ne++] = j;
		for (int e = 0; e < ne; e++)
			if ((d = ext_tail(cp, n, ends[e], 20, false)) >= 0)
				return d;
	}
	/* ambiguous labels: [xｘ#＃~～] | int | ｉｎｔ */
	if (i < n)
	{
		static const uint32_t intw[] = {'i', 'n', 't', 0};
		static const uint32_t intfw[] = {0xFF49, 0xFF4E, 0xFF54, 0};
		uint32_t	c = lower(cp[i]);

		if (c == 'x' || c == 0xFF58 || c == '#' || c == 0xFF03 || c == '~' || c == 0xFF5E)
			if ((d = ext_tail(cp, n, i + 1, 9, false)) >= 0)
				return d;
		if (c == 'i' && (j = match_word(cp, n, i, intw)) >= 0
			&& (d = ext_tail(cp, n, j, 9, false)) >= 0)
			return d;
		if (c == 0xFF49 && (j = match_word(cp, n, i, intfw)) >= 0
			&& (d = ext_tail(cp, n, j, 9, false)) >= 0)
			return d;
	}
	/* American style: [- ]+ digits{1,6} # */
	i = s;
	if (i < n && (cp[i] == '-' || cp[i] == ' '))
	{
		while (i < n && (cp[i] == '-' || cp[i] == ' '))
			i++;
		if ((d = ext_tail(cp, n, i, 6, true)) >= 0)
			return d;
	}
	/* auto-dialling: [ \t]* (,,|;) ... digits{1,15} */
	i = s;
	while (i < n && is_ext_sep(cp[i], false))
		i++;
	if (i + 1 < n && cp[i] == ',' && cp[i + 1] == ',' && (d = ext_tail(cp, n, i + 2, 15, false)) >= 0)
		return d;
	if (i < n && cp[i] == ';' && (d = ext_tail(cp, n, i + 1, 15, false)) >= 0)
		return d;
	/* commas only: [ \t]* ,+ ... digits{1,9} */
	if (i < n && cp[i] == ',')
	{
		while (i < n && cp[i] == ',')
			i++;
		if ((d = ext_tail(cp, n, i, 9, false)) >= 0)
			return d;
	}
	return -1;
}

/*
 * VALID_PHONE_NUMBER without its extension: two digits alone, or plus signs,
 * then at least three digits among punctuation, then also letters.  (In
 * libphonenumber's pattern the two-digit form is an alternative on its own,
 * so it never takes an extension.)
 */
static bool
viable_main(const uint32_t *cp, int n, bool two_digits_ok)
{
	int			i = 0;
	int			digits = 0;

	if (two_digits_ok && n == 2 && digit_value(cp[0]) >= 0 && digit_value(cp[1]) >= 0)
		return true;
	while (i < n && is_plus(cp[i]))
		i++;
	for (; i < n; i++)
	{
		uint32_t	c = cp[i];

		if (digit_value(c) >= 0)
			digits++;
		else if (is_punct(c))
			continue;
		else if (is_ascii_alpha(c) && digits >= 3)
			continue;
		else
			return false;
	}
	return digits >= 3;
}

/*
 * Could cp hold an extension at all?  Every extension form needs a label,
 * a ';', a ',' or a '#': plain digits and punctuation cannot, which spares
 * the common case the search at every position.
 */
static bool
may_have_extension(const uint32_t *cp, int n)
{
	/* Every form ends in its digits, or a '#' after them. */
	if (n == 0 || !(digit_value(cp[n - 1]) >= 0 || cp[n - 1] == '#'))
		return false;
	for (int i = 0; i < n; i++)
	{
		uint32_t	c = cp[i];

		if (c >= 0x80 || !(ascii_class[c] & C_PLAIN))
			return true;
	}
	return false;
}

/* Could c be part of an extension's label or separators (any case)? */
static bool
is_label_char(uint32_t c)
{
	if (c < 0x80)
		return (ascii_class[c] & C_LABEL) != 0;
	c = lower(c);
	return c == 0xA0 || c == 0x301 || c == 0xF3 || c == 0xFF0E || c == 0xFF03 || c == 0xFF5E
		|| c == 0xFF45 || c == 0xFF58 || c == 0xFF54 || c == 0xFF4E || c == 0xFF49
		|| c == 0x434 || c == 0x43E || c == 0x431;
}

/*
 * Where an extension of cp[0, n) can start, at the earliest.  Every form
 * ends with the digits that end the input (a '#' after them aside), and what
 * comes between its start and those digits is labels and separators only: so
 * no extension starts before the run of such characters that leads to them.
 * Returns n when the input does not end in digits.
 */
static int
ext_window(const uint32_t *cp, int n)
{
	int			e = n;
	int			d;

	if (e > 0 && cp[e - 1] == '#')
		e--;
	d = e;
	while (d > 0 && digit_value(cp[d - 1]) >= 0)
		d--;
	if (d == e)
		return n;
	while (d > 0 && is_label_char(cp[d - 1]))
		d--;
	return d;
}

/*
 * VALID_PHONE_NUMBER, extension included.  *ext_start tells how: -1 when
 * the input is viable without an extension, else the leftmost position
 * where an extension starts after a viable number.
 */
static bool
viable_search(const uint32_t *cp, int n, int *ext_start)
{
	*ext_start = -1;
	/* Fewer than two bytes of UTF-8: nothing, or one ASCII character. */
	if (n == 0 || (n == 1 && cp[0] < 0x80))
		return false;
	if (viable_main(cp, n, true))
		return true;
	if (!may_have_extension(cp, n))
		return false;
	for (int s = ext_window(cp, n); s < n; s++)
		if (ext_at(cp, n, s) >= 0 && viable_main(cp, s, false))
		{
			*ext_start = s;
			return true;
		}
	return false;
}

static bool
viable(const uint32_t *cp, int n)
{
	int			ext_start;

	return viable_search(cp, n, &ext_start);
}

/* ------------------------------------------------------------ the parse */

/* find_bytes of a string literal, its length known at compile time */
#define FIND_BYTES(s, len, lit, at) find_bytes(s, len, lit, sizeof(lit) - 1, at)

static bool
find_bytes(const char *s, size_t len, const char *needle, size_t nl, size_t *at)
{
	const char *p = s;
	const char *end = s + len;

	while ((size_t) (end - p) >= nl && (p = memchr(p, needle[0], end - p - nl + 1)) != NULL)
	{
		if (memcmp(p, needle, nl) == 0)
		{
			*at = p - s;
			return true;
		}
		p++;
	}
	return false;
}

/* Are all eight bytes of w ASCII digits?  (High nibble 3, and still 3 plus 6.) */
static inline bool
eight_digits(uint64_t w)
{
	return ((w & UINT64_C(0xF0F0F0F0F0F0F0F0))
			| (((w + UINT64_C(0x0606060606060606)) & UINT64_C(0xF0F0F0F0F0F0F0F0)) >> 4))
		== UINT64_C(0x3333333333333333);
}

/* Is s[0, n) ASCII digits only?  Eight at a time, the last eight overlapping. */
static inline bool
all_digits(const char *s, size_t n)
{
	uint64_t	w;

	if (n < 8)
	{
		for (size_t i = 0; i < n; i++)
			if ((unsigned) ((unsigned char) s[i] - '0') > 9)
				return false;
		return true;
	}
	for (size_t i = 0; i + 8 < n; i += 8)
	{
		memcpy(&w, s + i, 8);
		if (!eight_digits(w))
			return false;
	}
	memcpy(&w, s + n - 8, 8);
	return eight_digits(w);
}

/*
 * The common case in one pass over the bytes: nothing but digits (ASCII or
 * full-width), plus signs (ASCII or full-width) and the punctuation ' ', '-',
 * '(', ')', '.' and '/', after any printable ASCII but ';' before the first
 * digit or plus sign.  Such an input holds no phone-context, no extension, no
 * second number and no code point libphonenumber refuses, so what the
 * general path does comes down to: from the first digit or plus sign to the
 * last digit (the ends ExtractPossibleNumber keeps), plus signs only at the
 * start, then two digits alone or at least three (VALID_PHONE_NUMBER).  The
 * digits go to num, and *plus says whether a plus sign leads them.
 */
typedef enum PlainScan
{
	PLAIN_NUMBER, PLAIN_NOT_A_NUMBER, PLAIN_NO
} PlainScan;

/*
 * scan_plain's bytes: ASCII digits, its separators ' -()./', the rest (0).
 * Both kinds have PB_PLAIN; a digit adds one, what the copy moves on by.
 */
#define PB_PLAIN 2
#define PB_SEP PB_PLAIN
#define PB_DIGIT (PB_PLAIN | 1)

static const uint8_t plain_byte[256] = {
	[' '] = PB_SEP, ['-'] = PB_SEP, ['('] = PB_SEP, [')'] = PB_SEP, ['.'] = PB_SEP, ['/'] = PB_SEP,
	['0'] = PB_DIGIT, ['1'] = PB_DIGIT, ['2'] = PB_DIGIT, ['3'] = PB_DIGIT, ['4'] = PB_DIGIT,
	['5'] = PB_DIGIT, ['6'] = PB_DIGIT, ['7'] = PB_DIGIT, ['8'] = PB_DIGIT, ['9'] = PB_DIGIT,
};

/*
 * Bit 7 of each byte of w that is not an ASCII digit, the others clear:
 * digits become 0 to 9 by the XOR, and adding 0x76 carries into bit 7 only
 * above 9 (the byte's own bit 7, masked off first, is or'ed back).
 */
static inline uint64_t
nondigit_bytes(uint64_t w)
{
	uint64_t	x = w ^ UINT64_C(0x3030303030303030);

	return (((x & UINT64_C(0x7F7F7F7F7F7F7F7F)) + UINT64_C(0x7676767676767676)) | x)
		& UINT64_C(0x8080808080808080);
}

/*
 * Copy the run of ASCII digits at p (at least one) to *o and return where
 * it ends: eight bytes at a time where eight are left, the end found from
 * the word's non-digit bytes rather than with a branch per byte.  *o has
 * room for eight more (num's 64 spare bytes).
 */
static inline const unsigned char *
copy_digits(const unsigned char *p, const unsigned char *end, char **o)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (end - p >= 8)
	{
		uint64_t	w;
		uint64_t	other;

		memcpy(&w, p, 8);
		memcpy(*o, &w, 8);
		other = nondigit_bytes(w);
		if (other != 0)
		{
			int			k = __builtin_ctzll(other) >> 3;

			*o += k;
			return p + k;
		}
		p += 8;
		*o += 8;
	}
#endif
	while (p < end && (unsigned) (*p - '0') <= 9)
		*(*o)++ = (char) *p++;
	return p;
}

static ALWAYS_INLINE PlainScan
scan_plain_inline(const char *raw, size_t len, char *num, int *nlen, bool *plus, size_t *stop,
				  int *last)
{
	const unsigned char *s = (const unsigned char *) raw;
	const unsigned char *p = s;
	const unsigned char *end = s + len;
	char	   *o = num;
	int			wide2 = 0;		/* two per full-width character before p */
	int			first = -1;		/* the first digit or plus sign */
	int			last_digit = -1;
	int			stray_plus = -1;	/* a plus sign after the leading ones */
	bool		first_plus = false;
	bool		leading = true;
	int			digits;
	const unsigned char *fast_end = NULL;

	*stop = SIZE_MAX;

	/*
	 * The common shape first, without a branch per byte that depends on it:
	 * what goes before the number, plus signs, then ASCII digits and
	 * separators alone.  Where something else comes, the loop below goes on
	 * from there, with what this part found.  Before the number, printable
	 * ASCII but digits, '+' and ';' goes unseen as in that loop ("tel:",
	 * separators, a label).
	 */
	while (p < end && *p != '+' && (unsigned) (*p - '0') > 9
		   && (unsigned) (*p - 0x20) < 0x5F && *p != ';')
		p++;
	if (p < end && (*p == '+' || (unsigned) (*p - '0') <= 9))
	{
		const unsigned char *from;

		first = (int) (p - s);
		first_plus = *p == '+';
		while (p < end && *p == '+')
			p++;
		from = p;

		/*
		 * A run of digits and the separator after it per turn where eight
		 * bytes are left: the run copied eight bytes at a time, its end
		 * found from the word's non-digit bytes (as copy_digits does).
		 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		while (end - p >= 8)
		{
			uint64_t	w;
			uint64_t	other;

			memcpy(&w, p, 8);
			memcpy(o, &w, 8);
			other = nondigit_bytes(w);
			if (other == 0)
			{
				p += 8;
				o += 8;
				continue;
			}
			{
				int			k = __builtin_ctzll(other) >> 3;

				p += k;
				o += k;
			}
			if (plain_byte[*p] != PB_SEP)
				break;
			p++;
		}
#endif
		/* four bytes at a time while all four are plain: one test for them */
		while (end - p >= 4)
		{
			unsigned	k0 = plain_byte[p[0]];
			unsigned	k1 = plain_byte[p[1]];
			unsigned	k2 = plain_byte[p[2]];
			unsigned	k3 = plain_byte[p[3]];

			if (!(k0 & k1 & k2 & k3 & PB_PLAIN))
				break;
			*o = (char) p[0];
			o += k0 & 1;
			*o = (char) p[1];
			o += k1 & 1;
			*o = (char) p[2];
			o += k2 & 1;
			*o = (char) p[3];
			o += k3 & 1;
			p += 4;
		}
		for (; p < end; p++)
		{
			unsigned	k = plain_byte[*p];

			if (k == 0)
				break;
			*o = (char) *p;
			o += k & 1;
		}
		if (p > from)
		{
			const unsigned char *q = p;

			leading = false;
			/* the last digit: separators, if any, came after it */
			while (q > from && (unsigned) (q[-1] - '0') > 9)
				q--;
			if (q > from)
				last_digit = (int) (q - s) - 1;
		}
		fast_end = p;
	}

	/* Positions are in characters: bytes less the full-width ones' extra two. */
	while (p < end)
	{
		unsigned	c = *p;
		int			at = (int) (p - s) - wide2;

		if (c - '0' <= 9)
		{
			if (first < 0)
				first = at;
			leading = false;
			p = copy_digits(p, end, &o);
			last_digit = (int) (p - s) - wide2 - 1;
			continue;
		}
		if (c == '+')
			p++;
		else if (plain_byte[c] == PB_SEP)
		{
			if (first >= 0)
				leading = false;
			p++;
			continue;
		}
		else if (c == 0xEF && end - p > 2 && p[1] == 0xBC && (unsigned) (p[2] - 0x90) <= 9)
		{
			/* U+FF10..U+FF19, full-width digits: the whole run at once */
			if (first < 0)
			{
				first = at;
				first_plus = false;
			}
			do
			{
				*o++ = (char) ('0' + p[2] - 0x90);
				p += 3;
				wide2 += 2;
			} while (end - p > 2 && p[0] == 0xEF && p[1] == 0xBC && (unsigned) (p[2] - 0x90) <= 9);
			last_digit = (int) (p - s) - wide2 - 1;
			leading = false;
			continue;
		}
		else if (c == 0xEF && end - p > 2 && p[1] == 0xBC && p[2] == 0x8B)
		{
			/* U+FF0B FULLWIDTH PLUS SIGN */
			p += 3;
			wide2 += 2;
		}
		else if (first < 0 && c - 0x20 < 0x5F && c != ';')
		{
			/*
			 * Before the number ("tel:", a label): dropped unseen, since
			 * only a ';' (a phone-context) in it would matter.
			 */
			p++;
			continue;
		}
		else
		{
			/*
			 * Where the fast part stopped, what it read is what
			 * plain_then_extension would read again: say so.
			 */
			if (p == fast_end)
			{
				*stop = (size_t) (p - s);
				*last = last_digit;
				*nlen = (int) (o - num);
				*plus = first_plus;
			}
			return PLAIN_NO;
		}

		/* a plus sign */
		if (first < 0)
		{
			first = at;
			first_plus = true;
		}
		else if (!leading && stray_plus < 0)
			stray_plus = at;
	}
	digits = (int) (o - num);
	*nlen = digits;
	*plus = first_plus;
	if (digits == 0)
		return PLAIN_NOT_A_NUMBER;
	/* Two digits alone. */
	if (last_digit - first + 1 == 2 && !first_plus)
		return PLAIN_NUMBER;
	if (digits < 3 || (stray_plus >= 0 && stray_plus < last_digit))
		return PLAIN_NOT_A_NUMBER;
	return PLAIN_NUMBER;
}

/* scan_plain_inline where the parse reads a piece of the input again */
static NOINLINE PlainScan
scan_plain(const char *raw, size_t len, char *num, int *nlen, bool *plus)
{
	size_t		stop;
	int			last;

	return scan_plain_inline(raw, len, num, nlen, plus, &stop, &last);
}

/*
 * A plain number, then an extension, all in printable ASCII: "+1 650 253
 * 0000 ext. 12", "tel:+1-650-253-0000;ext=12", "0201234567,,89#".  The
 * general path's answer without decoding, trimming or searching the whole
 * input, under conditions that make it certain:
 *	- all printable ASCII (nothing refused, no line end), ending in a digit
 *	  or '#' (nothing trimmed); no second number, subaddress or phone-context
 *	  (the caller's part);
 *	- from the first digit or plus sign: plus signs, then only digits and
 *	  ' -()./' up to the last digit before the extension, three digits at
 *	  least (viable alone, VALID_PHONE_NUMBER without letters);
 *	- the window ext_window finds starts right after that digit, and an
 *	  extension starts there: the leftmost position the strip tries, with
 *	  a viable number before it, is the one it takes.
 * ext_at reads only from its position on, so the tail alone is widened.
 * Fills num, *nlen, *plus and out->extension (out NULL: no extension
 * wanted), or returns false.
 */
static bool extension_after(const char *raw, size_t len, size_t last, int digits, int *nlen,
							PhoneNumber *out);

static bool
plain_then_extension(const char *raw, size_t len, char *num, int *nlen, bool *plus,
					 PhoneNumber *out)
{
	const unsigned char *s = (const unsigned char *) raw;
	size_t		i = 0;
	size_t		last = 0;
	int			digits = 0;

	if (len == 0 || !((unsigned) (s[len - 1] - '0') <= 9 || s[len - 1] == '#'))
		return false;
	/* Printable ASCII is checked on the way: before the number here ... */
	while (i < len && (unsigned) (s[i] - '0') > 9 && s[i] != '+')
	{
		if ((unsigned) (s[i] - 0x20) >= 0x5F)
			return false;
		i++;
	}
	*plus = i < len && s[i] == '+';
	while (i < len && s[i] == '+')
		i++;
	while (i < len)
	{
		unsigned	c = s[i];

		if (c - '0' <= 9)
		{
			char	   *to = num + digits;

			i = copy_digits(s + i, s + len, &to) - s;
			digits = (int) (to - num);
			last = i - 1;
		}
		else if (plain_byte[c] == PB_SEP)
			i++;
		else
			break;
	}
	return extension_after(raw, len, last, digits, nlen, out);
}

/*
 * plain_then_extension once the plain number is read: digits of them, the
 * last at raw[last], and what follows it up to the end.  scan_plain's fast
 * part, where it stops, has read the same (and the same before it).
 */
static bool
extension_after(const char *raw, size_t len, size_t last, int digits, int *nlen,
				PhoneNumber *out)
{
	const unsigned char *s = (const unsigned char *) raw;
	uint32_t	tail[MAXCP];
	size_t		k;
	size_t		e;
	int			tn;
	int			d;
	int			o = 0;

	if (len == 0 || !((unsigned) (s[len - 1] - '0') <= 9 || s[len - 1] == '#') || digits < 3)
		return false;
	/* ext_window, over the bytes */
	e = s[len - 1] == '#' ? len - 1 : len;
	k = e;
	while (k > 0 && (unsigned) (s[k - 1] - '0') <= 9)
		k--;
	if (k == e)
		return false;
	while (k > 0 && is_label_char(s[k - 1]))
		k--;
	if (k != last + 1)
		return false;
	/*
	 * ... and from the window on, which starts at or before where the plain
	 * part stopped (k < e <= len: never empty, which the compiler cannot see)
	 */
	tn = (int) (len - k);
	tail[0] = s[k];
	for (int j = 0; j < tn; j++)
	{
		if ((unsigned) (s[k + j] - 0x20) >= 0x5F)
			return false;
		tail[j] = s[k + j];
	}
	d = ext_at(tail, tn, 0);
	if (d < 0)
		return false;
	for (int j = d; out != NULL && j < tn && o < (int) sizeof(out->extension) - 1; j++)
		if (tail[j] - '0' <= 9)
			out->extension[o++] = (char) tail[j];
	*nlen = digits;
	return true;
}

/*
 * Digits with letters, ending in a letter, all in printable ASCII: vanity
 * numbers ("1-800-FLOWERS", "0800123GJOQ").  No extension can end in a
 * letter and nothing is trimmed before one, so the general path comes down
 * to VALID_PHONE_NUMBER (viable_main) and the normalisation, here over the
 * bytes.  No second number, subaddress or phone-context (the caller's
 * part).  Fills num, *nlen and *plus, or returns false (the general path
 * then decides).
 */
static bool
plain_with_letters(const char *raw, size_t len, char *num, int *nlen, bool *plus)
{
	const unsigned char *s = (const unsigned char *) raw;
	size_t		i = 0;
	size_t		from;
	int			digits = 0;
	int			letters = 0;
	int			o = 0;

	if (len == 0 || !is_ascii_alpha(s[len - 1]))
		return false;
	for (size_t k = 0; k < len; k++)
		if ((unsigned) (s[k] - 0x20) >= 0x5F)
			return false;
	/* ExtractPossibleNumber: from the first digit or plus sign */
	while (i < len && (unsigned) (s[i] - '0') > 9 && s[i] != '+')
		i++;
	*plus = i < len && s[i] == '+';
	while (i < len && s[i] == '+')
		i++;
	from = i;
	/* viable_main */
	for (; i < len; i++)
	{
		unsigned	c = s[i];

		if (c - '0' <= 9)
			digits++;
		else if (!(is_punct(c) || (is_ascii_alpha(c) && digits >= 3)))
			return false;
	}
	if (digits < 3)
		return false;
	/* normalize */
	for (i = from; i < len && letters < 3; i++)
	{
		if ((unsigned) (s[i] - '0') <= 9)
			num[o++] = (char) s[i];
		else
			letters += is_ascii_alpha(s[i]);
	}
	if (letters >= 3)
	{
		o = 0;
		for (i = from; i < len; i++)
		{
			unsigned	c = s[i];

			if (c - '0' <= 9)
				num[o++] = (char) c;
			else if (is_ascii_alpha(c))
				num[o++] = keypad[(c | 0x20) - 'a'];
		}
	}
	*nlen = o;
	return true;
}

/*
 * Copy the national number, 2 to PHONE_MAX_NSN digits, in fixed-size pieces
 * that overlap rather than with a call (no byte past src + n is read).
 */
static inline void
copy_nsn(char *dst, const char *src, int n)
{
	if (n >= 8)
	{
		memcpy(dst, src, 8);
		if (n > 16)
			memcpy(dst + 8, src + 8, 8);
		memcpy(dst + n - 8, src + n - 8, 8);
	}
	else if (n >= 4)
	{
		memcpy(dst, src, 4);
		memcpy(dst + n - 4, src + n - 4, 4);
	}
	else
	{
		dst[0] = src[0];
		dst[1] = src[1];
		dst[n - 1] = src[n - 1];
	}
}

/*
 * MaybeExtractCountryCode and what follows, on the normalized digits of the
 * number (num, which has room for MAXCP + 64) and whether a plus sign led
 * them.  With a plus sign and no calling code found, the digits are read
 * again as national ones, as libphonenumber retries without the plus sign.
 */
static ALWAYS_INLINE PhoneError
parse_digits(const PhoneTables *t, const PhoneRegion *def, const char *num, int nlen, bool plus,
			 PhoneNumber *out, const PhoneRegion **region)
{
	const PhoneRegion *md;
	int			cc = 0;

	/* Where a transform rule rewrites the number: never num itself. */
	char		cc_buf[MAXCP + 64];
	char		np_buf[MAXCP + 64];

	/* The prefixes and the calling code go by moving num on, not copying. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		bool		international = false;

		cc = 0;
		if (attempt == 0 && plus)
			international = true;
		else
		{
			int			m = def ? prefix_match(t, def->idd, def->idd_dfa, def->idd_first, num, nlen, NULL) : -1;

			if (m >= 0 && !(m < nlen && num[m] == '0'))
			{
				num += m;
				nlen -= m;
				international = true;
			}
		}
		if (international)
		{
			if (nlen <= 2)
				return PHONE_TOO_SHORT_AFTER_IDD;
			if (num[0] != '0')
			{
				int			v = 0;

				/* The shortest calling code the digits start with. */
				for (int k = 1; k <= 3 && k <= nlen; k++)
				{
					v = v * 10 + (num[k - 1] - '0');
					if (t->cc_count[v] != 0)
					{
						cc = v;
						num += k;
						nlen -= k;
						break;
					}
				}
			}
			if (cc == 0)
			{
				if (attempt == 0 && plus)
					continue;
				return PHONE_INVALID_COUNTRY_CODE;
			}
		}
		else if (def != NULL)
		{
			/* the calling code's digits, zero-padded */
			const char *c = def->e164 + 1;

			/*
			 * The number starts with the default region's calling code: its
			 * first digit alone rules most numbers out.
			 */
			if (nlen >= 1 && num[0] == c[0]
				&& (c[1] == '\0' || (nlen >= 2 && num[1] == c[1]
									 && (c[2] == '\0' || (nlen >= 3 && num[2] == c[2])))))
			{
				int			cl = 1 + (c[1] != '\0') + (c[2] != '\0');
				int			plen = nlen - cl;
				const char *pot = strip_national_prefix(t, def, num + cl, &plen, cc_buf);

				if ((!dfa_full_match(t, def->general, num, nlen) && dfa_full_match(t, def->general, pot, plen))
					|| test_length(def, nlen) == PHONE_LENGTH_TOO_LONG)
				{
					num = pot;
					nlen = plen;
					cc = def->country_code;
				}
			}
		}
		if (attempt == 1 && cc == 0)
			return PHONE_INVALID_COUNTRY_CODE;
		break;
	}

	/*
	 * The main region for the calling code (a region id names one entry):
	 * one the tables have, found in cc_count or a region's own.
	 */
	if (cc != 0)
		md = &t->regions[t->cc_list[t->cc_first[cc]]];
	else
	{
		md = def;
		cc = def->country_code;
	}
	if (nlen < 2)
		return PHONE_TOO_SHORT_NSN;
	if (md != NULL)
	{
		int			plen = nlen;
		const char *pot = strip_national_prefix(t, md, num, &plen, np_buf);

		/* Nothing stripped: nothing to weigh. */
		if (pot != num || plen != nlen)
		{
			PhoneLength v = test_length(md, plen);

			if (v != PHONE_LENGTH_TOO_SHORT && v != PHONE_IS_POSSIBLE_LOCAL_ONLY && v != PHONE_INVALID_LENGTH)
			{
				num = pot;
				nlen = plen;
			}
		}
	}
	if (nlen < 2)
		return PHONE_TOO_SHORT_NSN;
	if (nlen > PHONE_MAX_NSN)
		return PHONE_TOO_LONG;
	out->country_code = cc;
	copy_nsn(out->nsn, num, nlen);
	out->nsn[nlen] = '\0';
	out->nsn_len = nlen;
	*region = md;
	return PHONE_OK;
}


const PhoneRegion *
phone_region(const PhoneTables *t, const char *id)
{
	return region_by_id(t, id);
}

PhoneError
phone_parse(const PhoneTables *t, const char *raw, size_t len, const char *region_code,
			PhoneNumber *out)
{
	return phone_parse_in(t, raw, len, region_by_id(t, region_code), out);
}

/*
 * phone_parse_in's body, inline in it and in phone_e164_possible, so that
 * neither pays for a call and a frame more.  It sets what it finds in *out
 * and leaves the rest as it was: the extension unterminated, for one.
 * *region gets the region (of the number's calling code) whose national
 * prefix it weighed.  Without want_extension (E.164 has none), the
 * extension is not even written.
 */
static ALWAYS_INLINE PhoneError
parse_in(const PhoneTables *t, const char *raw, size_t len, const PhoneRegion *def,
		 PhoneNumber *out, const PhoneRegion **region, bool want_extension)
{
	uint32_t	cp[MAXCP + 1];
	int			n;
	char		buf[MAXCP + 1];
	size_t		blen = 0;
	size_t		at = 0;
	char		num[MAXCP + 64];
	const char *digits = num;	/* the digits parse_digits reads: num, or raw */
	size_t		plain_stop;		/* where scan_plain's fast part stopped, or SIZE_MAX */
	int			plain_last;		/* and its last digit */
	int			nlen;
	int			start;
	bool		ext_possible;
	bool		plus;
	int			ext_start;
	bool		second_number;
	bool		isub;
	bool		semicolon;
	bool		context;
	bool		printable;
	size_t		isub_at = 0;

	if (len > PHONE_MAX_INPUT)
		return PHONE_TOO_LONG;

	/*
	 * Three digits or more, alone or after one plus sign (four inputs in ten
	 * in the benchmark): what scan_plain would find, without a branch per
	 * byte, and read where they are.
	 */
	{
		const char *d = raw + (len > 0 && raw[0] == '+');
		size_t		dn = len - (size_t) (d - raw);

		if (dn >= 3 && all_digits(d, dn))
		{
			digits = d;
			nlen = (int) dn;
			plus = d != raw;
			goto found;
		}
	}

	switch (scan_plain_inline(raw, len, num, &nlen, &plus, &plain_stop, &plain_last))
	{
		case PLAIN_NUMBER:
			goto found;
		case PLAIN_NOT_A_NUMBER:
			return PHONE_NOT_A_NUMBER;
		case PLAIN_NO:
			break;
	}
	/*
	 * What the searches below need at least, looked for once in the bytes:
	 * each ';', and the first subaddress and phone-context among them.
	 */
	semicolon = isub = context = false;
	for (const char *q = memchr(raw, ';', len); q != NULL;
		 q = memchr(q + 1, ';', (size_t) (raw + len - q - 1)))
	{
		size_t		rest = (size_t) (raw + len - q);

		semicolon = true;
		if (!isub && rest >= 6 && memcmp(q, ";isub=", 6) == 0)
		{
			isub = true;
			isub_at = (size_t) (q - raw);
		}
		if (!context && rest >= 15 && memcmp(q, ";phone-context=", 15) == 0)
		{
			context = true;
			at = (size_t) (q - raw);
		}
	}
	/* Nothing reads it beside a phone-context (whose name has an 'x'). */
	second_number = !context && memchr(raw, 'x', len) != NULL
		&& (memchr(raw, '/', len) != NULL || memchr(raw, '\\', len) != NULL);

	/*
	 * A plain number, then an isdn-subaddress: the number before it reads as
	 * plain when nothing else can change it, that is when all is printable
	 * ASCII (nothing refused), no second number can start, the input ends in
	 * a letter, digit or '#' after the subaddress (the end trimmed keeps it
	 * whole) and the number ends in a digit just before it.
	 */
	if (isub && !second_number && isub_at > 0 && len > isub_at + 6
		&& (unsigned) (raw[isub_at - 1] - '0') <= 9
		&& (is_ascii_alpha((unsigned char) raw[len - 1])
			|| (unsigned) (raw[len - 1] - '0') <= 9 || raw[len - 1] == '#')
		&& !context)
	{
		bool		all_printable = true;

		for (size_t i = 0; i < len; i++)
			all_printable &= (unsigned) ((unsigned char) raw[i] - 0x20) < 0x5F;
		/* scan_plain's fast part, stopped at the ';', has read that number */
		if (all_printable && ((plain_stop == isub_at && nlen >= 3)
							  || scan_plain(raw, isub_at, num, &nlen, &plus) == PLAIN_NUMBER))
			goto found;
	}

	if (!isub && !second_number && !context
		&& (plain_stop != SIZE_MAX
			? extension_after(raw, len, (size_t) plain_last, nlen, &nlen, want_extension ? out : NULL)
			: plain_then_extension(raw, len, num, &nlen, &plus, want_extension ? out : NULL)))
	{
		goto found;
	}

	if (!semicolon && !second_number && plain_with_letters(raw, len, num, &nlen, &plus))
	{
		goto found;
	}

	/* BuildNationalNumberForParsing (RFC 3966 aware). */
	if (context)
	{
		size_t		ctx = at + strlen(";phone-context=");
		size_t		tel;
		size_t		from;

		if (ctx < len - 1 && raw[ctx] == '+')
		{
			size_t		e = ctx;

			while (e < len && raw[e] != ';')
				e++;
			memcpy(buf + blen, raw + ctx, e - ctx);
			blen += e - ctx;
		}
		from = FIND_BYTES(raw, len, "tel:", &tel) ? tel + 4 : 0;
		if (at > from)
		{
			memcpy(buf + blen, raw + from, at - from);
			blen += at - from;
		}
		else if (from > at)
		{
			/*
			 * "tel:" after the phone-context: libphonenumber's substring of
			 * negative length runs to the end of the input.  That can overlap
			 * the context and outgrow the buffer: too long, then.
			 */
			if (blen + (len - from) > MAXCP)
				return PHONE_TOO_LONG;
			memcpy(buf + blen, raw + from, len - from);
			blen += len - from;
		}

		/*
		 * libphonenumber drops an isdn-subaddress from these pieces before
		 * it reads any of them as UTF-8: what follows ';isub=' cannot make
		 * the input unreadable.
		 */
		{
			size_t		isub_in_buf;

			if (isub && FIND_BYTES(buf, blen, ";isub=", &isub_in_buf))
				blen = isub_in_buf;
		}

		/*
		 * Pieces that make a plain number from a digit or plus sign to a
		 * digit read as such: nothing is trimmed in this branch, and with
		 * those ends there is nothing to trim.  Digits alone or after one
		 * plus sign (a context's "+<cc>", then a national number) are read
		 * where they are, as at the start.
		 */
		if (blen > 0)
		{
			const char *d = buf + (buf[0] == '+');
			size_t		dn = blen - (size_t) (d - buf);

			if (dn >= 3 && all_digits(d, dn))
			{
				digits = d;
				nlen = (int) dn;
				plus = d != buf;
				goto found;
			}
		}
		if (blen > 0 && (buf[0] == '+' || (unsigned) (buf[0] - '0') <= 9)
			&& (unsigned) (buf[blen - 1] - '0') <= 9
			&& scan_plain(buf, blen, num, &nlen, &plus) == PLAIN_NUMBER)
			goto found;
		n = decode(buf, blen, cp, MAXCP, &printable);
		if (n < 0)
			return PHONE_NOT_A_NUMBER;
	}
	else
	{
		int			all = decode(raw, len, cp, MAXCP, &printable);
		int			e;
		int			k;

		if (all < 0)
			return PHONE_NOT_A_NUMBER;
		if (!printable)
			for (int i = 0; i < all; i++)
				if (!interchange_valid(cp[i]))
					return PHONE_NOT_A_NUMBER;
		/* ExtractPossibleNumber: from the first digit or plus sign ... */
		for (start = 0; start < all; start++)
			if (is_plus(cp[start]) || digit_value(cp[start]) >= 0)
				break;
		n = all - start;
		memmove(cp, cp + start, n * sizeof(uint32_t));
		/* ... without trailing characters that are not letters, numbers or # ... */
		while (n > 0 && !(is_letter_or_number(cp[n - 1]) || cp[n - 1] == '#'))
			n--;
		/*
		 * ... and, where "[\\/] *x" starts a second number, up to the last
		 * one of the first line that holds one: libphonenumber searches with
		 * "(.*)[\\/] *x", whose "." stops at line terminators, and keeps the
		 * group.
		 */
		for (int ls = 0, le = 0; ls < n && second_number; ls = le + 1)
		{
			for (le = ls; le < n && !is_line_end(cp[le]); le++)
				;
			for (e = le - 1; e >= ls; e--)
			{
				if (cp[e] != '\\' && cp[e] != '/')
					continue;
				for (k = e + 1; k < le && cp[k] == ' '; k++)
					;
				if (k < le && cp[k] == 'x')
					break;
			}
			if (e >= ls)
			{
				n = e - ls;
				memmove(cp, cp + ls, n * sizeof(uint32_t));
				break;
			}
		}
	}
	/* Drop an isdn-subaddress. */
	for (int i = 0; i + 6 <= n && isub; i++)
		if (cp[i] == ';' && cp[i + 1] == 'i' && cp[i + 2] == 's' && cp[i + 3] == 'u'
			&& cp[i + 4] == 'b' && cp[i + 5] == '=')
		{
			n = i;
			break;
		}

	if (!viable_search(cp, n, &ext_start))
		return PHONE_NOT_A_NUMBER;
	if (def == NULL && (n == 0 || !is_plus(cp[0])))
		return PHONE_INVALID_COUNTRY_CODE;

	/*
	 * MaybeStripExtension: the leftmost extension that ends the input, with
	 * a viable number before it.  When the viability search found one at
	 * ext_start, that one qualifies, and only the positions before it are
	 * left to try (a number before them may be viable otherwise).
	 */
	ext_possible = ext_start >= 0 || may_have_extension(cp, n);
	for (int s = ext_possible ? ext_window(cp, n) : n; s < n; s++)
	{
		int			d = ext_at(cp, n, s);

		if (d >= 0 && (s == ext_start || viable(cp, s)))
		{
			int			o = 0;

			for (int i = d; want_extension && i < n && o < (int) sizeof(out->extension) - 1; i++)
				if (digit_value(cp[i]) >= 0)
					out->extension[o++] = (char) ('0' + digit_value(cp[i]));
			n = s;
			break;
		}
	}

	/* All that is left is the digits and whether a plus sign led them. */
	plus = n > 0 && is_plus(cp[0]);
	{
		int			i = 0;

		while (i < n && is_plus(cp[i]))
			i++;
		nlen = normalize(cp + i, n - i, num);
	}

	/*
	 * Every way to the digits ends here, where parse_digits is inline once
	 * (with no frame and call of its own).
	 */
found:
	if (def == NULL && !plus)
		return PHONE_INVALID_COUNTRY_CODE;
	return parse_digits(t, def, digits, nlen, plus, out, region);
}

PhoneError
phone_parse_in(const PhoneTables *t, const char *raw, size_t len, const PhoneRegion *def,
			   PhoneNumber *out)
{
	const PhoneRegion *region;

	memset(out, 0, sizeof(*out));
	return parse_in(t, raw, len, def, out, &region, true);
}

int
phone_format_e164(const PhoneNumber *p, char *buf)
{
	int			v = p->country_code;
	char	   *o = buf;

	*o++ = '+';
	if (v >= 100)
	{
		*o++ = (char) ('0' + v / 100);
		v %= 100;
		*o++ = (char) ('0' + v / 10);
	}
	else if (v >= 10)
		*o++ = (char) ('0' + v / 10);
	*o++ = (char) ('0' + v % 10);
	/* The national number in one fixed-size copy, then the end. */
	memcpy(o, p->nsn, sizeof(p->nsn));
	o[p->nsn_len] = '\0';
	return (int) (o - buf) + p->nsn_len;
}

/*
 * test_length's answer is possible or possible only locally: the length is
 * one of the general description's, national or local.
 */
static inline bool
length_possible(const PhoneRegion *r, int len)
{
	return r->lengths != 0 && len < 32 && (((r->lengths | r->local_only) >> len) & 1);
}

int
phone_e164_possible(const PhoneTables *t, const char *raw, size_t len, const PhoneRegion *def,
					char *buf)
{
	PhoneNumber p;
	const PhoneRegion *r;
	char	   *o;

	if (parse_in(t, raw, len, def, &p, &r, false) != PHONE_OK)
		return -1;
	/* phone_possible's region: the calling code's main one */
	if (!length_possible(&t->regions[r->main_region], p.nsn_len))
		return -1;
	/* The region's "+<cc>", then the national number with its zero over the rest. */
	memcpy(buf, r->e164, 4);
	o = buf + 2 + (p.country_code >= 10) + (p.country_code >= 100);
	memcpy(o, p.nsn, sizeof(p.nsn));
	return (int) (o - buf) + p.nsn_len;
}

/*
 * GetRegionCodeForNumber, also returning the type in that region's metadata
 * (GetNumberType), which the search computes anyway.
 */
static const PhoneRegion *
region_of(const PhoneTables *t, const PhoneNumber *p, PhoneType *type)
{
	int			cc = p->country_code;
	int			first,
				count;

	*type = PHONE_UNKNOWN;
	if (cc <= 0 || cc >= 1000 || t->cc_count[cc] == 0)
		return NULL;
	first = t->cc_first[cc];
	count = t->cc_count[cc];
	if (count == 1)
	{
		const PhoneRegion *r = &t->regions[t->cc_list[first]];

		*type = type_helper(t, r, p->nsn, p->nsn_len);
		return r;
	}
	for (int k = 0; k < count; k++)
	{
		const PhoneRegion *r = &t->regions[t->cc_list[first + k]];

		if (r->leading >= 0)
		{
			if (prefix_match(t, r->leading, r->leading_dfa, 0x3FF, p->nsn, p->nsn_len, NULL) >= 0)
			{
				*type = type_helper(t, r, p->nsn, p->nsn_len);
				return r;
			}
		}
		else if ((*type = type_helper(t, r, p->nsn, p->nsn_len)) != PHONE_UNKNOWN)
			return r;
	}
	*type = PHONE_UNKNOWN;
	return NULL;
}

void
phone_classify(const PhoneTables *t, const PhoneNumber *p, const char **region, PhoneType *type)
{
	const PhoneRegion *r = region_of(t, p, type);

	*region = r ? r->id : NULL;
}

const char *
phone_region_of(const PhoneTables *t, const PhoneNumber *p)
{
	PhoneType	type;
	const PhoneRegion *r = region_of(t, p, &type);

	return r ? r->id : NULL;
}

bool
phone_is_valid(const PhoneTables *t, const PhoneNumber *p)
{
	PhoneType	type;

	return region_of(t, p, &type) != NULL && type != PHONE_UNKNOWN;
}

PhoneType
phone_type(const PhoneTables *t, const PhoneNumber *p)
{
	PhoneType	type;

	(void) region_of(t, p, &type);
	return type;
}

PhoneLength
phone_possible(const PhoneTables *t, const PhoneNumber *p)
{
	const PhoneRegion *r = region_for_code(t, p->country_code);

	return r ? test_length(r, p->nsn_len) : PHONE_INVALID_COUNTRY;
}

const char *
phone_type_name(PhoneType type)
{
	static const char *const names[] = {
		"fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "premium_rate",
		"shared_cost", "voip", "personal_number", "pager", "uan", "voicemail", "unknown"
	};

	return (type >= 0 && type <= PHONE_UNKNOWN) ? names[type] : "unknown";
}

const char *
phone_error_message(PhoneError err)
{
	switch (err)
	{
		case PHONE_OK:
			return "ok";
		case PHONE_NOT_A_NUMBER:
			return "not a phone number";
		case PHONE_INVALID_COUNTRY_CODE:
			return "invalid country code";
		case PHONE_TOO_SHORT_AFTER_IDD:
		case PHONE_TOO_SHORT_NSN:
			return "too short";
		case PHONE_TOO_LONG:
			return "too long";
	}
	return "not a phone number";
}
