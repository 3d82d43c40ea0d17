#!/usr/bin/env bash
# bin/eightms-dsar end to end, as a login role granted eightms_dba, on an
# account populated through the API: each export validates against
# doc/dsar-export.schema.json (python3-jsonschema), erasures need
# --confirm and leave nothing of the subject, the log lists an overdue
# request, errors exit non-zero without quoting the subject, and nothing
# personal reaches stderr.  Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
ensure_packages python3-jsonschema
set +e
pass=0
fail=0
DB=eightms_dsar_cli
CLI=$REPO/bin/eightms-dsar
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
command psql -X -q -d postgres -c "CREATE DATABASE $DB"
command psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE" \
	-c "CREATE EXTENSION pgtap" >/dev/null
command psql -X -q -d "$DB" -f "$REPO/test/helpers.sql" >/dev/null
command psql -X -q -d postgres -c "DROP ROLE IF EXISTS dsar_operator" \
	-c "CREATE ROLE dsar_operator LOGIN IN ROLE eightms_dba"

# The account, through the API: an owner, an agent, a phone, a contact
# texted and answering, another contact.
ACCT=$(command psql -X -q -At -d "$DB" -v ON_ERROR_STOP=1 <<'SQL' | tail -n 1
BEGIN;
SELECT pgrst.as_user('cleo', NULL, 'cleo@example.test');
SELECT account_id AS acct FROM eightms_api.create_account('Cleo Cakes') \gset
SELECT token FROM eightms_api.invite_member('dan@example.test', 'agent') \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('dan', NULL, 'dan@example.test');
SELECT eightms_api.accept_invitation(:'token');
SELECT pgrst.as_anon();
SELECT phone_id AS ph FROM eightms_api.pair_phone(:'code', 'cleo-phone') \gset
SELECT pgrst.as_user('cleo', :'acct', 'cleo@example.test');
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550166", "body": "Cake ready"}, {"to": "+12125550188", "body": "Hi"}]');
SELECT pgrst.as_phone(:'acct', :'ph');
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550166", "body": "On my way", "device_message_id": "c-1"}]');
SELECT pgrst.reset();
COMMIT;
SELECT :'acct';
SQL
)

run() {
	# The CLI as the operator; stdout and stderr kept, the status returned.
	PGDATABASE=$DB PGUSER=dsar_operator "$CLI" "$@" >"$W/out" 2>>"$W/err"
}
valid() {
	# Debian's python3, which python3-jsonschema is for.
	/usr/bin/python3 - "$REPO/doc/dsar-export.schema.json" "$W/out" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft202012Validator)
PY
}
rows() { python3 -c "import json,sys; print(json.load(open('$W/out'))['data'].get('$1', []).__len__())"; }

check "--help exits 0" run --help
run
check "no command: exit 2" test $? -eq 2

run export --contact +12125550166 --account "$ACCT"
check "export of a contact in the account: exit 0" test $? -eq 0
check "it validates against doc/dsar-export.schema.json" valid
check "it holds the contact's two messages" test "$(rows message)" = 2

run export --member dan@example.test
check "export of a member across accounts validates" valid
check "it holds the membership" test "$(rows member)" = 1

run export --account "$ACCT"
check "export of the account validates" valid
check "it holds the account's three messages" test "$(rows message)" = 3

run export --contact +12125550166
check "export of a number across every account validates" valid

run erase --contact +12125550166 --account "$ACCT"
check "erase without --confirm: exit 2" test $? -eq 2
run erase --contact +12125550166 --account "$ACCT" --confirm
check "erase of the contact: exit 0" test $? -eq 0
run export --contact +12125550166 --account "$ACCT"
check "afterwards the export finds no message of it" test "$(rows message)" = 0
run export --contact +12125550188 --account "$ACCT"
check "the other contact keeps its message" test "$(rows message)" = 1

run erase --member dan@example.test --confirm
check "erase of the member: exit 0" test $? -eq 0
run export --member dan@example.test
check "afterwards nothing of the member" test "$(rows member)$(rows invitation)$(rows session)" = 000

run open erase --contact +12125550188 --account "$ACCT" --received 2000-01-01
check "open records a request received long ago" test $? -eq 0
run list --overdue
check "list --overdue shows it" python3 -c "import json; assert len(json.load(open('$W/out'))) == 1"
run list
check "list shows every request, subjects sealed" \
	python3 -c "import json; l = json.load(open('$W/out')); assert len(l) >= 8 and all('subject_sealed' not in r for r in l)"

: >"$W/err"
run export --contact 2125550177
check "a number that is not E.164: exit 1" test $? -eq 1
check "with the server's reason on stderr, not the number" \
	bash -c "grep -q 'E.164' '$W/err' && ! grep -q 2125550177 '$W/err'"
run export --account not-an-id
check "a malformed account id: exit 2" test $? -eq 2
PGPORT=1 run list
check "no server: exit 1" test $? -eq 1
check "nothing personal on stderr in any run" \
	bash -c "! grep -E '2125550166|2125550188|dan@example|cleo@example' '$W/err'"
check "make install puts the command in PostgreSQL's bindir" \
	test -x "$EIGHTMS_TEST_ROOT$("$PGBIN"/pg_config --bindir)/eightms-dsar"

command psql -X -q -d postgres -c "DROP DATABASE $DB" -c "DROP ROLE dsar_operator"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
