#!/usr/bin/env bash
# doc/privacy.md's tables of personal data and retention rules are the
# registry's (eightms.data_column, eightms.retention_rule) as a fresh
# install fills it: tools/privacy_doc.py renders them and finds no
# difference, and finds one when the registry changes.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
pass=0
fail=0
DB=eightms_privacy_doc
command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
command psql -X -q -d postgres -c "CREATE DATABASE $DB"
command psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"

check "doc/privacy.md's tables agree with the registry (tools/privacy_doc.py --check)" \
	env PGDATABASE=$DB python3 "$REPO/tools/privacy_doc.py" --check "$REPO/doc/privacy.md"
command psql -X -q -d "$DB" -c "UPDATE eightms.data_column SET class = 'content' WHERE table_name = 'phone' AND column_name = 'name'"
differs() { ! env PGDATABASE=$DB python3 "$REPO/tools/privacy_doc.py" --check "$REPO/doc/privacy.md" >/dev/null; }
check "and the check fails when a classification changes" differs

command psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
