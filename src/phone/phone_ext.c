/*
 * phone_ext.c
 *		Extensions (" ext. 12", ";ext=12", ",,12", ...) and the general path's
 *		test of what may be a phone number.
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

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
