# test/t/EightmsTest.pm: what the TAP tests share, on top of PostgreSQL's
# own PostgreSQL::Test::Cluster (PGXS ships it; make installcheck-tap sets
# PERL5LIB and PG_REGRESS as for contrib modules).
#
# A node here is a cluster of its own with eightms preloaded and its
# secrets in a key file beside the data directory, set up as test/lib.sh
# sets up the suite's cluster: statements never logged (their arguments
# carry secrets), the bridge allowed to reach the stand-in peer on
# 127.0.0.1 with short retry delays.
package EightmsTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

our @EXPORT = qw(eightms_node write_secrets random_key start_peer peer_keys wait_until);

# The repository's test/ directory (this file is in test/t).
our $TESTS = dirname(dirname(__FILE__));

# A base64 AES-256 key.
sub random_key
{
	open my $r, '<:raw', '/dev/urandom' or die "urandom: $!";
	read($r, my $bytes, 32) == 32 or die "urandom: short read";
	return encode_base64($bytes, '');
}

# Write a key file (the lines given, 0600) and return its path.
sub write_secrets
{
	my ($path, @lines) = @_;
	open my $f, '>', $path or die "$path: $!";
	print $f "# eightms secrets for a TAP test\n", map { "$_\n" } @lines;
	close $f;
	chmod 0600, $path;
	return $path;
}

# A node named $name with eightms (and the libraries of %opts{preload},
# default 'eightms') preloaded, serving database %opts{database} with the
# bridge, reading the key file %opts{secrets} (one with a fresh key ring
# and JWT secret when not given; none when it is ''), initialised with the
# options of %opts{init} too (allows_streaming for a primary).  Not started.
sub eightms_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} // {} }, extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
	my $db = $opts{database} // 'eightms_tap';
	my $preload = $opts{preload} // 'eightms';
	my $secrets = $opts{secrets};
	$secrets = write_secrets($node->basedir . '/secrets.env',
		'EIGHTMS_SEAL_KEYS=1:' . random_key(),
		'EIGHTMS_SEAL_ACTIVE_KEY=1',
		'EIGHTMS_JWT_SECRET=' . random_key())
	  unless defined $secrets;
	$node->append_conf('postgresql.conf', <<"CONF");
shared_preload_libraries = '$preload'
eightms.bridge_database = '$db'
eightms.bridge_allow_private_addresses = on
eightms.bridge_retry_base = 50ms
eightms.bridge_retry_max = 2s
cron.database_name = '$db'
cron.use_background_workers = on
max_worker_processes = 16
log_statement = 'none'
log_min_error_statement = panic
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
CONF
	$node->append_conf('postgresql.conf', "eightms.secrets_file = '$secrets'\n")
	  if $secrets ne '';
	return $node;
}

# Start test/bridge/peer.py on a free port, logging what it receives to
# $log; returns its base URL once it accepts connections.
sub start_peer
{
	my ($log) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		exec('/usr/bin/python3', "$TESTS/bridge/peer.py", '--port', $port,
			'--log', $log, '--lifetime', '900')
		  or die "peer.py: $!";
	}
	wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") }, 10)
	  or die "the peer did not start on port $port";
	return ("http://127.0.0.1:$port", $pid);
}

# The idempotency keys the peer received that start with "$tag-", as a
# hash of key => deliveries.
sub peer_keys
{
	my ($log, $tag) = @_;
	my %keys;
	open my $f, '<', $log or return \%keys;
	while (my $line = <$f>)
	{
		my $e = decode_json($line);
		my $k = $e->{key} // '';
		$keys{$k}++ if index($k, "$tag-") == 0;
	}
	return \%keys;
}

# Poll $cond (a sub) until it returns true or $seconds pass; its last answer.
sub wait_until
{
	my ($cond, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (1)
	{
		my $got = $cond->();
		return $got if $got || time() >= $deadline;
		usleep(100_000);
	}
}

1;
