#!/usr/bin/env bash
# bench/gateway/steps.sh: CPU instructions of each kind of request a
# lifecycle (and an idle fleet) is made of, counted by valgrind (callgrind)
# in a single-user backend on bench/gateway's cluster and account: the
# pre-request hook alone (a phone's, a dashboard user's), a heartbeat, an
# idle claim (a poll that finds nothing), a send of a batch, a report of a
# batch (sent, and the batch before delivered, as run.sh's phones report)
# and one inbound SMS.  A companion to instructions.sh (the whole
# lifecycle, which counts claims too: here each claim would walk past the
# batches claimed before it and not yet reported) and hook.sh: it says
# which request a change to the gateway moved.
#
# Each request is its own transaction, as PostgREST runs it: role,
# request.jwt.claims and request.headers (the bearer token among them) set
# with set_config, the pre-request hook, then the call.  Each kind runs
# once (the first request of a backend pays for its caches), then
# BENCH_REQUESTS more from the same state; the difference over their number
# is one request, less the cost of setting the role and headers alone.
# Every count starts from the same copy of the cluster, taken more than a
# minute before it runs: every conversation a send or an inbound SMS
# writes is then its first message of the minute (the dearer case,
# instructions.sh says why), in both runs of a kind.
#
#   BENCH_REQUESTS (default 20), BENCH_BATCH (default 100)
NAME=gateway-steps
PORT=${EIGHTMS_BENCH_PORT:-54353}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
BATCH=${BENCH_BATCH:-100}
SEND_BATCH=$BATCH
N=${BENCH_REQUESTS:-20}
ensure_packages valgrind
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# Phone 1 takes the conversations; phone 2 polls and finds nothing; phone
# 3 holds the batches claimed for the reports (their leases outlive the
# counts).
P1=${PHONES[0]} P2=${PHONES[1]} P3=${PHONES[2]}
command psql -X -q -d "$DB" -v acct="$ACCT" -v p1="$P1" -v p2="$P2" -v p3="$P3" -v bsz="$BATCH" -v n="$N" \
	-v uheaders="$USER_HEADERS" -v p1headers="${PHONE_HEADERS[0]}" -v p2headers="${PHONE_HEADERS[1]}" \
	-v p3headers="${PHONE_HEADERS[2]}" <<'SQL'
ALTER SYSTEM SET eightms.message_lease = 86400;
SELECT pg_reload_conf() \g /dev/null
UPDATE eightms.conversation SET phone_id = :'p1' WHERE account_id = :'acct';
UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 day' WHERE account_id = :'acct';
CREATE TABLE public.bench_headers (who text PRIMARY KEY, role text, claims text, headers text);
INSERT INTO public.bench_headers VALUES
	('user', 'eightms_user', format('{"role":"eightms_user","sub":"bench","email":"bench@example.test","account_id":"%s"}', :'acct'), :'uheaders'),
	('p1', 'eightms_phone', format('{"role":"eightms_phone","account_id":"%s","phone_id":"%s","tv":1}', :'acct', :'p1'), :'p1headers'),
	('p2', 'eightms_phone', format('{"role":"eightms_phone","account_id":"%s","phone_id":"%s","tv":1}', :'acct', :'p2'), :'p2headers'),
	('p3', 'eightms_phone', format('{"role":"eightms_phone","account_id":"%s","phone_id":"%s","tv":1}', :'acct', :'p3'), :'p3headers');
