/*
 * phone_parse.c
 *		The parse: the calling code, the national prefix and the national number
 *		from the digits (parse_digits), and the general path over code points
 *		with the byte scans in front of it (parse_in).
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

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
