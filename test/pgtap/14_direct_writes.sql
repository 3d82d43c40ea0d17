-- Columns that name what someone may do are written by eightms's own
-- functions, after their checks, never by an API role's own SQL, even
-- within its own account (issue 17, finding 1's review): a member's and an
-- invitation's role, pairing codes, and a phone's token version and
-- unpairing.  A caller who can run SQL as eightms_user or eightms_phone
-- (not through PostgREST, which exposes only eightms_api) gains nothing.
BEGIN;
SELECT plan(22);
SELECT pgrst.share_tap();

SELECT pgrst.as_user('uma');
SELECT account_id AS acct FROM eightms_api.create_account('Uma Umbrellas') \gset
SELECT token FROM eightms_api.invite_member('vic@example.test', 'agent') \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('vic');
SELECT eightms_api.accept_invitation(:'token');
SELECT pgrst.as_anon();
SELECT phone_id AS phone FROM eightms_api.pair_phone(:'code', 'uma-phone-1') \gset
SELECT pgrst.as_user('uma', :'acct');
SELECT code AS code2 FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon();
SELECT phone_id AS phone2 FROM eightms_api.pair_phone(:'code2', 'uma-phone-2') \gset
SELECT pgrst.as_user('uma', :'acct');
SELECT eightms_api.unpair_phone(:'phone2');

-- Vic, an agent, with SQL of his own in his own account.
SELECT pgrst.as_user('vic', :'acct');
SELECT throws_ok($$UPDATE eightms.member SET role = 'owner' WHERE user_id = 'vic'$$, '42501', NULL,
				 'an agent cannot make himself owner by writing member.role');
SELECT throws_ok(format($$INSERT INTO eightms.invitation (account_id, email, role, token_hash, invited_by, expires_at)
						  VALUES (%L, 'vic2@example.test', 'owner', eightms.token_hash('mine'), 'uma', now() + interval '1 day')$$, :'acct'),
				 '42501', NULL, 'nor invite himself as owner by inserting an invitation');
SELECT throws_ok($$DELETE FROM eightms.member WHERE user_id = 'uma'$$, '42501', NULL,
				 'nor remove the owner by deleting her member row');
SELECT throws_ok(format($$INSERT INTO eightms.pairing_code (account_id, code_hash, created_by, expires_at)
						  VALUES (%L, eightms.token_hash('VICSPHONE1'), 'vic', now() + interval '1 hour')$$, :'acct'),
				 '42501', NULL, 'nor make a pairing code (owners and admins only)');
SELECT throws_ok($$UPDATE eightms.pairing_code SET used_at = NULL$$, '42501', NULL,
				 'nor make a used pairing code usable again');
SELECT throws_ok(format($$UPDATE eightms.phone SET unpaired_at = NULL, token_version = 1 WHERE phone_id = %L$$, :'phone2'),
				 '42501', NULL, 'nor revive an unpaired phone''s revoked device token');
SELECT throws_ok(format($$INSERT INTO eightms.phone (account_id, device_id) VALUES (%L, 'vic-phone')$$, :'acct'),
				 '42501', NULL, 'nor add a phone without pairing it');
SELECT throws_ok('SELECT eightms_api.set_member_role(''vic'', ''owner'')', '42501', NULL,
				 'and the API still refuses him the owner''s calls');
SELECT throws_ok($$UPDATE eightms.account SET company_name = 'Vic Ventures'$$, '42501', NULL,
				 'nor rename the account (owners and admins only)');
SELECT throws_ok($$UPDATE eightms.account SET fold_lookalikes = true$$, '42501', NULL,
				 'nor change its message options');
SELECT throws_ok($$DELETE FROM eightms.account$$, '42501', NULL,
				 'nor delete the account (its owner only)');
SELECT throws_ok($$UPDATE eightms.invitation SET revoked_at = NULL$$, '42501', NULL,
				 'nor reopen a revoked invitation');

-- A paired phone, with SQL of its own.
SELECT pgrst.as_phone(:'acct', :'phone');
SELECT throws_ok(format($$UPDATE eightms.phone SET unpaired_at = NULL, token_version = 1 WHERE phone_id = %L$$, :'phone2'),
				 '42501', NULL, 'a phone cannot revive another phone''s revoked device token');
SELECT throws_ok(format($$UPDATE eightms.phone SET rate_limit = NULL WHERE phone_id = %L$$, :'phone'),
				 '42501', NULL, 'nor lift its own pacing');
SELECT lives_ok($$SELECT eightms_api.heartbeat(80, 'wifi', true, '1.0', 'gw-pass-1')$$,
				'its heartbeat still records its telemetry');
SELECT lives_ok('SELECT count(*) FROM eightms_api.claim_messages(1)', 'and it still claims (and locks its pacing row)');

-- The owner's calls still do what the agent could not.
SELECT pgrst.as_user('uma', :'acct');
SELECT lives_ok('SELECT eightms_api.set_phone_pacing(' || quote_literal(:'phone') || ', 5, ''1 hour'')',
				'the owner still sets a phone''s pacing');
SELECT lives_ok('SELECT eightms_api.set_member_role(''vic'', ''admin'')', 'the owner changes vic''s role');
SELECT lives_ok('SELECT eightms_api.remove_member(''vic'')', 'and removes him');
SELECT is((SELECT company_name FROM eightms_api.update_profile('Uma Umbrellas Ltd')), 'Uma Umbrellas Ltd',
		  'the owner still renames the account through the API');
SELECT pgrst.reset();
SELECT is((SELECT string_agg(user_id || ':' || role, ',' ORDER BY user_id) FROM eightms.member WHERE account_id = :'acct'),
		  'uma:owner', 'only the owner is left, still owner');
SELECT ok((SELECT token_version = 2 AND unpaired_at IS NOT NULL FROM eightms.phone WHERE phone_id = :'phone2'),
		  'the unpaired phone stays unpaired, its token version bumped');

SELECT * FROM finish();
ROLLBACK;
