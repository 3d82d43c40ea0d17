# eightms needs shared_preload_libraries (the bridge worker, its shared
# memory, the secrets the postmaster reads).  In a cluster of its own
# without it, the library loaded by a backend must refuse clearly (SQLSTATE
# 55000, a hint to preload it), not end the session with FATAL (it did:
# "cannot create PGC_POSTMASTER variables after startup") nor answer empty:
# CREATE EXTENSION refuses, and in a database installed while it was
# preloaded, the functions that need it refuse while the others still work.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'no_preload';
my $node = eightms_node('no_preload', database => $db, preload => 'pg_cron');
# Set shared_preload_libraries (later lines win), then restart.
sub preload
{
	my ($libs) = @_;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = '$libs'\n");
	$node->restart;
}
$node->start;
$node->safe_psql('postgres', "CREATE DATABASE $db");

# Output and errors of SQL in one session that goes on after errors,
# verbose (SQLSTATEs shown).
sub sql
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 0,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return "$out\n$err";
}
# One value.
sub val { return scalar $node->safe_psql($db, $_[0]); }
sub refused
{
	my ($out, $what) = @_;
	ok($out =~ /ERROR:  55000: eightms is not loaded through shared_preload_libraries/
		  && $out =~ /HINT:  Add eightms to shared_preload_libraries and restart the server\./, $what);
}

# Two statements in one session: the second runs only if the first did not
# end the session.
my $out = sql("CREATE EXTENSION eightms CASCADE; SELECT 'still ' || 'here'");
refused($out, 'CREATE EXTENSION without preload is refused with 55000 and a hint');
like($out, qr/still here/, 'and the session goes on (no FATAL)');
is(val("SELECT count(*) FROM pg_extension WHERE extname = 'eightms'"), 0, 'nothing is installed');

# Installed while preloaded, then the server restarted without it.
preload('pg_cron,eightms');
sql('SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');
is(val("SELECT count(*) FROM pg_extension WHERE extname = 'eightms'"), 1, 'with preload it installs');
preload('pg_cron');

refused(sql('SELECT eightms.http_in_flight()'), 'eightms.http_in_flight() refuses instead of an empty list');
refused(sql("SELECT eightms.http_enqueue('GET', 'https://example.com/')"),
	'eightms.http_enqueue() refuses (no worker would send it)');
refused(sql("SELECT eightms.seal('x', 'ctx')"), 'eightms.seal() refuses');
refused(sql(q{SELECT eightms.jwt_sign('{"sub": "x"}')}), 'eightms.jwt_sign() refuses');
is(val('SELECT count(*) FROM eightms.http_request'), 0, 'nothing was queued');
is(val("SELECT eightms.e164('+1 415 555 0132', 'US') || ' ' || eightms.is_public_address('8.8.8.8')"),
	'+14155550132 true', 'what needs no preload still works (eightms.e164, eightms.is_public_address)');
# Client sessions log their application name (Cluster.pm's log_line_prefix
# ends in %a): psql's.
my $log = slurp_file($node->logfile);
unlike($log, qr/\] psql FATAL/, 'no session ended with FATAL');

$node->stop;
done_testing();
