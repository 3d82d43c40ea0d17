-- sms.sql: SMS encoding and segmentation (src/sms/sms_encoding.c).

CREATE FUNCTION eightms.sms_info(body text,
	OUT encoding text, OUT segments integer, OUT characters integer, OUT units integer,
	OUT fold_changes_encoding boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'eightms_sms_info'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.sms_info(text) IS
	'GSM-7 or UCS-2, segments (160/153 or 70/67), characters, septets or UTF-16 units, and whether folding look-alikes (eightms.sms_fold) would change the encoding';

CREATE FUNCTION eightms.sms_fold(body text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_sms_fold'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.sms_fold(text) IS
	'Fold curly quotes, dashes, ellipsis and special spaces to their GSM-7 look-alikes';

GRANT EXECUTE ON FUNCTION eightms.sms_info(text), eightms.sms_fold(text)
TO eightms_user, eightms_phone, eightms_dba, eightms_worker;
