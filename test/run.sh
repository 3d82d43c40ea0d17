#!/usr/bin/env bash
# test/run.sh: build eightms and run the whole test suite against a
# throwaway cluster of its own.  Ends with "N passed, N failed".
#
# The cluster, and a private copy of the PostgreSQL installation that the
# extension is installed into, live under /tmp (CI's clone may sit where the
# postgres user cannot enter), so the suite never touches the cluster
# test/up.sh runs nor the system's installed extension.
#
#   EIGHTMS_TEST_DIR   where to put it all (default /tmp/eightms-test)
#   EIGHTMS_TEST_PORT  the port (default 54331)
#   EIGHTMS_TEST_KEEP  set to 1 to leave the cluster running afterwards
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T=${EIGHTMS_TEST_DIR:-/tmp/eightms-test}
PORT=${EIGHTMS_TEST_PORT:-54331}
DB=eightms_test
ROOT=$T/root
DATA=$T/data
SOCK=$T/run
LOG=$T/server.log
SECRETS=$T/secrets.env

ensure_packages
build_extension

say "preparing a private PostgreSQL installation in $ROOT"
if [ -d "$T" ]; then
	[ -s "$DATA/postmaster.pid" ] && PGCTL=$ROOT$PGBIN/pg_ctl stop_cluster "$DATA"
	rm -rf "$T"
fi
copy_postgres "$ROOT"
chmod 755 "$T"
make -C "$REPO" -s install DESTDIR="$ROOT" PG_CONFIG=$PGBIN/pg_config >/dev/null
INITDB=$ROOT$PGBIN/initdb
PGCTL=$ROOT$PGBIN/pg_ctl
export PATH=$ROOT$PGBIN:$PATH

ensure_secrets "$SECRETS"
init_test_cluster "$DATA" "$PORT" "$SOCK" "$DB"
CLEANUP_PIDS=()
cleanup() {
	for pid in "${CLEANUP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || stop_cluster "$DATA"
}
trap cleanup EXIT
say "starting the test cluster on port $PORT"
start_cluster "$DATA" "$SECRETS" "$LOG"

export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres
# For test/setup.d and test/extra.d scripts.
export EIGHTMS_TEST_DIR=$T EIGHTMS_TEST_PORT=$PORT EIGHTMS_TEST_DB=$DB EIGHTMS_TEST_ROOT=$ROOT \
	EIGHTMS_TEST_LOG=$LOG EIGHTMS_TEST_SECRETS=$SECRETS
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

passed=0
failed=0

