-- Signing out belongs to the session and to the user, not to an account
-- or a membership (issue 17, finding 5): a signed-out session is refused in
-- every account and with no account selected, "everywhere" covers every
-- account and every token issued before it, and removing a member does not
-- bring their signed-out sessions back.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

-- A dashboard token's extra claims: its session id (if any) and an iat
-- issued age seconds before this transaction began (negative: after it).
CREATE FUNCTION pg_temp.tok(sid text, age integer DEFAULT 60) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('iat', floor(extract(epoch FROM now()))::bigint - age)
		   || CASE WHEN sid IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('session_id', sid) END
$$;

-- One request: the pre-request hook, then the call if any.  'accepted', or
-- the refusal as SQLSTATE, message and hint.
CREATE FUNCTION pg_temp.request(sub text, acct uuid, extra jsonb, call text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	PERFORM pgrst.as_user(sub, acct, NULL, extra);
	IF call IS NOT NULL THEN
		EXECUTE call;
	END IF;
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN st || ' ' || msg || ' (' || coalesce(hint, '') || ')';
END
$$;

-- A request that signs out: how many sessions it signed out, or the refusal.
CREATE FUNCTION pg_temp.sign_out(sub text, acct uuid, extra jsonb, everywhere boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
BEGIN
	PERFORM pgrst.as_user(sub, acct, NULL, extra);
	RETURN eightms_api.sign_out(everywhere)::text;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	RETURN st || ' ' || msg;
END
$$;

-- The calls a signed-in user makes with no account selected, each as its
-- own request of sub with the token's extra claims: what each answered.
CREATE FUNCTION pg_temp.no_account_calls(sub text, extra jsonb, invitation text)
RETURNS TABLE (call text, answer text)
LANGUAGE sql AS $$
	SELECT c.call, pg_temp.request(sub, NULL, extra, c.stmt)
	  FROM (VALUES ('my_accounts', 'SELECT * FROM eightms_api.my_accounts()'),
				   ('create_account', format('SELECT * FROM eightms_api.create_account(%L)', sub || ' Co')),
				   ('accept_invitation', format('SELECT * FROM eightms_api.accept_invitation(%L)', invitation)))
		   AS c(call, stmt)
$$;

CREATE TEMP TABLE expected (refused text);
INSERT INTO expected VALUES ('28000 this session has been signed out (Sign in again to get a new session.)');
GRANT SELECT ON expected TO eightms_user;

-- so-alice owns accounts A and B; so-bob owns C.
SELECT pgrst.as_user('so-alice');
SELECT account_id AS a FROM eightms_api.create_account('Alpha') \gset
SELECT pgrst.as_user('so-alice');
SELECT account_id AS b FROM eightms_api.create_account('Beta') \gset
SELECT pgrst.as_user('so-bob');
SELECT account_id AS c FROM eightms_api.create_account('Charlie') \gset
SELECT pgrst.reset();

-- 1. Signed out in account A, the session is refused in account B and with
-- no account selected.
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s1')), 'accepted', 'session s1 works in account B');
SELECT is(pg_temp.sign_out('so-alice', :'a', pg_temp.tok('s1')), '1', 'sign_out in account A revokes session s1');
SELECT is(pg_temp.request('so-alice', :'a', pg_temp.tok('s1')), (SELECT refused FROM expected),
		  'the signed-out session is refused in account A');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s1')), (SELECT refused FROM expected),
		  'the session signed out in account A is refused in account B too');
SELECT is(pg_temp.request('so-alice', NULL, pg_temp.tok('s1')), (SELECT refused FROM expected),
		  'and with no account selected');
SELECT is(pg_temp.request('so-alice', NULL, jsonb_build_object('sid', 's1')), (SELECT refused FROM expected),
		  'the sid claim names the same session');
-- With no account selected (so-alice has two), it reaches nothing.
SELECT pgrst.as_user('so-bob', :'c');
SELECT token AS alice_token FROM eightms_api.invite_member('so-alice@example.test') \gset
SELECT is(answer, (SELECT refused FROM expected),
		  format('the session signed out in account A cannot call %s with no account selected', call))
  FROM pg_temp.no_account_calls('so-alice', pg_temp.tok('s1'), :'alice_token');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.member WHERE user_id = 'so-alice'), 2::bigint,
		  'so-alice created and joined nothing with it');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s2')), 'accepted',
		  'another session of the same user still works');

