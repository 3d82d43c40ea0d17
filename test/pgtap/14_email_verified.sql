-- Only a JSON true in email_verified counts as a verified email (issue 17,
-- finding 7): false, "false", "FALSE", 0, "true", 1, null and a missing
-- claim are all refused by create_account and accept_invitation.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('vera');
SELECT account_id AS acct FROM eightms_api.create_account('Vera Vision') \gset

CREATE TEMP TABLE verdict (value jsonb, call text, refused boolean, sqlstate text, message text);
GRANT ALL ON verdict TO eightms_user;
CREATE FUNCTION pg_temp.try(call text, sub text, email_verified jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	claims jsonb := jsonb_build_object('sub', sub, 'email', sub || '@example.test');
	tok text;
BEGIN
	IF email_verified IS NOT NULL THEN
		claims := claims || jsonb_build_object('email_verified', email_verified);
	END IF;
	IF call = 'accept_invitation' THEN
		PERFORM pgrst.as_user('vera', (SELECT account_id FROM eightms.account WHERE company_name = 'Vera Vision'));
		SELECT token INTO tok FROM eightms_api.invite_member(sub || '@example.test');
	END IF;
	PERFORM pgrst.request('eightms_user', claims);
	BEGIN
		IF call = 'create_account' THEN
			PERFORM eightms_api.create_account('Company of ' || sub);
		ELSE
			PERFORM eightms_api.accept_invitation(tok);
		END IF;
		INSERT INTO verdict VALUES (coalesce(email_verified, '"(missing)"'), call, false, NULL, NULL);
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO verdict VALUES (coalesce(email_verified, '"(missing)"'), call, true, SQLSTATE, SQLERRM);
	END;
END
$$;
SELECT pg_temp.try(c, c || '-' || n, v)
  FROM unnest(ARRAY['create_account', 'accept_invitation']) c,
	   unnest(ARRAY['false', '"false"', '"FALSE"', '0', '"true"', '1', 'null', NULL, 'true']::jsonb[])
		   WITH ORDINALITY AS x(v, n);
SELECT pgrst.reset();

SELECT is((SELECT count(*) FROM verdict), 18::bigint, 'every case ran');
SELECT ok(refused AND sqlstate = '28000' AND message = 'the JWT''s email is not verified',
		  format('%s with email_verified %s is refused (28000, naming no email)', call, value))
  FROM verdict WHERE value IS DISTINCT FROM 'true';
SELECT ok(NOT refused, format('%s with email_verified true is allowed', call))
  FROM verdict WHERE value = 'true';
SELECT is((SELECT count(*) FROM eightms.member WHERE user_id LIKE 'accept_invitation-%'), 1::bigint,
		  'only the verified invitee joined');
SELECT is((SELECT count(*) FROM eightms.account WHERE company_name LIKE 'Company of create_account-%'), 1::bigint,
		  'only the verified user created an account');

-- With eightms.require_verified_email off, any email is taken.
SET LOCAL eightms.require_verified_email = off;
SELECT pgrst.request('eightms_user', '{"sub":"ursula","email":"ursula@example.test","email_verified":"no"}');
SELECT lives_ok($$SELECT eightms_api.create_account('Ursula Unverified')$$,
				'with eightms.require_verified_email off an unverified email may create an account');
SELECT pgrst.reset();

SELECT * FROM finish();
ROLLBACK;
