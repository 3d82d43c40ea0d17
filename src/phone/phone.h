/*
 * phone.h
 *		Phone numbers with libphonenumber's semantics, in plain C: parse with a
 *		default region, E.164, validity, number type, region.
 *
 * No PostgreSQL headers: the engine is fuzzed, benchmarked and compared
 * with libphonenumber outside the server.  No allocation, no mutable global
 * state; the tables (src/phone/tables/, generated) are read-only.
 */
#ifndef PHONE_H
#define PHONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One instruction of a prefix pattern's backtracking program. */
typedef struct PhoneInst
{
	uint8_t		op;
	uint16_t	x;
	uint16_t	y;
} PhoneInst;

typedef struct PhoneDesc
{
	int32_t		dfa;			/* start state, or -1: the type does not exist */
	uint32_t	lengths;		/* bit n: n digits possible; 0: the general ones */
	uint32_t	local_only;
} PhoneDesc;

enum
{
	PHONE_DESC_FIXED_LINE, PHONE_DESC_MOBILE, PHONE_DESC_TOLL_FREE, PHONE_DESC_PREMIUM_RATE,
	PHONE_DESC_SHARED_COST, PHONE_DESC_VOIP, PHONE_DESC_PERSONAL, PHONE_DESC_PAGER,
	PHONE_DESC_UAN, PHONE_DESC_VOICEMAIL, PHONE_NDESC
};

typedef struct __attribute__((aligned(64))) PhoneRegion
{
	/* What parsing reads, kept together in the first cache line. */
	char		id[4];			/* ISO 3166 code, or "001" for non-geographic */
	uint16_t	country_code;
	uint8_t		main_country;
	uint8_t		same_fixed_mobile;
	int32_t		idd;			/* program: international prefix, or -1 */
	int32_t		npp;			/* program: national prefix for parsing, or -1 */
	/* DFAs of idd, npp and leading: where they die, no prefix matches */
	int32_t		idd_dfa;
	int32_t		npp_dfa;
	int16_t		npp_groups;
	/* 1: no number the national prefix starts matches general (strip it unweighed) */
	uint8_t		npp_never_general;
	int32_t		general;		/* DFA of the general description */
	uint32_t	lengths;		/* possible lengths of the general description */
	uint32_t	local_only;
	const char *transform;		/* national prefix transform rule, "" if none */
	char		e164[4];		/* "+" and the calling code, zero-padded */
	int16_t		main_region;	/* the main region of the calling code */
	/* bit d: idd_dfa (npp_dfa) does not die on a first digit d */
	uint16_t	idd_first;
	uint16_t	npp_first;
	/* The first cache line ends in leading, which parsing does not read. */
	int32_t		leading;		/* program: leading digits, or -1 */
	int32_t		leading_dfa;
	PhoneDesc	desc[PHONE_NDESC];
} PhoneRegion;

typedef struct PhoneTables
{
	const char *version;
	const uint16_t (*dfa_next)[10];
	/* 0 no, 1 accepting, 2 accepting with no way on (prefix patterns without "$") */
	const uint8_t *dfa_accept;
	const PhoneInst *prog;
	const PhoneRegion *regions;
	int			nregions;
	const int16_t *cc_list;		/* regions by calling code, main one first */
	const uint16_t *cc_first;	/* [code] -> start in cc_list */
	const uint8_t *cc_count;	/* [code] -> how many */
	const int16_t *id_index;	/* [A-Z][A-Z] -> region, or -1 */
} PhoneTables;

extern const PhoneTables phone_tables_v9_0_35;
extern const PhoneTables phone_tables_v8_12_57;

typedef enum PhoneError
{
	PHONE_OK = 0,
	PHONE_NOT_A_NUMBER,
	PHONE_INVALID_COUNTRY_CODE,
	PHONE_TOO_SHORT_AFTER_IDD,
	PHONE_TOO_SHORT_NSN,
	PHONE_TOO_LONG
} PhoneError;

typedef enum PhoneType
{
	PHONE_FIXED_LINE, PHONE_MOBILE, PHONE_FIXED_LINE_OR_MOBILE, PHONE_TOLL_FREE,
	PHONE_PREMIUM_RATE, PHONE_SHARED_COST, PHONE_VOIP, PHONE_PERSONAL_NUMBER,
	PHONE_PAGER, PHONE_UAN, PHONE_VOICEMAIL, PHONE_UNKNOWN
} PhoneType;

typedef enum PhoneLength
{
	PHONE_IS_POSSIBLE, PHONE_IS_POSSIBLE_LOCAL_ONLY, PHONE_INVALID_COUNTRY,
	PHONE_LENGTH_TOO_SHORT, PHONE_INVALID_LENGTH, PHONE_LENGTH_TOO_LONG
} PhoneLength;

#define PHONE_MAX_INPUT 250
#define PHONE_MAX_NSN 17

typedef struct PhoneNumber
{
	int			country_code;
	char		nsn[PHONE_MAX_NSN + 1];	/* national significant number, with Italian leading zeros */
	int			nsn_len;
	char		extension[24];
} PhoneNumber;

/* Parse raw (UTF-8) with a default region ("US", or NULL/"ZZ" for none). */
extern PhoneError phone_parse(const PhoneTables *t, const char *raw, size_t len,
							  const char *region, PhoneNumber *out);

/* The region of an ISO 3166 code ("US"), or NULL when the tables have none. */
extern const PhoneRegion *phone_region(const PhoneTables *t, const char *id);

/* phone_region for a code of two letters known to be A to Z. */
static inline const PhoneRegion *
phone_region_az(const PhoneTables *t, char a, char b)
{
	int			i = t->id_index[(a - 'A') * 26 + (b - 'A')];

	return i < 0 ? NULL : &t->regions[i];
}

/* phone_parse with the default region looked up already (NULL for none). */
extern PhoneError phone_parse_in(const PhoneTables *t, const char *raw, size_t len,
								 const PhoneRegion *region, PhoneNumber *out);

/* "+<cc><nsn>" into buf (at least 22 bytes); returns its length. */
extern int	phone_format_e164(const PhoneNumber *n, char *buf);

/*
 * A non-strict e164 in one call: phone_parse_in, then phone_possible (possible,
 * or possible only locally), then phone_format_e164 into buf (at least 22
 * bytes).  Returns the length written, or -1 where either check fails (the
 * two functions then tell why).
 */
extern int	phone_e164_possible(const PhoneTables *t, const char *raw, size_t len,
								const PhoneRegion *region, char *buf);

/* The region of the number ("US", "001"), or NULL when none. */
extern const char *phone_region_of(const PhoneTables *t, const PhoneNumber *n);

extern bool phone_is_valid(const PhoneTables *t, const PhoneNumber *n);

/* Region and type at once (what is_valid, type and region_of each compute). */
extern void phone_classify(const PhoneTables *t, const PhoneNumber *n,
						   const char **region, PhoneType *type);
extern PhoneType phone_type(const PhoneTables *t, const PhoneNumber *n);
extern PhoneLength phone_possible(const PhoneTables *t, const PhoneNumber *n);

extern const char *phone_type_name(PhoneType type);
extern const char *phone_error_message(PhoneError err);

#endif							/* PHONE_H */
