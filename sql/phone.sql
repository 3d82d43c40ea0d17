-- phone.sql: phone numbers with libphonenumber's answers (src/phone/).
-- A NULL region means the default region of the account the request acts
-- on; that is why these functions are STABLE and not STRICT.

CREATE FUNCTION eightms.e164(raw text, region text DEFAULT NULL, strict boolean DEFAULT true)
RETURNS text
AS 'MODULE_PATHNAME', 'eightms_e164'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eightms.e164(text, text, boolean) IS
	'The E.164 form of a phone number read in region (default: the account''s); strict requires a valid number, else a possible one; raises 22023 naming the reason';

CREATE FUNCTION eightms.try_e164(raw text, region text DEFAULT NULL, strict boolean DEFAULT true)
RETURNS text
AS 'MODULE_PATHNAME', 'eightms_try_e164'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eightms.try_e164(text, text, boolean) IS 'As eightms.e164, but NULL instead of an error';

CREATE FUNCTION eightms.phone_type(number text, region text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'eightms_phone_type'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eightms.phone_type(text, text) IS
	'fixed_line, mobile, fixed_line_or_mobile, toll_free, premium_rate, shared_cost, voip, personal_number, pager, uan, voicemail or unknown; NULL when not a phone number';

CREATE FUNCTION eightms.phone_region(number text, region text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'eightms_phone_region'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eightms.phone_region(text, text) IS
	'The ISO 3166 region of a phone number ("001" for non-geographic numbers), NULL when none';

GRANT EXECUTE ON FUNCTION eightms.e164(text, text, boolean), eightms.try_e164(text, text, boolean),
	eightms.phone_type(text, text), eightms.phone_region(text, text)
TO eightms_user, eightms_phone, eightms_dba, eightms_worker;
