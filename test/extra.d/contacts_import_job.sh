#!/usr/bin/env bash
# A contacts import job of EIGHTMS_IMPORT_JOB_ROWS (default 1,000,000) CSV
# rows, sent as the dashboard sends it (doc/contacts.md, "Import jobs"):
# the file cut at line ends into chunks of at most 4 MB, each chunk one
# call in its own transaction, all from one session.  Checks the counts the
# job reports, the contacts written, the rejections kept (the first 1000,
# by line), that a chunk over 10 MB is refused with the hint to use chunks,
# and that the backend's private memory after the last chunk is within
# 64 MB of what it was after the first (memory bounded by the chunk, not
# the file).  Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
pass=0
fail=0
DB=eightms_import_job
ROWS=${EIGHTMS_IMPORT_JOB_ROWS:-1000000}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
command psql -X -q -d postgres -c "CREATE DATABASE $DB"
command psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE" >/dev/null
command psql -X -q -d "$DB" -f "$REPO/test/helpers.sql" >/dev/null

# The file: one line in 50 an invalid number.
awk -v n="$ROWS" 'BEGIN { print "Mobile,Name,Tags";
	for (i = 1; i <= n; i++) {
		if (i % 50 == 0) printf "555-%d,Bad %d,x\n", i % 100, i;
		else printf "+1 646 %03d %04d,\"Person, %d\",a|b\n", 200 + int(i / 10000), i % 10000, i } }' > "$W/file.csv"
split -C 4m -d -a 4 "$W/file.csv" "$W/chunk."
nchunks=$(ls "$W"/chunk.* | wc -l)

ACCT=$(command psql -X -q -At -d "$DB" -v ON_ERROR_STOP=1 <<'SQL' | tail -n 1
BEGIN;
SELECT pgrst.as_user('jo');
SELECT account_id AS acct FROM eightms_api.create_account('Jo Jobs', 'America/New_York') \gset
COMMIT;
SELECT :'acct';
SQL
)

# One session: start the job, then each chunk in its own transaction, the
# backend's RssAnon read after the first and the last.
{
	# A plan quadratic in the chunk (a nested loop over a CTE) once took
	# hours here: a chunk may take minutes on a loaded machine, not that.
	echo "SET statement_timeout = '10min';"
	echo "SELECT pg_backend_pid() AS pid \\gset"
	echo "\\setenv BACKEND_PID :pid"
	echo "BEGIN; SELECT pgrst.as_user('jo', '$ACCT') \\g /dev/null"
	echo "SELECT eightms_api.start_contact_import('{\"Mobile\": \"phone\", \"Name\": \"first_name\", \"Tags\": {\"field\": \"tags\", \"separator\": \"|\"}}') AS job \\gset"
	echo "COMMIT;"
	i=0
	for c in "$W"/chunk.*; do
		i=$((i + 1))
		echo "\\set chunk \`cat $c\`"
		echo "BEGIN; SELECT pgrst.as_user('jo', '$ACCT') \\g /dev/null"
		echo "SELECT rows_done FROM eightms_api.add_contact_import_chunk(:'job', $i, :'chunk') \\g /dev/null"
		echo "COMMIT;"
		if [ $i = 1 ] || [ $i = "$nchunks" ]; then
			echo "\\! grep RssAnon /proc/\$BACKEND_PID/status >> $W/rss"
		fi
	done
	echo "BEGIN; SELECT pgrst.as_user('jo', '$ACCT') \\g /dev/null"
	echo "SELECT state, chunks, rows_done, inserted, rejected, jsonb_array_length(rejections), rejections -> 0 ->> 'line', rejections -> -1 ->> 'line', rejections -> 0 ->> 'reason' FROM eightms_api.finish_contact_import(:'job');"
	echo "COMMIT;"
} > "$W/job.sql"
out=$(command psql -X -q -At -F ' ' -d "$DB" -v ON_ERROR_STOP=1 -f "$W/job.sql" 2>&1 | tail -n 1)
bad=$((ROWS / 50))
check "the job of $ROWS rows in $nchunks chunks ends done with its counts" \
	test "$out" = "done $nchunks $ROWS $((ROWS - bad)) $bad 1000 51 50001 invalid_phone"
check "the contacts are there" \
	test "$(command psql -X -At -d "$DB" -c "SELECT count(*) FROM eightms.contact WHERE account_id = '$ACCT'")" = "$((ROWS - bad))"
first=$(sed -n 1p "$W/rss" | awk '{print $2}')
last=$(tail -n 1 "$W/rss" | awk '{print $2}')
echo "# backend RssAnon after chunk 1: ${first} kB, after chunk $nchunks: ${last} kB"
check "the backend's memory after the last chunk is within 64 MB of after the first" \
	test -n "$first" -a -n "$last" -a "$((last - first))" -lt 65536

# A chunk over 10 MB is refused, and says to use smaller chunks.
{ echo "Mobile,Name,Tags"; yes "+16462001234,Name,a|b" | head -c 11000000; } > "$W/big.csv"
err=$(command psql -X -q -At -d "$DB" -v ON_ERROR_STOP=1 2>&1 <<SQL
\\set VERBOSITY verbose
\\set chunk \`cat $W/big.csv\`
BEGIN;
SELECT pgrst.as_user('jo', '$ACCT') \\g /dev/null
SELECT eightms_api.start_contact_import() AS job \\gset
SELECT * FROM eightms_api.add_contact_import_chunk(:'job', 1, :'chunk');
SQL
)
check "a chunk over 10 MB is refused (54000) with the hint to send chunks" \
	grep -q "54000.*at most 10 MB" <<<"$err"
check "and the hint names the job" grep -q "add_contact_import_chunk" <<<"$err"

command psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
