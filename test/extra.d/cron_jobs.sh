#!/usr/bin/env bash
# Scheduled work runs for real: every job eightms registers, installed by
# eightms.schedule_jobs() and run by pg_cron's own scheduler at the next
# minute, succeeds, and the lease-expiry job requeues a message whose lease
# ran out without any claim doing it.  The suite's cluster is configured as
# test/up.sh's is; pg_cron's default of running jobs over a connection to
# localhost, which asks for a password there, failed every run ("connection
# failed") while every job looked scheduled.  eightms.job_status() reports
# the runs to operators and to no one else.  A job whose database no longer
# has eightms (DROP EXTENSION leaves pg_cron's rows) unschedules itself at
# its next run instead of failing at every one (checked in a second
# cluster, since eightms must live in pg_cron's database).  Prints "N
# passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/cron
mkdir -p "$W"
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
pass=0
fail=0

# A message a phone claimed and never reported, its lease run out a minute ago.
read -r acct msg < <(command psql -X -At -q -F' ' -d "$DB" <<'SQL'
BEGIN;
SELECT pgrst.as_user('cron-owner') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Cron Co') \gset
SELECT pgrst.reset() \g /dev/null
INSERT INTO eightms.phone (account_id, device_id, last_heartbeat_at, battery_pct) VALUES (:'acct', 'cron-a', now(), 90);
INSERT INTO eightms.conversation (account_id, peer_number, phone_id)
SELECT :'acct', '+12125550190', phone_id FROM eightms.phone WHERE account_id = :'acct';
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, pending, attempts, claimed_at, lease_expires_at)
SELECT c.account_id, c.conversation_id, 'out', c.phone_id, c.peer_number, 'lost in a phone', 'gsm7', 1,
	   'claimed', true, 0, now() - interval '3 minutes', now() - interval '1 minute'
  FROM eightms.conversation c WHERE c.account_id = :'acct'
RETURNING message_id AS msg \gset
COMMIT;
SELECT :'acct', :'msg';
SQL
)

# A second cluster where eightms is dropped from pg_cron's database with
# its jobs scheduled, as an operator might; set up first, so that its jobs
# run in the same minute as the suite's.  It runs jobs the other way
# README allows: over libpq, to the socket directory, where logins are
# trusted (and schedule_jobs warns, as it cannot tell).
BIN=$EIGHTMS_TEST_ROOT$PGBIN
D=$EIGHTMS_TEST_DIR/cron-dropped
PORT2=$((EIGHTMS_TEST_PORT + 7))
[ -s "$D/data/postmaster.pid" ] && PGCTL=$BIN/pg_ctl stop_cluster "$D/data"
rm -rf "$D"
mkdir -p "$D"
chown postgres "$D"
INITDB=$BIN/initdb init_cluster "$D/data" "$PORT2" "$D/run" eightms_dropped
printf '%s\n' "eightms.bridge_database = 'eightms_dropped'" "cron.use_background_workers = off" \
	"cron.host = '$D/run'" >> "$D/data/eightms.conf"
PGCTL=$BIN/pg_ctl start_cluster "$D/data" "$EIGHTMS_TEST_SECRETS" "$D/server.log"
q2() { command psql -X -At -v ON_ERROR_STOP=1 -h "$D/run" -p "$PORT2" -d eightms_dropped -c "$1"; }
command psql -X -q -h "$D/run" -p "$PORT2" -d postgres -c "CREATE DATABASE eightms_dropped"
command psql -X -q -v ON_ERROR_STOP=1 -h "$D/run" -p "$PORT2" -d eightms_dropped -c "SET client_min_messages = warning" \
	-c "CREATE EXTENSION eightms CASCADE" -c "CREATE EXTENSION pg_cron" -c "SELECT eightms.schedule_jobs()" \
	-c "SELECT cron.alter_job(jobid, schedule => '* * * * *') FROM cron.job" -c "DROP EXTENSION eightms" \
	> "$D/setup.out" 2>&1
check "without background workers schedule_jobs warns how pg_cron will connect ($(grep -m1 -c WARNING "$D/setup.out") warning)" \
	grep -q "WARNING:  pg_cron will run these jobs over a connection to \"$D/run\" as \"postgres\"" "$D/setup.out"
check "a second cluster has the jobs scheduled and eightms dropped ($(grep -m1 ERROR "$D/setup.out"))" \
	test "$(q2 "SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'") $(q2 "SELECT count(*) FROM pg_extension WHERE extname = 'eightms'")" \
	= "$(q "SELECT count(*) FROM eightms.scheduled_job") 0"

