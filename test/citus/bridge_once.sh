#!/usr/bin/env bash
# test/citus/bridge_once.sh: on the Citus tier's cluster (test/citus.sh),
# every request enqueued is sent once, by the coordinator's bridge: each
# node runs a bridge worker with the same settings, and a worker node's
# stays idle.  Also what eightms.distribute() did, and that it refuses where
# it must, and that eightms's jobs are scheduled on the coordinator only.  Run by the tier with EIGHTMS_CITUS_DIR and EIGHTMS_CITUS_PORT
# (the coordinator; the workers on the next two ports) and the stand-in
# peer's EIGHTMS_TEST_PEER and EIGHTMS_TEST_PEER_LOG.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e

CT=${EIGHTMS_CITUS_DIR:?} CPORT=${EIGHTMS_CITUS_PORT:?} DB=${EIGHTMS_TEST_DB:-eightms_test}
PEER=${EIGHTMS_TEST_PEER:?} PEER_LOG=${EIGHTMS_TEST_PEER_LOG:?}
pass=0
fail=0
q() {
	local port=$1
	shift
	command psql -X -q -At -v ON_ERROR_STOP=1 -h "$CT/run" -p "$port" -U postgres -d "$DB" "$@"
}
W1=$((CPORT + 1))
W2=$((CPORT + 2))

# Wait (at most $1 seconds) until the command succeeds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# ---- distribute() ---------------------------------------------------------
placement() {
	q "$CPORT" -c "SELECT coalesce((SELECT CASE p.partmethod WHEN 'h' THEN 'distributed' WHEN 'n' THEN 'reference' END
							   FROM pg_dist_partition p WHERE p.logicalrelid = '$1'::regclass), 'local')"
}
# Each table where eightms.distribution_plan() says it goes.
while IFS='|' read -r t want; do
	case $want in
		distributed) check "$t is distributed" [ "$(placement "$t")" = distributed ] ;;
		reference) check "$t is a reference table" [ "$(placement "$t")" = reference ] ;;
		*) check "$t stays local to the coordinator" [ "$(placement "$t")" = local ] ;;
	esac
done < <(q "$CPORT" -c "SELECT table_name, placement FROM eightms.distribution_plan() ORDER BY step")
check "every distributed table is in account's colocation group, by account_id" \
	[ "$(q "$CPORT" -c "SELECT count(*) FROM pg_dist_partition p, pg_dist_partition a
						 WHERE a.logicalrelid = 'eightms.account'::regclass AND p.partmethod = 'h'
						   AND p.logicalrelid::regclass::text LIKE 'eightms.%'
						   AND p.colocationid = a.colocationid
						   AND column_to_column_name(p.logicalrelid, p.partkey) = 'account_id'")" \
	  = "$(q "$CPORT" -c "SELECT count(*) FROM eightms.distribution_plan() WHERE placement = 'distributed'")" ]
check "eightms.distribute() again changes nothing" \
	[ "$(q "$CPORT" -c "SELECT count(*) FROM eightms.distribute() WHERE action NOT LIKE 'already %' AND placement <> 'local'")" = 0 ]
check "eightms.distribute() on a worker refuses with 55000" \
	bash -c "q() { command psql -X -q -At -h '$CT/run' -p $W1 -U postgres -d '$DB' \"\$@\"; }
		q -c '\\set VERBOSITY verbose' -c 'SELECT eightms.distribute()' 2>&1 | grep -q '55000'"
check "eightms.distribute() as a role that is not superuser refuses with 42501" \
	bash -c "command psql -X -q -At -h '$CT/run' -p $CPORT -U postgres -d '$DB' \
		-c 'CREATE ROLE citus_not_super' -c 'SET ROLE citus_not_super' -c '\\set VERBOSITY verbose' \
		-c 'SELECT eightms.distribute()' 2>&1 | grep -q 42501"
q "$CPORT" -c "DROP ROLE IF EXISTS citus_not_super" >/dev/null 2>&1

# ---- the jobs: scheduled on the coordinator, refused on a worker ------------
check "eightms.schedule_jobs() on a worker refuses: the jobs run on the coordinator" \
	bash -c "command psql -X -q -At -h '$CT/run' -p $W1 -U postgres -d '$DB' \
		-c 'SELECT * FROM eightms.schedule_jobs()' 2>&1 | grep -q 'this node is a Citus worker'"

# ---- the bridge: the coordinator's sends, the workers' stay idle ------------
for port in "$W1" "$W2"; do
	check "the bridge on the worker at port $port says it stays idle" \
		wait_for 60 grep -q 'eightms bridge: this node is a Citus worker' "$CT/$([ "$port" = "$W1" ] && echo worker1 || echo worker2).log"
done
check "the coordinator's bridge does not call itself a worker" \
	bash -c "! grep -q 'eightms bridge: this node is a Citus worker' '$CT/coordinator.log'"

# A request in a worker's own queue: that bridge must not send it.
q "$W1" -c "SELECT eightms.http_enqueue('POST', '$PEER/echo', idempotency_key => 'citus-once-worker')" >/dev/null
N=20
q "$CPORT" -c "SELECT count(eightms.http_enqueue('POST', '$PEER/echo', body => convert_to(i::text, 'UTF8'),
						idempotency_key => 'citus-once-' || i))
			  FROM generate_series(1, $N) i" >/dev/null
done_count() {
	[ "$(q "$CPORT" -c "SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE 'citus-once-%' AND state = 'done'")" = "$N" ]
}
check "the coordinator's bridge sent all $N requests" wait_for 60 done_count
received() {
	python3 - "$PEER_LOG" "$1" <<'PY'
import json, sys
keys = {}
for line in open(sys.argv[1]):
    if line.strip():
        k = json.loads(line).get("key") or ""
        if k.startswith(sys.argv[2]):
            keys[k] = keys.get(k, 0) + 1
print(" ".join("%s=%d" % kv for kv in sorted(keys.items()) if kv[1] != 1) or "each once", len(keys))
PY
}
check "the peer received each of the $N requests exactly once" [ "$(received 'citus-once-')" = "each once $N" ]
check "the worker's bridge did not send the request queued there" \
	[ "$(q "$W1" -c "SELECT state || ' ' || attempts FROM eightms.http_request WHERE idempotency_key = 'citus-once-worker'")" = "queued 0" ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
