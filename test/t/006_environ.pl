# The server's secrets leave no trace where other programs look, and
# statement text never reaches the server log (issue 17, findings 4 and 10).
#
# Two nodes: one started with the secrets in its environment, one with a
# key file (eightms.secrets_file).  For each, the /proc/PID/environ of the
# postmaster and of every child (background processes, the bridge worker
# and its recorder, pg_cron's launcher, an open backend) is searched for
# the secret values themselves, while sealing and JWTs work.  PostgreSQL
# moves environ to a copy before libraries load, so clearing the copy
# alone left every value readable there.  A key file that group or others
# may read is refused.  With the logging settings test/lib.sh writes (and
# EightmsTest's nodes), a gateway password and secret header values (of
# calls that succeed and of calls that fail) appear nowhere in the log;
# with log_statement = all they do, and the server warns at start.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'environ';
my @held;
END { $_->quit for @held; }

sub val { my ($node, $sql) = @_; my ($rc, $out, $err) = $node->psql($db, $sql); return $rc == 0 ? $out : $err; }

# Create the database and extension, and wait for the bridge and its recorder.
sub prepare_database
{
	my ($node) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');
	$node->poll_query_until($db, "SELECT count(*) = 2 FROM pg_stat_activity
		WHERE backend_type IN ('eightms bridge', 'eightms bridge recorder')");
}

# The postmaster of $node and every process it started.
sub server_pids
{
	my ($node) = @_;
	my $pm = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	my (undef, $kids) = run_with_input('', 'pgrep', '-P', $pm);
	return ($pm, split ' ', $kids);
}

# Every server process was read and none shows any of the values @values.
sub environ_clean
{
	my ($node, $what, @values) = @_;
	my @pids = server_pids($node);
	my ($read, @leaks) = (0);
	for my $pid (@pids)
	{
		open my $f, '<', "/proc/$pid/environ" or next;
		$read++;
		my $env = do { local $/; <$f> };
		push @leaks, $pid if grep { index($env, $_) >= 0 } @values;
	}
	ok($read == @pids && !@leaks, "$what: /proc/PID/environ of the postmaster and all " . (@pids - 1)
		  . " children shows no secret value (read $read, leaks: @leaks)");
}

# Sealing and JWTs work with key $id and the JWT secret $jwt, and the
# processes to read include the bridge, its recorder and a backend that
# sealed.
sub secrets_work
{
	my ($node, $source, $id, $jwt) = @_;
	is(val($node, "SELECT eightms.unseal(eightms.seal('hello', 'ctx'), 'ctx')"), 'hello', "$source: seal and unseal work");
	is(val($node, "SELECT string_agg(key_id || ':' || active, ',') FROM eightms.seal_status()"), "$id:true",
		"$source: the loaded key ring is key $id");
	ok(jwt_verifies_with($node, $db, $jwt), "$source: jwt_sign uses its JWT secret");
	my $session = $node->background_psql($db);
	push @held, $session;
	$session->query_safe("SELECT eightms.seal('held', 'held')");
	my $held = $session->query_safe('SELECT pg_backend_pid()') =~ s/\s+//gr;
	my %kids = map { $_ => 1 } (server_pids($node))[1 .. 1000];
	my @want = ($held, map { val($node, "SELECT pid FROM pg_stat_activity WHERE backend_type = '$_'") }
		  'eightms bridge', 'eightms bridge recorder');
	my $kinds = val($node, "SELECT string_agg(coalesce(nullif(backend_type, ''), '?'), ', ' ORDER BY backend_type)
		FROM pg_stat_activity WHERE pid IN (" . join(',', grep { /^\d+$/ } keys %kids) . ')');
	ok(!grep({ !/^\d+$/ || !$kids{$_} } @want),
		"$source: the children read include a backend that sealed ($want[0]), the bridge ($want[1]) and its recorder ($want[2]): $kinds");
}

# ---- 1. Secrets in the environment: wiped from the original block too ----
my $envnode = eightms_node('environ_env', database => $db, secrets => '');
my $envfile = $envnode->basedir . '/env.secrets';
my @env_values = new_secrets($envfile, 4);
start_with_env($envnode, $envfile);
prepare_database($envnode);
secrets_work($envnode, 'from the environment', 4, $env_values[1]);
environ_clean($envnode, 'from the environment', @env_values);
my $pm_env = slurp_file('/proc/' . (server_pids($envnode))[0] . '/environ');
like($pm_env, qr/(^|\0)EIGHTMS_JWT_SECRET=(\0|$)/,
	"from the environment: the postmaster's /proc/PID/environ still lists the names, with empty values");
my $out = $envnode->basedir . '/child.env';
$envnode->safe_psql($db, "COPY (SELECT 1) TO PROGRAM 'env > $out'");
my $child = slurp_file($out);
ok($child ne '' && $child !~ /^EIGHTMS_/m, 'from the environment: programs the server runs inherit no EIGHTMS_ variable');
unlike(slurp_file($envnode->logfile), qr/WARNING/, 'from the environment: no WARNING at start');
$envnode->stop;

# ---- 2. A key file (wins over the environment, which is wiped all the same) ----
my $node = eightms_node('environ_file', database => $db, secrets => '');
my $dir = $node->basedir;
my @key_values = new_secrets("$dir/key.secrets", 7);
my @decoy_values = new_secrets("$dir/decoy.env", 3);
set_secrets_file($node, "$dir/key.secrets");
start_with_env($node, "$dir/decoy.env");
prepare_database($node);
secrets_work($node, 'from the key file (not key 3 of the environment)', 7, $key_values[1]);
environ_clean($node, 'from the key file, beside other values in the environment', @key_values, @decoy_values);
unlike(slurp_file($node->logfile), qr/WARNING/, "with test/lib.sh's settings the server starts without a WARNING");

# ---- 3. Statement text never reaches the log (finding 10) ----
$node->safe_psql($db, slurp_file("$EightmsTest::TESTS/helpers.sql"));
my ($PW1, $PW2, $H1, $H2) = map { $_ . (random_key() =~ tr{+/=}{xyz}r) } 'gw-pass-', 'gw-pass-', 'hdr-', 'hdr-';
# Pair a phone as PostgREST would, and keep its device token.
my $token = $node->safe_psql($db, <<'SQL');
BEGIN;
SELECT pgrst.as_user('environ-owner') \g /dev/null
SELECT account_id FROM eightms_api.create_account('Environ Co') \g /dev/null
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon() \g /dev/null
SELECT token FROM eightms_api.pair_phone(:'code', 'environ-phone');
COMMIT;
SQL
# What a heartbeat with the password $pw gave, or its error.
sub heartbeat
{
	my ($pw, $battery) = @_;
	my ($rc, $out, $err) = $node->psql($db, <<'SQL', extra_params => [ '-v', "token=$token", '-v', "pw=$pw", '-v', 'battery=' . ($battery // 80) ]);
BEGIN;
SELECT pgrst.as_token(:'token') \g /dev/null
SELECT eightms_api.heartbeat(:battery, 'wifi', true, '1.0', :'pw') IS NOT NULL;
COMMIT;
SQL
	return $rc == 0 ? $out : $err;
}
sub enqueue
{
	my ($method, $value) = @_;
	return val($node, "SELECT eightms.http_enqueue('$method', 'http://127.0.0.1:9/environ',
		secret_headers => '{\"Authorization\": \"Bearer $value\"}', max_attempts => 1) > 0");
}
my $pos = log_position($node);
is(heartbeat($PW1), 't', 'a heartbeat with a gateway password succeeds');
like(heartbeat($PW2, 120), qr/ERROR/, 'a heartbeat with a gateway password and a battery of 120% fails');
is(enqueue('GET', $H1), 't', 'http_enqueue with a secret header succeeds');
like(enqueue('NOT A METHOD', $H2), qr/ERROR/, 'http_enqueue with a secret header and a bad method fails');
# The bridge has tried the queued request (and logged what it logs).
$node->poll_query_until($db, "SELECT count(*) = 0 FROM eightms.http_request WHERE state NOT IN ('done', 'dead')");
my $log = log_since($node, $pos);
ok(scalar(() = $log =~ /ERROR:/g) >= 2 && $log !~ /STATEMENT:/, 'the log has the two errors, without their statements');
my @leaked = grep { index(slurp_file($node->logfile), $_) >= 0 } $PW1, $PW2, $H1, $H2;
is("@leaked", '', 'neither password nor header value, of calls that succeeded or failed, is in the log');

# With log_statement = all the server warns at start, and the finding shows.
$node->adjust_conf('postgresql.conf', 'log_statement', "'all'");
$pos = log_position($node);
start_with_env($node);
$log = log_since($node, $pos);
like($log, qr/WARNING:  eightms: the server's logging settings write SQL statement text/,
	'with log_statement = all the server warns at start, naming the setting');
ok($log =~ /DETAIL:  Set: log_statement = 'all'\./ && !grep({ index($log, $_) >= 0 } @key_values),
	"and the warning names log_statement = 'all' and no secret");
my $hb = heartbeat($PW1);
ok($hb eq 't' && index(log_since($node, $pos), $PW1) >= 0,
	'(what the settings prevent: with log_statement = all a gateway password reaches the log)');
$node->adjust_conf('postgresql.conf', 'log_statement', "'ddl'");
$pos = log_position($node);
start_with_env($node);
unlike(log_since($node, $pos), qr/WARNING/, 'log_statement = ddl draws no warning');
$node->adjust_conf('postgresql.conf', 'log_statement', "'none'");

# ---- 4. A key file that group or others may read is refused ----
chmod 0644, "$dir/key.secrets";
$pos = log_position($node);
start_with_env($node, "$dir/decoy.env");
like(log_since($node, $pos), qr/WARNING:  eightms: the secrets file "\Q$dir\E\/key.secrets" is not used: it has group or world access/,
	'a key file of mode 0644 is refused with a WARNING at start');
is(sqlstate_of($node, $db, "SELECT eightms.seal('x', 'c')"), '55000',
	'then seal() fails with 55000 (and does not fall back to the environment)');
is(sqlstate_of($node, $db, "SELECT eightms.jwt_sign('{}')"), '55000', 'and jwt_sign() fails with 55000');
is(val($node, 'SELECT problem FROM eightms.seal_status()'), 'eightms.secrets_file was refused: it has group or world access',
	'seal_status says the file was refused');
environ_clean($node, 'with the key file refused', @key_values, @decoy_values);

# ---- 5. The file as a shell writes it; a malformed line is named by number only ----
my ($key, $jwt) = @key_values;
open my $f, '>', "$dir/key.secrets" or die;
print $f "# keys\n\nexport EIGHTMS_SEAL_KEYS=\"7:$key\"\nnot a line but $jwt\nEIGHTMS_JWT_SECRET='$jwt'\r\n";
close $f;
chmod 0600, "$dir/key.secrets";
$pos = log_position($node);
start_with_env($node);
is(val($node, 'SELECT string_agg(key_id::text, \',\') FROM eightms.seal_status()'), 7,
	'export, quotes and CRLF are read as a shell would: key 7 loads');
ok(jwt_verifies_with($node, $db, $jwt), 'and so does the JWT secret');
$log = log_since($node, $pos);
ok($log =~ /WARNING:  eightms: line 4 of eightms.secrets_file is not of the form NAME=VALUE/ && $log !~ /not a line/,
	'a malformed line draws a WARNING naming line 4 and not its text');
my $logs = slurp_file($node->logfile) . slurp_file($envnode->logfile);
@leaked = grep { index($logs, $_) >= 0 } @key_values, @decoy_values, @env_values;
is(scalar @leaked, 0, 'no secret value is in any of the logs');

$_->quit for splice @held;
$node->stop;
done_testing();
