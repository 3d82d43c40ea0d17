-- Sealing (AES-256-GCM), JWTs and webhook signatures, in SQL.
BEGIN;
SELECT * FROM no_plan();

-- Round trips.
SELECT is(eightms.unseal(eightms.seal('gho_token-123', 'ctx:a'), 'ctx:a'), 'gho_token-123', 'seal then unseal returns the text');
SELECT is(eightms.unseal(eightms.seal('', 'ctx:a'), 'ctx:a'), '', 'the empty string seals and opens');
SELECT is(eightms.unseal(eightms.seal('Grüße 👋 مرحبا', 'ctx'), 'ctx'), 'Grüße 👋 مرحبا', 'non-ASCII text survives');
SELECT is(eightms.unseal_bytes(eightms.seal_bytes('\x00ff10'::bytea, 'b'), 'b'), '\x00ff10'::bytea, 'bytes round-trip');
SELECT is(md5(eightms.unseal(eightms.seal(repeat('x', 1000000), 'big'), 'big')), md5(repeat('x', 1000000)),
		  'a 1 MB value round-trips');

-- Layout: version 1, key id, 12-byte nonce, ciphertext, 16-byte tag.
SELECT is(get_byte(eightms.seal('abc', 'c'), 0), 1, 'byte 0 is format version 1');
SELECT is(length(eightms.seal(repeat('k', 64), 'c')), 64 + 31, 'a sealed value is 31 bytes longer than its plaintext');
SELECT is(eightms.sealed_key_id(eightms.seal('abc', 'c')), (SELECT key_id FROM eightms.seal_status() WHERE active),
		  'sealed_key_id names the active key');
SELECT is((SELECT count(DISTINCT substr(eightms.seal('same', 'c'), 4, 12)) FROM generate_series(1, 2000)), 2000::bigint,
		  'every seal draws a fresh nonce (2000 seals, 2000 nonces)');
SELECT isnt(eightms.seal('same', 'c'), eightms.seal('same', 'c'), 'the same plaintext seals differently each time');

-- Failures: one SQLSTATE, one message.
SELECT throws_ok($$SELECT eightms.unseal(eightms.seal('t', 'account:1:token'), 'account:2:token')$$,
				 'E8S01', 'could not unseal value', 'a value sealed for one context does not open in another');
CREATE TEMP TABLE sealed64 AS SELECT eightms.seal(repeat('t', 64), 'flip') AS v;
CREATE FUNCTION pg_temp.bit_flips_rejected() RETURNS TABLE (flips int, rejected int, other_errors int)
LANGUAGE plpgsql AS $$
DECLARE
	v bytea := (SELECT s.v FROM sealed64 s);
	b int;
BEGIN
	flips := 0; rejected := 0; other_errors := 0;
	FOR b IN 0 .. length(v) * 8 - 1 LOOP
		flips := flips + 1;
		BEGIN
			PERFORM eightms.unseal(set_bit(v, b, 1 - get_bit(v, b)), 'flip');
		EXCEPTION
			WHEN SQLSTATE 'E8S01' THEN rejected := rejected + 1;
			WHEN OTHERS THEN other_errors := other_errors + 1;
		END;
	END LOOP;
	RETURN NEXT;
END
$$;
SELECT is((SELECT row(flips, rejected, other_errors)::text FROM pg_temp.bit_flips_rejected()), '(760,760,0)',
		  'every one of the 760 single-bit flips of a sealed 64-byte token is rejected with E8S01');
CREATE FUNCTION pg_temp.truncations_rejected() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	v bytea := (SELECT s.v FROM sealed64 s);
	n int := 0;
BEGIN
	FOR len IN 0 .. length(v) - 1 LOOP
		BEGIN
			PERFORM eightms.unseal(substr(v, 1, len), 'flip');
		EXCEPTION WHEN SQLSTATE 'E8S01' THEN n := n + 1;
		END;
	END LOOP;
	RETURN n;
END
$$;
SELECT is(pg_temp.truncations_rejected(), 95, 'every truncation (0 to 94 bytes) is rejected with E8S01');
SELECT throws_ok($$SELECT eightms.unseal(overlay(eightms.seal('t', 'c') placing '\x01fffe'::bytea from 1), 'c')$$,
				 'E8S01', 'could not unseal value', 'an unknown key id is rejected the same way');
SELECT throws_ok($$SELECT eightms.unseal(overlay(eightms.seal('t', 'c') placing '\x02'::bytea from 1), 'c')$$,
				 'E8S01', NULL, 'an unknown format version is rejected the same way');
SELECT throws_ok($$SELECT eightms.sealed_key_id('\x0102'::bytea)$$, '22023', 'not a sealed value',
				 'sealed_key_id refuses what is not a sealed value');
SELECT throws_ok($$SELECT eightms.unseal(eightms.seal_bytes('\xff'::bytea, 'c'), 'c')$$, 'E8S01', NULL,
				 'bytes that are not valid text are not returned as text');

-- Status: ids only.
SELECT is((SELECT count(*) FROM eightms.seal_status() WHERE active), 1::bigint, 'seal_status marks one key active');
SELECT is((SELECT count(*) FROM eightms.seal_status() WHERE problem IS NOT NULL), 0::bigint, 'the test key ring loaded without problems');

-- Who may open sealed values.
SELECT ok(NOT has_function_privilege(r, 'eightms.unseal(bytea, text)', 'EXECUTE'),
		  format('%s cannot unseal', r))
  FROM unnest(ARRAY['eightms_anon', 'eightms_user', 'eightms_phone', 'eightms_dba', 'public']) r;
SELECT ok(has_function_privilege('eightms_worker', 'eightms.unseal(bytea, text)', 'EXECUTE'),
		  'the bridge worker can unseal (it sends the tokens on)');
