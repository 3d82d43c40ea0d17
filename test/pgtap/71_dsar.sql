-- Data-subject requests (doc/privacy.md): an account populated through the
-- API (members, a paired phone, conversations both ways, an opt-out and
-- its consent events, a bridge request), then export and erase of a
-- contact, a member and the account, each as eightms_dba; after each
-- erasure the registry-driven scan finds nothing of the subject, and
-- other subjects' rows are untouched.  The request log and its due dates.
BEGIN;
SELECT plan(46);
SELECT pgrst.share_tap();

SELECT pgrst.as_user('dora', NULL, 'dora@example.test');
SELECT account_id AS acct FROM eightms_api.create_account('Dora Dental') \gset
SELECT * FROM eightms_api.invite_member('ed@example.test', 'agent') \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('ed', NULL, 'ed@example.test');
SELECT eightms_api.accept_invitation(:'token');
SELECT pgrst.as_anon();
SELECT phone_id AS ph FROM eightms_api.pair_phone(:'code', 'dora-phone', 'Desk') \gset
-- Another account with the same contact: a DSAR confined to Dora's
-- account leaves it alone.
SELECT pgrst.as_user('fay', NULL, 'fay@example.test');
SELECT account_id AS other FROM eightms_api.create_account('Fay Flowers') \gset
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550199", "body": "Fay here"}]');

-- Conversations both ways; the contact +12125550199 replies, then opts out.
SELECT pgrst.as_user('dora', :'acct', 'dora@example.test');
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550199", "body": "Your cleaning is Tuesday"},
												 {"to": "+12125550177", "body": "Your crown is ready"}]');
SELECT pgrst.as_phone(:'acct', :'ph');
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550199", "body": "Thanks, see you", "device_message_id": "d-1"},
												   {"from": "+12125550177", "body": "Great", "device_message_id": "d-2"}]');
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550199", "body": "STOP", "device_message_id": "d-3"}]');
-- A bridge request queued in Dora's request names her account.
SELECT pgrst.reset();
GRANT EXECUTE ON FUNCTION eightms.http_enqueue(text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean)
	TO eightms_user;
SELECT pgrst.as_user('dora', :'acct', 'dora@example.test');
SELECT eightms.http_enqueue('POST', 'https://crm.example.test/hook', body => 'visit booked',
							secret_headers => '{"Authorization": "Bearer crm-secret-1"}') AS req \gset
SELECT pgrst.reset();
SELECT is((SELECT account_id FROM eightms.http_request WHERE id = :req), :'acct'::uuid,
		  'a request enqueued in a verified request names its account');
SELECT is((SELECT account_id FROM eightms.http_request WHERE idempotency_key = 'platform-1'
			 AND id = eightms.http_enqueue('GET', 'https://status.example.test/', idempotency_key => 'platform-1')),
		  NULL, 'a platform call outside a request has none');

-- Contacts: the subject's (with a name, an email and a custom field), another
-- one, and the same number in Fay's account; an opt-out Ed made by hand.
SELECT pgrst.as_user('dora', :'acct', 'dora@example.test');
SELECT eightms_api.set_contact_field('insurer', 'text');
SELECT eightms_api.create_contact('{"phone": "+12125550199", "first_name": "Zoe", "email": "zoe@example.test",
	"custom": {"insurer": "Acme"}, "tags": ["patient"]}');
SELECT eightms_api.create_contact('{"phone": "+12125550177", "first_name": "Yan"}');
SELECT pgrst.as_user('ed', :'acct', 'ed@example.test');
SELECT eightms_api.add_opt_out('+12125550166', 'asked at the desk');
SELECT pgrst.as_user('fay', :'other', 'fay@example.test');
SELECT eightms_api.create_contact('{"phone": "+12125550199", "first_name": "Zed"}');
SELECT pgrst.reset();

-- What is held before: counts of every table, per subject, from the registry.
CREATE TEMP TABLE before_contact AS SELECT eightms.dsar_count('contact', '+12125550199', :'acct') AS c;
CREATE TEMP TABLE before_other AS
	SELECT eightms.dsar_count('contact', '+12125550177', :'acct') AS c177,
		   eightms.dsar_count('contact', '+12125550199', :'other') AS c199_other,
		   eightms.dsar_count('member', 'fay@example.test') AS fay;
SELECT is((SELECT (c ->> 'message')::int FROM before_contact), 4, 'the contact has four messages in the account');
SELECT ok((SELECT (c ->> 'consent_event')::int >= 1 AND (c ->> 'opt_out')::int = 1 FROM before_contact),
		  'and an opt-out with its consent event');

-- The DBA's export of the contact in the account.  The role taken as
-- PostgREST and a DBA's session take it: on Citus with
-- citus.propagate_set_commands = 'local', a SET LOCAL ROLE would also reach
-- the connections the SECURITY DEFINER DSAR functions open to the workers,
-- and their reads of the shards would run as eightms_dba (doc/scale-out.md).
SELECT set_config('role', 'eightms_dba', true);
CREATE TEMP TABLE ex AS SELECT eightms.dsar_export('contact', '+12125550199', :'acct') AS doc;
RESET ROLE;
SELECT is((SELECT doc ->> 'format' FROM ex), 'eightms-dsar-export', 'the export names its format');
SELECT is((SELECT doc -> 'manifest' ->> 'eightms_version' FROM ex),
		  (SELECT extversion FROM pg_extension WHERE extname = 'eightms'), 'and the version that made it');
