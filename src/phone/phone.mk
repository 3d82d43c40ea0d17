# phone.mk: the phone-number engine outside the server, included by the
# top Makefile (or run alone: make -f src/phone/phone.mk).  The engine
# (src/phone/phone.c, one translation unit that #includes its parts) needs no
# PostgreSQL headers, so everything here builds with plain cc, c++ and clang.
# Its generators (tools/phone/) and the v8.12.57 tables the differential
# tests compare with libphonenumber (test/phone/) stay out of the module.
#
#   eightms-phone     the command-line tool (built by `make`, not installed)
#   phone-diff        differential test against libphonenumber 8.12.57 on
#                     PHONE_DIFF_COUNT generated inputs, seed PHONE_DIFF_SEED
#   phone-diff-full   the same on 1,000,000 inputs, seed 20261129
#   phone-fuzz        libFuzzer with ASan+UBSan for PHONE_FUZZ_SECONDS
#   phone-bench       bench/phone: engine vs libphonenumber, e164 vs length()
#   phone-tables      regenerate the tables from data/phonenumber/
#   phone-tables-check  the committed tables against the generator's output
#                     from data/phonenumber/
#   phone-metadata-check  data/phonenumber/ against PHONE_METADATA (default
#                     ../shared/phonenumber beside the repository)
#   phone-unicode     regenerate src/phone/tables/unicode.h from ICU (libicu-dev)
#   phone-unicode-check  the committed unicode.h against gen_unicode's output
#   phone-fuzz-diff   libFuzzer comparing the engine with libphonenumber

# The repository, found from this file so that the check works from any
# directory and with -f.
PHONE_REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../..)

# The engine's translation unit and the parts it #includes.
PHONE_PARTS = src/phone/phone_text.c src/phone/phone_match.c src/phone/phone_ext.c \
	src/phone/phone_scan.c src/phone/phone_parse.c src/phone/phone_format.c
PHONE_HEADERS = src/phone/phone.h src/phone/tables/unicode.h
PHONE_SRC = src/phone/phone.c src/phone/tables/v9_0_35.c test/phone/v8_12_57.c
PHONE_DIFF_COUNT ?= 20000
PHONE_DIFF_SEED ?= 1
PHONE_FUZZ_SECONDS ?= 600

all: eightms-phone

# The module's object (PGXS) is rebuilt when a part of the unit changes.
src/phone/phone.o: $(PHONE_PARTS) $(PHONE_HEADERS)

# Built by a plain `make`: warnings are errors only with WERROR=1, as for
# the module (the test command and CI set it).
eightms-phone: $(PHONE_SRC) $(PHONE_PARTS) $(PHONE_HEADERS) src/phone/phone_cli.c
	$(CC) -O2 -Wall -Wextra $(if $(WERROR),-Werror) -Isrc -o $@ $(PHONE_SRC) src/phone/phone_cli.c

phone-diff-bin: $(PHONE_SRC) $(PHONE_PARTS) $(PHONE_HEADERS) test/phone/diff.cc
	mkdir -p .phone-build
	for f in $(PHONE_SRC); do $(CC) -O2 -Isrc -c $$f -o .phone-build/$$(basename $$f .c).o || exit 1; done
	$(CXX) -O2 -Isrc -o .phone-build/diff test/phone/diff.cc $(patsubst %.c,.phone-build/%.o,$(notdir $(PHONE_SRC))) -lphonenumber

# Differential test: PHONE_DIFF_COUNT generated inputs (seed PHONE_DIFF_SEED).
phone-diff: phone-diff-bin
	python3 test/phone/gen_inputs.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff

phone-diff-full:
	$(MAKE) phone-diff PHONE_DIFF_COUNT=1000000 PHONE_DIFF_SEED=20261129