SELECT ok(NOT has_function_privilege(r, 'eightms.jwt_sign(jsonb, interval)', 'EXECUTE'),
		  format('%s cannot mint JWTs', r))
  FROM unnest(ARRAY['eightms_anon', 'eightms_user', 'eightms_phone', 'eightms_worker', 'public']) r;

-- Rotation with one key: nothing to move.
CREATE TABLE public.seal_rotation_probe (account_id int, token bytea);
INSERT INTO public.seal_rotation_probe SELECT i, eightms.seal('tok' || i, 'probe:' || i) FROM generate_series(1, 10) i;
INSERT INTO eightms.sealed_column VALUES ('public.seal_rotation_probe', 'token', $$'probe:' || account_id$$);
SELECT is((SELECT row(moved, remaining)::text FROM eightms.rotate_seals(100) WHERE table_name = 'public.seal_rotation_probe'::regclass),
		  '(0,0)', 'rotation under the only key moves nothing and leaves nothing');
SELECT throws_ok('SELECT * FROM eightms.rotate_seals(0)', '22023', NULL, 'rotation needs a positive batch size');

-- JWT.
SELECT is(eightms.jwt_verify(eightms.jwt_sign('{"sub":"phone-1","role":"eightms_phone"}', interval '1 hour')) ->> 'sub',
		  'phone-1', 'a signed token verifies and returns its claims');
SELECT is((SELECT (c ->> 'exp')::bigint - (c ->> 'iat')::bigint
			 FROM (SELECT eightms.jwt_verify(eightms.jwt_sign('{}', interval '1 hour')) AS c) s),
		  3600::bigint, 'exp is iat plus the lifetime');
SELECT ok(NOT (eightms.jwt_verify(eightms.jwt_sign('{"a":1}')) ? 'exp'), 'without a lifetime there is no exp');
SELECT is(split_part(eightms.jwt_sign('{}'), '.', 1), 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9',
		  'the header is {"alg":"HS256","typ":"JWT"}');
SELECT throws_ok($$SELECT eightms.jwt_verify(eightms.jwt_encode('{"sub":"x","exp":1000}'))$$, '28000',
				 'invalid JWT: expired', 'an expired token is refused');
SELECT throws_ok($$SELECT eightms.jwt_verify(eightms.jwt_encode(format('{"nbf":%s}', extract(epoch FROM now())::bigint + 600)))$$,
				 '28000', 'invalid JWT: not valid yet', 'a token before its nbf is refused');
SELECT throws_ok($$SELECT eightms.jwt_verify(regexp_replace(eightms.jwt_sign('{"role":"eightms_user"}'), '\.[^.]+\.', '.eyJyb2xlIjoicG9zdGdyZXMifQ.'))$$,
				 '28000', 'invalid JWT: signature does not match', 'a token whose claims were changed is refused');
SELECT throws_ok($$SELECT eightms.jwt_verify('eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.')$$,
				 '28000', NULL, 'an unsigned alg=none token is refused');
SELECT throws_ok($$SELECT eightms.jwt_verify('not-a-token')$$, '28000', 'invalid JWT: not three dot-separated parts',
				 'a malformed token is refused');
SELECT throws_ok($$SELECT eightms.jwt_verify('a.b.c.d')$$, '28000', NULL, 'four parts are refused');
SELECT throws_ok($$SELECT eightms.jwt_sign('[1,2]')$$, '22023', NULL, 'claims must be an object');

-- Stripe signatures, against pgcrypto's HMAC as the reference.
CREATE TEMP TABLE stripe AS
	SELECT '{"id":"evt_1","type":"invoice.paid"}'::text AS body,
		   floor(extract(epoch FROM clock_timestamp()))::bigint AS t,
		   'whsec_test_secret'::text AS secret;
SELECT ok(eightms.stripe_signature_valid(body, format('t=%s,v1=%s', t, encode(hmac(t || '.' || body, secret, 'sha256'), 'hex')), secret),
		  'a correct Stripe signature is accepted') FROM stripe;
SELECT ok(eightms.stripe_signature_valid(body, format('t=%s,v1=%s,v1=%s,v0=abc', t, repeat('0', 64), encode(hmac(t || '.' || body, secret, 'sha256'), 'hex')), secret),
		  'any matching v1 among several is enough (secret rollover)') FROM stripe;
SELECT ok(NOT eightms.stripe_signature_valid(body || ' ', format('t=%s,v1=%s', t, encode(hmac(t || '.' || body, secret, 'sha256'), 'hex')), secret),
		  'a changed body is refused') FROM stripe;
SELECT ok(NOT eightms.stripe_signature_valid(body, format('t=%s,v1=%s', t - 310, encode(hmac((t - 310) || '.' || body, secret, 'sha256'), 'hex')), secret),
		  'a signature 310 s old, past the 300 s tolerance, is refused') FROM stripe;
SELECT ok(eightms.stripe_signature_valid(body, format('t=%s,v1=%s', t - 310, encode(hmac((t - 310) || '.' || body, secret, 'sha256'), 'hex')), secret, 600),
		  'the tolerance is configurable') FROM stripe;
SELECT ok(NOT eightms.stripe_signature_valid(body, format('t=%s,v1=%s', t, encode(hmac(t || '.' || body, 'other', 'sha256'), 'hex')), secret),
		  'a signature made with another secret is refused') FROM stripe;
SELECT ok(NOT eightms.stripe_signature_valid(body, h, secret), format('a malformed header %L is refused', h))
  FROM stripe, unnest(ARRAY['', 't=', 'v1=abc', 't=abc,v1=' || repeat('0', 64), 't=1,t=2', 'garbage']) h;

SELECT * FROM finish();
ROLLBACK;
