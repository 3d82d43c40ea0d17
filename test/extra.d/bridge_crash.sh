#!/usr/bin/env bash
# The bridge loses nothing when it dies mid-flight: kill -9 the worker while
# requests are in flight, separately stop the whole server in immediate
# mode, and stop the recorder (the process that records outcomes) alone;
# after restart every request completes, and the peer saw each one at least
# once, resends carrying the same Idempotency-Key.
# Run by test/run.sh after the pgTAP suites; prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
PGCTL=$EIGHTMS_TEST_ROOT$PGBIN/pg_ctl
DATA=$EIGHTMS_TEST_DIR/data
pass=0
fail=0
q() { command psql -X -At -d "$DB" -c "$1" 2>/dev/null; }
N=300

# Wait until the database answers again after a crash or restart.
wait_up() { for _ in $(seq 1 300); do q "SELECT 1" | grep -q 1 && return 0; sleep 0.1; done; return 1; }

# Queue N slow requests tagged $1; wait until some are done, so that the
# rest are in flight or queued when the blow falls.
queue_and_wait_for_some() {
	q "SELECT count(eightms.http_enqueue('GET', current_setting('test.peer') || '/slow/150',
	     idempotency_key => '$1-' || i, max_attempts => 10)) FROM generate_series(1, $N) i" >/dev/null
	for _ in $(seq 1 200); do
		[ "$(q "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE '$1-%' AND state = 'done'")" -ge 20 ] 2>/dev/null && break
		sleep 0.05
	done
	q "SELECT count(*) FILTER (WHERE id = ANY (eightms.http_in_flight())) FROM eightms.http_request WHERE idempotency_key LIKE '$1-%'"
}

wait_all_done() {
	for _ in $(seq 1 600); do
		[ "$(q "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE '$1-%' AND state IN ('done', 'dead')")" = "$N" ] && return 0
		sleep 0.1
	done
	return 1
}

peer_check() {
	# Every key reached the peer; how many deliveries in all.
	/usr/bin/python3 - "$EIGHTMS_TEST_PEER_LOG" "$1" "$N" <<'PY'
import json, sys
log, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
keys = {}
for line in open(log):
    e = json.loads(line)
    k = e.get("key") or ""
    if k.startswith(tag + "-"):
        keys[k] = keys.get(k, 0) + 1
dups = sum(c - 1 for c in keys.values())
print(f"{len(keys)} {dups}")
sys.exit(0 if len(keys) == n else 1)
PY
}

# 1. kill -9 the worker.
inflight=$(queue_and_wait_for_some kill9)
pid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge'")
check "the bridge worker is running (pid $pid) with requests in flight ($inflight)" test -n "$pid" -a "${inflight:-0}" -gt 0
kill -9 "$pid"
wait_up
check "after the worker was killed, all $N requests complete" wait_all_done kill9
check "none of them ended dead" test "$(q "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE 'kill9-%' AND state = 'done'")" = "$N"
seen=$(peer_check kill9)
check "the peer received every one of the $N requests (distinct keys, resends: ${seen#* })" test "${seen% *}" = "$N"

# 2. Immediate stop of the whole server.
inflight=$(queue_and_wait_for_some immediate)
check "requests are in flight ($inflight) when the server stops" test "${inflight:-0}" -gt 0
as_postgres "$PGCTL" -D "$DATA" -m immediate -w stop >/dev/null
start_cluster "$DATA" "$EIGHTMS_TEST_SECRETS" "$EIGHTMS_TEST_LOG"
wait_up
check "after an immediate stop and restart, all $N requests complete" wait_all_done immediate
check "none of them ended dead" test "$(q "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE 'immediate-%' AND state = 'done'")" = "$N"
seen=$(peer_check immediate)
check "the peer received every one of the $N requests (distinct keys, resends: ${seen#* })" test "${seen% *}" = "$N"

# 3. Stop the recorder (the process that records outcomes) mid-flight.
inflight=$(queue_and_wait_for_some recorder)
rpid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge recorder'")
check "the recorder is running (pid $rpid) with requests in flight ($inflight)" test -n "$rpid" -a "${inflight:-0}" -gt 0
q "SELECT pg_terminate_backend($rpid)" >/dev/null
check "after the recorder was stopped, all $N requests complete" wait_all_done recorder
check "none of them ended dead" test "$(q "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE 'recorder-%' AND state = 'done'")" = "$N"
seen=$(peer_check recorder)
check "the peer received every one of the $N requests (distinct keys, resends: ${seen#* })" test "${seen% *}" = "$N"
check "every done request has its attempt recorded" test "$(q "SELECT count(*) FROM eightms.http_request r WHERE idempotency_key LIKE 'recorder-%' AND NOT EXISTS (SELECT FROM eightms.http_attempt a WHERE a.request_id = r.id AND a.attempt = r.attempts)")" = 0

q "DELETE FROM eightms.http_request WHERE idempotency_key LIKE 'kill9-%' OR idempotency_key LIKE 'immediate-%' OR idempotency_key LIKE 'recorder-%'" >/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
