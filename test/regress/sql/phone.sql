-- Phone numbers in SQL: E.164, validity, type, region, and the errors.
SELECT raw, region, eightms.try_e164(raw, region) AS valid_e164, eightms.try_e164(raw, region, false) AS possible_e164,
	   eightms.phone_type(raw, region) AS type, eightms.phone_region(raw, region) AS of_region
  FROM (VALUES
	('+1 650-253-0000', 'US'), ('(650) 253-0000', 'US'), ('020 7946 0018', 'GB'),
	('+44 20 7946 0018', 'ZZ'), ('011 44 20 7946 0018', 'US'), ('0 11 4123 4567', 'AR'),
	('011 15 2345 6789', 'AR'), ('+39 06 1234 5678', 'IT'), ('1-800-FLOWERS', 'US'),
	('tel:+1-650-253-0000;ext=123', 'US'), ('+1 650 253 0000 ext. 77', 'US'),
	('＋４４ ２０ ７９４６ ００１８', 'GB'), ('+7 701 123 4567', 'RU'), ('+1 242 359 1234', 'US'),
	('+800 1234 5678', 'US'), ('07700 900123', 'GB'), ('+52 1 55 1234 5678', 'MX'),
	('us', 'us')) AS v(raw, region)
 WHERE raw <> 'us';

-- Possible but not valid: strict refuses, non-strict accepts.
SELECT eightms.e164('+1 123 456 7890', 'US', false) AS possible;
SELECT eightms.e164('+1 123 456 7890', 'US');
SELECT eightms.try_e164('+1 123 456 7890', 'US') IS NULL AS refused;

-- Each reason has its own message; all are SQLSTATE 22023.
SELECT eightms.e164('hello', 'US');
SELECT eightms.e164('+999 1234 5678', 'US');
SELECT eightms.e164('650 253 0000', NULL);
SELECT eightms.e164('1', 'US');
SELECT eightms.e164('+1 650 253 0000 1234 5678 9', 'US', false);
SELECT eightms.e164('+1 65', 'US', false);
SELECT eightms.e164('650 253 0000', 'XX');
SELECT eightms.try_e164('hello', 'US') IS NULL AS try_null, eightms.try_e164(NULL, 'US') IS NULL AS null_in;
SELECT eightms.phone_type('not a number', 'US') IS NULL AS type_null, eightms.phone_region('+999 1', 'US') IS NULL AS region_null;
