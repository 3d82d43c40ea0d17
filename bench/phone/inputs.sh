# bench/phone/inputs.sh: the corpus, sourced by run.sh and instructions.sh
# after bench/common.sh.  BENCH_INPUTS (default 1000000), BENCH_SEED
# (default 42); W, EIGHTMS_BENCH_WORK (default /tmp/eightms-bench-phone-work),
# gets inputs.tsv.
N=${BENCH_INPUTS:-1000000}
SEED=${BENCH_SEED:-42}
W=${EIGHTMS_BENCH_WORK:-/tmp/eightms-bench-phone-work}
mkdir -p "$W"
# The inputs take a minute or two to generate: kept between runs, per
# count, seed and generator.
key="$N $SEED $(md5sum < "$REPO/test/phone/gen_inputs.py")"
if [ ! -s "$W/inputs.tsv" ] || [ "$(cat "$W/inputs.key" 2>/dev/null)" != "$key" ]; then
	python3 "$REPO/test/phone/gen_inputs.py" "$REPO/data/phonenumber/PhoneNumberMetadata-v8.12.57.xml" "$N" "$SEED" > "$W/inputs.tsv"
	echo "$key" > "$W/inputs.key"
fi
