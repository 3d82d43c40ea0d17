#!/usr/bin/env bash
# SMS encoding unit tests (plain C, outside the server).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
mkdir -p "$EIGHTMS_TEST_DIR/sms"
cc -O2 -Wall -Wextra -Werror -I"$REPO/src" -o "$EIGHTMS_TEST_DIR/sms/sms_test" \
	"$REPO/test/sms/sms_test.c" "$REPO/src/sms_encoding.c"
"$EIGHTMS_TEST_DIR/sms/sms_test"
