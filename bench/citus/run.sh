#!/usr/bin/env bash
# bench/citus: bench/gateway's message lifecycles (dashboard send batches,
# phones claiming and reporting, inbound SMS, all through the PostgREST
# contract with the pre-request hook) on a Citus cluster against the
# single server, in one run.  The cluster is test/citus.sh's: a coordinator
# and two workers on 127.0.0.1, each with citus, pg_cron and eightms
# preloaded and the tier's settings, eightms distributed by
# eightms.distribute(); the single server is bench/gateway's.  All four
# servers run on the same machine, so this measures what distribution
# costs a lifecycle, not what more machines would give.  Rounds alternate
# the two; prints lifecycles/s of each, their ratio (single / cluster: how
# many times what a lifecycle costs on one server, median and spread), and
# the CPU each server's processes used a lifecycle (the coordinator's own
# apart: what it spends a request).
#
#   BENCH_SECONDS (default 15, per phase), BENCH_ROUNDS (default 7),
#   BENCH_CLIENTS (default 2: each phase runs twice as many pgbench
#   clients), BENCH_BATCH (default 100); the single server on
#   EIGHTMS_BENCH_PORT, the coordinator and workers on the next three.
NAME=citus
PORT=${EIGHTMS_BENCH_PORT:-54360}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-7}
CLIENTS=${BENCH_CLIENTS:-2}
BATCH=${BENCH_BATCH:-100}
SEND_BATCH=${BENCH_SEND_BATCH:-$BATCH}
source "$(dirname "${BASH_SOURCE[0]}")/../gateway/setup.sh"
SINGLE_HOST=$PGHOST SINGLE_PORT=$PGPORT

# ---- the cluster: test/citus.sh's nodes, with the benchmark's settings ----------
source "$REPO/test/citus.sh"
CT=$T/citus CPORT=$((PORT + 1))
SECRETS=$T/secrets.env
mkdir -p "$CT"
chmod 755 "$CT"
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'citus_stop; stop_cluster "$T/data"' EXIT
for i in 0 1 2; do
	citus_init_node "$i"
	printf "shared_buffers = 1GB\nmax_parallel_workers_per_gather = 0\njit = off\n" >> "$CT/${CITUS_NODES[$i]}/eightms.conf"
	[ -n "${BENCH_SETTINGS:-}" ] && printf '%s\n' "$BENCH_SETTINGS" >> "$CT/${CITUS_NODES[$i]}/eightms.conf"
	start_cluster "$CT/${CITUS_NODES[$i]}" "$SECRETS" "$CT/${CITUS_NODES[$i]}.log"
done
citus_database "$DB"
citus_psql 0 -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"
# The same account, history and scripts as on the single server (the same
# key file signs the tokens), made before distributing: distribute() moves
# the rows into the shards.
export PGHOST=$CT/run PGPORT=$CPORT
mkdir -p "$CT/scripts"
gateway_setup "$CT/scripts"
citus_psql 0 -d "$DB" -c "SELECT * FROM eightms.distribute()" >/dev/null
citus_psql 0 -d "$DB" -c "VACUUM ANALYZE eightms.message, eightms.conversation, eightms.phone"
CLUSTER_ACCT=$ACCT

