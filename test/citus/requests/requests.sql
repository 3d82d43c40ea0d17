-- test/citus/requests/requests.sql: what the Citus tier's copies of the
-- pgTAP suites call between statements (test/citus/requests/transform.py).
-- Installed after test/helpers.sql, on the coordinator only; the helpers
-- themselves are unchanged: the request functions are wrapped to remember
-- the request they made, so that the next transaction can make it again.

-- pgrst.request_token, and through it as_user, as_phone, as_anon, as_token
-- and request: the same request, remembered for the session.  The record
-- is a session setting, so a request made in a subtransaction that failed
-- (throws_ok) is forgotten with it, as its local settings are.
ALTER FUNCTION pgrst.request_token(text, text, jsonb, text, text) RENAME TO request_token_once;
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
	PERFORM pgrst.request_token_once(role, token, headers, method, path);
	PERFORM set_config('pgrst.last_request',
		jsonb_build_object('role', role, 'token', token, 'headers', headers,
						   'method', method, 'path', path)::text, false);
END
$$;

ALTER FUNCTION pgrst.reset() RENAME TO reset_once;
CREATE FUNCTION pgrst.reset() RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM pgrst.reset_once();
	PERFORM set_config('pgrst.last_request', '', false);
END
$$;

-- The request remembered, or NULL outside one.
CREATE FUNCTION pgrst.last_request() RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT nullif(current_setting('pgrst.last_request', true), '')::jsonb $$;

-- The request remembered (r), made again.
CREATE FUNCTION pgrst.request_again(r jsonb) RETURNS void
LANGUAGE sql
AS $$ SELECT pgrst.request_token_once(r ->> 'role', r ->> 'token', r -> 'headers', r ->> 'method', r ->> 'path') $$;

-- At the end of a statement's transaction, what the next one needs to
-- make the request again: a dashboard user's request that came to act on
-- another account than it named (create_account and accept_invitation move
-- the request to the account they made or joined) goes on in that account,
-- as the dashboard then names it in its X-Eightms-Account header.
CREATE FUNCTION pgrst.request_done() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r jsonb := pgrst.last_request();
	acct uuid;
BEGIN
	IF r IS NULL THEN
		RETURN;
	END IF;
	IF r ->> 'role' = 'eightms_user' AND current_user = 'eightms_user' THEN
		acct := eightms.current_account_id();
		IF acct IS NOT NULL THEN
			r := jsonb_set(r, '{headers}', r -> 'headers' || jsonb_build_object('x-eightms-account', acct::text));
		END IF;
	END IF;
	PERFORM set_config('pgrst.last_request', r::text, false);
END
$$;

