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

-- The caller's account comes from request.jwt.claims only.
SELECT eightms.current_account_id() IS NULL AS no_claims;
SELECT set_config('request.jwt.claims', '{"account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT set_config('request.jwt.claims', '{"account_id":"not-a-uuid"}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
-- It keeps the last claims parsed: a change of claims is always seen, a
-- failed parse keeps nothing, and it agrees with the SQL spelled out.
SELECT set_config('request.jwt.claims', '{"account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT set_config('request.jwt.claims', '{"role":"eightms_user","account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT set_config('request.jwt.claims', '{"account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT set_config('request.jwt.claims', '{not json', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT set_config('request.jwt.claims', '{"account_id": 42}', false) IS NOT NULL AS set;
SELECT eightms.current_account_id();
SELECT claims, eightms.current_account_id() IS NULL AS no_account
  FROM unnest(ARRAY['{"account_id":null}', '{"sub":"someone"}', '[1, 2]', '"text"', '']) AS claims,
	   LATERAL set_config('request.jwt.claims', claims, false) AS s;
SELECT set_config('request.jwt.claims', '{"account_id":"{0B6F4C6E3F7A4E439D2A6C8F2B1D9E10}"}', false) IS NOT NULL AS set;
SELECT count(*) AS agree FROM generate_series(1, 1000)
 WHERE eightms.current_account_id()
	   = (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'account_id')::uuid;
RESET request.jwt.claims;
-- The cache follows every way the setting changes: RESET, a transaction's
-- SET LOCAL and its end (commit or rollback restores the value), a
-- savepoint rolled back, and a function's own SET clause.
SELECT eightms.current_account_id() IS NULL AS after_reset;
SELECT set_config('request.jwt.claims', '{"account_id":"0b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e10"}', false) IS NOT NULL AS set;
BEGIN;
SELECT set_config('request.jwt.claims', '{"account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}', true) IS NOT NULL AS set_local;
SELECT eightms.current_account_id() AS in_transaction;
SAVEPOINT s;
SET LOCAL request.jwt.claims = '{"account_id":"2b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e12"}';
SELECT eightms.current_account_id() AS in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT eightms.current_account_id() AS after_savepoint;
ROLLBACK;
SELECT eightms.current_account_id() AS after_rollback;
BEGIN;
SET LOCAL request.jwt.claims = '{"account_id":"1b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e11"}';
SELECT eightms.current_account_id() AS set_local;
COMMIT;
SELECT eightms.current_account_id() AS after_commit;
CREATE FUNCTION pg_temp.as_other() RETURNS uuid LANGUAGE sql
SET request.jwt.claims = '{"account_id":"3b6f4c6e-3f7a-4e43-9d2a-6c8f2b1d9e13"}'
AS $$ SELECT eightms.current_account_id() $$;
SELECT pg_temp.as_other() AS in_function;
SELECT eightms.current_account_id() AS after_function;
RESET request.jwt.claims;
SELECT eightms.current_account_id() IS NULL AS reset_again;

-- Profile checks name the field at fault.
SELECT eightms.check_profile('', NULL, NULL, NULL);
SELECT eightms.check_profile(NULL, 'Nowhere/Land', NULL, NULL);
SELECT eightms.check_profile(NULL, NULL, NULL, 'QQ');
SELECT eightms.check_profile('Acme', 'UTC', 'Acme', 'gb');
