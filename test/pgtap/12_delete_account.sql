-- Deleting an account purges everything it holds, and nothing of others.
BEGIN;
SELECT plan(14);
SELECT pgrst.share_tap();

SELECT pgrst.as_user('olga', NULL, NULL, '{"session_id":"olga-1"}');
SELECT account_id AS olga FROM eightms_api.create_account('Olga Optics') \gset
SELECT * FROM eightms_api.invite_member('pete@example.test', 'admin') \gset
SELECT pgrst.as_user('pete', NULL, 'pete@example.test');
SELECT eightms_api.accept_invitation(:'token');
-- Messages in both directions, so the deletion has them to remove.
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, device_id) VALUES (:'olga', 'olga-phone') RETURNING phone_id AS olga_phone \gset
SELECT pgrst.as_user('olga', :'olga', NULL, '{"session_id":"olga-1"}');
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550140", "body": "Frames are in"}, {"to": "+12125550141", "body": "Ready"}]');
SELECT pgrst.as_phone(:'olga', :'olga_phone');
SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550140", "body": "Thanks", "device_message_id": "o-1"}]');
-- A bridge request queued in the account's request (http_enqueue granted
-- for the test: no API function queues one yet).
SELECT pgrst.reset();
GRANT EXECUTE ON FUNCTION eightms.http_enqueue(text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean)
	TO eightms_user;
SELECT pgrst.as_user('olga', :'olga', NULL, '{"session_id":"olga-1"}');
SELECT eightms.http_enqueue('POST', 'https://crm.example.test/olga', body => 'order 1') AS olga_req \gset
SELECT pgrst.as_user('quinn');
SELECT account_id AS quinn FROM eightms_api.create_account('Quinn Quilts') \gset

SELECT pgrst.as_user('pete', :'olga', 'pete@example.test');
SELECT throws_ok('SELECT eightms_api.delete_account(''Olga Optics'')', '42501', NULL,
				 'an admin cannot delete the account');
SELECT pgrst.as_user('olga', :'olga', NULL, '{"session_id":"olga-1"}');
SELECT throws_ok('SELECT eightms_api.delete_account(''olga optics'')', '22023',
				 'the confirmation does not match the company name',
				 'the company name must be typed back exactly');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'olga'), 3::bigint,
		  'the account has messages in both directions before it is deleted');
-- A campaign fanned out, so the deletion has recipients to remove (they
-- have no foreign key to follow).
SELECT eightms_api.create_contact('{"phone": "+12125550142", "first_name": "Ida"}');
SELECT eightms_api.create_campaign('Frames', '{"all": true}', body => 'Hi {{first_name|there}}') AS olga_camp \gset
SELECT eightms_api.schedule_campaign(:'olga_camp');
SELECT pgrst.reset();
SELECT eightms.run_campaigns();
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE account_id = :'olga'), 1::bigint,
		  'the account has a campaign''s recipient before it is deleted');
SELECT pgrst.as_user('olga', :'olga', NULL, '{"session_id":"olga-1"}');
SELECT lives_ok('SELECT eightms_api.delete_account(''Olga Optics'')', 'the owner deletes the account');
SELECT pgrst.reset();

-- Nothing of the account is left in any table the registry names with an
-- account_id but the request log, which records the deletion.
CREATE FUNCTION pg_temp.rows_of(acct uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n bigint;
	total bigint := 0;
BEGIN
	FOR r IN SELECT DISTINCT d.table_name FROM eightms.data_column d
			  WHERE d.column_name = 'account_id' AND d.retention <> 'dsar_request'
	LOOP
		EXECUTE format('SELECT count(*) FROM eightms.%I WHERE account_id = $1', r.table_name) INTO n USING acct;
		total := total + n;
	END LOOP;
	RETURN total;
END
$$;
SELECT is((SELECT count(*) FROM eightms.data_column d WHERE d.column_name = 'account_id'),
		  (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p') AND a.attname = 'account_id'),
		  'the registry names every table with an account_id');
SELECT is((SELECT count(*) FROM eightms.http_request WHERE id = :olga_req), 0::bigint,
		  'the account''s queued bridge request is gone with it');
SELECT is((SELECT kind || ' ' || subject_kind || ' ' || requester_user || ' ' || (completed_at IS NOT NULL)
			 FROM eightms.dsar_request WHERE account_id = :'olga'),
		  'erase account olga true', 'the deletion is logged as an erasure of the account, completed');
SELECT is(pg_temp.rows_of(:'olga'), 0::bigint, 'no row of the deleted account is left in any tenant table');
SELECT cmp_ok(pg_temp.rows_of(:'quinn'), '>=', 2::bigint, 'the other account keeps its rows');
SELECT throws_ok(format('SELECT pgrst.as_user(''pete'', %L, ''pete@example.test'')', :'olga'), '42501', NULL,
				 'former members can no longer act on the deleted account');

-- With a grace period (rule account_deletion), the account is disabled and
-- its pending work cancelled at once; it goes when the grace is over.
SELECT eightms.set_retention('account_deletion', '7 days');
SELECT pgrst.as_user('quinn', :'quinn');
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+12125550150", "body": "Quilts"}]');
SELECT lives_ok('SELECT eightms_api.delete_account(''Quinn Quilts'')', 'an owner deletes an account with a grace period');
SELECT pgrst.reset();
SELECT is((SELECT status || ' ' || (SELECT string_agg(m.status, ',') FROM eightms.message m WHERE m.account_id = :'quinn')
			 FROM eightms.account WHERE account_id = :'quinn'),
		  'disabled canceled', 'the account is disabled and its pending message canceled at once');
UPDATE eightms.dsar_request SET not_before = now() - interval '1 second' WHERE account_id = :'quinn';
SELECT eightms.run_account_deletions();
SELECT is(pg_temp.rows_of(:'quinn'), 0::bigint, 'once the grace is over, nothing of it is left');
SELECT * FROM finish();
ROLLBACK;