-- Between two statements' transactions, in one of its own: whether the
-- pre-request hook would now refuse the request (its session signed out,
-- its account deleted or suspended, its device token revoked by the
-- statement before), tried in a subtransaction, always undone.
--   * Not in the statement's transaction (request_done): what a request
--     wrote there, the hook, as the extension's owner, may not read on
--     Citus ("placements that were modified in this transaction by a
--     different user"), and PostgREST runs the next request's hook in a
--     transaction of its own anyway.
--   * Not in the next one (replay): Citus relays a SET LOCAL made in a
--     subtransaction, the hook's binding among them, to no connection
--     opened after that subtransaction ends, even when it was committed.
CREATE FUNCTION pgrst.request_check() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r jsonb := pgrst.last_request();
	refused boolean;
BEGIN
	IF r IS NULL THEN
		RETURN;
	END IF;
	BEGIN
		PERFORM pgrst.request_again(r);
		RAISE EXCEPTION 'the hook passes' USING ERRCODE = 'P0001';
	EXCEPTION WHEN OTHERS THEN
		refused := SQLERRM <> 'the hook passes';
	END;
	PERFORM set_config('pgrst.last_request', (r || jsonb_build_object('refused', refused))::text, false);
END
$$;

-- At the start of a statement's transaction: the request the suite is in,
-- made again (its pre-request hook and all), as PostgREST makes every
-- request.  Outside a request, nothing.  A request the hook would refuse
-- goes on as the role, with its claims, bound to nothing: it sees and may
-- do nothing of any account, where on one server it would have gone on in
-- the account it had.
CREATE FUNCTION pgrst.replay() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r jsonb := pgrst.last_request();
BEGIN
	IF r IS NULL THEN
		RETURN;
	ELSIF (r ->> 'refused')::boolean THEN
		PERFORM set_config('request.jwt.claims',
			coalesce(pgrst.token_claims(r ->> 'token'), jsonb_build_object('role', r ->> 'role'))::text, true);
		PERFORM set_config('role', r ->> 'role', true);
	ELSE
		PERFORM pgrst.request_again(r);
	END IF;
END
$$;

-- The eightms tables as installed, for each suite to start from: on one
-- server every suite is rolled back; here each commits its requests.  The
-- tables the extension fills when installed (the registries: jobs, sealed
-- columns, the data-column classification, retention rules) keep their
-- rows; a suite's changes to them are undone.
CREATE SCHEMA pgrst_slate;
DO $$
DECLARE
	r record;
	filled boolean;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel, c.relname FROM pg_class c
			  WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	LOOP
		EXECUTE format('SELECT count(*) > 0 FROM (SELECT 1 FROM %s LIMIT 1) s', r.rel) INTO filled;
		IF filled THEN
			EXECUTE format('CREATE TABLE pgrst_slate.%I AS TABLE %s', r.relname, r.rel);
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION pgrst.clean_slate() RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r record;
	rest text;
BEGIN
	-- The distributed tables shard by shard, without their triggers: a
	-- conversation's TRUNCATE and DELETE triggers empty its messages and
	-- reviews, which on Citus fails (the suites' to find, not the clean-up's
	-- to trip on).
	FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_dist_partition p ON p.logicalrelid = c.oid
			  WHERE c.relnamespace = 'eightms'::regnamespace AND p.partmethod = 'h'
	LOOP
		IF EXISTS (SELECT FROM run_command_on_shards(r.rel,
					$c$DO $d$ BEGIN
						PERFORM set_config('citus.enable_manual_changes_to_shards', 'on', true);
						PERFORM set_config('session_replication_role', 'replica', true);
						TRUNCATE %s CASCADE;
					END $d$ $c$) WHERE NOT success) THEN
			RAISE EXCEPTION 'could not empty the shards of %', r.rel;
		END IF;
	END LOOP;
	-- The others (on the coordinator, or reference tables) in one statement.
	SELECT string_agg(c.oid::regclass::text, ', ') INTO rest
	  FROM pg_class c
	 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	   AND to_regclass(format('pgrst_slate.%I', c.relname)) IS NULL
	   AND NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = c.oid AND p.partmethod = 'h');
	IF rest IS NOT NULL THEN
		EXECUTE 'TRUNCATE ' || rest;
	END IF;
	-- The registries as installed.
	FOR r IN SELECT c.relname FROM pg_class c
			  WHERE c.relnamespace = 'pgrst_slate'::regnamespace AND c.relkind = 'r'
	LOOP
		EXECUTE format('DELETE FROM eightms.%1$I t WHERE NOT EXISTS (SELECT FROM pgrst_slate.%1$I s WHERE s::text = t::text)',
					   r.relname);
		EXECUTE format('INSERT INTO eightms.%1$I OVERRIDING SYSTEM VALUE SELECT * FROM pgrst_slate.%1$I s WHERE NOT EXISTS (SELECT FROM eightms.%1$I t WHERE s::text = t::text)',
					   r.relname);
	END LOOP;
END
$$;

-- A table of the coordinator's own, never distributed: a statement that
-- names it (the suites' assertions, test/citus/requests/transform.py) is
-- never sent to a worker whole.  Empty: naming it adds no row.
CREATE TABLE pgrst.coordinator ();
GRANT SELECT ON pgrst.coordinator TO PUBLIC;
