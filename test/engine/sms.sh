#!/usr/bin/env bash
# SMS encoding unit tests (plain C, outside the server).
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
B=${ENGINE_BUILD:-$REPO/.engine-build}
mkdir -p "$B"
cc -O2 -Wall -Wextra -Werror -I"$REPO/src" -o "$B/sms_test" "$REPO/test/sms/sms_test.c" "$REPO/src/sms/sms_encoding.c"
"$B/sms_test"
