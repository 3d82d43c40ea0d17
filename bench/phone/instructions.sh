#!/usr/bin/env bash
# bench/phone/instructions.sh: CPU instructions per row of run.sh's two SQL
# queries, counted by valgrind (callgrind) in a single-user backend.  A
# companion to run.sh: its wall-clock ratio moves with whatever else runs
# on a shared 2-core machine, instruction counts do not, so a change to
# e164 can be weighed before it is timed.
#
# Over the first BENCH_ROWS rows of run.sh's table of possible numbers
# (same corpus, BENCH_INPUTS and BENCH_SEED), each query runs once in a
# backend of its own; only what standard_ExecutorRun executes is counted
# (the scan, the calls, the aggregate), over the number of rows.
#
#   BENCH_ROWS (default 200000), EIGHTMS_BENCH_WORK as in run.sh
#   BENCH_SIM=1: callgrind's cache and branch simulators too (a D1 of 48 KB
#   and an LL of 4 MB, this machine's L1d and L2), and each query's events
#   per row: loads missing D1 and LL, conditional branches mispredicted
NAME=phone-instructions
PORT=${EIGHTMS_BENCH_PORT:-54348}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ROWS=${BENCH_ROWS:-200000}
ensure_packages valgrind

source "$(dirname "${BASH_SOURCE[0]}")/inputs.sh"

bench_cluster
command psql -X -q -d "$DB" <<SQL
CREATE TABLE all_inputs (raw text, region text);
\\copy all_inputs FROM '$W/inputs.tsv' WITH (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')
CREATE TABLE inputs AS SELECT raw, region FROM all_inputs WHERE eightms.try_e164(raw, region, false) IS NOT NULL;
CREATE TABLE head AS SELECT raw, region FROM inputs LIMIT $ROWS;
VACUUM ANALYZE;
CHECKPOINT;
SQL
rows=$(command psql -X -At -d "$DB" -c "SELECT count(*) FROM head")
stop_cluster "$T/data"
# Only what standard_ExecutorRun executes, with run.sh's settings.
count() {
	CALLGRIND_OPTS="--toggle-collect=standard_ExecutorRun $SIM_OPTS" \
		SINGLE_OPTS="-c shared_buffers=1GB -c max_parallel_workers_per_gather=0 -c jit=off" \
		single_user_instructions "$@"
}
SIM_OPTS=
[ -n "${BENCH_SIM:-}" ] && SIM_OPTS="--cache-sim=yes --branch-sim=yes --D1=49152,12,64 --LL=4194304,16,64"
e=$(count e164 "SELECT count(eightms.e164(raw, region, false)) FROM head")
l=$(count length "SELECT count(length(raw)) FROM head")
printf 'rows: %d (the first of the possible numbers); callgrind outputs in %s\n' "$rows" "$T/callgrind"
printf 'count(eightms.e164(raw, region, false)): %d instructions per row\n' $((e / rows))
printf 'count(length(raw)):                      %d instructions per row\n' $((l / rows))
awk -v e="$e" -v l="$l" 'BEGIN { printf "ratio e164/length by instructions: %.2f\n", e / l }'
if [ -n "${BENCH_SIM:-}" ]; then
	for q in e164 length; do
		callgrind_annotate "$T/callgrind/out.$q" 2>/dev/null | awk -v q="$q" -v n="$rows" '
			/^Events shown:/ { for (i = 3; i <= NF; i++) ev[i - 2] = $i }
			/PROGRAM TOTALS/ { k = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); v[++k] = $i }
				for (i = 1; i <= k; i++) out = out sprintf(" %s %.2f", ev[i], v[i] / n); print q ", per row:" out }'
	done
fi
