-- Every function of the API, called with every argument NULL (what a JSON
-- null or a missing field gives through PostgREST), by a dashboard owner, a
-- paired phone and an anonymous caller, either works or fails with an
-- error a client can act on: bad input (22), authorization (28, 42501),
-- nothing found (P0), the gateway's own (E8) or a business rule (23514,
-- with its own message).  Never a not-null or foreign-key violation, an
-- internal error or a missing function: those would mean input reached a
-- table unchecked.  A function added later is probed without a new test.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('nora');
SELECT account_id AS acct FROM eightms_api.create_account('Nora Nulls') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000e1'::text::uuid, 'dev-n1', now(), 90);

CREATE TEMP TABLE api_calls AS
SELECT p.oid::regprocedure AS fn,
	   format('SELECT count(*) FROM (SELECT %s.%I(%s)) s', n.nspname, p.proname,
			  (SELECT coalesce(string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY i), '')
				 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i))) AS sql
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'eightms_api'
   -- Account deletion needs its name typed back; a null is refused, but it
   -- is probed by 12_delete_account.sql with the rest of its flow.
   AND p.proname <> 'delete_account';
GRANT SELECT ON api_calls TO PUBLIC;

SELECT cmp_ok((SELECT count(*) FROM api_calls), '>=', 25::bigint, 'the probe sees the API''s functions');

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

SELECT ok(o = 'ok' OR left(o, 2) IN ('22', '28', 'P0', 'E8') OR left(o, 5) IN ('42501', '23514'),
		  format('%s as %s with nulls: %s', c.fn, w.who, o))
  FROM api_calls c, (VALUES ('owner'), ('phone'), ('anon')) w(who),
	   LATERAL (SELECT pg_temp.outcome(w.who, c.sql, :'acct') AS o) r
 ORDER BY c.fn::text, w.who;

SELECT * FROM finish();
ROLLBACK;
