-- Retention: every rule of eightms.retention_rule purges what is older
-- than its keep and nothing younger, each purge is logged with its rule,
-- counts and oldest and newest timestamps, a dry run changes nothing, the
-- DBA runs them, and an owner (only) shortens the account's message-body
-- retention, never past the platform's.
BEGIN;
SELECT plan(33);
SELECT pgrst.share_tap();

SELECT pgrst.as_user('rita', NULL, 'rita@example.test');
SELECT account_id AS acct FROM eightms_api.create_account('Rita Retail') \gset
SELECT pgrst.reset();
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'sam', 'sam@example.test', 'agent');
INSERT INTO eightms.phone (account_id, device_id) VALUES (:'acct', 'rita-phone') RETURNING phone_id AS ph \gset

-- Old and young rows of every rule, as the superuser writes them.
CREATE TEMP TABLE t0 AS SELECT now() AS t;
-- When the old bridge request finished, named once: the Citus tier runs
-- the insert and the assertion in transactions of their own (test/citus).
SELECT t - interval '8 days' AS h_old_at FROM t0 \gset
INSERT INTO eightms.invitation (account_id, email, role, token_hash, invited_by, created_at, expires_at) VALUES
	(:'acct', 'old@example.test', 'agent', sha256('i-old'), 'rita', now() - interval '40 days', now() - interval '33 days'),
	(:'acct', 'new@example.test', 'agent', sha256('i-new'), 'rita', now(), now() + interval '7 days');
INSERT INTO eightms.pairing_code (account_id, code_hash, created_by, created_at, expires_at, used_at) VALUES
	(:'acct', sha256('p-old'), 'rita', now() - interval '3 days', now() - interval '3 days', now() - interval '3 days' + interval '1 minute'),
	(:'acct', sha256('p-new'), 'rita', now(), now() + interval '10 minutes', NULL);
INSERT INTO eightms.session (account_id, session_hash, user_id, created_at, last_seen_at) VALUES
	(:'acct', sha256('s-old'), 'sam', now() - interval '100 days', now() - interval '91 days'),
	(:'acct', sha256('s-new'), 'sam', now(), now());
INSERT INTO eightms.session_revocation (session_hash, user_id, revoked_at) VALUES
	(sha256('r-old'), 'sam', now() - interval '31 days'), (sha256('r-new'), 'sam', now());
INSERT INTO eightms.user_revocation (user_id, signed_out_at) VALUES
	('u-old', now() - interval '31 days'), ('u-new', now());
INSERT INTO eightms.phone (account_id, device_id, unpaired_at, last_heartbeat_at, battery_pct, charging, network) VALUES
	(:'acct', 'gone-phone', now() - interval '31 days', now() - interval '32 days', 40, true, 'wifi');
UPDATE eightms.phone SET last_heartbeat_at = now(), battery_pct = 80, network = 'wifi' WHERE phone_id = :'ph';
INSERT INTO eightms.http_request (method, url, idempotency_key, state, finished_at, body) VALUES
	('POST', 'https://example.test/a', 'h-old', 'done', :'h_old_at'::timestamptz, '\x01'),
	('POST', 'https://example.test/b', 'h-new', 'dead', now(), '\x02');
INSERT INTO eightms.http_attempt (request_id, attempt, started_at, duration_ms, status)
SELECT id, 1, finished_at, 5, 200 FROM eightms.http_request WHERE idempotency_key IN ('h-old', 'h-new');
SELECT id AS old_request FROM eightms.http_request WHERE idempotency_key = 'h-old' \gset
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, start_time, end_time) VALUES
	(1, 910001, 1, current_database(), 'postgres', 'SELECT 1', 'succeeded', now() - interval '8 days', now() - interval '8 days'),
	(1, 910002, 1, current_database(), 'postgres', 'SELECT 1', 'succeeded', now(), now());
INSERT INTO eightms.consent_event (account_id, number, action, at) VALUES
	(:'acct', '+12125550101', 'opt_out', now() - interval '6 years'), (:'acct', '+12125550102', 'opt_out', now());
INSERT INTO eightms.account (company_name, status) VALUES ('Old Suspended', 'suspended'), ('New Suspended', 'suspended'),
	('Old Disabled', 'disabled'), ('New Disabled', 'disabled');
UPDATE eightms.account SET status_since = now() - interval '366 days' WHERE company_name IN ('Old Suspended', 'Old Disabled');
INSERT INTO eightms.purge_log (rule_name, started_at, duration, rows_removed) VALUES
	('session', now() - interval '3 years', '1 second', 1), ('session', now() - interval '1 day', '1 second', 1);
