#!/usr/bin/env bash
# bench/gateway/routing.sh: what routing a new conversation costs behind a
# campaign's backlog.  eightms.healthy_phones counts each healthy phone's
# queue on message_queue_idx, once per send batch (or single send) with a
# new number, up to eightms.routing_queue_cap; moving an offline phone's
# queue counts whole queues.  Four phones with BENCH_QUEUED (default
# 400,000) queued messages between them; each call timed in one session
# (best of BENCH_ROUNDS, default 5, after a first call), side by side.
NAME=routing
PORT=${EIGHTMS_BENCH_PORT:-54347}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
QUEUED=${BENCH_QUEUED:-400000}
ROUNDS=${BENCH_ROUNDS:-5}
bench_cluster
q() { command psql -X -At -q -d "$DB" -c "$1"; }
bench_account_with_phones 'Routing Co'
command psql -X -q -d "$DB" -v acct="$ACCT" -v n="$QUEUED" <<'SQL'
INSERT INTO eightms.conversation (account_id, peer_number, phone_id, last_message_at)
SELECT :'acct', '+1212555' || (1000 + i),
	   (SELECT phone_id FROM eightms.phone WHERE account_id = :'acct' ORDER BY device_id OFFSET i % 4 LIMIT 1), now()
  FROM generate_series(0, 7999) i;
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, pending, send_at, expires_at)
SELECT c.account_id, c.conversation_id, 'out', c.phone_id, c.peer_number, 'Campaign', 'gsm7', 1, 'queued', true,
	   now(), now() + interval '1 day'
  FROM eightms.conversation c, generate_series(1, :n / 8000) g
 WHERE c.account_id = :'acct';
VACUUM ANALYZE eightms.message, eightms.conversation, eightms.phone;
SQL
# Best time of a healthy_phones call with count cap $1 (NULL: uncapped).
timed() {
	{
		echo "SELECT * FROM eightms.healthy_phones('$ACCT', $1) \\g /dev/null"
		echo '\timing on'
		for _ in $(seq 1 "$ROUNDS"); do echo "SELECT * FROM eightms.healthy_phones('$ACCT', $1) \\g /dev/null"; done
	} | command psql -X -q -d "$DB" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -g | head -n1
}
cap=$(q "SHOW eightms.routing_queue_cap")
# As routing a new conversation calls it, and as moving a queue does.
capped=$(timed "current_setting('eightms.routing_queue_cap')::integer")
uncapped=$(timed NULL)
printf 'queued: %d on 4 phones\n' "$(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT' AND pending")"
printf 'healthy_phones counting up to eightms.routing_queue_cap (%s): %.2f ms; whole queues: %.2f ms; %.1fx\n' \
	"$cap" "$capped" "$uncapped" "$(echo "$uncapped / $capped" | bc -l)"