phone-fuzz: $(PHONE_SRC) $(PHONE_PARTS) $(PHONE_HEADERS) test/phone/fuzz.c
	mkdir -p .phone-build/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o .phone-build/fuzz test/phone/fuzz.c $(PHONE_SRC)
	cp test/phone/corpus/* .phone-build/corpus/
	.phone-build/fuzz -max_total_time=$(PHONE_FUZZ_SECONDS) -max_len=300 -timeout=5 .phone-build/corpus

# Differential fuzzing: the fuzzer's inputs, libphonenumber's answers; a
# disagreement aborts and leaves the input in .phone-build/.
phone-fuzz-diff-bin: $(PHONE_SRC) $(PHONE_PARTS) $(PHONE_HEADERS) test/phone/fuzz_diff.cc
	mkdir -p .phone-build
	for f in src/phone/phone.c test/phone/v8_12_57.c; do clang -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Isrc -c $$f -o .phone-build/fz-$$(basename $$f .c).o || exit 1; done
	clang++ -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o .phone-build/fuzz_diff test/phone/fuzz_diff.cc .phone-build/fz-phone.o .phone-build/fz-v8_12_57.o -lphonenumber

phone-fuzz-diff: phone-fuzz-diff-bin
	mkdir -p .phone-build/corpus-diff
	cp test/phone/corpus/* .phone-build/corpus-diff/
	cd .phone-build && ./fuzz_diff -max_total_time=$(PHONE_FUZZ_SECONDS) -max_len=300 -timeout=5 corpus-diff

# Benchmark: needs a PostgreSQL cluster of its own (bench/common.sh).
phone-bench:
	bash bench/phone/run.sh

# Regenerate the committed tables from the vendored metadata: the module's
# (v9.0.35) and the differential tests' (v8.12.57).
phone-tables:
	python3 tools/phone/gen.py data/phonenumber/PhoneNumberMetadata-v9.0.35.xml v9_0_35 > src/phone/tables/v9_0_35.c
	python3 tools/phone/gen.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml v8_12_57 > test/phone/v8_12_57.c

# The committed tables are what the generator makes of the vendored
# metadata in data/phonenumber.
phone-tables-check:
	@mkdir -p $(PHONE_REPO)/.phone-build
	@fail=0; \
	for t in v9_0_35:src/phone/tables/v9_0_35.c v8_12_57:test/phone/v8_12_57.c; do \
		v=$${t%%:*}; f=$${t#*:}; x=PhoneNumberMetadata-$$(echo $$v | tr _ .).xml; \
		python3 $(PHONE_REPO)/tools/phone/gen.py $(PHONE_REPO)/data/phonenumber/$$x $$v > $(PHONE_REPO)/.phone-build/check-$$v.c 2>/dev/null || { echo "$$f: the generator failed on data/phonenumber/$$x"; fail=1; continue; }; \
		if cmp -s $(PHONE_REPO)/$$f $(PHONE_REPO)/.phone-build/check-$$v.c; then echo "$$f: as generated from data/phonenumber/$$x"; \
		else echo "$$f: differs from what tools/phone/gen.py makes of data/phonenumber/$$x (make phone-tables):"; \
			diff -u $(PHONE_REPO)/$$f $(PHONE_REPO)/.phone-build/check-$$v.c | head -n 20; fail=1; fi; \
	done; \
	exit $$fail

# The vendored metadata is Google's as shared beside the repository
# (../shared/phonenumber, read-only there, or PHONE_METADATA=DIR).  Fails,
# saying where it looked, when that copy is not there.
PHONE_METADATA ?= $(abspath $(PHONE_REPO)/../shared/phonenumber)
phone-metadata-check:
	@fail=0; \
	for x in PhoneNumberMetadata-v9.0.35.xml PhoneNumberMetadata-v8.12.57.xml; do \
		if [ ! -r "$(PHONE_METADATA)/$$x" ]; then echo "phone-metadata-check: no $$x in $(PHONE_METADATA) (set PHONE_METADATA=DIR)"; fail=1; \
		elif cmp -s $(PHONE_REPO)/data/phonenumber/$$x "$(PHONE_METADATA)/$$x"; then echo "data/phonenumber/$$x: the same as $(PHONE_METADATA)/$$x"; \
		else echo "data/phonenumber/$$x: differs from $(PHONE_METADATA)/$$x"; fail=1; fi; \
	done; \
	exit $$fail

# The Unicode classes libphonenumber takes from ICU: digits, letters, numbers.
phone-unicode: tools/phone/gen_unicode.c
	mkdir -p .phone-build
	$(CC) -O2 -Wall -Wextra -Werror -o .phone-build/gen_unicode $< -licuuc
	.phone-build/gen_unicode > src/phone/tables/unicode.h

# The committed unicode.h is gen_unicode's output on this machine's ICU
# (the header names the ICU it came from: 72 on Debian 12).
phone-unicode-check: tools/phone/gen_unicode.c
	@mkdir -p $(PHONE_REPO)/.phone-build
	@$(CC) -O2 -Wall -Wextra -Werror -o $(PHONE_REPO)/.phone-build/gen_unicode $< -licuuc
	@$(PHONE_REPO)/.phone-build/gen_unicode > $(PHONE_REPO)/.phone-build/check-unicode.h
	@if cmp -s $(PHONE_REPO)/src/phone/tables/unicode.h $(PHONE_REPO)/.phone-build/check-unicode.h; then \
		echo "src/phone/tables/unicode.h: as generated from this ICU"; \
	else \
		echo "src/phone/tables/unicode.h differs from tools/phone/gen_unicode.c's output (make phone-unicode):"; \
		diff -u $(PHONE_REPO)/src/phone/tables/unicode.h $(PHONE_REPO)/.phone-build/check-unicode.h | head -n 20; exit 1; \
	fi

.PHONY: phone-diff phone-diff-bin phone-diff-full phone-fuzz phone-fuzz-diff-bin phone-fuzz-diff phone-bench phone-tables phone-tables-check phone-metadata-check phone-unicode phone-unicode-check

# Harder inputs (other scripts' digits, odd regions, long extension labels,
# tel: contexts, prefixes drawn from their patterns) and raw junk bytes,
# from the phone2 branch's generators.
phone-diff-hard: phone-diff-bin
	python3 test/phone/gen_hard.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff

phone-diff-bytes: phone-diff-bin
	python3 test/phone/gen_bytes.py $(PHONE_DIFF_COUNT) $(PHONE_DIFF_SEED) | .phone-build/diff
