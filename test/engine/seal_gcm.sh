#!/usr/bin/env bash
# AES-256-GCM known-answer vectors through the C code the extension links
# (src/secrets/seal_gcm.c), outside the server.  Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
B=${ENGINE_BUILD:-$REPO/.engine-build}
mkdir -p "$B"
cc -O2 -Wall -Wextra -Werror -I"$REPO/src" -o "$B/gcm_kat" "$REPO/test/seal/gcm_kat.c" "$REPO/src/secrets/seal_gcm.c" -lcrypto
"$B/gcm_kat"
