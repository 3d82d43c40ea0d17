-- Deleting an account purges everything it holds, and nothing of others.
BEGIN;
SELECT plan(7);
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
SELECT lives_ok('SELECT eightms_api.delete_account(''Olga Optics'')', 'the owner deletes the account');
SELECT pgrst.reset();

-- Nothing of the account is left in any tenant table.
CREATE FUNCTION pg_temp.rows_of(acct uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	n bigint;
	total bigint := 0;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
			  WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p') AND a.attname = 'account_id'
	LOOP
		EXECUTE format('SELECT count(*) FROM %s WHERE account_id = $1', r.rel) INTO n USING acct;
		total := total + n;
	END LOOP;
	RETURN total;
END
$$;
SELECT is(pg_temp.rows_of(:'olga'), 0::bigint, 'no row of the deleted account is left in any tenant table');
SELECT cmp_ok(pg_temp.rows_of(:'quinn'), '>=', 2::bigint, 'the other account keeps its rows');
SELECT throws_ok(format('SELECT pgrst.as_user(''pete'', %L, ''pete@example.test'')', :'olga'), '42501', NULL,
				 'former members can no longer act on the deleted account');
SELECT * FROM finish();
ROLLBACK;
