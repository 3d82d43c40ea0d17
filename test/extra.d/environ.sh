#!/usr/bin/env bash
# The server's secrets leave no trace where other programs look, and
# statement text never reaches the server log (issue 17, findings 4 and 10).
#
# Two clusters of their own: one started with the secrets in its
# environment, one with a key file (eightms.secrets_file).  For each, the
# /proc/PID/environ of the postmaster and of every child (background
# processes, the bridge worker and its recorder, pg_cron's launcher, an open
# backend) is searched for the secret values themselves, while sealing and
# JWTs work.  PostgreSQL moves environ to a copy before libraries load, so
# clearing the copy alone left every value readable there.  A key file
# that group or others may read is refused.  With the logging settings
# test/lib.sh writes, a gateway password and secret header values (of calls
# that succeed and of calls that fail) appear nowhere in the log; with
# log_statement = all they do, and the server warns at start.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
W=$EIGHTMS_TEST_DIR/environ
BIN=$EIGHTMS_TEST_ROOT$PGBIN
INITDB=$BIN/initdb
PGCTL=$BIN/pg_ctl
DB=environ
SOCK=$W/run
PORT_ENV=$((EIGHTMS_TEST_PORT + 11))
PORT_FILE=$((EIGHTMS_TEST_PORT + 12))
export PGUSER=postgres
pass=0
fail=0
HELD=()

for d in "$W/env-data" "$W/file-data"; do
	[ -s "$d/postmaster.pid" ] && stop_cluster "$d"
done
rm -rf "$W"
mkdir -p "$W"
chown postgres "$W"
chmod 755 "$W"

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
psql_at() { local port=$1; shift; command psql -X -At -h "$SOCK" -p "$port" -d "$DB" "$@" 2>&1; }
q() { psql_at "$1" -v ON_ERROR_STOP=1 -c "$2"; }

