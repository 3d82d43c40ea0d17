# test/t/FailoverLoad.pm: a send / claim / report / bridge load against a
# primary, recorded on the client side, and the checks a promoted server
# must pass afterwards.  Shared by the failover TAP tests.
#
# Each client is a process of its own that runs one transaction at a time
# through psql, as PostgREST would (the pgrst.* helpers of test/helpers.sql
# sign a real token and run the pre-request hook), and records a commit
# only once psql said COMMIT succeeded: what a client was told is what the
# checks hold the promoted server to.  Alongside each commit it records
# the primary's WAL flush position read right after it, an upper bound of
# where the commit record ends, so that with asynchronous replication the
# checks can tell what the standby had received.
package FailoverLoad;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use EightmsTest;

our @EXPORT = qw(setup_gateway start_load stop_load read_acks lsn_le
  check_acks check_no_double_claim drain_claims gateway_workers workers_on
  wait_for_load queue_backlog peer_lines check_promoted);

# The backend types of the processes that act on their own: eightms's
# bridge and its recorder, pg_cron's launcher and its job workers.
sub gateway_workers
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, "SELECT count(*) FROM pg_stat_activity
		WHERE backend_type IN ('eightms bridge', 'eightms bridge recorder', 'pg_cron launcher')
		   OR backend_type LIKE 'pg_cron%'");
}