-- 2. Everywhere, from account A: every account, no account, every token
-- issued before it (with or without a session id), whether or not eightms
-- had seen its session.
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s3')), 'accepted', 'session s3 works in account B');
SELECT is(pg_temp.sign_out('so-alice', :'a', pg_temp.tok('s2'), everywhere => true), '2',
		  'sign_out(everywhere) revokes the sessions seen in every account (s2 in A, s3 in B)');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s3')), (SELECT refused FROM expected),
		  'after sign_out(everywhere) in A, a session seen in B is refused in B');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s-unseen')), (SELECT refused FROM expected),
		  'a session never seen, issued before the sign-out, is refused');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok(NULL)), (SELECT refused FROM expected),
		  'a token with no session id, issued before the sign-out, is refused');
-- The second of the sign-out as it was recorded (with PostgREST, as on
-- Citus, a later request has a now() of its own, maybe a second later).
SELECT pgrst.reset();
SELECT floor(extract(epoch FROM signed_out_at))::bigint AS signed_out_s FROM eightms.user_revocation
 WHERE user_id = 'so-alice' \gset
SELECT is(pg_temp.request('so-alice', :'b', jsonb_build_object('iat', :signed_out_s)), (SELECT refused FROM expected),
		  'a token issued in the same second as the sign-out is refused');
-- (A null iat: pgrst's signing adds the time of the request otherwise.)
SELECT is(pg_temp.request('so-alice', :'b', '{"iat": null}'), (SELECT refused FROM expected),
		  'a token with no iat is refused once the user signed out everywhere');
SELECT is(pg_temp.request('so-alice', :'b', '{"iat": "2999999999"}'), (SELECT refused FROM expected),
		  'an iat that is not a JSON number counts as none');
SELECT is(pg_temp.request('so-alice', NULL, pg_temp.tok('s-unseen'), 'SELECT * FROM eightms_api.my_accounts()'),
		  (SELECT refused FROM expected), 'my_accounts with no account selected is refused after sign_out(everywhere)');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s4', -1)), 'accepted',
		  'a token issued after the sign-out works in B');
SELECT is(pg_temp.request('so-alice', NULL, pg_temp.tok('s4', -1)), 'accepted',
		  'and with no account selected');
SELECT is((SELECT count(*) FROM eightms_api.my_accounts()), 2::bigint, 'where my_accounts lists both accounts');
SELECT is(pg_temp.request('so-bob', :'c', pg_temp.tok('bob-1')), 'accepted',
		  'another user''s tokens are not touched');

-- 3. With no account selected, a signed-out session reaches nothing: not
-- my_accounts, create_account nor accept_invitation.  so-carol belongs to
-- no account, and signs out with none selected.
SELECT pgrst.as_user('so-bob', :'c');
SELECT token AS carol_token FROM eightms_api.invite_member('so-carol@example.test') \gset
SELECT pgrst.as_user('so-carol', NULL, NULL, pg_temp.tok('c1'));
SELECT is(eightms.current_account_id(), NULL, 'so-carol acts on no account');
SELECT is(pg_temp.sign_out('so-carol', NULL, pg_temp.tok('c1')), '1', 'sign_out works with no account selected');
SELECT is(answer, (SELECT refused FROM expected),
		  format('the session signed out with no account selected cannot call %s', call))
  FROM pg_temp.no_account_calls('so-carol', pg_temp.tok('c1'), :'carol_token');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.member WHERE user_id = 'so-carol'), 0::bigint,
		  'so-carol joined and created nothing');
SELECT is(pg_temp.sign_out('so-carol', NULL, pg_temp.tok(NULL), everywhere => true), '0',
		  'sign_out(everywhere) works with no account and no session id (nothing seen to count)');
SELECT is(pg_temp.request('so-carol', NULL, pg_temp.tok('c2'), 'SELECT * FROM eightms_api.my_accounts()'),
		  (SELECT refused FROM expected), 'and refuses the user''s older tokens');
SELECT is(pg_temp.request('so-carol', NULL, pg_temp.tok('c3', -1),
						  format('SELECT * FROM eightms_api.accept_invitation(%L)', :'carol_token')),
		  'accepted', 'a new sign-in joins with the invitation');

-- A user with two accounts and none selected signs out the session.
SELECT pgrst.as_user('so-alice', NULL, NULL, pg_temp.tok('s5', -1));
SELECT is(eightms.current_account_id(), NULL, 'so-alice, in two accounts, acts on none without the header');
SELECT is(pg_temp.sign_out('so-alice', NULL, pg_temp.tok('s5', -1)), '1', 'sign_out works there too');
SELECT is(pg_temp.request('so-alice', :'a', pg_temp.tok('s5', -1)), (SELECT refused FROM expected),
		  'and the session is refused in account A afterwards');

