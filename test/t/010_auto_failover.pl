# Failover automated by pg_auto_failover (doc/scale-out.md, "Automating it:
# pg_auto_failover").  A monitor and two data nodes, each run by its
# pg_autoctl keeper on 127.0.0.1; the nodes preload pg_cron and eightms and
# read the key file, as doc/scale-out.md tells.  Under the load of
# 009_failover.pl the primary's host is lost (its keeper and its postgres
# killed), and pg_autoctl promotes the other node by itself: every
# acknowledged commit is there, no message is handed out twice, the bridge
# resumes the queue and pg_cron runs on the new primary, and the
# formation's URI (PostgREST's db-uri) reaches it.  Then the old primary's
# keeper is started again: pg_autoctl rebuilds it as a standby, where the
# bridge and pg_cron stay idle.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use FailoverLoad;
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($autoctl) = grep { -x } map { "$_/pg_autoctl" } split /:/, $ENV{PATH};
plan skip_all => 'pg_autoctl is not installed (Debian: postgresql-15-auto-failover, pg-auto-failover-cli)'
  unless $autoctl;
my ($pgctl) = grep { -x } map { "$_/pg_ctl" } split /:/, $ENV{PATH};
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all => "the installation has no pgautofailover extension (in $sharedir/extension)"
  unless -e "$sharedir/extension/pgautofailover.control";

my $db = 'eightms_tap';
my $tmp = PostgreSQL::Test::Utils::tempdir;
# pg_autoctl keeps each node's configuration, state and pid file under the
# XDG directories: the test's own, not the postgres user's.
mkdir "$tmp/$_", 0700 for qw(config data run);
@ENV{qw(XDG_CONFIG_HOME XDG_DATA_HOME XDG_RUNTIME_DIR)} = map { "$tmp/$_" } qw(config data run);
# The servers pg_autoctl starts inherit its environment: none of the
# test's EIGHTMS_ variables (test/run.sh exports some) may reach them.
delete @ENV{ grep { /^EIGHTMS_/ } keys %ENV };

# Run `pg_autoctl @args`, its output appended to $tmp/autoctl.log; its output.
sub autoctl
{
	my (@args) = @_;
	my $out = '';
	my $ok = IPC::Run::run([ $autoctl, @args ], '<', \undef, '>&', \$out);
	append_to_file("$tmp/autoctl.log", "\$ pg_autoctl @args\n$out");
	die "pg_autoctl @args failed:\n$out" unless $ok;
	return $out;
}

# `pg_autoctl @args` (by default `run` for the node at $pgdata), in a
# process group of its own (the keeper and the postgres it starts), its
# output in $tmp/<name>.log.
my %keepers;
sub start_keeper
{
	my ($name, $pgdata, @args) = @_;
	@args = ('run', '--pgdata', $pgdata) unless @args;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		setpgrp(0, 0);
		open STDOUT, '>>', "$tmp/$name.log" or die "$tmp/$name.log: $!";
		open STDERR, '>&', \*STDOUT or die "stderr: $!";
		exec($autoctl, @args) or die "pg_autoctl @args: $!";
	}
	$keepers{$name} = $pid;
	return $pid;
}

# Stop the keepers still running (each stops its postgres) and wait for them.
sub stop_keepers
{
	kill 'TERM', $_ for values %keepers;
	waitpid($_, 0) for values %keepers;
	%keepers = ();
}

my $peer_pid;
END
{
	stop_keepers();
	kill 'TERM', $peer_pid if $peer_pid;
	if (!Test::More->builder->is_passing)
	{
		diag "last lines of $_:\n" . join('', (split /^/, slurp_file($_))[-40 .. -1])
		  for grep { -s } map { "$tmp/$_.log" } qw(monitor node1 node2);
	}
}

# The monitor.  Failures are found and acted on within seconds here, not
# the default 20 s (unhealthy) and 30 s (the old primary's time to demote
# itself): the test kills the primary outright, so nothing would be gained
# by waiting for it.
my $monitor = PostgreSQL::Test::Cluster->new('monitor');
{
	# (its keeper reaches it over TCP: there is no --pghost for a monitor,
	# and its socket directory is not yet the node's own)
	local $ENV{PGHOST} = '127.0.0.1';
	autoctl('create', 'monitor', '--pgdata', $monitor->data_dir, '--pgport', $monitor->port,
		'--hostname', '127.0.0.1', '--auth', 'trust', '--no-ssl', '--pgctl', $pgctl);
}
autoctl('config', 'set', '--pgdata', $monitor->data_dir, 'postgresql.listen_addresses', '127.0.0.1');
$monitor->append_conf('postgresql.conf', <<"CONF");
unix_socket_directories = '@{[ $monitor->host ]}'
shared_buffers = 16MB
pgautofailover.health_check_period = 1s
pgautofailover.health_check_timeout = 1s
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 500ms
pgautofailover.node_considered_unhealthy_timeout = 3s
pgautofailover.primary_demote_timeout = 5s
CONF
start_keeper('monitor', $monitor->data_dir);
ok($monitor->poll_query_until('pg_auto_failover', "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'pgautofailover'"),
	'the monitor runs');
my $monitor_uri = 'postgres://autoctl_node@127.0.0.1:' . $monitor->port . '/pg_auto_failover?sslmode=disable';

