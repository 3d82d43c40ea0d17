# test/citus.sh: the Citus tier of test/run.sh.  Sourced by it, not run.
#
# A coordinator and two workers on 127.0.0.1 under $T/citus, each with
# citus, pg_cron and eightms preloaded (citus first, as it requires) and the
# suite's key file; the workers added to the coordinator; eightms created
# there (Citus creates it on the workers) and distributed with
# eightms.distribute(); then the same pgTAP suites as the pgtap tier,
# through the PostgREST contract, against the coordinator, and what only a
# cluster shows: the pgTAP files (test/citus/*.sql) and harnesses
# (test/citus/*.sh, e.g. the bridge's exactly-once check) of test/citus.
#
#   EIGHTMS_CITUS_PORT  the coordinator's port (default: the suite's + 1);
#                       the workers take the next two
#
# Kept with EIGHTMS_TEST_KEEP=1, a suite runs again against it alone:
#   pg_prove --host $T/citus/run --port <coordinator> -U postgres -d eightms_test test/pgtap/50_gateway.sql

# Suites left out of this tier, as "file: reason" lines, each a known
# limitation on Citus (doc/scale-out.md, "Known limitations"); the tier
# prints them.  None now: every pgTAP suite runs on the cluster.  No suite
# is single-server by nature: the catalog guards (00_guards.sql) read the
# coordinator's catalog, which holds the extension as one server does.
CITUS_EXCLUDED=(
)

CITUS_SKIP=""
CITUS_BUILD=$REPO/../shared/citus/build.sh

# Before the private tree is copied: Citus in the system tree (the build
# script skips when it is there already), or the reason the tier skips.
citus_prepare() {
	local pkglib
	pkglib=$($PGBIN/pg_config --pkglibdir)
	if [ -f "$CITUS_BUILD" ]; then
		if [ "$(id -u)" -eq 0 ]; then
			say "citus: $(bash "$CITUS_BUILD" 2>&1 | tail -n 1)"
		elif [ ! -f "$pkglib/citus.so" ]; then
			CITUS_SKIP="Citus is not installed and $CITUS_BUILD needs root"
		fi
	fi
	if [ -z "$CITUS_SKIP" ] && [ ! -f "$pkglib/citus.so" ]; then
		CITUS_SKIP="Citus is not installed in $pkglib and there is no $CITUS_BUILD to build it"
	fi
	return 0
}

CT=$T/citus
CPORT=${EIGHTMS_CITUS_PORT:-$((PORT + 1))}
CITUS_NODES=(coordinator worker1 worker2)

citus_port() { echo $((CPORT + $1)); }

# One node: test/lib.sh's test cluster, and what Citus needs on top.  The
# nodes reach each other over 127.0.0.1, as the caller's role (the API
# roles too: "Citus connects as the current role"), trusted on loopback
# only here, in a throwaway cluster.
citus_init_node() {
	local i=$1 name=${CITUS_NODES[$1]} port
	port=$(citus_port "$i")
	init_test_cluster "$CT/$name" "$port" "$CT/run" "$DB"
	sed -i "s/^listen_addresses = .*/listen_addresses = '127.0.0.1'/" "$CT/$name/eightms.conf"
	cat >> "$CT/$name/eightms.conf" <<CONF
# The Citus tier (test/citus.sh): citus must come first.
shared_preload_libraries = 'citus,pg_cron,eightms'
max_worker_processes = 32
max_connections = 200
# Claims re-issued by the pre-request hook reach the shards (doc/operations.md).
citus.propagate_set_commands = 'local'
citus.shard_count = 8
# A role made LOGIN on a worker stays that worker's own.
citus.enable_alter_role_propagation = off
CONF
	if ! grep -q '^host all all 127.0.0.1/32 trust' "$CT/$name/pg_hba.conf"; then
		sed -i '1i host all all 127.0.0.1/32 trust' "$CT/$name/pg_hba.conf"
	fi
	chown postgres:postgres "$CT/$name/eightms.conf"
}

citus_psql() {
	local i=$1
	shift
	command psql -X -q -v ON_ERROR_STOP=1 -h "$CT/run" -p "$(citus_port "$i")" -U postgres "$@"
}

citus_stop() {
	local name
	for name in "${CITUS_NODES[@]}"; do
		[ -d "$CT/$name" ] && stop_cluster "$CT/$name"
	done
	return 0
}

