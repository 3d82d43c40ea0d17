-- eightms 0.1.0 -> 0.2.0: written by hand, section by section, as each change
-- lands in sql/.  Run by ALTER EXTENSION eightms UPDATE; after it the catalog
-- equals a fresh install of 0.2.0 (test/extra.d/upgrade.sh checks that).
\echo Use "ALTER EXTENSION eightms UPDATE" to load this file. \quit

-- ==== bridge
-- Issue 17, findings 1, 2, 3, 9 and the header values of 10 (CHANGELOG).

-- The host and origin of a URL, read by libcurl's URL API as the worker
-- reads it.
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

-- Finding 9: the host is generated from the URL by that parser, so that
-- it cannot disagree with what the worker sends.  The view that reads it
-- goes and comes back; the column comes last, as in a fresh install.
DROP VIEW eightms.http_queue_stats;
ALTER TABLE eightms.http_request DROP COLUMN host;
ALTER TABLE eightms.http_request
	ADD COLUMN host text GENERATED ALWAYS AS (eightms.http_url_host(url)) STORED;
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
GRANT SELECT ON eightms.http_queue_stats TO eightms_dba;

-- Finding 1: the operator roles read the queue and never write it; only
-- http_enqueue() (C, recording current_user as the enqueuer) does, through
-- http_enqueue_internal(), which runs as the extension's owner.
REVOKE ALL ON eightms.http_request FROM eightms_worker, eightms_dba;
GRANT SELECT ON eightms.http_request TO eightms_worker, eightms_dba;

-- Finding 10: header values are what RFC 9110 lets a sender send.
CREATE OR REPLACE FUNCTION eightms.http_check_headers(h jsonb, what text) RETURNS void
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

CREATE FUNCTION eightms.http_enqueue_internal(
	enqueuer regrole,
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
		RAISE EXCEPTION 'only http and https URLs can be requested: "%"', left(url, 128)
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
		 follow_redirects, idempotency_key, callback, callback_context, enqueued_by)
	OVERRIDING SYSTEM VALUE
	VALUES
		(new_id, m, url, coalesce(headers, '{}'),
		 CASE WHEN secret_headers IS NOT NULL AND secret_headers <> '{}'
			  THEN eightms.seal(secret_headers::text, 'http_request:' || new_id || ':' || origin || ':' || ikey) END,
		 body, (extract(epoch FROM timeout) * 1000)::integer, max_attempts,
		 follow_redirects, ikey, cb_name, callback_context, enqueuer);
	PERFORM eightms.bridge_wake_at_commit();
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION eightms.http_enqueue_internal(regrole, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'http_enqueue''s checks and insert, as the extension''s owner; called only by http_enqueue''s C with current_user (granted to no role)';
REVOKE ALL ON FUNCTION eightms.http_enqueue_internal(regrole, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) FROM PUBLIC;

-- Same signature, defaults and grants; now C, which passes current_user.
CREATE OR REPLACE FUNCTION eightms.http_enqueue(
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

-- Finding 3: the secret headers are sealed to the request's id, its
-- destination's origin and its idempotency key.
DROP FUNCTION eightms.http_secret_header_lines(bytea, text);
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
REVOKE ALL ON FUNCTION eightms.http_secret_header_lines(bytea, bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.http_secret_header_lines(bytea, bigint, text, text) TO eightms_worker;
REVOKE ALL ON FUNCTION eightms.http_url_host(text), eightms.http_origin(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.http_url_host(text), eightms.http_origin(text) TO eightms_worker, eightms_dba;

UPDATE eightms.sealed_column
   SET context_sql = $$'http_request:' || id || ':' || eightms.http_origin(url) || ':' || idempotency_key$$
 WHERE table_name = 'eightms.http_request'::regclass AND column_name = 'secret_headers';
COMMENT ON COLUMN eightms.http_request.secret_headers IS
	'Headers such as Authorization, sealed with context ''http_request:'' || id || '':'' || eightms.http_origin(url) || '':'' || idempotency_key (bound to this request and its destination); opened only by the worker';

-- Values sealed under 0.1.0's context ('http_request:' || idempotency_key)
-- are sealed again under the new one, queued or finished (rotate_seals()
-- needs every value to open under the registered context).  Without the
-- keys (or for a value that does not open) they are left as they are: a
-- queued request among them goes dead, unsent, with an error that says so.
DO $$
DECLARE
	r record;
	ctx text;
	resealed bigint := 0;
	unopened bigint := 0;
BEGIN
	IF NOT EXISTS (SELECT FROM eightms.seal_status() s WHERE s.active) THEN
		SELECT count(*) INTO unopened FROM eightms.http_request WHERE secret_headers IS NOT NULL;
		IF unopened > 0 THEN
			RAISE NOTICE 'eightms: % requests have secret headers sealed under 0.1.0''s context and no seal key is loaded: they were left as they are', unopened
				USING HINT = 'Queued ones among them will go dead unsent ("could not open the secret headers"); enqueue them again.';
		END IF;
		RETURN;
	END IF;
	FOR r IN SELECT q.id, q.url, q.idempotency_key, q.secret_headers FROM eightms.http_request q
			  WHERE q.secret_headers IS NOT NULL ORDER BY q.id LOOP
		ctx := 'http_request:' || r.id || ':' || eightms.http_origin(r.url) || ':' || r.idempotency_key;
		BEGIN
			IF ctx IS NULL THEN
				RAISE EXCEPTION 'the URL does not parse';
			END IF;
			UPDATE eightms.http_request
			   SET secret_headers = eightms.seal(eightms.unseal(r.secret_headers, 'http_request:' || r.idempotency_key), ctx)
			 WHERE id = r.id;
			resealed := resealed + 1;
		EXCEPTION WHEN OTHERS THEN
			unopened := unopened + 1;
		END;
	END LOOP;
	IF unopened > 0 THEN
		RAISE NOTICE 'eightms: sealed the secret headers of % requests again; % could not be opened and were left as they are', resealed, unopened
			USING HINT = 'Queued ones among them will go dead unsent ("could not open the secret headers"); enqueue them again.';
	END IF;
END
$$;