t0=$(q "SELECT now()")
# Runs are told apart by runid: a run refused its connection has no start time.
r0=$(q "SELECT coalesce(max(runid), 0) FROM cron.job_run_details")
command psql -X -At -d "$DB" -c "SELECT count(*) FROM eightms.schedule_jobs()" > "$W/schedule.out" 2>&1
check "schedule_jobs installs every registered job and warns of nothing ($(grep -m1 WARNING "$W/schedule.out"))" \
	test "$(cat "$W/schedule.out")" = "$(q "SELECT count(*) FROM eightms.scheduled_job")"
# Every job at every minute, so that each runs within this test.
q "SELECT count(cron.alter_job(jobid, schedule => '* * * * *')) FROM cron.job WHERE jobname LIKE 'eightms-%'" >/dev/null
jobs=$(q "SELECT count(*) FROM eightms.scheduled_job")
# Each registered job's first run after t0, once finished.
finished() {
	q "SELECT count(*) FROM cron.job j
		WHERE j.jobname IN (SELECT s.job_name FROM eightms.scheduled_job s)
		  AND EXISTS (SELECT FROM cron.job_run_details d WHERE d.jobid = j.jobid AND d.runid > $r0
					   AND d.status IN ('succeeded', 'failed'))"
}
for _ in $(seq 1 100); do
	[ "$(finished)" = "$jobs" ] \
		&& [ "$(q2 "SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')")" -ge "$jobs" ] && break
	sleep 1
done
q "SELECT j.jobname || ': ' || d.status || ' ' || coalesce(d.return_message, '')
	 FROM cron.job j JOIN cron.job_run_details d ON d.jobid = j.jobid
	WHERE j.jobname LIKE 'eightms-%' AND d.runid > $r0 ORDER BY j.jobname, d.runid" > "$W/runs.txt"
check "pg_cron ran each of the $jobs registered jobs within 100 s ($(finished) did)" test "$(finished)" = "$jobs"
check "and each succeeded ($(grep -v ': succeeded' "$W/runs.txt" | head -n1))" \
	test -s "$W/runs.txt" -a "$(grep -vc ': succeeded' "$W/runs.txt")" = 0
check "the lease-expiry job requeued the message whose lease ran out, as its second attempt" \
	test "$(q "SELECT status || ' ' || attempts FROM eightms.message WHERE account_id = '$acct' AND message_id = '$msg'")" = "queued 1"
status=$(command psql -X -At -q -d "$DB" <<SQL
BEGIN;
SET LOCAL ROLE eightms_dba;
SELECT count(*) FROM eightms.job_status() WHERE scheduled AND active AND last_status = 'succeeded' AND last_start >= '$t0';
COMMIT;
SQL
)
check "job_status shows an operator each job scheduled, with its last run succeeded ($status of $jobs)" \
	test "$status" = "$jobs"
check "and refuses a dashboard user (42501)" \
	bash -c "command psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d '$DB' \
		-c 'BEGIN' -c 'SET LOCAL ROLE eightms_user' -c 'SELECT * FROM eightms.job_status()' 2>&1 | grep -q 42501"

# In the second cluster each job ran once, found eightms gone, and
# unscheduled itself: without that, each would fail at every run.  pg_cron
# may record such a run as "job canceled": the job is gone before the run
# ends, and the scheduler stops what it no longer has.
q2 "SELECT coalesce(j.jobname, 'job ' || d.jobid) || ': ' || d.status || ' ' || coalesce(d.return_message, '')
	  FROM cron.job_run_details d LEFT JOIN cron.job j USING (jobid) ORDER BY d.runid" > "$W/dropped-runs.txt"
check "after DROP EXTENSION each job ran once, without an error of its own ($(grep -vE ': (succeeded|failed job canceled)( |$)' "$W/dropped-runs.txt" | head -n1))" \
	test "$(q2 "SELECT count(DISTINCT jobid) || ' ' || count(*) FROM cron.job_run_details") $(grep -vcE ': (succeeded|failed job canceled)( |$)' "$W/dropped-runs.txt")" = "$jobs $jobs 0"
check "and unscheduled the job ($(q2 "SELECT string_agg(jobname, ', ') FROM cron.job") left)" \
	test "$(q2 "SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'")" = 0
PGCTL=$BIN/pg_ctl stop_cluster "$D/data"

# Nothing left scheduled: the scripts after this one do not expect a job
# running among their races.
q "SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'eightms-%'" >/dev/null
check "the jobs are unscheduled again" test "$(q "SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'")" = 0
echo "$pass passed, $fail failed"
