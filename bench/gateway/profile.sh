#!/usr/bin/env bash
# bench/gateway/profile.sh: where a lifecycle's wall-clock time goes.  A
# companion to run.sh (the ratio) and instructions.sh (instructions per
# lifecycle, single-user): this runs run.sh's three scripts on their own
# cluster, with pg_stat_statements tracking nested statements, and prints
# the time of each API call and of each statement inside it, per call.
# With BENCH_PERF=1 it also samples the whole machine with perf (software
# clock: this VM has no hardware counters) while the scripts run and prints
# the share of each process kind and the hottest server functions.
#
# pg_stat_statements adds its own cost to every nested statement: read the
# shares, not the absolute rate (run.sh measures that).
#
#   BENCH_SECONDS (default 20), BENCH_CLIENTS (default 2), BENCH_BATCH
#   (default 100), BENCH_PERF (default 0)
NAME=gateway-profile
PORT=${EIGHTMS_BENCH_PORT:-54349}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SECS=${BENCH_SECONDS:-20}
CLIENTS=${BENCH_CLIENTS:-2}
BATCH=${BENCH_BATCH:-100}
SEND_BATCH=$BATCH
[ "${BENCH_PERF:-0}" = 1 ] && ensure_packages linux-perf
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

printf "shared_preload_libraries = 'pg_cron,eightms,pg_stat_statements'\npg_stat_statements.track = all\n" >> "$T/data/eightms.conf"
stop_cluster "$T/data"
start_cluster "$T/data" "$T/secrets.env" "$T/server.log"
q "CREATE EXTENSION pg_stat_statements"
gateway() {
	command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T "$1" -D prev=- \
		-f "$T/send.sql@1" -f "$T/phone.sql@1" -f "$T/inbound.sql@1" "$DB"
}
# A warm-up, then the counted run.
gateway 5 >/dev/null 2>&1
q "SELECT pg_stat_statements_reset()" >/dev/null
before=$(q "SELECT count(*) FROM eightms.message WHERE status = 'delivered'")
gateway "$SECS" > "$T/profile.out" 2>&1 &
bench=$!
if [ "${BENCH_PERF:-0}" = 1 ]; then
	sleep 2
	perf record -a -g -F 999 -o "$T/perf.data" -- sleep $((SECS - 4)) > "$T/perf.log" 2>&1
fi
wait "$bench" || die "the gateway scripts failed ($T/profile.out)"
delivered=$(( $(q "SELECT count(*) FROM eightms.message WHERE status = 'delivered'") - before ))
printf 'lifecycles in %d s: %d (with pg_stat_statements tracking every statement)\n' "$SECS" "$delivered"
echo
echo "Top-level calls and the statements inside them: ms per call and per lifecycle (us)."
command psql -X -d "$DB" -v n="$delivered" <<'SQL'
SELECT round(total_exec_time::numeric / calls, 3) AS ms_per_call,
	   round((1000 * total_exec_time / :n)::numeric, 1) AS us_per_lifecycle,
	   calls,
	   CASE WHEN toplevel THEN 'call' ELSE '  inside' END AS level,
	   left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS statement
  FROM pg_stat_statements
 WHERE total_exec_time * 1000 > :n       -- at least 1 us per lifecycle
 ORDER BY toplevel DESC, total_exec_time DESC;
SQL
if [ "${BENCH_PERF:-0}" = 1 ]; then
	echo "Samples by process and library (the whole machine):"
	perf report -i "$T/perf.data" --no-children --sort comm,dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
	echo
	echo "Server functions with their callees (postgres processes):"
	perf report -i "$T/perf.data" --children --comm postgres --sort sym -g none 2>/dev/null \
		| grep -v '^#' | grep -v '^$' | grep -v '0x0000' | head -45
fi
