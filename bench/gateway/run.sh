#!/usr/bin/env bash
# bench/gateway: complete message lifecycles through the public API with
# pgbench, against the built-in tpcb-like script on the same cluster in the
# same run.  One script sends batches of 50 through eightms_api.send_messages
# as a dashboard user; another acts as a phone, claiming 50 in one
# transaction and reporting them sent (and the previous batch delivered) in
# the next, as the app does; a third delivers inbound SMS.  Every
# transaction sets role and claims as PostgREST does.  Prints lifecycles
# (queued -> delivered) per second, tpcb-like TPS, their ratio, and double
# claims (which must be zero).  Target (issue 5): ratio >= 3, the median
# of rounds that alternate the two.
#
#   BENCH_SECONDS (default 15, per phase), BENCH_ROUNDS (default 3), BENCH_CLIENTS (default 2), BENCH_BATCH (default 50,
#   what a phone claims at once), BENCH_SEND_BATCH (default BENCH_BATCH)
NAME=gateway
PORT=${EIGHTMS_BENCH_PORT:-54346}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-2}
BATCH=${BENCH_BATCH:-50}
SEND_BATCH=${BENCH_SEND_BATCH:-$BATCH}
bench_cluster

q() { command psql -X -At -q -d "$DB" -c "$1"; }
# One account with 4 phones (pacing off, as for phones whose Android limit was lifted).
read -r ACCT < <(command psql -X -At -q -d "$DB" <<'SQL'
BEGIN;
SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', '{"role":"eightms_user","sub":"bench","email":"bench@example.test"}', true) \g /dev/null
SELECT eightms_api.pre_request() \g /dev/null
SELECT account_id FROM eightms_api.create_account('Bench Co');
COMMIT;
SQL
)
q "INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct) SELECT '$ACCT', 'bench-' || i, NULL, now(), 80 FROM generate_series(1, 4) i"
mapfile -t PHONES < <(q "SELECT phone_id FROM eightms.phone WHERE account_id = '$ACCT' ORDER BY device_id")
# Every message each claim hands out, to count double claims afterwards.
q "CREATE TABLE public.bench_claim (message_id uuid NOT NULL); GRANT USAGE ON SCHEMA public TO eightms_phone; GRANT INSERT ON public.bench_claim TO eightms_phone"
# A working account's history, so that the run starts from tables the
# planner has statistics for, as in production: 8,000 conversations and
# 96,000 delivered messages from the past month.
command psql -X -q -d "$DB" -v acct="$ACCT" <<'SQL'
INSERT INTO eightms.conversation (account_id, peer_number, phone_id, last_message_at, created_at)
SELECT :'acct', '+1212555' || (1000 + i),
	   (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct' ORDER BY device_id OFFSET i % 4 LIMIT 1),
	   now() - interval '1 day', now() - interval '30 days'
  FROM generate_series(0, 7999) i;
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, attempts, send_at, expires_at, created_at, claimed_at, sent_at, delivered_at)
SELECT c.account_id, c.conversation_id, 'out', c.phone_id, c.peer_number, 'Your order ' || g || ' has shipped',
	   'gsm7', 1, 'delivered', 1, t, t + interval '1 day', t, t, t, t
  FROM eightms.conversation c, generate_series(1, 12) g,
	   LATERAL (SELECT now() - interval '30 days' + g * interval '2 days' AS t) w
 WHERE c.account_id = :'acct';
VACUUM ANALYZE eightms.message, eightms.conversation, eightms.phone;
SQL

