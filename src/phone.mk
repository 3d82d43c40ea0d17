# phone.mk: the phone-number engine outside the server, included by the
# top Makefile.  The engine (src/phone.c) needs no PostgreSQL headers, so
# everything here builds with plain cc, c++ and clang.
#
#   eightms-phone     the command-line tool (built by `make`, not installed)
#   phone-diff        differential test against libphonenumber 8.12.57 on
#                     PHONE_DIFF_COUNT generated inputs, seed PHONE_DIFF_SEED
#   phone-diff-full   the same on 1,000,000 inputs, seed 20261129
#   phone-fuzz        libFuzzer with ASan+UBSan for PHONE_FUZZ_SECONDS
#   phone-bench       bench/phone: engine vs libphonenumber, e164 vs length()
#   phone-tables      regenerate src/phonemeta/*.c from data/phonenumber/
#   phone-unicode     regenerate src/phonemeta/unicode.h from ICU (libicu-dev)
#   phone-fuzz-diff   libFuzzer comparing the engine with libphonenumber

PHONE_SRC = src/phone.c src/phonemeta/v9_0_35.c src/phonemeta/v8_12_57.c
PHONE_DIFF_COUNT ?= 20000
PHONE_DIFF_SEED ?= 1
PHONE_FUZZ_SECONDS ?= 600

all: eightms-phone

eightms-phone: $(PHONE_SRC) src/phone_cli.c src/phone.h src/phonemeta/unicode.h
	$(CC) -O2 -Wall -Wextra -Werror -Isrc -o $@ $(PHONE_SRC) src/phone_cli.c

phone-diff-bin: $(PHONE_SRC) src/phone.h src/phonemeta/unicode.h test/phone/diff.cc
	mkdir -p .phone-build
	for f in $(PHONE_SRC); do $(CC) -O2 -Isrc -c $$f -o .phone-build/$$(basename $$f .c).o || exit 1; done
	$(CXX) -O2 -Isrc -o .phone-build/diff test/phone/diff.cc $(patsubst %.c,.phone-build/%.o,$(notdir $(PHONE_SRC))) -lphonenumber

# Differential test: PHONE_DIFF_COUNT generated inputs (seed PHONE_DIFF_SEED).
phone-diff: phone-diff-bin
	python3 test/phone/gen_inputs.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff

phone-diff-full:
	$(MAKE) phone-diff PHONE_DIFF_COUNT=1000000 PHONE_DIFF_SEED=20261129

phone-fuzz: $(PHONE_SRC) test/phone/fuzz.c
	mkdir -p .phone-build/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o .phone-build/fuzz test/phone/fuzz.c $(PHONE_SRC)
	cp test/phone/corpus/* .phone-build/corpus/
	.phone-build/fuzz -max_total_time=$(PHONE_FUZZ_SECONDS) -max_len=300 -timeout=5 .phone-build/corpus

# Differential fuzzing: the fuzzer's inputs, libphonenumber's answers; a
# disagreement aborts and leaves the input in .phone-build/.
phone-fuzz-diff-bin: $(PHONE_SRC) src/phone.h src/phonemeta/unicode.h test/phone/fuzz_diff.cc
	mkdir -p .phone-build
	for f in src/phone.c src/phonemeta/v8_12_57.c; do clang -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Isrc -c $$f -o .phone-build/fz-$$(basename $$f .c).o || exit 1; done
	clang++ -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o .phone-build/fuzz_diff test/phone/fuzz_diff.cc .phone-build/fz-phone.o .phone-build/fz-v8_12_57.o -lphonenumber

phone-fuzz-diff: phone-fuzz-diff-bin
	mkdir -p .phone-build/corpus-diff
	cp test/phone/corpus/* .phone-build/corpus-diff/
	cd .phone-build && ./fuzz_diff -max_total_time=$(PHONE_FUZZ_SECONDS) -max_len=300 -timeout=5 corpus-diff

# Benchmark: needs a PostgreSQL cluster of its own (bench/common.sh).
phone-bench:
	bash bench/phone/run.sh

# Regenerate the committed tables from the vendored metadata.
phone-tables:
	python3 src/phonemeta/gen.py data/phonenumber/PhoneNumberMetadata-v9.0.35.xml v9_0_35 > src/phonemeta/v9_0_35.c
	python3 src/phonemeta/gen.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml v8_12_57 > src/phonemeta/v8_12_57.c

# The Unicode classes libphonenumber takes from ICU: digits, letters, numbers.
phone-unicode: src/phonemeta/gen_unicode.c
	mkdir -p .phone-build
	$(CC) -O2 -Wall -Wextra -Werror -o .phone-build/gen_unicode $< -licuuc
	.phone-build/gen_unicode > src/phonemeta/unicode.h

.PHONY: phone-diff phone-diff-bin phone-diff-full phone-fuzz phone-fuzz-diff-bin phone-fuzz-diff phone-bench phone-tables phone-unicode

# Harder inputs (other scripts' digits, odd regions, long extension labels,
# tel: contexts, prefixes drawn from their patterns) and raw junk bytes,
# from the phone2 branch's generators.
phone-diff-hard: phone-diff-bin
	python3 test/phone/gen_hard.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff

phone-diff-bytes: phone-diff-bin
	python3 test/phone/gen_bytes.py $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff
