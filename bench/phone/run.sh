#!/usr/bin/env bash
# bench/phone: the phone engine against libphonenumber on one corpus of
# 1,000,000 mixed inputs, then in SQL: count(eightms.e164(raw, region, false))
# against the count(length(raw)) floor over the same table.
#
#   BENCH_INPUTS (default 1000000), BENCH_SEED (default 42),
#   EIGHTMS_BENCH_WORK (inputs and binaries, default /tmp/eightms-bench-phone-work)
NAME=phone
PORT=${EIGHTMS_BENCH_PORT:-54345}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
N=${BENCH_INPUTS:-1000000}
SEED=${BENCH_SEED:-42}

ensure_packages
W=${EIGHTMS_BENCH_WORK:-/tmp/eightms-bench-phone-work}
mkdir -p "$W"
# The inputs take a minute or two to generate: kept between runs, per
# count, seed and generator.
key="$N $SEED $(md5sum < "$REPO/test/phone/gen_inputs.py")"
if [ ! -s "$W/inputs.tsv" ] || [ "$(cat "$W/inputs.key" 2>/dev/null)" != "$key" ]; then
	python3 "$REPO/test/phone/gen_inputs.py" "$REPO/data/phonenumber/PhoneNumberMetadata-v8.12.57.xml" "$N" "$SEED" > "$W/inputs.tsv"
	echo "$key" > "$W/inputs.key"
fi
rm -f "$W"/*.o
for f in phone phonemeta/v8_12_57 phonemeta/v9_0_35; do
	gcc -O2 -I"$REPO/src" -c "$REPO/src/$f.c" -o "$W/$(basename $f).o"
done
g++ -O2 -I"$REPO/src" -o "$W/bench" "$REPO/bench/phone/bench.cc" "$W"/*.o -lphonenumber
if [ -z "${BENCH_SKIP_C:-}" ]; then
	echo "== C: the engine against libphonenumber, same inputs, same metadata (v8.12.57)"
	"$W/bench" < "$W/inputs.tsv"
fi

echo "== SQL"
bench_cluster
# e164(..., false) raises on what is not a possible number, so its table
# holds the inputs that are; try_e164 runs over all of them.
command psql -X -q -d "$DB" <<SQL
CREATE TABLE all_inputs (raw text, region text);
\\copy all_inputs FROM '$W/inputs.tsv' WITH (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')
CREATE TABLE inputs AS SELECT raw, region FROM all_inputs WHERE eightms.try_e164(raw, region, false) IS NOT NULL;
VACUUM ANALYZE;
SQL
rows=$(command psql -X -At -d "$DB" -c "SELECT count(*) FROM inputs")
e=$(best_ms "SELECT count(eightms.e164(raw, region, false)) FROM inputs;")
l=$(best_ms "SELECT count(length(raw)) FROM inputs;")
te=$(best_ms "SELECT count(eightms.try_e164(raw, region, false)) FROM all_inputs;")
tl=$(best_ms "SELECT count(length(raw)) FROM all_inputs;")
printf 'rows: %d possible numbers (of %d inputs)\n' "$rows" "$N"
printf 'count(eightms.e164(raw, region, false)):  %8.1f ms\n' "$e"
printf 'count(length(raw)):                       %8.1f ms\n' "$l"
printf 'ratio e164/length: %.2f (target <= 2)\n' "$(echo "$e / $l" | bc -l)"
printf 'all %d inputs: count(try_e164) %.1f ms, count(length) %.1f ms, ratio %.2f\n' "$N" "$te" "$tl" "$(echo "$te / $tl" | bc -l)"