-- 4. Removing a member and inviting them again does not revive their
-- signed-out session.
SELECT pgrst.as_user('so-bob', :'c');
SELECT token AS dave_token FROM eightms_api.invite_member('so-dave@example.test') \gset
SELECT is(pg_temp.request('so-dave', NULL, pg_temp.tok('d1'), format('SELECT eightms_api.accept_invitation(%L)', :'dave_token')),
		  'accepted', 'so-dave joins account C');
SELECT is(pg_temp.request('so-dave', :'c', pg_temp.tok('d1')), 'accepted', 'session d1 acts on account C');
SELECT is(pg_temp.sign_out('so-dave', :'c', pg_temp.tok('d1')), '1', 'so-dave signs out d1');
SELECT pgrst.as_user('so-bob', :'c');
SELECT lives_ok($$SELECT eightms_api.remove_member('so-dave')$$, 'so-bob removes so-dave');
-- The session table has no foreign key to member (on Citus it stays on the
-- coordinator): a member's recorded sessions go with the member all the same.
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.session WHERE account_id = :'c' AND user_id = 'so-dave'), 0::bigint,
		  'removing a member forgets the sessions recorded for them');
SELECT pgrst.as_user('so-bob', :'c');
SELECT token AS dave_token2 FROM eightms_api.invite_member('so-dave@example.test') \gset
SELECT is(pg_temp.request('so-dave', NULL, pg_temp.tok('d2', -1), format('SELECT eightms_api.accept_invitation(%L)', :'dave_token2')),
		  'accepted', 'so-dave joins account C again with a new session');
SELECT is(pg_temp.request('so-dave', :'c', pg_temp.tok('d1')), (SELECT refused FROM expected),
		  'the session signed out before the removal is still refused');
SELECT is(pg_temp.request('so-dave', :'c', pg_temp.tok('d2', -1)), 'accepted', 'the new session works');

-- Deleting the account does not revive them either.
SELECT pgrst.as_user('so-bob', :'c', NULL, pg_temp.tok('bob-1'));
SELECT lives_ok($$SELECT eightms_api.delete_account('Charlie')$$, 'so-bob deletes account C');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.session WHERE account_id = :'c'), 0::bigint,
		  'deleting an account forgets the sessions recorded in it');
SELECT is(pg_temp.request('so-dave', NULL, pg_temp.tok('d1'), 'SELECT * FROM eightms_api.my_accounts()'),
		  (SELECT refused FROM expected), 'd1 stays signed out after its account is gone');
SELECT pgrst.reset();

-- The revocations are global tables, out of the API roles' reach.
SELECT is(count(*), 0::bigint, 'no API role has any privilege on the revocation tables')
  FROM (VALUES ('eightms.session_revocation'), ('eightms.user_revocation')) t(rel),
	   (VALUES ('eightms_anon'), ('eightms_user'), ('eightms_phone')) r(role),
	   (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) p(priv)
 WHERE has_table_privilege(r.role, t.rel, p.priv);
SELECT is((SELECT count(*) FROM eightms.session_revocation
			WHERE session_hash IN (sha256('s1'), sha256('s2'), sha256('s3'), sha256('d1'))), 4::bigint,
		  'revocations are kept by the SHA-256 of the session id');
SELECT is((SELECT count(*) FROM eightms.session_revocation r WHERE encode(r.session_hash, 'escape') LIKE '%s1%'),
		  0::bigint, 'never the raw id');

-- Retention: a revocation matters until the tokens it refuses have
-- expired; the daily job purges older ones.
UPDATE eightms.session_revocation SET revoked_at = now() - interval '31 days' WHERE session_hash = sha256('s1');
UPDATE eightms.user_revocation SET signed_out_at = now() - interval '31 days' WHERE user_id = 'so-carol';
SELECT is(eightms.purge_session_revocations(), 2::bigint, 'the purge deletes revocations older than 30 days');
SELECT is((SELECT count(*) FROM eightms.session_revocation WHERE session_hash = sha256('s1')), 0::bigint,
		  'the old session revocation is gone');
SELECT is((SELECT count(*) FROM eightms.user_revocation), 1::bigint, 'the recent sign-out everywhere stays');
SELECT is(pg_temp.request('so-alice', :'b', pg_temp.tok('s3')), (SELECT refused FROM expected),
		  'and still refuses what it refused');
SELECT is((SELECT command FROM eightms.scheduled_job WHERE job_name = 'eightms-run-purges')
		  || ' ' || eightms.retention_keep('session_revocation') || ' ' || eightms.retention_keep('user_revocation'),
		  'CALL eightms.purge() 30 days 30 days',
		  'the purge is a registered job: eightms.purge() keeps revocations 30 days');

SELECT * FROM finish();
ROLLBACK;
