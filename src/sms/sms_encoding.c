/*
 * sms_encoding.c
 *		GSM 03.38 / UCS-2 encoding and segmentation of SMS bodies.
 *
 * A body that fits the GSM 7-bit default alphabet (plus its extension
 * table, whose characters cost an escape septet each) is sent in 7-bit:
 * 160 septets in one message, 153 per segment when concatenated.  Anything
 * else is UCS-2: 70 UTF-16 code units, or 67 per segment.  A segment never
 * ends between an escape and its character, nor between the two halves of a
 * surrogate pair; the unit is carried to the next segment instead.
 */
#include "sms_encoding.h"

#include <stdint.h>

/* The default alphabet, as Unicode code points (all cost one septet). */
static const uint16_t gsm_basic[] = {
	'@', 0xA3, '$', 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, '\n', 0xD8, 0xF8, '\r', 0xC5, 0xE5,
	0x394, '_', 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, 0xC6, 0xE6, 0xDF, 0xC9,
	' ', '!', '"', '#', 0xA4, '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	0xA1, 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 0xC4, 0xD6, 0xD1, 0xDC, 0xA7,
	0xBF, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0xE4, 0xF6, 0xF1, 0xFC, 0xE0
};

/* The extension table: two septets each (escape + character). */
static const uint16_t gsm_extension[] = {
	'\f', '^', '{', '}', '\\', '[', '~', ']', '|', 0x20AC
};

/*
 * gsm_basic and gsm_extension restated for ASCII, which is most of what is
 * sent: a lookup instead of a search of both tables for every character
 * (test/sms checks that the two agree).
 */
static const uint8_t gsm_ascii_cost[128] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 1,
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0,
};

/* Septets a code point costs in GSM-7: 1, 2, or 0 when it has none. */
static int
gsm_cost(uint32_t c)
{
	if (c < 128)
		return gsm_ascii_cost[c];
	for (size_t i = 0; i < sizeof(gsm_basic) / sizeof(gsm_basic[0]); i++)
		if (gsm_basic[i] == c)
			return 1;
	for (size_t i = 0; i < sizeof(gsm_extension) / sizeof(gsm_extension[0]); i++)
		if (gsm_extension[i] == c)
			return 2;
	return 0;
}

/* Next code point of UTF-8 at *i; -1 when invalid. */
static int32_t
next_cp(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	int			extra;
	uint32_t	v;

	if (c < 0x80)
	{
		(*i)++;
		return c;
	}
	if ((c & 0xE0) == 0xC0)
	{
		extra = 1;
		v = c & 0x1F;
	}
	else if ((c & 0xF0) == 0xE0)
	{
		extra = 2;
		v = c & 0x0F;
	}
	else if ((c & 0xF8) == 0xF0)
	{
		extra = 3;
		v = c & 0x07;
	}
	else
		return -1;
	if (*i + extra >= len)
		return -1;
	for (int k = 1; k <= extra; k++)
	{
		if ((s[*i + k] & 0xC0) != 0x80)
			return -1;
		v = (v << 6) | (s[*i + k] & 0x3F);
	}
	if ((extra == 1 && v < 0x80) || (extra == 2 && v < 0x800) || (extra == 3 && v < 0x10000)
		|| v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return -1;
	*i += extra + 1;
	return (int32_t) v;
}

/* Segments for a sequence of unit costs (1 or 2) with a per-segment size. */
typedef struct Packer
{
	int			single;			/* capacity when the whole body fits one message */
	int			multi;			/* capacity of each concatenated segment */
	int			total;			/* units so far */
	int			segments;		/* concatenated segments so far */
	int			used;			/* units in the current concatenated segment */
} Packer;

static void
pack(Packer *p, int cost)
{
	p->total += cost;
	if (p->used + cost > p->multi)
	{
		p->segments++;
		p->used = 0;
	}
	if (p->segments == 0)
		p->segments = 1;
	p->used += cost;
}

bool
sms_analyze(const char *utf8, size_t len, SmsInfo *info)
{
	const unsigned char *s = (const unsigned char *) utf8;
	Packer		gsm = {160, 153, 0, 0, 0};
	Packer		ucs = {70, 67, 0, 0, 0};
	bool		is_gsm = true;
	int			chars = 0;
	size_t		i = 0;

	while (i < len)
	{
		int32_t		c = next_cp(s, len, &i);
		int			cost;

		if (c < 0)
			return false;
		chars++;
		cost = gsm_cost((uint32_t) c);
		if (cost == 0)
			is_gsm = false;
		else if (is_gsm)
			pack(&gsm, cost);
		pack(&ucs, c > 0xFFFF ? 2 : 1);
	}
	info->characters = chars;
	if (is_gsm)
	{
		info->encoding = SMS_GSM7;
		info->units = gsm.total;
		info->segments = gsm.total == 0 ? 1 : gsm.total <= gsm.single ? 1 : gsm.segments;
	}
	else
	{
		info->encoding = SMS_UCS2;
		info->units = ucs.total;
		info->segments = ucs.total <= ucs.single ? 1 : ucs.segments;
	}
	return true;
}

/* Look-alikes and their GSM-7 replacements. */
static const char *
fold_of(uint32_t c)
{
	switch (c)
	{
		case 0x2018:			/* ‘ */
		case 0x2019:			/* ’ */
		case 0x201A:			/* ‚ */
		case 0x201B:			/* ‛ */
		case 0x2032:			/* ′ */
		case 0x00B4:			/* ´ */
		case 0x02BC:			/* ʼ */
			return "'";
		case 0x201C:			/* “ */
		case 0x201D:			/* ” */
		case 0x201E:			/* „ */
		case 0x201F:			/* ‟ */
		case 0x2033:			/* ″ */
		case 0x00AB:			/* « */
		case 0x00BB:			/* » */
			return "\"";
		case 0x2010:			/* hyphen */
		case 0x2011:			/* non-breaking hyphen */
		case 0x2012:			/* figure dash */
		case 0x2013:			/* – */
		case 0x2014:			/* — */
		case 0x2015:			/* ― */
		case 0x2212:			/* minus */
			return "-";
		case 0x2026:			/* … */
			return "...";
		case 0x00A0:			/* no-break space */
		case 0x2000: case 0x2001: case 0x2002: case 0x2003: case 0x2004:
		case 0x2005: case 0x2006: case 0x2007: case 0x2008: case 0x2009:
		case 0x200A: case 0x202F: case 0x205F: case 0x3000:
			return " ";
		case 0x200B:			/* zero-width space */
		case 0x2060:			/* word joiner */
		case 0xFEFF:			/* byte-order mark */
			return "";
		case 0x2022:			/* • */
			return "-";
		default:
			return NULL;
	}
}

size_t
sms_fold(const char *utf8, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *) utf8;
	size_t		i = 0;
	size_t		o = 0;

	while (i < len)
	{
		size_t		start = i;
		int32_t		c = next_cp(s, len, &i);
		const char *rep;

		if (c < 0)
			return (size_t) -1;
		rep = fold_of((uint32_t) c);
		if (rep != NULL)
		{
			/* Every replacement is no longer than what it replaces. */
			for (const char *r = rep; *r; r++)
				out[o++] = *r;
		}
		else
		{
			for (size_t k = start; k < i; k++)
				out[o++] = (char) s[k];
		}
	}
	return o;
}
