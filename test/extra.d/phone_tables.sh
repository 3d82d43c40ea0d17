#!/usr/bin/env bash
# The phone engine's generated tables are what their generators make: the
# v9.0.35 tables the module links and the v8.12.57 ones the differential
# tests use, from Google's metadata as shared beside the repository
# ($REPO/../shared/phonenumber, read-only), and unicode.h from ICU (72 on
# Debian 12, through postgresql-server-dev's llvm-dev and libxml2-dev).
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
cd "$REPO"
pass=0
fail=0

# Each check prints what it compared; a difference shows the start of its diff.
tables() { make -s phone-tables-check; }
check "the committed phone tables are what tools/phone/gen.py makes of ../shared/phonenumber, and data/phonenumber is that metadata" tables
unicode() { make -s phone-unicode-check; }
check "src/phone/tables/unicode.h is what tools/phone/gen_unicode.c makes of ICU" unicode

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
