#!/usr/bin/env bash
# Two phones claiming at the same time, in separate sessions, never receive
# the same message (FOR UPDATE SKIP LOCKED), and together they take every
# queued message exactly once; races of a send with a delete, of two sends
# with one idempotency key, of one inbound SMS delivered twice, of an
# inbound batch from two senders (with conversations, without, or one of
# each) with a send to both or another phone's messages from both, of two
# moves of an offline phone's queue, of a cancel with a claim, of an
# unpairing with a send, and of two claims of one paced phone.  Prints "N
# passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/gateway
mkdir -p "$W"
N=2000
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
pass=0
fail=0
# Two sessions at once: the first runs $1 (output in $3) and holds its
# transaction open; 0.7 s later the second runs $2 (output in $4), and
# meets what the first has not committed yet.
race() {
	command psql -X -At -q -d "$DB" <<< "$1" > "$3" 2>&1 &
	sleep 0.7
	command psql -X -At -q -d "$DB" <<< "$2" > "$4" 2>&1
	wait
}

# A transaction that, as $1 (pgrst.as_user or as_phone), runs $2 and 1.5 s
# later $3: it holds the conversation $2 wrote while it waits to take the
# one $3 writes.
held() { printf '%s\n' "BEGIN;" "SELECT $1 \\g /dev/null" "$2" "SELECT pg_sleep(1.5);" "$3" "COMMIT;"; }
# A dashboard's: a send to number $1 (body $2), then to $3 (body $4).  Each
# send prints its status and error.
held_sends() {
	held "pgrst.as_user('concurrency-owner', '$acct')" \
		"SELECT status, error FROM eightms_api.send_messages('[{\"to\": \"$1\", \"body\": \"$2\"}]');" \
		"SELECT status, error FROM eightms_api.send_messages('[{\"to\": \"$3\", \"body\": \"$4\"}]');"
}
# A phone's ($1): an SMS from $2, then one from $3, each a call of its own
# with the device message id "$4 <number>".
held_receives() {
	held "pgrst.as_phone('$acct', '$1')" \
		"SELECT duplicate FROM eightms_api.receive_messages('[{\"from\": \"$2\", \"body\": \"$4\", \"device_message_id\": \"$4 $2\"}]');" \
		"SELECT duplicate FROM eightms_api.receive_messages('[{\"from\": \"$3\", \"body\": \"$4\", \"device_message_id\": \"$4 $3\"}]');"
}
# One batch from phone $1, an SMS from each number after $2, in the order
# given, with the device message id "$2 <number>"; prints how many items.
inbound_batch() {
	local phone=$1 tag=$2 items= n
	shift 2
	for n in "$@"; do
		items+="${items:+, }{\"from\": \"$n\", \"body\": \"$tag\", \"device_message_id\": \"$tag $n\"}"
	done
	printf '%s\n' "BEGIN;" "SELECT pgrst.as_phone('$acct', '$phone') \\g /dev/null" \
		"SELECT count(*) FROM eightms_api.receive_messages('[$items]');" "COMMIT;"
}
# Two transactions whose outputs ($1, $2) must show no error, no refusal and
# no deadlock, and $1 two sends queued.
both_through() { test "$(grep -c '^queued|$' "$1")/$(cat "$1" "$2" | grep -cE 'ERROR|deadlock|refused')" = 2/0; }

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

# A send racing a delete of its conversation: the conversation row is
# locked before a message refers to it, so the send waits for the delete
# and starts a new conversation; no message is left without one (there is
# no foreign key to refuse it).
conv=$(q "SELECT conversation_id FROM eightms.conversation WHERE account_id = '$acct' AND peer_number = '+12125551001'")
race "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct');
SELECT eightms_api.delete_conversation('$conv');
SELECT pg_sleep(2);
COMMIT;" "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct');
SELECT eightms_api.send_message('+1 212 555 1001', 'after the delete');
COMMIT;" "$W/delete.txt" "$W/send.txt"
check "a send racing the delete of its conversation went into a new conversation" \
	test "$(q "SELECT count(*) FROM eightms.message m JOIN eightms.conversation c USING (account_id, conversation_id) WHERE m.account_id = '$acct' AND m.body = 'after the delete' AND c.conversation_id <> '$conv'")" = 1
