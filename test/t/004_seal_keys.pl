# Sealing, JWTs and webhook signatures against independent implementations
# (Python's cryptography package, openssl), and the key ring's life on a
# server of its own: missing, malformed, rotation across two keys, and key
# material never reaching logs, settings or what the server's programs
# inherit.  The known-answer vectors of the C code are the engine tier's
# (test/engine/seal_gcm.sh).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EightmsTest;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $db = 'keys';
my $node = eightms_node('seal_keys', database => $db, secrets => '');
my $dir = $node->basedir;
my ($K1, $K2) = (random_key(), random_key());
my $jwt = random_key() =~ tr{+/}{-_}r;
# Restart on the key file of these lines.
sub restart_with
{
	my (@lines) = @_;
	set_secrets_file($node, write_secrets("$dir/secrets.env", @lines));
	start_with_env($node);
}
sub val { my ($rc, $out, $err) = $node->psql($db, $_[0]); return $rc == 0 ? $out : $err; }
restart_with("EIGHTMS_SEAL_KEYS=1:$K1", 'EIGHTMS_SEAL_ACTIVE_KEY=1', "EIGHTMS_JWT_SECRET=$jwt");
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'SET client_min_messages = warning; CREATE EXTENSION eightms CASCADE');

# 1. The documented layout opens with another AES-GCM implementation, and
#    the other way round.
my $py = <<'PY';
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
kid, b64 = os.environ['KEYS'].split(',')[0].split(':', 1)
key = base64.b64decode(b64)
if sys.argv[1] == 'open':
    v = bytes.fromhex(sys.stdin.read().strip())
    assert v[0] == 1 and int.from_bytes(v[1:3], 'big') == int(kid)
    header, nonce, body = v[:15], v[3:15], v[15:]
    print(AESGCM(key).decrypt(nonce, body, header + b'integration:42:stripe').decode())
else:
    header = bytes([1]) + int(kid).to_bytes(2, 'big') + os.urandom(12)
    print((header + AESGCM(key).encrypt(header[3:], 'made elsewhere \u2713'.encode(), header + b'ctx:x')).hex())
PY
local $ENV{KEYS} = "1:$K1";
my $sealed = val("SELECT encode(eightms.seal('sk_live_51H-example', 'integration:42:stripe'), 'hex')");
my (undef, $opened) = run_with_input($sealed, '/usr/bin/python3', '-c', $py, 'open');
is($opened, "sk_live_51H-example\n",
	'a sealed value opens with an independent AES-256-GCM implementation given the key and the layout');
my (undef, $foreign) = run_with_input('', '/usr/bin/python3', '-c', $py, 'seal');
chomp $foreign;
is(val("SELECT eightms.unseal('\\x$foreign'::bytea, 'ctx:x') = 'made elsewhere ' || chr(10003)"), 't',
	'a value sealed elsewhere to the documented layout opens in SQL');

# 2. JWTs interoperate with openssl's HMAC, both ways.
ok(jwt_verifies_with($node, $db, $jwt), 'a JWT signed in SQL verifies with openssl dgst -hmac');
my $h = b64url('{"alg":"HS256","typ":"JWT"}');
my $p = b64url('{"sub":"from-openssl","exp":' . (time() + 300) . '}');
my $s = b64url(openssl_hmac($jwt, "$h.$p"));
is(val("SELECT eightms.jwt_verify('$h.$p.$s') ->> 'sub'"), 'from-openssl', 'a JWT signed with openssl verifies in SQL');
my $s2 = b64url(openssl_hmac('not-the-secret-not-the-secret-123', "$h.$p"));
like(val("SELECT eightms.jwt_verify('$h.$p.$s2')"), qr/signature does not match/, 'a JWT signed with another secret is refused');

# 3. Stripe-Signature vectors built with openssl dgst.
my $body = '{"id":"evt_1Nv","object":"event","type":"checkout.session.completed","data":{"object":{"amount_total":4200}}}';
my $secret = 'whsec_5d8c0ffee';
sub stripe_v1 { return unpack('H*', openssl_hmac($secret, "$_[0].$body")); }
my $t = time();
my $v1 = stripe_v1($t);
is(val("SELECT eightms.stripe_signature_valid('$body', 't=$t,v1=$v1', '$secret')"), 't',
	'a Stripe signature made by openssl is accepted');
is(val("SELECT eightms.stripe_signature_valid('" . ($body =~ s/4200/4201/r) . "', 't=$t,v1=$v1', '$secret')"), 'f',
	'the same signature over one changed byte of the body is refused');
my $old = $t - 400;
my $v1old = stripe_v1($old);
is(val("SELECT eightms.stripe_signature_valid('$body', 't=$old,v1=$v1old', '$secret')"), 'f',
	'an openssl signature 400 s old is refused (tolerance 300 s)');

