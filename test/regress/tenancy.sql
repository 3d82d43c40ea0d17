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
RESET request.jwt.claims;

-- Profile checks name the field at fault.
SELECT eightms.check_profile('', NULL, NULL, NULL);
SELECT eightms.check_profile(NULL, 'Nowhere/Land', NULL, NULL);
SELECT eightms.check_profile(NULL, NULL, NULL, 'QQ');
SELECT eightms.check_profile('Acme', 'UTC', 'Acme', 'gb');
