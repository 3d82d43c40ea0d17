/*
 * phone_scan.c
 *		The byte scans that read most inputs in one pass: digits alone or after a
 *		plus sign, digits with punctuation, tel: URIs, a number followed by an
 *		extension, vanity numbers.  Each gives the general path's answer.
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

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
