-- Only a JSON true in email_verified counts as a verified email (issue 17,
-- finding 7): false, "false", "FALSE", 0, "true", 1, null and a missing
-- claim are all refused by create_account and accept_invitation.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('vera');
SELECT account_id AS acct FROM eightms_api.create_account('Vera Vision') \gset

-- The values of email_verified tried, numbered: case n is the user
-- create_account-n or accept_invitation-n.
CREATE TEMP TABLE claim_value AS
SELECT n::integer, v AS value
  FROM unnest(ARRAY['false', '"false"', '"FALSE"', '0', '"true"', '1', 'null', NULL, 'true']::jsonb[])
	   WITH ORDINALITY AS x(v, n);
CREATE TEMP TABLE invitation (n integer, token text);
CREATE TEMP TABLE verdict (value jsonb, call text, refused boolean, sqlstate text, message text);
GRANT ALL ON claim_value, invitation, verdict TO eightms_user;

-- Vera invites each accept_invitation-n.
INSERT INTO invitation
SELECT n, (SELECT token FROM eightms_api.invite_member(format('accept_invitation-%s@example.test', n)))
  FROM claim_value;

-- Case n of a call: a request of its own, as the dashboard makes it, by
-- a user whose JWT carries the case's email_verified (none for NULL).
CREATE FUNCTION pg_temp.try(call text, n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	sub text := call || '-' || n;
	email_verified jsonb := (SELECT v.value FROM claim_value v WHERE v.n = try.n);
	claims jsonb := jsonb_build_object('sub', sub, 'email', sub || '@example.test');
BEGIN
	IF email_verified IS NOT NULL THEN
		claims := claims || jsonb_build_object('email_verified', email_verified);
	END IF;
	PERFORM pgrst.request('eightms_user', claims);
	BEGIN
		IF call = 'create_account' THEN
			PERFORM eightms_api.create_account('Company of ' || sub);
		ELSE
			PERFORM eightms_api.accept_invitation((SELECT i.token FROM invitation i WHERE i.n = try.n));
		END IF;
		INSERT INTO verdict VALUES (coalesce(email_verified, '"(missing)"'), call, false, NULL, NULL);
	EXCEPTION WHEN OTHERS THEN
		INSERT INTO verdict VALUES (coalesce(email_verified, '"(missing)"'), call, true, SQLSTATE, SQLERRM);
	END;
END
$$;
-- One statement per case: each a request of its own (on Citus, a user's
-- request that follows another's in one transaction would be refused the
-- shards the other wrote: test/citus.sh runs each statement as a request).
SELECT pg_temp.try('create_account', 1);
SELECT pg_temp.try('create_account', 2);
SELECT pg_temp.try('create_account', 3);
SELECT pg_temp.try('create_account', 4);
SELECT pg_temp.try('create_account', 5);
SELECT pg_temp.try('create_account', 6);
SELECT pg_temp.try('create_account', 7);
SELECT pg_temp.try('create_account', 8);
SELECT pg_temp.try('create_account', 9);
SELECT pg_temp.try('accept_invitation', 1);
SELECT pg_temp.try('accept_invitation', 2);
SELECT pg_temp.try('accept_invitation', 3);
SELECT pg_temp.try('accept_invitation', 4);
SELECT pg_temp.try('accept_invitation', 5);
SELECT pg_temp.try('accept_invitation', 6);
SELECT pg_temp.try('accept_invitation', 7);
SELECT pg_temp.try('accept_invitation', 8);
SELECT pg_temp.try('accept_invitation', 9);
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
