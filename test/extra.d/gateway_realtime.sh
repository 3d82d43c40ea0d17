#!/usr/bin/env bash
# Realtime: a session listening on eightms_outbound and eightms_inbound is
# told, at commit and only then, which messages were queued for which phone
# and which arrived; the payloads carry ids only (never a number or a body)
# and each fits NOTIFY's 8000 bytes, however large the batch.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/realtime
mkdir -p "$W"
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
pass=0
fail=0

read -r acct p1 < <(command psql -X -At -q -F' ' -d "$DB" <<'SQL'
BEGIN;
SELECT pgrst.as_user('realtime-owner') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Realtime Co') \gset
SELECT pgrst.reset() \g /dev/null
INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
VALUES (:'acct', 'realtime-a', NULL, now(), 90);
COMMIT;
SELECT :'acct', (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct');
SQL
)

# One session listens and does everything, as a dashboard and a phone would
# through PostgREST; psql prints each notification after the command that
# received it.
command psql -X -q -d "$DB" -v acct="$acct" -v phone="$p1" > "$W/out.txt" 2>&1 <<'SQL'
LISTEN eightms_outbound;
LISTEN eightms_inbound;
\echo step: rolled back
BEGIN;
SELECT pgrst.as_user('realtime-owner', :'acct') \g /dev/null
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550100", "body": "never sent"}]') \g /dev/null
ROLLBACK;
\echo step: batch
BEGIN;
SELECT pgrst.as_user('realtime-owner', :'acct') \g /dev/null
SELECT count(*) FROM eightms_api.send_messages(
	(SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || (2000 + i), 'body', 'Secret code ' || i))
	   FROM generate_series(1, 250) i)) \g /dev/null
\echo step: before commit
COMMIT;
\echo step: single
BEGIN;
SELECT pgrst.as_user('realtime-owner', :'acct') \g /dev/null
SELECT message_id FROM eightms_api.send_message('+1 212 555 3001', 'Secret single') \g /dev/null
COMMIT;
\echo step: inbound
BEGIN;
SELECT pgrst.as_phone(:'acct', :'phone') \g /dev/null
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125553002", "body": "Secret reply", "device_message_id": "rt-1"}]') \g /dev/null
COMMIT;
\echo step: end
SQL

notes() { sed -n "/^step: $1\$/,/^step: $2\$/p" "$W/out.txt" | grep '^Asynchronous notification'; }
payloads() { notes "$1" "$2" | sed 's/.* with payload "\(.*\)" received from server process.*/\1/'; }
check "a rolled-back send notifies no one" test -z "$(notes 'rolled back' batch)"
check "nothing is told before commit" test -z "$(notes batch 'before commit')"
batch=$(payloads 'before commit' single)
check "250 messages for one phone: three notifications on eightms_outbound" \
	test "$(notes 'before commit' single | grep -c '"eightms_outbound"')" = 3 -a "$(printf '%s\n' "$batch" | grep -c .)" = 3
ids_batch=$(printf '%s\n' "$batch" | python3 -c '
import json, sys
ids = []
for line in sys.stdin:
    p = json.loads(line)
    assert set(p) == {"account_id", "phone_id", "message_ids"}, p
    assert len(p["message_ids"]) <= 100
    ids += p["message_ids"]
print(len(set(ids)))' 2>&1)
check "the batch's notifications name each of its 250 messages once ($ids_batch)" test "$ids_batch" = 250
check "they name the phone the messages were queued for" \
	test "$(printf '%s\n' "$batch" | grep -c "\"phone_id\" : \"$p1\"")" = 3
queued=$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND phone_id = '$p1' AND status = 'queued'")
check "and those are the messages queued ($queued)" test "$queued" = 251
single=$(payloads single inbound)
sid=$(q "SELECT message_id FROM eightms.message WHERE account_id = '$acct' AND body = 'Secret single'")
check "a single send notifies its one message id" \
	test "$(printf '%s\n' "$single" | grep -c "\"message_ids\" : \[\"$sid\"\]")" = 1
inbound=$(notes inbound end)
iid=$(q "SELECT message_id FROM eightms.message WHERE account_id = '$acct' AND device_message_id = 'rt-1'")
check "an inbound SMS notifies eightms_inbound with its id" \
	test "$(printf '%s\n' "$inbound" | grep -c "eightms_inbound.*$iid")" = 1
check "no payload carries a number or a body" \
	test -z "$(grep '^Asynchronous notification' "$W/out.txt" | grep -E 'Secret|212555|\+1')"
check "the session ran without errors" test -z "$(grep -E 'ERROR|FATAL' "$W/out.txt")"
q "DELETE FROM eightms.account WHERE account_id = '$acct'" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
