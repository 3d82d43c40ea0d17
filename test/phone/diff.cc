// diff.cc: differential test of the engine (src/phone/) against Google's libphonenumber
// (Debian's libphonenumber-dev, 8.12.57) with our tables built from the same
// metadata version.  Reads "raw<TAB>region" lines; for each, compares
// whether it parses, the E.164 form, validity, number type, region, the
// possible-length verdict (e164's non-strict mode) and the extension; and
// that phone_e164_possible agrees with the calls it stands for.
// Prints every disagreement (up to a limit) and "N passed, N failed".
#include <iostream>
#include <string>

#include <phonenumbers/phonenumberutil.h>

extern "C" {
#include "phone/phone.h"
}

using i18n::phonenumbers::PhoneNumberUtil;

static const char *
type_name(PhoneNumberUtil::PhoneNumberType t)
{
	switch (t)
	{
		case PhoneNumberUtil::FIXED_LINE: return "fixed_line";
		case PhoneNumberUtil::MOBILE: return "mobile";
		case PhoneNumberUtil::FIXED_LINE_OR_MOBILE: return "fixed_line_or_mobile";
		case PhoneNumberUtil::TOLL_FREE: return "toll_free";
		case PhoneNumberUtil::PREMIUM_RATE: return "premium_rate";
		case PhoneNumberUtil::SHARED_COST: return "shared_cost";
		case PhoneNumberUtil::VOIP: return "voip";
		case PhoneNumberUtil::PERSONAL_NUMBER: return "personal_number";
		case PhoneNumberUtil::PAGER: return "pager";
		case PhoneNumberUtil::UAN: return "uan";
		case PhoneNumberUtil::VOICEMAIL: return "voicemail";
		default: return "unknown";
	}
}

/*
 * phone_e164_possible against what it stands for, phone_parse_in,
 * phone_possible and phone_format_e164 in turn, under either table: true
 * when they agree.
 */
static bool
fused_agrees(const PhoneTables *t, const std::string &raw, const std::string &region)
{
	const PhoneRegion *def = phone_region(t, region.c_str());
	::PhoneNumber p;
	char		want[32] = "", got[32] = "";
	int			want_len = -1;
	int			got_len;

	if (phone_parse_in(t, raw.data(), raw.size(), def, &p) == PHONE_OK)
	{
		PhoneLength v = phone_possible(t, &p);

		if (v == PHONE_IS_POSSIBLE || v == PHONE_IS_POSSIBLE_LOCAL_ONLY)
			want_len = phone_format_e164(&p, want);
	}
	got_len = phone_e164_possible(t, raw.data(), raw.size(), def, got);
	return got_len == want_len && (got_len < 0 || std::string(got, got_len) == std::string(want, want_len));
}

int
main(int argc, char **argv)
{
	const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
	long		passed = 0, failed = 0, shown = 0;
	long		limit = argc > 1 ? atol(argv[1]) : 50;
	std::string line;

	while (std::getline(std::cin, line))
	{
		size_t		tab = line.find('\t');
		std::string raw = line.substr(0, tab);
		std::string region = tab == std::string::npos ? "" : line.substr(tab + 1);
		i18n::phonenumbers::PhoneNumber n;
		std::string theirs, ours;

		/*
		 * Inputs over PHONE_MAX_INPUT bytes: the engine refuses them (as Java
		 * libphonenumber and later C++ releases do); 8.12.57's C++ reads any
		 * length.  The one designed difference: check our side only.
		 */
		if (raw.size() > PHONE_MAX_INPUT)
			theirs = "(no parse)";
		else if (util->Parse(raw, region, &n) == PhoneNumberUtil::NO_PARSING_ERROR)
		{
			std::string e164, rc, ext = n.extension();

			/*
			 * libphonenumber keeps an extension's digits as written (full-width,
			 * Arabic-Indic, ...); the engine keeps them as ASCII.  Compare the
			 * digits.
			 */
			util->NormalizeDigitsOnly(&ext);

			util->Format(n, PhoneNumberUtil::E164, &e164);
			util->GetRegionCodeForNumber(n, &rc);
			theirs = e164 + " " + (util->IsValidNumber(n) ? "1" : "0") + " " +
				type_name(util->GetNumberType(n)) + " " + (rc == "ZZ" ? "" : rc) + " " +
				std::to_string((int) util->IsPossibleNumberWithReason(n)) + " " + ext;
		}
		else
			theirs = "(no parse)";

		{
			::PhoneNumber p;
			const PhoneTables *t = &phone_tables_v8_12_57;

			if (phone_parse(t, raw.data(), raw.size(), region.c_str(), &p) == PHONE_OK)
			{
				char		e164[32];
				const char *rc = phone_region_of(t, &p);

				phone_format_e164(&p, e164);
				ours = std::string(e164) + " " + (phone_is_valid(t, &p) ? "1" : "0") + " " +
					phone_type_name(phone_type(t, &p)) + " " + (rc ? rc : "") + " " +
					std::to_string((int) phone_possible(t, &p)) + " " + p.extension;
			}
			else
				ours = "(no parse)";
		}
		if (!fused_agrees(&phone_tables_v8_12_57, raw, region)
			|| !fused_agrees(&phone_tables_v9_0_35, raw, region))
			ours += " (phone_e164_possible disagrees)";
		if (theirs == ours)
			passed++;
		else
		{
			failed++;
			if (shown++ < limit)
				std::cout << "DIFF\t" << raw << "\t" << region << "\tlibphonenumber: " << theirs
					<< "\teightms: " << ours << std::endl;
		}
	}
	std::cout << passed << " passed, " << failed << " failed" << std::endl;
	return failed != 0;
}
