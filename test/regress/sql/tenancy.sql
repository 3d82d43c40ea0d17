-- Exact output of the extension's validation helpers and of random_bytes.

-- Region codes: ISO 3166-1 alpha-2 (plus XK), upper case only.
SELECT code, eightms.is_region_code(code)
  FROM unnest(ARRAY['US', 'GB', 'XK', 'ZZ', 'us', 'USA', '']) AS code;
SELECT count(*) AS region_codes
  FROM unnest('{AD,ZW}'::text[]) c WHERE eightms.is_region_code(c);

-- Time zones: IANA names only.
SELECT tz, eightms.is_timezone_name(tz)
  FROM unnest(ARRAY['UTC', 'Europe/Paris', 'America/Argentina/Buenos_Aires',
					'Mars/Olympus', 'EST5EDT,M3.2.0', '+05:00', '../etc/passwd', '']) AS tz;
-- Exactly the names pg_timezone_names lists: case matters, POSIX rules
-- are not names, every listed name is one.
SELECT tz, eightms.is_timezone_name(tz)
  FROM unnest(ARRAY['europe/paris', 'XYZ3', 'Europe//Paris', 'Europe/', 'America/New_York']) AS tz;
SELECT count(*) AS listed_names_refused
  FROM pg_catalog.pg_timezone_names n WHERE NOT eightms.is_timezone_name(n.name);

-- Random bytes: the asked length, or a clear error.
SELECT length(eightms.random_bytes(1)) AS one, length(eightms.random_bytes(1024)) AS max;
SELECT eightms.random_bytes(0);
SELECT eightms.random_bytes(1025);
SELECT eightms.random_bytes(-5);
SELECT length(eightms.random_token()) AS token_chars,
	   eightms.random_token() ~ '^[A-Za-z0-9_-]+$' AS url_safe,
	   eightms.random_token() <> eightms.random_token() AS differs;

-- Token hashes are SHA-256 of the UTF-8 text.
SELECT encode(eightms.token_hash('abc'), 'hex');

-- The caller's account comes only from the pre-request hook, which
-- verifies the request's bearer token (as PostgREST passes it in
-- request.headers) and binds the claims to the transaction and role.
-- request.jwt.claims, which any role can set, gives nothing.
INSERT INTO eightms.account (account_id, company_name) VALUES
	('0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10', 'Zero'), ('1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11', 'One'),
	('2b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e12', 'Two');
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES
	('0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10', 'reg', 'reg@example.test', 'owner'),
	('1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11', 'reg', 'reg@example.test', 'agent'),
	('2b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e12', 'reg', 'reg@example.test', 'admin');
