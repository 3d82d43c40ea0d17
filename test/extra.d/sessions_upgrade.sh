#!/usr/bin/env bash
# Sign-out moved from the per-account eightms.session to global tables in
# 0.2.0 (issue 17, finding 5).  A session signed out under 0.1.0 stays
# signed out after ALTER EXTENSION eightms UPDATE, in its account, in every
# other and with none selected; a session that was not stays usable.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
pass=0
fail=0
DB=eightms_sessions_upgrade
q() { command psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@" 2>&1; }

command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
command psql -X -q -d postgres -c "CREATE DATABASE $DB"
out=$(q -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms VERSION '0.1.0' CASCADE")
check "eightms 0.1.0 installs ($out)" test -z "$out"

# What 0.1.0's sign_out left behind: up-alice, in accounts A and B, signed
# out session s-old in A; s-live was never signed out.
out=$(q <<'SQL'
INSERT INTO eightms.account (account_id, company_name) VALUES
	('00000000-0000-0000-0000-00000000000a', 'Alpha'), ('00000000-0000-0000-0000-00000000000b', 'Beta');
INSERT INTO eightms.member (account_id, user_id, email, role)
SELECT a, 'up-alice', 'up-alice@example.test', 'owner'
  FROM unnest('{00000000-0000-0000-0000-00000000000a,00000000-0000-0000-0000-00000000000b}'::uuid[]) a;
INSERT INTO eightms.session (account_id, session_hash, user_id, revoked_at) VALUES
	('00000000-0000-0000-0000-00000000000a', sha256('s-old'), 'up-alice', now() - interval '1 hour'),
	('00000000-0000-0000-0000-00000000000a', sha256('s-live'), 'up-alice', NULL);
SQL
)
check "a signed-out session is recorded as 0.1.0 does ($out)" test -z "$out"

out=$(q -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" -c "ALTER EXTENSION eightms UPDATE" -c "SELECT extversion FROM pg_extension WHERE extname = 'eightms'")
check "ALTER EXTENSION eightms UPDATE reaches 0.2.0 ($out)" test "$out" = "0.2.0"
check "the revocation moved to eightms.session_revocation, with its time" test \
	"$(q -c "SELECT count(*) FROM eightms.session_revocation WHERE session_hash = sha256('s-old') AND revoked_at < now() - interval '59 minutes'")" = 1
check "eightms.session keeps both sessions" test "$(q -c "SELECT count(*) FROM eightms.session")" = 2
check "and no longer has revoked_at" test \
	"$(q -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'eightms.session'::regclass AND attname = 'revoked_at' AND NOT attisdropped")" = 0

q -f "$REPO/test/helpers.sql" >/dev/null
# One request of up-alice's with the session, the account (if any) and a
# call: prints "accepted" or the error's message.
request() {
	q -c "BEGIN" -c "SELECT pgrst.as_user('up-alice', $2, NULL, '{\"session_id\": \"$1\"}')" \
		-c "SELECT count(*) FROM eightms_api.my_accounts()" -c "ROLLBACK" >/dev/null 2>&1 && echo accepted && return
	q -c "BEGIN" -c "SELECT pgrst.as_user('up-alice', $2, NULL, '{\"session_id\": \"$1\"}')" 2>&1 \
		| sed -n 's/^ERROR:  //p'
}
A="'00000000-0000-0000-0000-00000000000a'"
B="'00000000-0000-0000-0000-00000000000b'"
check "the session signed out under 0.1.0 is refused in its account" \
	test "$(request s-old "$A")" = "this session has been signed out"
check "in the other account" test "$(request s-old "$B")" = "this session has been signed out"
check "and with no account selected" test "$(request s-old NULL)" = "this session has been signed out"
check "a session not signed out still works" test "$(request s-live "$A")" = accepted
check "a new session works with no account selected" test "$(request s-new NULL)" = accepted

command psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
