#!/usr/bin/env bash
# test/extra.d/jwt_public_keys.sh: dashboard tokens signed by an auth
# provider with an asymmetric key (RS256, ES256) are verified by the
# pre-request hook with the public keys of eightms.jwt_public_key_file, as
# PEM or as JWKS; tokens signed with any other key, HS256 tokens signed with
# a public key's bytes, expired or tampered tokens are refused, and so are
# all of them once the key is withdrawn (also in a backend that verified
# the token before).  Keys and tokens are made here with Python's
# cryptography package.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
pass=0
fail=0
DB=$EIGHTMS_TEST_DB
W=$EIGHTMS_TEST_DIR/jwt-keys
rm -rf "$W"; mkdir -p "$W"
psql() { command psql -X -q "$@"; }

python3 - "$W" <<'PY'
import base64, hashlib, hmac, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
w = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()
uint = lambda n: n.to_bytes((n.bit_length() + 7) // 8, 'big')
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
other_ec = ec.generate_private_key(ec.SECP256R1())
pem = lambda k: k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
open(f'{w}/keys.pem', 'wb').write(pem(rsa_key) + pem(ec_key))
open(f'{w}/other.pem', 'wb').write(pem(other_rsa) + pem(other_ec))
rn, en = rsa_key.public_key().public_numbers(), ec_key.public_key().public_numbers()
open(f'{w}/jwks.json', 'w').write(json.dumps({'keys': [
    {'kty': 'RSA', 'kid': 'r1', 'use': 'sig', 'alg': 'RS256', 'n': b64(uint(rn.n)), 'e': b64(uint(rn.e))},
    {'kty': 'EC', 'kid': 'e1', 'crv': 'P-256', 'x': b64(en.x.to_bytes(32, 'big')), 'y': b64(en.y.to_bytes(32, 'big'))},
    {'kty': 'oct', 'k': 'c2VjcmV0'}]}))
def token(alg, key, claims, header_alg=None):
    h = b64(json.dumps({'alg': header_alg or alg, 'typ': 'JWT'}).encode())
    p = b64(json.dumps(claims).encode())
    data = f'{h}.{p}'.encode()
    if alg == 'RS256':
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == 'ES256':
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
    else:
        sig = hmac.new(key, data, hashlib.sha256).digest()
    return f'{h}.{p}.{b64(sig)}'
c = {'role': 'eightms_user', 'sub': 'provider-user', 'email': 'pu@example.test', 'email_verified': True,
     'exp': int(time.time()) + 3600}
t = {
    'rs_ok': token('RS256', rsa_key, c),
    'es_ok': token('ES256', ec_key, c),
    'rs_other': token('RS256', other_rsa, c),
    'es_other': token('ES256', other_ec, c),
    'hs_with_public_key': token('HS256', pem(rsa_key), c),
    'rs_header_hs_signature': token('HS256', pem(rsa_key), c, header_alg='RS256'),
    'rs_expired': token('RS256', rsa_key, dict(c, exp=int(time.time()) - 60)),
    'es_role_phone': token('ES256', ec_key, dict(c, role='eightms_phone')),
}
good = t['es_ok'].split('.')
t['es_tampered'] = good[0] + '.' + b64(json.dumps(dict(c, sub='someone-else')).encode()) + '.' + good[2]
with open(f'{w}/tokens.env', 'w') as f:
    for k, v in t.items():
        f.write(f'{k}={v}\n')
PY
chown -R postgres "$W"
# shellcheck source=/dev/null
source "$W/tokens.env"

# Point the setting at a file and wait until new sessions see it.
use_keys() {
	if [ -n "$1" ]; then
		psql -d "$DB" -c "ALTER SYSTEM SET eightms.jwt_public_key_file = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
	else
		psql -d "$DB" -c "ALTER SYSTEM RESET eightms.jwt_public_key_file" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	for _ in $(seq 1 100); do
		[ "$(psql -d "$DB" -Atc 'SHOW eightms.jwt_public_key_file')" = "$1" ] && return 0
		sleep 0.1
	done
	echo "the setting did not take effect" >&2
	return 1
}
# A request with the token as eightms_user: "passed as <sub>" or the error.
request_sql() {
	cat <<SQL
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer $1')::text, true) IS NULL AS h,
	   set_config('role', '${2:-eightms_user}', true) IS NULL AS r \\g /dev/null
SELECT eightms_api.pre_request() \\g /dev/null
SELECT 'passed as ' || eightms.current_user_id();
ROLLBACK;
SQL
}
request() { request_sql "$@" | psql -d "$DB" -At -v VERBOSITY=terse 2>&1 | grep -v '^ROLLBACK$' | head -n 1; }
is() { [ "$1" = "$2" ] || { echo "  have: $1" >&2; echo "  want: $2" >&2; return 1; }; }
refused() { local out; out=$(request "$1" "${3:-}"); is "$out" "ERROR:  $2" && [[ "$out" != *"${1:10:40}"* ]]; }

use_keys "$W/keys.pem"
check "PEM: an RS256 token of the provider's key is verified" is "$(request "$rs_ok")" "passed as provider-user"
check "PEM: an ES256 token of the provider's key is verified" is "$(request "$es_ok")" "passed as provider-user"
check "PEM: an RS256 token of another key is refused" refused "$rs_other" "invalid JWT: signature does not match"
check "PEM: an ES256 token of another key is refused" refused "$es_other" "invalid JWT: signature does not match"
check "an HS256 token signed with the public key's bytes is refused" \
	refused "$hs_with_public_key" "invalid JWT: signature does not match"
check "an RS256 header over an HMAC made with the public key's bytes is refused" \
	refused "$rs_header_hs_signature" "invalid JWT: signature does not match"
check "an expired RS256 token is refused" refused "$rs_expired" "invalid JWT: expired"
check "an ES256 token whose claims were changed is refused" refused "$es_tampered" "invalid JWT: signature does not match"
check "an ES256 token for the phone role, used as a user, is refused" \
	refused "$es_role_phone" "the JWT is not for role eightms_user, which the request runs as"

use_keys "$W/jwks.json"
check "JWKS: an RS256 token of the provider's key is verified" is "$(request "$rs_ok")" "passed as provider-user"
check "JWKS: an ES256 token of the provider's key is verified" is "$(request "$es_ok")" "passed as provider-user"
check "JWKS: an RS256 token of another key is refused" refused "$rs_other" "invalid JWT: signature does not match"

# A backend that verified a token drops it when the key file changes.
cp "$W/keys.pem" "$W/rotating.pem"; chown postgres "$W/rotating.pem"
use_keys "$W/rotating.pem"
out=$( { request_sql "$rs_ok"; echo "\\! cp $W/other.pem $W/rotating.pem"; request_sql "$rs_ok"; } \
	| psql -d "$DB" -At -v VERBOSITY=terse 2>&1 | grep -v -e '^ROLLBACK$' -e 'transaction is aborted' | tr '\n' '|')
check "a token verified before its key was withdrawn from the file is refused after (same backend)" \
	is "$out" "passed as provider-user|ERROR:  invalid JWT: signature does not match|"

use_keys ""
check "without eightms.jwt_public_key_file an RS256 token is refused" \
	refused "$rs_ok" "invalid JWT: no public key to verify it with"
check "HS256 device tokens still work without it" \
	is "$(request "$(psql -d "$DB" -Atc "SELECT eightms.jwt_sign('{\"role\":\"eightms_user\",\"sub\":\"hs-user\"}')")")" "passed as hs-user"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
