-- Tenancy through the PostgREST contract: accounts, members, invitations,
-- sessions, and the pre-request hook.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

-- Alice creates account A and Bob account B.
SELECT pgrst.as_user('alice');
CREATE TEMP TABLE acct_a AS SELECT * FROM eightms_api.create_account('Acme Plumbing', 'America/Chicago', 'Acme', 'us');
SELECT pgrst.as_user('bob');
CREATE TEMP TABLE acct_b AS SELECT * FROM eightms_api.create_account('Bobs Bakery', 'Europe/Paris', NULL, 'FR');
SELECT pgrst.reset();
GRANT SELECT ON acct_a, acct_b TO eightms_user, eightms_anon, eightms_phone;

SELECT is((SELECT default_region FROM acct_a), 'US', 'create_account upper-cases the default region');
SELECT is((SELECT status FROM acct_a), 'active', 'a new account is active');
SELECT is((SELECT role FROM eightms.member m JOIN acct_a USING (account_id) WHERE user_id = 'alice'),
		  'owner', 'the creator becomes the owner');
SELECT is((SELECT email FROM eightms.member m JOIN acct_a USING (account_id)),
		  'alice@example.test', 'the member keeps the email from the JWT');

-- A user with one account acts on it without naming it.
SELECT pgrst.as_user('alice');
SELECT is((SELECT company_name FROM eightms_api.get_profile()), 'Acme Plumbing',
		  'a user with one account acts on it by default');
SELECT is((SELECT count(*) FROM eightms_api.my_accounts()), 1::bigint, 'my_accounts lists only the caller''s accounts');

-- Cross-tenant reads: every tenant table shows Alice only account A's rows.
SELECT is((SELECT count(*) FROM eightms.account), 1::bigint, 'alice sees one account row');
SELECT is((SELECT count(*) FROM eightms.account WHERE account_id = (SELECT account_id FROM acct_b)), 0::bigint,
		  'alice cannot read account B');
SELECT is((SELECT count(*) FROM eightms_api.members WHERE account_id = (SELECT account_id FROM acct_b)), 0::bigint,
		  'alice cannot list account B''s members');
SELECT is((SELECT count(*) FROM eightms_api.profile), 1::bigint, 'the profile view shows only the current account');

-- Cross-tenant writes are refused or touch nothing.
SELECT throws_ok(format('UPDATE eightms.account SET company_name = ''pwned'' WHERE account_id = %L', (SELECT account_id FROM acct_b)),
	'42501', NULL, 'alice cannot write account B''s profile (nor her own, but through update_profile)');
-- Members are removed through remove_member only (no API role may delete
-- member rows itself, in its own account or another).
SELECT throws_ok(format('DELETE FROM eightms.member WHERE account_id = %L', (SELECT account_id FROM acct_b)),
	'42501', NULL, 'alice cannot delete account B''s members');
SELECT throws_ok(
	format('INSERT INTO eightms.invitation (account_id, email, role, token_hash, invited_by, expires_at) VALUES (%L, ''x@y.z'', ''agent'', sha256(''x''), ''alice'', now() + interval ''1 day'')',
		   (SELECT account_id FROM acct_b)),
	'42501', NULL, 'alice cannot insert an invitation into account B');
SELECT throws_ok('SELECT pgrst.as_user(''alice'', (SELECT account_id FROM acct_b))',
	'42501', 'not a member of account ' || (SELECT account_id FROM acct_b),
	'choosing an account you do not belong to is refused by the pre-request hook');
SELECT throws_ok('SELECT pgrst.request(''eightms_user'', jsonb_build_object(''sub'', ''alice'', ''account_id'', (SELECT account_id FROM acct_b)::text))',
	'42501', NULL, 'an account_id claim for a foreign account is refused too');
SELECT pgrst.reset();
SELECT is((SELECT company_name FROM eightms.account WHERE account_id = (SELECT account_id FROM acct_b)), 'Bobs Bakery',
		  'account B was not changed by alice''s update');
SELECT is((SELECT count(*) FROM eightms.member WHERE account_id = (SELECT account_id FROM acct_b)), 1::bigint,
		  'account B''s members were not deleted by alice');