check "no message is left without its conversation" \
	test "$(q "SELECT count(*) FROM eightms.message m WHERE m.account_id = '$acct' AND NOT EXISTS (SELECT FROM eightms.conversation c WHERE c.account_id = m.account_id AND c.conversation_id = m.conversation_id)")" = 0

# Two batches naming the same idempotency key, in two sessions at once: the
# second waits for the first, finds the key taken when it commits, and
# settles item by item; the key queues one message, which both batches
# report, and the second batch's other item is queued all the same.
race "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct') \\g /dev/null
SELECT message_id FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 2001\", \"body\": \"once\", \"idempotency_key\": \"race-1\"}]') WHERE item = 1;
SELECT pg_sleep(2);
COMMIT;" "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct') \\g /dev/null
SELECT item, status, message_id FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 2001\", \"body\": \"once\", \"idempotency_key\": \"race-1\"},
																  {\"to\": \"+1 212 555 2002\", \"body\": \"other\"}]') ORDER BY item;
COMMIT;" "$W/idem1.txt" "$W/idem2.txt"
first=$(head -n1 "$W/idem1.txt")
check "a key sent twice at once queued one message" \
	test "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND idempotency_key = 'race-1'")" = 1
check "the second batch reports the first batch's message for that key" \
	test "$(sed -n 1p "$W/idem2.txt")" = "1|queued|$first"
check "and queues its other item" \
	test "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND body = 'other' AND status = 'queued'")" = 1
# The same inbound SMS delivered twice at once (a phone retrying while its
# first call is still running): the second call waits on the conversation
# the first is writing, finds the message stored when the first commits,
# reports it as a duplicate, and the conversation counts it once.
inbound="SELECT pgrst.as_phone('$acct', '$p1') \\g /dev/null
SELECT message_id, duplicate FROM eightms_api.receive_messages('[{\"from\": \"+1 212 555 3001\", \"body\": \"hello\", \"device_message_id\": \"race-in-1\"}]');"
race "BEGIN; $inbound SELECT pg_sleep(2); COMMIT;" "BEGIN; $inbound COMMIT;" "$W/in1.txt" "$W/in2.txt"
in1=$(head -n1 "$W/in1.txt")
check "an inbound SMS delivered twice at once is stored once" \
	test "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND device_message_id = 'race-in-1'")" = 1
check "the second call reports the first's message as a duplicate" \
	test "$(head -n1 "$W/in2.txt")" = "${in1%|f}|t"
check "the conversation counts it once" \
	test "$(q "SELECT unread_count FROM eightms.conversation WHERE account_id = '$acct' AND peer_number = '+12125553001'")" = 1
# An inbound batch from two senders while a send holds the conversation of
# one of them and then wants the other's: the batch locks the conversations
# it will write in number order first, the order sends take them in, so it
# waits for the first before it holds the second, and both go through.
# Taking them in the batch's order, it held the second and waited for the
# first, and the deadlock came back as the send's item refused ("deadlock
# detected": send_messages settles a failed batch item by item).
q "SELECT pgrst.as_user('concurrency-owner', '$acct'); SELECT count(*) FROM eightms_api.send_messages(
	'[{\"to\": \"+1 212 555 4001\", \"body\": \"hi\"}, {\"to\": \"+1 212 555 4002\", \"body\": \"hi\"}]')" >/dev/null
