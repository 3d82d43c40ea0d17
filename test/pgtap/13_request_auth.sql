-- The pre-request hook verifies the request's token itself, and tenancy
-- rests only on what it verified (issue 17, finding 11).  Before, any role
-- with a SQL connection could set request.jwt.claims to another tenant's
-- account and read and change its rows.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

-- Two tenants, each with a member, a phone, an invitation and a message.
SELECT pgrst.as_user('alice');
SELECT account_id AS a_acct FROM eightms_api.create_account('Alpha Audio') \gset
SELECT code AS a_code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('bob');
SELECT account_id AS b_acct FROM eightms_api.create_account('Beta Bakery') \gset
SELECT code AS b_code FROM eightms_api.create_pairing_code() \gset
SELECT token AS b_invitation FROM eightms_api.invite_member('baker@example.test') \gset
SELECT message_id AS b_message FROM eightms_api.send_message('+1 212 555 0150', 'Your bread is ready') \gset
SELECT pgrst.as_anon();
SELECT token AS a_phone_token, phone_id AS a_phone FROM eightms_api.pair_phone(:'a_code', 'android-alpha') \gset
SELECT token AS b_phone_token, phone_id AS b_phone FROM eightms_api.pair_phone(:'b_code', 'android-beta') \gset
SELECT pgrst.reset();

-- How many rows of account B a statement sees or changes, as the role now.
CREATE FUNCTION pg_temp.b_rows(sql text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	EXECUTE sql INTO n;
	RETURN n;
END
$$;

-- The reproduction, as eightms_user: bob's claims set by hand.
SELECT set_config('role', 'eightms_user', true);
SELECT set_config('request.jwt.claims', jsonb_build_object('role', 'eightms_user', 'sub', 'bob',
	'email', 'bob@example.test', 'email_verified', true, 'account_id', :'b_acct', 'account_role', 'owner')::text, true);
SELECT is(eightms.current_account_id(), NULL, 'claims set by hand name no account');
SELECT is(eightms.jwt_claims(), '{}'::jsonb, 'and are not the request''s claims');
SELECT is(pg_temp.b_rows(format('SELECT count(*) FROM %s', t)), 0::bigint,
		  format('hand-set claims see no row of %s', t))
  FROM unnest(ARRAY['eightms.account', 'eightms.member', 'eightms.invitation', 'eightms.phone',
					'eightms.message', 'eightms.conversation', 'eightms_api.profile', 'eightms_api.members',
					'eightms_api.invitations', 'eightms_api.phones', 'eightms_api.messages',
					'eightms_api.conversations']) t;
-- Nor does a relay of claims set by hand, well-formed but for its MAC
-- (on a single server no relay binds at all; on Citus only one the hook
-- made with the server's secret does).
SELECT set_config('eightms.relayed_claims', format('v1 %s %s eightms_user %s %s', repeat('0', 64),
	extract(epoch FROM now())::bigint, :'b_acct', jsonb_build_object('role', 'eightms_user', 'sub', 'bob')), true);
SELECT is(eightms.current_account_id(), NULL, 'a relay set by hand names no account');
SELECT is(pg_temp.b_rows('SELECT count(*) FROM eightms.message'), 0::bigint, 'and sees no message');
-- An account and its members are written only through the API's
-- functions: the statements themselves are refused.
SELECT throws_ok($$UPDATE eightms.account SET company_name = 'Pwned'$$, '42501', NULL,
				 'nor update the other tenant''s account');
SELECT throws_ok($$DELETE FROM eightms.member$$, '42501', NULL, 'nor delete its members');
SELECT is(pg_temp.b_rows($$WITH u AS (UPDATE eightms.conversation SET unread_count = 0 RETURNING 1) SELECT count(*) FROM u$$),
		  0::bigint, 'nor update its conversations');
SELECT is(pg_temp.b_rows($$WITH d AS (DELETE FROM eightms.message RETURNING 1) SELECT count(*) FROM d$$),
		  0::bigint, 'nor its messages');
SELECT throws_ok(format($$INSERT INTO eightms.invitation (account_id, email, role, token_hash, invited_by, expires_at)
						  VALUES (%L, 'mallory@example.test', 'owner', '\x00', 'bob', now() + interval '1 day')$$, :'b_acct'),
				 '42501', NULL, 'nor invite into it');
SELECT throws_ok($$SELECT eightms_api.update_profile('Pwned')$$, '28000', NULL,
				 'nor change its profile through the API');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0151', 'spam')$$, '28000', NULL,
				 'nor send from it');
SELECT throws_ok($$SELECT * FROM eightms_api.my_accounts()$$, '28000', 'not signed in',
				 'nor list bob''s accounts');

-- As eightms_phone: the other tenant's phone's claims set by hand.
SELECT set_config('role', 'eightms_phone', true);
SELECT set_config('request.jwt.claims', jsonb_build_object('role', 'eightms_phone', 'account_id', :'b_acct',
	'phone_id', :'b_phone', 'tv', 1)::text, true);
SELECT is(pg_temp.b_rows(format('SELECT count(*) FROM %s', t)), 0::bigint,
		  format('a phone''s hand-set claims see no row of %s', t))
  FROM unnest(ARRAY['eightms.account', 'eightms.phone', 'eightms.message', 'eightms.conversation',
					'eightms_api.profile']) t;
SELECT throws_ok($$SELECT * FROM eightms_api.claim_messages(10)$$, '42501', 'this call is for paired phones',
				 'nor claim its messages');
SELECT throws_ok($$SELECT eightms_api.heartbeat(50, 'wifi')$$, '42501', 'this call is for paired phones',
				 'nor send its heartbeat');
SELECT throws_ok(format($$SELECT * FROM eightms_api.report_messages('[{"id": "%s", "status": "sent"}]')$$, :'b_message'),
				 '42501', 'this call is for paired phones', 'nor report its messages');
SELECT is(pg_temp.b_rows($$WITH u AS (UPDATE eightms.message SET status = 'failed' RETURNING 1) SELECT count(*) FROM u$$),
		  0::bigint, 'nor update its messages directly');
SELECT pgrst.reset();

-- A caller verified for its own account who then sets another's claims
-- still acts on its own.
SELECT pgrst.as_user('alice', :'a_acct');
SELECT set_config('request.jwt.claims', jsonb_build_object('role', 'eightms_user', 'sub', 'bob',
	'account_id', :'b_acct', 'account_role', 'owner')::text, true);
SELECT is((SELECT array_agg(company_name) FROM eightms_api.profile), ARRAY['Alpha Audio'],
		  'a verified request then given another tenant''s claims by hand still sees only its own');
SELECT is(eightms.current_user_id(), 'alice', 'and is still its own user');
SELECT pgrst.as_token(:'a_phone_token');
SELECT set_config('request.jwt.claims', jsonb_build_object('role', 'eightms_phone', 'account_id', :'b_acct',
	'phone_id', :'b_phone', 'tv', 1)::text, true);
SELECT is(eightms.require_phone(), :'a_phone'::uuid, 'a verified phone given another phone''s claims is still itself');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'b_acct'), 0::bigint,
		  'and sees none of the other tenant''s messages');

