#!/usr/bin/env bash
# A cluster running eightms can move to a new PostgreSQL major version with
# pg_upgrade: pg_upgrade --check, run live against the test cluster (its
# databases hold everything the suites wrote) with a fresh cluster as the
# target, finds nothing in the way.  It refuses, among other things, any
# table with a column of a reg* type whose OIDs it does not keep, which a
# bridge request's callback once was.  Same major version on both sides:
# only 15 is installed here, and the checks are the same.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
W=$EIGHTMS_TEST_DIR/upgrade
BIN=$EIGHTMS_TEST_ROOT$PGBIN
OLD=$EIGHTMS_TEST_DIR/data
NEW=$W/new
PORT=$((EIGHTMS_TEST_PORT + 7))
pass=0
fail=0

rm -rf "$W"
mkdir -p "$W"
chown postgres "$W"
as_postgres "$BIN/initdb" -D "$NEW" -U postgres -E UTF8 --locale=C.UTF-8 > "$W/initdb.out" 2>&1
check "a new cluster is initialized ($W/initdb.out)" test $? -eq 0
# pg_upgrade loads every library the old cluster's functions name; pg_cron
# loads only at start, so the new cluster preloads what the old one does.
cat >> "$NEW/postgresql.conf" <<CONF
port = $PORT
unix_socket_directories = '$W'
shared_preload_libraries = 'pg_cron,eightms'
cron.database_name = '$EIGHTMS_TEST_DB'
CONF
# pg_upgrade writes its logs under the new cluster and where it runs.
(cd "$W" && runuser -u postgres -- "$BIN/pg_upgrade" --check -U postgres -b "$BIN" -B "$BIN" -d "$OLD" -D "$NEW" \
	-p "$EIGHTMS_TEST_PORT" -P "$PORT" -s "$W") > "$W/pg_upgrade.out" 2>&1
rc=$?
check "pg_upgrade --check passes against the live test cluster ($W/pg_upgrade.out)" test "$rc" -eq 0
check "it checked for reg* columns in user tables" grep -q 'Checking for reg\* data types in user tables *ok' "$W/pg_upgrade.out"
check "it found the clusters compatible" grep -q 'Clusters are compatible' "$W/pg_upgrade.out"
[ "$rc" -eq 0 ] || tail -n 20 "$W/pg_upgrade.out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
