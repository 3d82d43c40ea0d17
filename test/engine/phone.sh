#!/usr/bin/env bash
# The phone-number engine outside the server: a differential sample against
# libphonenumber (the full 1,000,000-input run is `make phone-diff-full`),
# the CLI, and a replay of the fuzzer's seed corpus under ASan and UBSan.
# Prints "N passed, N failed"; run by make engine-check.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
cd "$REPO"
pass=0
fail=0

# A fresh seed each run widens what the suite sees over time; it is printed
# so a failure can be replayed with make phone-diff PHONE_DIFF_SEED=...
seed=${PHONE_DIFF_SEED:-$((RANDOM + 1))}
echo "# differential sample: seed $seed"
out=$(make -s phone-diff PHONE_DIFF_COUNT=${PHONE_DIFF_COUNT:-50000} PHONE_DIFF_SEED=$seed 2>&1)
echo "$out" | tail -n 20
line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
# The sample counts as one test: every input must agree.
if [ -n "$line" ] && [ "$(echo "$line" | cut -d' ' -f3)" = 0 ]; then
	echo "ok - libphonenumber and eightms agree on $(echo "$line" | cut -d' ' -f1) generated inputs"
	pass=$((pass + 1))
else
	echo "not ok - differential sample (seed $seed): ${line:-did not run}"
	fail=$((fail + 1))
fi

for kind in hard bytes; do
	out=$(make -s phone-diff-$kind PHONE_DIFF_COUNT=20000 PHONE_DIFF_SEED=$((RANDOM + 1)) 2>&1)
	line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
	if [ -n "$line" ] && [ "$(echo "$line" | cut -d' ' -f3)" = 0 ]; then
		echo "ok - libphonenumber and eightms agree on $(echo "$line" | cut -d' ' -f1) $kind inputs"
		pass=$((pass + 1))
	else
		echo "$out" | tail -n 10
		echo "not ok - differential sample ($kind): ${line:-did not run}"
		fail=$((fail + 1))
	fi
done

make -s eightms-phone >/dev/null
cli=$(printf '+1 650-253-0000\tUS\n020 7946 0018\tGB\nnonsense\tUS\n' | ./eightms-phone --metadata v8.12.57)
expected=$(printf '+16502530000\t1\tfixed_line_or_mobile\tUS\n+442079460018\t1\tfixed_line\tGB\n\t0\tunknown\t')
if [ "$cli" = "$expected" ]; then
	echo "ok - eightms-phone answers e164, valid, type and region per line"; pass=$((pass + 1))
else
	echo "not ok - eightms-phone output: $cli"; fail=$((fail + 1))
fi
if ! ./eightms-phone --metadata v1.0 </dev/null 2>/dev/null; then
	echo "ok - eightms-phone refuses an unknown metadata version"; pass=$((pass + 1))
else
	echo "not ok - eightms-phone accepted an unknown metadata version"; fail=$((fail + 1))
fi

mkdir -p .phone-build
if clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc \
	-o .phone-build/fuzz test/phone/fuzz.c src/phone/phone.c src/phone/tables/v9_0_35.c test/phone/v8_12_57.c \
	&& .phone-build/fuzz -runs=0 test/phone/corpus/* > .phone-build/replay.log 2>&1; then
	echo "ok - the fuzzer's $(ls test/phone/corpus | wc -l) corpus inputs replay clean under ASan+UBSan"; pass=$((pass + 1))
else
	tail -n 20 .phone-build/replay.log
	echo "not ok - fuzz corpus replay"; fail=$((fail + 1))
fi
# The same corpus through the differential fuzz target: every seed, the
# differential fuzzer's findings among them, must agree with libphonenumber.
if make -s phone-fuzz-diff-bin >/dev/null 2>&1; then
	if .phone-build/fuzz_diff -runs=0 test/phone/corpus/* > .phone-build/replay-diff.log 2>&1; then
		echo "ok - the corpus agrees with libphonenumber under ASan+UBSan"; pass=$((pass + 1))
	else
		grep -A3 DIFF .phone-build/replay-diff.log | head -n 20
		echo "not ok - corpus replay against libphonenumber"; fail=$((fail + 1))
	fi
else
	echo "not ok - the differential fuzz target did not build"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
