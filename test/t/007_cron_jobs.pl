# Scheduled work runs for real: every job eightms registers, installed by
# eightms.schedule_jobs() and run by pg_cron's own scheduler at the next
# minute, succeeds, the lease-expiry job requeues a message whose lease
# ran out without any claim doing it, and the retention job clears a
# backlog of message bodies in rounds.  The node runs jobs in background
# workers, as test/up.sh's cluster does: pg_cron's default of running jobs
# over a connection to localhost, which asks for a password there, failed
# every run ("connection failed") while every job looked scheduled.
# eightms.job_status() reports the runs to operators and to no one else.
# A job whose database no longer has eightms (DROP EXTENSION leaves
# pg_cron's rows) unschedules itself at its next run instead of failing at
# every one (checked in a second node, since eightms must live in
# pg_cron's database).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'eightms_cron';
my $node = eightms_node('cron', database => $db, preload => 'pg_cron,eightms');
$node->start;
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE; CREATE EXTENSION pg_cron');
$node->safe_psql($db, slurp_file("$EightmsTest::TESTS/helpers.sql"));
sub val { my ($n, $d, $sql) = @_; my ($rc, $out, $err) = $n->psql($d, $sql); return $rc == 0 ? $out : $err; }
sub q1 { return val($node, $db, $_[0]); }

# A message a phone claimed and never reported, its lease run out a minute ago.
my ($acct, $msg) = split /\|/, $node->safe_psql($db, <<'SQL');
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

