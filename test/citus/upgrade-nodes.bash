# test/citus/upgrade-nodes.bash: sourced by the Citus tier's upgrade
# harnesses (upgrade.sh, upgrade_distributed.sh), not run by the tier (it
# runs test/citus/*.sh).  Before sourcing: UT, the harness's directory,
# NODE_OFFSET, its coordinator's port from the tier's, and DB.
#
# test/citus.sh's nodes (citus_init_node, citus_psql, citus_stop), here
# under $UT on ports of their own, run from the private tree $UT/root.
CT0=${EIGHTMS_CITUS_DIR:?}
ROOT=${EIGHTMS_TEST_ROOT:-$(dirname "$CT0")/root}
pass=0
fail=0
T=$(dirname "$CT0")
PORT=$((${EIGHTMS_CITUS_PORT:?} - 1))
source "$REPO/test/citus.sh"
CT=$UT
CPORT=$((EIGHTMS_CITUS_PORT + NODE_OFFSET))
INITDB=$UT/root$PGBIN/initdb
PGCTL=$UT/root$PGBIN/pg_ctl
[ "${EIGHTMS_TEST_KEEP:-0}" = 1 ] || trap citus_stop EXIT

# psql on node $1 (0 the coordinator) in $DB, unaligned, errors on stdout.
q() {
	local i=$1
	shift
	citus_psql "$i" -At -d "$DB" "$@" 2>&1
}
# One request a transaction, committed, as PostgREST makes them; the psql
# variables acct, other and token are the harness's variables of those names.
request() {
	q 0 -v acct="$acct" -v other="$other" -v token="$token" <<SQL
BEGIN;
$1
COMMIT;
SQL
}
