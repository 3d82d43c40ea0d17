/*
 * phone_match.c
 *		The metadata's patterns: region lookups, DFA and prefix-program matching,
 *		length and type validation, national prefix stripping and the
 *		normalization of digits and vanity letters.
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

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