# A backlog of 12,000 message bodies past the account's retention of a
# day: more than one round of the retention job (eightms.purge(), rounds of
# 5,000 committed one by one, which pg_cron must run as a CALL of its own).
$node->safe_psql($db, "UPDATE eightms.account SET message_retention = '1 day' WHERE account_id = '$acct';
	INSERT INTO eightms.message (account_id, message_id, conversation_id, direction, phone_id, peer_number, body, encoding,
								 segments, status, attempts, created_at, sent_at)
	SELECT c.account_id, eightms.uuid_v7_floor(now() - interval '3 days' + g * interval '1 ms'), c.conversation_id, 'out',
		   c.phone_id, c.peer_number, 'old ' || g, 'gsm7', 1, 'sent', 1, now() - interval '3 days', now() - interval '3 days'
	  FROM generate_series(1, 12000) g JOIN eightms.conversation c ON c.account_id = '$acct'");

# A second node where eightms is dropped from pg_cron's database with its
# jobs scheduled, as an operator might; set up first, so that its jobs
# run in the same minute as the first node's.  It runs jobs the other way
# README allows: over libpq, to the socket directory, where logins are
# trusted (and schedule_jobs warns, as it cannot tell).
my $dropped = eightms_node('cron_dropped', database => 'eightms_dropped', preload => 'pg_cron,eightms');
$dropped->append_conf('postgresql.conf', "cron.use_background_workers = off\ncron.host = '" . $dropped->host . "'\n");
$dropped->start;
$dropped->safe_psql('postgres', 'CREATE DATABASE eightms_dropped');
my ($rc, $setup_out, $setup_err) = $dropped->psql('eightms_dropped', "SET client_min_messages = warning;
	CREATE EXTENSION eightms CASCADE; CREATE EXTENSION pg_cron; SELECT eightms.schedule_jobs();
	SELECT cron.alter_job(jobid, schedule => '* * * * *') FROM cron.job; DROP EXTENSION eightms", on_error_stop => 1);
my $host = $dropped->host;
my $nwarn = () = $setup_err =~ /WARNING/g;
like($setup_err, qr/WARNING:  pg_cron will run these jobs over a connection to "\Q$host\E" as "postgres"/,
	"without background workers schedule_jobs warns how pg_cron will connect ($nwarn warning)");
sub q2 { return val($dropped, 'eightms_dropped', $_[0]); }
my $jobs = q1('SELECT count(*) FROM eightms.scheduled_job');
is(q2("SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'") . ' '
	  . q2("SELECT count(*) FROM pg_extension WHERE extname = 'eightms'"),
	"$jobs 0", 'a second node has the jobs scheduled and eightms dropped' . ($rc ? " ($setup_err)" : ''));

my $t0 = q1('SELECT now()');
# Runs are told apart by runid: a run refused its connection has no start time.
my $r0 = q1('SELECT coalesce(max(runid), 0) FROM cron.job_run_details');
my ($src, $scheduled, $schedule_err) = $node->psql($db, 'SELECT count(*) FROM eightms.schedule_jobs()');
is("$scheduled$schedule_err", $jobs, 'schedule_jobs installs every registered job and warns of nothing');
# Every job at every minute, so that each runs within this test.
q1("SELECT count(cron.alter_job(jobid, schedule => '* * * * *')) FROM cron.job WHERE jobname LIKE 'eightms-%'");
# Each registered job's first run after $r0, once finished.
sub finished
{
	return q1("SELECT count(*) FROM cron.job j
		WHERE j.jobname IN (SELECT s.job_name FROM eightms.scheduled_job s)
		  AND EXISTS (SELECT FROM cron.job_run_details d WHERE d.jobid = j.jobid AND d.runid > $r0
					   AND d.status IN ('succeeded', 'failed'))");
}
wait_until(sub {
	finished() eq $jobs
	  && q2("SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')") >= $jobs
}, 100);
my $runs = q1("SELECT j.jobname || ': ' || d.status || ' ' || coalesce(d.return_message, '')
	 FROM cron.job j JOIN cron.job_run_details d ON d.jobid = j.jobid
	WHERE j.jobname LIKE 'eightms-%' AND d.runid > $r0 ORDER BY j.jobname, d.runid");
my $done = finished();
is($done, $jobs, "pg_cron ran each of the $jobs registered jobs within 100 s ($done did)");
my @bad = grep { !/: succeeded/ } split /\n/, $runs;
ok($runs ne '' && !@bad, "and each succeeded (@bad)");
is(q1("SELECT status || ' ' || attempts FROM eightms.message WHERE account_id = '$acct' AND message_id = '$msg'"), 'queued 1',
	'the lease-expiry job requeued the message whose lease ran out, as its second attempt');
is(q1("SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND body LIKE 'old %'"), 0,
	'the retention job erased all 12,000 bodies past the retention');
is(q1("SELECT count(*) || ' ' || sum(rows_removed) FROM eightms.purge_log WHERE rule_name = 'message_body' AND started_at >= '$t0'"),
	'3 12000', 'in three rounds, each logged (the job commits between them)');
my $status = q1("BEGIN; SET LOCAL ROLE eightms_dba;
	SELECT count(*) FROM eightms.job_status() WHERE scheduled AND active AND last_status = 'succeeded' AND last_start >= '$t0';
	COMMIT;");
is($status, $jobs, "job_status shows an operator each job scheduled, with its last run succeeded ($status of $jobs)");
is(sqlstate_of($node, $db, 'BEGIN; SET LOCAL ROLE eightms_user; SELECT * FROM eightms.job_status()'), '42501',
	'and refuses a dashboard user (42501)');

# In the second node each job ran once, found eightms gone, and
# unscheduled itself: without that, each would fail at every run.  pg_cron
# may record such a run as "job canceled": the job is gone before the run
# ends, and the scheduler stops what it no longer has.
my $dropped_runs = q2("SELECT coalesce(j.jobname, 'job ' || d.jobid) || ': ' || d.status || ' ' || coalesce(d.return_message, '')
	  FROM cron.job_run_details d LEFT JOIN cron.job j USING (jobid) ORDER BY d.runid");
my @errors = grep { !/: (succeeded|failed job canceled)( |$)/ } split /\n/, $dropped_runs;
is(q2("SELECT count(DISTINCT jobid) || ' ' || count(*) FROM cron.job_run_details") . ' ' . scalar(@errors),
	"$jobs $jobs 0", "after DROP EXTENSION each job ran once, without an error of its own (@errors)");
is(q2("SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'"), 0,
	'and unscheduled the job (' . q2("SELECT string_agg(jobname, ', ') FROM cron.job") . ' left)');
$dropped->stop;

q1("SELECT count(cron.unschedule(jobid)) FROM cron.job WHERE jobname LIKE 'eightms-%'");
is(q1("SELECT count(*) FROM cron.job WHERE jobname LIKE 'eightms-%'"), 0, 'the jobs are unscheduled again');

$node->stop;
done_testing();
