#!/usr/bin/env bash
# bench/rls: the cost of row-level security.  The same per-tenant queries
# run through pgbench as eightms_user under RLS (the policy supplies the
# account filter) and as a role that bypasses RLS with the filter written by
# hand, alternating, on one cluster in one run.  Prints TPS for both and the
# ratio; doc/architecture.md's target is RLS within 10% (ratio >= 0.90).
#
#   BENCH_SECONDS  seconds per pgbench run (default 10), BENCH_ROUNDS (3)
NAME=rls
PORT=${EIGHTMS_BENCH_PORT:-54341}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
bench_cluster

psql -X -q -d "$DB" -v ON_ERROR_STOP=1 <<'SQL'
-- 500 accounts with 400 members each (200,000 rows); the benchmark reads one
-- account's rows at a time, as dashboards do.
INSERT INTO eightms.account (account_id, company_name)
SELECT md5('acct' || a)::uuid, 'Company ' || a FROM generate_series(1, 500) a;
INSERT INTO eightms.member (account_id, user_id, email, role, created_at)
SELECT md5('acct' || a)::uuid, 'user-' || a || '-' || u, 'u' || u || '@c' || a || '.example', 'agent',
	   now() - u * interval '1 minute'
  FROM generate_series(1, 500) a, generate_series(1, 400) u;
VACUUM ANALYZE;
-- Each account's first member signs in with a token (its request.headers
-- as PostgREST passes them), made before the runs, as the client has it.
CREATE TABLE public.bench_token (a int PRIMARY KEY, claims text, headers text);
INSERT INTO public.bench_token
SELECT a, c::text, json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(c), 'accept', 'application/json')::text
  FROM generate_series(1, 500) a,
	   LATERAL (SELECT jsonb_build_object('role', 'eightms_user', 'sub', 'user-' || a || '-1',
										  'account_id', md5('acct' || a)::uuid) AS c) x;
VACUUM ANALYZE public.bench_token;
SQL

# Each transaction is a request as PostgREST makes it: role, claims and
# headers set, then the pre-request hook (which verifies the token and
# binds the account), then two typical queries: a count and the newest page
# of rows.  The baseline makes the same request, then switches to a role
# that bypasses RLS and filters by hand, so that the two differ only in
# row-level security.
cat > "$T/rls.sql" <<'SQL'
\set a random(1, 500)
BEGIN;
SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', t.claims, true), set_config('request.headers', t.headers, true) FROM public.bench_token t WHERE t.a = :a;
SELECT eightms_api.pre_request();
SELECT count(*) FROM eightms.member;
SELECT user_id, email FROM eightms.member ORDER BY account_id, user_id LIMIT 50;
COMMIT;
SQL
cat > "$T/hand.sql" <<'SQL'
\set a random(1, 500)
BEGIN;
SELECT set_config('role', 'eightms_user', true), set_config('request.jwt.claims', t.claims, true), set_config('request.headers', t.headers, true) FROM public.bench_token t WHERE t.a = :a;
SELECT eightms_api.pre_request();
SELECT set_config('role', 'eightms_dba', true);
SELECT count(*) FROM eightms.member WHERE account_id = md5('acct' || :a)::uuid;
SELECT user_id, email FROM eightms.member WHERE account_id = md5('acct' || :a)::uuid ORDER BY account_id, user_id LIMIT 50;
COMMIT;
SQL

tps() { pgbench -n -M prepared -c 2 -j 2 -T "$SECS" -f "$1" "$DB" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1; }
rls_sum=0; hand_sum=0
for r in $(seq 1 "$ROUNDS"); do
	h=$(tps "$T/hand.sql"); x=$(tps "$T/rls.sql")
	printf 'round %d: hand-written filter %s tps, RLS %s tps\n' "$r" "$h" "$x"
	hand_sum=$(echo "$hand_sum + $h" | bc -l); rls_sum=$(echo "$rls_sum + $x" | bc -l)
done
printf 'hand-written filter: %.0f tps\nunder RLS:           %.0f tps\nratio RLS/hand:      %.3f (target >= 0.90)\n' \
	"$(echo "$hand_sum / $ROUNDS" | bc -l)" "$(echo "$rls_sum / $ROUNDS" | bc -l)" "$(echo "$rls_sum / $hand_sum" | bc -l)"
