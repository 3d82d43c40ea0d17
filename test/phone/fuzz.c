/*
 * fuzz.c
 *		libFuzzer target for the phone-number engine: any bytes as the raw
 *		number, with a region chosen by the first byte, through parse,
 *		format, validity, type, region and possibility, under both metadata
 *		versions, and phone_e164_possible against those steps.  Built with
 *		AddressSanitizer and UndefinedBehaviorSanitizer (make phone-fuzz).
 */
#include <stdint.h>
#include <string.h>

#include "phone/phone.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const regions[] = {
		"US", "GB", "AR", "MX", "IT", "DE", "FR", "BR", "IN", "CN", "JP", "RU",
		"KZ", "AU", "NZ", "ZZ", "001", "", "CA", "BQ"
	};
	const PhoneTables *tables[] = {&phone_tables_v9_0_35, &phone_tables_v8_12_57};
	const char *region;
	char		e164[32];

	if (size == 0)
		return 0;
	region = regions[data[0] % (sizeof(regions) / sizeof(regions[0]))];
	for (int v = 0; v < 2; v++)
	{
		PhoneNumber p;
		char		fused[32];
		int			fused_len = phone_e164_possible(tables[v], (const char *) data + 1, size - 1,
													phone_region(tables[v], region), fused);
		int			len;
		PhoneLength possible;

		if (phone_parse(tables[v], (const char *) data + 1, size - 1, region, &p) != PHONE_OK)
		{
			/* phone_e164_possible stands for the parse, the length check and the format */
			if (fused_len != -1)
				__builtin_trap();
			continue;
		}
		if ((len = phone_format_e164(&p, e164)) >= (int) sizeof(e164))
			__builtin_trap();
		possible = phone_possible(tables[v], &p);
		if (possible == PHONE_IS_POSSIBLE || possible == PHONE_IS_POSSIBLE_LOCAL_ONLY
			? fused_len != len || memcmp(fused, e164, len) != 0
			: fused_len != -1)
			__builtin_trap();
		(void) phone_is_valid(tables[v], &p);
		(void) phone_type(tables[v], &p);
		(void) phone_region_of(tables[v], &p);
	}
	return 0;
}