# Wait until $node runs $n of eightms's bridge, its recorder and pg_cron's
# launcher (the backend types of the processes that act on their own).
sub workers_on
{
	my ($node, $db, $n) = @_;
	return $node->poll_query_until($db, "SELECT count(*) = $n FROM pg_stat_activity
		WHERE backend_type IN ('eightms bridge', 'eightms bridge recorder', 'pg_cron launcher')");
}

# Create $db with eightms, pg_cron and the PostgREST contract helpers, an
# account made through the API and two phones online; schedule eightms's
# jobs.  Returns the account id and the two phone ids.
sub setup_gateway
{
	my ($node, $db) = @_;
	# (pg_auto_failover creates the database its node serves)
	$node->safe_psql('postgres', "CREATE DATABASE $db")
	  unless $node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = '$db'");
	$node->safe_psql($db, "SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE; CREATE EXTENSION pg_cron");
	$node->safe_psql($db, "SET client_min_messages = warning; \\i $EightmsTest::TESTS/helpers.sql");
	my $acct = $node->safe_psql($db, "BEGIN;
		SELECT FROM pgrst.as_user('failover-owner');
		SELECT account_id FROM eightms_api.create_account('Failover Co');
		COMMIT;");
	$node->safe_psql($db, "INSERT INTO eightms.phone (account_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
		VALUES ('$acct', 'failover-a', NULL, now(), 90), ('$acct', 'failover-b', NULL, now(), 90)");
	my @phones = split /\n/, $node->safe_psql($db,
		"SELECT phone_id FROM eightms.phone WHERE account_id = '$acct' ORDER BY device_id");
	$node->safe_psql($db, "SELECT count(*) FROM eightms.schedule_jobs()");
	return ($acct, @phones);
}

# One transaction through psql: the statements given, then COMMIT, then
# (client-side, so only once COMMIT succeeded) the word "committed", then
# the primary's WAL flush position.  The lines of the statements' output
# and that position, or nothing when COMMIT was not acknowledged.
sub run_tx
{
	my ($node, $db, @sql) = @_;
	my @cmd = ('psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $node->host,
		'-p', $node->port, '-d', $db, '-c', 'BEGIN', (map { ('-c', $_) } @sql),
		'-c', 'COMMIT', '-c', '\echo committed', '-c', 'SELECT pg_current_wal_flush_lsn()');
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	my @lines = grep { $_ ne '' } split /\n/, $out;
	my ($i) = grep { $lines[$_] eq 'committed' } 0 .. $#lines;
	return () unless defined $i;
	return ([ @lines[ 0 .. $i - 1 ] ], $lines[ $i + 1 ] // '');
}

# A client process: runs $body->() (which returns the lines to record) in
# a loop until $stop exists, writing each acknowledged commit's lines to
# $out as it goes.
sub client
{
	my ($out, $stop, $body) = @_;
	my $pid = fork() // die "fork: $!";
	return $pid if $pid;
	open my $f, '>', $out or die "$out: $!";
	$f->autoflush(1);
	my $n = 0;
	until (-e $stop)
	{
		my @lines = $body->(++$n);
		print $f map { "$_\n" } @lines;
		# Between transactions, not a wait for anyone: a failed connection
		# (the primary is gone) is retried at this pace until told to stop.
		usleep(@lines ? 2_000 : 20_000);
	}
	close $f;
	# Not exit: the END blocks of the test (stopping its nodes and the
	# peer) belong to the parent.
	POSIX::_exit(0);
}

# Start the load on $node: two dashboard senders, each phone claiming and
# reporting what it claimed, and an enqueuer of bridge requests to $peer
# (keys "$tag-bridge-N").  Records under $dir.  Returns a handle.
sub start_load
{
	my ($node, $db, $dir, $tag, $acct, $phones, $peer) = @_;
	my $stop = "$dir/$tag.stop";
	unlink $stop;
	my @pids;
	for my $s (1 .. 2)
	{
		push @pids, client("$dir/$tag-send-$s.log", $stop, sub {
			my ($n) = @_;
			my $to = sprintf('+1 212 555 %04d', 1000 + ($s * 1000 + $n) % 8000);
			my ($rows, $lsn) = run_tx($node, $db,
				"SELECT FROM pgrst.as_user('failover-owner', '$acct')",
				"SELECT message_id FROM eightms_api.send_message('$to', 'Failover $tag $s $n',
					idempotency_key => '$tag-$s-$n')");
			return $rows ? map { "send $_ $lsn" } @$rows : ();
		});
	}
	for my $phone (@$phones)
	{
		push @pids, client("$dir/$tag-phone-$phone.log", $stop, sub {
			my ($claimed, $lsn) = run_tx($node, $db,
				"SELECT FROM pgrst.as_phone('$acct', '$phone')",
				"SELECT message_id FROM eightms_api.claim_messages(5)");
			return () unless $claimed && @$claimed;
			my @lines = map { "claim $phone $_ $lsn" } @$claimed;
			my $reports = join ',', map { qq({"id": "$_", "status": "sent"}) } @$claimed;
			my ($reported, $lsn2) = run_tx($node, $db,
				"SELECT FROM pgrst.as_phone('$acct', '$phone')",
				"SELECT message_id FROM eightms_api.report_messages('[$reports]') WHERE accepted");
			push @lines, map { "report $phone $_ $lsn2" } @$reported if $reported;
			return @lines;
		});
	}
	push @pids, client("$dir/$tag-bridge.log", $stop, sub {
		my ($n) = @_;
		my ($rows, $lsn) = run_tx($node, $db,
			"SELECT eightms.http_enqueue('POST', '$peer/slow/50', idempotency_key => '$tag-bridge-$n',
				max_attempts => 50)");
		return $rows ? ("enqueue $tag-bridge-$n $lsn") : ();
	});
	return { stop => $stop, pids => \@pids, dir => $dir, tag => $tag };
}

# Wait until the load has had commits of each kind acknowledged: 40 sends,
# 20 claims, 20 reports, 20 bridge requests queued.  Whether it had.
sub wait_for_load
{
	my ($load) = @_;
	my %want = (send => 40, claim => 20, report => 20, enqueue => 20);
	return wait_until(sub {
		my %n;
		$n{ $_->[0] }++ for @{ read_acks($load) };
		return !grep { ($n{$_} // 0) < $want{$_} } keys %want;
	}, 60);
}

# Work still waiting when the primary is lost: 50 messages for the phones
# to claim after the failover, and 100 slow bridge requests (keys
# "$tag-batch-N") to $peer, waited for until the peer receives the first.
# The acknowledged commits they are, as read_acks gives them.
sub queue_backlog
{
	my ($node, $db, $tag, $acct, $peer, $peer_log) = @_;
	my @batch = split /\n/, $node->safe_psql($db, "BEGIN;
		SELECT FROM pgrst.as_user('failover-owner', '$acct');
		SELECT message_id FROM eightms_api.send_messages((SELECT jsonb_agg(jsonb_build_object(
			'to', '+1 212 555 ' || (2000 + i), 'body', 'Batch ' || i)) FROM generate_series(1, 50) i));
		COMMIT;");
	$node->safe_psql($db, "SELECT count(eightms.http_enqueue('POST', '$peer/slow/300',
		idempotency_key => '$tag-batch-' || i, max_attempts => 50)) FROM generate_series(1, 100) i");
	wait_until(sub { scalar keys %{ peer_keys($peer_log, "$tag-batch") } }, 30);
	return ((map { [ 'send', $_, '' ] } @batch), (map { [ 'enqueue', "$tag-batch-$_", '' ] } 1 .. 100));
}

# How many requests the peer logging to $log has received.
sub peer_lines
{
	my ($log) = @_;
	open my $f, '<', $log or return 0;
	my @lines = <$f>;
	return scalar @lines;
}

# The checks on a server promoted after its primary was lost, with a
# synchronous standby, under the load tagged $tag: every acknowledged
# commit of $acks is there, at least as far as acknowledged; the phones
# claim what is left, and no message was returned by two claims, before or
# after; the bridge and pg_cron run there and the bridge delivers every
# acknowledged request, among them some queued before the failover (the
# peer had received $lines_at_crash requests when the primary was lost).
sub check_promoted
{
	my ($node, $db, $tag, $acks, $acct, $phones, $peer_log, $lines_at_crash) = @_;
	my $found = check_acks($node, $db, $acks);
	my %missing;
	$missing{ (split / /, $_)[0] }++ for grep { !$found->{$_} } keys %$found;
	for my $kind (qw(send claim report enqueue))
	{
		my $n = grep { $_->[0] eq $kind } @$acks;
		is($missing{$kind} // 0, 0, "every acknowledged $kind ($n) is on the promoted server, as far as acknowledged");
	}

	my @after = drain_claims($node, $db, $acct, $phones);
	ok(@after > 0, 'the phones claim on the promoted server ('.scalar(@after).' messages)');
	my $twice = check_no_double_claim(@$acks, @after);
	is(scalar(keys %$twice), 0, 'no message was returned by two claims, before or after the failover')
	  or diag explain $twice;

	ok(workers_on($node, $db, 3), 'the promoted server runs the bridge, its recorder and pg_cron\'s launcher');
	my @keys = map { $_->[1] } grep { $_->[0] eq 'enqueue' } @$acks;
	my $key_list = join ',', map { "'$_'" } @keys;
	ok($node->poll_query_until($db, "SELECT count(*) = " . scalar(@keys) . " FROM eightms.http_request
		WHERE idempotency_key IN ($key_list) AND state = 'done'"),
		'every acknowledged request is done on the promoted server');
	my $got = peer_keys($peer_log, $tag);
	is(scalar(grep { !$got->{$_} } @keys), 0, 'the peer received every acknowledged request ('.scalar(@keys).')');
	my %after_crash;
	open my $f, '<', $peer_log or die "$peer_log: $!";
	my $i = 0;
	while (my $line = <$f>)
	{
		next if $i++ < $lines_at_crash;
		$after_crash{$1}++ if $line =~ /"key": "(\Q$tag\E-[^"]+)"/;
	}
	close $f;
	ok(scalar(keys %after_crash) > 0,
		'the promoted server delivered requests queued before the failover ('.scalar(keys %after_crash).'), with the keys they were queued with');
	return;
}

# Tell the clients to stop, and wait for them.
sub stop_load
{
	my ($load) = @_;
	open my $f, '>', $load->{stop} or die "$load->{stop}: $!";
	close $f;
	waitpid($_, 0) for @{ $load->{pids} };
	return;
}

# Every acknowledged commit the load's clients recorded: a list of
# [kind, fields..., lsn].
sub read_acks
{
	my ($load) = @_;
	my @acks;
	for my $file (glob "$load->{dir}/$load->{tag}-*.log")
	{
		open my $f, '<', $file or die "$file: $!";
		push @acks, map { chomp; [ split / / ] } <$f>;
		close $f;
	}
	return \@acks;
}

# Whether WAL position $a is at or before $b ("X/Y" strings).
sub lsn_le
{
	my ($a, $b) = @_;
	my ($ah, $al) = map { hex } split m{/}, $a;
	my ($bh, $bl) = map { hex } split m{/}, $b;
	return $ah < $bh || ($ah == $bh && $al <= $bl);
}

# Each acknowledged commit as found on $node: a hash of "kind id" => whether
# the server has it at least as far as the client was told.  Sends: the
# message exists; claims: it is claimed (or further) by that phone; reports:
# it is sent or delivered.  Bridge requests: the request exists.
sub check_acks
{
	my ($node, $db, $acks) = @_;
	my $found = {};
	my %state = split /[|\n]/, $node->safe_psql($db,
		"SELECT message_id || '|' || coalesce(phone_id::text, '') || ',' || status FROM eightms.message");
	my %keys = map { $_ => 1 } split /\n/, $node->safe_psql($db,
		"SELECT idempotency_key FROM eightms.http_request WHERE idempotency_key IS NOT NULL");
	for my $a (@$acks)
	{
		my ($kind, @f) = @$a;
		my $ok;
		if ($kind eq 'send') { $ok = exists $state{ $f[0] }; }
		elsif ($kind eq 'claim' || $kind eq 'report')
		{
			my ($phone, $status) = split /,/, ($state{ $f[1] } // ',');
			my $at_least = $kind eq 'claim' ? qr/^(claimed|sent|delivered)$/ : qr/^(sent|delivered)$/;
			$ok = $phone eq $f[0] && $status =~ $at_least;
		}
		elsif ($kind eq 'enqueue') { $ok = exists $keys{ $f[0] }; }
		$found->{ join ' ', @$a } = $ok;
	}
	return $found;
}

# Message ids handed out by more than one acknowledged claim, as a hash of
# id => the claims' lines.
sub check_no_double_claim
{
	my (@acks) = @_;
	my %by;
	push @{ $by{ $_->[2] } }, join(' ', @$_) for grep { $_->[0] eq 'claim' } @acks;
	return { map { $_ => $by{$_} } grep { @{ $by{$_} } > 1 } keys %by };
}

# Let both phones claim on $node until nothing is left, each claim
# acknowledged as in the load; the acknowledged claims.
sub drain_claims
{
	my ($node, $db, $acct, $phones) = @_;
	my @acks;
	for my $round (1 .. 200)
	{
		my $got = 0;
		for my $phone (@$phones)
		{
			my ($claimed, $lsn) = run_tx($node, $db,
				"SELECT FROM pgrst.as_phone('$acct', '$phone')",
				"SELECT message_id FROM eightms_api.claim_messages(100)");
			next unless $claimed;
			$got += @$claimed;
			push @acks, map { [ 'claim', $phone, $_, $lsn ] } @$claimed;
		}
		last unless $got;
	}
	return @acks;
}

1;
