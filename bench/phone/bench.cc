// bench.cc: ns per input for eightms's phone engine and for libphonenumber
// (Parse + Format(E164) + IsValidNumber + GetNumberType; ours gets validity
// and type from one phone_classify call) over the same inputs, in one run.  Reads "raw<TAB>region" lines.
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <phonenumbers/phonenumberutil.h>

extern "C" {
#include "phone/phone.h"
}

using i18n::phonenumbers::PhoneNumberUtil;

int
main()
{
	std::vector<std::pair<std::string, std::string>> in;
	std::string line;

	while (std::getline(std::cin, line))
	{
		size_t		tab = line.find('\t');

		in.emplace_back(line.substr(0, tab), tab == std::string::npos ? "" : line.substr(tab + 1));
	}
	const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
	long		ours_ok = 0, theirs_ok = 0, sink = 0;

	for (int round = 0; round < 2; round++)
	{
		auto		t0 = std::chrono::steady_clock::now();

		for (auto &p : in)
		{
			::PhoneNumber n;
			char		e164[32];
			const PhoneTables *t = &phone_tables_v8_12_57;

			if (phone_parse(t, p.first.data(), p.first.size(), p.second.c_str(), &n) == PHONE_OK)
			{
				const char *region;
				PhoneType	type;

				sink += phone_format_e164(&n, e164);
				/* validity and type in one pass (region found once) */
				phone_classify(t, &n, &region, &type);
				sink += (region != NULL && type != PHONE_UNKNOWN) + type;
				ours_ok += round == 0;
			}
		}
		auto		t1 = std::chrono::steady_clock::now();

		for (auto &p : in)
		{
			i18n::phonenumbers::PhoneNumber n;
			std::string e164;

			if (util->Parse(p.first, p.second, &n) == PhoneNumberUtil::NO_PARSING_ERROR)
			{
				util->Format(n, PhoneNumberUtil::E164, &e164);
				sink += e164.size();
				sink += util->IsValidNumber(n);
				sink += util->GetNumberType(n);
				theirs_ok += round == 0;
			}
		}
		auto		t2 = std::chrono::steady_clock::now();
		double		ours = std::chrono::duration<double, std::nano>(t1 - t0).count() / in.size();
		double		theirs = std::chrono::duration<double, std::nano>(t2 - t1).count() / in.size();

		if (round == 1)
		{
			std::cout << "inputs: " << in.size() << " (parsed: eightms " << ours_ok << ", libphonenumber " << theirs_ok << ")\n";
			std::cout << "eightms:        " << ours << " ns per input\n";
			std::cout << "libphonenumber: " << theirs << " ns per input\n";
			std::cout << "ratio libphonenumber/eightms: " << theirs / ours << " (target >= 50)\n";
		}
	}
	return sink == 42;
}
