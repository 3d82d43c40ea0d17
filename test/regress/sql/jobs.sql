-- schedule_jobs says what to do when pg_cron is not in this database (the
-- regression database is not cron.database_name).
SELECT eightms.schedule_jobs();
SELECT job_name, schedule, command FROM eightms.scheduled_job ORDER BY 1;
SELECT eightms.purge_cron_history();
