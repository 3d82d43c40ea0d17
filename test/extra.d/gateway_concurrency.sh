#!/usr/bin/env bash
# Two phones claiming at the same time, in separate sessions and under
# load, never receive the same message (FOR UPDATE SKIP LOCKED), and
# together they take every queued message exactly once.  The races between
# two sessions (sends, deletes, inbound batches, moves, cancels, unpairing,
# paced claims, lock ordering) are isolation specs in test/isolation/specs,
# each interleaving fixed by the isolation tester rather than a sleep.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/gateway
mkdir -p "$W"
N=2000
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
pass=0
fail=0
# An account with two paired phones and N queued messages, committed.
read -r acct p1 p2 < <(command psql -X -At -q -F' ' -d "$DB" <<'SQL'
BEGIN;
SELECT pgrst.as_user('concurrency-owner') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Concurrency Co') \gset
SELECT pgrst.reset() \g /dev/null
INSERT INTO eightms.phone (account_id, device_id, rate_limit) VALUES (:'acct', 'phone-a', NULL), (:'acct', 'phone-b', NULL);
COMMIT;
SELECT :'acct', (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct' AND device_id = 'phone-a'),
	   (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct' AND device_id = 'phone-b');
SQL
)
command psql -X -q -d "$DB" -v acct="$acct" -v n="$N" <<'SQL' >/dev/null
BEGIN;
SELECT pgrst.as_user('concurrency-owner', :'acct');
SELECT count(*) FROM eightms_api.send_messages(
	(SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || lpad((1000 + i % 8000)::text, 4, '0'), 'body', 'Load ' || i))
	   FROM generate_series(1, :n) i));
COMMIT;
SQL
check "$N messages are queued" test "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND status = 'queued'")" = "$N"

# Each phone claims in batches of 25 until nothing is left, at the same time.
claimer() {
	local phone=$1 out=$2
	: > "$out"
	for _ in $(seq 1 400); do
		got=$(command psql -X -At -q -d "$DB" <<SQL
BEGIN;
SELECT pgrst.as_phone('$acct', '$phone') \g /dev/null
SELECT message_id FROM eightms_api.claim_messages(25);
COMMIT;
SQL
)
		[ -z "$got" ] && break
		printf '%s\n' "$got" >> "$out"
	done
}
claimer "$p1" "$W/a.txt" &
claimer "$p2" "$W/b.txt" &
wait
a=$(sort -u "$W/a.txt" | grep -c .)
b=$(sort -u "$W/b.txt" | grep -c .)
both=$(comm -12 <(sort -u "$W/a.txt") <(sort -u "$W/b.txt") | grep -c .)
check "both phones claimed work concurrently (a: $a, b: $b)" test "$a" -gt 0 -a "$b" -gt 0
check "no message was handed to both phones ($both in common)" test "$both" = 0
check "together they claimed every message exactly once ($((a + b)) of $N)" test "$((a + b))" = "$N"
check "the database agrees: every message is claimed, by one phone" \
	test "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND status = 'claimed' AND phone_id IN ('$p1', '$p2')")" = "$N"

q "DELETE FROM eightms.account WHERE account_id = '$acct'" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