-- Two inbound messages, one from three days ago, and the owner's retention of two days.
SELECT pgrst.as_phone(:'acct', :'ph');
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550101", "body": "old secret", "device_message_id": "m-old"},
												   {"from": "+12125550101", "body": "new text", "device_message_id": "m-new"}]');
SELECT pgrst.reset();
UPDATE eightms.message SET created_at = now() - interval '3 days', received_at = now() - interval '3 days',
	   message_id = eightms.uuid_v7_floor(now() - interval '3 days')
 WHERE account_id = :'acct' AND device_message_id = 'm-old';

-- The owner's setter.
SELECT pgrst.as_user('sam', :'acct', 'sam@example.test');
SELECT throws_ok($$SELECT eightms_api.set_message_retention('2 days')$$, '42501', NULL,
				 'a member who is not an owner cannot set the message retention');
SELECT pgrst.as_user('rita', :'acct', 'rita@example.test');
SELECT throws_ok($$SELECT eightms_api.set_message_retention('1 hour')$$, '22023',
				 'a message retention must be at least 1 day', 'a retention under a day is refused');
SELECT pgrst.reset();
SELECT eightms.set_retention('message_body', '30 days');
SELECT pgrst.as_user('rita', :'acct', 'rita@example.test');
SELECT throws_ok($$SELECT eightms_api.set_message_retention('31 days')$$, '22023',
				 'a message retention may not be longer than the platform''s (30 days)',
				 'an owner cannot lengthen the retention past the platform''s');
SELECT is(eightms_api.set_message_retention('2 days'), '2 days'::interval, 'the owner shortens it to two days');
SELECT pgrst.reset();
SELECT is((SELECT message_retention FROM eightms.account WHERE account_id = :'acct'), '2 days'::interval,
		  'the account keeps its retention');

-- A dry run says what would go and changes nothing.
CREATE TEMP TABLE dry AS SELECT * FROM eightms.run_purges(dry_run => true);
SELECT is((SELECT jsonb_object_agg(rule_name, rows_removed) FROM dry WHERE rows_removed > 0),
		  '{"invitation": 1, "pairing_code": 1, "session": 1, "session_revocation": 1, "user_revocation": 1,
			"phone_telemetry": 1, "http_request": 1, "cron_history": 1, "consent_event": 1, "suspended_account": 1,
			"disabled_account": 1, "purge_log": 1, "message_body": 1}'::jsonb,
		  'the dry run finds exactly the old row of each rule');
SELECT is((SELECT oldest FROM dry WHERE rule_name = 'consent_event'),
		  (SELECT at FROM eightms.consent_event WHERE number = '+12125550101'), 'and reports its timestamp');
SELECT is((SELECT count(*) FROM eightms.invitation WHERE account_id = :'acct'), 2::bigint, 'the dry run removed nothing');
SELECT is((SELECT count(*) FROM eightms.purge_log), 2::bigint, 'and logged nothing');

-- The DBA runs them, through the function alone.
SET ROLE eightms_dba;
SELECT throws_ok($$DELETE FROM eightms.invitation$$, '42501', NULL, 'the DBA cannot delete rows itself');
CREATE TEMP TABLE ran AS SELECT * FROM eightms.run_purges();
RESET ROLE;
SELECT is((SELECT jsonb_object_agg(rule_name, rows_removed) FROM ran WHERE rows_removed > 0),
		  (SELECT jsonb_object_agg(rule_name, rows_removed) FROM dry WHERE rows_removed > 0),
		  'the DBA''s run removes what the dry run said');
SELECT is((SELECT bool_or(more) FROM ran WHERE rule_name NOT LIKE '%\_account'), false,
		  'nothing more to do (an account rule goes one account a call, so says more after each)');

SELECT is((SELECT array_agg(email) FROM eightms.invitation WHERE account_id = :'acct'), '{new@example.test}',
		  'invitation: the expired one goes, the pending one stays');
SELECT is((SELECT count(*) FROM eightms.pairing_code WHERE account_id = :'acct' AND code_hash = sha256('p-new')),
		  (SELECT count(*) FROM eightms.pairing_code WHERE account_id = :'acct'), 'pairing_code: the used one goes');
SELECT is((SELECT array_agg(session_hash) FROM eightms.session WHERE account_id = :'acct'), ARRAY[sha256('s-new')],
		  'session: the one idle for 90 days goes');
