-- Phone numbers through the PostgREST contract: a NULL region reads the
-- number in the default region of the account the request acts on.
BEGIN;
SELECT plan(7);
SELECT pgrst.share_tap();

SELECT pgrst.as_user('ines');
SELECT account_id AS gb_account FROM eightms_api.create_account('Ines Ltd', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.as_user('juan');
SELECT account_id AS ar_account FROM eightms_api.create_account('Juan SA', 'America/Argentina/Buenos_Aires', NULL, 'AR') \gset

SELECT pgrst.as_user('ines');
SELECT is(eightms.e164('020 7946 0018'), '+442079460018', 'a national number is read in the account''s default region (GB)');
SELECT is(eightms.phone_region('07400 123456'), 'GB', 'phone_region uses the account''s region too');
SELECT is(eightms.e164('0 11 4123 4567', 'AR'), '+541141234567', 'an explicit region wins over the account''s');
SELECT pgrst.as_user('juan');
SELECT is(eightms.e164('011 15 2345 6789'), '+5491123456789',
		  'Argentina: the national prefix and mobile token 15 are transformed to 9 (AR account)');
SELECT throws_ok($$SELECT eightms.e164('12')$$, '22023', NULL, 'a number too short for its region is refused with 22023');
SELECT pgrst.as_user('newcomer');
SELECT is(eightms.try_e164('020 7946 0018'), NULL, 'a user with no account has no default region: a national number reads as nothing');
SELECT pgrst.reset();
SELECT is(eightms.e164('+44 20 7946 0018'), '+442079460018', 'an international number needs no region');

SELECT * FROM finish();
ROLLBACK;
