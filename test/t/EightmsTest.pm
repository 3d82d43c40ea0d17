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
use File::Path qw(make_path);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

our @EXPORT = qw(eightms_node write_secrets random_key new_secrets start_with_env set_secrets_file
  log_position log_since sqlstate_of psql_verbose run_with_input b64url openssl_hmac jwt_verifies_with private_tree install_eightms
  start_peer peer_keys wait_until);

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

# Write a key file of fresh values at $path: the key ring holds key $id
# alone, active, beside a JWT secret.  Returns the key and the JWT secret.
sub new_secrets
{
	my ($path, $id) = @_;
	my ($key, $jwt) = (random_key(), random_key());
	$jwt =~ tr{+/}{-_};
	write_secrets($path, "EIGHTMS_SEAL_KEYS=$id:$key", "EIGHTMS_SEAL_ACTIVE_KEY=$id",
		"EIGHTMS_JWT_SECRET=$jwt");
	return ($key, $jwt);
}

# (Re)start $node with the NAME=VALUE lines of the file $env (none when
# undef) in the server's environment, the other way eightms reads its
# secrets; no other EIGHTMS_ variable of the test's own environment
# (test/run.sh exports some) reaches the server.
sub start_with_env
{
	my ($node, $env) = @_;
	my %vars;
	if (defined $env)
	{
		open my $f, '<', $env or die "$env: $!";
		while (my $line = <$f>)
		{
			$vars{$1} = $2 if $line =~ /^([A-Z_][A-Z0-9_]*)=(.*)$/;
		}
	}
	local %ENV = %ENV;
	delete @ENV{ grep { /^EIGHTMS_/ } keys %ENV };
	@ENV{ keys %vars } = values %vars;
	$node->stop if defined $node->{_pid};
	$node->start;
	return $node;
}

# Name the key file $path in $node's configuration ('' for none; later
# lines win).
sub set_secrets_file
{
	my ($node, $path) = @_;
	$node->append_conf('postgresql.conf', "eightms.secrets_file = '$path'\n");
}

# Where $node's log ends now, and what it gained since such a position:
# each start of a node appends to the same log.
sub log_position { my ($node) = @_; return -s $node->logfile // 0; }
sub log_since { my ($node, $pos) = @_; return slurp_file($node->logfile, $pos); }

# psql's output and errors of $sql in one session that goes on after
# errors, verbose (SQLSTATEs shown).
sub psql_verbose
{
	my ($node, $db, $sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return "$out\n$err";
}

# The SQLSTATE of the first error $sql raises ('' when none).
sub sqlstate_of
{
	my ($node, $db, $sql) = @_;
	return psql_verbose($node, $db, $sql) =~ /ERROR:  ([0-9A-Z]{5}):/ ? $1 : '';
}

# Run @cmd with $input on its stdin; its exit status, stdout and stderr.
sub run_with_input
{
	my ($input, @cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \$input, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

# The install_path of the PostgreSQL installation the tests run: the one
# on PATH (test/run.sh's private copy, with this tree's eightms installed).
sub installation
{
	for my $dir (split /:/, $ENV{PATH})
	{
		return dirname($dir) if -x "$dir/pg_ctl";
	}
	die "no pg_ctl on PATH";
}

# The share directory of the installation at install_path $inst.
sub sharedir { my ($inst) = @_; return $inst =~ s{/lib/(postgresql/[0-9]+)$}{/share/$1}r; }

# base64url without padding, as JWTs write it.
sub b64url { return encode_base64($_[0], '') =~ tr{+/}{-_}r =~ s/=+$//r; }

# openssl's HMAC-SHA256 of $data under $key, as raw bytes: an
# implementation independent of eightms's.
sub openssl_hmac
{
	my ($key, $data) = @_;
	my ($rc, $out) = run_with_input($data, 'openssl', 'dgst', '-sha256', '-mac', 'HMAC', '-macopt', "key:$key", '-binary');
	return $out;
}

# A JWT that eightms.jwt_sign makes on $node verifies with openssl under
# the secret $secret.
sub jwt_verifies_with
{
	my ($node, $db, $secret) = @_;
	my $token = $node->safe_psql($db, q{SELECT eightms.jwt_sign('{"sub":"tap"}', '5 minutes')});
	my ($signed, $sig) = $token =~ /^(.*)\.([^.]*)$/ or return 0;
	return b64url(openssl_hmac($secret, $signed)) eq $sig;
}

# A private copy of the tests' installation under $dest, laid out as its
# prefix (lib/, share/ and include/postgresql), without eightms: its own
# pg_config names its own directories (PostgreSQL finds them relative to
# its binaries), so `make install PG_CONFIG=<it>/bin/pg_config` installs a
# build into it.  Returns its install_path, for
# PostgreSQL::Test::Cluster->new.
sub private_tree
{
	my ($dest) = @_;
	my $inst = installation();
	my ($prefix, $major) = $inst =~ m{^(.*)/lib/postgresql/([0-9]+)$} or die "unexpected installation $inst";
	make_path("$dest/lib/postgresql", "$dest/share/postgresql", "$dest/include");
	for (["$inst", "lib/postgresql"], ["$prefix/share/postgresql/$major", "share/postgresql"],
		["$prefix/include/postgresql", "include"])
	{
		system('cp', '-a', $_->[0], "$dest/$_->[1]/") == 0 or die "copying $_->[0] failed";
	}
	my $tree = "$dest/lib/postgresql/$major";
	remove_eightms($tree);
	return $tree;
}

sub remove_eightms
{
	my ($inst) = @_;
	system('sh', '-c', 'rm -rf "$1"/lib/eightms.so "$1"/lib/bitcode/eightms* "$2"/extension/eightms*',
		'_', $inst, sharedir($inst)) == 0 or die "removing eightms from $inst failed";
}

# Install the tests' eightms (this tree's build) into the installation at
# install_path $to, over the one there: what `make install` writes, the
# module, its JIT bitcode, the control file and the scripts.
sub install_eightms
{
	my ($to) = @_;
	my $from = installation();
	remove_eightms($to);
	my $script = 'cp -a "$1"/lib/eightms.so "$3"/lib/ && cp -a "$2"/extension/eightms* "$4"/extension/ &&
		{ [ ! -e "$1"/lib/bitcode/eightms ] || cp -a "$1"/lib/bitcode/eightms* "$3"/lib/bitcode/; }';
	return system('sh', '-c', $script, '_', $from, sharedir($from), $to, sharedir($to)) == 0;
}

# A node named $name with eightms (and the libraries of %opts{preload},
# default 'eightms') preloaded, serving database %opts{database} with the
# bridge, reading the key file %opts{secrets} (one with a fresh key ring
# and JWT secret when not given; none when it is ''), run by the
# installation at %opts{install_path} (default: the one on PATH),
# initialised with the options of %opts{init} too (allows_streaming for a
# primary).  Not started.
sub eightms_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name,
		$opts{install_path} ? (install_path => $opts{install_path}) : ());
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
