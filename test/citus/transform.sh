#!/usr/bin/env bash
# test/citus/transform.sh: the Citus tier's transformer of the pgTAP suites
# (test/citus/requests/transform.py) against its own unit tests.  Prints
# "N passed, N failed"; needs no cluster.
exec python3 "$(dirname "${BASH_SOURCE[0]}")/requests/test_transform.py"
