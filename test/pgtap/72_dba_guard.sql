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
INSERT INTO eightms.phone (account_id, device_id, gateway_password)
VALUES (:'acct', 'gina-phone', eightms.seal('pw-clear-77', 'x')) RETURNING phone_id AS ph \gset
UPDATE eightms.phone SET gateway_password = eightms.seal('pw-clear-77', 'phone:' || account_id || ':' || phone_id || ':gateway_password')
 WHERE phone_id = :'ph';
SELECT eightms.http_enqueue('POST', 'https://crm.example.test/g', secret_headers => '{"Authorization": "Bearer hdr-clear-88"}') AS req \gset

SET LOCAL ROLE eightms_dba;
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
