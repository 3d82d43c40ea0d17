-- Every function of the API, called by a dashboard owner, a paired phone
-- and an anonymous caller with every argument NULL (what a JSON null or a
-- missing field gives through PostgREST), and again with every argument at
-- an extreme (100,000 characters of text, the largest integer, infinite
-- times, 178 million years, a JSON array of 20,000 long items), either
-- works or fails with an error a client can act on: bad input (22),
-- authorization (28, 42501), nothing found (P0), the gateway's own (E8) or
-- a business rule (23514, with its own message).  Never a not-null or
-- foreign-key violation, an internal error or a missing function: those
-- would mean input reached a table unchecked.  And an error quotes a
-- bounded part of what it was given.  A function added later is probed
-- without a new test.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('nora');
SELECT account_id AS acct FROM eightms_api.create_account('Nora Nulls') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000e1'::text::uuid, 'dev-n1', now(), 90);

-- The extreme value of each argument type the API takes.
CREATE TEMP TABLE extreme (type text PRIMARY KEY, value text NOT NULL);
INSERT INTO extreme VALUES
	('text', $$repeat('x', 100000)$$),
	('integer', '2147483647'),
	('bigint', '9223372036854775807'),
	('text[]', $$(SELECT array_agg(repeat('t', 1000)) FROM generate_series(1, 20000))$$),
	('boolean', 'true'),
	('uuid', 'gen_random_uuid()'),
	('uuid[]', $$(SELECT array_agg(gen_random_uuid()) FROM generate_series(1, 20000))$$),
	('interval', $$'178000000 years'::interval$$),
	('timestamp with time zone', $$'infinity'::timestamptz$$),
	('time without time zone', $$'24:00'::time$$),
	('smallint[]', $$(SELECT array_agg(32767::smallint) FROM generate_series(1, 20000))$$),
	('jsonb', $$(SELECT jsonb_agg(jsonb_build_object('to', repeat('9', 1000), 'from', repeat('9', 1000),
		'body', repeat('b', 1000), 'id', gen_random_uuid(), 'status', 'sent', 'device_message_id', g::text))
		FROM generate_series(1, 20000) g)$$);

CREATE TEMP TABLE api_calls AS
SELECT p.oid::regprocedure AS fn, v.kind,
	   format('SELECT count(*) FROM (SELECT %s.%I(%s)) s', n.nspname, p.proname,
			  (SELECT coalesce(string_agg(CASE v.kind WHEN 'nulls' THEN format('NULL::%s', format_type(t, NULL))
												   ELSE coalesce(e.value, format('NULL::%s', format_type(t, NULL))) END,
										  ', ' ORDER BY i), '')
				 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)
				 LEFT JOIN extreme e ON e.type = format_type(t, NULL))) AS sql
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, (VALUES ('nulls'), ('extremes')) v(kind)
 WHERE n.nspname = 'eightms_api'
   -- Account deletion needs its name typed back; a null is refused, but it
   -- is probed by 12_delete_account.sql with the rest of its flow.
   AND p.proname <> 'delete_account';
GRANT SELECT ON api_calls TO PUBLIC;

SELECT cmp_ok((SELECT count(*) FROM api_calls WHERE kind = 'nulls'), '>=', 25::bigint, 'the probe sees the API''s functions');
SELECT is((SELECT array_agg(DISTINCT format_type(t, NULL)) FROM pg_proc p, unnest(p.proargtypes::oid[]) t
			WHERE p.pronamespace = 'eightms_api'::regnamespace AND format_type(t, NULL) NOT IN (SELECT type FROM extreme)),
		  NULL, 'every argument type of the API has its extreme value');

CREATE FUNCTION pg_temp.outcome(who text, call text, acct uuid) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
BEGIN
	PERFORM pgrst.reset();
	IF who = 'owner' THEN
		PERFORM pgrst.as_user('nora', acct);
	ELSIF who = 'phone' THEN
		PERFORM pgrst.as_phone(acct, '00000000-0000-4000-8000-0000000000e1'::text::uuid);
	ELSE
		PERFORM pgrst.as_anon();
	END IF;
	EXECUTE call;
	RAISE EXCEPTION USING ERRCODE = 'ZZ999';	-- undo what the call did
EXCEPTION
	WHEN SQLSTATE 'ZZ999' THEN
		RETURN 'ok';
	WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		RETURN st || ' ' || msg;
END
$$;

-- Each call, as each caller, checked in a statement of its own (\gexec):
-- a request of its own, as PostgREST makes it.  (On Citus, calls of
-- different roles in one transaction would be refused the shards one
-- another wrote, whatever they are given.)
CREATE FUNCTION pg_temp.probe(who text, fn regprocedure, kind text, acct uuid) RETURNS text
LANGUAGE sql AS $$
	SELECT ok((o = 'ok' OR left(o, 2) IN ('22', '28', 'P0', 'E8') OR left(o, 5) IN ('42501', '23514'))
			  AND length(o) <= 300,
			  format('%s as %s with %s: %s', fn, who, kind, left(o, 200)))
	  FROM api_calls c, LATERAL (SELECT pg_temp.outcome(who, c.sql, acct) AS o) r
	 WHERE c.fn = probe.fn AND c.kind = probe.kind
$$;

SELECT format('SELECT pg_temp.probe(%L, %L, %L, %L)', w.who, c.fn, c.kind, :'acct')
  FROM api_calls c, (VALUES ('owner'), ('phone'), ('anon')) w(who)
 ORDER BY c.kind DESC, c.fn::text, w.who
\gexec

SELECT * FROM finish();
ROLLBACK;
