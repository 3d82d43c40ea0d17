#!/usr/bin/env bash
# eightms needs shared_preload_libraries (the bridge worker, its shared
# memory, the secrets the postmaster reads).  In a cluster of its own
# without it, the library loaded by a backend must refuse clearly (SQLSTATE
# 55000, a hint to preload it), not end the session with FATAL (it did:
# "cannot create PGC_POSTMASTER variables after startup") nor answer empty:
# CREATE EXTENSION refuses, and in a database installed while it was
# preloaded, the functions that need it refuse while the others still work.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
W=$EIGHTMS_TEST_DIR/no-preload
PORT2=$((EIGHTMS_TEST_PORT + 41))
DB=no_preload
BIN=$EIGHTMS_TEST_ROOT$PGBIN
pass=0
fail=0
# Run SQL in one session that goes on after errors, verbose (SQLSTATEs shown).
sql() {
	command psql -X -v VERBOSITY=verbose -h "$W/run" -p "$PORT2" -U postgres -d "$DB" -c "$1" 2>&1
}
# One value (without the warnings about eightms.* settings a server that
# did not preload it has no use for).
val() {
	command psql -X -At -h "$W/run" -p "$PORT2" -U postgres -d "$DB" -c "$1" 2>/dev/null
}
# Set shared_preload_libraries, then (re)start the cluster.
preload() {
	sed -i "s/^shared_preload_libraries = .*/shared_preload_libraries = '$1'/" "$W/data/eightms.conf"
	PGCTL=$BIN/pg_ctl start_cluster "$W/data" "$EIGHTMS_TEST_SECRETS" "$W/server.log"
}
refused() {
	# $1: output of sql(); the refusal, with its SQLSTATE and hint
	grep -q "ERROR:  55000: eightms is not loaded through shared_preload_libraries" <<<"$1" \
		&& grep -q "HINT:  Add eightms to shared_preload_libraries and restart the server." <<<"$1"
}

[ -s "$W/data/postmaster.pid" ] && PGCTL=$BIN/pg_ctl stop_cluster "$W/data"
rm -rf "$W"
mkdir -p "$W"
chown postgres "$W"
INITDB=$BIN/initdb init_cluster "$W/data" "$PORT2" "$W/run" "$DB"
echo "eightms.bridge_database = '$DB'" >> "$W/data/eightms.conf"
preload pg_cron
command psql -X -q -h "$W/run" -p "$PORT2" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null

# Two statements in one session: the second runs only if the first did not
# end the session.
out=$(command psql -X -v VERBOSITY=verbose -h "$W/run" -p "$PORT2" -U postgres -d "$DB" \
	-c "CREATE EXTENSION eightms CASCADE" -c "SELECT 'still ' || 'here'" 2>&1)
check "CREATE EXTENSION without preload is refused with 55000 and a hint" refused "$out"
check "and the session goes on (no FATAL)" grep -q "still here" <<<"$out"
check "nothing is installed" test "$(val "SELECT count(*) FROM pg_extension WHERE extname = 'eightms'")" = 0

# Installed while preloaded, then the server restarted without it.
preload pg_cron,eightms
sql "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE" >/dev/null
check "with preload it installs" test "$(val "SELECT count(*) FROM pg_extension WHERE extname = 'eightms'")" = 1
preload pg_cron

out=$(sql "SELECT eightms.http_in_flight()")
check "eightms.http_in_flight() refuses instead of an empty list" refused "$out"
out=$(sql "SELECT eightms.http_enqueue('GET', 'https://example.com/')")
check "eightms.http_enqueue() refuses (no worker would send it)" refused "$out"
out=$(sql "SELECT eightms.seal('x', 'ctx')")
check "eightms.seal() refuses" refused "$out"
out=$(sql "SELECT eightms.jwt_sign('{\"sub\": \"x\"}')")
check "eightms.jwt_sign() refuses" refused "$out"
check "nothing was queued" test "$(val "SELECT count(*) FROM eightms.http_request")" = 0
check "what needs no preload still works (eightms.e164, eightms.is_public_address)" \
	test "$(val "SELECT eightms.e164('+1 415 555 0132', 'US') || ' ' || eightms.is_public_address('8.8.8.8')")" = "+14155550132 true"
# Client sessions log as user@database (test/lib.sh's log_line_prefix).
check "no session ended with FATAL" bash -c "! grep -q 'postgres@$DB FATAL' '$W/server.log'"

[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || PGCTL=$BIN/pg_ctl stop_cluster "$W/data"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
