-- On the cluster: the API roles log in on the workers only (distribute()
-- lets them, Citus connects as them), and what a worker trusts of a
-- request's claims: the relay the hook made, for its own account, and
-- nothing set by hand.
BEGIN;
SELECT plan(9);

SELECT is((SELECT count(*) FROM pg_roles WHERE rolname IN ('eightms_anon', 'eightms_user', 'eightms_phone') AND rolcanlogin),
		  0::bigint, 'the API roles cannot log in on the coordinator');
SELECT is((SELECT count(*) FROM run_command_on_workers(
			$$SELECT count(*) FROM pg_roles WHERE rolname IN ('eightms_anon', 'eightms_user', 'eightms_phone') AND rolcanlogin$$) w
		   WHERE w.success AND w.result = '3'), 2::bigint,
		  'they can on both workers');
SELECT is((SELECT count(*) FROM eightms.distribute() d WHERE d.action LIKE 'already%' OR d.action LIKE 'kept%'
			 OR d.action LIKE 'left%' OR d.action LIKE 'the API roles%'),
		  (SELECT count(*) + 1 FROM eightms.distribution_plan()), 'a second distribute() moves nothing');

-- Two accounts with a message each, as the API writes them.
INSERT INTO eightms.account (account_id, company_name) VALUES
	('c1000000-0000-4000-8000-000000000001', 'Relay One'), ('c2000000-0000-4000-8000-000000000002', 'Relay Two');
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES
	('c1000000-0000-4000-8000-000000000001', 'relay-one', 'one@example.test', 'owner'),
	('c2000000-0000-4000-8000-000000000002', 'relay-two', 'two@example.test', 'owner');
COMMIT;

BEGIN;
SELECT pgrst.as_user('relay-one', 'c1000000-0000-4000-8000-000000000001');
SELECT ok(current_setting('eightms.relayed_claims', true) LIKE 'v1 %', 'the hook relays the claims');
-- The accounts' rows live on the workers' shards.
SELECT is((SELECT array_agg(company_name) FROM eightms.account), ARRAY['Relay One'],
		  'the tenant reads its own account from the shards, and no other');
SELECT is((SELECT count(*) FROM eightms.member), 1::bigint, 'and its own members only');
-- A relay made up by the caller (any role may set the setting), sent the
-- way Citus forwards settings to the workers: as SET LOCAL.
SELECT format('v1 %s %s eightms_user %s %s', repeat('0', 64), extract(epoch FROM now())::bigint,
			  'c2000000-0000-4000-8000-000000000002',
			  jsonb_build_object('role', 'eightms_user', 'sub', 'relay-one')) AS forged \gset
SET LOCAL eightms.relayed_claims = :'forged';
SELECT is(current_setting('eightms.relayed_claims'), :'forged', 'the forged relay is the transaction''s setting');
SELECT is((SELECT count(*) FROM eightms.account), 0::bigint, 'a forged relay sees no account on the shards');
SELECT is((SELECT count(*) FROM eightms.member), 0::bigint, 'nor any member');
SELECT * FROM finish();
ROLLBACK;

DELETE FROM eightms.member WHERE account_id IN ('c1000000-0000-4000-8000-000000000001', 'c2000000-0000-4000-8000-000000000002');
DELETE FROM eightms.account WHERE account_id IN ('c1000000-0000-4000-8000-000000000001', 'c2000000-0000-4000-8000-000000000002');