-- A request as PostgREST makes it: a signed token in the Authorization
-- header, the role it names, then the hook.
CREATE FUNCTION pg_temp.request(claims jsonb, token text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('role', 'none', true);
	PERFORM set_config('request.jwt.claims', (claims || '{"role":"eightms_user"}')::text, true);
	PERFORM set_config('request.headers', jsonb_build_object('authorization', 'Bearer ' ||
		coalesce(token, eightms.jwt_sign(claims || '{"role":"eightms_user"}')))::text, true);
	PERFORM set_config('role', 'eightms_user', true);
	PERFORM eightms_api.pre_request();
END
$$;
\set VERBOSITY terse
SELECT eightms.current_account_id() IS NULL AS no_request;
-- Claims set by hand, as an API role with SQL access could: nothing.
BEGIN;
SELECT set_config('role', 'eightms_user', true) IS NOT NULL AS as_user,
	   set_config('request.jwt.claims', '{"role":"eightms_user","sub":"reg","account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}', true) IS NOT NULL AS set;
SELECT eightms.current_account_id() IS NULL AS no_account, eightms.jwt_claims() AS claims,
	   eightms.current_user_id() IS NULL AS no_user;
SELECT set_config('eightms.verified_claims', '1 1 0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10 {}', true);
ROLLBACK;
-- Through a verified token the account_id claim picks the account (of
-- which the user must be a member), read as uuid_in reads it.
BEGIN;
SELECT pg_temp.request('{"sub":"reg","account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}');
SELECT eightms.current_account_id(), eightms.jwt_claims() ->> 'account_role' AS account_role;
SELECT pg_temp.request('{"sub":"reg","account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}');
SELECT eightms.current_account_id(), eightms.jwt_claims() ->> 'account_role' AS account_role;
SELECT pg_temp.request('{"sub":"reg","account_id":"{0B6F4C6E3F7A4E439D2A6C8F2B1D9E10}"}');
SELECT eightms.current_account_id();
SELECT count(*) AS agree FROM generate_series(1, 1000)
 WHERE eightms.current_account_id() = '0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10';
-- Claims set by hand inside a verified request change nothing.
SELECT set_config('request.jwt.claims', '{"role":"eightms_user","sub":"reg","account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}', true) IS NOT NULL AS set;
SELECT eightms.current_account_id() AS still;
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{"sub":"reg","account_id":"not-a-uuid"}');
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{"sub":"reg","account_id":42}');
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{"sub":"reg","account_id":"3b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e13"}');
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{}', eightms.jwt_encode('[1, 2]'));
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{}', eightms.jwt_encode('"text"'));
ROLLBACK;
BEGIN;
SELECT pg_temp.request('{}', eightms.jwt_encode('{not json'));
ROLLBACK;
-- With several accounts and none named, or a null account_id, none is chosen.
BEGIN;
SELECT claims, eightms.current_account_id() IS NULL AS no_account
  FROM unnest(ARRAY['{"sub":"reg","account_id":null}', '{"sub":"reg"}']::jsonb[]) AS claims,
	   LATERAL pg_temp.request(claims) AS r;
ROLLBACK;
-- The binding follows the transaction: a savepoint rolled back restores
-- the one before it, a function's own SET clause of request.jwt.claims
-- changes nothing, another role sees nothing, and the next transaction
-- starts with none (even given the same setting by a superuser).
CREATE FUNCTION pg_temp.as_other() RETURNS uuid LANGUAGE sql
SET request.jwt.claims = '{"account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}'
AS $$ SELECT eightms.current_account_id() $$;
BEGIN;
SELECT pg_temp.request('{"sub":"reg","account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}');
SAVEPOINT s;
SELECT pg_temp.request('{"sub":"reg","account_id":"2b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e12"}');
SELECT eightms.current_account_id() AS in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT eightms.current_account_id() AS after_savepoint;
SELECT pg_temp.as_other() AS in_function;
SELECT set_config('role', 'eightms_phone', true) IS NOT NULL AS as_phone;
SELECT eightms.current_account_id() IS NULL AS other_role_sees_none, eightms.jwt_claims() AS claims;
SELECT set_config('role', 'eightms_user', true) IS NOT NULL AS as_user;
SELECT eightms.current_account_id() AS same_role_again;
RESET ROLE;
SELECT current_setting('eightms.verified_claims') AS binding \gset
COMMIT;
SELECT eightms.current_account_id() IS NULL AS after_commit;
BEGIN;
SELECT set_config('eightms.verified_claims', :'binding', true) IS NOT NULL AS copied,
	   set_config('role', 'eightms_user', true) IS NOT NULL AS as_user;
SELECT eightms.current_account_id() IS NULL AS copied_binding_gives_none;
ROLLBACK;
\set VERBOSITY default

-- Profile checks name the field at fault.
SELECT eightms.check_profile('', NULL, NULL, NULL);
SELECT eightms.check_profile(NULL, 'Nowhere/Land', NULL, NULL);
SELECT eightms.check_profile(NULL, NULL, NULL, 'QQ');
SELECT eightms.check_profile('Acme', 'UTC', 'Acme', 'gb');
