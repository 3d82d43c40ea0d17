#!/usr/bin/env bash
# bench/privacy/dsar_export.sh: a data-subject export of one contact in an
# account holding BENCH_ROWS (default 1,000,000) messages (issue 21, part 7).
# The export (eightms.dsar_export: the registry read, one dynamic query per
# table searched, the request logged with its subject sealed) against a
# hand-written json_agg of the same rows of the same tables, read by the
# same indexes (the conversation by its number, its messages through
# message_conversation_idx).  Best of BENCH_RUNS (5) each, alternated over
# BENCH_CONTACTS (5) contacts.  Prints both and their ratio (target: within
# 3x).
#
#   BENCH_ROWS, BENCH_CONTACTS, BENCH_RUNS, EIGHTMS_BENCH_PORT
NAME=privacy-dsar
PORT=${EIGHTMS_BENCH_PORT:-54348}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ROWS=${BENCH_ROWS:-1000000}
CONTACTS=${BENCH_CONTACTS:-5}
RUNS=${BENCH_RUNS:-5}
bench_cluster
q() { command psql -X -At -q -d "$DB" -c "$1"; }
bench_account_with_phones 'Export Co'

# 2,000 contacts, each with ROWS / 2,000 messages, an opt-out and a
# consent event for every tenth.
command psql -X -q -d "$DB" -v acct="$ACCT" -v rows="$ROWS" <<'SQL'
INSERT INTO eightms.conversation (account_id, peer_number, last_message_at)
SELECT :'acct', '+1212555' || (1000 + i), now() FROM generate_series(0, 1999) i;
INSERT INTO eightms.message (account_id, conversation_id, direction, peer_number, body, encoding, segments,
							 status, attempts, send_at, created_at, sent_at, delivered_at)
SELECT c.account_id, c.conversation_id, 'out', c.peer_number, 'Your order ' || g || ' has shipped', 'gsm7', 1,
	   'delivered', 1, now(), now(), now(), now()
  FROM generate_series(1, :rows) g
  JOIN eightms.conversation c ON c.account_id = :'acct' AND c.peer_number = '+1212555' || (1000 + g % 2000);
INSERT INTO eightms.opt_out (account_id, number)
SELECT :'acct', '+1212555' || (1000 + i) FROM generate_series(0, 1999, 10) i;
INSERT INTO eightms.consent_event (account_id, number, action, keyword, inbound_text)
SELECT :'acct', '+1212555' || (1000 + i), 'opt_out', 'STOP', 'STOP' FROM generate_series(0, 1999, 10) i;
VACUUM ANALYZE;
SQL

# The baseline: the same tables, columns and rows, written by hand.
hand() {
	cat <<SQL
SELECT jsonb_build_object(
  'conversation', (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM eightms.conversation c
					WHERE c.account_id = '$ACCT' AND c.peer_number = '$1'),
  'message', (SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]') FROM eightms.message m
			   WHERE m.conversation_id = ANY (ARRAY(SELECT c.conversation_id FROM eightms.conversation c
													 WHERE c.account_id = '$ACCT' AND c.peer_number = '$1'))
				 AND m.account_id = '$ACCT' AND m.peer_number = '$1'),
  'opt_out', (SELECT coalesce(jsonb_agg(to_jsonb(o)), '[]') FROM eightms.opt_out o
			   WHERE o.account_id = '$ACCT' AND o.number = '$1'),
  'consent_event', (SELECT coalesce(jsonb_agg(to_jsonb(e)), '[]') FROM eightms.consent_event e
					 WHERE e.account_id = '$ACCT' AND e.number = '$1'),
  'consent_review', (SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]') FROM eightms.consent_review r
					  WHERE r.account_id = '$ACCT' AND r.number = '$1')) \\g /dev/null
SQL
}
export_sql() { echo "SELECT eightms.dsar_export('contact', '$1', '$ACCT') \\g /dev/null"; }

# Both hold the same rows.
n=$(q "SELECT jsonb_array_length(eightms.dsar_export('contact', '+12125551000', '$ACCT') -> 'data' -> 'message')")
echo "==> messages of one contact: $n of $(q "SELECT count(*) FROM eightms.message WHERE account_id = '$ACCT'") in the account"

sum_hand=0 sum_export=0
for i in $(seq 0 $((CONTACTS - 1))); do
	num="+1212555$((1000 + i * 397 % 2000))"
	h=$(best_ms "$(hand "$num")" "$RUNS")
	e=$(best_ms "$(export_sql "$num")" "$RUNS")
	printf 'contact %d: hand-written %.2f ms, export %.2f ms\n' "$i" "$h" "$e"
	sum_hand=$(echo "$sum_hand + $h" | bc -l)
	sum_export=$(echo "$sum_export + $e" | bc -l)
done
printf 'hand-written json_agg: %.2f ms a contact\n' "$(echo "$sum_hand / $CONTACTS" | bc -l)"
printf 'eightms.dsar_export:   %.2f ms a contact\n' "$(echo "$sum_export / $CONTACTS" | bc -l)"
printf 'ratio: %.2f (target <= 3)\n' "$(echo "$sum_export / $sum_hand" | bc -l)"
