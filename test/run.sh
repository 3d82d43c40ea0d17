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
#
# The tiers, in the order they run (`--tier NAME`, repeatable, runs only
# those; each tier's own command is named below):
#   regress    pg_regress: exact output of C functions (make installcheck-regress)
#   pgtap      pgTAP suites through the PostgREST contract (pg_prove)
#   isolation  races between sessions (make installcheck-isolation)
#   extra      bash harnesses in test/extra.d, against the suite's cluster
#   tap        TAP tests on PostgreSQL::Test::Cluster, each with servers of
#              its own: crashes, key files and the environment, dump and
#              restore, pg_upgrade, pg_cron, the update from the last
#              release (make installcheck-tap)
#   engine     the engines outside the server (make engine-check)
#   citus      the pgTAP suites again on a Citus coordinator and two
#              workers, distributed (test/citus.sh)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_TIERS=(regress pgtap isolation extra tap engine citus)
TIERS=()
while [ $# -gt 0 ]; do
	case $1 in
		--tier) [ $# -ge 2 ] || die "--tier needs a name (${ALL_TIERS[*]})"
			[[ " ${ALL_TIERS[*]} " == *" $2 "* ]] || die "no tier $2 (${ALL_TIERS[*]})"
			TIERS+=("$2"); shift 2 ;;
		--tier=*) set -- --tier "${1#--tier=}" "${@:2}" ;;
		*) die "usage: bash test/run.sh [--tier NAME]... (${ALL_TIERS[*]})" ;;
	esac
