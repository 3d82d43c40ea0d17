#!/usr/bin/env bash
# bench/contacts/run.sh: importing BENCH_ROWS (default 100,000) CSV rows
# through eightms_api.import_contacts_csv against COPY of the same file into
# an unconstrained table of text columns (issue 22, item 10).  The file:
# phone, first and last name, email, company, tags; the numbers in mixed
# formats (national with and without punctuation, international with
# spaces, British numbers), 5% of them invalid.  Each round times COPY
# (into an emptied table) and the import (into an emptied account, as a
# dashboard member through the pre-request hook), alternating; prints each
# round, the best of each and their ratio (target: within 3x).
#
#   BENCH_ROWS, BENCH_ROUNDS (5), EIGHTMS_BENCH_PORT
NAME=contacts
PORT=${EIGHTMS_BENCH_PORT:-54351}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ROWS=${BENCH_ROWS:-100000}
ROUNDS=${BENCH_ROUNDS:-5}
bench_cluster
bench_account_with_phones 'Import Co'
# The server writes and reads the file: a directory of its own.
mkdir -p "$T/files" && chown postgres: "$T/files"
F=$T/files/contacts.csv

# The file, written by the server (it reads it back the same way in both).
command psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -v rows="$ROWS" -v f="$F" <<'SQL' || exit 1
COPY (
	SELECT CASE WHEN i % 20 = 0 THEN '555-' || (i % 100)
				WHEN i % 5 = 1 THEN '(212) ' || (200 + i / 10000) || '-' || lpad((i % 10000)::text, 4, '0')
				WHEN i % 5 = 2 THEN '212' || (200 + i / 10000) || lpad((i % 10000)::text, 4, '0')
				WHEN i % 5 = 3 THEN '+1 212 ' || (200 + i / 10000) || ' ' || lpad((i % 10000)::text, 4, '0')
				WHEN i % 5 = 4 THEN '+44 20 7' || lpad((i % 1000000)::text, 7, '0')
				ELSE '+1 (646) ' || (200 + i / 10000) || '-' || lpad((i % 10000)::text, 4, '0') END AS phone,
		   'First' || i AS first_name, 'Last ' || i AS last_name, 'person' || i || '@example.com' AS email,
		   CASE WHEN i % 3 = 0 THEN 'Company ' || (i % 500) || ', Inc.' END AS company,
		   CASE WHEN i % 2 = 0 THEN 'vip|nyc' ELSE 'lead' END AS tags
	  FROM generate_series(1, :rows) i
) TO :'f' WITH (FORMAT csv, HEADER);
CREATE TABLE bench_copy (phone text, first_name text, last_name text, email text, company text, tags text);
SQL
echo "==> $ROWS rows, $(du -h "$F" | cut -f1) ($(command psql -X -At -d "$DB" -c "SELECT count(*) FILTER (WHERE eightms.try_e164(x, 'US', true) IS NULL) FROM eightms.csv_rows(pg_read_binary_file('$F')) r, LATERAL (SELECT r.fields[1] AS x) s WHERE r.line > 1") invalid numbers)"

copy_sql() {
	cat <<SQL
TRUNCATE bench_copy;
CHECKPOINT;
COPY bench_copy FROM '$F' WITH (FORMAT csv, HEADER);
SQL
}
import_sql() {
	cat <<SQL
DELETE FROM eightms.contact WHERE account_id = '$ACCT';
VACUUM eightms.contact;
CHECKPOINT;
CREATE TEMP TABLE f AS SELECT pg_read_file('$F') AS csv;
GRANT SELECT ON f TO eightms_user;
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign('{"role":"eightms_user","sub":"bench","email":"bench@example.test","email_verified":true}'), 'x-eightms-account', '$ACCT')::text, true),
	   set_config('role', 'eightms_user', true) \\g /dev/null
SELECT eightms_api.pre_request() \\g /dev/null
SELECT count(*) FROM f, eightms_api.import_contacts_csv(f.csv) i \\g /dev/null
COMMIT;
SQL
}
# Milliseconds of the last $2 timed statements of $1: COPY alone, the
# import with its COMMIT.
ms_of() {
	command psql -X -d "$DB" -At -v ON_ERROR_STOP=1 <<SQL | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n"$2" | paste -sd+ | bc -l
\\timing on
$1
SQL
}
best_copy=; best_import=
for r in $(seq 1 "$ROUNDS"); do
	c=$(ms_of "$(copy_sql)" 1); i=$(ms_of "$(import_sql)" 2)
	printf 'round %d: COPY %.0f ms, import_contacts_csv %.0f ms, ratio %.2f\n' "$r" "$c" "$i" "$(echo "$i / $c" | bc -l)"
	if [ -z "$best_copy" ] || [ "$(echo "$c < $best_copy" | bc -l)" = 1 ]; then best_copy=$c; fi
	if [ -z "$best_import" ] || [ "$(echo "$i < $best_import" | bc -l)" = 1 ]; then best_import=$i; fi
done
command psql -X -At -d "$DB" -c "SELECT 'contacts imported: ' || count(*) FROM eightms.contact WHERE account_id = '$ACCT'"
printf 'best: COPY %.0f ms, import_contacts_csv %.0f ms: ratio %.2f (target <= 3)\n' "$best_copy" "$best_import" \
	"$(echo "$best_import / $best_copy" | bc -l)"
