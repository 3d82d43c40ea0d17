// fuzz_diff.cc: libFuzzer target that compares the engine with
// libphonenumber 8.12.57 (our v8.12.57 tables) on whatever the fuzzer makes:
// the first byte picks the default region among all of them, the rest is the
// raw number.  A disagreement prints both answers and aborts, so libFuzzer
// keeps the input.  Built with ASan+UBSan (make phone-fuzz-diff); the
// generated inputs of test/phone/gen_inputs.py only reach what they were
// written to reach, this reaches what coverage leads to.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <phonenumbers/phonenumberutil.h>

extern "C" {
#include "phone/phone.h"
}

using i18n::phonenumbers::PhoneNumberUtil;

static std::string
answer_ours(const std::string &raw, const char *region)
{
	const PhoneTables *t = &phone_tables_v8_12_57;
	::PhoneNumber p;
	char		e164[32];
	const char *rc;

	if (phone_parse(t, raw.data(), raw.size(), region, &p) != PHONE_OK)
		return "(no parse)";
	phone_format_e164(&p, e164);
	rc = phone_region_of(t, &p);
	return std::string(e164) + " " + (phone_is_valid(t, &p) ? "1" : "0") + " " +
		std::to_string((int) phone_type(t, &p)) + " " + (rc ? rc : "") + " " +
		std::to_string((int) phone_possible(t, &p)) + " " + p.extension;
}

static std::string
answer_theirs(const std::string &raw, const char *region)
{
	const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
	i18n::phonenumbers::PhoneNumber n;
	std::string e164, rc, ext;

	if (util->Parse(raw, region, &n) != PhoneNumberUtil::NO_PARSING_ERROR)
		return "(no parse)";
	util->Format(n, PhoneNumberUtil::E164, &e164);
	util->GetRegionCodeForNumber(n, &rc);
	ext = n.extension();
	util->NormalizeDigitsOnly(&ext);
	return e164 + " " + (util->IsValidNumber(n) ? "1" : "0") + " " +
		std::to_string((int) util->GetNumberType(n)) + " " + (rc == "ZZ" ? "" : rc) + " " +
		std::to_string((int) util->IsPossibleNumberWithReason(n)) + " " + ext;
}

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const PhoneTables *t = &phone_tables_v8_12_57;
	const char *region;

	if (size == 0)
		return 0;
	// All regions, plus "ZZ" (none) and the empty string.
	if (data[0] < t->nregions)
		region = t->regions[data[0]].id;
	else
		region = (data[0] & 1) ? "ZZ" : "";

	std::string raw((const char *) data + 1, size - 1);
	std::string ours = answer_ours(raw, region);
	/* Over PHONE_MAX_INPUT bytes the engine refuses by design (see diff.cc). */
	std::string theirs = raw.size() > PHONE_MAX_INPUT ? "(no parse)" : answer_theirs(raw, region);

	if (ours != theirs)
	{
		fprintf(stderr, "DIFF region %s raw \"%s\"\n  libphonenumber: %s\n  eightms:        %s\n",
				region, raw.c_str(), theirs.c_str(), ours.c_str());
		abort();
	}
	return 0;
}
