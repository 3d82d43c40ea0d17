# bench/common.sh: a throwaway cluster for a benchmark, like the test suite's.
# Sourced by bench/*/run.sh after they set NAME and PORT.
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"

bench_cluster() {
	T=${EIGHTMS_BENCH_DIR:-/tmp/eightms-bench-$NAME}
	DB=eightms_bench
	ensure_packages
	build_extension
	[ -s "$T/data/postmaster.pid" ] && PGCTL=$T/root$PGBIN/pg_ctl stop_cluster "$T/data"
	rm -rf "$T"; mkdir -p "$T/root/usr/lib/postgresql" "$T/root/usr/share/postgresql"; chmod 755 "$T"
	cp -a /usr/lib/postgresql/$PGVER "$T/root/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/$PGVER "$T/root/usr/share/postgresql/"
	make -C "$REPO" -s install DESTDIR="$T/root" PG_CONFIG=$PGBIN/pg_config >/dev/null
	INITDB=$T/root$PGBIN/initdb PGCTL=$T/root$PGBIN/pg_ctl
	ensure_secrets "$T/secrets.env"
	init_cluster "$T/data" "$PORT" "$T/run" "$DB"
	# The bridge worker serves the benchmark's database, as it would in a
	# deployment: pointed at a database that does not exist it would fail
	# and be restarted every few seconds while the benchmark runs.
	printf "shared_buffers = 1GB\nmax_parallel_workers_per_gather = 0\njit = off\neightms.bridge_database = '%s'\n" "$DB" >> "$T/data/eightms.conf"
	trap 'stop_cluster "$T/data"' EXIT
	start_cluster "$T/data" "$T/secrets.env" "$T/server.log"
	export PGHOST=$T/run PGPORT=$PORT PGUSER=postgres PATH=$T/root$PGBIN:$PATH
	command psql -X -q -d postgres -c "CREATE DATABASE $DB"
	command psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"
}

# Milliseconds a query takes, best of $2 runs (default 3).
best_ms() {
	local sql=$1 runs=${2:-3} best= ms
	for _ in $(seq 1 "$runs"); do
		ms=$(command psql -X -d "$DB" -At <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n1
\timing on
$sql
SQL
)
		if [ -z "$best" ] || [ "$(echo "$ms < $best" | bc -l)" = 1 ]; then best=$ms; fi
	done
	echo "$best"
}
