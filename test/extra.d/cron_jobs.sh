#!/usr/bin/env bash
# Scheduled work runs for real: every job eightms registers, installed by
# eightms.schedule_jobs() and run by pg_cron's own scheduler at the next
# minute, succeeds, and the lease-expiry job requeues a message whose lease
# ran out without any claim doing it.  The suite's cluster is configured as
# test/up.sh's is; pg_cron's default of running jobs over a connection to
# localhost, which asks for a password there, failed every run ("connection
# failed") while every job looked scheduled.  eightms.job_status() reports
# the runs to operators and to no one else.  Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/cron
mkdir -p "$W"
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
pass=0
fail=0
check() { local what=$1; shift; if "$@"; then echo "ok - $what"; pass=$((pass + 1)); else echo "not ok - $what"; fail=$((fail + 1)); fi; }

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

t0=$(q "SELECT now()")
# Runs are told apart by runid: a run refused its connection has no start time.
r0=$(q "SELECT coalesce(max(runid), 0) FROM cron.job_run_details")
command psql -X -At -d "$DB" -c "SELECT count(*) FROM eightms.schedule_jobs()" > "$W/schedule.out" 2>&1
check "schedule_jobs installs every registered job and warns of nothing ($(grep -m1 WARNING "$W/schedule.out"))" \
	test "$(cat "$W/schedule.out")" = "$(q "SELECT count(*) FROM eightms.scheduled_job")"
# Every job at every minute, so that each runs within this test.
q "SELECT count(cron.alter_job(jobid, schedule => '* * * * *')) FROM cron.job WHERE jobname LIKE 'eightms-%'" >/dev/null
jobs=$(q "SELECT count(*) FROM eightms.scheduled_job")
# Each job's first run after t0, once finished.
finished() {
	q "SELECT count(*) FROM cron.job j
		WHERE j.jobname LIKE 'eightms-%'
		  AND EXISTS (SELECT FROM cron.job_run_details d WHERE d.jobid = j.jobid AND d.runid > $r0
					   AND d.status IN ('succeeded', 'failed'))"
}
for _ in $(seq 1 100); do
	[ "$(finished)" = "$jobs" ] && break
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

# Nothing left scheduled: the scripts after this one do not expect a job
# running among their races.
q "SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'eightms-%'" >/dev/null
check "the jobs are unscheduled again" test "$(q "SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'")" = 0
echo "$pass passed, $fail failed"
