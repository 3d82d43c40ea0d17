#!/usr/bin/env bash
# ALTER EXTENSION eightms UPDATE, as a DBA runs it at a release: the last
# released version is built from git history and installed into a private
# copy of PostgreSQL, a cluster of its own gets a database filled through
# that release's API, the server is stopped, this tree's build is installed
# over the old one, the server started again and the extension updated.
# Then the upgraded database's catalog must equal a fresh install's
# (test/upgrade/catalog.sql, diffed category by category: a failure names
# what the upgrade script misses), every row must still be there, and the
# data must still work under this tree's API and test/helpers.sql: the
# phone's token from before claims and reports the messages queued before,
# the account reads its conversations, the opted-out number stays refused,
# the signed-out session stays signed out, sealed values open and the
# bridge request left queued is sent with its sealed header.  Prints "N
# passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
W=$EIGHTMS_TEST_DIR/ext-upgrade
PORT=$((EIGHTMS_TEST_PORT + 21))
ROOT=$W/root
DATA=$W/data
SOCK=$W/run
LOG=$W/server.log
DB=eightms_upgraded
FRESH=eightms_fresh
INITDB=$ROOT$PGBIN/initdb
PGCTL=$ROOT$PGBIN/pg_ctl
PEER=${EIGHTMS_TEST_PEER:-}
pass=0
fail=0
q() { command psql -X -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d "${2:-$DB}" -c "$1"; }
psql_db() { command psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d "$@"; }
finish() {
	# Kept for a look with EIGHTMS_TEST_KEEP=1, as the suite's cluster is.
	[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || stop_cluster "$DATA"
	[ -n "${PEER_PID:-}" ] && kill "$PEER_PID" 2>/dev/null
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}

# The release the update starts from is the newest one frozen in
# sql/versions/, and the commit it was built from is named once, in the
# first line of its install script.
OLD_SCRIPT=$(ls "$REPO"/sql/versions/eightms--*.sql | grep -v -- '--.*--' | sort -V | tail -n 1)
OLD_VERSION=$(basename "$OLD_SCRIPT" .sql | sed 's/^eightms--//')
OLD_COMMIT=$(head -n 1 "$OLD_SCRIPT" | sed -n 's/.* at commit \([0-9a-f]\{7,40\}\)).*/\1/p')
NEW_VERSION=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$REPO/eightms.control")
echo "# from $OLD_VERSION (commit $OLD_COMMIT) to $NEW_VERSION"
check "the released script $(basename "$OLD_SCRIPT") names the commit it was built from" test -n "$OLD_COMMIT"
if [ -z "$OLD_COMMIT" ] || ! git -C "$REPO" cat-file -e "$OLD_COMMIT^{commit}" 2>/dev/null; then
	echo "error: commit '$OLD_COMMIT' of release $OLD_VERSION is not in this clone ($REPO);" \
		"the upgrade from it cannot be tested. A shallow clone needs 'git fetch --unshallow'." >&2
	check "commit $OLD_COMMIT of release $OLD_VERSION is in this clone" false
	echo "$pass passed, $fail failed"
	exit 1
fi

[ -s "$DATA/postmaster.pid" ] && stop_cluster "$DATA"
rm -rf "$W"
mkdir -p "$W/old"
chmod 755 "$W"
# The suite's stand-in HTTP peer (test/setup.d/bridge_peer.sh), or one of
# its own when run alone.
if [ -z "$PEER" ]; then
	/usr/bin/python3 "$REPO/test/bridge/peer.py" --port $((PORT + 200)) --log "$W/peer.jsonl" --lifetime 600 2>> "$W/peer.err" &
	PEER_PID=$!
	PEER=http://127.0.0.1:$((PORT + 200))
	for _ in $(seq 1 50); do
		(exec 3<>/dev/tcp/127.0.0.1/$((PORT + 200))) 2>/dev/null && break
		sleep 0.1
	done
fi

# The old release as its tarball would be: the module and its script only
# (not the phone tools, nor JIT bitcode).
git -C "$REPO" archive "$OLD_COMMIT" | tar -x -C "$W/old"
OLDMAKE=(make -C "$W/old" -s -j2 -o eightms-phone with_llvm=no PG_CONFIG=$PGBIN/pg_config)
"${OLDMAKE[@]}" > "$W/old-build.out" 2>&1
check "$OLD_VERSION builds from commit $OLD_COMMIT ($W/old-build.out)" test $? -eq 0
check "the frozen $(basename "$OLD_SCRIPT") is what commit $OLD_COMMIT generates (but for its first line)" \
	cmp -s <(tail -n +2 "$OLD_SCRIPT") <(tail -n +2 "$W/old/eightms--$OLD_VERSION.sql")
copy_postgres "$ROOT"
"${OLDMAKE[@]}" install DESTDIR="$ROOT" >> "$W/old-build.out" 2>&1
check "$OLD_VERSION installs into a private copy of PostgreSQL" test $? -eq 0

# The cluster, set up as the suite's is.  The old release reads its
# secrets from the server's environment only (it knows no key file); the
# update below moves them to the key file, as README tells a DBA to.
ensure_secrets "$W/secrets.env"
init_test_cluster "$DATA" "$PORT" "$SOCK" "$DB"
start_cluster_with_env "$DATA" "$W/secrets.env" "$LOG"
q "CREATE DATABASE $DB" postgres >/dev/null
q "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE; CREATE EXTENSION pg_cron" >/dev/null
check "CREATE EXTENSION installs $OLD_VERSION" test "$(q "SELECT extversion FROM pg_extension WHERE extname = 'eightms'")" = "$OLD_VERSION"
git -C "$REPO" show "$OLD_COMMIT:test/helpers.sql" | psql_db "$DB" > "$W/old-helpers.out" 2>&1
psql_db "$DB" -v peer="$PEER" -f "$REPO/test/upgrade/fill-$OLD_VERSION.sql" > "$W/fill.out" 2>&1
check "the database is filled through $OLD_VERSION's API ($W/fill.out)" test $? -eq 0
fixture() { q "SELECT value FROM public.upgrade_fixture WHERE key = '$1'"; }
done_id=$(fixture bridge_done)
for _ in $(seq 1 300); do
	[ "$(q "SELECT state FROM eightms.http_request WHERE id = ${done_id:-0}")" = done ] && break
	sleep 0.1
done
check "$OLD_VERSION's bridge sent a request" test "$(q "SELECT state FROM eightms.http_request WHERE id = ${done_id:-0}")" = done
# Rows of every table, to be compared after the update.  Not the registries
# the install and upgrade scripts write themselves (a version may add a job
# or a sealed column); the catalog comparison below checks those.
counts="SELECT format('SELECT %L, count(*) FROM %s', c.oid::regclass, c.oid::regclass)
		  FROM pg_class c WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind = 'r'
		   AND c.oid NOT IN ('eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass)
		 ORDER BY 1"
count_rows() { printf '%s\n\\gexec\n' "$counts" | psql_db "$DB" -F' '; }
count_rows > "$W/counts-before.txt"
empty=$(awk '$2 == 0 { print $1 }' "$W/counts-before.txt" | tr '\n' ' ')
check "every table but the bridge's attempts has rows before the update (empty: ${empty:-none})" \
	test -s "$W/counts-before.txt" -a \( "$empty" = "eightms.http_attempt " -o -z "$empty" \)

# The update: stop, install this tree's build over the old one, start, update.
stop_cluster "$DATA"
make -C "$REPO" -s install DESTDIR="$ROOT" PG_CONFIG=$PGBIN/pg_config > "$W/install.out" 2>&1
check "this tree's build installs over $OLD_VERSION ($W/install.out)" test $? -eq 0
start_cluster "$DATA" "$W/secrets.env" "$LOG"
psql_db "$DB" -c "ALTER EXTENSION eightms UPDATE" > "$W/update.out" 2>&1
rc=$?
check "ALTER EXTENSION eightms UPDATE succeeds ($(grep -m1 ERROR "$W/update.out"))" test $rc -eq 0
check "and reports $NEW_VERSION" test "$(q "SELECT extversion FROM pg_extension WHERE extname = 'eightms'")" = "$NEW_VERSION"

# The catalog against a fresh install beside it.  The upgraded database's
# is read first: the roles are the cluster's, and the fresh install would
# create any the update missed.
psql_db "$DB" -f "$REPO/test/upgrade/catalog.sql" > "$W/catalog-upgraded.txt" 2> "$W/catalog-upgraded.err"
check "the upgraded catalog is read ($W/catalog-upgraded.err)" test $? -eq 0 -a ! -s "$W/catalog-upgraded.err"
q "CREATE DATABASE $FRESH" postgres >/dev/null
q "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE" "$FRESH" >/dev/null
psql_db "$FRESH" -f "$REPO/test/upgrade/catalog.sql" > "$W/catalog-fresh.txt" 2> "$W/catalog-fresh.err"
check "a fresh install's catalog is read ($W/catalog-fresh.err)" test $? -eq 0 -a ! -s "$W/catalog-fresh.err"
for category in extension members schemas relations columns constraints indexes policies triggers \
	functions sequences types grants comments roles registry; do
	grep -P "^$category\t" "$W/catalog-upgraded.txt" > "$W/$category.upgraded"
	grep -P "^$category\t" "$W/catalog-fresh.txt" > "$W/$category.fresh"
	diff -U0 --label "after ALTER EXTENSION UPDATE" --label "after CREATE EXTENSION" \
		"$W/$category.upgraded" "$W/$category.fresh" > "$W/$category.diff"
	# Each category has lines (but types: eightms has none of its own yet).
	check "catalog: $category after the update equal a fresh install's ($(grep -c . "$W/$category.fresh") lines)" \
		test ! -s "$W/$category.diff" -a \( -s "$W/$category.fresh" -o "$category" = types \)
	[ -s "$W/$category.diff" ] && sed 's/^/#   /' "$W/$category.diff" | head -n 60
done

# The data: every row still there, and still working.
count_rows > "$W/counts-after.txt"
missing=$(comm -23 <(sort "$W/counts-before.txt") <(sort "$W/counts-after.txt") | tr '\n' ' ')
check "every table has as many rows as before the update (differ: ${missing:-none})" \
	test -s "$W/counts-after.txt" -a -z "$missing"
# This tree's contract from here on.
q "DROP SCHEMA pgrst CASCADE" >/dev/null 2>&1
psql_db "$DB" -f "$REPO/test/helpers.sql" > "$W/helpers.out" 2>&1
check "this tree's test/helpers.sql loads ($W/helpers.out)" test $? -eq 0
acct=$(fixture acct)
other=$(fixture other)
phone=$(fixture phone)
token=$(fixture phone_token)
queued=$(fixture queued)
# As one request each, committed, as PostgREST would make them.
request() {
	psql_db "$DB" -v acct="$acct" -v other="$other" -v token="$token" 2>&1 <<SQL
BEGIN;
$1
COMMIT;
SQL
}
claimed=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM eightms_api.claim_messages(10)
 WHERE message_id::text = ANY (string_to_array('$queued', ','));")
check "the phone's token from before the update claims the messages queued before it" \
	test "$claimed" = "$(tr ',' '\n' <<< "$queued" | sort | paste -sd,)"
reported=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(accepted::text, ',') FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', 'sent')) FROM unnest(string_to_array('$queued', ',')) id));")
check "and reports them sent ($reported)" test "$reported" = "true,true"
check "they are sent" test "$(q "SELECT string_agg(status, ',') FROM eightms.message WHERE message_id::text = ANY (string_to_array('$queued', ','))")" = "sent,sent"
read_back=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT count(*) FROM eightms_api.conversation_messages(
	(SELECT conversation_id FROM eightms_api.conversations WHERE peer_number = '+12125550101'));")
check "the account reads a conversation's messages from before the update ($read_back)" test "$read_back" = 2
hidden=$(request "SELECT pgrst.as_user('xavier', :'other') \\g /dev/null
SELECT count(*) FROM eightms_api.messages WHERE account_id = :'acct';")
check "the other account still sees none of them" test "$hidden" = 0
refused=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT status || ' ' || error_code FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 0199\", \"body\": \"Back?\"}]');")
check "the number that texted STOP is still refused ($refused)" test "$refused" = "refused E8O01"
signed_out=$(request "SELECT pgrst.as_user('victor', :'acct', 'victor@example.test', '{\"session_id\": \"victor-sess-1\"}');")
check "the session signed out before the update stays signed out" grep -q 'this session has been signed out' <<< "$signed_out"
check "the sealed gateway password opens" test "$(q "SELECT eightms.unseal(gateway_password, 'phone:' || account_id || ':' || phone_id || ':gateway_password')
	FROM eightms.phone WHERE phone_id = '$phone'")" = gw-pass-from-0.1.0
# The request left queued, due now: the new worker sends it with the
# header sealed before the update.
bridge_id=$(fixture bridge_queued)
q "BEGIN; UPDATE eightms.http_request SET next_attempt_at = now() WHERE id = $bridge_id; SELECT eightms.bridge_wake_at_commit(); COMMIT" >/dev/null
for _ in $(seq 1 300); do
	[ "$(q "SELECT state FROM eightms.http_request WHERE id = $bridge_id")" = queued ] || break
	sleep 0.1
done
check "the bridge request queued before the update is sent after it, with its sealed header" \
	test "$(q "SELECT state || ' ' || (convert_from(response_body, 'UTF8')::jsonb -> 'headers' ->> 'authorization')
				 FROM eightms.http_request WHERE id = $bridge_id")" = "done Bearer crm-token-from-0.1.0"

finish
