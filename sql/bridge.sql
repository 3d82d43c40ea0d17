-- bridge.sql: the outbound HTTP bridge's durable queue.
--
-- http_enqueue() inserts one row in the caller's transaction; the bridge
-- background worker (src/bridge/), woken when that transaction commits,
-- sends it on a libcurl multi handle, retries with backoff, and its recorder
-- process records every attempt and runs the callback.  A rolled-back
-- transaction sends nothing.
--
-- Who writes the queue: only the extension's own code.  http_enqueue() is C
-- (src/bridge/api.c): it takes the caller's role (current_user) and passes it,
-- through fmgr rather than SQL, to http_enqueue_internal(), which checks
-- everything and inserts as the extension's owner and is granted to no
-- role.  The operator roles may read the queue, never write it: a row names
-- a role (enqueued_by) and a function (callback) that the recorder runs as
-- that role, so a role that could write one could run code as any other.

-- The host and origin of a URL as the worker sends it: libcurl's URL API
-- parses it, the same C at enqueue, in the host column and in the worker.
CREATE FUNCTION eightms.http_url_host(url text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_http_url_host'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.http_url_host(text) IS
	'The host of an http or https URL as libcurl parses it (lower case, IPv6 without brackets); NULL when it does not parse';

CREATE FUNCTION eightms.http_origin(url text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_http_origin'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.http_origin(text) IS
	'scheme://host:port of an http or https URL as libcurl parses it (lower case, default port explicit); NULL when it does not parse';

CREATE TABLE eightms.http_request (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	method				text NOT NULL
		CONSTRAINT http_request_method_check CHECK (method IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE')),
	url					text NOT NULL,
	headers				jsonb NOT NULL DEFAULT '{}',
	secret_headers		bytea,
	body				bytea,
	timeout_ms			integer NOT NULL DEFAULT 30000
		CONSTRAINT http_request_timeout_check CHECK (timeout_ms BETWEEN 100 AND 600000),
	max_attempts		integer NOT NULL DEFAULT 5
		CONSTRAINT http_request_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 100),
	follow_redirects	boolean NOT NULL DEFAULT false,
	idempotency_key		text COLLATE "C" NOT NULL,	-- compared bytewise: cheaper index upkeep
	-- The callback as {schema, function name}, called as
	-- function(request_id bigint, context jsonb).  Names, not a
	-- regprocedure: pg_upgrade refuses a cluster with a regprocedure column
	-- in any table, as function OIDs do not survive it; names do (and dump
	-- and restore).  The worker finds the function in pg_proc by these
	-- names, so no stored text is ever parsed or run.
	callback			text[]
		CONSTRAINT http_request_callback_check CHECK (cardinality(callback) = 2),
	callback_context	jsonb,
	enqueued_by			regrole NOT NULL DEFAULT current_user::regrole,
	state				text NOT NULL DEFAULT 'queued'
		CONSTRAINT http_request_state_check CHECK (state IN ('queued', 'done', 'dead')),
	attempts			integer NOT NULL DEFAULT 0,
	next_attempt_at		timestamptz NOT NULL DEFAULT now(),
	created_at			timestamptz NOT NULL DEFAULT now(),
	finished_at			timestamptz,
	response_status		integer,
	response_headers	jsonb,
	response_body		bytea,
	error				text,
	callback_error		text,
	-- What the worker checks (allowlist, per-host limit) is the host of the
	-- URL it sends, computed by the same parser: a separate column could
	-- disagree.  Last, where the upgrade from 0.1.0 leaves it.
	host				text GENERATED ALWAYS AS (eightms.http_url_host(url)) STORED,
	-- The account whose request this is (the one the pre-request hook
	-- verified for the enqueuer), NULL only for the platform's own calls:
	-- deleting the account removes its requests, and its export holds them.
	-- Last, where the upgrade leaves it.
	account_id			uuid,
	CONSTRAINT http_request_idempotency_key_key UNIQUE (idempotency_key)
)
-- Every request is updated once it has an outcome, and never HOT (the
-- state changes): half of each page is left free so that the new version
-- can stay on the old one's page instead of going to another.
WITH (fillfactor = 50);
COMMENT ON TABLE eightms.http_request IS
	'global: the bridge''s durable queue of outbound HTTP requests (internal; no API role reads it)';
COMMENT ON COLUMN eightms.http_request.secret_headers IS
	'Headers such as Authorization, sealed with context ''http_request:'' || id || '':'' || eightms.http_origin(url) || '':'' || idempotency_key (bound to this request and its destination); opened only by the worker';
-- The worker's claim: due requests in order.  No other index on state or
-- finished_at: each outcome is a non-HOT update that inserts into every
-- index whose key or predicate it changes, and the daily purge (the only
-- reader a finished_at index would have) can scan the table instead.
CREATE INDEX http_request_due_idx ON eightms.http_request (next_attempt_at, id) WHERE state = 'queued';
-- An account's requests, for its deletion and its export.
CREATE INDEX http_request_account_idx ON eightms.http_request (account_id) WHERE account_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('eightms.http_request', '');
-- Its ids go on from where they were, or new requests would take restored ids.
SELECT pg_catalog.pg_extension_config_dump('eightms.http_request_id_seq', '');

CREATE TABLE eightms.http_attempt (
	-- No foreign key: the worker, its only writer, inserts attempts for
	-- requests it holds, and a per-row check would cost it a query each;
	-- http_purge() deletes a request's attempts with it.
	request_id	bigint NOT NULL,
	attempt		integer NOT NULL,
	started_at	timestamptz NOT NULL,
	duration_ms	double precision NOT NULL,
	status		integer,
	error		text,
	-- The request's account (the recorder copies it), last as the upgrade
	-- adds it.
	account_id	uuid,
	PRIMARY KEY (request_id, attempt)
);
COMMENT ON TABLE eightms.http_attempt IS 'global: every attempt the bridge made: when, how long, status or error';
SELECT pg_catalog.pg_extension_config_dump('eightms.http_attempt', '');

INSERT INTO eightms.sealed_column VALUES
	('eightms.http_request', 'secret_headers',
	 $$'http_request:' || id || ':' || eightms.http_origin(url) || ':' || idempotency_key$$);

-- Header names are tokens; values are what RFC 9110 lets a sender send in
-- a field value: visible US-ASCII, spaces and tabs inside, nothing else.
-- Nothing a caller passes can add a header or split the request, and no
-- byte reaches a server or proxy that might read it another way (obs-text,
-- non-ASCII, is only tolerated by receivers; each reads it its own way).
-- The worker checks the same again before sending (src/bridge/transfer.c).
CREATE FUNCTION eightms.http_check_headers(h jsonb, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF h IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(h) <> 'object' THEN
		RAISE EXCEPTION '% must be a JSON object of header names to string values', what
			USING ERRCODE = '22023';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(h) LOOP
		IF k !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
			RAISE EXCEPTION 'invalid header name in %: "%"', what, left(k, 64) USING ERRCODE = '22023';
		END IF;
		IF jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'header % in % must be a string', left(k, 64), what USING ERRCODE = '22023';
		END IF;
		IF (v #>> '{}') !~ '^([!-~]([ \t!-~]*[!-~])?)?$' THEN
			RAISE EXCEPTION 'header % in % has a value HTTP does not allow', left(k, 64), what
				USING ERRCODE = '22023',
					  HINT = 'Header values are visible ASCII characters, with spaces and tabs only between them: no control characters, no line breaks, no non-ASCII (encode it, e.g. as RFC 8187 or base64).';
		END IF;
		IF lower(k) IN ('idempotency-key', 'host', 'content-length', 'transfer-encoding', 'connection') THEN
			RAISE EXCEPTION 'header % is set by the bridge', left(k, 64) USING ERRCODE = '22023';
		END IF;
	END LOOP;
END
$$;

-- Queue one request; returns its id.  Costs one INSERT in the caller's
-- transaction, and asks for the worker to be woken when it commits.  Called
-- only by eightms.http_enqueue() (C), which passes the caller's role as
-- enqueuer: granted to no role, it runs as the extension's owner, so that
-- nothing but this function writes the queue.
CREATE FUNCTION eightms.http_enqueue_internal(
	enqueuer regrole,
	account uuid,
	method text,
	url text,
	headers jsonb,
	body bytea,
	secret_headers jsonb,
	timeout interval,
	max_attempts integer,
	idempotency_key text,
	callback regprocedure,
	callback_context jsonb,
	follow_redirects boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text := upper(method);
	origin text;
	ikey text := coalesce(idempotency_key, gen_random_uuid()::text);
	new_id bigint;
	cb_name text[];
	cb_schema oid;
BEGIN
	IF enqueuer IS NULL THEN
		RAISE EXCEPTION 'http_enqueue_internal needs the enqueuing role' USING ERRCODE = '22023';
	END IF;
	IF url IS NULL OR length(url) > 8192 THEN
		RAISE EXCEPTION 'the URL is missing or longer than 8192 characters' USING ERRCODE = '22023';
	END IF;
	IF url !~* '^https?://[^/?#]' THEN
		RAISE EXCEPTION 'only http and https URLs can be requested'
			USING ERRCODE = '22023',
				  HINT = 'Use an absolute URL such as https://api.example.com/path.';
	END IF;
	IF url ~ '[\s\x00-\x1f]' THEN
		RAISE EXCEPTION 'the URL contains spaces or control characters' USING ERRCODE = '22023';
	END IF;
	-- The worker's parser has the last word on what the URL means.
	origin := eightms.http_origin(url);
	IF origin IS NULL THEN
		RAISE EXCEPTION 'the URL is not a valid http or https URL'
			USING ERRCODE = '22023',
				  HINT = 'Use an absolute URL such as https://api.example.com/path.';
	END IF;
	IF m NOT IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
		RAISE EXCEPTION 'unsupported HTTP method "%"', left(method, 16)
			USING ERRCODE = '22023', HINT = 'Use GET, HEAD, POST, PUT, PATCH or DELETE.';
	END IF;
	PERFORM eightms.http_check_headers(headers, 'headers');
	PERFORM eightms.http_check_headers(secret_headers, 'secret_headers');
	-- Sent as the Idempotency-Key header: a field value like any other.
	IF length(ikey) NOT BETWEEN 1 AND 255 OR ikey !~ '^[!-~]([ \t!-~]*[!-~])?$' THEN
		RAISE EXCEPTION 'the idempotency key must be 1 to 255 visible ASCII characters (spaces and tabs only between them)'
			USING ERRCODE = '22023';
	END IF;
	IF timeout IS NULL OR timeout < interval '100 milliseconds' OR timeout > interval '10 minutes' THEN
		RAISE EXCEPTION 'timeout must be between 100 milliseconds and 10 minutes' USING ERRCODE = '22023';
	END IF;
	IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'max_attempts must be between 1 and 100' USING ERRCODE = '22023';
	END IF;
	IF callback IS NOT NULL THEN
		SELECT ARRAY[n.nspname::text, p.proname::text], n.oid INTO cb_name, cb_schema
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE p.oid = callback AND p.pronargs = 2
		   AND p.proargtypes[0] = 'bigint'::regtype AND p.proargtypes[1] = 'jsonb'::regtype;
		IF cb_name IS NULL THEN
			RAISE EXCEPTION 'callback % must take (request_id bigint, context jsonb)', callback
				USING ERRCODE = '22023';
		END IF;
		-- A temporary schema ends with its session, and another session
		-- may get the same name: a callback there could be anyone's.
		IF cb_schema = pg_my_temp_schema() OR pg_is_other_temp_schema(cb_schema) THEN
			RAISE EXCEPTION 'callback % is in a temporary schema', callback
				USING ERRCODE = '22023',
					  HINT = 'Create the callback function in a permanent schema.';
		END IF;
		IF NOT has_function_privilege(enqueuer::oid, callback::oid, 'EXECUTE') THEN
			RAISE EXCEPTION 'role % may not execute callback %', enqueuer, callback
				USING ERRCODE = '42501',
					  HINT = 'The callback runs as the role that enqueues the request: grant it EXECUTE on the function.';
		END IF;
	END IF;

	-- The id comes first: the secret headers are sealed to it and to the
	-- destination, so that they open for this request and URL only.
	new_id := nextval('eightms.http_request_id_seq'::regclass);
	INSERT INTO eightms.http_request AS r
		(id, method, url, headers, secret_headers, body, timeout_ms, max_attempts,
		 follow_redirects, idempotency_key, callback, callback_context, enqueued_by, account_id)
	OVERRIDING SYSTEM VALUE
	VALUES
		(new_id, m, url, coalesce(headers, '{}'),
		 CASE WHEN secret_headers IS NOT NULL AND secret_headers <> '{}'
			  THEN eightms.seal(secret_headers::text, 'http_request:' || new_id || ':' || origin || ':' || ikey) END,
		 body, (extract(epoch FROM timeout) * 1000)::integer, max_attempts,
		 follow_redirects, ikey, cb_name, callback_context, enqueuer, account);
	PERFORM eightms.bridge_wake_at_commit();
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION eightms.http_enqueue_internal(regrole, uuid, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'http_enqueue''s checks and insert, as the extension''s owner; called only by http_enqueue''s C with current_user and the verified account (granted to no role)';

CREATE FUNCTION eightms.http_enqueue(
	method text,
	url text,
	headers jsonb DEFAULT '{}',
	body bytea DEFAULT NULL,
	secret_headers jsonb DEFAULT NULL,
	timeout interval DEFAULT '30 seconds',
	max_attempts integer DEFAULT 5,
	idempotency_key text DEFAULT NULL,
	callback regprocedure DEFAULT NULL,
	callback_context jsonb DEFAULT NULL,
	follow_redirects boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eightms_http_enqueue'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION eightms.http_enqueue(text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'Queue an HTTP request for the bridge worker (sent after commit, at least once, with a stable Idempotency-Key)';

-- Worker helpers: response headers as a JSON object (names lower-cased,
-- repeated headers joined with ", "), and the secret headers opened just
-- before sending (NULL when they cannot be opened, so one bad value cannot
-- stop the worker's batch).
CREATE FUNCTION eightms.http_parse_headers(raw text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT coalesce(jsonb_object_agg(k, v), '{}')
	  FROM (SELECT lower(btrim(split_part(line, ':', 1))) AS k,
				   string_agg(btrim(substr(line, strpos(line, ':') + 1)), ', ' ORDER BY n) AS v
			  FROM regexp_split_to_table(raw, '\r?\n') WITH ORDINALITY AS l(line, n)
			 WHERE strpos(line, ':') > 1 AND line !~ '^HTTP/'
			 GROUP BY 1) s
$$;

CREATE FUNCTION eightms.http_secret_header_lines(sealed bytea, request_id bigint, idempotency_key text, url text)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF sealed IS NULL THEN
		RETURN '{}';
	END IF;
	RETURN ARRAY(SELECT k || ': ' || v
				   FROM jsonb_each_text(eightms.unseal(sealed, 'http_request:' || request_id || ':'
												 || eightms.http_origin(url) || ':' || idempotency_key)::jsonb) AS h(k, v));
EXCEPTION WHEN OTHERS THEN
	RETURN NULL;
END
$$;

CREATE FUNCTION eightms.bridge_wake_at_commit() RETURNS void
AS 'MODULE_PATHNAME', 'eightms_bridge_wake_at_commit'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION eightms.bridge_wake_at_commit() IS
	'Wake the bridge worker when the current transaction commits';

-- A request in flight stays 'queued' in the table: the worker keeps the ids
-- it holds in shared memory, and this is where they are read.
CREATE FUNCTION eightms.http_in_flight() RETURNS bigint[]
AS 'MODULE_PATHNAME', 'eightms_http_in_flight'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION eightms.http_in_flight() IS
	'Ids of the requests the bridge worker has sent or is sending and whose outcome is not recorded yet';

CREATE FUNCTION eightms.is_public_address(address inet) RETURNS boolean
AS 'MODULE_PATHNAME', 'eightms_is_public_address'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.is_public_address(inet) IS
	'False for loopback, private, link-local, shared, documentation, multicast and other reserved addresses: the bridge refuses them';

-- Queue depth and outcomes by host, for operators.
CREATE VIEW eightms.http_queue_stats AS
	SELECT r.host,
		   count(*) FILTER (WHERE r.state = 'queued' AND r.id <> ALL (f.ids)) AS queued,
		   count(*) FILTER (WHERE r.state = 'queued' AND r.next_attempt_at <= now()
							AND r.id <> ALL (f.ids)) AS due,
		   count(*) FILTER (WHERE r.id = ANY (f.ids)) AS in_flight,
		   count(*) FILTER (WHERE r.state = 'done') AS done,
		   count(*) FILTER (WHERE r.state = 'dead') AS dead,
		   coalesce(sum(greatest(r.attempts - 1, 0)), 0) AS retries,
		   count(*) FILTER (WHERE r.error IS NOT NULL) AS with_errors,
		   count(*) FILTER (WHERE r.callback_error IS NOT NULL) AS callback_errors,
		   min(r.next_attempt_at) FILTER (WHERE r.state = 'queued' AND r.id <> ALL (f.ids)) AS next_due
	  FROM eightms.http_request r CROSS JOIN eightms.http_in_flight() AS f(ids)
	 GROUP BY r.host;
COMMENT ON VIEW eightms.http_queue_stats IS 'The bridge by host: queued, due, in flight, done, dead, retries, errors';

-- Delete finished requests (and their attempts) older than keep.
CREATE FUNCTION eightms.http_purge(keep interval DEFAULT '7 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	WITH gone AS (
		DELETE FROM eightms.http_request r
		 WHERE r.state IN ('done', 'dead') AND r.finished_at < now() - keep
		RETURNING r.id),
	 attempts AS (
		DELETE FROM eightms.http_attempt a USING gone WHERE a.request_id = gone.id)
	SELECT count(*) INTO n FROM gone;
	RETURN n;
END
$$;

GRANT EXECUTE ON FUNCTION
	eightms.http_enqueue(text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean),
	eightms.http_check_headers(jsonb, text), eightms.bridge_wake_at_commit(),
	eightms.http_parse_headers(text), eightms.http_url_host(text), eightms.http_origin(text)
TO eightms_worker, eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.http_secret_header_lines(bytea, bigint, text, text) TO eightms_worker;
GRANT SELECT ON eightms.http_queue_stats TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.http_in_flight() TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.http_purge(interval), eightms.is_public_address(inet) TO eightms_dba;
-- Read, never written, by the operator roles: see the top of this file.
GRANT SELECT ON eightms.http_request TO eightms_worker, eightms_dba;
GRANT SELECT ON eightms.http_attempt TO eightms_worker, eightms_dba;
