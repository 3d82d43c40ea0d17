#!/usr/bin/env bash
# The CSV reader outside the server (src/csv/csv.mk): its unit tests under
# ASan and UBSan (each counted), a differential sample against Python's csv
# module, and the fuzzer's seed corpus replayed under ASan and UBSan.
# Prints "N passed, N failed"; run by make engine-check.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
cd "$REPO"
B=${ENGINE_BUILD:-$REPO/.engine-build}/csv
mkdir -p "$B"
pass=0
fail=0

out=$(make -s csv-test CSV_BUILD="$B" 2>&1)
printf '%s\n' "$out" | grep -v '^ok '
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
if [ -n "$line" ]; then
	pass=$((pass + $(echo "$line" | cut -d' ' -f1)))
	fail=$((fail + $(echo "$line" | cut -d' ' -f3)))
else
	echo "not ok - the CSV unit tests did not run"; fail=$((fail + 1))
fi

# A fresh seed each run widens what the suite sees over time; it is printed
# so that a failure can be replayed with make csv-diff CSV_DIFF_SEED=...
seed=${CSV_DIFF_SEED:-$((RANDOM + 1))}
out=$(make -s csv-diff CSV_BUILD="$B" CSV_DIFF_COUNT=${CSV_DIFF_COUNT:-20000} CSV_DIFF_SEED=$seed 2>&1)
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
if [ -n "$line" ] && [ "$(echo "$line" | cut -d' ' -f3)" = 0 ]; then
	echo "ok - Python's csv module and the reader agree on $(echo "$line" | cut -d' ' -f1) generated inputs (seed $seed)"
	pass=$((pass + 1))
else
	printf '%s\n' "$out" | tail -n 12
	echo "not ok - differential sample against Python's csv module (seed $seed): ${line:-did not run}"
	fail=$((fail + 1))
fi

if make -s csv-fuzz-replay CSV_BUILD="$B" > "$B/replay.log" 2>&1; then
	echo "ok - the fuzzer's $(ls test/csv/corpus | wc -l) corpus inputs replay clean under ASan+UBSan"; pass=$((pass + 1))
else
	tail -n 20 "$B/replay.log"
	echo "not ok - CSV fuzz corpus replay"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
