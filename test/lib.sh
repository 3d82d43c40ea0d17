# test/lib.sh: shared by test/up.sh and test/run.sh.  Sourced, not run.
#
# Both commands run as root on a fresh Debian 12 machine: they install what
# they need with apt-get (only what is missing, so a second run is quick) and
# run PostgreSQL as the "postgres" user, since it refuses to run as root.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGVER=15
PGBIN=/usr/lib/postgresql/$PGVER/bin

# Debian packages the build, the cluster and the tests need.
EIGHTMS_PACKAGES=(
	postgresql-$PGVER postgresql-server-dev-$PGVER postgresql-$PGVER-cron
	postgresql-$PGVER-pgtap libtap-parser-sourcehandler-pgtap-perl
	libcurl4-openssl-dev libssl-dev build-essential pkg-config ca-certificates
	openssl libphonenumber-dev clang nginx-light procps bc python3 python3-cryptography
	# PostgreSQL::Test::Cluster (the TAP tier) runs its commands with IPC::Run.
	libipc-run-perl
)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
	local missing=() p
	for p in "${EIGHTMS_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
			|| missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root so they can be installed"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Debian's postgresql-common would create and start a "main" cluster on
	# port 5432 that nothing here uses: tell it not to.
	mkdir -p /etc/postgresql-common
	if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
		echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build the extension with the server's PGXS.  Warnings are errors here
# (WERROR=1), as in CI; a plain `make` only shows them.
build_extension() {
	say "building eightms"
	make -C "$REPO" -s -j2 WERROR=1 PG_CONFIG=$PGBIN/pg_config >/dev/null
}

# From / so that a working directory postgres cannot enter is no bother.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# Can the postgres user reach (and create files in) a directory?
postgres_can_use() {
	as_postgres test -x "$1" -a -w "$1" 2>/dev/null
}

# Secrets the server reads from its key file (eightms.secrets_file), generated
# once: the seal key ring (AES-256-GCM keys, "id:base64") and the HS256 JWT
# secret PostgREST is given too.  A 0600 file owned by postgres beside the
# cluster (the server refuses any other), never in a table or GUC.
ensure_secrets() {
	local file=$1
	if [ ! -s "$file" ]; then
		say "generating the server's secrets into $file"
		(
			umask 077
			echo "# eightms server secrets, generated $(date -u +%FT%TZ). Keep this file private."
			echo "EIGHTMS_SEAL_KEYS=1:$(head -c 32 /dev/urandom | base64 -w0)"
			echo "EIGHTMS_SEAL_ACTIVE_KEY=1"
			echo "EIGHTMS_JWT_SECRET=$(head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_')"
		) > "$file.new"
		chmod 600 "$file.new"
		mv "$file.new" "$file"
	fi
	chown postgres:postgres "$file"
	chmod 600 "$file"
}

# initdb a cluster (once) and write the eightms settings into it.
# $1 data dir, $2 port, $3 socket dir, $4 database name for pg_cron
init_cluster() {
	local data=$1 port=$2 sockdir=$3 cron_db=$4
	mkdir -p "$sockdir"
	chown postgres:postgres "$sockdir"
	if [ ! -s "$data/PG_VERSION" ]; then
		mkdir -p "$data"
		chown postgres:postgres "$data"
		chmod 700 "$data"
		as_postgres "$INITDB" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
			--auth-local=trust --auth-host=scram-sha-256 >/dev/null
		echo "include_if_exists = 'eightms.conf'" >> "$data/postgresql.conf"
	fi
	cat > "$data/eightms.conf" <<CONF
# Written by eightms's test/lib.sh on every start; edit postgresql.conf for
# settings of your own (later lines win).
port = $port
listen_addresses = 'localhost'
unix_socket_directories = '$sockdir'
shared_preload_libraries = 'pg_cron,eightms'
cron.database_name = '$cron_db'
# Jobs in background workers: over a connection to localhost, which asks
# for a password here, every run failed ("connection failed").
cron.use_background_workers = on
max_worker_processes = 16
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
# Statement text carries the arguments of calls, gateway passwords and
# secret header values among them: never log it, not even for statements
# that fail (doc/operations.md, Logging).
log_statement = 'none'
log_min_duration_statement = -1
log_min_duration_sample = -1
log_transaction_sample_rate = 0
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
log_min_error_statement = panic
CONF
	chown postgres:postgres "$data/eightms.conf"
}

