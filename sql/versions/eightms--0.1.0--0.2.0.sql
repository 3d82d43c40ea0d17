-- eightms 0.1.0 -> 0.2.0: written by hand, section by section, as each change
-- lands in sql/.  Run by ALTER EXTENSION eightms UPDATE; after it the catalog
-- equals a fresh install of 0.2.0 (test/extra.d/upgrade.sh checks that).
\echo Use "ALTER EXTENSION eightms UPDATE" to load this file. \quit

-- ==== auth
-- Tenancy no longer rests on request.jwt.claims, which any role may set:
-- the pre-request hook verifies the request's bearer token itself and binds
-- the verified claims to the transaction and role (eightms.verified_claims,
-- a setting only superusers may set); current_account_id(), jwt_claims()
-- and everything built on them read only that binding.  email_verified
-- counts only as a JSON true.
CREATE OR REPLACE FUNCTION eightms.jwt_claims() RETURNS jsonb
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_jwt_claims';
COMMENT ON FUNCTION eightms.jwt_claims() IS
	'The JWT claims the pre-request hook verified for the current transaction and role, or {} outside a request';

COMMENT ON FUNCTION eightms.current_account_id() IS
	'The account the pre-request hook verified for the current transaction and role; NULL when none (then no tenant row is visible)';

CREATE FUNCTION eightms.bind_account(acct uuid, member_role text) RETURNS jsonb
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'eightms_bind_account';
REVOKE ALL ON FUNCTION eightms.bind_account(uuid, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms.act_on_account(acct uuid, member_role text) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	claims jsonb := eightms.bind_account(acct, member_role);
BEGIN
	IF pg_catalog.current_setting('citus.propagate_set_commands', true) OPERATOR(pg_catalog.=) 'local' THEN
		EXECUTE pg_catalog.format('SET LOCAL request.jwt.claims = %L', claims::text);
	ELSE
		PERFORM pg_catalog.set_config('request.jwt.claims', claims::text, true);
	END IF;
END
$$;

COMMENT ON FUNCTION eightms_api.pre_request() IS
	'PostgREST db-pre-request: verifies the bearer token and binds its claims to the transaction, picks and checks the account (X-Eightms-Account header), refuses disabled accounts, revoked device tokens and signed-out sessions';

CREATE OR REPLACE FUNCTION eightms.require_verified_email() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims	jsonb := eightms.jwt_claims();
	email	text := lower(nullif(btrim(claims ->> 'email'), ''));
BEGIN
	IF email IS NULL THEN
		RAISE EXCEPTION 'the JWT has no "email" claim'
			USING ERRCODE = '28000',
				  HINT = 'Configure the auth provider to include the verified email in the token.';
	END IF;
	IF current_setting('eightms.require_verified_email', true) IS DISTINCT FROM 'off'
	   AND (claims -> 'email_verified') IS DISTINCT FROM 'true'::jsonb THEN
		RAISE EXCEPTION 'the JWT''s email is not verified'
			USING ERRCODE = '28000',
				  HINT = 'The token must carry "email_verified": true: verify the address with the sign-in provider, then sign in again.';
	END IF;
	RETURN email;
END
$$;
