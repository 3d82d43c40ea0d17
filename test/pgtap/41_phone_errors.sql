-- Phone numbers: every reason e164 refuses a number has SQLSTATE 22023 and
-- a message naming it; try_e164 answers NULL for the same inputs; and the
-- functions are declared as the API promises.
BEGIN;
SELECT plan(20);

SELECT throws_ok($$SELECT eightms.e164('hello', 'US')$$, '22023',
				 'invalid phone number: not a phone number', 'letters alone: not a phone number');
SELECT throws_ok($$SELECT eightms.e164('+999 1234 5678', 'US')$$, '22023',
				 'invalid phone number: invalid country code', 'an unassigned country code');
SELECT throws_ok($$SELECT eightms.e164('650 253 0000', 'XX')$$, '22023',
				 'invalid phone number: invalid country code', 'an unknown region and no + sign');
SELECT throws_ok($$SELECT eightms.e164('+1 65', 'US', false)$$, '22023',
				 'invalid phone number: too short', 'fewer digits than any US number');
SELECT throws_ok($$SELECT eightms.e164('+1 650 253 0000 1234 5678 9', 'US', false)$$, '22023',
				 'invalid phone number: too long', 'more digits than any US number');
SELECT throws_ok($$SELECT eightms.e164('+1 123 456 7890', 'US')$$, '22023',
				 'invalid phone number: not valid for its region',
				 'strict: a possible but unassigned US number');
SELECT throws_ok($$SELECT eightms.e164('650 253 0000', 'USA')$$, '22023', NULL,
				 'a region longer than an ISO code is refused, with the same SQLSTATE');
SELECT throws_ok($$SELECT eightms.e164(repeat('1', 300), 'US')$$, '22023', NULL,
				 'input over libphonenumber''s 250-character limit');

SELECT is(eightms.try_e164('+1 123 456 7890', 'US'), NULL, 'try_e164: NULL where strict e164 raises');
SELECT is(eightms.try_e164('+1 123 456 7890', 'US', false), '+11234567890', 'try_e164 non-strict accepts a possible number');
SELECT is(eightms.try_e164('+1 65', 'US', false), NULL, 'try_e164: NULL where non-strict e164 raises');
SELECT is(eightms.try_e164('650 253 0000', 'USA'), NULL, 'try_e164: NULL for a malformed region');
SELECT is(eightms.e164('650 253 0000', 'us'), '+16502530000', 'a lower-case region is read as upper case');
SELECT is(eightms.phone_type('+1 800 356 9377'), 'toll_free', 'phone_type of an international number needs no region');
SELECT is(eightms.phone_type('+44 7400 123456'), 'mobile', 'a UK mobile');
SELECT is(eightms.phone_region('+1 123 456 7890'), NULL, 'a +1 number in no region''s ranges has no region');
SELECT is(eightms.phone_region('+1 416 967 1111'), 'CA', '+1 416 is Canada');

SELECT is((SELECT array_agg(DISTINCT provolatile) FROM pg_proc
			WHERE pronamespace = 'eightms'::regnamespace
			  AND proname IN ('e164', 'try_e164', 'phone_type', 'phone_region')),
		  ARRAY['s']::"char"[], 'STABLE: a NULL region reads the account''s default, which can change');
SELECT is((SELECT array_agg(DISTINCT proparallel) FROM pg_proc
			WHERE pronamespace = 'eightms'::regnamespace
			  AND proname IN ('e164', 'try_e164', 'phone_type', 'phone_region')),
		  ARRAY['s']::"char"[], 'PARALLEL SAFE');
SELECT is((SELECT count(*) FROM pg_proc
			WHERE pronamespace = 'eightms'::regnamespace
			  AND proname IN ('e164', 'try_e164', 'phone_type', 'phone_region')), 4::bigint,
		  'exactly one of each function, so the defaults resolve without ambiguity');

SELECT * FROM finish();
ROLLBACK;
