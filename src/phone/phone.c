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

/* Parsing reads the first cache line of a PhoneRegion alone (phone.h). */
_Static_assert(offsetof(PhoneRegion, npp_first) + sizeof(uint16_t) <= 64,
			   "PhoneRegion: what parsing reads must fit in its first cache line");

enum
{
	OP_SET, OP_SPLIT, OP_JMP, OP_SAVE, OP_END, OP_MATCH
};

/*
 * The engine in order: each part uses only what the parts before it define,
 * and all are one translation unit, as PostgreSQL's regcomp.c #includes its
 * regc_*.c: the hot steps stay static and inline into phone_parse_in and
 * phone_e164_possible.
 */
#include "phone_text.c"
#include "phone_match.c"
#include "phone_ext.c"
#include "phone_scan.c"
#include "phone_parse.c"
#include "phone_format.c"