# CPU seconds (user and system) used by one server's processes so far: the
# postmaster's children that are gone (counted in its cutime and cstime)
# and those still running.
node_cpu() {
	local data=$1 pm
	pm=$(head -n 1 "$data/postmaster.pid")
	python3 - "$pm" <<'PY'
import os, sys
pm = sys.argv[1]
hz = os.sysconf("SC_CLK_TCK")
def fields(pid):
    with open("/proc/%s/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()
f = fields(pm)
ticks = sum(int(x) for x in f[11:15])
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            g = fields(pid)
        except OSError:
            continue
        if g[1] == pm:
            ticks += int(g[11]) + int(g[12])
print(ticks / hz)
PY
}

# One phase of the gateway's scripts on one server; sets life (lifecycles
# a second, over the time pgbench measured), reqs (API requests: a phone's
# script makes two) and cpu (seconds each data directory's processes used).
delivered() { command psql -X -At -q -d "$DB" -c "SELECT count(*) FROM eightms.message WHERE account_id = '$1' AND status = 'delivered'"; }
phase() {
	local scripts=$1 acct=$2 before after n tps d
	shift 2
	declare -gA cpu0 cpu
	for d in "$@"; do cpu0[$d]=$(node_cpu "$d"); done
	before=$(delivered "$acct")
	command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T "$SECS" -D prev=- \
		-f "$scripts/send.sql@1" -f "$scripts/phone.sql@1" -f "$scripts/inbound.sql@1" "$DB" > "$T/round.out" 2>&1
	after=$(delivered "$acct")
	for d in "$@"; do cpu[$d]=$(echo "$(node_cpu "$d") - ${cpu0[$d]}" | bc -l); done
	cat "$T/round.out" >> "$T/gateway.out"
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/round.out")
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/round.out" | head -n1)
	[ -n "$n" ] && [ -n "$tps" ] || die "a phase printed no TPS ($T/round.out)"
	life=$(echo "($after - $before) / ($n / $tps)" | bc -l)
	lifecycles=$((after - before))
	# Transactions per script, in the order of the -f options.
	mapfile -t per < <(sed -n 's/^ - \([0-9]*\) transactions.*/\1/p' "$T/round.out")
	reqs=$(( ${per[0]:-0} + 2 * ${per[1]:-0} + ${per[2]:-0} ))
}

: > "$T/gateway.out"
COORD=$CT/coordinator
ratios=() singles=() clusters=() coord_req=() coord_life=() workers_life=() single_life=()
run_single() {
	PGHOST=$SINGLE_HOST PGPORT=$SINGLE_PORT phase "$T" "$SINGLE_ACCT" "$T/data"
	s_life=$life
	single_life+=("$(echo "${cpu[$T/data]} * 1000000 / $lifecycles" | bc -l)")
}
run_cluster() {
	PGHOST=$CT/run PGPORT=$CPORT phase "$CT/scripts" "$CLUSTER_ACCT" "$COORD" "$CT/worker1" "$CT/worker2"
	c_life=$life
	coord_life+=("$(echo "${cpu[$COORD]} * 1000000 / $lifecycles" | bc -l)")
	coord_req+=("$(echo "${cpu[$COORD]} * 1000000 / $reqs" | bc -l)")
	workers_life+=("$(echo "(${cpu[$CT/worker1]} + ${cpu[$CT/worker2]}) * 1000000 / $lifecycles" | bc -l)")
}
SINGLE_ACCT=$(PGHOST=$SINGLE_HOST PGPORT=$SINGLE_PORT q "SELECT account_id FROM eightms.account")
# A warm-up of each.
SECS_SAVE=$SECS SECS=5
run_single; run_cluster
SECS=$SECS_SAVE ratios=() singles=() clusters=() coord_req=() coord_life=() workers_life=() single_life=()
for round in $(seq 1 "$ROUNDS"); do
	# Every other round the other one first.
	if [ $((round % 2)) = 1 ]; then run_single; run_cluster; else run_cluster; run_single; fi
	ratio=$(echo "$s_life / $c_life" | bc -l)
	ratios+=("$ratio") singles+=("$s_life") clusters+=("$c_life")
	printf 'round %d: single server %6.0f lifecycles/s, cluster %6.0f lifecycles/s, ratio %.2f; CPU a lifecycle: single %4.0f us, coordinator %4.0f us, workers %4.0f us; coordinator %4.0f us a request\n' \
		"$round" "$s_life" "$c_life" "$ratio" "${single_life[-1]}" "${coord_life[-1]}" "${workers_life[-1]}" "${coord_req[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 {lo=$1} {hi=$1} END {printf "%.2f to %.2f", lo, hi}'; }
failed=$(grep -c 'ERROR' "$T/gateway.out" || true)
double() { command psql -X -At -q -d "$DB" -c "SELECT count(*) FROM (SELECT id FROM public.bench_claim, unnest(ids) id GROUP BY id HAVING count(*) > 1) d"; }
printf 'errors: %d, double claims: single %d, cluster %d\n' "$failed" \
	"$(PGHOST=$SINGLE_HOST PGPORT=$SINGLE_PORT double)" "$(PGHOST=$CT/run PGPORT=$CPORT double)"
printf 'commits: synchronous_commit = %s\n' "$(PGHOST=$SINGLE_HOST PGPORT=$SINGLE_PORT q 'SHOW synchronous_commit')"
printf 'lifecycles/s: single server median %.0f (%s), cluster median %.0f (%s)\n' \
	"$(median "${singles[@]}")" "$(range "${singles[@]}")" "$(median "${clusters[@]}")" "$(range "${clusters[@]}")"
printf 'CPU a lifecycle (us, medians): single server %.0f; cluster: coordinator %.0f, workers %.0f; the coordinator %.0f a request\n' \
	"$(median "${single_life[@]}")" "$(median "${coord_life[@]}")" "$(median "${workers_life[@]}")" "$(median "${coord_req[@]}")"
printf 'ratio single / cluster (median of %d rounds): %.2f (rounds %s)\n' "$ROUNDS" "$(median "${ratios[@]}")" "$(range "${ratios[@]}")"
