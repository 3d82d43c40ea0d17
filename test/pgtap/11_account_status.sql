-- Suspended and disabled accounts are refused at the pre-request hook.
BEGIN;
SELECT plan(2);
SELECT pgrst.share_tap();
SELECT pgrst.as_user('zed');
SELECT account_id AS zed_account FROM eightms_api.create_account('Zed Ltd') \gset
SELECT pgrst.reset();
UPDATE eightms.account SET status = 'suspended' WHERE account_id = :'zed_account';
SELECT throws_ok('SELECT pgrst.as_user(''zed'')', '42501', 'account ' || :'zed_account' || ' is suspended',
				 'a suspended account is refused by the pre-request hook');
SELECT throws_ok(format('SELECT pgrst.request(''eightms_phone'', %L)', jsonb_build_object('account_id', :'zed_account')),
				 '42501', NULL, 'phones of a suspended account are refused too');
SELECT * FROM finish();
ROLLBACK;