-- Every tenant table: rows of account B are invisible to Alice, and her
-- updates and deletes aimed at them touch nothing, whatever the table
-- (so this holds for tables added later too).  Bob gets a session and an
-- invitation first so that B has rows in more tables.
SELECT pgrst.as_user('bob', NULL, NULL, '{"session_id":"bob-sess"}');
SELECT * FROM eightms_api.invite_member('dan@example.test') \gset bobinv_
CREATE TEMP TABLE tenant_tables AS
	SELECT c.oid::regclass::text AS rel
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	   AND a.attname = 'account_id';
GRANT SELECT ON tenant_tables TO eightms_user;
CREATE FUNCTION pg_temp.foreign_rows(rel text, acct uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
	m bigint;
	d bigint;
BEGIN
	BEGIN
		EXECUTE format('SELECT count(*) FROM %s WHERE account_id = $1', rel) INTO n USING acct;
	EXCEPTION WHEN insufficient_privilege THEN
		n := 0;
	END;
	BEGIN
		EXECUTE format('WITH u AS (UPDATE %s SET account_id = account_id WHERE account_id = $1 RETURNING 1) SELECT count(*) FROM u', rel)
		   INTO m USING acct;
	EXCEPTION WHEN insufficient_privilege THEN
		m := 0;
	END;
	BEGIN
		EXECUTE format('WITH d AS (DELETE FROM %s WHERE account_id = $1 RETURNING 1) SELECT count(*) FROM d', rel)
		   INTO d USING acct;
	EXCEPTION WHEN insufficient_privilege THEN
		d := 0;
	END;
	RETURN n + m + d;
END
$$;
SELECT pgrst.reset();
SELECT cmp_ok((SELECT count(*) FROM eightms.session WHERE account_id = (SELECT account_id FROM acct_b))
			  + (SELECT count(*) FROM eightms.invitation WHERE account_id = (SELECT account_id FROM acct_b)),
			  '>=', 2::bigint, 'account B has a session and an invitation to hide');
SELECT pgrst.as_user('alice');
SELECT is(pg_temp.foreign_rows(rel, (SELECT account_id FROM acct_b)), 0::bigint,
		  format('alice reads, updates and deletes none of account B''s rows in %s', rel))
  FROM tenant_tables;
SELECT pgrst.reset();
SELECT cmp_ok((SELECT count(*) FROM eightms.session WHERE account_id = (SELECT account_id FROM acct_b))
			  + (SELECT count(*) FROM eightms.invitation WHERE account_id = (SELECT account_id FROM acct_b)),
			  '>=', 2::bigint, 'account B''s rows are all still there');

-- Anonymous callers reach nothing but what is meant for them.
SELECT pgrst.as_anon();
SELECT throws_ok('SELECT * FROM eightms_api.create_account(''x'')', '42501', NULL,
				 'anonymous callers cannot create accounts');
SELECT throws_ok('SELECT * FROM eightms_api.profile', '42501', NULL,
				 'anonymous callers cannot read profiles');
SELECT throws_ok('SELECT * FROM eightms.account', '42501', NULL,
				 'anonymous callers cannot reach the private schema');
SELECT pgrst.reset();
SELECT is(
	ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
		   WHERE p.pronamespace = 'eightms_api'::regnamespace
			 AND has_function_privilege('eightms_anon', p.oid, 'EXECUTE')
			 AND p.proname NOT IN ('pair_phone', 'stripe_webhook', 'ghl_webhook')
		   ORDER BY 1),
	ARRAY['eightms_api.pre_request()'],
	'the anonymous role may execute only the pre-request hook and the pairing/webhook entry points');

-- Bad profile input gets its own message and SQLSTATE.
SELECT pgrst.as_user('alice');
SELECT throws_ok('SELECT eightms_api.update_profile(timezone => ''Mars/Olympus'')', '22023',
				 'unknown time zone "Mars/Olympus"', 'an unknown time zone is refused');
SELECT throws_ok('SELECT eightms_api.update_profile(timezone => ''EST5EDT,M3.2.0'')', '22023', NULL,
				 'a POSIX time zone string is not an IANA name');
SELECT throws_ok('SELECT eightms_api.update_profile(default_region => ''ZZ'')', '22023',
				 'unknown region "ZZ"', 'an unknown region code is refused');
SELECT throws_ok('SELECT eightms_api.update_profile(company_name => ''   '')', '22023', NULL,
				 'a blank company name is refused');
SELECT is((SELECT timezone FROM eightms_api.update_profile(timezone => 'Europe/Berlin', display_name => '')),
		  'Europe/Berlin', 'an owner updates the time zone');