SELECT set_eq($$SELECT t ->> 'table' FROM ex, jsonb_array_elements(doc -> 'manifest' -> 'tables') t$$,
			  $$SELECT DISTINCT table_name::text FROM eightms.data_column
				 WHERE class = 'personal' AND subject = 'contact' AND table_name <> 'dsar_request'$$,
			  'the manifest lists every table with a personal column of a contact, from the registry');
SELECT is((SELECT jsonb_array_length(doc -> 'data' -> 'message') FROM ex), 4, 'the export holds the contact''s four messages');
SELECT is((SELECT doc -> 'data' -> 'contact' -> 0 ->> 'first_name' FROM ex), 'Zoe',
		  'and the contact row, with its name (not the other account''s)');
SELECT is((SELECT doc -> 'data' -> 'contact' -> 0 -> 'custom' FROM ex), '{"insurer": "Acme"}'::jsonb, 'and its custom fields');
SELECT is((SELECT count(*) FROM ex, jsonb_array_elements(doc -> 'data' -> 'message') m
			WHERE m ->> 'peer_number' <> '+12125550199' OR m ->> 'account_id' <> :'acct'), 0::bigint,
		  'and nothing of another contact or account');
SELECT ok((SELECT bool_and(m ? 'body' AND m ? 'status' AND m ? 'segments')
			 FROM ex, jsonb_array_elements(doc -> 'data' -> 'message') m),
		  'every registered column of each row is exported');
SELECT is((SELECT (doc -> 'manifest' -> 'tables') @> '[{"table": "message", "rows": 4}]' FROM ex), true,
		  'the manifest counts each table''s rows');
SELECT is((SELECT completed_at IS NOT NULL AND kind = 'export' AND subject_kind = 'contact' AND account_id = :'acct'
			 FROM eightms.dsar_request WHERE request_id = (SELECT (doc -> 'manifest' ->> 'request_id')::bigint FROM ex)),
		  true, 'the export is logged, completed');
SELECT is((SELECT position('12125550199' IN d::text) FROM eightms.dsar_request d
			WHERE request_id = (SELECT (doc -> 'manifest' ->> 'request_id')::bigint FROM ex)), 0,
		  'the log holds the number sealed, never in clear');

-- Erasure of the contact in the account.
SELECT set_config('role', 'eightms_dba', true);
SELECT throws_ok($$SELECT eightms.dsar_erase('contact', '2125550199')$$, '22023', 'a contact is named by an E.164 number',
				 'a number that is not E.164 is refused, without quoting it');
CREATE TEMP TABLE er AS SELECT eightms.dsar_erase('contact', '+12125550199', :'acct') AS res;
RESET ROLE;
SELECT is((SELECT res -> 'erased' ->> 'message' FROM er), '4', 'the erasure removes the contact''s messages');
SELECT is((SELECT res -> 'erased' ->> 'contact' FROM er), '1', 'and the contact row');
SELECT is((SELECT count(*) FROM eightms.contact WHERE phone = '+12125550199'), 1::bigint,
		  'only the other account''s contact with the number is left');
SELECT is((SELECT res -> 'kept' FROM er), '{"opt_out": 1}'::jsonb, 'and keeps only the opt-out, so they are never texted again');
SELECT is((SELECT count(*) FROM jsonb_each_text(eightms.dsar_count('contact', '+12125550199', :'acct')) c
			WHERE c.value::int > 0 AND c.key <> 'opt_out'), 0::bigint,
		  'the registry-driven scan finds nothing else of the contact in the account');
SELECT is(eightms.dsar_count('contact', '+12125550177', :'acct'), (SELECT c177 FROM before_other),
		  'another contact''s rows are untouched');
SELECT is(eightms.dsar_count('contact', '+12125550199', :'other'), (SELECT c199_other FROM before_other),
		  'and the same number in another account too');
SELECT pgrst.as_user('dora', :'acct', 'dora@example.test');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+12125550199', 'Hello again')$$, 'E8O01', NULL,
				 'the kept opt-out still refuses a send to the erased contact');
SELECT pgrst.reset();

-- A member: exported across accounts, erased; the only owner is refused.
SELECT set_config('role', 'eightms_dba', true);
CREATE TEMP TABLE mex AS SELECT eightms.dsar_export('member', 'ED@example.test') AS doc;
SELECT throws_ok($$SELECT eightms.dsar_erase('member', 'dora@example.test')$$, '55000', NULL,
				 'the only owner of an account cannot be erased');
