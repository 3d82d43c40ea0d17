# bench/gateway/setup.sh: the gateway benchmarks' cluster and account,
# sourced by run.sh (lifecycles against tpcb-like) and instructions.sh
# (instructions per lifecycle).  Expects NAME, PORT, BATCH, SEND_BATCH;
# sets DB, T, ACCT, PHONES, USER_CLAIMS, USER_HEADERS, PHONE_CLAIMS and
# PHONE_HEADERS (one per phone: the JSON PostgREST sets, the bearer token
# signed with the server's secret) and writes the pgbench scripts into $T.
# gateway_setup does the same on another server (PGHOST, PGPORT) with the
# same key file, scripts into another directory (bench/citus).
bench_cluster

q() { command psql -X -At -q -d "$DB" -c "$1"; }
# The account, its history and the pgbench scripts, on the server PGHOST
# and PGPORT name, the scripts into directory $1.
gateway_setup() {
local S=$1
bench_account_with_phones 'Bench Co'
# The phones stay online however long a run takes, as phones that send a
# heartbeat every minute do: past the online window (five minutes) every
# claim would move the queues of all four, and a long run would measure that.
q "UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 day' WHERE account_id = '$ACCT'" >/dev/null
# Each request carries its token in request.headers, as PostgREST passes
# it, and the claims in request.jwt.claims, as PostgREST sets them.
USER_CLAIMS="{\"role\":\"eightms_user\",\"sub\":\"bench\",\"email\":\"bench@example.test\",\"email_verified\":true,\"account_id\":\"$ACCT\"}"
USER_HEADERS=$(pgrst_headers "$(q "SELECT eightms.jwt_sign('$USER_CLAIMS')")")
PHONE_CLAIMS=() PHONE_HEADERS=()
for p in "${PHONES[@]}"; do
	PHONE_CLAIMS+=("{\"role\":\"eightms_phone\",\"account_id\":\"$ACCT\",\"phone_id\":\"$p\",\"tv\":1}")
	PHONE_HEADERS+=("$(pgrst_headers "$(q "SELECT eightms.jwt_sign('${PHONE_CLAIMS[-1]}')")")")
done
# Every message each claim hands out, to count double claims afterwards.
q "CREATE TABLE public.bench_claim (ids uuid[] NOT NULL); GRANT USAGE ON SCHEMA public TO eightms_phone; GRANT INSERT ON public.bench_claim TO eightms_phone"
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

# The JSON bodies arrive as text, as PostgREST passes a request body:
# built here, in the client (pgbench variables), and parsed by the server,
# rather than assembled with jsonb_build_object and jsonb_agg in SQL, which
# costs the server twice what parsing the same text does (about 18,000
# against 9,000 instructions an item) and is no part of the gateway.
{
	echo '\set n random(1000, 8999)'
	for i in $(seq 1 "$SEND_BATCH"); do echo "\\set n$i 1000 + (:n + $i) % 8000"; done
	echo 'BEGIN;'
	echo "SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', '$USER_CLAIMS', true), set_config('request.headers', '$USER_HEADERS', true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/send_messages', true);"
	echo 'SELECT eightms_api.pre_request();'
	printf "SELECT count(*) FROM eightms_api.send_messages('["
	for i in $(seq 1 "$SEND_BATCH"); do
		[ "$i" -gt 1 ] && printf ', '
		printf '{"to": "+1 212 555 :n%d", "body": "Your order %d has shipped"}' "$i" "$i"
	done
	echo "]');"
	echo 'COMMIT;'
} > "$S/send.sql"
# A phone as the app runs: claim a batch, send it, report it sent; the
# delivery reports for a batch come in with the next report.  Each client
# is one phone throughout (client k is phone k % 4 + 1).  The claim's
# result is kept as the report items the phone will send (text, as above)
# and its ids in one row of bench_claim, to count double claims afterwards.
cat > "$S/phone.sql" <<SQL
\\set p :client_id % 4 + 1
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', (ARRAY['${PHONE_CLAIMS[0]}','${PHONE_CLAIMS[1]}','${PHONE_CLAIMS[2]}','${PHONE_CLAIMS[3]}'])[:p], true), set_config('request.headers', (ARRAY['${PHONE_HEADERS[0]}','${PHONE_HEADERS[1]}','${PHONE_HEADERS[2]}','${PHONE_HEADERS[3]}'])[:p], true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/claim_messages', true);
SELECT eightms_api.pre_request();
SELECT coalesce(string_agg(message_id::text, ','), '') AS ids,
	   coalesce(string_agg('{"id": "' || message_id || '", "status": "sent"}', ', '), '') AS sent,
	   coalesce(string_agg('{"id": "' || message_id || '", "status": "delivered"}', ', '), '') AS done
  FROM eightms_api.claim_messages($BATCH) \\gset
INSERT INTO bench_claim (ids) VALUES ('{:ids}');
COMMIT;
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', (ARRAY['${PHONE_CLAIMS[0]}','${PHONE_CLAIMS[1]}','${PHONE_CLAIMS[2]}','${PHONE_CLAIMS[3]}'])[:p], true), set_config('request.headers', (ARRAY['${PHONE_HEADERS[0]}','${PHONE_HEADERS[1]}','${PHONE_HEADERS[2]}','${PHONE_HEADERS[3]}'])[:p], true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/report_messages', true);
SELECT eightms_api.pre_request();
SELECT count(*) AS reported, ':done' AS prev FROM eightms_api.report_messages(
	('[' || concat_ws(', ', nullif(nullif(':prev', '-'), ''), nullif(':sent', '')) || ']')::jsonb) \\gset
COMMIT;
SQL
cat > "$S/inbound.sql" <<SQL
\\set p random(1, 4)
\\set n random(1000, 8999)
\\set d random(1, 1000000000000)
BEGIN;
SELECT set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', (ARRAY['${PHONE_CLAIMS[0]}','${PHONE_CLAIMS[1]}','${PHONE_CLAIMS[2]}','${PHONE_CLAIMS[3]}'])[:p], true), set_config('request.headers', (ARRAY['${PHONE_HEADERS[0]}','${PHONE_HEADERS[1]}','${PHONE_HEADERS[2]}','${PHONE_HEADERS[3]}'])[:p], true), set_config('request.method', 'POST', true), set_config('request.path', '/rpc/receive_messages', true);
SELECT eightms_api.pre_request();
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+1 212 555 :n", "body": "Thanks, see you Tuesday", "device_message_id": "bench-:client_id-:d"}]');
COMMIT;
SQL
}
gateway_setup "$T"
