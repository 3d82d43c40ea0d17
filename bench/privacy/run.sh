#!/usr/bin/env bash
# bench/privacy: a retention purge under load (issue 21, part 7).  An
# account holds BENCH_ROWS (default 2,000,000) final messages older than its
# message-body retention; the retention job's procedure, eightms.purge(),
# erases their bodies in its committed rounds (BENCH_PURGE_BATCH rows a
# round, resting BENCH_PURGE_REST times a round's duration after it; unset:
# the job's defaults) with no time limit, while pgbench sends single
# messages through eightms_api.send_messages as a dashboard user (the
# pre-request hook and all).  The same load runs first without the purge.
# Prints the insert p99 latency of both phases, their ratio (target:
# within 2x) and the purge's rows per second.
#
#   BENCH_ROWS, BENCH_PURGE_BATCH, BENCH_PURGE_REST, BENCH_SECONDS (default
#   60, per phase), BENCH_CLIENTS (default 2)
NAME=privacy
PORT=${EIGHTMS_BENCH_PORT:-54347}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ROWS=${BENCH_ROWS:-2000000}
PURGE_ARGS="budget => '1 day'"
[ -n "${BENCH_PURGE_BATCH:-}" ] && PURGE_ARGS="$PURGE_ARGS, batch_size => $BENCH_PURGE_BATCH"
[ -n "${BENCH_PURGE_REST:-}" ] && PURGE_ARGS="$PURGE_ARGS, rest => $BENCH_PURGE_REST"
SECS=${BENCH_SECONDS:-60}
CLIENTS=${BENCH_CLIENTS:-2}
bench_cluster
q() { command psql -X -At -q -d "$DB" -c "$1"; }
bench_account_with_phones 'Purge Co'
q "UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 day' WHERE account_id = '$ACCT'" >/dev/null

# The backlog: delivered messages from three days ago, with time-ordered
# ids of then, in 2,000 conversations; the account keeps bodies one day.
command psql -X -q -d "$DB" -v acct="$ACCT" -v rows="$ROWS" <<'SQL'
INSERT INTO eightms.conversation (account_id, peer_number, last_message_at, created_at)
SELECT :'acct', '+1212555' || (1000 + i), now() - interval '3 days', now() - interval '3 days' FROM generate_series(0, 1999) i;
INSERT INTO eightms.message (account_id, message_id, conversation_id, direction, peer_number, body, encoding, segments,
							 status, attempts, send_at, created_at, claimed_at, sent_at, delivered_at)
SELECT c.account_id,
	   (substr(replace(eightms.uuid_v7_floor(t)::text, '-', ''), 1, 12) || lpad(to_hex(g), 20, '0'))::uuid,
	   c.conversation_id, 'out', c.peer_number, 'Your order ' || g || ' has shipped', 'gsm7', 1, 'delivered', 1, t, t, t, t, t
  FROM generate_series(1, :rows) g
  JOIN LATERAL (SELECT now() - interval '3 days' - (:rows - g) * interval '1 ms' AS t) w ON true
  JOIN eightms.conversation c ON c.account_id = :'acct' AND c.peer_number = '+1212555' || (1000 + g % 2000);
UPDATE eightms.account SET message_retention = '1 day' WHERE account_id = :'acct';
VACUUM ANALYZE eightms.message, eightms.conversation;
SQL

USER_CLAIMS="{\"role\":\"eightms_user\",\"sub\":\"bench\",\"email\":\"bench@example.test\",\"email_verified\":true,\"account_id\":\"$ACCT\"}"
USER_HEADERS=$(pgrst_headers "$(q "SELECT eightms.jwt_sign('$USER_CLAIMS')")")
{
	echo '\set n random(1000, 2999)'
	echo 'BEGIN;'
	echo "SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', '$USER_CLAIMS', true), set_config('request.headers', '$USER_HEADERS', true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/send_messages', true);"
	echo 'SELECT eightms_api.pre_request();'
	echo "SELECT count(*) FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 :n\", \"body\": \"Your table is ready\"}]');"
	echo 'COMMIT;'
} > "$T/send.sql"

# p99 of a phase's per-transaction latencies (pgbench --log, microseconds).
load() {
	rm -f "$T"/log.$1*
	command pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$T/send.sql" --log --log-prefix="$T/log.$1" "$DB" > "$T/$1.out" 2>&1
	cat "$T"/log.$1* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f %d\n", a[i]/1000, NR}'
}
command pgbench -n -c "$CLIENTS" -T 5 -f "$T/send.sql" "$DB" >/dev/null 2>&1
read -r p99_base n_base < <(load base)

# The retention job's procedure, until the backlog is gone, while the same
# load runs; its rounds are counted from the purge log.
purge() {
	local start end t0
	t0=$(q "SELECT clock_timestamp()")
	start=$(date +%s.%N)
	q "CALL eightms.purge($PURGE_ARGS)" >/dev/null
	end=$(date +%s.%N)
	echo "$(q "SELECT coalesce(sum(rows_removed), 0) || ' ' || count(*) FROM eightms.purge_log
				WHERE rule_name = 'message_body' AND started_at >= '$t0'") $(echo "$end - $start" | bc -l)" > "$T/purge.out"
}
purge &
PURGE_PID=$!
read -r p99_purge n_purge < <(load purge)
wait "$PURGE_PID"
read -r purged rounds secs < "$T/purge.out"
left=$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND created_at < now() - interval '2 days' AND body <> ''")

printf 'insert p99 without purge: %s ms (%s sends)\n' "$p99_base" "$n_base"
printf 'insert p99 during purge:  %s ms (%s sends)\n' "$p99_purge" "$n_purge"
printf 'ratio: %.2f (target <= 2)\n' "$(echo "$p99_purge / $p99_base" | bc -l)"
printf 'purge: %s rows in %s rounds, %.1f s: %.0f rows/s (%s left)\n' "$purged" "$rounds" "$secs" "$(echo "$purged / $secs" | bc -l)" "$left"
