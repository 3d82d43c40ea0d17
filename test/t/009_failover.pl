# Failover to a streaming replica under load (doc/scale-out.md, "Fail
# over").  A primary with a synchronous standby serves two dashboard
# senders, two phones claiming and reporting, and bridge requests to a
# stand-in peer; the clients record every commit they were told succeeded.
# The primary is stopped in immediate mode and the standby promoted: every
# acknowledged commit is there, at least as far as acknowledged; no message
# is handed out by two claims, before and after; the promoted server's
# bridge delivers what was queued, with the same Idempotency-Key; pg_cron
# runs eightms's jobs there; and while it was a standby, neither the bridge
# nor pg_cron ran on it.  Then the same with asynchronous replication,
# where what holds is weaker: what the standby had received before the
# crash survives, acknowledged commits after it are lost, and a lost claim
# may be handed out again.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use FailoverLoad;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'eightms_tap';
my %node_opts = (database => $db, preload => 'pg_cron,eightms', init => { allows_streaming => 1 });
my $primary = eightms_node('primary', %node_opts);
# No lease runs out within the test: a claim is never re-offered by design.
$primary->append_conf('postgresql.conf', "eightms.message_lease = '10min'\n");
$primary->start;

my $dir = $primary->basedir;
my $peer_log = "$dir/peer.jsonl";
my ($peer, $peer_pid) = start_peer($peer_log);
END { kill 'TERM', $peer_pid if $peer_pid; }

my ($acct, @phones) = setup_gateway($primary, $db);

# A streaming replica by pg_basebackup, made synchronous.  It reads the
# same key file (the primary's configuration is copied with the backup).
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'\n");
$primary->reload;
ok($primary->poll_query_until('postgres',
	"SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'standby'"),
	'the standby streams from the primary, synchronously');

ok(workers_on($primary, $db, 3), 'the primary runs the bridge, its recorder and pg_cron\'s launcher');

# The load, and a batch of slow requests still queued when the blow falls.
my $load = start_load($primary, $db, $dir, 'sync', $acct, \@phones, $peer);
ok(wait_for_load($load), 'the clients send, claim, report and queue requests');
my @backlog = queue_backlog($primary, $db, 'sync', $acct, $peer, $peer_log);

is(gateway_workers($standby, $db), 0,
	'meanwhile on the standby no bridge, recorder or pg_cron process runs');

# The crash.
$primary->stop('immediate');
my $peer_lines_at_crash = peer_lines($peer_log);
stop_load($load);
my $acks = read_acks($load);
push @$acks, @backlog;

# Before promotion: a standby whose primary is gone, with requests due.
ok($standby->safe_psql($db, "SELECT pg_is_in_recovery() AND count(*) > 0 FROM eightms.http_request
	WHERE state = 'queued' AND next_attempt_at <= now()") eq 't',
	'the standby, its primary gone, has bridge requests due');
is(gateway_workers($standby, $db), 0, 'and still runs no bridge or pg_cron process');
is(peer_lines($peer_log), $peer_lines_at_crash, 'the peer received nothing from the standby');

my $promoted_at = $standby->safe_psql('postgres', 'SELECT now()');
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');

check_promoted($standby, $db, 'sync', $acks, $acct, \@phones, $peer_log, $peer_lines_at_crash);

# A second standby of the promoted server, asynchronous, before pg_cron's
# next minute comes.
$standby->backup('base2');
my $standby2 = PostgreSQL::Test::Cluster->new('standby2');
$standby2->init_from_backup($standby, 'base2', has_streaming => 1);
$standby2->start;
ok($standby->poll_query_until('postgres',
	"SELECT sync_state = 'async' FROM pg_stat_replication WHERE application_name = 'standby2'"),
	'a second standby streams from the promoted server, asynchronously');

# pg_cron runs eightms's jobs on the promoted server.
ok($standby->poll_query_until($db, "SELECT count(*) > 0 FROM eightms.job_status()
	WHERE last_start >= '$promoted_at' AND last_status = 'succeeded'"),
	'pg_cron runs eightms\'s jobs on the promoted server');

# Asynchronous: acknowledged is not enough.
$load = start_load($standby, $db, $dir, 'async', $acct, \@phones, $peer);
ok(wait_for_load($load), 'under asynchronous replication the clients run again');
# The standby falls behind (its WAL receiver stopped, as a slow network
# would), the primary goes on acknowledging commits, then crashes.
my $receiver = $standby2->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
kill 'STOP', $receiver;
# More WAL than the socket between them holds, so that what follows
# cannot reach the standby.
$standby->safe_psql($db, "CREATE TABLE filler AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 20000)");
my $behind = scalar @{ read_acks($load) };
ok(wait_until(sub { @{ read_acks($load) } >= $behind + 40 }, 60), 'the primary acknowledges commits the standby does not receive');
$standby->stop('immediate');
kill 'CONT', $receiver;
stop_load($load);
$acks = read_acks($load);
ok($standby2->poll_query_until('postgres',
	"SELECT NOT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"),
	'the second standby has written all it received');
$standby2->promote;
ok($standby2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the second standby is promoted');
# Where its history forks from the lost primary's: the end of what it
# received (and replayed), the last line of its newest timeline history.
my ($history) = sort { $b cmp $a } glob $standby2->data_dir . '/pg_wal/*.history';
my $received = (split /\t/, (grep { /\S/ } split /\n/, slurp_file($history))[-1])[1];

my $found = check_acks($standby2, $db, $acks);
my @received = grep { lsn_le($_->[-1], $received) } @$acks;
my @lost = grep { !$found->{ join ' ', @$_ } } @$acks;
is(scalar(grep { !$found->{ join ' ', @$_ } } @received), 0,
	'every acknowledged commit the standby had received (' . scalar(@received) . ' of ' . scalar(@$acks) . ') survives');
ok(@lost > 0 && !(grep { lsn_le($_->[-1], $received) } @lost),
	'acknowledged commits are lost (' . scalar(@lost) . '), only those past what the standby received');
my @after = drain_claims($standby2, $db, $acct, \@phones);
my $twice = check_no_double_claim(@$acks, @after);
my %lost = map { join(' ', @$_) => 1 } @lost;
is(scalar(grep { !grep { $lost{$_} } @{ $twice->{$_} } } keys %$twice), 0,
	'a message claimed twice (' . scalar(keys %$twice) . ') is one whose first claim was lost');
is($standby2->safe_psql($db, "SELECT count(*) FROM eightms.message
	WHERE NOT eightms.message_state_ok(direction, status, pending)"), 0,
	'every message on the promoted server is in a consistent state');

$standby2->stop;
done_testing();