SELECT is((SELECT array_agg(session_hash) FROM eightms.session_revocation WHERE user_id = 'sam'), ARRAY[sha256('r-new')],
		  'session_revocation: 30 days');
SELECT is((SELECT array_agg(user_id) FROM eightms.user_revocation WHERE user_id LIKE 'u-%'), '{u-new}',
		  'user_revocation: 30 days');
SELECT is((SELECT ROW(last_heartbeat_at, battery_pct, charging, network, gateway_password)::text || device_id
			 FROM eightms.phone WHERE device_id = 'gone-phone'), '(,,,,)gone-phone',
		  'phone_telemetry: an unpaired phone''s telemetry is erased, its device id stays');
SELECT is((SELECT battery_pct FROM eightms.phone WHERE phone_id = :'ph'), 80, 'a paired phone keeps its telemetry');
SELECT is((SELECT array_agg(idempotency_key) FROM eightms.http_request WHERE idempotency_key LIKE 'h-%'), '{h-new}',
		  'http_request: finished a week ago goes');
SELECT is((SELECT count(*) FROM eightms.http_attempt a WHERE a.request_id = :old_request), 0::bigint, 'with its attempts');
SELECT is((SELECT array_agg(runid) FROM cron.job_run_details WHERE runid IN (910001, 910002)), '{910002}',
		  'cron_history: 7 days');
SELECT is((SELECT array_agg(number) FROM eightms.consent_event WHERE account_id = :'acct'), '{+12125550102}',
		  'consent_event: kept five years');
SELECT is((SELECT array_agg(company_name ORDER BY company_name) FROM eightms.account WHERE company_name LIKE '%d'),
		  '{"New Disabled","New Suspended"}', 'suspended and disabled accounts go after their keep');
SELECT is((SELECT jsonb_object_agg(device_message_id, body) FROM eightms.message WHERE account_id = :'acct'),
		  '{"m-old": "", "m-new": "new text"}', 'message_body: the body older than the account''s retention is erased');
SELECT is((SELECT peer_number || segments || status FROM eightms.message WHERE device_message_id = 'm-old'),
		  '+121255501011received', 'and its attribution and billing metadata stay');

-- The evidence.
SELECT is((SELECT count(*) FROM eightms.purge_log WHERE started_at >= (SELECT t FROM t0)), 13::bigint,
		  'each rule that removed something wrote one purge log row');
SELECT is((SELECT ROW(rows_removed, oldest, newest, keep, run_by)::text FROM eightms.purge_log
			WHERE rule_name = 'http_request' AND started_at >= (SELECT t FROM t0)),
		  (SELECT ROW(1::bigint, finished_at, finished_at, '7 days'::interval, session_user)::text
			 FROM eightms.http_request WHERE false UNION ALL SELECT ROW(1::bigint, :'h_old_at'::timestamptz, :'h_old_at'::timestamptz, '7 days'::interval, session_user::name)::text),
		  'the log row has the rule, rows removed, oldest and newest timestamps removed, keep and who ran it');
SELECT ok((SELECT bool_and(duration >= '0' AND started_at >= (SELECT t FROM t0)) FROM eightms.purge_log
			WHERE started_at >= (SELECT t FROM t0)), 'and its start and duration');
SELECT is((SELECT count(*) FROM eightms.run_purges() WHERE rows_removed > 0), 0::bigint, 'a second run finds nothing');

-- Bounded batches: at most batch_size rows per call; more says call again.
INSERT INTO eightms.session_revocation (session_hash, user_id, revoked_at)
SELECT sha256(g::text::bytea), 'batch', now() - interval '40 days' FROM generate_series(1, 5) g;
SELECT is((SELECT ROW(rows_removed, more)::text FROM eightms.run_purges(batch_size => 2, rules => '{session_revocation}')),
		  '(2,t)', 'a call removes at most batch_size rows and says there is more');
CREATE TEMP TABLE calls (n bigint);
DO $$
BEGIN
	FOR i IN 1..3 LOOP
		INSERT INTO calls SELECT r.rows_removed FROM eightms.run_purges(batch_size => 2, rules => '{session_revocation}') r;
	END LOOP;
END
$$;
SELECT is((SELECT array_agg(n) FROM calls), '{2,1,0}'::bigint[], 'repeated calls finish it');
SELECT throws_ok($$SELECT * FROM eightms.run_purges(rules => '{nope}')$$, '22023', 'unknown retention rule in rules',
				 'an unknown rule is refused');

SELECT * FROM finish();
ROLLBACK;