CREATE TEMP TABLE mer AS SELECT eightms.dsar_erase('member', 'ed@example.test') AS res;
RESET ROLE;
SELECT is((SELECT jsonb_array_length(doc -> 'data' -> 'member') FROM mex), 1, 'the member export holds the membership');
SELECT is((SELECT doc -> 'data' -> 'invitation' -> 0 ->> 'token_hash' FROM mex), 'sealed, present',
		  'a secret column shows as sealed, present');
SELECT is((SELECT count(*) FROM jsonb_each_text(eightms.dsar_count('member', 'ed@example.test')) c
			WHERE c.value::int > 0 AND c.key NOT IN ('session_revocation', 'user_revocation')), 0::bigint,
		  'after the erasure nothing of the member is left');
SELECT is((SELECT count(*) FROM eightms.consent_event WHERE number = '+12125550166' AND changed_by IS NULL
			 AND reason = 'asked at the desk'), 1::bigint,
		  'an opt-out the member made by hand stays, without who made it');
SELECT is(eightms.dsar_count('member', 'fay@example.test'), (SELECT fay FROM before_other),
		  'another member''s rows are untouched');
SELECT is((SELECT array_agg(user_id) FROM eightms.member WHERE account_id = :'acct'), '{dora}',
		  'and the owner keeps her membership');

-- The account: the owner's own export, and the DBA's; secrets sealed.
SELECT pgrst.as_user('dora', :'acct', 'dora@example.test');
CREATE TEMP TABLE aex AS SELECT eightms_api.export_account() AS doc;
SELECT pgrst.reset();
SELECT is((SELECT doc -> 'data' -> 'http_request' -> 0 ->> 'secret_headers' FROM aex), 'sealed, present',
		  'the account export shows the bridge request''s secret headers as sealed, present');
SELECT is((SELECT position('crm-secret-1' IN doc::text) FROM aex), 0, 'never in clear');
SELECT is((SELECT array[jsonb_array_length(doc -> 'data' -> 'contact'), jsonb_array_length(doc -> 'data' -> 'contact_field')] FROM aex),
		  ARRAY[1, 1], 'the account export holds its contacts and its custom fields');
SELECT is((SELECT count(*) FROM aex, jsonb_each(doc -> 'data') t, jsonb_array_elements(t.value) r
			WHERE r ->> 'account_id' IS DISTINCT FROM :'acct'), 0::bigint,
		  'every row of the account export is the account''s');
SELECT is((SELECT requester_user FROM eightms.dsar_request ORDER BY request_id DESC LIMIT 1), 'dora',
		  'the owner''s export is logged with who asked');

-- The log: open requests are due in 30 days; overdue ones are listed.
SELECT set_config('role', 'eightms_dba', true);
SELECT eightms.dsar_open('erase', 'contact', '+12125550177', :'acct', now() - interval '31 days') AS late \gset
SELECT eightms.dsar_open('export', 'member', 'dora@example.test', NULL, now() - interval '2 days') AS fresh \gset
SELECT is(ARRAY(SELECT request_id FROM eightms.dsar_overdue()), ARRAY[:late::bigint],
		  'dsar_overdue lists the request received 31 days ago, not the recent one');
SELECT throws_ok(format('SELECT eightms.dsar_erase(%L, %L, %L, %s)', 'contact', '+12125550100', :'acct', :late),
				 '22023', NULL, 'a request is answered only for its own subject');
SELECT lives_ok(format('SELECT eightms.dsar_erase(%L, %L, %L, %s)', 'contact', '+12125550177', :'acct', :late),
				'the DBA answers the open request');
SELECT is((SELECT count(*) FROM eightms.dsar_overdue()), 0::bigint, 'and it is no longer overdue');
SELECT throws_ok('SELECT * FROM eightms.dsar_request', '42501', NULL, 'the DBA reads the log through eightms.dsar_log only, without the sealed subjects');
RESET ROLE;

-- The DSAR log is kept: a purge removes completed requests older than
-- three years only.
UPDATE eightms.dsar_request SET completed_at = now() - interval '3 years 1 day' WHERE request_id = :late;
SELECT is((SELECT rows_removed FROM eightms.run_purges(rules => '{dsar_request}')), 1::bigint,
		  'the dsar_request rule removes the request completed more than three years ago');
SELECT is((SELECT count(*) FROM eightms.dsar_request WHERE request_id = :fresh), 1::bigint, 'never an open one');

-- Erasure of the account: nothing of it is left in any table the registry
-- names with an account_id.
SELECT set_config('role', 'eightms_dba', true);
SELECT lives_ok(format('SELECT eightms.dsar_erase(%L, NULL, %L)', 'account', :'acct'), 'the DBA erases the account');
RESET ROLE;
SELECT is((SELECT sum(value::bigint) FROM jsonb_each_text(eightms.dsar_count('account', NULL, :'acct'))), 0::numeric,
		  'no table of the registry holds a row of the erased account');
SELECT is((SELECT result ->> 'http_request' FROM eightms.dsar_request ORDER BY request_id DESC LIMIT 1), '1',
		  'its bridge request went with it, as the log says');

SELECT * FROM finish();
ROLLBACK;
