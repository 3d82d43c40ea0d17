-- Exact messages of the sealing, JWT and signature functions.  Values that
-- depend on random nonces or the test key ring are reduced to what is fixed.
SELECT length(eightms.seal('0123456789', 'c')) AS sealed_len,
	   get_byte(eightms.seal('x', 'c'), 0) AS version;
SELECT eightms.unseal('\x01'::bytea, 'c');
SELECT eightms.unseal(eightms.seal('x', 'a'), 'b');
SELECT eightms.sealed_key_id('\x02'::bytea);
SELECT eightms.sealed_key_id('\x0100070000000000000000000000000000000000000000000000000000000000'::bytea);
SELECT count(*) AS keys, count(*) FILTER (WHERE active) AS active FROM eightms.seal_status();
SELECT * FROM eightms.rotate_seals(-1);

-- JWT: fixed header, errors by cause.
SELECT split_part(eightms.jwt_sign('{"sub":"a"}'), '.', 1) AS header;
SELECT eightms.jwt_verify('');
SELECT eightms.jwt_verify('a.b');
SELECT eightms.jwt_verify('eyJhbGciOiJIUzI1NiJ9.e30.AAAA');
SELECT eightms.jwt_verify('eyJhbGciOiJIUzI1NiJ9.e30.!!!!');
SELECT eightms.jwt_sign('"text"');
SELECT eightms.jwt_sign('{}', interval '-1 second');

-- Signatures: malformed input is false, a bad key is an error.
SELECT eightms.stripe_signature_valid('{}', 't=1,v1=zz', 'whsec_x') AS bad_hex;
SELECT eightms.stripe_signature_valid('{}', 't=1,v1=' || repeat('a', 64), '') AS empty_secret;
SELECT eightms.stripe_signature_valid('{}', 't=1', 'whsec_x', -1) AS negative_tolerance;
SELECT eightms.ed25519_verify('msg', 'c2ln', 'MCowBQYDK2VwAyEA') AS short_key;
SELECT eightms.ed25519_verify('msg', 'not base64!', 'O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=') AS bad_signature;
