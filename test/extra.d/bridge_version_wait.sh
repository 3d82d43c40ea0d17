#!/usr/bin/env bash
# A DBA installs a new library, restarts, and only then runs ALTER
# EXTENSION eightms UPDATE: until then the bridge worker must not run this
# version's statements against the old version's tables and functions.  In
# a cluster of its own (the suite's database is always current), eightms
# 0.1.0's SQL is installed beside this tree's library: the worker says once
# that it waits, sends nothing of what is queued, and after the update
# starts and sends it.  Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
W=$EIGHTMS_TEST_DIR/bridge-version
PORT2=$((EIGHTMS_TEST_PORT + 31))
DB=bridge_version
BIN=$EIGHTMS_TEST_ROOT$PGBIN
OLD=0.1.0
NEW=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$REPO/eightms.control")
pass=0
fail=0
q() { command psql -X -At -v ON_ERROR_STOP=1 -h "$W/run" -p "$PORT2" -U postgres -d "${2:-$DB}" -c "$1"; }
# Wait (bounded) until a command succeeds.
until_ok() {
	for _ in $(seq 1 300); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

[ -s "$W/data/postmaster.pid" ] && PGCTL=$BIN/pg_ctl stop_cluster "$W/data"
rm -rf "$W"
mkdir -p "$W"
chown postgres "$W"
INITDB=$BIN/initdb init_cluster "$W/data" "$PORT2" "$W/run" "$DB"
printf '%s\n' "eightms.bridge_database = '$DB'" "eightms.bridge_allow_private_addresses = on" \
	>> "$W/data/eightms.conf"
PGCTL=$BIN/pg_ctl start_cluster "$W/data" "$EIGHTMS_TEST_SECRETS" "$W/server.log"
q "CREATE DATABASE $DB" postgres >/dev/null
q "SET client_min_messages = warning; CREATE EXTENSION eightms VERSION '$OLD' CASCADE" >/dev/null
check "the database has eightms $OLD's SQL under the $NEW library" \
	test "$(q "SELECT extversion FROM pg_extension WHERE extname = 'eightms'")" = "$OLD"

waiting="eightms bridge: the library is eightms $NEW but database \"$DB\" has eightms $OLD; waiting"
check "the worker logs that it waits for ALTER EXTENSION eightms UPDATE" \
	until_ok grep -qF "$waiting" "$W/server.log"

# Queued under the old SQL; the commit wakes the worker.  Once it has looked
# again after that, the request must still be queued.
q "SELECT eightms.http_enqueue('GET', '$EIGHTMS_TEST_PEER/echo', idempotency_key => 'version-wait-1')" >/dev/null
committed=$(q "SELECT clock_timestamp()")
looked_again() {
	[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eightms bridge' AND state_change > '$committed'")" = 1 ]
}
check "the worker looks again after the commit" until_ok looked_again
check "and has sent nothing" \
	test "$(q "SELECT state || ' ' || attempts FROM eightms.http_request WHERE idempotency_key = 'version-wait-1'")" = "queued 0"
check "it logged that once" test "$(grep -cF "$waiting" "$W/server.log")" = 1

q "CREATE EXTENSION IF NOT EXISTS pg_trgm; ALTER EXTENSION eightms UPDATE" >/dev/null
sent() { [ "$(q "SELECT state FROM eightms.http_request WHERE idempotency_key = 'version-wait-1'")" = done ]; }
check "after the update the worker starts and sends the queued request" until_ok sent
check "and says so" grep -qF "eightms bridge: extension eightms is at version $NEW now; starting" "$W/server.log"
check "no bridge statement failed meanwhile" \
	test "$(grep -c 'ERROR' "$W/server.log")" = 0

[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || PGCTL=$BIN/pg_ctl stop_cluster "$W/data"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
