# The bridge loses nothing when it dies mid-flight: kill -9 the worker while
# requests are in flight, separately stop the whole server in immediate
# mode, and stop the recorder (the process that records outcomes) alone;
# after restart every request completes, and the peer saw each one at least
# once, resends carrying the same Idempotency-Key.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $N = 300;
my $db = 'eightms_tap';
my $node = eightms_node('bridge_crash', database => $db);
# A killed background worker is a crash: the postmaster restarts, as in
# production (PostgreSQL::Test::Cluster turns that off).
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;

my $peer_log = $node->basedir . '/peer.jsonl';
my ($peer, $peer_pid) = start_peer($peer_log);
END { kill 'TERM', $peer_pid if $peer_pid; }

$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE");

sub val { my ($sql) = @_; my ($rc, $out) = $node->psql($db, $sql); return $rc == 0 ? $out : ''; }

# Queue N slow requests tagged $tag; wait until some are done, so that the
# rest are in flight or queued when the blow falls.  How many are in flight.
sub queue_and_wait_for_some
{
	my ($tag) = @_;
	$node->safe_psql($db, "SELECT count(eightms.http_enqueue('GET', '$peer/slow/150',
		idempotency_key => '$tag-' || i, max_attempts => 10)) FROM generate_series(1, $N) i");
	$node->poll_query_until($db, "SELECT count(*) >= 20 FROM eightms.http_request
		WHERE idempotency_key LIKE '$tag-%' AND state = 'done'");
	return val("SELECT count(*) FILTER (WHERE id = ANY (eightms.http_in_flight())) FROM eightms.http_request
		WHERE idempotency_key LIKE '$tag-%'");
}

sub all_done
{
	my ($tag) = @_;
	return $node->poll_query_until($db, "SELECT count(*) = $N FROM eightms.http_request
		WHERE idempotency_key LIKE '$tag-%' AND state IN ('done', 'dead')");
}

sub none_dead
{
	my ($tag) = @_;
	is(val("SELECT count(*) FROM eightms.http_request WHERE idempotency_key LIKE '$tag-%' AND state = 'done'"),
		$N, 'none of them ended dead');
}

sub peer_saw_all
{
	my ($tag) = @_;
	my $keys = peer_keys($peer_log, $tag);
	my $resends = 0;
	$resends += $_ - 1 for values %$keys;
	is(scalar(keys %$keys), $N,
		"the peer received every one of the $N requests (distinct keys, resends: $resends)");
}

$node->poll_query_until($db, "SELECT count(*) = 2 FROM pg_stat_activity
	WHERE backend_type IN ('eightms bridge', 'eightms bridge recorder')");

# 1. kill -9 the worker.
my $inflight = queue_and_wait_for_some('kill9');
my $pid = val("SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge'");
ok($pid ne '' && $inflight > 0, "the bridge worker is running (pid $pid) with requests in flight ($inflight)");
kill 'KILL', $pid;
ok(all_done('kill9'), "after the worker was killed, all $N requests complete");
none_dead('kill9');
peer_saw_all('kill9');

# 2. Immediate stop of the whole server.
$inflight = queue_and_wait_for_some('immediate');
ok($inflight > 0, "requests are in flight ($inflight) when the server stops");
$node->stop('immediate');
$node->start;
ok(all_done('immediate'), "after an immediate stop and restart, all $N requests complete");
none_dead('immediate');
peer_saw_all('immediate');

# 3. Stop the recorder (the process that records outcomes) mid-flight.
$inflight = queue_and_wait_for_some('recorder');
my $rpid = val("SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge recorder'");
ok($rpid ne '' && $inflight > 0, "the recorder is running (pid $rpid) with requests in flight ($inflight)");
$node->safe_psql($db, "SELECT pg_terminate_backend($rpid)");
ok(all_done('recorder'), "after the recorder was stopped, all $N requests complete");
none_dead('recorder');
peer_saw_all('recorder');
is(val("SELECT count(*) FROM eightms.http_request r WHERE idempotency_key LIKE 'recorder-%'
	AND NOT EXISTS (SELECT FROM eightms.http_attempt a WHERE a.request_id = r.id AND a.attempt = r.attempts)"),
	0, 'every done request has its attempt recorded');

$node->stop;
done_testing();
