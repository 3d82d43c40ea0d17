-- On the cluster, with citus.propagate_set_commands = 'local' (the setting
-- doc/scale-out.md asks for): a role taken with set_config('role', ..., true),
-- as PostgREST takes it, stays on the coordinator, and a SECURITY DEFINER
-- function reads the shards as its owner; a role taken with SET LOCAL ROLE
-- is sent to the workers too, and the same function is refused there
-- (doc/scale-out.md, "Take a role with SET ROLE or set_config").
BEGIN;
SELECT plan(2);
SELECT pgrst.share_tap();

INSERT INTO eightms.account (account_id, company_name)
VALUES ('c3000000-0000-4000-8000-000000000003', 'Role Three');

SELECT set_config('role', 'eightms_dba', true);
SELECT lives_ok($$SELECT eightms.dsar_export('account', NULL, 'c3000000-0000-4000-8000-000000000003')$$,
				'with set_config(''role''), the DBA exports an account from the shards');
SELECT set_config('role', 'none', true);

-- Last: Citus does not send a RESET of it, so the workers' connections
-- keep the role until the transaction ends.
SET LOCAL ROLE eightms_dba;
SELECT throws_ok($$SELECT eightms.dsar_export('account', NULL, 'c3000000-0000-4000-8000-000000000003')$$,
				 '42501', NULL, 'with SET LOCAL ROLE, the shards are read as eightms_dba and refused');

SELECT * FROM finish();
ROLLBACK;
