-- test/helpers.sql: act as PostgREST does, for the pgTAP suites.
-- Installed by test/run.sh into the test database, never by the extension.
--
-- PostgREST, for each request, opens a transaction, verifies the request's
-- JWT, switches to the role it names with SET LOCAL ROLE, sets
-- request.jwt.claims (the token's claims), request.headers (every header
-- of the request, Authorization among them, names in lower case),
-- request.method and request.path with set_config(..., true), calls the
-- db-pre-request function and then the RPC.  pgrst.request() signs the
-- claims as a token (HS256, eightms.jwt_sign) and does the same steps; the
-- suite then calls the API.  The hook verifies that token itself.
CREATE SCHEMA pgrst;

-- The claims a token carries, read without verifying it (PostgREST sets
-- request.jwt.claims from the token it verified; a test that bypasses
-- PostgREST with a forged token sets them as the token says).
CREATE FUNCTION pgrst.token_claims(token text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	payload text := translate(split_part(token, '.', 2), '-_', '+/');
BEGIN
	payload := payload || repeat('=', (4 - length(payload) % 4) % 4);
	RETURN convert_from(decode(payload, 'base64'), 'UTF8')::jsonb;
EXCEPTION WHEN OTHERS THEN
	RETURN '{}';
END
$$;

-- A request as PostgREST makes it for a token (NULL: no Authorization
-- header, an anonymous request), running as role.
CREATE FUNCTION pgrst.request_token(
	role text,
	token text,
	headers jsonb DEFAULT '{}',
	method text DEFAULT 'POST',
	path text DEFAULT '/rpc')
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	-- Back to the session user first, as a new request would be.
	PERFORM set_config('role', 'none', true);
	PERFORM set_config('request.jwt.claims',
		CASE WHEN token IS NULL THEN jsonb_build_object('role', role)
			 ELSE pgrst.token_claims(token) END::text, true);
	PERFORM set_config('request.headers',
		(CASE WHEN token IS NULL THEN '{}'::jsonb
			  ELSE jsonb_build_object('authorization', 'Bearer ' || token) END
		 || jsonb_build_object('accept', 'application/json', 'user-agent', 'pgrst-helpers')
		 || headers)::text, true);
	PERFORM set_config('request.method', method, true);
	PERFORM set_config('request.path', path, true);
	PERFORM set_config('role', role, true);
	PERFORM eightms_api.pre_request();
END
$$;

-- A request with these claims, signed as a token for role; an anonymous
-- request (eightms_anon without claims) sends no token, as PostgREST's
-- anonymous callers do.
CREATE FUNCTION pgrst.request(
	role text,
	claims jsonb DEFAULT '{}',
	headers jsonb DEFAULT '{}',
	method text DEFAULT 'POST',
	path text DEFAULT '/rpc')
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM set_config('role', 'none', true);
	PERFORM pgrst.request_token(role,
		CASE WHEN role = 'eightms_anon' AND claims = '{}' THEN NULL
			 ELSE eightms.jwt_sign(claims || jsonb_build_object('role', role)) END,
		headers, method, path);
END
$$;

-- A dashboard user (JWT sub), acting on an account when one is named.
CREATE FUNCTION pgrst.as_user(sub text, account uuid DEFAULT NULL, email text DEFAULT NULL,
							  extra_claims jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql
AS $$
	SELECT pgrst.request('eightms_user',
		jsonb_build_object('sub', sub, 'email', coalesce(email, sub || '@example.test'),
						   'email_verified', true, 'aud', 'authenticated') || extra_claims,
		CASE WHEN account IS NULL THEN '{}'::jsonb
			 ELSE jsonb_build_object('x-eightms-account', account::text) END);
$$;

CREATE FUNCTION pgrst.as_anon() RETURNS void
LANGUAGE sql
AS $$ SELECT pgrst.request('eightms_anon') $$;

-- Back to the test's own (superuser) session, outside any request.
CREATE FUNCTION pgrst.reset() RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM set_config('role', 'none', true);
	PERFORM set_config('request.jwt.claims', '', true);
	PERFORM set_config('request.headers', '', true);
END
$$;

-- pgTAP keeps its bookkeeping in temporary tables made by plan(); let the
-- API roles write to them so assertions can run while a role is switched.
CREATE FUNCTION pgrst.share_tap() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c
			  WHERE c.relnamespace = pg_my_temp_schema() AND c.relkind IN ('r', 'S')
	LOOP
		EXECUTE format('GRANT ALL ON %s TO eightms_anon, eightms_user, eightms_phone, eightms_dba, eightms_worker', r.rel);
	END LOOP;
END
$$;

GRANT USAGE ON SCHEMA pgrst TO PUBLIC;

-- A paired phone, with the claims its device JWT carries.
CREATE FUNCTION pgrst.as_phone(account uuid, phone uuid, token_version integer DEFAULT 1)
RETURNS void
LANGUAGE sql
AS $$
	SELECT pgrst.request('eightms_phone',
		jsonb_build_object('account_id', account, 'phone_id', phone, 'tv', token_version));
$$;

-- A request with a JWT, after checking its signature (as PostgREST would).
CREATE FUNCTION pgrst.as_token(token text) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	claims jsonb;
BEGIN
	PERFORM set_config('role', 'none', true);
	claims := eightms.jwt_verify(token);
	PERFORM pgrst.request_token(coalesce(claims ->> 'role', 'eightms_anon'), token);
END
$$;