# Adds the counts of a pg_regress or pg_isolation_regress run (its output
# directory, holding summary.txt) and shows its failures.  Both print
# "test name ... ok" lines in 15; count those directly.  A test without
# expected output ("... diff: …") fails too, and so does a run that tested
# nothing (the tester missing, a server it could not reach).
add_regress_counts() {
	local ok fail
	cat "$1/summary.txt"
	ok=$(grep -cE '^(test )?[a-z0-9_]+ +\.\.\. ok' "$1/summary.txt" || true)
	fail=$(grep -cE '^(test )?[a-z0-9_]+ +\.\.\. (FAILED|diff)' "$1/summary.txt" || true)
	[ -s "$1/regression.diffs" ] && cat "$1/regression.diffs"
	if [ "$ok" -eq 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	passed=$((passed + ok)); failed=$((failed + fail))
}

# ---- pg_regress: C functions' exact output ------------------------------
# pg_regress wants inputdir/sql and inputdir/expected; ours are test/regress
# and the top-level expected/.
RIN=$T/regress-in
ROUT=$T/regress-out
mkdir -p "$RIN" "$ROUT"
ln -s "$REPO/test/regress" "$RIN/sql"
ln -s "$REPO/expected" "$RIN/expected"
chown -R postgres:postgres "$ROUT"
mapfile -t REGRESS < <(cd "$REPO/test/regress" && ls *.sql 2>/dev/null | sed 's/\.sql$//' | sort)
if [ ${#REGRESS[@]} -gt 0 ]; then
	say "pg_regress: ${REGRESS[*]}"
	psql -d postgres -c "CREATE DATABASE eightms_regress"
	psql -d eightms_regress -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"
	set +e
	"$ROOT$PGBIN/../lib/pgxs/src/test/regress/pg_regress" \
		--use-existing --host="$SOCK" --port="$PORT" --user=postgres \
		--dbname=eightms_regress --bindir="$ROOT$PGBIN" \
		--inputdir="$RIN" --outputdir="$ROUT" "${REGRESS[@]}" > "$ROUT/summary.txt" 2>&1
	set -e
	add_regress_counts "$ROUT"
fi

# ---- pgTAP via pg_prove: behaviour -------------------------------------
say "creating database $DB with eightms, pg_cron and pgTAP"
psql -d postgres -c "CREATE DATABASE $DB"
# pgcrypto: the seal suite checks webhook signatures against its hmac().
psql -d "$DB" -c "CREATE EXTENSION eightms CASCADE" -c "CREATE EXTENSION pgtap" \
	-c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION pgcrypto"
psql -d "$DB" -f "$REPO/test/helpers.sql"

# Stand-in HTTP peers and other per-suite setup hook in here.
for hook in "$REPO"/test/setup.d/*.sh; do
	[ -e "$hook" ] || continue
	say "setup: $(basename "$hook")"
	# shellcheck source=/dev/null
	source "$hook"
done

mapfile -t SUITES < <(cd "$REPO/test/pgtap" && ls *.sql | sort)
say "pg_prove: ${#SUITES[@]} suites"
set +e
(cd "$REPO/test/pgtap" && pg_prove --verbose --host "$SOCK" --port "$PORT" \
	--username postgres --dbname "$DB" "${SUITES[@]}") > "$T/pg_prove.out" 2>&1
prove_rc=$?
set -e
# Show failures in full and successes as one line each.
grep -vE '^ok [0-9]+' "$T/pg_prove.out" || true
t_ok=$(grep -cE '^ok [0-9]+' "$T/pg_prove.out" || true)
t_fail=$(grep -cE '^not ok [0-9]+' "$T/pg_prove.out" || true)
# A suite that dies (an error outside an assertion) has no "not ok" line
# for the assertions it never ran: count each such suite as a failure, and
# any other failed run that shows none.
t_died=$(grep -cE '^Dubious, test returned' "$T/pg_prove.out" || true)
t_fail=$((t_fail + t_died))
if [ "$prove_rc" -ne 0 ] && [ "$t_fail" -eq 0 ]; then
	t_fail=1
fi
passed=$((passed + t_ok)); failed=$((failed + t_fail))

# ---- isolation tester: races between sessions ----------------------------
# Specs in test/isolation/specs, their expected output in
# test/isolation/expected; run against the test database (its pgrst.*
# helpers, and test/isolation/helpers.sql for the specs' accounts).
ISOIN=$T/isolation-in
ISOOUT=$T/isolation-out
mapfile -t ISOSPECS < <(cd "$REPO/test/isolation/specs" 2>/dev/null && ls *.spec 2>/dev/null | sed 's/\.spec$//' | sort)
if [ ${#ISOSPECS[@]} -gt 0 ]; then
	say "isolation: ${ISOSPECS[*]}"
	mkdir -p "$ISOIN" "$ISOOUT"
	ln -sfn "$REPO/test/isolation/specs" "$ISOIN/specs"
	ln -sfn "$REPO/test/isolation/expected" "$ISOIN/expected"
	chown -R postgres:postgres "$ISOOUT"
	psql -d "$DB" -f "$REPO/test/isolation/helpers.sql"
	set +e
	"$ROOT$PGBIN/../lib/pgxs/src/test/isolation/pg_isolation_regress" \
		--use-existing --host="$SOCK" --port="$PORT" --user=postgres \
		--dbname="$DB" --bindir="$ROOT$PGBIN" \
		--inputdir="$ISOIN" --outputdir="$ISOOUT" "${ISOSPECS[@]}" > "$ISOOUT/summary.txt" 2>&1
	set -e
	add_regress_counts "$ISOOUT"
fi

# Extra harnesses (differential, fuzz-corpus replay, ...) add their counts.
for extra in "$REPO"/test/extra.d/*.sh; do
	[ -e "$extra" ] || continue
	say "extra: $(basename "$extra")"
	set +e
	out=$(bash "$extra" 2>&1)
	rc=$?
	set -e
	printf '%s\n' "$out"
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
	if [ -n "$line" ]; then
		passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
		failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
	fi
	[ "$rc" -ne 0 ] && [ -z "$line" ] && failed=$((failed + 1))
done

# A backend that crashed (the crash tests' own kill -9 aside) fails the run.
if grep -E 'was terminated by signal' "$LOG" | grep -qv 'signal 9: Killed'; then
	echo "the server log shows a crashed process:" >&2
	grep -E 'was terminated by signal' "$LOG" >&2
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