-- Switching role after the hook: the binding is for the role verified.
SELECT set_config('role', 'eightms_user', true);
SELECT is(eightms.current_account_id(), NULL, 'another role after the hook has no account');
SELECT is(eightms.jwt_claims(), '{}'::jsonb, 'and no claims');
SELECT pgrst.reset();

-- Forged tokens are refused by the hook itself (PostgREST bypassed: the
-- headers as a direct SQL caller could set them).
CREATE FUNCTION pg_temp.b64url(b bytea) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT translate(encode(b, 'base64'), E'+/=\n', '-_')
$$;
CREATE FUNCTION pg_temp.signed_with(header jsonb, claims jsonb, key bytea) RETURNS text LANGUAGE sql AS $$
	SELECT h || '.' || pg_temp.b64url(public.hmac(convert_to(h, 'UTF8'), key, 'sha256'))
	  FROM (SELECT pg_temp.b64url(convert_to(header::text, 'UTF8')) || '.'
				   || pg_temp.b64url(convert_to(claims::text, 'UTF8')) AS h) x
$$;
SELECT jsonb_build_object('role', 'eightms_user', 'sub', 'bob', 'email', 'bob@example.test',
						  'email_verified', true, 'account_id', :'b_acct') AS bob_claims \gset
SELECT jsonb_build_object('role', 'eightms_phone', 'account_id', :'b_acct', 'phone_id', :'b_phone', 'tv', 1) AS phone_claims \gset
CREATE TEMP TABLE forged (what text, role text, token text, headers jsonb, sqlstate text, message text);
INSERT INTO forged (what, role, token, headers) VALUES
	('a token signed with another secret', 'eightms_user',
	 pg_temp.signed_with('{"alg":"HS256","typ":"JWT"}', :'bob_claims', convert_to(repeat('k', 48), 'UTF8')), '{}'),
	('a valid token''s signature on other claims', 'eightms_phone',
	 split_part(eightms.jwt_sign(:'phone_claims'::jsonb || jsonb_build_object('account_id', :'a_acct')), '.', 1) || '.'
	 || pg_temp.b64url(convert_to(:'phone_claims', 'UTF8')) || '.'
	 || split_part(eightms.jwt_sign(:'phone_claims'::jsonb || jsonb_build_object('account_id', :'a_acct')), '.', 3), '{}'),
	('alg none', 'eightms_user',
	 pg_temp.b64url(convert_to('{"alg":"none","typ":"JWT"}', 'UTF8')) || '.'
	 || pg_temp.b64url(convert_to(:'bob_claims', 'UTF8')) || '.', '{}'),
	('alg none with a valid token''s signature', 'eightms_phone',
	 pg_temp.b64url(convert_to('{"alg":"none","typ":"JWT"}', 'UTF8')) || '.'
	 || split_part(eightms.jwt_sign(:'phone_claims'), '.', 2) || '.'
	 || split_part(eightms.jwt_sign(:'phone_claims'), '.', 3), '{}'),
	('HS256 signed with a public key''s bytes', 'eightms_user',
	 pg_temp.signed_with('{"alg":"HS256","typ":"JWT"}', :'bob_claims', convert_to(
'-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5b1ZCkVuWKNpnMF9bjp+tTmV0quA
nvn5CewH+XMjESzgitCFKHYvUFWeERUwQ1leoqM5vA0o2sYGabpCwHt2FA==
-----END PUBLIC KEY-----
', 'UTF8')), '{}'),
	('RS256 without a configured public key', 'eightms_user',
	 pg_temp.signed_with('{"alg":"RS256","typ":"JWT"}', :'bob_claims', convert_to('anything', 'UTF8')), '{}'),
	('an expired token', 'eightms_user',
	 eightms.jwt_sign(:'bob_claims'::jsonb || jsonb_build_object('exp', extract(epoch FROM now())::bigint - 60)), '{}'),
	('an exp that is no number', 'eightms_user',
	 eightms.jwt_sign(:'bob_claims'::jsonb || '{"exp": "tomorrow"}'), '{}'),
	('a token not valid yet', 'eightms_user',
	 eightms.jwt_sign(:'bob_claims'::jsonb || jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 600)), '{}'),
	('a user''s token used as a phone', 'eightms_phone', eightms.jwt_sign(:'bob_claims'), '{}'),
	('a phone''s token used as a user', 'eightms_user', eightms.jwt_sign(:'phone_claims'), '{}'),
	('a token for the superuser used as a user', 'eightms_user',
	 eightms.jwt_sign(:'bob_claims'::jsonb || '{"role": "postgres"}'), '{}'),
	('a token without a role used as a user', 'eightms_user',
	 eightms.jwt_sign(:'bob_claims'::jsonb - 'role'), '{}'),
	('no token for a user', 'eightms_user', NULL, '{}'),
	('no token for a phone', 'eightms_phone', NULL, '{}'),
	('no token and claims set by hand', 'eightms_user', NULL, '{}'),
	('a Basic Authorization header', 'eightms_user', NULL, '{"authorization": "Basic Ym9iOmh1bnRlcjI="}'),
	('an empty bearer token', 'eightms_user', NULL, '{"authorization": "Bearer "}'),
	('a token of three empty parts', 'eightms_user', '..', '{}'),
	('a token that is no JWT', 'eightms_user', 'not-a-jwt', '{}');
CREATE FUNCTION pg_temp.try_forged() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	f record;
	st text;
	msg text;
	det text;
	hnt text;
BEGIN
	FOR f IN SELECT * FROM forged LOOP
		BEGIN
			PERFORM set_config('role', 'none', true);
			PERFORM set_config('request.jwt.claims', '{"role":"eightms_user","sub":"bob","account_id":"' ||
				(SELECT account_id FROM eightms.account WHERE company_name = 'Beta Bakery') || '"}', true);
			PERFORM set_config('request.headers', (CASE WHEN f.token IS NULL THEN '{}'::jsonb
				ELSE jsonb_build_object('authorization', 'Bearer ' || f.token) END || f.headers)::text, true);
			PERFORM set_config('role', f.role, true);
			PERFORM eightms_api.pre_request();
			UPDATE forged SET sqlstate = 'passed' WHERE what = f.what;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
				hnt = PG_EXCEPTION_HINT;
			PERFORM set_config('role', 'none', true);
			UPDATE forged SET sqlstate = st,
				message = concat_ws(' | ', msg, nullif(det, ''), nullif(hnt, '')) WHERE what = f.what;
		END;
	END LOOP;
	PERFORM set_config('role', 'none', true);
END
$$;
SELECT pg_temp.try_forged();
SELECT is(sqlstate, '28000', format('the hook refuses %s (28000)', what)) FROM forged ORDER BY what;
SELECT ok(f.message IS NOT NULL AND NOT EXISTS (
			SELECT FROM unnest(string_to_array(f.token, '.') || f.token) part
			 WHERE length(part) >= 4 AND position(part IN f.message) > 0),
		  format('the refusal of %s quotes no part of the token', f.what))
  FROM forged f ORDER BY what;
SELECT is((SELECT split_part(message, ' | ', 1) FROM forged WHERE what = t.what), t.message, format('%s: %s', t.what, t.message))
  FROM (VALUES
	('a token signed with another secret', 'invalid JWT: signature does not match'),
	('alg none', 'invalid JWT: algorithm is not HS256, RS256 or ES256'),
	('an expired token', 'invalid JWT: expired'),
	('a token not valid yet', 'invalid JWT: not valid yet'),
	('a phone''s token used as a user', 'the JWT is not for role eightms_user, which the request runs as'),
	('no token for a user', 'no bearer token for role eightms_user'),
	('a Basic Authorization header', 'the Authorization header is not a bearer token')) AS t(what, message);
SELECT pgrst.reset();

-- Anonymous callers need no token, and a token for eightms_anon is taken too.
SELECT lives_ok($$SELECT pgrst.request_token('eightms_anon', NULL)$$, 'an anonymous request without a token passes');
SELECT lives_ok($$SELECT pgrst.request('eightms_anon', '{"iss": "test"}')$$, 'an anonymous request with a token passes');
SELECT pgrst.reset();
SELECT lives_ok(format($$SELECT pgrst.request_token('eightms_user', %L, '{"authorization": "bearer %s"}')$$,
					   eightms.jwt_sign(jsonb_build_object('role', 'eightms_user', 'sub', 'bob')),
					   eightms.jwt_sign(jsonb_build_object('role', 'eightms_user', 'sub', 'bob'))),
				'the bearer scheme is read in any case');
SELECT pgrst.reset();

-- The Authorization header is found however the headers' JSON is written.
SELECT eightms.jwt_sign(jsonb_build_object('role', 'eightms_user', 'sub', 'bob')) AS bob_token \gset
CREATE FUNCTION pg_temp.with_headers(headers text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('role', 'none', true);
	PERFORM set_config('request.headers', headers, true);
	PERFORM set_config('role', 'eightms_user', true);
	PERFORM eightms_api.pre_request();
	PERFORM set_config('role', 'none', true);
	RETURN 'passed';
EXCEPTION WHEN OTHERS THEN
	PERFORM set_config('role', 'none', true);
	RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
SELECT is(pg_temp.with_headers(h), want, what)
  FROM (VALUES
	(format('{"accept": "*/*", "x-quoted": "a \"b\" c", "authorization": "Bearer %s"}', :'bob_token'), 'passed',
	 'escapes in another header''s value'),
	(format('{ "x-count" : 5 , "authorization" : "Bearer %s" }', :'bob_token'), 'passed',
	 'a member that is no string, and spaces'),
	(format('{"authorization": "Bearer x.y.z", "authorization": "Bearer %s"}', :'bob_token'), 'passed',
	 'the last of repeated names, as jsonb reads it'),
	(format('{"authorization": "Bearer %s", "authorization": "Bearer x.y.z"}', :'bob_token'),
	 '28000 invalid JWT: header is not base64url', 'the last of repeated names, refused'),
	(format('{"authoriz\u0061tion": "Bearer %s"}', :'bob_token'), 'passed', 'an escaped name'),
	(format('{"authorization": "Bearer %s"', :'bob_token'), '28000 request.headers is not JSON',
	 'headers that are no JSON are refused without quoting them'),
	('{"authorization": null}', '28000 no bearer token for role eightms_user', 'a null Authorization header is none'),
	('[]', '28000 no bearer token for role eightms_user', 'headers that are no object carry no token')) AS t(h, want, what);

-- The same token twice (a phone's every request): the second is taken
-- from the backend's cache, and its lifetime is still checked.
SELECT eightms.jwt_sign(jsonb_build_object('role', 'eightms_user', 'sub', 'bob',
					   'exp', extract(epoch FROM now())::bigint + 1)) AS short_token \gset
SELECT lives_ok(format('SELECT pgrst.request_token(''eightms_user'', %L)', :'short_token'), 'a token about to expire passes');
SELECT pgrst.reset();
SELECT * FROM finish();
ROLLBACK;
