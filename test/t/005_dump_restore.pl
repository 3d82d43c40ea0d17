# A backup is only as good as its restore: pg_dump of a database with
# eightms holds every row the accounts wrote (each table of account data is
# marked with pg_extension_config_dump, or pg_dump would leave its rows
# out), pg_restore puts them back without an error, serially and in
# parallel, and the restored database carries on: the phone's token still
# claims, sealed values still open with the server's keys, new bridge
# requests get new ids, tenants stay apart, consent reviews and the
# account's reply templates are still there.  The dump holds no secret.
#
# The same node then moves to a new PostgreSQL major version with
# pg_upgrade: pg_upgrade --check, run live against it (every table of
# eightms holds rows) with a fresh cluster as the target, finds nothing in
# the way.  It refuses, among other things, any table with a column of a
# reg* type whose OIDs it does not keep, which a bridge request's callback
# once was.  Same major version on both sides: only one is installed here,
# and the checks are the same.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $SRC = 'eightms_dump_src';
my @COPIES = ('eightms_dump_serial', 'eightms_dump_parallel');
my @TABLES = qw(account member invitation session session_revocation user_revocation phone pairing_code
  conversation message opt_out consent_event consent_review consent_template http_request http_attempt);
# The bridge serves another database: the queued requests stay as dumped.
my $node = eightms_node('dump', database => 'postgres', preload => 'pg_cron,eightms');
my $dir = $node->basedir;
$node->start;
$node->safe_psql('postgres', "CREATE DATABASE $SRC");
$node->safe_psql($SRC, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');
$node->safe_psql($SRC, slurp_file("$EightmsTest::TESTS/helpers.sql"));

sub val { my ($db, $sql) = @_; my ($rc, $out, $err) = $node->psql($db, $sql); return $rc == 0 ? $out : $err; }

# Two accounts, each table with rows: members, an invitation, a signed-in
# session, a user signed out everywhere, a paired phone with a sealed
# gateway password, messages in every state, a STOP (opt-out, consent
# event, confirmation), an unclear reply under review, a reply template of
# the account's own, bridge requests with a sealed header and an attempt.
my ($rc, $setup, $err) = $node->psql($SRC, <<'SQL', on_error_stop => 1);
BEGIN;
SELECT pgrst.as_user('dump-owner', NULL, NULL, '{"session_id": "dump-session-1"}') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Dump Co') \gset
SELECT pgrst.as_user('dump-owner', :'acct', NULL, '{"session_id": "dump-session-1"}') \g /dev/null
SELECT token AS invite FROM eightms_api.invite_member('agent@example.test', 'agent') \gset
SELECT eightms_api.set_consent_template('contact', 'dump.example.test/help') \g /dev/null
SELECT eightms_api.set_consent_template('help', 'Dump Co help: {contact}. {rates} Reply STOP to opt out.') \g /dev/null
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon() \g /dev/null
SELECT phone_id AS phone, token AS phone_token FROM eightms_api.pair_phone(:'code', 'dump-device-1') \gset
SELECT pgrst.as_phone(:'acct', :'phone') \g /dev/null
SELECT eightms_api.heartbeat(80, 'wifi', gateway_password => 'gateway-pass-6d1f') \g /dev/null
SELECT pgrst.as_user('dump-owner', :'acct') \g /dev/null
SELECT count(*) FROM eightms_api.send_messages(
	(SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 ' || (1000 + i), 'body', 'Dump ' || i)) FROM generate_series(1, 40) i)) \g /dev/null
SELECT pgrst.as_phone(:'acct', :'phone') \g /dev/null
SELECT string_agg(message_id::text, ',') AS claimed FROM eightms_api.claim_messages(10) \gset
SELECT count(*) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', CASE WHEN n <= 3 THEN 'delivered' WHEN n <= 6 THEN 'sent' ELSE 'failed' END))
	   FROM unnest(string_to_array(:'claimed', ',')) WITH ORDINALITY AS u(id, n) WHERE n <= 8)) \g /dev/null
SELECT count(*) FROM eightms_api.receive_messages(
	'[{"from": "+1 212 555 1001", "body": "Thanks!", "device_message_id": "d-1"},
	  {"from": "+1 212 555 1002", "body": "STOP", "device_message_id": "d-2"},
	  {"from": "+1 212 555 1003", "body": "don''t stop texting me", "device_message_id": "d-3"}]') \g /dev/null
SELECT pgrst.reset() \g /dev/null
SELECT pgrst.as_user('other-owner') \g /dev/null
SELECT account_id AS other FROM eightms_api.create_account('Other Co') \gset
SELECT pgrst.as_user('other-owner', :'other') \g /dev/null
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+1 212 555 2001", "body": "Other"}]') \g /dev/null
SELECT pgrst.as_user('gone-user', NULL, NULL, '{"session_id": "gone-session-1"}') \g /dev/null
SELECT eightms_api.sign_out(everywhere => true) \g /dev/null
SELECT pgrst.reset() \g /dev/null
SELECT eightms.http_enqueue('POST', 'https://crm.example.test/hook', '{"Content-Type": "application/json"}', '{"a": 1}',
						   secret_headers => '{"Authorization": "Bearer crm-token-93ab"}') AS req \gset
SELECT eightms.http_enqueue('GET', 'https://crm.example.test/ping') \g /dev/null
INSERT INTO eightms.http_attempt (request_id, attempt, started_at, duration_ms, status) VALUES (:req, 1, now(), 12.5, 503);
COMMIT;
SELECT :'acct', :'other', :'phone', :'phone_token';
SQL
my ($acct, $other, $phone, $token) = split /\|/, (split /\n/, $setup)[-1] // '';
ok(defined $token && $token ne '', "the source database has its data ($err)");
for my $t (@TABLES)
{
	is(val($SRC, "SELECT count(*) > 0 FROM eightms.$t"), 't', "eightms.$t has rows to dump");
}

# The dump, as a DBA takes it: custom format for pg_restore, and plain
# text to read.
my @conn = ('-h', $node->host, '-p', $node->port, '-U', 'postgres');
my ($dump_ok, $dump_out, $dump_err) = run_with_input('', 'pg_dump', @conn, '-Fc', '-f', "$dir/src.dump", $SRC);
ok($dump_ok == 0 && -s "$dir/src.dump" && $dump_err eq '', "pg_dump succeeds ($dump_err)");
run_with_input('', 'pg_dump', @conn, '-f', "$dir/src.sql", $SRC);
my $plain = slurp_file("$dir/src.sql");

# Nothing secret in it: not the server's keys, not what was sealed.
sub absent { return !grep { $_ eq '' || index($plain, $_) >= 0 } @_; }
my %secrets = slurp_file("$dir/secrets.env") =~ /^(EIGHTMS_[A-Z_]+)=(.*)$/mg;
my ($seal_key) = $secrets{EIGHTMS_SEAL_KEYS} =~ /^\d+:([^,]+)/;
ok(absent($seal_key, $secrets{EIGHTMS_JWT_SECRET}), 'the dump holds neither the seal key nor the JWT secret');
ok(absent('gateway-pass-6d1f', 'crm-token-93ab'), 'the dump holds no sealed plaintext (gateway password, secret header)');
ok(index($plain, 'Dump 17') >= 0, 'the dump holds the messages');

# pg_restore into database $db, with the options after it.
sub restore_into
{
	my ($db, @opts) = @_;
	my ($rc, $out, $err) = run_with_input('', 'pg_restore', @conn, '--exit-on-error', @opts, '-d', $db, "$dir/src.dump");
	diag("pg_restore into $db: $out$err") if $rc != 0;
	return $rc == 0;
}
$node->safe_psql('postgres', "CREATE DATABASE $_") for @COPIES;
# Into new databases: in one job, and in parallel as the README says.
# eightms's tables have their foreign keys from CREATE EXTENSION on, so a
# plain pg_restore -j, which loads tables side by side, fails on them (as
# it does for every extension whose tables refer to each other): the rows
# go in with the triggers that check the keys off, between the schema and
# the indexes.
ok(restore_into('eightms_dump_serial'), 'pg_restore succeeds');
ok(restore_into('eightms_dump_parallel', '--section=pre-data')
	  && restore_into('eightms_dump_parallel', '--data-only', '--disable-triggers', '-j', '2')
	  && restore_into('eightms_dump_parallel', '--section=post-data', '-j', '2'),
	'pg_restore in parallel, in three steps, succeeds');

# Every row, every column: the same in both copies as in the source.
sub rows
{
	my ($db, $t) = @_;
	return val($db, "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM eightms.$t t");
}
my $registries = "SELECT (SELECT count(*) FROM eightms.scheduled_job) || '/' || (SELECT count(*) FROM eightms.sealed_column)";
for my $db (@COPIES)
{
	my @differ = grep { rows($SRC, $_) ne rows($db, $_) } @TABLES;
	is("@differ", '', "$db: all " . scalar(@TABLES) . ' tables hold the same rows as the source');
	# The registries come from CREATE EXTENSION alone, once.
	is(val($db, $registries), val($SRC, $registries), "$db: the job and sealed-column registries are not doubled");
}

# The restored database carries on where the source stopped.
my $D = $COPIES[0];
# What the phone's token claims there (rolled back): the same messages as
# it would have claimed from the source.
sub claim
{
	return val($_[0], "BEGIN;
SELECT pgrst.as_token('$token') \\g /dev/null
SELECT count(*) || ' ' || md5(string_agg(message_id::text, ',' ORDER BY message_id)) FROM eightms_api.claim_messages(100);
ROLLBACK;");
}
my ($want, $got) = (claim($SRC), claim($D));
ok($got eq $want && $want =~ /^[1-9]/, "the phone's token from before the dump claims the same messages ($got)");
is(val($D, "SELECT eightms.unseal(gateway_password, 'phone:' || account_id || ':' || phone_id || ':gateway_password')
	FROM eightms.phone WHERE phone_id = '$phone'"), 'gateway-pass-6d1f', "the sealed gateway password opens with the server's key");
is(val($D, "SELECT count(*) FROM eightms.http_request r, unnest(eightms.http_secret_header_lines(r.secret_headers, r.id,
	r.idempotency_key, r.url)) h WHERE h LIKE 'Authorization: Bearer crm-token-93ab%'"), 1,
	'the sealed header of a queued bridge request opens');
my $max_id = val($SRC, 'SELECT max(id) FROM eightms.http_request');
my $new_id = val($D, "SELECT eightms.http_enqueue('GET', 'https://crm.example.test/after-restore')");
ok($new_id =~ /^\d+$/ && $new_id > $max_id, "a request queued after the restore gets a new id ($new_id > $max_id)");
# As the account's owner, in a transaction rolled back.
sub as_owner
{
	my ($db, $user, $account, $sql) = @_;
	return val($db, "BEGIN;\nSELECT pgrst.as_user('$user', '$account') \\g /dev/null\n$sql;\nROLLBACK;");
}
is(as_owner($D, 'dump-owner', $acct, q{SELECT status FROM eightms_api.send_messages('[{"to": "+1 212 555 1002", "body": "Back?"}]')}),
	'refused', 'the opt-out still refuses the number');
is(as_owner($D, 'other-owner', $other, "SELECT count(*) FROM eightms_api.messages WHERE account_id = '$acct'"), 0,
	"the other account still sees none of this account's messages");
like(val($D, q{SELECT pgrst.as_user('gone-user', NULL, NULL, '{"session_id": "gone-session-1"}')}),
	qr/this session has been signed out/, 'a session signed out before the dump stays signed out');
my $forced = "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'eightms'::regnamespace
	AND relkind = 'r' AND relrowsecurity AND relforcerowsecurity";
is(val($D, $forced), val($SRC, $forced), 'row-level security is forced on the same tables as in the source');
is(as_owner($D, 'dump-owner', $acct, "SELECT peer_number || ' ' || rule || ' ' || body FROM eightms_api.consent_reviews
	WHERE resolved_at IS NULL"), "+12125551003 review.negated don't stop texting me",
	'the unclear reply is still under review, with its message, for the account');
is(as_owner($D, 'dump-owner', $acct, "SELECT template || ' ' || is_default FROM eightms_api.consent_templates() WHERE kind = 'help'"),
	'Dump Co help: {contact}. {rates} Reply STOP to opt out. false', "the account's own help reply is still its template");

# ---- pg_upgrade --check against this node, live --------------------------
my $new = PostgreSQL::Test::Cluster->new('upgrade_target');
$new->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ]);
ok(-s $new->data_dir . '/PG_VERSION', 'a new cluster is initialized');
# pg_upgrade loads every library the old cluster's functions name; pg_cron
# loads only at start, so the new cluster preloads what the old one does.
$new->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_cron,eightms'\ncron.database_name = 'postgres'\n");
my $bindir = EightmsTest::installation() . '/bin';
# pg_upgrade writes its logs under the new cluster and where it runs.
my $cwd = "$dir/pg_upgrade";
mkdir $cwd;
my ($urc, $uout, $uerr) = run_with_input('', 'sh', '-c', 'cd "$1" && shift && exec "$@"', '_', $cwd,
	'pg_upgrade', '--check', '-U', 'postgres', '-b', $bindir, '-B', $bindir, '-d', $node->data_dir,
	'-D', $new->data_dir, '-p', $node->port, '-P', $new->port, '-s', $node->host);
is($urc, 0, 'pg_upgrade --check passes against the live node') or diag("$uout$uerr");
like($uout, qr/Checking for reg\* data types in user tables *ok/, 'it checked for reg* columns in user tables');
like($uout, qr/Clusters are compatible/, 'it found the clusters compatible');

$node->stop;
done_testing();