SELECT is((SELECT display_name FROM eightms_api.get_profile()), NULL, 'an empty display name clears it');

-- Invitations: owner invites, the invitee joins with the same email only.
-- Refusals name no address: an email is personal data, and errors reach
-- logs and error trackers.
SELECT throws_ok('SELECT * FROM eightms_api.invite_member(''carol at example.test'')', '22023',
				 'invalid email address', 'a malformed address is refused without quoting it');
SELECT throws_ok(format('SELECT * FROM eightms_api.invite_member(%L)',
						(SELECT email FROM eightms.member WHERE account_id = eightms.current_account_id() LIMIT 1)),
				 '23505', 'that address is already a member of this account',
				 'a member''s own address is refused without quoting it');
CREATE TEMP TABLE inv AS SELECT * FROM eightms_api.invite_member('Carol@Example.test', 'agent');
SELECT pgrst.reset();
GRANT SELECT ON inv TO eightms_user;
SELECT is((SELECT count(*) FROM eightms.invitation WHERE token_hash = sha256(convert_to((SELECT token FROM inv), 'UTF8'))),
		  1::bigint, 'the invitation stores the SHA-256 of its token');
SELECT is((SELECT count(*) FROM eightms.invitation i, inv WHERE i.token_hash::text LIKE '%' || inv.token || '%'),
		  0::bigint, 'the raw token is not stored');
SELECT pgrst.as_user('mallory', NULL, 'mallory@example.test');
SELECT throws_ok(format('SELECT eightms_api.accept_invitation(%L)', (SELECT token FROM inv)), '42501',
				 'this invitation was sent to another email address', 'another user cannot use the invitation');
SELECT throws_ok('SELECT eightms_api.accept_invitation(''guess'')', '28000',
				 'invitation is invalid or has expired', 'a guessed token is refused');
SELECT pgrst.as_user('carol', NULL, 'carol@example.test');
SELECT is((SELECT company_name FROM eightms_api.accept_invitation((SELECT token FROM inv))), 'Acme Plumbing',
		  'the invited user joins the account');
SELECT throws_ok(format('SELECT eightms_api.accept_invitation(%L)', (SELECT token FROM inv)), '28000', NULL,
				 'an invitation works once');
-- The next request of carol's acts on the account she joined.
SELECT pgrst.as_user('carol', NULL, 'carol@example.test');
SELECT is((SELECT role FROM eightms_api.members WHERE user_id = 'carol'), 'agent', 'carol is an agent of A');
SELECT throws_ok('SELECT eightms_api.update_profile(company_name => ''Carol Co'')', '42501',
				 'this needs the owner or admin role in the account', 'agents cannot change the profile');
SELECT throws_ok('SELECT * FROM eightms_api.invite_member(''dave@example.test'')', '42501', NULL,
				 'agents cannot invite');
SELECT throws_ok('SELECT eightms_api.remove_member(''alice'')', '42501', NULL,
				 'agents cannot remove the owner');

-- Unverified emails cannot join or create.
SELECT pgrst.request('eightms_user', '{"sub":"eve","email":"eve@example.test","email_verified":false}');
SELECT throws_ok('SELECT * FROM eightms_api.create_account(''Eve Inc'')', '28000',
				 'the JWT''s email is not verified', 'an unverified email cannot create an account (the error names no email)');

-- Several accounts: the header picks one, and none is chosen by default.
SELECT pgrst.as_user('alice');
SELECT * FROM eightms_api.create_account('Acme West') \gset second_
SELECT is((SELECT company_name FROM eightms_api.get_profile()), 'Acme West',
		  'the rest of the request that created an account acts on it');
SELECT pgrst.as_user('alice');
SELECT is(eightms.current_account_id(), NULL, 'with two accounts and no header, no account is chosen');
SELECT throws_ok('SELECT * FROM eightms_api.get_profile()', '28000', 'no account selected for this request',
				 'API calls then ask for the header');
SELECT pgrst.as_user('alice', (SELECT account_id FROM acct_a));
SELECT is((SELECT company_name FROM eightms_api.get_profile()), 'Acme Plumbing', 'X-Eightms-Account picks account A');
SELECT is(eightms.jwt_claims() ->> 'account_role', 'owner', 'pre-request re-issues the claims with the role');
SELECT throws_ok($$SELECT pgrst.request('eightms_user', '{"sub":"alice","email":"alice@example.test"}',
										 '{"x-eightms-account":"acme"}')$$, '22P02', 'invalid account id "acme"',
				 'an X-Eightms-Account that is no uuid is refused with its own SQLSTATE');
