#!/usr/bin/env bash
# The template parser outside the server (src/template/template.mk): its
# unit tests under ASan and UBSan (each counted), and the fuzzer's seed
# corpus replayed under ASan and UBSan.  Prints "N passed, N failed"; run
# by make engine-check.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
cd "$REPO"
B=${ENGINE_BUILD:-$REPO/.engine-build}/template
mkdir -p "$B"
pass=0
fail=0

out=$(make -s template-test TEMPLATE_BUILD="$B" 2>&1)
printf '%s\n' "$out" | grep -v '^ok '
line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
if [ -n "$line" ]; then
	pass=$((pass + $(echo "$line" | cut -d' ' -f1)))
	fail=$((fail + $(echo "$line" | cut -d' ' -f3)))
else
	echo "not ok - the template unit tests did not run"; fail=$((fail + 1))
fi

if make -s template-fuzz-replay TEMPLATE_BUILD="$B" > "$B/replay.log" 2>&1; then
	echo "ok - the fuzzer's $(ls test/template/corpus | wc -l) corpus inputs replay clean under ASan+UBSan"; pass=$((pass + 1))
else
	tail -n 20 "$B/replay.log"
	echo "not ok - template fuzz corpus replay"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