-- Send batch i (as run.sh's send.sql writes it), and report batch i.
CREATE TABLE public.bench_batch (bi int PRIMARY KEY, body text);
INSERT INTO public.bench_batch
SELECT i, '[' || string_agg(format('{"to": "+1 212 555 %s", "body": "Your order %s has shipped"}',
								   1000 + (i * :bsz + j) % 8000, j), ', ' ORDER BY j) || ']'
  FROM generate_series(0, 2 * :n + 10) i, generate_series(1, :bsz) j
 GROUP BY i;
CREATE TABLE public.bench_report (bi int PRIMARY KEY, body text);
CREATE PROCEDURE public.as_request(who text) LANGUAGE plpgsql AS $$
DECLARE
	h public.bench_headers;
BEGIN
	SELECT * INTO h FROM public.bench_headers b WHERE b.who = as_request.who;
	PERFORM set_config('role', h.role, true), set_config('request.jwt.claims', h.claims, true),
			set_config('request.headers', h.headers, true), set_config('request.method', 'POST', true),
			set_config('request.path', '/rpc/' || who, true);
END
$$;
-- Requests first .. last of a kind, each its own transaction.
CREATE PROCEDURE public.requests(kind text, first int, last int)
LANGUAGE plpgsql AS $$
DECLARE
	body text;
	sent text;
	done text;
BEGIN
	FOR i IN first .. last LOOP
		CASE kind
		WHEN 'bare' THEN
			CALL public.as_request('p2');
		WHEN 'hook', 'userhook' THEN
			CALL public.as_request(CASE kind WHEN 'hook' THEN 'p2' ELSE 'user' END);
			PERFORM eightms_api.pre_request();
		WHEN 'heartbeat' THEN
			CALL public.as_request('p2');
			PERFORM eightms_api.pre_request();
			PERFORM eightms_api.heartbeat(80, 'wifi', false);
		WHEN 'idle' THEN
			CALL public.as_request('p2');
			PERFORM eightms_api.pre_request();
			PERFORM count(*) FROM eightms_api.claim_messages(10);
		WHEN 'send' THEN
			SELECT b.body INTO body FROM public.bench_batch b WHERE b.bi = i;
			CALL public.as_request('user');
			PERFORM eightms_api.pre_request();
			PERFORM count(*) FROM eightms_api.send_messages(body::jsonb);
		WHEN 'claim' THEN
			CALL public.as_request('p3');
			PERFORM eightms_api.pre_request();
			SELECT coalesce(string_agg('{"id": "' || message_id || '", "status": "sent"}', ', '), ''),
				   coalesce(string_agg('{"id": "' || message_id || '", "status": "delivered"}', ', '), '')
			  INTO sent, done
			  FROM eightms_api.claim_messages(100);
			-- Kept for the reports.
			PERFORM set_config('role', 'none', true);
			INSERT INTO public.bench_report VALUES (i, sent), (-i, done) ON CONFLICT DO NOTHING;
		WHEN 'report' THEN
			SELECT '[' || concat_ws(', ', nullif(d.body, ''), nullif(s.body, '')) || ']' INTO body
			  FROM public.bench_report s LEFT JOIN public.bench_report d ON d.bi = -(i - 1) WHERE s.bi = i;
			CALL public.as_request('p3');
			PERFORM eightms_api.pre_request();
			PERFORM count(*) FROM eightms_api.report_messages(body::jsonb);
		WHEN 'inbound' THEN
			CALL public.as_request('p1');
			PERFORM eightms_api.pre_request();
			PERFORM count(*) FROM eightms_api.receive_messages(
				format('[{"from": "+1 212 555 %s", "body": "Thanks, see you Tuesday", "device_message_id": "steps-%s"}]',
					   1000 + (i * 37) % 8000, i)::jsonb);
		END CASE;
		COMMIT;
	END LOOP;
END
$$;
-- Batches 1 .. n + 1 sent and claimed by phone 3: their reports are
-- counted.  The sends counted are batches n + 2 on.
CALL public.requests('send', 1, :n + 1);
UPDATE eightms.message SET phone_id = :'p3' WHERE account_id = :'acct' AND pending;
CALL public.requests('claim', 1, :n + 1);
CALL public.requests('heartbeat', 1, 3);
CALL public.requests('idle', 1, 3);
-- Online throughout the counts (a heartbeat set it to now): a phone past
-- its online window would have every claim look for its queue to move.
UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 day' WHERE account_id = :'acct';
CHECKPOINT;
SQL
stop_cluster "$T/data"
cp -a "$T/data" "$T/data.base"
# The copy is more than a minute old when the counts run (see above).
sleep 61
count() {
	local name=$1 n start
	for _ in 1 2 3; do
		rm -rf "$T/data" && cp -a "$T/data.base" "$T/data"
		start=$(date +%Y%m%d%H%M)
		n=$(single_user_instructions "$@")
		[ "$(date +%Y%m%d%H%M)" = "$start" ] && { echo "$n"; return; }
		say "count $name crossed a minute; again" >&2
	done
	die "count $name crossed a minute three times"
}
# kind, its first request, the first of the N counted after it.
per() {
	local c0 c1
	c0=$(count "$1-0" "CALL public.requests('$1', $2, $2)")
	c1=$(count "$1-1" "CALL public.requests('$1', $2, $2)" "CALL public.requests('$1', $3, $(( $3 + N - 1 )))")
	echo $(( (c1 - c0) / N ))
}
bare=$(per bare 1 2)
hook=$(( $(per hook 1 2) - bare ))
userhook=$(( $(per userhook 1 2) - bare ))
heartbeat=$(( $(per heartbeat 4 5) - bare ))
idle=$(( $(per idle 4 5) - bare ))
send=$(( $(per send $((N + 2)) $((N + 3))) - bare ))
report=$(( $(per report 1 2) - bare ))
inbound=$(( $(per inbound 1 2) - bare ))
printf 'instructions per request (the hook included; setting role and headers, %d, not)\n' "$bare"
printf '  the pre-request hook alone, a phone:   %9d\n' "$hook"
printf '  the pre-request hook alone, a user:    %9d\n' "$userhook"
printf '  heartbeat:                             %9d\n' "$heartbeat"
printf '  idle claim (claim_messages(10), none): %9d\n' "$idle"
printf '  send_messages, %3d items:              %9d  (%d an item)\n' "$BATCH" "$send" "$(( send / BATCH ))"
printf '  report_messages, %3d reports:          %9d  (%d a message)\n' "$(( 2 * BATCH ))" "$report" "$(( report / BATCH ))"
printf '  receive_messages, one SMS:             %9d\n' "$inbound"
