# ALTER EXTENSION eightms UPDATE, as a DBA runs it at a release: the last
# released version is built from git history and installed into a private
# copy of PostgreSQL, a node run by it gets a database filled through that
# release's API, the server is stopped, this tree's build is installed over
# the old one, the server started again and the extension updated.  Then
# the upgraded database's catalog must equal a fresh install's
# (test/upgrade/catalog.sql, compared category by category: a failure
# names what the upgrade script misses), every row must still be there,
# and the data must still work under this tree's API and test/helpers.sql:
# the phone's token from before claims and reports the messages queued
# before, the account reads its conversations, the opted-out number stays
# refused, the signed-out session stays signed out, sealed values open and
# the bridge request left queued is sent with its sealed header.
#
# The history comes from the git directory EIGHTMS_GIT_DIR (test/run.sh
# gives a copy of the clone's), else from the clone these tests are in.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use File::Basename qw(basename);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $TESTS = $EightmsTest::TESTS;
my @git = defined $ENV{EIGHTMS_GIT_DIR} ? ('git', '--git-dir', $ENV{EIGHTMS_GIT_DIR}) : ('git', '-C', "$TESTS/..");
my $db = 'eightms_upgraded';
my $fresh = 'eightms_fresh';

# The release the update starts from is the newest one frozen in
# sql/versions/ (installed beside the tree's own script), and the commit it
# was built from is named once, in the first line of its install script.
my $inst = EightmsTest::installation();
my $ext = EightmsTest::sharedir($inst) . '/extension';
my ($new_version) = slurp_file("$ext/eightms.control") =~ /^default_version\s*=\s*'(.*)'/m;
my @released = sort { version_cmp($a, $b) } grep { $_ ne $new_version }
  map { /^eightms--([^-]+(?:-[^-]+)*)\.sql$/ && !/--.*--/ ? $1 : () } map { basename($_) } glob("$ext/eightms--*.sql");
