-- test/helpers.sql: act as PostgREST does, for the pgTAP suites.
-- Installed by test/run.sh into the test database, never by the extension.
--
-- PostgREST, for each request, opens a transaction, switches to the role
-- named by the JWT with SET LOCAL ROLE, sets request.jwt.claims,
-- request.headers, request.method and request.path with
-- set_config(..., true), calls the db-pre-request function and then the
-- RPC.  pgrst.request() does the same steps; the suite then calls the API.
CREATE SCHEMA pgrst;

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
	-- Back to the session user first, as a new request would be.
	PERFORM set_config('role', 'none', true);
	PERFORM set_config('request.jwt.claims', (claims || jsonb_build_object('role', role))::text, true);
	PERFORM set_config('request.headers', headers::text, true);
	PERFORM set_config('request.method', method, true);
	PERFORM set_config('request.path', path, true);
	PERFORM set_config('role', role, true);
	PERFORM eightms_api.pre_request();
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

-- The claims of a JWT, after checking its signature (as PostgREST would).
CREATE FUNCTION pgrst.as_token(token text) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	claims jsonb;
BEGIN
	PERFORM set_config('role', 'none', true);
	claims := eightms.jwt_verify(token);
	PERFORM pgrst.request(claims ->> 'role', claims - 'role');
END
$$;
