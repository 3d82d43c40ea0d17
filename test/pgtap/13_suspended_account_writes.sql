-- A suspended or disabled account gains no members and no phones: the
-- calls that reach an account without the pre-request hook having chosen
-- it (accepting an invitation, pairing a phone with a code) refuse it with
-- the hook's own error, and write nothing (issue 17, finding 6).
BEGIN;
SELECT plan(22);
SELECT pgrst.share_tap();

-- The SQLSTATE, message and hint a statement fails with, as one line.
CREATE FUNCTION pg_temp.error_of(statement text) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	EXECUTE statement;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN format('%s: %s (hint: %s)', st, msg, hint);
END
$$;

SELECT pgrst.as_user('yara');
SELECT account_id AS acct FROM eightms_api.create_account('Yara Yachts') \gset
SELECT token FROM eightms_api.invite_member('walt@example.test', 'agent') \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.reset();

-- The error every other request to the account gets, from the hook.
UPDATE eightms.account SET status = 'suspended' WHERE account_id = :'acct';
SELECT pg_temp.error_of('SELECT pgrst.as_user(''yara'')') AS hook_error \gset
SELECT is(:'hook_error', format('42501: account %s is suspended (hint: Contact support to reactivate the account.)', :'acct'),
		  'the pre-request hook refuses the suspended account');

-- Walt, invited before the suspension, belongs to no account yet.
SELECT pgrst.as_user('walt');
SELECT is(pg_temp.error_of(format('SELECT eightms_api.accept_invitation(%L)', :'token')), :'hook_error',
		  'accepting an invitation to a suspended account fails with the hook''s error');
SELECT pgrst.as_anon();
SELECT is(pg_temp.error_of(format('SELECT * FROM eightms_api.pair_phone(%L, %L)', :'code', 'android-susp')), :'hook_error',
		  'pairing with a code made before the suspension fails with the hook''s error');
SELECT pgrst.reset();

SELECT is((SELECT count(*) FROM eightms.member WHERE account_id = :'acct' AND user_id = 'walt'), 0::bigint,
		  'the refused acceptance added no member');
SELECT is((SELECT accepted_at FROM eightms.invitation WHERE account_id = :'acct'), NULL,
		  'the invitation is still pending (not accepted)');
SELECT is((SELECT accepted_by FROM eightms.invitation WHERE account_id = :'acct'), NULL,
		  'and names no one as having accepted it');
SELECT is((SELECT count(*) FROM eightms.phone WHERE account_id = :'acct'), 0::bigint,
		  'the refused pairing added no phone');
SELECT is((SELECT used_at FROM eightms.pairing_code WHERE account_id = :'acct'), NULL,
		  'the pairing code was not consumed');
SELECT is((SELECT phone_id FROM eightms.pairing_code WHERE account_id = :'acct'), NULL,
		  'and names no phone');

-- Disabled accounts alike.
UPDATE eightms.account SET status = 'disabled' WHERE account_id = :'acct';
SELECT pgrst.as_user('walt');
SELECT throws_ok(format('SELECT eightms_api.accept_invitation(%L)', :'token'),
				 '42501', format('account %s is disabled', :'acct'),
				 'accepting an invitation to a disabled account is refused');
SELECT pgrst.as_anon();
SELECT throws_ok(format('SELECT * FROM eightms_api.pair_phone(%L, %L)', :'code', 'android-susp'),
				 '42501', format('account %s is disabled', :'acct'),
				 'pairing a phone to a disabled account is refused');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.member WHERE account_id = :'acct'), 1::bigint,
		  'the disabled account still has its owner only');
SELECT is((SELECT count(*) FROM eightms.phone WHERE account_id = :'acct'), 0::bigint,
		  'and no phone');

-- An invalid token or code still gets its own answer, whatever the account:
-- the status check comes after it, so a guess learns nothing.
SELECT pgrst.as_user('walt');
SELECT throws_ok('SELECT eightms_api.accept_invitation(''guess'')', '28000', 'invitation is invalid or has expired',
				 'an unknown invitation token is refused as before');
SELECT pgrst.as_anon();
SELECT throws_ok('SELECT * FROM eightms_api.pair_phone(''GUESS'', ''android-susp'')', '28000',
				 'pairing code is invalid or has expired', 'an unknown pairing code is refused as before');
SELECT pgrst.reset();

-- Once reactivated, both work with what was made before the suspension.
UPDATE eightms.account SET status = 'active' WHERE account_id = :'acct';
SELECT pgrst.as_user('walt');
SELECT is((SELECT account_id FROM eightms_api.accept_invitation(:'token')), :'acct'::uuid,
		  'after reactivation the invitation is accepted');
SELECT pgrst.as_anon();
SELECT * FROM eightms_api.pair_phone(:'code', 'android-susp') \gset pair_
SELECT is(:'pair_account_id'::uuid, :'acct'::uuid, 'after reactivation the code pairs the phone');
SELECT pgrst.reset();
SELECT is((SELECT role FROM eightms.member WHERE account_id = :'acct' AND user_id = 'walt'), 'agent',
		  'walt is a member with the invited role');
SELECT isnt((SELECT accepted_at FROM eightms.invitation WHERE account_id = :'acct'), NULL,
			'the invitation is accepted');
SELECT is((SELECT count(*) FROM eightms.phone WHERE account_id = :'acct' AND phone_id = :'pair_phone_id'), 1::bigint,
		  'the phone is paired');
SELECT is((SELECT phone_id FROM eightms.pairing_code WHERE account_id = :'acct'), :'pair_phone_id'::uuid,
		  'the code is used, by that phone');
SELECT pgrst.as_phone(:'acct', :'pair_phone_id');
SELECT is((SELECT account_id FROM eightms_api.get_profile()), :'acct'::uuid, 'the new phone acts on the account');
SELECT pgrst.reset();

SELECT * FROM finish();
ROLLBACK;