# A secrets file of fresh values, key id $2; its values one per line in $1.values.
new_secrets() {
	local file=$1 id=$2
	local key jwt
	key=$(head -c 32 /dev/urandom | base64 -w0)
	jwt=$(head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_')
	printf '# test secrets\nEIGHTMS_SEAL_KEYS=%s:%s\nEIGHTMS_SEAL_ACTIVE_KEY=%s\nEIGHTMS_JWT_SECRET=%s\n' \
		"$id" "$key" "$id" "$jwt" > "$file"
	printf '%s\n' "$key" "$jwt" > "$file.values"
	chown postgres "$file"
	chmod 600 "$file"
}

# A cluster like the suite's, serving database $DB with the bridge.
new_cluster() {
	local data=$1 port=$2
	init_cluster "$data" "$port" "$SOCK" "$DB"
	echo "eightms.bridge_database = '$DB'" >> "$data/eightms.conf"
}

# Wait (up to 60 s) until the query $2 on port $1 prints t.
wait_for() {
	for _ in $(seq 1 120); do
		[ "$(q "$1" "$2")" = t ] && return 0
		sleep 0.5
	done
	return 1
}

# Create the database and extension, and wait for the bridge and its recorder.
prepare_database() {
	local port=$1
	command psql -X -q -h "$SOCK" -p "$port" -d postgres -c "CREATE DATABASE $DB" >/dev/null
	q "$port" "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE" >/dev/null
	wait_for "$port" "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type IN ('eightms bridge', 'eightms bridge recorder')"
}

# Open a backend that has sealed a value and stays connected; its pid is printed.
hold_backend() {
	local port=$1 name=$2
	psql_at "$port" -c "SET application_name = '$name'" -c "SELECT eightms.seal('held', 'held')" \
		-c "SELECT pg_sleep(600)" >/dev/null &
	HELD+=($!)
	wait_for "$port" "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$name' AND state = 'active'" \
		&& q "$port" "SELECT pid FROM pg_stat_activity WHERE application_name = '$name'"
}

# The postmaster of data dir $1 and every process it started.
server_pids() {
	local pm
	pm=$(head -n1 "$1/postmaster.pid")
	echo "$pm"
	pgrep -P "$pm"
}

# Of the server's processes, print those whose /proc/PID/environ holds any
# value listed in the files $2... ("leak:PID"), then how many were read.
leaking_pids() {
	local data=$1 pid n=0
	shift
	for pid in $(server_pids "$data"); do
		[ -r "/proc/$pid/environ" ] || continue
		n=$((n + 1))
		if tr '\0' '\n' < "/proc/$pid/environ" | grep -qF -f <(cat "$@"); then
			echo "leak:$pid"
		fi
	done
	echo "read:$n"
}

# "postmaster, checkpointer, ..." for the pids in $2 (cluster on port $1).
kinds_of() {
	local port=$1 pids=$2
	q "$port" "SELECT string_agg(coalesce(nullif(backend_type, ''), '?'), ', ' ORDER BY backend_type)
			   FROM pg_stat_activity WHERE pid = ANY ('{$(echo $pids | tr ' ' ,)}'::int[])"
}

# Every server process was read and none shows a secret value.
environ_clean() {
	local data=$1 what=$2 port=$3 out pids
	shift 3
	out=$(leaking_pids "$data" "$@")
	pids=$(server_pids "$data" | tr '\n' ' ')
	check "$what: /proc/PID/environ of the postmaster and all $(($(wc -w <<< "$pids") - 1)) children shows no secret value (${out//$'\n'/ })" \
		test "$out" = "read:$(wc -w <<< "$pids")"
}

# Include the bridge, its recorder and an open backend among the children.
children_include() {
	local data=$1 port=$2 held=$3 kids
	kids=$(pgrep -P "$(head -n1 "$data/postmaster.pid")" | tr '\n' ' ')
	local bridge recorder
	bridge=$(q "$port" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge'")
	recorder=$(q "$port" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge recorder'")
	check "the children read include the bridge ($bridge), its recorder ($recorder) and a backend that sealed ($held): $(kinds_of "$port" "$kids")" \
		bash -c 'for p in "${@:2}"; do [ -n "$p" ] && grep -qw "$p" <<< "$1" || exit 1; done' _ "$kids" "$bridge" "$recorder" "$held"
}

# A JWT signed in SQL verifies with openssl under the secret $2.
jwt_verifies_with() {
	local port=$1 secret=$2 token sig
	token=$(q "$port" "SELECT eightms.jwt_sign('{\"sub\":\"environ\"}', '5 minutes')")
	sig=$(printf '%s' "${token%.*}" | openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)
	[ -n "$token" ] && [ "$sig" = "${token##*.}" ]
}

# The SQLSTATE of statement $2 on port $1.
sqlstate_of() {
	psql_at "$1" -v VERBOSITY=verbose -c "$2" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -n1
}

# Sealing and JWTs work with the key $4 and the JWT secret (line 2 of $5)
# of the source $3, and the processes to read are there.
secrets_work() {
	local data=$1 port=$2 source=$3 id=$4 values=$5 held
	check "$source: seal and unseal work" \
		test "$(q "$port" "SELECT eightms.unseal(eightms.seal('hello', 'ctx'), 'ctx')")" = hello
	check "$source: the loaded key ring is key $id" \
		test "$(q "$port" "SELECT string_agg(key_id || ':' || active, ',') FROM eightms.seal_status()")" = "$id:true"
	check "$source: jwt_sign uses its JWT secret" jwt_verifies_with "$port" "$(sed -n 2p "$values")"
	held=$(hold_backend "$port" "environ-held-$port")
	children_include "$data" "$port" "$held"
}

cleanup() {
	for p in "${HELD[@]}"; do kill "$p" 2>/dev/null; done
	stop_cluster "$W/env-data"
	stop_cluster "$W/file-data"
}
trap cleanup EXIT

# ---- 1. Secrets in the environment: wiped from the original block too ----
new_secrets "$W/env.secrets" 4
new_cluster "$W/env-data" "$PORT_ENV"
start_cluster_with_env "$W/env-data" "$W/env.secrets" "$W/env.log"
prepare_database "$PORT_ENV"
secrets_work "$W/env-data" "$PORT_ENV" "from the environment" 4 "$W/env.secrets.values"
environ_clean "$W/env-data" "from the environment" "$PORT_ENV" "$W/env.secrets.values"
check "from the environment: the postmaster's /proc/PID/environ still lists the names, with empty values" \
	bash -c "tr '\\0' '\\n' < /proc/$(head -n1 "$W/env-data/postmaster.pid")/environ | grep -qx 'EIGHTMS_JWT_SECRET='"
mkdir -p "$W/out"; chown postgres "$W/out"
q "$PORT_ENV" "COPY (SELECT 1) TO PROGRAM 'env > $W/out/child.env'" >/dev/null
check "from the environment: programs the server runs inherit no EIGHTMS_ variable" \
	bash -c "test -s '$W/out/child.env' && ! grep -q '^EIGHTMS_' '$W/out/child.env'"
check "from the environment: no WARNING at start" bash -c "! grep -q WARNING '$W/env.log'"
stop_cluster "$W/env-data"

# ---- 2. A key file (wins over the environment, which is wiped all the same) ----
new_secrets "$W/key.secrets" 7
new_secrets "$W/decoy.env" 3
new_cluster "$W/file-data" "$PORT_FILE"
set_secrets_file "$W/file-data" "$W/key.secrets"
launch_cluster "$W/file-data" "$W/file-1.log" "$W/decoy.env"
prepare_database "$PORT_FILE"
secrets_work "$W/file-data" "$PORT_FILE" "from the key file (not key 3 of the environment)" 7 "$W/key.secrets.values"
environ_clean "$W/file-data" "from the key file, beside other values in the environment" "$PORT_FILE" \
	"$W/key.secrets.values" "$W/decoy.env.values"
check "with test/lib.sh's settings the server starts without a WARNING" bash -c "! grep -q WARNING '$W/file-1.log'"

# ---- 3. Statement text never reaches the log (finding 10) ----
command psql -X -q -h "$SOCK" -p "$PORT_FILE" -d "$DB" -f "$REPO/test/helpers.sql" >/dev/null
PW1=gw-pass-$(head -c 9 /dev/urandom | base64 | tr '+/' 'xy')
PW2=gw-pass-$(head -c 9 /dev/urandom | base64 | tr '+/' 'xy')
H1=hdr-$(head -c 9 /dev/urandom | base64 | tr '+/' 'xy')
H2=hdr-$(head -c 9 /dev/urandom | base64 | tr '+/' 'xy')
# Pair a phone as PostgREST would, and keep its device token.
token=$(psql_at "$PORT_FILE" -q -v ON_ERROR_STOP=1 <<'SQL'
BEGIN;
SELECT pgrst.as_user('environ-owner') \g /dev/null
SELECT account_id FROM eightms_api.create_account('Environ Co') \g /dev/null
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon() \g /dev/null
SELECT token FROM eightms_api.pair_phone(:'code', 'environ-phone');
COMMIT;
SQL
)
# $1: the password; prints what the heartbeat call gave, or its error.
heartbeat() {
	psql_at "$PORT_FILE" -q -v ON_ERROR_STOP=1 -v token="$token" -v pw="$1" -v battery="${2:-80}" <<'SQL'
BEGIN;
SELECT pgrst.as_token(:'token') \g /dev/null
SELECT eightms_api.heartbeat(:battery, 'wifi', true, '1.0', :'pw') IS NOT NULL;
COMMIT;
SQL
}
enqueue() {
	# $1 method, $2 header value
	q "$PORT_FILE" "SELECT eightms.http_enqueue('$1', 'http://127.0.0.1:9/environ',
						secret_headers => '{\"Authorization\": \"Bearer $2\"}', max_attempts => 1) > 0"
}
check "a heartbeat with a gateway password succeeds" test "$(heartbeat "$PW1")" = t
check "a heartbeat with a gateway password and a battery of 120% fails" \
	bash -c 'grep -q "ERROR" <<< "$1"' _ "$(heartbeat "$PW2" 120)"
check "http_enqueue with a secret header succeeds" test "$(enqueue GET "$H1")" = t
check "http_enqueue with a secret header and a bad method fails" \
	bash -c 'grep -q "ERROR" <<< "$1"' _ "$(enqueue 'NOT A METHOD' "$H2")"
# The bridge has tried the queued request (and logged what it logs).
wait_for "$PORT_FILE" "SELECT count(*) = 0 FROM eightms.http_request WHERE state NOT IN ('done', 'dead')" >/dev/null
check "the log has the two errors, without their statements" \
	bash -c "test \$(grep -c 'ERROR:' '$W/file-1.log') -ge 2 && ! grep -q 'STATEMENT:' '$W/file-1.log'"
for v in "$PW1" "$PW2" "$H1" "$H2"; do
	grep -qF -- "$v" "$W/file-1.log" && leaked="${leaked:-} $v"
done
check "neither password nor header value, of calls that succeeded or failed, is in the log" test -z "${leaked:-}"

# With log_statement = all the server warns at start, and the finding shows.
echo "log_statement = 'all'" >> "$W/file-data/eightms.conf"
launch_cluster "$W/file-data" "$W/file-2.log" /dev/null
check "with log_statement = all the server warns at start, naming the setting" \
	grep -q "WARNING:  eightms: the server's logging settings write SQL statement text.*" "$W/file-2.log"
check "and the warning names log_statement = 'all' and no secret" \
	bash -c "grep -q \"DETAIL:  Set: log_statement = 'all'.\" '$W/file-2.log' && ! grep -qF -f <(cat '$W/key.secrets.values') '$W/file-2.log'"
hb=$(heartbeat "$PW1")
check "(what the settings prevent: with log_statement = all a gateway password reaches the log)" \
	bash -c 'test "$1" = t && grep -qF -- "$2" "$3"' _ "$hb" "$PW1" "$W/file-2.log"
sed -i '$d' "$W/file-data/eightms.conf"
echo "log_statement = 'ddl'" >> "$W/file-data/eightms.conf"
launch_cluster "$W/file-data" "$W/file-3.log" /dev/null
check "log_statement = ddl draws no warning" bash -c "! grep -q WARNING '$W/file-3.log'"
sed -i '$d' "$W/file-data/eightms.conf"

# ---- 4. A key file that group or others may read is refused ----
chmod 644 "$W/key.secrets"
launch_cluster "$W/file-data" "$W/file-4.log" "$W/decoy.env"
check "a key file of mode 0644 is refused with a WARNING at start" \
	grep -q "WARNING:  eightms: the secrets file \"$W/key.secrets\" is not used: it has group or world access" "$W/file-4.log"
check "then seal() fails with 55000 (and does not fall back to the environment)" \
	test "$(sqlstate_of "$PORT_FILE" "SELECT eightms.seal('x', 'c')")" = 55000
check "and jwt_sign() fails with 55000" \
	test "$(sqlstate_of "$PORT_FILE" "SELECT eightms.jwt_sign('{}')")" = 55000
check "seal_status says the file was refused" \
	test "$(q "$PORT_FILE" "SELECT problem FROM eightms.seal_status()")" = "eightms.secrets_file was refused: it has group or world access"
environ_clean "$W/file-data" "with the key file refused" "$PORT_FILE" "$W/key.secrets.values" "$W/decoy.env.values"
# ---- 5. The file as a shell writes it; a malformed line is named by number only ----
key=$(sed -n 1p "$W/key.secrets.values")
jwt=$(sed -n 2p "$W/key.secrets.values")
printf '# keys\n\nexport EIGHTMS_SEAL_KEYS="7:%s"\nnot a line but %s\nEIGHTMS_JWT_SECRET='"'"'%s'"'"'\r\n' \
	"$key" "$jwt" "$jwt" > "$W/key.secrets"
chmod 600 "$W/key.secrets"
launch_cluster "$W/file-data" "$W/file-5.log" /dev/null
check "export, quotes and CRLF are read as a shell would: key 7 loads" \
	test "$(q "$PORT_FILE" "SELECT string_agg(key_id::text, ',') FROM eightms.seal_status()")" = 7
check "and so does the JWT secret" jwt_verifies_with "$PORT_FILE" "$jwt"
check "a malformed line draws a WARNING naming line 4 and not its text" \
	bash -c "grep -q 'WARNING:  eightms: line 4 of eightms.secrets_file is not of the form NAME=VALUE' '$W/file-5.log' && ! grep -q 'not a line' '$W/file-5.log'"
check "no secret value is in any of the logs" \
	bash -c "! grep -qF -f <(cat '$W/key.secrets.values' '$W/decoy.env.values' '$W/env.secrets.values') '$W'/*.log"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
