#!/usr/bin/env bash
# Sealing, JWTs and webhook signatures against independent implementations,
# and the key ring's life on real servers: missing, malformed, rotation
# across two keys, and key material never reaching logs, settings or the
# postmaster's environment.  Run by test/run.sh; prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
T=$EIGHTMS_TEST_DIR
DB=$EIGHTMS_TEST_DB
W=$T/seal
mkdir -p "$W"
chmod 755 "$W"
mkdir -p "$W/out"; chown postgres "$W/out"
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else notok "$what"; fi; }
q() { command psql -X -At -v ON_ERROR_STOP=1 -d "${QDB:-$DB}" -c "$1" 2>&1; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
PY=/usr/bin/python3

# 1. Known-answer vectors through the C code the extension links: the
#    engine tier (test/engine/seal_gcm.sh, make engine-check).

# 2. The documented layout opens with another AES-GCM implementation
#    (Python's cryptography package), and the other way round.
set -a; . "$EIGHTMS_TEST_SECRETS"; set +a
sealed=$(q "SELECT encode(eightms.seal('sk_live_51H-example', 'integration:42:stripe'), 'hex')")
opened=$(SEALED=$sealed $PY - <<'PY'
import base64, os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
keys = dict(e.split(':', 1) for e in os.environ['EIGHTMS_SEAL_KEYS'].replace(' ', ',').split(',') if e)
v = bytes.fromhex(os.environ['SEALED'])
assert v[0] == 1
key = base64.b64decode(keys[str(int.from_bytes(v[1:3], 'big'))])
header, nonce, body = v[:15], v[3:15], v[15:]
print(AESGCM(key).decrypt(nonce, body, header + b'integration:42:stripe').decode())
PY
)
check "a sealed value opens with an independent AES-256-GCM implementation given the key and the layout" \
	test "$opened" = "sk_live_51H-example"
foreign=$($PY - <<'PY'
import base64, os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
kid, b64 = os.environ['EIGHTMS_SEAL_KEYS'].replace(' ', ',').split(',')[0].split(':', 1)
header = bytes([1]) + int(kid).to_bytes(2, 'big') + os.urandom(12)
print((header + AESGCM(base64.b64decode(b64)).encrypt(header[3:], 'made elsewhere ✓'.encode(), header + b'ctx:x')).hex())
PY
)
check "a value sealed elsewhere to the documented layout opens in SQL" \
	test "$(q "SELECT eightms.unseal('\\x$foreign'::bytea, 'ctx:x')")" = "made elsewhere ✓"

# 3. JWTs interoperate with openssl's HMAC, both ways.
token=$(q "SELECT eightms.jwt_sign('{\"sub\":\"user-7\",\"role\":\"eightms_user\"}', '5 minutes')")
sig=$(printf '%s' "${token%.*}" | openssl dgst -sha256 -mac HMAC -macopt "key:$EIGHTMS_JWT_SECRET" -binary | b64url)
check "a JWT signed in SQL verifies with openssl dgst -hmac" test "$sig" = "${token##*.}"
h=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
p=$(printf '{"sub":"from-openssl","exp":%s}' $(( $(date +%s) + 300 )) | b64url)
s=$(printf '%s' "$h.$p" | openssl dgst -sha256 -mac HMAC -macopt "key:$EIGHTMS_JWT_SECRET" -binary | b64url)
check "a JWT signed with openssl verifies in SQL" \
	test "$(q "SELECT eightms.jwt_verify('$h.$p.$s') ->> 'sub'")" = "from-openssl"
s2=$(printf '%s' "$h.$p" | openssl dgst -sha256 -mac HMAC -macopt "key:not-the-secret-not-the-secret-123" -binary | b64url)
check "a JWT signed with another secret is refused" \
	bash -c "$(declare -f q); DB=$DB q \"SELECT eightms.jwt_verify('$h.$p.$s2')\" | grep -q 'signature does not match'"

# 4. Stripe-Signature vectors built with openssl dgst.
body='{"id":"evt_1Nv","object":"event","type":"checkout.session.completed","data":{"object":{"amount_total":4200}}}'
secret=whsec_5d8c0ffee
t=$(date +%s)
v1=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
check "a Stripe signature made by openssl is accepted" \
	test "$(q "SELECT eightms.stripe_signature_valid('$body', 't=$t,v1=$v1', '$secret')")" = t
check "the same signature over one changed byte of the body is refused" \
	test "$(q "SELECT eightms.stripe_signature_valid('${body/4200/4201}', 't=$t,v1=$v1', '$secret')")" = f
old=$((t - 400))
v1old=$(printf '%s.%s' "$old" "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
check "an openssl signature 400 s old is refused (tolerance 300 s)" \
	test "$(q "SELECT eightms.stripe_signature_valid('$body', 't=$old,v1=$v1old', '$secret')")" = f

# 5. Ed25519 (GoHighLevel's X-GHL-Signature) with keys and signatures from openssl.
openssl genpkey -algorithm ed25519 -out "$W/ed.pem" 2>/dev/null
openssl pkey -in "$W/ed.pem" -pubout -out "$W/ed.pub" 2>/dev/null
printf '%s' '{"type":"SMS","contactId":"c1","message":"hi"}' > "$W/ghl.json"
gsig=$(openssl pkeyutl -sign -inkey "$W/ed.pem" -rawin -in "$W/ghl.json" | base64 -w0)
pem=$(cat "$W/ed.pub")
raw=$(openssl pkey -in "$W/ed.pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)
check "an Ed25519 signature from openssl verifies with the PEM public key" \
	test "$(q "SELECT eightms.ed25519_verify(convert_to('$(cat "$W/ghl.json")', 'UTF8'), '$gsig', '$pem')")" = t
check "and with the raw 32-byte key in base64" \
	test "$(q "SELECT eightms.ed25519_verify(convert_to('$(cat "$W/ghl.json")', 'UTF8'), '$gsig', '$raw')")" = t
check "a changed body fails Ed25519 verification" \
	test "$(q "SELECT eightms.ed25519_verify(convert_to('$(sed 's/hi/ho/' "$W/ghl.json")', 'UTF8'), '$gsig', '$pem')")" = f
check "a malformed public key is an error, not a false" \
	bash -c "$(declare -f q); DB=$DB q \"SELECT eightms.ed25519_verify('x', '$gsig', 'bm90IGEga2V5')\" | grep -q 'invalid Ed25519 public key'"

# 6. Key ring lifecycle on a second server.
PORT2=$((EIGHTMS_TEST_PORT + 1))
DATA2=$T/data-keys
LOG2=$T/server-keys.log
INITDB=$EIGHTMS_TEST_ROOT$PGBIN/initdb
PGCTL=$EIGHTMS_TEST_ROOT$PGBIN/pg_ctl
init_cluster "$DATA2" "$PORT2" "$T/run" keys >/dev/null
restart_with() {
	# $1: the key file the server starts with (eightms.secrets_file)
	install -m 600 -o postgres "$1" "$W/env"
	start_cluster "$DATA2" "$W/env" "$LOG2"
}
K1=$(head -c 32 /dev/urandom | base64 -w0)
K2=$(head -c 32 /dev/urandom | base64 -w0)
QDB=keys
export PGPORT=$PORT2

echo "# no key ring" > "$W/none.env"
restart_with "$W/none.env"
command psql -X -q -d postgres -c "CREATE DATABASE keys" >/dev/null
q "CREATE EXTENSION eightms CASCADE" >/dev/null
out=$(q "SELECT eightms.seal('x', 'c')")
check "without EIGHTMS_SEAL_KEYS the server runs and seal() says what to set" \
	bash -c "grep -q 'no seal key ring is loaded' <<< \"\$1\" && grep -q 'EIGHTMS_SEAL_KEYS=' <<< \"\$1\"" _ "$out"
out=$(command psql -X -d keys -v VERBOSITY=verbose -c "SELECT eightms.unseal('\\x01'::bytea, 'c')" 2>&1)
check "unseal without a key ring fails with SQLSTATE 55000" grep -q '55000' <<< "$out"
check "seal_status names the problem" \
	test "$(q "SELECT problem FROM eightms.seal_status()")" = "EIGHTMS_SEAL_KEYS is set neither in eightms.secrets_file nor in the server's environment"

printf 'EIGHTMS_SEAL_KEYS=1:%s,2:bm90LXRoaXJ0eS10d28\n' "$K1" > "$W/bad.env"
restart_with "$W/bad.env"
check "a malformed key ring is reported by position, without its bytes" \
	test "$(q "SELECT problem FROM eightms.seal_status()")" = "EIGHTMS_SEAL_KEYS entry 2 (key id 2) is not 32 bytes in base64"
check "the server log warns about the malformed key ring at start" grep -q 'the seal key ring is unusable' "$LOG2"

printf 'EIGHTMS_SEAL_KEYS=1:%s\n' "$K1" > "$W/k1.env"
restart_with "$W/k1.env"
q "CREATE TABLE public.vault (id int PRIMARY KEY, secret bytea);
   INSERT INTO public.vault SELECT i, eightms.seal('token-' || i, 'vault:' || i) FROM generate_series(1, 2500) i;
   INSERT INTO eightms.sealed_column VALUES ('public.vault', 'secret', \$\$'vault:' || id\$\$);" >/dev/null
keep=$(q "SELECT encode(secret, 'hex') FROM public.vault WHERE id = 1")

printf 'EIGHTMS_SEAL_KEYS=1:%s,2:%s\nEIGHTMS_SEAL_ACTIVE_KEY=2\n' "$K1" "$K2" > "$W/k12.env"
restart_with "$W/k12.env"
check "with two keys, key 2 is active" test "$(q "SELECT string_agg(key_id || ':' || active, ',' ORDER BY key_id) FROM eightms.seal_status()")" = "1:false,2:true"
r1=$(q "SELECT moved || '/' || remaining FROM eightms.rotate_seals(1000) WHERE table_name = 'public.vault'::regclass")
r2=$(q "SELECT moved || '/' || remaining FROM eightms.rotate_seals(1000) WHERE table_name = 'public.vault'::regclass")
r3=$(q "SELECT moved || '/' || remaining FROM eightms.rotate_seals(1000) WHERE table_name = 'public.vault'::regclass")
r4=$(q "SELECT moved || '/' || remaining FROM eightms.rotate_seals(1000) WHERE table_name = 'public.vault'::regclass")
check "rotation moves 1000 per batch and reports what remains ($r1 $r2 $r3 $r4)" \
	test "$r1 $r2 $r3 $r4" = "1000/1500 1000/500 500/0 0/0"
check "after rotation every value is under key 2" \
	test "$(q "SELECT count(*) FROM public.vault WHERE eightms.sealed_key_id(secret) = 2")" = 2500

printf 'EIGHTMS_SEAL_KEYS=2:%s\n' "$K2" > "$W/k2.env"
restart_with "$W/k2.env"
check "with key 1 retired, every rotated value still opens to its plaintext" \
	test "$(q "SELECT count(*) FROM public.vault WHERE eightms.unseal(secret, 'vault:' || id) = 'token-' || id")" = 2500
out=$(command psql -X -d keys -v VERBOSITY=verbose -c "SELECT eightms.unseal('\\x$keep'::bytea, 'vault:1')" 2>&1)
check "a value still under the retired key fails with E8S01" grep -q 'E8S01' <<< "$out"

# 7. Key material never reaches logs, settings or the environment.
out=$(q "SELECT 1 FROM pg_stat_activity LIMIT 1" >/dev/null; \
	command psql -X -At -d keys -c "COPY (SELECT 1) TO PROGRAM 'env > $W/out/child.env'" 2>&1)
check "programs the server runs do not inherit the key ring or the JWT secret" \
	bash -c "test -s '$W/out/child.env' && ! grep -q '^EIGHTMS_' '$W/out/child.env'"
for k in "$K1" "$K2" $(sed -n 's/^EIGHTMS_SEAL_KEYS=//p' "$EIGHTMS_TEST_SECRETS" | tr ',' ' ' | sed 's/[0-9]*://g') "$EIGHTMS_JWT_SECRET"; do
	if grep -qF -- "$k" "$LOG2" "$EIGHTMS_TEST_LOG"; then found=1; fi
	n=$(QDB=keys q "SELECT count(*) FROM pg_settings WHERE setting LIKE '%' || '$k' || '%' OR reset_val LIKE '%' || '$k' || '%'")
	[ "$n" = 0 ] || found=1
done
check "no key or JWT secret appears in either server log or in pg_settings" test -z "${found:-}"

stop_cluster "$DATA2"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
