#!/usr/bin/env bash
# bench/gateway: complete message lifecycles through the public API with
# pgbench, against the built-in tpcb-like script on the same cluster in the
# same run.  One script sends batches of 100 through eightms_api.send_messages
# as a dashboard user; another acts as a phone, claiming 100 in one
# transaction and reporting them sent (and the previous batch delivered) in
# the next, as the app does; a third delivers inbound SMS.  Every
# transaction sets role, claims, method and path and calls the pre-request
# hook, as PostgREST does.  Prints lifecycles
# (queued -> delivered) per second, tpcb-like TPS, their ratio, and double
# claims (which must be zero).  Target (issue 5): ratio >= 3, the median
# of rounds that alternate the two.
#
#   BENCH_SECONDS (default 15, per phase), BENCH_ROUNDS (default 9), BENCH_CLIENTS (default 2:
#   both phases run twice as many pgbench clients), BENCH_BATCH (default 100,
#   what a phone claims at once: the most claim_messages hands out), BENCH_SEND_BATCH
#   (default BENCH_BATCH)
NAME=gateway
PORT=${EIGHTMS_BENCH_PORT:-54346}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-9}
CLIENTS=${BENCH_CLIENTS:-2}
BATCH=${BENCH_BATCH:-100}
SEND_BATCH=${BENCH_SEND_BATCH:-$BATCH}
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# tpcb-like on the same cluster as the baseline, then the gateway, in
# alternating rounds: a disturbance on the machine then shows as one odd
# round instead of moving the one ratio.  The median round is the result.
command pgbench -q -i -s 10 "$DB" >/dev/null 2>&1
# A warm-up, so that the baseline is not measured on cold tables.
command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T 5 "$DB" >/dev/null 2>&1
delivered() { q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND status = 'delivered'"; }
outbound() { q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'out'"; }
queued_before=$(outbound)
inbound_before=$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'in'")
delivered_before=$(delivered)
ratios=()
: > "$T/gateway.out"
# As many clients as the gateway phase has: with fewer, tpcb-like leaves
# the cores idle while its commits wait, and the ratio flatters the gateway.
# WAL written by each phase (bytes, full-page images, checkpoints), summed
# over the rounds: what the cluster's WAL and checkpoint settings act on.
wal() { q "SELECT w.wal_bytes::bigint, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req FROM pg_stat_wal w, pg_stat_bgwriter b" | tr '|' ' '; }
declare -A walsum=([tpcb_bytes]=0 [tpcb_fpi]=0 [tpcb_ckpt]=0 [tpcb_txn]=0 [gw_bytes]=0 [gw_fpi]=0 [gw_ckpt]=0 [gw_life]=0)
wal_add() {
	local phase=$1 b0=$2 f0=$3 c0=$4 b1 f1 c1
	read -r b1 f1 c1 < <(wal)
	walsum[${phase}_bytes]=$(( walsum[${phase}_bytes] + b1 - b0 ))
	walsum[${phase}_fpi]=$(( walsum[${phase}_fpi] + f1 - f0 ))
	walsum[${phase}_ckpt]=$(( walsum[${phase}_ckpt] + c1 - c0 ))
}
tpcb_phase() {
	local b f c
	read -r b f c < <(wal)
	command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T "$SECS" "$DB" > "$T/tpcb.out" 2>/dev/null
	tpcb=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/tpcb.out" | head -n1)
	wal_add tpcb "$b" "$f" "$c"
	walsum[tpcb_txn]=$(( walsum[tpcb_txn] + $(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/tpcb.out") ))
}
# Senders, phones and inbound at once, weighted 1 : 1 : 1.
gateway_phase() {
	local b f c
	before=$(delivered)
	read -r b f c < <(wal)
	command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T "$SECS" -D prev=- \
		-f "$T/send.sql@1" -f "$T/phone.sql@1" -f "$T/inbound.sql@1" "$DB" > "$T/round.out" 2>&1
	wal_add gw "$b" "$f" "$c"
	after=$(delivered)
	walsum[gw_life]=$(( walsum[gw_life] + after - before ))
}
for round in $(seq 1 "$ROUNDS"); do
	# Every other round the other way round, so that neither phase always
	# runs on what the other left behind (its dirty pages, autovacuum).
	if [ $((round % 2)) = 1 ]; then tpcb_phase; gateway_phase; else gateway_phase; tpcb_phase; fi
	cat "$T/round.out" >> "$T/gateway.out"
	# Over the time pgbench measures its own TPS by (transactions over TPS:
	# the run without connecting), as tpcb-like's TPS is.
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/round.out")
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/round.out" | head -n1)
	[ -n "$n" ] && [ -n "$tps" ] || die "the gateway phase printed no TPS ($T/round.out)"
	life=$(echo "($after - $before) / ($n / $tps)" | bc -l)
	ratio=$(echo "$life / $tpcb" | bc -l)
	ratios+=("$ratio")
	printf 'round %d: lifecycles %6.0f per second, tpcb-like %6.0f TPS, ratio %.2f\n' "$round" "$life" "$tpcb" "$ratio"
done
inbound=$(( $(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'in'") - inbound_before ))
queued=$(( $(outbound) - queued_before ))
# A message handed out by two claims appears twice in bench_claim.
double=$(q "SELECT count(*) FROM (SELECT id FROM public.bench_claim, unnest(ids) id GROUP BY id HAVING count(*) > 1) d")
claimed=$(q "SELECT coalesce(sum(cardinality(ids)), 0) FROM public.bench_claim")
failed=$(grep -c 'ERROR' "$T/gateway.out" || true)
printf 'queued: %d outbound, claimed: %d, delivered: %d, inbound: %d, errors: %d, double claims: %d\n' "$queued" "$claimed" "$(( $(delivered) - delivered_before ))" "$inbound" "$failed" "$double"
read -r upd hot < <(q "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'eightms.message'::regclass" | tr '|' ' ')
printf 'message updates: %d, of which HOT (no index entries): %d\n' "$upd" "$hot"
read -r upd hot < <(q "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'eightms.conversation'::regclass" | tr '|' ' ')
printf 'conversation updates: %d, of which HOT: %d\n' "$upd" "$hot"
printf 'WAL: %.0f bytes a lifecycle (%.2f full-page images), %.0f a tpcb-like transaction (%.3f); checkpoints begun in the gateway phases %d, in tpcb-like %d\n' \
	"$(echo "${walsum[gw_bytes]} / ${walsum[gw_life]}" | bc -l)" "$(echo "${walsum[gw_fpi]} / ${walsum[gw_life]}" | bc -l)" \
	"$(echo "${walsum[tpcb_bytes]} / ${walsum[tpcb_txn]}" | bc -l)" "$(echo "${walsum[tpcb_fpi]} / ${walsum[tpcb_txn]}" | bc -l)" \
	"${walsum[gw_ckpt]}" "${walsum[tpcb_ckpt]}"
# tpcb-like commits every transaction and the gateway once per batch, so
# where flushing the WAL is slow the ratio flatters the gateway: say how the
# run committed (BENCH_SETTINGS="synchronous_commit = off" takes the disk
# out of both phases).
printf 'commits: synchronous_commit = %s, wal_sync_method = %s\n' \
	"$(q 'SHOW synchronous_commit')" "$(q 'SHOW wal_sync_method')"
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf 'ratio (median of %d rounds): %.2f (target >= 3)\n' "$ROUNDS" "$median"
