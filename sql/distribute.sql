-- distribute.sql: one way to spread eightms over a Citus cluster.
--
-- Every table of the extension has one placement (doc/scale-out.md says
-- why, table by table):
--   distributed  a tenant table (it has account_id): sharded by account_id,
--                all in account's colocation group, so that one account's
--                rows of every table sit on the same node and a request of
--                one account is a single-shard transaction;
--   reference    global tables every node reads: the sign-outs the
--                pre-request hook checks, wherever the request lands;
--   local        left a plain table on the coordinator: the bridge's queue
--                and attempts, which only the coordinator's bridge worker
--                sends (a copy on every node would be sent by every node),
--                and the registries the install script fills and only
--                coordinator-side functions read (scheduled_job for pg_cron,
--                which runs there; sealed_column for rotate_seals), and the
--                sessions the pre-request hook records as its owner before
--                the request's own role reads the account's shards.
-- A table added later without a placement here makes distribute() refuse,
-- and the catalog guard (test/pgtap/00_guards.sql) fail.

CREATE FUNCTION eightms.distribution_plan()
RETURNS TABLE (table_name regclass, placement text, step integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE t AS (
		SELECT c.oid AS relid,
			   CASE WHEN c.oid IN ('eightms.session_revocation'::regclass, 'eightms.user_revocation'::regclass)
						THEN 'reference'
					WHEN c.oid IN ('eightms.http_request'::regclass, 'eightms.http_attempt'::regclass,
								   'eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass,
								   'eightms.data_column'::regclass, 'eightms.retention_rule'::regclass,
								   'eightms.retention_setting'::regclass, 'eightms.purge_log'::regclass,
								   'eightms.session'::regclass, 'eightms.dsar_request'::regclass)
						THEN 'local'
					WHEN EXISTS (SELECT FROM pg_attribute a
								  WHERE a.attrelid = c.oid AND a.attname = 'account_id' AND NOT a.attisdropped)
						THEN 'distributed'
			   END AS placement
		  FROM pg_class c
		 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	),
	-- Parents first: account, the colocation group's own, then each table
	-- after every table its foreign keys name.
	depth (relid, d) AS (
		SELECT t.relid, 0 FROM t
		UNION ALL
		SELECT k.conrelid, depth.d + 1
		  FROM depth JOIN pg_constraint k ON k.confrelid = depth.relid AND k.contype = 'f'
		 WHERE k.conrelid <> k.confrelid AND depth.d < 16
	)
	SELECT t.relid::regclass, coalesce(t.placement, 'unclassified'),
		   (row_number() OVER (ORDER BY t.relid <> 'eightms.account'::regclass, max(depth.d),
									  t.relid::regclass::text))::integer
	  FROM t JOIN depth USING (relid)
	 GROUP BY t.relid, t.placement
	 ORDER BY 3
$$;
COMMENT ON FUNCTION eightms.distribution_plan() IS
	'Where eightms.distribute() puts each table of the extension on Citus (distributed by account_id, reference, or local to the coordinator), parents first';

-- Run by a superuser on the coordinator, any number of times: each table not
-- placed yet is placed, the others are left as they are.
CREATE FUNCTION eightms.distribute()
RETURNS TABLE (table_name regclass, placement text, action text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	done boolean;
	moved regclass[] := '{}';
	replication_role text := current_setting('session_replication_role');
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'eightms.distribute() must be run by a superuser'
			USING ERRCODE = '42501';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = '55000',
				  HINT = 'Put citus first in shared_preload_libraries, restart, CREATE EXTENSION citus, add the workers, then call eightms.distribute() again.';
	END IF;
	IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0 THEN
		RAISE EXCEPTION 'this node is a Citus worker'
			USING ERRCODE = '55000',
				  HINT = 'Call eightms.distribute() on the coordinator.';
	END IF;
	IF EXISTS (SELECT FROM eightms.distribution_plan() d WHERE d.placement = 'unclassified') THEN
		RAISE EXCEPTION 'eightms.distribution_plan() has no placement for table %',
			(SELECT d.table_name FROM eightms.distribution_plan() d WHERE d.placement = 'unclassified' LIMIT 1)
			USING ERRCODE = '55000',
				  HINT = 'A table of the extension needs a placement in eightms.distribution_plan(); see doc/scale-out.md.';
	END IF;

	-- The conversation triggers run on the shards (doc/scale-out.md).
	PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
	-- Tables linked by foreign keys, distributed in one transaction: one
	-- connection per node, so each sees the rows the previous one moved.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

	FOR p IN SELECT * FROM eightms.distribution_plan() d ORDER BY d.step LOOP
		table_name := p.table_name;
		placement := p.placement;
		done := EXISTS (SELECT FROM pg_dist_partition dp WHERE dp.logicalrelid = p.table_name);
		IF p.placement = 'local' THEN
			action := CASE WHEN done THEN 'left as Citus placed it' ELSE 'kept on the coordinator' END;
		ELSIF done THEN
			action := 'already ' || p.placement;
		ELSIF p.placement = 'reference' THEN
			PERFORM create_reference_table(p.table_name);
			moved := moved || p.table_name;
			action := 'made a reference table';
		ELSIF p.table_name = 'eightms.account'::regclass THEN
			PERFORM create_distributed_table(p.table_name, 'account_id', colocate_with => 'none');
			moved := moved || p.table_name;
			action := 'distributed by account_id';
		ELSE
			PERFORM create_distributed_table(p.table_name, 'account_id', colocate_with => 'eightms.account');
			moved := moved || p.table_name;
			action := 'distributed by account_id, colocated with eightms.account';
		END IF;
		RETURN NEXT;
	END LOOP;

	-- Citus reaches the workers as the role a statement runs as, so the API
	-- roles must log in there (only there: on the coordinator PostgREST
	-- logs in as its authenticator), on every worker, the ones added since
	-- the last call too; the change stays on each worker.
	IF EXISTS (SELECT FROM pg_dist_node n WHERE n.groupid <> 0 AND n.noderole = 'primary') THEN
		IF NOT (SELECT bool_and(w.success) FROM run_command_on_workers(
					'SET LOCAL citus.enable_alter_role_propagation = off; '
					'ALTER ROLE eightms_anon LOGIN; ALTER ROLE eightms_user LOGIN; ALTER ROLE eightms_phone LOGIN; '
					'ALTER ROLE eightms_dba LOGIN; ALTER ROLE eightms_worker LOGIN') w) THEN
			RAISE EXCEPTION 'could not let the API roles log in on every worker'
				USING ERRCODE = '55000',
					  HINT = 'SELECT * FROM run_command_on_workers(''SELECT 1'') shows which worker is unreachable; call eightms.distribute() again once it is.';
		END IF;
		table_name := NULL;
		placement := NULL;
		action := 'the API roles may log in on the workers';
		RETURN NEXT;
	END IF;

	-- Citus copies the rows a table had into its shards and leaves the
	-- originals behind in the coordinator's table, where nothing reads them.
	-- Without triggers: conversation's TRUNCATE trigger would empty the
	-- distributed message table, every account's messages.
	PERFORM set_config('session_replication_role', 'replica', true);
	FOR p IN SELECT m.rel FROM unnest(moved) WITH ORDINALITY AS m(rel, i) ORDER BY m.i DESC LOOP
		PERFORM truncate_local_data_after_distributing_table(p.rel);
	END LOOP;
	PERFORM set_config('session_replication_role', replication_role, true);
END
$$;
COMMENT ON FUNCTION eightms.distribute() IS
	'On a Citus coordinator, as a superuser: distribute the tenant tables by account_id in one colocation group, make the global ones reference tables, keep the bridge''s and the registries on the coordinator; idempotent';

-- An upgrade script's step on an existing table (doc/developing.md, "An
-- upgrade script section"): ALTER TABLE, CREATE INDEX, a policy, a grant
-- on it, or a data change.  On Citus the update script runs on every node,
-- and a statement written in it directly fails on a cluster already
-- distributed: Citus re-sends a DDL statement's text to the workers, which
-- inside a script is the whole script, and a worker cannot run a
-- distributed query inside the update.  Run through here, the statement is
-- its own text (Citus sends that one statement to the shell tables and
-- shards), and it runs only where the table is this node's own: a single
-- server, the coordinator, or a table Citus has not placed; a worker's copy
-- of a distributed or reference table gets the coordinator's change from
-- Citus instead.  Superuser only, as the update is.
CREATE FUNCTION eightms.upgrade_step(target regclass, statement text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'eightms.upgrade_step() must be run by a superuser'
			USING ERRCODE = '42501',
				  HINT = 'It is for the extension''s upgrade scripts, which ALTER EXTENSION eightms UPDATE runs.';
	END IF;
	IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0
		   AND EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = target) THEN
			RETURN false;
		END IF;
	END IF;
	EXECUTE statement;
	RETURN true;
END
$$;
COMMENT ON FUNCTION eightms.upgrade_step(regclass, text) IS
	'For upgrade scripts, as a superuser: run one statement on an existing table (schema or data) where the table is this node''s own, skip it on a Citus worker''s copy of a distributed or reference table, which Citus updates from the coordinator; true when run';