# Wait until node $name has reached state $state, as the monitor sees it.
sub reaches
{
	my ($name, $state) = @_;
	return $monitor->poll_query_until('pg_auto_failover', "SELECT count(*) = 1 FROM pgautofailover.node
		WHERE nodename = '$name' AND reportedstate = '$state' AND goalstate = '$state'");
}

# A data node, its keeper started: its PGDATA, port and socket directory,
# registered with the monitor.  The first is primary; the next is made by
# pg_autoctl (by pg_basebackup from the primary, its configuration
# included).  Whether it reached state $state and accepts connections.
sub create_node
{
	my ($node, $name, $state) = @_;
	start_keeper($name, $node->data_dir, 'create', 'postgres', '--pgdata', $node->data_dir,
		'--pgport', $node->port, '--pghost', $node->host, '--listen', '127.0.0.1',
		'--hostname', '127.0.0.1', '--name', $name, '--dbname', $db, '--monitor', $monitor_uri,
		'--auth', 'trust', '--no-ssl', '--pgctl', $pgctl, '--run');
	return reaches($name, $state) && $node->poll_query_until('postgres', 'SELECT true');
}

# The primary: eightms's settings as for any node (test/t/EightmsTest.pm,
# the key file beside it), set before pg_autoctl takes the data directory
# over.  pg_autoctl's own settings come first in postgresql.conf (an
# include on its first line), so these win.
my $node1 = eightms_node('node1', database => $db, preload => 'pg_cron,eightms', init => { allows_streaming => 1 });
$node1->append_conf('postgresql.conf', <<"CONF");
# No lease runs out within the test: a claim is never re-offered by design.
eightms.message_lease = '10min'
shared_buffers = 32MB
max_connections = 40
# pg_autoctl's pg_basebackup asks for a spread checkpoint: over minutes,
# with the default target, on a server this idle.
checkpoint_completion_target = 0
CONF
ok(create_node($node1, 'node1', 'single'), 'pg_autoctl runs the first node, alone');

my $dir = $node1->basedir;
my $peer_log = "$dir/peer.jsonl";
(my $peer, $peer_pid) = start_peer($peer_log);
my ($acct, @phones) = setup_gateway($node1, $db);

# The second node, from a base backup of the first: the same settings and
# key file.  With two nodes pg_auto_failover replicates synchronously
# (number_sync_standbys 0: any one standby).
my $node2 = PostgreSQL::Test::Cluster->new('node2');
ok(create_node($node2, 'node2', 'secondary') && reaches('node1', 'primary'), 'the second node joins as its secondary');
ok($node1->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")
	  && $node1->safe_psql('postgres', 'SHOW synchronous_standby_names') ne '',
	'the secondary streams from the primary, synchronously');
is($node2->safe_psql($db, "SELECT pg_is_in_recovery() AND count(*) = 1 FROM pg_extension WHERE extname = 'eightms'"),
	't', 'the secondary is a standby with eightms');
ok(workers_on($node1, $db, 3), 'the primary runs the bridge, its recorder and pg_cron\'s launcher');

my $load = start_load($node1, $db, $dir, 'auto', $acct, \@phones, $peer);
ok(wait_for_load($load), 'the clients send, claim, report and queue requests');
my @backlog = queue_backlog($node1, $db, 'auto', $acct, $peer, $peer_log);
is(gateway_workers($node2, $db), 0, 'meanwhile on the secondary no bridge, recorder or pg_cron process runs');

# The primary's host is lost: its keeper and postgres killed at once, no
# shutdown of any kind.
my $lost_at = $node2->safe_psql('postgres', 'SELECT now()');
my $postmaster = (split /\n/, slurp_file($node1->data_dir . '/postmaster.pid'))[0];
kill 'KILL', -$keepers{node1}, $postmaster;
waitpid(delete $keepers{node1}, 0);
my $peer_lines_at_crash = peer_lines($peer_log);
stop_load($load);
my $acks = read_acks($load);
push @$acks, @backlog;

ok(reaches('node2', 'wait_primary'), 'pg_autoctl promotes the secondary, without its old primary');
ok($node2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the secondary is promoted');

check_promoted($node2, $db, 'auto', $acks, $acct, \@phones, $peer_log, $peer_lines_at_crash);

# PostgREST's connection string: both nodes, the writable one chosen.
my $uri = autoctl('show', 'uri', '--pgdata', $node2->data_dir, '--formation', 'default');
like($uri, qr/target_session_attrs=read-write/, 'the formation\'s URI asks for the writable node');
my ($rc, $port) = run_with_input('', 'psql', '-X', '-At', '-c', 'SELECT inet_server_port()',
	(grep { /^postgres(ql)?:.*target_session_attrs/ } split ' ', $uri)[0]);
is($port + 0, $node2->port, 'a client of that URI reaches the new primary');

# The old primary comes back: its keeper rewinds it and follows the new one.
start_keeper('node1', $node1->data_dir);
ok(reaches('node1', 'secondary') && reaches('node2', 'primary'), 'pg_autoctl brings the old primary back as a secondary');
ok($node2->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')"),
	'the new primary replicates to it, synchronously');
is($node1->safe_psql($db, 'SELECT pg_is_in_recovery()'), 't', 'the old primary is a standby');

ok($node2->poll_query_until($db, "SELECT count(*) > 0 FROM eightms.job_status()
	WHERE last_start >= '$lost_at' AND last_status = 'succeeded'"),
	'pg_cron runs eightms\'s jobs on the new primary');
is(gateway_workers($node1, $db), 0, 'on the old primary, now a standby, no bridge, recorder or pg_cron process runs');

done_testing();