# Database $1 on the three nodes (running), with Citus, the workers added
# to the coordinator.
citus_database() {
	local db=$1 i
	for i in 0 1 2; do
		citus_psql "$i" -d postgres -c "CREATE DATABASE $db"
		citus_psql "$i" -d "$db" -c "CREATE EXTENSION citus"
	done
	citus_psql 0 -d "$db" -c "SELECT citus_set_coordinator_host('127.0.0.1', $(citus_port 0))" \
		-c "SELECT citus_add_node('127.0.0.1', $(citus_port 1))" \
		-c "SELECT citus_add_node('127.0.0.1', $(citus_port 2))" >/dev/null
}

# Start the three nodes, add the workers, create and distribute eightms.
citus_cluster() {
	local i
	mkdir -p "$CT"
	chmod 755 "$CT"
	for i in 0 1 2; do
		citus_init_node "$i"
		start_cluster "$CT/${CITUS_NODES[$i]}" "$SECRETS" "$CT/${CITUS_NODES[$i]}.log"
	done
	citus_database "$DB"
	citus_psql 0 -d "$DB" -c "CREATE EXTENSION eightms CASCADE" -c "CREATE EXTENSION pgtap" \
		-c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION pgcrypto"
	# distribute() also lets the API roles log in on the workers, which
	# Citus connects to as the caller's role.
	citus_psql 0 -d "$DB" -c "SELECT * FROM eightms.distribute()"
	citus_psql 0 -d "$DB" -f "$REPO/test/helpers.sql" -f "$REPO/test/citus/requests/requests.sql"
}

# The tier: a line of its own in the summary, skipped with its reason.
citus_tier() {
	local out rc hook save_port=$PORT save_t=$T save_host=$PGHOST save_pgport=$PGPORT
	if [ -n "$CITUS_SKIP" ]; then
		say "citus: skipped: $CITUS_SKIP"
		echo "# citus: skipped: $CITUS_SKIP"
		return 0
	fi
	say "citus: a coordinator on port $CPORT and workers on $((CPORT + 1)) and $((CPORT + 2))"
	citus_stop
	rm -rf "$CT"
	set +e
	out=$(citus_cluster 2>&1)
	rc=$?
	set -e
	printf '%s\n' "$out"
	if [ "$rc" -ne 0 ]; then
		echo "not ok - the Citus cluster could not be set up"
		tally citus 0 1
		return 0
	fi

	# The stand-in HTTP peers, as for the pgtap tier, at ports of the
	# cluster's own (the coordinator's + 300), with their own request log.
	PORT=$((CPORT + 100)) T=$CT PGHOST=$CT/run PGPORT=$CPORT
	for hook in "$REPO"/test/setup.d/*.sh; do
		[ -e "$hook" ] || continue
		say "citus setup: $(basename "$hook")"
		# shellcheck source=/dev/null
		source "$hook"
	done
	PORT=$save_port T=$save_t PGHOST=$save_host PGPORT=$save_pgport

	# The suites as PostgREST drives them: a transaction per request
	# (test/citus/requests/transform.py), each from the tables as installed.
	python3 "$REPO/test/citus/requests/transform.py" "$REPO/test/pgtap" "$CT/suites"
	local x
	for x in "${CITUS_EXCLUDED[@]}"; do
		echo "# citus: left out (a known limitation, issue 20): $x"
	done
	prove_pgtap citus "$CT/run" "$CPORT" "$CT/suites" "${CITUS_EXCLUDED[@]%%:*}"
	if ! citus_psql 0 -d "$DB" -c "SELECT pgrst.clean_slate()" >/dev/null; then
		# (a crashed coordinator, say: the tier goes on and counts it)
		echo "not ok - the cluster's tables could not be emptied after the suites"
		tally citus 0 1
	fi

	# What only a cluster shows: pgTAP files and harnesses of test/citus.
	local f
	local -a own=()
	for f in "$REPO"/test/citus/*.sql; do
		[ -e "$f" ] && own+=("$f")
	done
	if [ ${#own[@]} -gt 0 ]; then
		say "citus: pg_prove: ${#own[@]} cluster suites"
		set +e
		out=$(pg_prove --verbose --host "$CT/run" --port "$CPORT" -U postgres -d "$DB" "${own[@]}" 2>&1)
		rc=$?
		set -e
		add_tap_counts citus "$out" "$rc"
	fi
	for f in "$REPO"/test/citus/*.sh; do
		[ -e "$f" ] || continue
		say "citus: $(basename "$f")"
		set +e
		out=$(EIGHTMS_CITUS_DIR=$CT EIGHTMS_CITUS_PORT=$CPORT bash "$f" 2>&1)
		rc=$?
		set -e
		printf '%s\n' "$out"
		add_harness_counts citus "$out" "$rc"
	done
}