race "$(held_sends '+1 212 555 4001' first '+1 212 555 4002' second)" "BEGIN;
SELECT pgrst.as_phone('$acct', '$p1') \\g /dev/null
SELECT count(*) FROM eightms_api.receive_messages('[{\"from\": \"+1 212 555 4002\", \"body\": \"b\", \"device_message_id\": \"order-1\"},
													{\"from\": \"+1 212 555 4001\", \"body\": \"a\", \"device_message_id\": \"order-2\"}]');
COMMIT;" "$W/order_send.txt" "$W/order_in.txt"
check "a send and an inbound batch locking two conversations in opposite orders both go through ($(grep -hE 'ERROR|refused' "$W/order_send.txt" "$W/order_in.txt" | head -n1))" \
	both_through "$W/order_send.txt" "$W/order_in.txt"
stored=$(q "SELECT count(*) FILTER (WHERE device_message_id IN ('order-1', 'order-2')) || ' ' || count(*) FILTER (WHERE body IN ('first', 'second'))
	FROM eightms.message WHERE account_id = '$acct'")
check "the batch stored both inbound messages and the send both outbound ones ($stored)" test "$stored" = "2 2"
# The same with two numbers that have no conversation yet: the batch
# creates the conversations it will write first, in number order, so it
# waits for the one the send created before it creates the other.  Created
# one by one in the batch's order (the higher number first), the batch held
# the second and waited for the first, and one of the two failed with
# "deadlock detected".
race "$(held_sends '+1 212 555 7001' first '+1 212 555 7002' second)" \
	"$(inbound_batch "$p1" new '+1 212 555 7002' '+1 212 555 7001')" "$W/new_send.txt" "$W/new_in.txt"
check "a send and an inbound batch creating two conversations in opposite orders both go through ($(grep -hE 'ERROR|refused' "$W/new_send.txt" "$W/new_in.txt" | head -n1))" \
	both_through "$W/new_send.txt" "$W/new_in.txt"
# new_counts NUMBER...: the unread count of each number's conversation and
# how many messages it holds, "unread/messages" each.
new_counts() {
	local n list=
	for n in "$@"; do list+="${list:+, }'$n'"; done
	q "SELECT string_agg(c.unread_count || '/' || (SELECT count(*) FROM eightms.message m
			WHERE m.account_id = c.account_id AND m.conversation_id = c.conversation_id), ' ' ORDER BY c.peer_number)
		 FROM eightms.conversation c WHERE c.account_id = '$acct' AND c.peer_number IN ($list)"
}
counts=$(new_counts +12125557001 +12125557002)
check "each new conversation counts its inbound message once and holds it and the send's ($counts)" test "$counts" = "1/2 1/2"
# Two phones of the account receiving from the same two new numbers: one
# phone's calls create the lower number's conversation and then, 1.5 s
# later, the higher's, while the other phone's batch names them higher
# first.  The batch waits for the lower before it creates the higher.
race "$(held_receives "$p2" '+1 212 555 7101' '+1 212 555 7102' held)" \
	"$(inbound_batch "$p1" batch '+1 212 555 7102' '+1 212 555 7101')" "$W/new_held.txt" "$W/new_batch.txt"
check "two phones' inbound messages from two new numbers, in opposite orders, all go through ($(grep -hE 'ERROR' "$W/new_held.txt" "$W/new_batch.txt" | head -n1))" \
	test "$(grep -c '^f$' "$W/new_held.txt")/$(grep -c '^2$' "$W/new_batch.txt")/$(cat "$W/new_held.txt" "$W/new_batch.txt" | grep -c ERROR)" = 2/1/0
counts=$(new_counts +12125557101 +12125557102)
check "each conversation counts both phones' messages once ($counts)" test "$counts" = "2/2 2/2"
# A batch from a number whose conversation has a phone and a new, lower
# number, while a send holds the first and then creates the second, as a
# send to both does: the batch takes the conversations as sends do, those
# with a phone first and then the others, each in number order.  Creating
# the new one before locking the other would hold what the send waits for.
q "SELECT pgrst.as_user('concurrency-owner', '$acct'); SELECT count(*) FROM eightms_api.send_messages(
	'[{\"to\": \"+1 212 555 7202\", \"body\": \"hi\", \"phone_id\": \"$p1\"}]')" >/dev/null
race "$(held_sends '+1 212 555 7202' one '+1 212 555 7201' two)" \
	"$(inbound_batch "$p1" mixed '+1 212 555 7201' '+1 212 555 7202')" "$W/mixed_send.txt" "$W/mixed_in.txt"
