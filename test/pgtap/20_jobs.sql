-- Scheduled jobs: installed into pg_cron by name, idempotently.
BEGIN;
SELECT plan(7);

SELECT is((SELECT count(*) FROM eightms.schedule_jobs()),
		  (SELECT count(*) FROM eightms.scheduled_job),
		  'schedule_jobs installs every registered job');
SELECT is((SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'),
		  (SELECT count(*) FROM eightms.scheduled_job),
		  'each registered job is one pg_cron job');
SELECT set_eq('SELECT jobid FROM eightms.schedule_jobs()',
			  'SELECT jobid FROM cron.job WHERE jobname LIKE ''eightms-%''',
			  'running schedule_jobs again keeps the same jobs (no duplicates)');
SELECT is((SELECT database FROM cron.job WHERE jobname = 'eightms-run-purges'), current_database()::text,
		  'jobs run in the eightms database');

-- A job dropped from the registry is unscheduled; a changed one updated.
DELETE FROM eightms.scheduled_job WHERE job_name = 'eightms-run-purges';
INSERT INTO eightms.scheduled_job VALUES ('eightms-test-job', '5 4 * * *', 'SELECT 1', 'test');
SELECT eightms.schedule_jobs();
SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'eightms-run-purges'), 0::bigint,
		  'a job removed from the registry is unscheduled');
SELECT is((SELECT schedule FROM cron.job WHERE jobname = 'eightms-test-job'), '5 4 * * *',
		  'a newly registered job is scheduled');

-- The cron history purge removes old runs only.
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, start_time, end_time)
VALUES (1, 900001, 1, current_database(), 'postgres', 'SELECT 1', 'succeeded', now() - interval '30 days', now() - interval '30 days'),
	   (1, 900002, 1, current_database(), 'postgres', 'SELECT 1', 'succeeded', now() - interval '1 hour', now() - interval '1 hour');
SELECT eightms.purge_cron_history() AS purged \gset
SELECT is(ARRAY[:purged, (SELECT runid FROM cron.job_run_details WHERE runid IN (900001, 900002))],
		  ARRAY[1::bigint, 900002], 'purge_cron_history deletes runs older than 7 days and keeps recent ones');

SELECT * FROM finish();
ROLLBACK;
