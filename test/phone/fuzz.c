/*
 * fuzz.c
 *		libFuzzer target for the phone-number engine: any bytes as the raw
 *		number, with a region chosen by the first byte, through parse,
 *		format, validity, type, region and possibility, under both metadata
 *		versions.  Built with AddressSanitizer and UndefinedBehaviorSanitizer
 *		(make phone-fuzz).
 */
#include <stdint.h>
#include <string.h>

#include "phone.h"

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

		if (phone_parse(tables[v], (const char *) data + 1, size - 1, region, &p) != PHONE_OK)
			continue;
		if (phone_format_e164(&p, e164) >= (int) sizeof(e164))
			__builtin_trap();
		(void) phone_is_valid(tables[v], &p);
		(void) phone_type(tables[v], &p);
		(void) phone_region_of(tables[v], &p);
		(void) phone_possible(tables[v], &p);
	}
	return 0;
}
