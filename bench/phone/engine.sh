#!/usr/bin/env bash
# bench/phone/engine.sh: the engine alone by wall clock, this tree against a
# base revision, in one process (bench/phone/engine.c): what a non-strict
# e164 calls, over run.sh's table of possible numbers (same corpus).
#
#   bash bench/phone/engine.sh [BASE]    # BASE: a git revision, default main
#
#   BENCH_PASSES (default 100), BENCH_INPUTS, BENCH_SEED and
#   EIGHTMS_BENCH_WORK as in run.sh.  Both builds take the server's compiler
#   flags (pg_config), so the engine runs as it does inside e164.
set -euo pipefail
BASE=${1:-main}
PASSES=${BENCH_PASSES:-100}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$REPO/bench/phone/inputs.sh"
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/base"
git -C "$REPO" archive "$BASE" src | tar -x -C "$B/base"
FLAGS="$(pg_config --cflags) $(pg_config --cppflags) $(pg_config --cflags_sl)"
# The engine's unit and its module tables in either layout: src/phone/
# (since the engine's split) or src/phone.c and src/phonemeta/ (before it),
# so that a base from before the split can still be compared.
engine_sources() {
	if [ -e "$1/src/phone/phone.c" ]; then
		echo "$1/src/phone/phone.c $1/src/phone/tables/v9_0_35.c"
	else
		echo "$1/src/phone.c $1/src/phonemeta/v9_0_35.c"
	fi
}
read -r bp bm < <(engine_sources "$B/base")
read -r np nm < <(engine_sources "$REPO")
# shellcheck disable=SC2086
{
	gcc $FLAGS -I"$B/base/src" -c "$bp" -o "$B/bp.o"
	gcc $FLAGS -I"$B/base/src" -c "$bm" -o "$B/bm.o"
	gcc $FLAGS -I"$REPO/src" -c "$np" -o "$B/np.o"
	gcc $FLAGS -I"$REPO/src" -c "$nm" -o "$B/nm.o"
}
# The base build's global symbols become base_*, so both link into one program.
ld -r "$B/bp.o" "$B/bm.o" -o "$B/base.o"
nm --defined-only -g "$B/base.o" | awk '{ print $3, "base_" $3 }' > "$B/syms"
objcopy --redefine-syms="$B/syms" "$B/base.o"
gcc -O2 -I"$REPO/src" -o "$B/engine" "$REPO/bench/phone/engine.c" "$B/base.o" "$B/np.o" "$B/nm.o"
echo "== engine alone: $(git -C "$REPO" rev-parse --short "$BASE") ($BASE) against $REPO"
"$B/engine" "$W/inputs.tsv" "$PASSES"