SELECT lives_ok(format($$SELECT pgrst.request('eightms_user', '{"sub":"alice","email":"alice@example.test"}',
											   jsonb_build_object('x-eightms-account', upper(%L)))$$,
					   (SELECT account_id FROM acct_a)),
				'the header is read as uuid_in reads it (upper case too)');
SELECT is(eightms.current_account_id(), (SELECT account_id FROM acct_a), 'and picks that account');

-- Members: the last owner stays; owners remove and promote.
SELECT throws_ok('SELECT eightms_api.remove_member(''alice'')', '23514', 'an account must keep at least one owner',
				 'the last owner cannot be removed');
SELECT throws_ok('SELECT eightms_api.set_member_role(''alice'', ''agent'')', '23514', NULL,
				 'the last owner cannot be demoted');
SELECT lives_ok('SELECT eightms_api.set_member_role(''carol'', ''owner'')', 'an owner promotes a member to owner');
SELECT lives_ok('SELECT eightms_api.remove_member(''alice'')', 'with another owner, an owner may leave');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.member WHERE account_id = (SELECT account_id FROM acct_a)), 1::bigint,
		  'alice left account A');

-- Sessions: stored hashed; signing out refuses the session at once.
SELECT pgrst.as_user('bob', NULL, NULL, '{"session_id":"sess-123"}');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.session WHERE session_hash = sha256('sess-123')), 1::bigint,
		  'the session is recorded by the SHA-256 of its id');
SELECT is((SELECT count(*) FROM eightms.session s WHERE encode(s.session_hash, 'escape') LIKE '%sess-123%'), 0::bigint,
		  'the raw session id is not stored');
SELECT pgrst.as_user('bob', NULL, NULL, '{"session_id":"sess-123"}');
SELECT is(eightms_api.sign_out(), 1, 'sign_out revokes the current session');
SELECT throws_ok('SELECT pgrst.as_user(''bob'', NULL, NULL, ''{"session_id":"sess-123"}'')', '28000',
				 'this session has been signed out', 'a signed-out session is refused by the pre-request hook');
SELECT lives_ok('SELECT pgrst.as_user(''bob'', NULL, NULL, ''{"session_id":"sess-456"}'')',
				'a new session of the same user works');

-- JSON nulls: a missing company name is refused with its own message; a
-- null time zone or region means the default.
SELECT pgrst.as_user('nadia');
SELECT throws_ok('SELECT * FROM eightms_api.create_account(NULL)', '22023', 'company name must be 1 to 200 characters',
				 'create_account refuses a null company name (not a not-null violation)');
SELECT is((SELECT timezone || ' ' || default_region FROM eightms_api.create_account('Nadia Nails', NULL, NULL, NULL)),
		  'UTC US', 'a null time zone and region take their defaults');
SELECT throws_ok(format('SELECT eightms_api.remove_member(%L)', repeat('u', 5000)), 'P0002',
				 format('no member %s in this account', repeat('u', 100)),
				 'an error quotes at most 100 characters of what it was given');

-- The hook (C) keeps where its members' half is until a function changes:
-- one created anew, as an upgrade may, is the one it calls next.
SELECT pgrst.reset();
ALTER EXTENSION eightms DROP FUNCTION eightms.pre_request_member();
ALTER FUNCTION eightms.pre_request_member() RENAME TO pre_request_member_before;
CREATE FUNCTION eightms.pre_request_member() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('eightms_test.member_hook', 'the new one', true);
	PERFORM eightms.pre_request_member_before();
END
$$;
SELECT pgrst.as_user('bob');
SELECT is(current_setting('eightms_test.member_hook', true), 'the new one',
		  'the pre-request hook calls its members'' half created anew, not the one it called before');
SELECT is((SELECT company_name FROM eightms_api.get_profile()), 'Bobs Bakery', 'and the request acts on the account');

-- Read-only requests (PostgREST GET) pass the hook without writing.
SELECT pgrst.reset();
SET LOCAL transaction_read_only = on;
SELECT lives_ok('SELECT pgrst.as_user(''bob'', NULL, NULL, ''{"session_id":"sess-789"}'')',
				'the pre-request hook works in a read-only transaction');

SELECT * FROM finish();
ROLLBACK;
