# bench/common.sh: a throwaway cluster for a benchmark, like the test suite's.
# Sourced by bench/*/run.sh after they set NAME and PORT.
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
# The ratios depend on the CPU (how well it predicts the phone engine's
# branches, how fast it runs the gateway against tpcb-like): say which ran.
printf '==> machine: %s (family %s, model %s), %s cores\n' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
	"$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
	"$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n1)" "$(nproc)"

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
	# BENCH_SETTINGS: more server settings, one "name = value" a line.
	[ -n "${BENCH_SETTINGS:-}" ] && printf '%s\n' "$BENCH_SETTINGS" >> "$T/data/eightms.conf"
	trap 'stop_cluster "$T/data"' EXIT
	start_cluster "$T/data" "$T/secrets.env" "$T/server.log"
	export PGHOST=$T/run PGPORT=$PORT PGUSER=postgres PATH=$T/root$PGBIN:$PATH
	command psql -X -q -d postgres -c "CREATE DATABASE $DB"
	command psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"
}

# An account created as a signed-in dashboard user would (company name
# $1), with four phones online and unpaced (as phones whose Android limit
# was lifted): sets ACCT and PHONES (in device_id order).
bench_account_with_phones() {
	read -r ACCT < <(command psql -X -At -q -d "$DB" -v name="$1" <<'SQL'
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign('{"role":"eightms_user","sub":"bench","email":"bench@example.test","email_verified":true}'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', '{"role":"eightms_user","sub":"bench","email":"bench@example.test","email_verified":true}', true) \g /dev/null
SELECT eightms_api.pre_request() \g /dev/null
SELECT account_id FROM eightms_api.create_account(:'name');
COMMIT;
SQL
)
	command psql -X -At -q -d "$DB" -c "INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
		SELECT '$ACCT', 'bench-' || i, NULL, now(), 80 FROM generate_series(1, 4) i"
	mapfile -t PHONES < <(command psql -X -At -q -d "$DB" -c "SELECT phone_id FROM eightms.phone WHERE account_id = '$ACCT' ORDER BY device_id")
}

# request.headers as PostgREST passes them (every header of the request,
# names in lower case) for a request with bearer token $1: the pre-request
# hook verifies the token itself.  JSON, for a SQL string literal.
pgrst_headers() {
	printf '{"host": "api.example.test", "user-agent": "okhttp/4.12.0", "accept": "application/json", "accept-encoding": "gzip", "content-type": "application/json", "prefer": "return=representation", "authorization": "Bearer %s"}' "$1"
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

# Instructions a single-user backend of the benchmark's cluster (stopped)
# executes for the statements $2...; $1 names the run (outputs and log in
# $T/callgrind).  CALLGRIND_OPTS: more valgrind options (a --toggle-collect);
# SINGLE_OPTS: more server settings (-c name=value).
single_user_instructions() {
	local out=$T/callgrind/out.$1 input=$T/callgrind/$1.sql
	mkdir -p "$T/callgrind"
	chown postgres "$T/callgrind"
	printf '%s\n' "${@:2}" > "$input"
	chmod 644 "$input"
	# $2 and $6 split into their options on purpose.
	as_postgres env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
		bash -c 'set -a; . "$1"; set +a; exec valgrind --tool=callgrind $2 --callgrind-out-file="$3" "$4" --single -D "$5" -c shared_preload_libraries=eightms $6 "$7" < "$8"' \
		_ "$T/secrets.env" "${CALLGRIND_OPTS:-}" "$out" "$T/root$PGBIN/postgres" "$T/data" "${SINGLE_OPTS:-}" "$DB" "$input" > "$T/callgrind/$1.log" 2>&1
	grep -q 'ERROR' "$T/callgrind/$1.log" && { grep -m3 'ERROR' "$T/callgrind/$1.log" >&2; die "a single-user run failed ($T/callgrind/$1.log)"; }
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$T/callgrind/$1.log"
}