done
[ ${#TIERS[@]} -gt 0 ] || TIERS=("${ALL_TIERS[@]}")
wants() { [[ " ${TIERS[*]} " == *" $1 "* ]]; }

T=${EIGHTMS_TEST_DIR:-/tmp/eightms-test}
PORT=${EIGHTMS_TEST_PORT:-54331}
DB=eightms_test
ROOT=$T/root
DATA=$T/data
SOCK=$T/run
LOG=$T/server.log
SECRETS=$T/secrets.env

# pg_auto_failover (the monitor's extension and pg_autoctl) for the TAP
# test of automated failover, test/t/010_auto_failover.pl; only the tests
# need it, not test/up.sh's gateway.
ensure_packages postgresql-$PGVER-auto-failover pg-auto-failover-cli
build_extension

# Citus goes into the system tree before it is copied (test/citus.sh).
source "$REPO/test/citus.sh"
wants citus && citus_prepare

say "preparing a private PostgreSQL installation in $ROOT"
if [ -d "$T" ]; then
	# Every cluster a kept run left under $T (the suite's, Citus's, the
	# harnesses' own), before their directories go and their ports with them.
	while IFS= read -r pidfile; do
		PGCTL=$ROOT$PGBIN/pg_ctl stop_cluster "$(dirname "$pidfile")" || true
	done < <(find "$T" -maxdepth 4 -name postmaster.pid -size +0 2>/dev/null)
	PGCTL=$ROOT$PGBIN/pg_ctl citus_stop
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
	[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || { stop_cluster "$DATA"; citus_stop; }
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

# The test tiers' counts: each adds to passed and failed.
declare -A TIER_PASSED TIER_FAILED
tally() {
	TIER_PASSED[$1]=$(( ${TIER_PASSED[$1]:-0} + $2 )); TIER_FAILED[$1]=$(( ${TIER_FAILED[$1]:-0} + $3 ))
	passed=$((passed + $2)); failed=$((failed + $3))
}

# The last "N passed, N failed" line of a harness's output ($2) added to
# tier $1; a harness that failed ($3, its exit status) without one fails.
add_harness_counts() {
	local line
	# (grep finding nothing must not end the run: set -e and pipefail)
	line=$(printf '%s\n' "$2" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1 || true)
	if [ -n "$line" ]; then
		tally "$1" "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
	fi
	[ "$3" -ne 0 ] && [ -z "$line" ] && tally "$1" 0 1
	return 0
}

# pg_regress's output ($2) and its diffs ($3) added to tier $1: "test name
# ... ok" lines in 15, one per test.  A test without expected output ("...
# diff: …") fails too, and so does a run that tested nothing (the tester
# missing, a server it could not reach).
add_regress_counts() {
	local ok fail
	printf '%s\n' "$2"
	ok=$(printf '%s\n' "$2" | grep -cE '^(test )?[a-z0-9_]+ +\.\.\. ok' || true)
	fail=$(printf '%s\n' "$2" | grep -cE '^(test )?[a-z0-9_]+ +\.\.\. (FAILED|diff)' || true)
	[ -s "$3" ] && cat "$3"
	if [ "$ok" -eq 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	tally "$1" "$ok" "$fail"
}

# The TAP output of pg_prove or prove ($2) added to tier $1: each "ok N"
# passes, each "not ok N" fails.  A script that dies (an error outside an
# assertion) has no "not ok" line for the assertions it never ran: count
# each such script as a failure, and any other failed run ($3 its status)
# that shows none.
add_tap_counts() {
	local ok fail died
	# Show failures in full and successes as one line each.
	printf '%s\n' "$2" | grep -vE '^ok [0-9]+' || true
	ok=$(printf '%s\n' "$2" | grep -cE '^ok [0-9]+' || true)
	fail=$(printf '%s\n' "$2" | grep -cE '^not ok [0-9]+' || true)
	died=$(printf '%s\n' "$2" | grep -cE '^Dubious, test returned' || true)
	fail=$((fail + died))
	if [ "$3" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	tally "$1" "$ok" "$fail"
}

# The make targets of the tiers, against this installation and cluster.
tier_make() { make -C "$REPO" -s PG_CONFIG="$ROOT$PGBIN/pg_config" "$@"; }

# ---- pg_regress: C functions' exact output ------------------------------
# test/regress/sql in, the top-level expected/ to compare with (README).
if wants regress; then
	say "pg_regress: make installcheck-regress"
	set +e
	out=$(tier_make installcheck-regress 2>&1)
	set -e
	add_regress_counts regress "$out" "$REPO/test/regress/regression.diffs"
fi

# ---- pgTAP via pg_prove: behaviour -------------------------------------
if wants pgtap || wants extra; then
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
fi
# The pgTAP suites of directory $4 with pg_prove against the server at
# socket $2, port $3, counted into tier $1; the rest of the arguments are
# suites left out.
prove_pgtap() {
	local tier=$1 host=$2 port=$3 dir=$4 suites out rc
	shift 4
	mapfile -t suites < <(cd "$dir" && ls *.sql | sort | grep -vxF -f <(printf '%s\n' "$@" ""))
	say "$tier: pg_prove: ${#suites[@]} suites"
	set +e
	out=$(cd "$dir" && pg_prove --verbose --host "$host" --port "$port" \
		--username postgres --dbname "$DB" "${suites[@]}" 2>&1)
	rc=$?
	set -e
	add_tap_counts "$tier" "$out" "$rc"
}
if wants pgtap; then
	prove_pgtap pgtap "$SOCK" "$PORT" "$REPO/test/pgtap"
fi

# ---- isolation tester: races between sessions ----------------------------
# Specs in test/isolation/specs, their expected output in
# test/isolation/expected, in a database of their own (make
# isolation-prep).  Each permutation counts: one whose output is the
# expected one passes.
if wants isolation; then
	say "isolation: make installcheck-isolation"
	set +e
	out=$(tier_make installcheck-isolation 2>&1)
	set -e
	printf '%s\n' "$out"
	ISO=$REPO/test/isolation
	[ -s "$ISO/output_iso/regression.diffs" ] && cat "$ISO/output_iso/regression.diffs"
	read -r ok fail < <(python3 - "$ISO/specs" "$ISO/expected" "$ISO/output_iso/results" <<'PY'
import os, re, sys
specs, expected, results = sys.argv[1:]
ok = fail = 0
def blocks(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    return re.split(r'^(?=starting permutation:)', text, flags=re.M)
for spec in sorted(f[:-5] for f in os.listdir(specs) if f.endswith('.spec')):
    want = blocks(os.path.join(expected, spec + '.out'))
    got = blocks(os.path.join(results, spec + '.out'))
    if want is None or got is None:
        fail += 1
        continue
    good = sum(1 for w, g in zip(want[1:], got[1:]) if w == g)
    bad = max(len(want), len(got)) - 1 - good
    # A header that differs (the spec did not parse) fails the spec.
    if want[0] != got[0] and bad == 0:
        bad = 1
    ok += good
    fail += bad
print(ok, fail)
PY
)
	tally isolation "$ok" "$fail"
fi

# ---- extra harnesses: bash, against the suite's cluster ------------------
if wants extra; then
	for extra in "$REPO"/test/extra.d/*.sh; do
		[ -e "$extra" ] || continue
		say "extra: $(basename "$extra")"
		set +e
		out=$(bash "$extra" 2>&1)
		rc=$?
		set -e
		printf '%s\n' "$out"
		add_harness_counts extra "$out" "$rc"
	done
fi

# ---- TAP tests: servers of their own -------------------------------------
# PostgreSQL::Test::Cluster runs initdb and postgres, which refuse root: the
# tests run as postgres, from a copy of test/ (the clone may be closed to
# postgres), their clusters under $T/tap, with a copy of the clone's
# history (EIGHTMS_GIT_DIR) for the update from the last release
# (test/t/008_upgrade.pl; a shallow clone has too little and that test
# says so).  Their installation is $ROOT's, this tree's build installed.
if wants tap; then
	say "TAP: make installcheck-tap"
	mkdir -p "$T/tap/src"
	cp -r "$REPO/test" "$T/tap/src/"
	rm -rf "$T/tap/src/test/phone"
	git clone -q --bare "$REPO" "$T/tap/eightms.git" 2>/dev/null || say "no git history for the upgrade test"
	chown -R postgres:postgres "$T/tap"
	set +e
	out=$(EIGHTMS_GIT_DIR=$T/tap/eightms.git tier_make installcheck-tap TAP_RUN="runuser -u postgres --" TAP_TESTDIR="$T/tap" \
		TAP_SRCDIR="$T/tap/src" PROVE_FLAGS="-I test/t --verbose" 2>&1)
	rc=$?
	set -e
	add_tap_counts tap "$out" "$rc"
fi

# ---- the engines outside the server ---------------------------------------
if wants engine; then
	say "engine: make engine-check"
	set +e
	out=$(make -C "$REPO" -s engine-check ENGINE_BUILD="$T/engine" 2>&1)
	rc=$?
	set -e
	printf '%s\n' "$out"
	add_harness_counts engine "$out" "$rc"
fi

# ---- the Citus tier: the pgTAP suites on a distributed cluster -------------
if wants citus; then
	citus_tier
fi

for tier in "${ALL_TIERS[@]}"; do
	[ "$tier" = citus ] && [ -n "$CITUS_SKIP" ] && continue
	wants "$tier" && echo "# $tier: ${TIER_PASSED[$tier]:-0} passed, ${TIER_FAILED[$tier]:-0} failed"
done

# A backend that crashed (the crash tests' own kill -9 aside) fails the run.
for log in "$LOG" "$CT"/*.log; do
	[ -f "$log" ] || continue
	if grep -E 'was terminated by signal' "$log" | grep -qv 'signal 9: Killed'; then
		echo "the server log $log shows a crashed process:" >&2
		grep -E 'was terminated by signal' "$log" >&2
		failed=$((failed + 1))
	fi
done

# No key of the suite's key file and no JWT secret reached its server log
# (the TAP tests check their own servers' logs).
if grep -qF -f <(sed -n 's/^EIGHTMS_SEAL_KEYS=//p; s/^EIGHTMS_JWT_SECRET=//p' "$SECRETS" | tr ',' '\n' \
	| sed 's/^[0-9]*://' | grep .) "$LOG"; then
	echo "not ok - the server log holds a secret of $SECRETS" >&2
	failed=$((failed + 1))
else
	echo "ok - no secret of the key file is in the suite's server log"
	passed=$((passed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
