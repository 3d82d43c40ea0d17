#!/usr/bin/env bash
# bench/seal: AES-256-GCM seal + unseal in SQL against pgcrypto on the same
# 64-byte tokens, in one run.  Prints microseconds per seal+unseal pair and
# the ratios.  Targets (issue 4): faster than pgcrypto's unauthenticated
# AES-CBC pair, at least 50x faster than its PGP pair, within 2x of the
# sha256 floor.
#
#   BENCH_ROWS  tokens (default 1000000); BENCH_PGP_ROWS (default 20000)
NAME=seal
PORT=${EIGHTMS_BENCH_PORT:-54342}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
ROWS=${BENCH_ROWS:-1000000}
PGP_ROWS=${BENCH_PGP_ROWS:-20000}
bench_cluster

command psql -X -q -d "$DB" -v rows="$ROWS" <<'SQL'
CREATE EXTENSION pgcrypto;
CREATE TABLE tokens AS
	SELECT encode(eightms.random_bytes(48), 'base64') AS t FROM generate_series(1, :rows);
ALTER TABLE tokens ADD COLUMN b bytea;
UPDATE tokens SET b = convert_to(t, 'UTF8');
VACUUM ANALYZE tokens;
SQL

ours=$(best_ms "SELECT count(eightms.unseal(eightms.seal(t, 'integration:42:token'), 'integration:42:token')) FROM tokens;")
cbc=$(best_ms "SELECT count(decrypt_iv(encrypt_iv(b, '\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, '\\x000102030405060708090a0b0c0d0e0f'::bytea, 'aes-cbc'), '\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea, '\\x000102030405060708090a0b0c0d0e0f'::bytea, 'aes-cbc')) FROM tokens;")
floor=$(best_ms "SELECT count(sha256(b)) FROM tokens;")
pgp=$(best_ms "SELECT count(pgp_sym_decrypt(pgp_sym_encrypt(t, 'passphrase'), 'passphrase')) FROM (SELECT t FROM tokens LIMIT $PGP_ROWS) s;" 1)

us() { echo "scale=3; $1 * 1000 / $2" | bc -l; }
o=$(us "$ours" "$ROWS"); c=$(us "$cbc" "$ROWS"); f=$(us "$floor" "$ROWS"); p=$(us "$pgp" "$PGP_ROWS")
printf '%-48s %10s us per pair\n' "eightms seal+unseal (AES-256-GCM, $ROWS tokens)" "$o"
printf '%-48s %10s us per pair\n' "pgcrypto encrypt_iv/decrypt_iv aes-cbc" "$c"
printf '%-48s %10s us per pair\n' "pgcrypto pgp_sym_encrypt/decrypt ($PGP_ROWS tokens)" "$p"
printf '%-48s %10s us per row\n' "floor: sha256" "$f"
printf 'ratio aes-cbc / eightms:   %6.2f  (target > 1)\n' "$(echo "$c / $o" | bc -l)"
printf 'ratio pgp / eightms:       %6.1f  (target >= 50)\n' "$(echo "$p / $o" | bc -l)"
printf 'ratio eightms / sha256:    %6.2f  (target <= 2)\n' "$(echo "$o / $f" | bc -l)"
