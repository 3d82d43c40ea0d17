-- eightms_dba: exactly what data-subject requests and purges need.  It
-- runs every DSAR and purge function; it reads directly only the tables
-- and views decided in doc/security.md (queues, registries, logs), not the
-- tenancy tables (the early GRANT ... ON ALL TABLES that gave it those is
-- gone); it writes nothing; and it cannot open a secret.
BEGIN;
SELECT plan(10);
SELECT pgrst.share_tap();

SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p', 'v')
				   AND has_table_privilege('eightms_dba', c.oid, 'SELECT') ORDER BY 1),
		  ARRAY['data_column', 'dsar_log', 'gateway_queue_stats', 'http_attempt', 'http_queue_stats', 'http_request',
				'message', 'phone', 'purge_log', 'retention_rule', 'retention_setting'],
		  'eightms_dba reads exactly the queues, their statistics, the registries and the logs');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
				 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p', 'v')
				   AND has_table_privilege('eightms_dba', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
		  '{}', 'and writes no table');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
				 WHERE p.oid IN ('eightms.unseal(bytea, text)'::regprocedure, 'eightms.unseal_bytes(bytea, text)'::regprocedure,
								 'eightms.http_secret_header_lines(bytea, bigint, text, text)'::regprocedure,
								 'eightms.jwt_sign(jsonb, interval)'::regprocedure)
				   AND has_function_privilege('eightms_dba', p.oid, 'EXECUTE')),
		  '{}', 'it cannot open a sealed value or sign a token');
SELECT ok(bool_and(has_function_privilege('eightms_dba', f::regprocedure, 'EXECUTE')),
		  'it runs every data-subject and purge function')
  FROM unnest(ARRAY['eightms.dsar_open(text, text, text, uuid, timestamptz)', 'eightms.dsar_export(text, text, uuid, bigint)',
					'eightms.dsar_erase(text, text, uuid, bigint)', 'eightms.dsar_count(text, text, uuid)',
					'eightms.dsar_overdue()', 'eightms.run_account_deletions()',
					'eightms.run_purges(boolean, integer, text[])']) f;

-- With data: a paired phone's sealed gateway password and a bridge
-- request's sealed headers.
SELECT pgrst.as_user('gina', NULL, 'gina@example.test');
SELECT account_id AS acct FROM eightms_api.create_account('Gina Gifts') \gset
SELECT pgrst.reset();
-- The phone's id is chosen first, so that its password is sealed for it in
-- the INSERT itself (seal() is volatile: Citus evaluates it in an INSERT's
-- VALUES on the coordinator, but refuses it in an UPDATE of a distributed
-- table).
SELECT gen_random_uuid() AS ph \gset
INSERT INTO eightms.phone (account_id, phone_id, device_id, gateway_password)
VALUES (:'acct', :'ph', 'gina-phone', eightms.seal('pw-clear-77', 'phone:' || :'acct' || ':' || :'ph' || ':gateway_password'));
SELECT eightms.http_enqueue('POST', 'https://crm.example.test/g', secret_headers => '{"Authorization": "Bearer hdr-clear-88"}') AS req \gset

-- The role as PostgREST and a DBA's session take it: on Citus with
-- citus.propagate_set_commands = 'local', a SET LOCAL ROLE would also reach
-- the connections a SECURITY DEFINER function opens to the workers, and
-- its reads of the shards would run as eightms_dba (doc/scale-out.md).
SELECT set_config('role', 'eightms_dba', true);
SELECT throws_ok('SELECT * FROM eightms.member', '42501', NULL, 'the DBA cannot read members directly');
SELECT is((SELECT position(convert_to('pw-clear-77', 'UTF8') IN gateway_password) FROM eightms.phone WHERE phone_id = :'ph'), 0,
		  'what it reads of a phone''s gateway password is sealed');
SELECT is((SELECT position(convert_to('hdr-clear-88', 'UTF8') IN secret_headers) FROM eightms.http_request WHERE id = :req), 0,
		  'and of a request''s secret headers too');
SELECT is((SELECT position('clear' IN eightms.dsar_export('account', NULL, :'acct')::text)), 0,
		  'its export shows neither in clear');
SELECT lives_ok('SELECT * FROM eightms.run_purges(dry_run => true)', 'it runs the purges');
SELECT throws_ok(format('SELECT eightms.unseal(gateway_password, %L) FROM eightms.phone WHERE phone_id = %L',
						'phone:' || :'acct' || ':' || :'ph' || ':gateway_password', :'ph'),
				 '42501', NULL, 'and cannot call unseal');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
