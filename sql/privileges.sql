-- privileges.sql: last file of the script.  PUBLIC gets nothing: PostgreSQL
-- grants EXECUTE on new functions to PUBLIC by default, so take that back
-- from everything created above.  Each function was granted explicitly to
-- the roles that may call it beside its definition.
REVOKE ALL ON ALL ROUTINES IN SCHEMA eightms FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA eightms_api FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eightms FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eightms_api FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eightms FROM PUBLIC;

-- Internal helpers that policies and API functions call as the caller.
GRANT EXECUTE ON FUNCTION
	eightms.jwt_claims(), eightms.current_account_id(), eightms.current_user_id(),
	eightms.require_user(), eightms.require_account(), eightms.current_member_role(),
	eightms.require_member_role(text[]), eightms.require_verified_email(),
	eightms.check_profile(text, text, text, text),
	eightms.is_region_code(text), eightms.is_timezone_name(text),
	eightms.random_bytes(int), eightms.random_token(int), eightms.token_hash(text)
TO eightms_user, eightms_phone, eightms_dba, eightms_worker;
GRANT EXECUTE ON FUNCTION eightms.jwt_claims(), eightms.current_account_id(), eightms.current_user_id()
TO eightms_anon;