check "a send and an inbound batch to a number with a conversation and a new one both go through ($(grep -hE 'ERROR|refused' "$W/mixed_send.txt" "$W/mixed_in.txt" | head -n1))" \
	both_through "$W/mixed_send.txt" "$W/mixed_in.txt"
# And a number whose conversation has no phone (its phone unpaired) with a
# new, lower one: a send to both creates the new conversation and then
# takes the other, in number order, and so does the batch.  Locking every
# conversation that exists first, it held the one without a phone and
# waited for the new one, which the send held while it waited for the same.
q "INSERT INTO eightms.conversation (account_id, peer_number) VALUES ('$acct', '+12125557302')" >/dev/null
race "$(held_sends '+1 212 555 7301' one '+1 212 555 7302' two)" \
	"$(inbound_batch "$p1" phoneless '+1 212 555 7302' '+1 212 555 7301')" "$W/phoneless_send.txt" "$W/phoneless_in.txt"
check "a send and an inbound batch to a number whose conversation has no phone and a new one both go through ($(grep -hE 'ERROR|refused' "$W/phoneless_send.txt" "$W/phoneless_in.txt" | head -n1))" \
	both_through "$W/phoneless_send.txt" "$W/phoneless_in.txt"
# Two moves of an offline phone's queue at once (two claims of the account,
# or a claim and the scheduled job): the second waits for the first's row
# locks, finds the messages moved when it commits, and moves none again.
q "UPDATE eightms.phone SET last_heartbeat_at = now() + interval '1 hour', battery_pct = 90
	WHERE account_id = '$acct'" >/dev/null
p3=$(q "INSERT INTO eightms.phone (account_id, device_id) VALUES ('$acct', 'phone-c') RETURNING phone_id" | head -n1)
q "INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
	status, pending)
	SELECT c.account_id, c.conversation_id, 'out', '$p3', c.peer_number, 'stranded', 'gsm7', 1, 'queued', true
	  FROM eightms.conversation c, generate_series(1, 500) WHERE c.account_id = '$acct' AND c.peer_number = '+12125552002'" >/dev/null
race "BEGIN; SELECT eightms.expire_messages('$acct'); SELECT pg_sleep(2); COMMIT;" \
	"BEGIN; SELECT eightms.expire_messages('$acct'); COMMIT;" "$W/move1.txt" "$W/move2.txt"
check "two moves at once: the first moves the 500, the second none, neither fails" \
	test "$(head -n1 "$W/move1.txt") $(head -n1 "$W/move2.txt") $(cat "$W/move1.txt" "$W/move2.txt" | grep -c ERROR)" = "500 0 0"
check "each moved message went to a healthy phone, and their queues end even" \
	test "$(q "SELECT (SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND body = 'stranded' AND status = 'queued'
				AND phone_id IN ('$p1', '$p2'))
		|| ' ' || (abs((SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND pending AND phone_id = '$p1')
					  - (SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND pending AND phone_id = '$p2')) <= 1)")" = "500 true"
