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
# messages, is the cost of one lifecycle.  The tpcb-like transaction runs
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
command psql -X -q -d "$DB" -v acct="$ACCT" -v p1="$P1" <<'SQL'
UPDATE eightms.conversation SET phone_id = :'p1' WHERE account_id = :'acct';
UPDATE eightms.message SET phone_id = :'p1' WHERE account_id = :'acct' AND pending;
CREATE PROCEDURE public.lifecycles(n int, acct uuid, phone uuid, bsz int, k int)
LANGUAGE plpgsql AS $$
DECLARE
	ids text;
	prev text;
	uclaims text := format('{"role":"eightms_user","sub":"bench","email":"bench@example.test","account_id":"%s"}', acct);
	pclaims text := format('{"role":"eightms_phone","account_id":"%s","phone_id":"%s","tv":1}', acct, phone);
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM set_config('role', 'eightms_user', true), set_config('request.jwt.claims', uclaims, true);
		PERFORM count(*) FROM eightms_api.send_messages((
			SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || (1000 + (k + i * bsz + j) % 8000),
												'body', 'Your order ' || j || ' has shipped'))
			  FROM generate_series(1, bsz) j));
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true);
		SELECT coalesce(string_agg(message_id::text, ','), '') INTO ids FROM eightms_api.claim_messages(bsz);
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true);
		PERFORM count(*) FROM eightms_api.report_messages((
			SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'status', r.status)), '[]')
			  FROM (SELECT unnest(string_to_array(prev, ',')) AS id, 'delivered' AS status
					UNION ALL
					SELECT unnest(string_to_array(ids, ',')), 'sent') r));
		COMMIT;
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', pclaims, true);
		PERFORM count(*) FROM eightms_api.receive_messages(jsonb_build_array(jsonb_build_object(
			'from', '+1 212 555 ' || (1000 + (k + i) % 8000), 'body', 'Thanks, see you Tuesday',
			'device_message_id', gen_random_uuid())));
		COMMIT;
		prev := ids;
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
count() { single_user_instructions "$@"; }
warm="CALL public.lifecycles(1, '$ACCT', '$P1', $BATCH, 50000)"
l0=$(count l0 "$warm")
l1=$(count l1 "$warm" "CALL public.lifecycles($ROUNDS, '$ACCT', '$P1', $BATCH, 60000)")
t0=$(count t0 "CALL public.tpcb(10)")
t1=$(count t1 "CALL public.tpcb(10)" "CALL public.tpcb(2000)")
life=$(( (l1 - l0) / (ROUNDS * BATCH) ))
tpcb=$(( (t1 - t0) / 2000 ))
printf 'instructions per message lifecycle (batches of %d, %d rounds): %d\n' "$BATCH" "$ROUNDS" "$life"
printf 'instructions per tpcb-like transaction:                      %d\n' "$tpcb"
printf 'lifecycles per tpcb-like transaction, by instructions: %.2f\n' "$(echo "$tpcb / $life" | bc -l)"
