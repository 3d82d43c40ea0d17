#!/usr/bin/env bash
# bench/gateway/instructions.sh: CPU instructions per message lifecycle,
# counted by valgrind (callgrind) in a single-user backend, against those
# of a tpcb-like transaction on the same cluster.  A companion to run.sh:
# wall-clock ratios on a shared 2-core machine move with whatever else runs,
# instruction counts do not, so a change to the gateway can be weighed to
# about 1% before it is timed.
#
# One lifecycle round, as run.sh's scripts do it (send BENCH_BATCH with
# send_messages, claim them, report them sent and the previous batch
# delivered, one inbound SMS), each step its own transaction, runs in a
# procedure; the count for N rounds less the count for none, over N x batch
# messages, is the cost of one lifecycle (each request with its
# pre-request hook, as PostgREST runs it).  The tpcb-like transaction runs
# its five statements as dynamic SQL, parsed and planned each time as
# pgbench's simple protocol has them.  Neither count includes the client,
# commits' waits, or background processes.
#
#   BENCH_BATCH (default 100), BENCH_ROUNDS (default 10)
NAME=gateway-instructions
PORT=${EIGHTMS_BENCH_PORT:-54347}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
BATCH=${BENCH_BATCH:-100}
SEND_BATCH=$BATCH
ROUNDS=${BENCH_ROUNDS:-10}
ensure_packages valgrind
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
command pgbench -q -i -s 10 "$DB" >/dev/null 2>&1

# One phone takes all the work (its conversations and queue), so that one
# caller claims what is sent.
P1=${PHONES[0]}
command psql -X -q -d "$DB" -v acct="$ACCT" -v p1="$P1" -v bsz="$BATCH" -v rounds="$ROUNDS" \
	-v uheaders="$USER_HEADERS" -v pheaders="${PHONE_HEADERS[0]}" <<'SQL'
UPDATE eightms.conversation SET phone_id = :'p1' WHERE account_id = :'acct';
UPDATE eightms.message SET phone_id = :'p1' WHERE account_id = :'acct' AND pending;
-- The send batches' JSON as the client sends it (run.sh's send.sql writes
-- the same text): made before counting, since the client builds it.
CREATE TABLE public.bench_batch (bk int, bi int, body text, PRIMARY KEY (bk, bi));
INSERT INTO public.bench_batch
SELECT k, i, '[' || string_agg(format('{"to": "+1 212 555 %s", "body": "Your order %s has shipped"}',
									  1000 + (k + i * :bsz + j) % 8000, j), ', ' ORDER BY j) || ']'
  FROM (VALUES (0), (60000)) ks(k), generate_series(1, greatest(:rounds, 5)) i, generate_series(1, :bsz) j
 GROUP BY k, i;
-- Each request as PostgREST makes it: role, claims and headers (the
-- bearer token among them), then the pre-request hook, then the call.
CREATE TABLE public.bench_headers (who text PRIMARY KEY, headers text);
INSERT INTO public.bench_headers VALUES ('user', :'uheaders'), ('phone', :'pheaders');
CREATE PROCEDURE public.lifecycles(n int, acct uuid, phone uuid, bsz int, k int)
LANGUAGE plpgsql AS $$
DECLARE
	batch text;
	sent text;
	done text;
	prev text;
	uclaims text := format('{"role":"eightms_user","sub":"bench","email":"bench@example.test","account_id":"%s"}', acct);
	pclaims text := format('{"role":"eightms_phone","account_id":"%s","phone_id":"%s","tv":1}', acct, phone);
	uheaders text := (SELECT h.headers FROM public.bench_headers h WHERE h.who = 'user');
	pheaders text := (SELECT h.headers FROM public.bench_headers h WHERE h.who = 'phone');