# A private copy of the PostgreSQL installation under $1, for test clusters:
# PostgreSQL finds its share and lib directories relative to its binaries,
# so a copy of the tree is a complete installation of its own, which
# `make install DESTDIR=$1` installs the extension into.  With the server's
# headers, its pg_config builds extensions too (the TAP tests build a
# release into a copy of it: test/t/EightmsTest.pm, private_tree).
copy_postgres() {
	mkdir -p "$1/usr/lib/postgresql" "$1/usr/share/postgresql" "$1/usr/include"
	cp -a /usr/lib/postgresql/$PGVER "$1/usr/lib/postgresql/"
	cp -a /usr/share/postgresql/$PGVER "$1/usr/share/postgresql/"
	cp -a /usr/include/postgresql "$1/usr/include/"
}

# init_cluster for a test cluster: the bridge serves database $4 and may
# reach the stand-in HTTP peer on 127.0.0.1; short retry delays keep the
# tests quick.
init_test_cluster() {
	init_cluster "$@"
	cat >> "$1/eightms.conf" <<CONF
eightms.bridge_database = '$4'
eightms.bridge_allow_private_addresses = on
eightms.bridge_retry_base = 50ms
eightms.bridge_retry_max = 2s
CONF
}

# Start the cluster, which reads its secrets from the key file $2 (restart
# if running, so that a newly installed library is loaded).
start_cluster() {
	local data=$1 secrets=$2 log=$3
	set_secrets_file "$data" "$secrets"
	launch_cluster "$data" "$log" /dev/null
}

# The same with the secrets in the server's environment instead, the other
# way eightms reads them (test/t/006_environ.pl checks it in a node of its own).
start_cluster_with_env() {
	local data=$1 secrets=$2 log=$3
	set_secrets_file "$data" ""
	launch_cluster "$data" "$log" "$secrets"
}

# Name the key file in the cluster's eightms.conf (none when $2 is empty).
set_secrets_file() {
	local data=$1 secrets=$2
	sed -i '/^eightms\.secrets_file/d' "$data/eightms.conf"
	[ -z "$secrets" ] || echo "eightms.secrets_file = '$secrets'" >> "$data/eightms.conf"
	chown postgres:postgres "$data/eightms.conf"
}

# (Re)start the server with the variables of the file $3 in its environment.
launch_cluster() {
	local data=$1 log=$2 env=$3
	touch "$log"; chown postgres:postgres "$log"
	if as_postgres "$PGCTL" -D "$data" status >/dev/null 2>&1; then
		as_postgres "$PGCTL" -D "$data" -m fast -w stop >/dev/null
	fi
	# A clean environment: nothing of the caller's reaches the server.
	as_postgres env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
		bash -c 'set -a; . "$1"; set +a; exec "$2" -D "$3" -l "$4" -w -t 60 start' \
		_ "$env" "$PGCTL" "$data" "$log" >/dev/null \
		|| { tail -n 30 "$log" >&2; die "the server did not start (log: $log)"; }
}

stop_cluster() {
	local data=$1
	if as_postgres "$PGCTL" -D "$data" status >/dev/null 2>&1; then
		as_postgres "$PGCTL" -D "$data" -m fast -w stop >/dev/null || true
	fi
}

# For test/extra.d harnesses: one check, printed as "ok - what" or "not ok -
# what" and counted in pass and fail (each harness starts them at 0 and ends
# with "$pass passed, $fail failed").  The rest of the words are the test.
check() {
	local what=$1
	shift
	if "$@"; then
		echo "ok - $what"
		pass=$((pass + 1))
	else
		echo "not ok - $what"
		fail=$((fail + 1))
	fi
}
