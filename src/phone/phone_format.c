/*
 * phone_format.c
 *		E.164, possible lengths, the region and type of a parsed number, and the
 *		names of types and errors.
 *
 * This file is #included by phone.c, the engine's one translation unit,
 * so that the compiler can still inline across it; it is not compiled
 * on its own.
 */

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