BEGIN
	FOR i IN 1 .. n LOOP
		SELECT b.body INTO batch FROM public.bench_batch b WHERE b.bk = k AND b.bi = i;
		PERFORM set_config('role', 'eightms_user', true), set_config('request.jwt.claims', uclaims, true),
				set_config('request.headers', uheaders, true);
		PERFORM eightms_api.pre_request();
		PERFORM count(*) FROM eightms_api.send_messages(batch::jsonb);
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true),
				set_config('request.headers', pheaders, true);
		PERFORM eightms_api.pre_request();
		SELECT coalesce(string_agg('{"id": "' || message_id || '", "status": "sent"}', ', '), ''),
			   coalesce(string_agg('{"id": "' || message_id || '", "status": "delivered"}', ', '), '')
		  INTO sent, done
		  FROM eightms_api.claim_messages(bsz);
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true),
				set_config('request.headers', pheaders, true);
		PERFORM eightms_api.pre_request();
		PERFORM count(*) FROM eightms_api.report_messages(('[' || concat_ws(', ', nullif(prev, ''), nullif(sent, '')) || ']')::jsonb);
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true),
				set_config('request.headers', pheaders, true);
		PERFORM eightms_api.pre_request();
		PERFORM count(*) FROM eightms_api.receive_messages(format('[{"from": "+1 212 555 %s", "body": "Thanks, see you Tuesday", "device_message_id": "%s"}]',
																  1000 + (k + i) % 8000, gen_random_uuid())::jsonb);
		COMMIT;
		prev := done;
	END LOOP;
END
$$;
CREATE PROCEDURE public.tpcb(n int)
LANGUAGE plpgsql AS $$
DECLARE
	aid int; bid int; tid int; delta int; b int;
BEGIN
	FOR i IN 1 .. n LOOP
		aid := 1 + floor(random() * 1000000); bid := 1 + floor(random() * 10);
		tid := 1 + floor(random() * 100); delta := floor(random() * 10001) - 5000;
		EXECUTE format('UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s', delta, aid);
		EXECUTE format('SELECT abalance FROM pgbench_accounts WHERE aid = %s', aid) INTO b;
		EXECUTE format('UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s', delta, tid);
		EXECUTE format('UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s', delta, bid);
		EXECUTE format('INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)',
					   tid, bid, aid, delta);
		COMMIT;
	END LOOP;
END
$$;
SQL
# Warm the tables in a normal session, then stop the server for single-user runs.
command psql -X -q -d "$DB" -c "UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 day' WHERE account_id = '$ACCT'"
command psql -X -q -d "$DB" -c "CALL public.lifecycles(5, '$ACCT', '$P1', $BATCH, 0)" -c "CALL public.tpcb(2000)" -c "CHECKPOINT"
stop_cluster "$T/data"
# Each count starts from this same state (a run commits what it does, so
# the next would otherwise start where it left off), and within one minute
# of the clock: a conversation's first message in a minute adds index
# entries, the later ones do not, so a count that crossed a minute while
# the one it is compared with did not would differ by several percent
# (counts without both measures varied from 367K to 415K a lifecycle).
cp -a "$T/data" "$T/data.base"
count() {
	local name=$1 n start
	for _ in 1 2 3; do
		rm -rf "$T/data" && cp -a "$T/data.base" "$T/data"
		# Start at the top of a minute; a run takes well under one.
		sleep $(( 61 - 10#$(date +%S) ))
		start=$(date +%Y%m%d%H%M)
		n=$(single_user_instructions "$@")
		[ "$(date +%Y%m%d%H%M)" = "$start" ] && { echo "$n"; return; }
		say "count $name crossed a minute; again" >&2
	done
	die "count $name crossed a minute three times"
}
# The counted rounds write to conversations the warm-up wrote to moments
# before, as in run.sh, where each of the 8,000 conversations gets a message
# about every second: a conversation's first message in a minute adds index
# entries (its inbox minute moved), the others update it in place (HOT; run.sh
# prints the share).  Rounds over conversations untouched for a day would
# make every one of them a first.
warm="CALL public.lifecycles($ROUNDS, '$ACCT', '$P1', $BATCH, 60000)"
l0=$(count l0 "$warm")
l1=$(count l1 "$warm" "CALL public.lifecycles($ROUNDS, '$ACCT', '$P1', $BATCH, 60000)")
t0=$(count t0 "CALL public.tpcb(10)")
t1=$(count t1 "CALL public.tpcb(10)" "CALL public.tpcb(2000)")
life=$(( (l1 - l0) / (ROUNDS * BATCH) ))
tpcb=$(( (t1 - t0) / 2000 ))
printf 'instructions per message lifecycle (batches of %d, %d rounds): %d\n' "$BATCH" "$ROUNDS" "$life"
printf 'instructions per tpcb-like transaction:                      %d\n' "$tpcb"
printf 'lifecycles per tpcb-like transaction, by instructions: %.2f\n' "$(echo "$tpcb / $life" | bc -l)"