# A cancel racing a claim of the same message: the claim has it locked, so
# the cancel waits, finds it claimed when the claim commits, leaves it to
# the phone and says so (its answer is read after the wait, not before).
p4=$(q "INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
	VALUES ('$acct', 'phone-d', NULL, now() + interval '1 hour', 90) RETURNING phone_id" | head -n1)
mid=$(q "SELECT pgrst.as_user('concurrency-owner', '$acct'); SELECT message_id FROM eightms_api.send_messages(
	'[{\"to\": \"+1 212 555 5001\", \"body\": \"maybe\", \"phone_id\": \"$p4\"}]')" | tail -n1)
race "BEGIN;
SELECT pgrst.as_phone('$acct', '$p4') \\g /dev/null
SELECT message_id FROM eightms_api.claim_messages(1);
SELECT pg_sleep(2);
COMMIT;" "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct') \\g /dev/null
SELECT canceled, status FROM eightms_api.cancel_messages(ARRAY['$mid']::uuid[]);
COMMIT;" "$W/cancel_claim.txt" "$W/cancel.txt"
check "a cancel racing the claim of its message leaves it claimed and says so" \
	test "$(head -n1 "$W/cancel_claim.txt") $(head -n1 "$W/cancel.txt") $(q "SELECT status FROM eightms.message WHERE message_id = '$mid'")" = "$mid f|claimed claimed"
# Unpairing a phone while a batch sends to two of its conversations: the
# unpairing locks them in number order, as sends do, so it waits for the
# one the send holds before it holds the other, and both go through.  The
# conversation with the higher number is written first, so that the table
# gives it first.
p5=$(q "INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
	VALUES ('$acct', 'phone-e', NULL, now() + interval '1 hour', 90) RETURNING phone_id" | head -n1)
q "SELECT pgrst.as_user('concurrency-owner', '$acct'); SELECT count(*) FROM eightms_api.send_messages(
	'[{\"to\": \"+1 212 555 6002\", \"body\": \"hi\", \"phone_id\": \"$p5\"}]')" >/dev/null
q "SELECT pgrst.as_user('concurrency-owner', '$acct'); SELECT count(*) FROM eightms_api.send_messages(
	'[{\"to\": \"+1 212 555 6001\", \"body\": \"hi\", \"phone_id\": \"$p5\"}]')" >/dev/null
race "$(held_sends '+1 212 555 6001' one '+1 212 555 6002' two)" "BEGIN;
SELECT pgrst.as_user('concurrency-owner', '$acct') \\g /dev/null
SELECT eightms_api.unpair_phone('$p5');
COMMIT;" "$W/unpair_send.txt" "$W/unpair.txt"
check "an unpairing during a send to two of the phone's conversations: both go through ($(grep -hE 'ERROR|refused' "$W/unpair_send.txt" "$W/unpair.txt" | head -n1))" \
	both_through "$W/unpair_send.txt" "$W/unpair.txt"
check "and the phone's conversations end without it" \
	test "$(q "SELECT count(*) FROM eightms.conversation WHERE account_id = '$acct' AND peer_number IN ('+12125556001', '+12125556002') AND phone_id IS NULL")" = 2
# Two claims of one paced phone at once: the second waits for the first's
# lock on the phone's row and counts what it took, so that together they
# take no more than the limit.  An account of its own, with no other phone
# whose work a claim would move (that would hold the second claim up too).
q "DELETE FROM eightms.account WHERE account_id = '$acct'" >/dev/null
read -r acct p6 < <(command psql -X -At -q -F' ' -d "$DB" <<'SQL'
BEGIN;
SELECT pgrst.as_user('pacing-owner') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Pacing Co') \gset
SELECT pgrst.reset() \g /dev/null
INSERT INTO eightms.phone (account_id, device_id, rate_limit, rate_window, last_heartbeat_at, battery_pct)
VALUES (:'acct', 'phone-paced', 3, interval '1 hour', now() + interval '1 hour', 90);
COMMIT;
SELECT :'acct', (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct');
SQL
)
q "SELECT pgrst.as_user('pacing-owner', '$acct'); SELECT count(*) FROM eightms_api.send_messages(
	(SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || (7500 + i), 'body', 'paced ' || i, 'phone_id', '$p6'))
	   FROM generate_series(1, 10) i))" >/dev/null
race "BEGIN;
SELECT pgrst.as_phone('$acct', '$p6') \\g /dev/null
SELECT count(*) FROM eightms_api.claim_messages(10);
SELECT pg_sleep(1.5);
COMMIT;" "BEGIN;
SELECT pgrst.as_phone('$acct', '$p6') \\g /dev/null
SELECT count(*) FROM eightms_api.claim_messages(10);
COMMIT;" "$W/paced_first.txt" "$W/paced_second.txt"
check "two claims at once of a phone paced at 3 an hour take 3 between them ($(head -n1 "$W/paced_first.txt") and $(head -n1 "$W/paced_second.txt"))" \
	test "$(head -n1 "$W/paced_first.txt")/$(head -n1 "$W/paced_second.txt")" = "3/0"
q "DELETE FROM eightms.account WHERE account_id = '$acct'" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