my $old_version = $released[-1] // 'none';
my $old_script = "$ext/eightms--$old_version.sql";
my ($old_commit) = -e $old_script ? (split /\n/, slurp_file($old_script))[0] =~ / at commit ([0-9a-f]{7,40})\)/ : ();
sub version_cmp { my @a = split /\./, $_[0]; my @b = split /\./, $_[1]; return ($a[0] <=> $b[0] || $a[1] <=> $b[1] || ($a[2] // 0) <=> ($b[2] // 0)); }
note("from $old_version (commit " . ($old_commit // '?') . ") to $new_version");
ok(defined $old_commit, "the released script eightms--$old_version.sql names the commit it was built from");
my ($has_commit) = defined $old_commit ? run_with_input('', @git, 'cat-file', '-e', "$old_commit^{commit}") : (1);
if ($has_commit != 0)
{
	fail("commit " . ($old_commit // '?') . " of release $old_version is in this clone");
	diag("the upgrade from $old_version cannot be tested without it; a shallow clone needs 'git fetch --unshallow'");
	done_testing();
	exit;
}

my $dir = PostgreSQL::Test::Utils::tempdir('upgrade');
# The old release as its tarball would be: the module and its script only
# (not the phone tools, nor JIT bitcode), built with the private tree's
# pg_config and installed into it.
my $tree = private_tree("$dir/root");
mkdir "$dir/old";
my ($arc) = run_with_input('', 'sh', '-c', '"$@" | tar -x -C "$0"', "$dir/old", @git, 'archive', $old_commit);
my @oldmake = ('make', '-C', "$dir/old", '-s', '-j2', '-o', 'eightms-phone', 'with_llvm=no', "PG_CONFIG=$tree/bin/pg_config");
my ($brc, $bout, $berr) = run_with_input('', @oldmake);
ok($arc == 0 && $brc == 0, "$old_version builds from commit $old_commit") or diag("$bout$berr");
my $frozen = slurp_file($old_script) =~ s/^[^\n]*\n//r;
my $generated = -e "$dir/old/eightms--$old_version.sql" ? slurp_file("$dir/old/eightms--$old_version.sql") =~ s/^[^\n]*\n//r : '';
ok($frozen eq $generated, "the frozen eightms--$old_version.sql is what commit $old_commit generates (but for its first line)");
($brc, $bout, $berr) = run_with_input('', @oldmake, 'install');
ok($brc == 0, "$old_version installs into a private copy of PostgreSQL") or diag("$bout$berr");

# The node, set up as the suite's cluster is.  The old release reads its
# secrets from the server's environment only (it knows no key file); the
# update below moves them to the key file, as README tells a DBA to.
my $node = eightms_node('upgrade', database => $db, preload => 'pg_cron,eightms', secrets => '', install_path => $tree);
my $secrets = $node->basedir . '/secrets.env';
new_secrets($secrets, 1);
start_with_env($node, $secrets);
my ($peer, $peer_pid) = start_peer($node->basedir . '/peer.jsonl');
END { kill 'TERM', $peer_pid if $peer_pid; }
sub val { my ($sql, $d) = @_; my ($rc, $out, $err) = $node->psql($d // $db, $sql); return $rc == 0 ? $out : $err; }
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE; CREATE EXTENSION pg_cron');
is(val("SELECT extversion FROM pg_extension WHERE extname = 'eightms'"), $old_version, "CREATE EXTENSION installs $old_version");
my (undef, $old_helpers) = run_with_input('', @git, 'show', "$old_commit:test/helpers.sql");
$node->safe_psql($db, $old_helpers);
my ($frc, $fout, $ferr) = $node->psql($db, slurp_file("$TESTS/upgrade/fill-$old_version.sql"),
	extra_params => [ '-v', "peer=$peer" ]);
is($frc, 0, "the database is filled through the API of $old_version") or diag($ferr);
sub fixture { return val("SELECT value FROM public.upgrade_fixture WHERE key = '$_[0]'"); }
my $done_id = fixture('bridge_done') || 0;
ok($node->poll_query_until($db, "SELECT state = 'done' FROM eightms.http_request WHERE id = $done_id"),
	"the bridge of $old_version sent a request");
# Rows of every table, to be compared after the update.  Not the registries
# the install and upgrade scripts write themselves (a version may add a job
# or a sealed column); the catalog comparison below checks those.
sub count_rows
{
	my @tables = split /\n/, val("SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'eightms'::regnamespace
		AND c.relkind = 'r' AND c.oid NOT IN ('eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass) ORDER BY 1");
	return { map { $_ => val("SELECT count(*) FROM $_") } @tables };
}
my $before = count_rows();
my @empty = sort grep { $before->{$_} eq '0' } keys %$before;
ok(%$before && (!@empty || "@empty" eq 'eightms.http_attempt'),
	'every table but the bridge\'s attempts has rows before the update (empty: ' . ("@empty" || 'none') . ')');

# The update: stop, install this tree's build over the old one, start, update.
$node->stop;
ok(install_eightms($tree), "this tree's build installs over $old_version");
set_secrets_file($node, $secrets);
start_with_env($node);
# 0.2.0 requires pg_trgm (the contacts' search): the DBA creates it first
# (doc/operations.md, "Upgrades").
my ($urc, $uout, $uerr) = $node->psql($db, 'CREATE EXTENSION IF NOT EXISTS pg_trgm; ALTER EXTENSION eightms UPDATE');
is($urc, 0, 'ALTER EXTENSION eightms UPDATE succeeds') or diag($uerr);
is(val("SELECT extversion FROM pg_extension WHERE extname = 'eightms'"), $new_version, "and reports $new_version");

# The catalog against a fresh install beside it.  The upgraded database's
# is read first: the roles are the cluster's, and the fresh install would
# create any the update missed.
my $catalog = slurp_file("$TESTS/upgrade/catalog.sql");
my ($crc, $upgraded, $cerr) = $node->psql($db, $catalog);
ok($crc == 0 && $cerr eq '', "the upgraded catalog is read ($cerr)");
$node->safe_psql('postgres', "CREATE DATABASE $fresh");
$node->safe_psql($fresh, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');
my ($frc2, $fresh_cat, $ferr2) = $node->psql($fresh, $catalog);
ok($frc2 == 0 && $ferr2 eq '', "a fresh install's catalog is read ($ferr2)");
for my $category (qw(extension members schemas relations columns constraints indexes policies triggers
	functions sequences types grants comments roles registry))
{
	my @u = grep { /^$category\t/ } split /\n/, $upgraded;
	my @f = grep { /^$category\t/ } split /\n/, $fresh_cat;
	my %in_f = map { $_ => 1 } @f;
	my %in_u = map { $_ => 1 } @u;
	my @diff = ((map { "-$_" } grep { !$in_f{$_} } @u), (map { "+$_" } grep { !$in_u{$_} } @f));
	# The same lines in the same order; each category has lines (but
	# types: eightms has none of its own yet).
	push @diff, '(the same lines in another order)' if !@diff && "@u" ne "@f";
	ok(!@diff && (@f || $category eq 'types'),
		"catalog: $category after the update equal a fresh install's (" . scalar(@f) . ' lines)')
	  or diag("- after ALTER EXTENSION UPDATE, + after CREATE EXTENSION:\n" . join("\n", @diff[0 .. ($#diff < 59 ? $#diff : 59)]));
}

# The data: every row still there, and still working.
my $after = count_rows();
my @differ = grep { ($after->{$_} // '') ne $before->{$_} } sort keys %$before;
ok(%$after && !@differ, 'every table has as many rows as before the update (differ: ' . ("@differ" || 'none') . ')');
# This tree's contract from here on.
$node->psql($db, 'DROP SCHEMA pgrst CASCADE');
my ($hrc, $hout, $herr) = $node->psql($db, slurp_file("$TESTS/helpers.sql"));
is($hrc, 0, "this tree's test/helpers.sql loads") or diag($herr);
my ($acct, $other, $phone, $token, $queued) = map { fixture($_) } qw(acct other phone phone_token queued);
# As one request each, committed, as PostgREST would make them.
sub request
{
	my ($rc, $out, $err) = $node->psql($db, "BEGIN;\n$_[0]\nCOMMIT;",
		extra_params => [ '-v', "acct=$acct", '-v', "other=$other", '-v', "token=$token" ]);
	return $rc == 0 ? $out : "$out$err";
}
my $claimed = request("SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM eightms_api.claim_messages(10)
 WHERE message_id::text = ANY (string_to_array('$queued', ','));");
is($claimed, join(',', sort split /,/, $queued), "the phone's token from before the update claims the messages queued before it");
my $reported = request("SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(accepted::text, ',') FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', 'sent')) FROM unnest(string_to_array('$queued', ',')) id));");
is($reported, 'true,true', "and reports them sent ($reported)");
is(val("SELECT string_agg(status, ',') FROM eightms.message WHERE message_id::text = ANY (string_to_array('$queued', ','))"),
	'sent,sent', 'they are sent');
my $read_back = request("SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT count(*) FROM eightms_api.conversation_messages(
	(SELECT conversation_id FROM eightms_api.conversations WHERE peer_number = '+12125550101'));");
is($read_back, 2, "the account reads a conversation's messages from before the update ($read_back)");
is(request("SELECT pgrst.as_user('xavier', :'other') \\g /dev/null
SELECT count(*) FROM eightms_api.messages WHERE account_id = :'acct';"), 0, 'the other account still sees none of them');
my $refused = request(q{SELECT pgrst.as_user('ursula', :'acct') \g /dev/null
SELECT status || ' ' || error_code FROM eightms_api.send_messages('[{"to": "+1 212 555 0199", "body": "Back?"}]');});
is($refused, 'refused E8O01', "the number that texted STOP is still refused ($refused)");
like(request(q{SELECT pgrst.as_user('victor', :'acct', 'victor@example.test', '{"session_id": "victor-sess-1"}');}),
	qr/this session has been signed out/, 'the session signed out before the update stays signed out');
is(val("SELECT eightms.unseal(gateway_password, 'phone:' || account_id || ':' || phone_id || ':gateway_password')
	FROM eightms.phone WHERE phone_id = '$phone'"), 'gw-pass-from-0.1.0', 'the sealed gateway password opens');
# The request left queued, due now: the new worker sends it with the
# header sealed before the update.
my $bridge_id = fixture('bridge_queued') || 0;
val("BEGIN; UPDATE eightms.http_request SET next_attempt_at = now() WHERE id = $bridge_id;
	SELECT eightms.bridge_wake_at_commit(); COMMIT");
$node->poll_query_until($db, "SELECT state <> 'queued' FROM eightms.http_request WHERE id = $bridge_id");
is(val("SELECT state || ' ' || (convert_from(response_body, 'UTF8')::jsonb -> 'headers' ->> 'authorization')
	FROM eightms.http_request WHERE id = $bridge_id"), 'done Bearer crm-token-from-0.1.0',
	'the bridge request queued before the update is sent after it, with its sealed header');

$node->stop;
done_testing();