# 4. Ed25519 (GoHighLevel's X-GHL-Signature) with keys and signatures from openssl.
system('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$dir/ed.pem") == 0 or die 'openssl genpkey';
my (undef, $pem) = run_with_input('', 'openssl', 'pkey', '-in', "$dir/ed.pem", '-pubout');
my (undef, $der) = run_with_input('', 'openssl', 'pkey', '-in', "$dir/ed.pem", '-pubout', '-outform', 'DER');
my $raw = encode_base64(substr($der, -32), '');
my $ghl = '{"type":"SMS","contactId":"c1","message":"hi"}';
open my $gf, '>', "$dir/ghl.json" or die;
print $gf $ghl;
close $gf;
my (undef, $gsig) = run_with_input('', 'openssl', 'pkeyutl', '-sign', '-inkey', "$dir/ed.pem", '-rawin', '-in', "$dir/ghl.json");
$gsig = encode_base64($gsig, '');
sub ed25519 { return val("SELECT eightms.ed25519_verify(convert_to('$_[0]', 'UTF8'), '$gsig', '$_[1]')"); }
is(ed25519($ghl, $pem), 't', 'an Ed25519 signature from openssl verifies with the PEM public key');
is(ed25519($ghl, $raw), 't', 'and with the raw 32-byte key in base64');
is(ed25519($ghl =~ s/hi/ho/r, $pem), 'f', 'a changed body fails Ed25519 verification');
like(val("SELECT eightms.ed25519_verify('x', '$gsig', 'bm90IGEga2V5')"), qr/invalid Ed25519 public key/,
	'a malformed public key is an error, not a false');

# 5. The key ring's life.
restart_with('# no key ring');
my $out = val("SELECT eightms.seal('x', 'c')");
ok($out =~ /no seal key ring is loaded/ && $out =~ /EIGHTMS_SEAL_KEYS=/,
	'without EIGHTMS_SEAL_KEYS the server runs and seal() says what to set');
is(sqlstate_of($node, $db, "SELECT eightms.unseal('\\x01'::bytea, 'c')"), '55000',
	'unseal without a key ring fails with SQLSTATE 55000');
is(val('SELECT problem FROM eightms.seal_status()'),
	"EIGHTMS_SEAL_KEYS is set neither in eightms.secrets_file nor in the server's environment",
	'seal_status names the problem');

my $pos = log_position($node);
restart_with("EIGHTMS_SEAL_KEYS=1:$K1,2:bm90LXRoaXJ0eS10d28");
is(val('SELECT problem FROM eightms.seal_status()'), 'EIGHTMS_SEAL_KEYS entry 2 (key id 2) is not 32 bytes in base64',
	'a malformed key ring is reported by position, without its bytes');
like(log_since($node, $pos), qr/the seal key ring is unusable/, 'the server log warns about the malformed key ring at start');

restart_with("EIGHTMS_SEAL_KEYS=1:$K1");
$node->safe_psql($db, q{CREATE TABLE public.vault (id int PRIMARY KEY, secret bytea);
	INSERT INTO public.vault SELECT i, eightms.seal('token-' || i, 'vault:' || i) FROM generate_series(1, 2500) i;
	INSERT INTO eightms.sealed_column VALUES ('public.vault', 'secret', $$'vault:' || id$$);});
my $keep = val("SELECT encode(secret, 'hex') FROM public.vault WHERE id = 1");

restart_with("EIGHTMS_SEAL_KEYS=1:$K1,2:$K2", 'EIGHTMS_SEAL_ACTIVE_KEY=2');
is(val("SELECT string_agg(key_id || ':' || active, ',' ORDER BY key_id) FROM eightms.seal_status()"), '1:false,2:true',
	'with two keys, key 2 is active');
my @r = map { val("SELECT moved || '/' || remaining FROM eightms.rotate_seals(1000) WHERE table_name = 'public.vault'::regclass") } 1 .. 4;
is("@r", '1000/1500 1000/500 500/0 0/0', "rotation moves 1000 per batch and reports what remains (@r)");
is(val('SELECT count(*) FROM public.vault WHERE eightms.sealed_key_id(secret) = 2'), 2500,
	'after rotation every value is under key 2');

restart_with("EIGHTMS_SEAL_KEYS=2:$K2");
is(val("SELECT count(*) FROM public.vault WHERE eightms.unseal(secret, 'vault:' || id) = 'token-' || id"), 2500,
	'with key 1 retired, every rotated value still opens to its plaintext');
is(sqlstate_of($node, $db, "SELECT eightms.unseal('\\x$keep'::bytea, 'vault:1')"), 'E8S01',
	'a value still under the retired key fails with E8S01');

# 6. Key material never reaches logs, settings or the environment.
restart_with("EIGHTMS_SEAL_KEYS=1:$K1,2:$K2", 'EIGHTMS_SEAL_ACTIVE_KEY=2', "EIGHTMS_JWT_SECRET=$jwt");
$node->safe_psql($db, "COPY (SELECT 1) TO PROGRAM 'env > $dir/child.env'");
my $child = slurp_file("$dir/child.env");
ok($child ne '' && $child !~ /^EIGHTMS_/m, 'programs the server runs do not inherit the key ring or the JWT secret');
my $log = slurp_file($node->logfile);
my @found = grep {
	my $k = $_;
	index($log, $k) >= 0
	  || val("SELECT count(*) FROM pg_settings WHERE setting LIKE '%' || '$k' || '%' OR reset_val LIKE '%' || '$k' || '%'") ne '0'
} ($K1, $K2, $jwt);
is(scalar @found, 0, 'no key or JWT secret appears in the server log or in pg_settings');

$node->stop;
done_testing();
