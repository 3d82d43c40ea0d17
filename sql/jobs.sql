-- jobs.sql: scheduled work through pg_cron.
--
-- Each domain registers its jobs in eightms.scheduled_job; an operator runs
-- eightms.schedule_jobs() (test/up.sh does) to install them.  Jobs are named,
-- so running it again changes nothing, and a job dropped from the registry is
-- unscheduled.

CREATE TABLE eightms.scheduled_job (
	job_name	text NOT NULL PRIMARY KEY
		CONSTRAINT scheduled_job_name_check CHECK (job_name ~ '^eightms-[a-z0-9-]+$'),
	schedule	text NOT NULL,
	command		text NOT NULL,
	description	text NOT NULL
);
COMMENT ON TABLE eightms.scheduled_job IS
	'global: pg_cron jobs eightms needs, installed by eightms.schedule_jobs()';

-- pg_cron keeps a row per run in cron.job_run_details and never deletes
-- them; with jobs every few seconds that table grows without bound.
CREATE FUNCTION eightms.purge_cron_history(keep interval DEFAULT '7 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint := 0;
BEGIN
	IF to_regclass('cron.job_run_details') IS NULL THEN
		RETURN 0;
	END IF;
	EXECUTE 'DELETE FROM cron.job_run_details WHERE end_time < now() - $1' USING keep;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION eightms.purge_cron_history(interval) IS
	'Delete pg_cron run history older than keep, unlogged; eightms.run_purges() (rule cron_history) does it on schedule';

-- Retention (this purge, the session revocations', the bridge's) is
-- scheduled as one job, eightms-run-purges, in privacy.sql: each rule in
-- bounded batches, each run logged.

-- What pg_cron runs for a job: its command while the extension exists in
-- the job's database, and once it is gone (DROP EXTENSION eightms, which
-- cannot take pg_cron's rows with it), the job's unscheduling of itself, so
-- that it does not fail at every run and fill cron.job_run_details with the
-- purge that would have trimmed it gone too.  A job that calls one of
-- eightms's procedures (CALL eightms.name(...), without a semicolon or a
-- dollar sign) has the call written into the block itself: a procedure
-- called through EXECUTE could not commit between its rounds.
CREATE FUNCTION eightms.cron_command(job_name text, command text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('DO $eightms_job$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = ''eightms'') '
				  'THEN %s; ELSE PERFORM cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L '
				  'AND j.database = pg_catalog.current_database(); END IF; END $eightms_job$',
				  CASE WHEN command ~ '^CALL eightms\.[a-z_]+\([^;$]*\)$' THEN command
					   ELSE format('EXECUTE %L', command) END,
				  job_name)
$$;
COMMENT ON FUNCTION eightms.cron_command(text, text) IS
	'The command schedule_jobs() gives pg_cron for a job: the job''s command, or its own unscheduling once eightms is dropped';

-- Install (or update) every registered job in pg_cron, and unschedule
-- eightms jobs no longer registered.  Idempotent.
CREATE FUNCTION eightms.schedule_jobs()
RETURNS TABLE (job_name text, schedule text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cron_db text := current_setting('cron.database_name', true);
	j record;
BEGIN
	-- On Citus the jobs run on the coordinator only: each works on every
	-- account through the distributed tables, so the same job on a worker
	-- node would do its work once more (doc/scale-out.md).
	IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0 THEN
			RAISE EXCEPTION 'this node is a Citus worker: eightms''s jobs run on the coordinator'
				USING ERRCODE = '55000',
					  HINT = 'Call eightms.schedule_jobs() on the coordinator.';
		END IF;
	END IF;

	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		IF cron_db IS NULL THEN
			RAISE EXCEPTION 'pg_cron is not loaded in this server'
				USING ERRCODE = '55000',
					  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name = '''
							 || current_database() || ''', restart, then CREATE EXTENSION pg_cron here.';
		ELSIF cron_db <> current_database() THEN
			RAISE EXCEPTION 'pg_cron lives in database "%", not in "%"', cron_db, current_database()
				USING ERRCODE = '55000',
					  HINT = 'Set cron.database_name = ''' || current_database()
							 || ''' and restart, or in database ' || quote_ident(cron_db)
							 || ' run cron.schedule_in_database() for each row of eightms.scheduled_job with database '''
							 || current_database() || '''.';
		ELSE
			RAISE EXCEPTION 'the pg_cron extension is not created in this database'
				USING ERRCODE = '55000',
					  HINT = 'Run CREATE EXTENSION pg_cron; then call eightms.schedule_jobs() again.';
		END IF;
	END IF;

	-- pg_cron runs a job over a libpq connection to cron.host as the job's
	-- user unless it uses background workers; where that connection needs a
	-- password it has none, and every run fails ("connection failed") with
	-- nothing said at scheduling time.
	IF coalesce(current_setting('cron.use_background_workers', true), 'off') <> 'on' THEN
		RAISE WARNING 'pg_cron will run these jobs over a connection to "%" as "%"',
			coalesce(current_setting('cron.host', true), 'localhost'), current_user
			USING HINT = 'Set cron.use_background_workers = on and restart, or let that connection log in without a '
						 'prompt (pg_hba.conf, ~/.pgpass of the server''s user); eightms.job_status() shows each '
						 'job''s last run.';
	END IF;

	FOR j IN SELECT s.job_name, s.schedule, s.command FROM eightms.scheduled_job s ORDER BY s.job_name LOOP
		job_name := j.job_name;
		schedule := j.schedule;
		EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
			USING j.job_name, j.schedule, eightms.cron_command(j.job_name, j.command);
		RETURN NEXT;
	END LOOP;

	EXECUTE $q$
		SELECT count(cron.unschedule(c.jobid))
		  FROM cron.job c
		 WHERE c.jobname LIKE 'eightms-%'
		   AND c.jobname NOT IN (SELECT s.job_name FROM eightms.scheduled_job s)
	$q$;
END
$$;
COMMENT ON FUNCTION eightms.schedule_jobs() IS
	'Install the jobs in eightms.scheduled_job into pg_cron (idempotent: jobs are named)';

-- Whether the jobs run: each registered job, whether pg_cron has it, and its
-- last run as pg_cron recorded it.  A job that cannot run fails quietly in
-- cron.job_run_details (pg_cron's connection refused, a function gone), and
-- retention purges that never run keep data past what the policy promises.
-- SECURITY DEFINER: pg_cron shows a role only the jobs it scheduled.
CREATE FUNCTION eightms.job_status()
RETURNS TABLE (job_name text, schedule text, scheduled boolean, active boolean,
			   last_start timestamptz, last_status text, last_message text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF to_regclass('cron.job') IS NULL OR to_regclass('cron.job_run_details') IS NULL THEN
		RETURN QUERY SELECT s.job_name, s.schedule, false, NULL::boolean, NULL::timestamptz, NULL::text, NULL::text
					   FROM eightms.scheduled_job s ORDER BY s.job_name;
		RETURN;
	END IF;
	RETURN QUERY EXECUTE $q$
		SELECT s.job_name, coalesce(j.schedule, s.schedule), j.jobid IS NOT NULL, j.active,
			   r.start_time, r.status, r.return_message
		  FROM eightms.scheduled_job s
		  LEFT JOIN cron.job j ON j.jobname = s.job_name
		  LEFT JOIN LATERAL (SELECT d.start_time, d.status, d.return_message
							   FROM cron.job_run_details d
							  WHERE d.jobid = j.jobid
							  ORDER BY d.runid DESC
							  LIMIT 1) r ON true
		 ORDER BY s.job_name
	$q$;
END
$$;
COMMENT ON FUNCTION eightms.job_status() IS
	'Each registered job: scheduled in pg_cron or not, and its last run (start, status, message)';
GRANT EXECUTE ON FUNCTION eightms.job_status() TO eightms_dba;
