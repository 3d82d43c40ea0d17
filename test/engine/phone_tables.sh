#!/usr/bin/env bash
# The phone engine's generated tables are what their generators make: the
# v9.0.35 tables the module links and the v8.12.57 ones the differential
# tests use, from the metadata vendored in data/phonenumber, and unicode.h
# from ICU (72 on Debian 12, through postgresql-server-dev's llvm-dev and
# libxml2-dev).  Where Google's metadata is shared beside the repository
# ($REPO/../shared/phonenumber, read-only; CI has it), the vendored copy
# must be that metadata byte for byte.
# Prints "N passed, N failed"; run by make engine-check.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
cd "$REPO"
pass=0
fail=0

# Each check prints what it compared; a difference shows the start of its diff.
tables() { make -s phone-tables-check; }
check "the committed phone tables are what tools/phone/gen.py makes of data/phonenumber" tables
if [ -d "$REPO/../shared/phonenumber" ]; then
	metadata() { make -s phone-metadata-check; }
	check "data/phonenumber is the metadata in ../shared/phonenumber" metadata
else
	echo "# skipped: no ../shared/phonenumber beside the repository to compare data/phonenumber with"
fi
unicode() { make -s phone-unicode-check; }
check "src/phone/tables/unicode.h is what tools/phone/gen_unicode.c makes of ICU" unicode

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