cat > "$T/send.sql" <<SQL
\\set n random(1000, 8999)
BEGIN;
SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', '{"role":"eightms_user","sub":"bench","email":"bench@example.test","account_id":"$ACCT"}', true);
SELECT count(*) FROM eightms_api.send_messages((SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || (1000 + (:n + i) % 8000), 'body', 'Your order ' || i || ' has shipped')) FROM generate_series(1, $SEND_BATCH) i));
COMMIT;
SQL
# A phone as the app runs: claim a batch, send it, report it sent; the
# delivery reports for a batch come in with the next report.  Each client
# is one phone throughout (client k is phone k % 4 + 1).
cat > "$T/phone.sql" <<SQL
\\set p :client_id % 4 + 1
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', '{"role":"eightms_phone","account_id":"$ACCT","phone_id":"' || (ARRAY['${PHONES[0]}','${PHONES[1]}','${PHONES[2]}','${PHONES[3]}'])[:p] || '","tv":1}', true);
SELECT coalesce(string_agg(message_id::text, ','), '') AS ids FROM eightms_api.claim_messages($BATCH) \\gset
INSERT INTO bench_claim (message_id) SELECT unnest(string_to_array(nullif(':ids', ''), ','))::uuid;
COMMIT;
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', '{"role":"eightms_phone","account_id":"$ACCT","phone_id":"' || (ARRAY['${PHONES[0]}','${PHONES[1]}','${PHONES[2]}','${PHONES[3]}'])[:p] || '","tv":1}', true);
SELECT count(*) AS reported, ':ids' AS prev FROM eightms_api.report_messages((
	SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'status', r.status)), '[]')
	  FROM (SELECT unnest(string_to_array(nullif(':prev', '-'), ',')) AS id, 'delivered' AS status
			UNION ALL
			SELECT unnest(string_to_array(':ids', ',')), 'sent') r)) \\gset
COMMIT;
SQL
cat > "$T/inbound.sql" <<SQL
\\set p random(1, 4)
\\set n random(1000, 8999)
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', '{"role":"eightms_phone","account_id":"$ACCT","phone_id":"' || (ARRAY['${PHONES[0]}','${PHONES[1]}','${PHONES[2]}','${PHONES[3]}'])[:p] || '","tv":1}', true);
SELECT count(*) FROM eightms_api.receive_messages(jsonb_build_array(jsonb_build_object('from', '+1 212 555 ' || :n, 'body', 'Thanks, see you Tuesday', 'device_message_id', gen_random_uuid())));
COMMIT;
SQL

# tpcb-like on the same cluster as the baseline, then the gateway, in
# alternating rounds: a disturbance on the machine then shows as one odd
# round instead of moving the one ratio.  The median round is the result.
command pgbench -q -i -s 10 "$DB" >/dev/null 2>&1
# A warm-up, so that the baseline is not measured on cold tables.
command pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T 5 "$DB" >/dev/null 2>&1
delivered() { q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND status = 'delivered'"; }
outbound() { q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'out'"; }
queued_before=$(outbound)
inbound_before=$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'in'")
delivered_before=$(delivered)
ratios=()
: > "$T/gateway.out"
for round in $(seq 1 "$ROUNDS"); do
	tpcb=$(command pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" "$DB" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
	before=$(delivered)
	start=$(date +%s.%N)
	# Senders, phones and inbound at once, weighted 1 : 1 : 1.
	command pgbench -n -c "$((CLIENTS * 2))" -j "$CLIENTS" -T "$SECS" -D prev=- \
		-f "$T/send.sql@1" -f "$T/phone.sql@1" -f "$T/inbound.sql@1" "$DB" >> "$T/gateway.out" 2>&1
	end=$(date +%s.%N)
	after=$(delivered)
	life=$(echo "($after - $before) / ($end - $start)" | bc -l)
	ratio=$(echo "$life / $tpcb" | bc -l)
	ratios+=("$ratio")
	printf 'round %d: lifecycles %6.0f per second, tpcb-like %6.0f TPS, ratio %.2f\n' "$round" "$life" "$tpcb" "$ratio"
done
inbound=$(( $(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND direction = 'in'") - inbound_before ))
queued=$(( $(outbound) - queued_before ))
# A message handed out by two claims appears twice in bench_claim.
double=$(q "SELECT count(*) FROM (SELECT message_id FROM public.bench_claim GROUP BY message_id HAVING count(*) > 1) d")
claimed=$(q "SELECT count(*) FROM public.bench_claim")
failed=$(grep -c 'ERROR' "$T/gateway.out" || true)
printf 'queued: %d outbound, claimed: %d, delivered: %d, inbound: %d, errors: %d, double claims: %d\n' "$queued" "$claimed" "$(( $(delivered) - delivered_before ))" "$inbound" "$failed" "$double"
read -r upd hot < <(q "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'eightms.message'::regclass" | tr '|' ' ')
printf 'message updates: %d, of which HOT (no index entries): %d\n' "$upd" "$hot"
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf 'ratio (median of %d rounds): %.2f (target >= 3)\n' "$ROUNDS" "$median"
