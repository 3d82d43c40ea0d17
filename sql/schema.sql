-- schema.sql: roles, the API schema, and who the caller is.
--
-- The extension's own schema "eightms" (from eightms.control) holds tables,
-- internals and C functions and is never exposed.  "eightms_api" is the one
-- schema PostgREST exposes (db-schemas): RPC functions and views only.

-- SMS bodies come in every script and with emoji, and phone numbers with
-- full-width digits: the C code reads text as UTF-8, and a database in
-- another encoding could not even store an inbound message with an emoji
-- (the phone would send that batch again and again).  Refuse it up front.
DO $encoding$
BEGIN
	IF pg_catalog.current_setting('server_encoding') <> 'UTF8' THEN
		RAISE EXCEPTION 'eightms needs a UTF8 database; database "%" is %',
			pg_catalog.current_database(), pg_catalog.current_setting('server_encoding')
			USING ERRCODE = '0A000',
				  HINT = 'Create the database with ENCODING ''UTF8'' (CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0) and the extension there.';
	END IF;
END
$encoding$;

-- Roles are cluster-wide, so they may already exist from another database
-- or an earlier install: create each one only when missing.
DO $roles$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT * FROM (VALUES
			('eightms_anon',   'PostgREST anonymous role: pairing and webhooks only', false),
			('eightms_user',   'dashboard users (JWT role)', false),
			('eightms_phone',  'paired Android phones (device JWT minted at pairing)', false),
			('eightms_dba',    'operators: data-subject requests and purges across accounts', true),
			('eightms_worker', 'the bridge background worker', true)
		) AS v(name, purpose, bypass)
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN %s', r.name,
						   CASE WHEN r.bypass THEN 'BYPASSRLS' ELSE 'NOBYPASSRLS' END);
		END IF;
		EXECUTE format('COMMENT ON ROLE %I IS %L', r.name, 'eightms: ' || r.purpose);
	END LOOP;
END
$roles$;

CREATE SCHEMA eightms_api;
COMMENT ON SCHEMA eightms_api IS 'eightms: the API PostgREST exposes (RPC functions and views)';

REVOKE ALL ON SCHEMA eightms FROM PUBLIC;
REVOKE ALL ON SCHEMA eightms_api FROM PUBLIC;
GRANT USAGE ON SCHEMA eightms_api TO eightms_anon, eightms_user, eightms_phone, eightms_dba, eightms_worker;
-- API functions run as the caller (so row-level security applies to them);
-- the roles therefore need to reach the tables, which RLS then filters.
GRANT USAGE ON SCHEMA eightms TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

-- The caller's JWT claims as the pre-request hook verified them in this
-- transaction (with the account it chose), or {} outside such a request.
-- Never request.jwt.claims: any role may set that (src/auth/claims.c).
CREATE FUNCTION eightms.jwt_claims() RETURNS jsonb
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_jwt_claims';
COMMENT ON FUNCTION eightms.jwt_claims() IS
	'The JWT claims the pre-request hook verified for the current transaction and role, or {} outside a request';

-- The account the current request acts on.  Every tenant policy compares
-- account_id to this and nothing else.  It is the account the pre-request
-- hook (eightms_api.pre_request) bound to this transaction and role after
-- verifying the request's token and the caller's membership; NULL in any
-- other transaction, for any other role, and whatever request.jwt.claims
-- says.  In C (src/auth/claims.c): policies run it for every row a statement
-- writes, and it keeps the binding parsed instead of parsing it each time.
CREATE FUNCTION eightms.current_account_id() RETURNS uuid
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_current_account_id';
COMMENT ON FUNCTION eightms.current_account_id() IS
	'The account the pre-request hook verified for the current transaction and role; NULL when none (then no tenant row is visible)';

-- The request acts on an account (NULL: on none) from now on, with the
-- member role the caller has there; returns the claims re-issued with
-- them.  Only for the hook and the API's own functions, which have checked
-- the membership: no grant.  It only rebinds claims the hook verified in
-- this transaction for this role.
CREATE FUNCTION eightms.bind_account(acct uuid, member_role text) RETURNS jsonb
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'eightms_bind_account';

-- The signed-in user (JWT "sub"), or NULL for anonymous callers and phones.
CREATE FUNCTION eightms.current_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT nullif(eightms.jwt_claims() ->> 'sub', '')
$$;

-- Raised by API functions that need a signed-in user.
CREATE FUNCTION eightms.require_user() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := eightms.current_user_id();
BEGIN
	IF uid IS NULL THEN
		RAISE EXCEPTION 'not signed in'
			USING ERRCODE = '28000',
				  HINT = 'Call the API with a user JWT whose "sub" claim names the user.';
	END IF;
	RETURN uid;
END
$$;

-- Raised by API functions that act on an account when the request has none.
CREATE FUNCTION eightms.require_account() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.current_account_id();
BEGIN
	IF acct IS NULL THEN
		RAISE EXCEPTION 'no account selected for this request'
			USING ERRCODE = '28000',
				  HINT = 'Send the X-Eightms-Account header with one of your account ids (see eightms_api.my_accounts()), or create an account first.';
	END IF;
	RETURN acct;
END
$$;
