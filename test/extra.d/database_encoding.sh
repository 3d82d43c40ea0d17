#!/usr/bin/env bash
# eightms reads text as UTF-8 (SMS bodies in every script, emoji, full-width
# digits in phone numbers), and a database in another encoding cannot store
# an inbound SMS with an emoji: CREATE EXTENSION refuses such a database
# with SQLSTATE 0A000 and says what to do, and leaves nothing behind; a
# UTF8 database with another locale works.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
pass=0
fail=0
DBS=(eightms_enc_latin1 eightms_enc_sql_ascii eightms_enc_utf8_c)
for db in "${DBS[@]}"; do
	command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" 2>/dev/null
done
command psql -X -q -d postgres \
	-c "CREATE DATABASE eightms_enc_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
	-c "CREATE DATABASE eightms_enc_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
	-c "CREATE DATABASE eightms_enc_utf8_c ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"

for enc in latin1 sql_ascii; do
	out=$(command psql -X -q -d "eightms_enc_$enc" -v VERBOSITY=verbose -c "SET client_min_messages = warning" \
		-c "CREATE EXTENSION eightms CASCADE" 2>&1)
	check "a ${enc^^} database is refused with SQLSTATE 0A000" grep -q 'ERROR:  0A000: eightms needs a UTF8 database' <<< "$out"
	check "the refusal says how to make a UTF8 database" grep -q "HINT:  Create the database with ENCODING 'UTF8'" <<< "$out"
	check "and leaves no schema behind in the ${enc^^} database" test \
		"$(command psql -X -At -d "eightms_enc_$enc" -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eightms%'")" = 0
done
out=$(command psql -X -At -q -d eightms_enc_utf8_c -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE" \
	-c "SELECT encoding || ' ' || segments FROM eightms.sms_info('Привет 👋')" -c "SELECT eightms.e164('＋４４ ２０ ７９４６ ０９５８')" 2>&1)
check "a UTF8 database with the C locale works (Cyrillic and emoji in UCS-2, full-width digits read)" \
	test "$out" = "$(printf 'ucs2 1\n+442079460958')"

for db in "${DBS[@]}"; do
	command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" 2>/dev/null
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
