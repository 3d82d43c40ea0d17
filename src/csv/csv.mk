# csv.mk: the CSV reader outside the server, included by the top Makefile
# (or run alone: make -f src/csv/csv.mk).  src/csv/csv.c needs no
# PostgreSQL headers; its tests (test/csv/, run by test/engine/csv.sh in
# the engine tier) build with plain cc and clang.  The module links it with
# src/csv/csv_sql.c (the contacts import's SQL functions).
#
#   csv-test       the unit tests, under ASan and UBSan
#   csv-diff       the differential check against Python's csv module on
#                  CSV_DIFF_COUNT generated inputs, seed CSV_DIFF_SEED
#   csv-fuzz       libFuzzer with ASan+UBSan for CSV_FUZZ_SECONDS, from
#                  the seed corpus test/csv/corpus (the run's corpus and any
#                  crash stay in .csv-build/)
#   csv-fuzz-replay  the seed corpus through the fuzz target once

CSV_REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../..)
CSV_BUILD ?= $(CSV_REPO)/.csv-build
CSV_SRC = $(CSV_REPO)/src/csv/csv.c $(CSV_REPO)/src/csv/csv.h $(CSV_REPO)/test/csv/csv_dump.h
CSV_CFLAGS = -Wall -Wextra -Werror -I$(CSV_REPO)/src -I$(CSV_REPO)/test/csv
CSV_DIFF_COUNT ?= 20000
CSV_DIFF_SEED ?= 1
CSV_FUZZ_SECONDS ?= 600

$(CSV_BUILD)/csv_test: $(CSV_SRC) $(CSV_REPO)/test/csv/csv_test.c
	mkdir -p $(CSV_BUILD)
	$(CC) -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined $(CSV_CFLAGS) \
		-o $@ $(CSV_REPO)/test/csv/csv_test.c $(CSV_REPO)/src/csv/csv.c

$(CSV_BUILD)/csv_cli: $(CSV_SRC) $(CSV_REPO)/test/csv/csv_cli.c
	mkdir -p $(CSV_BUILD)
	$(CC) -O2 $(CSV_CFLAGS) -o $@ $(CSV_REPO)/test/csv/csv_cli.c $(CSV_REPO)/src/csv/csv.c

$(CSV_BUILD)/fuzz: $(CSV_SRC) $(CSV_REPO)/test/csv/fuzz.c
	mkdir -p $(CSV_BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(CSV_CFLAGS) \
		-o $@ $(CSV_REPO)/test/csv/fuzz.c $(CSV_REPO)/src/csv/csv.c

csv-test: $(CSV_BUILD)/csv_test
	$(CSV_BUILD)/csv_test

csv-diff: $(CSV_BUILD)/csv_cli
	python3 $(CSV_REPO)/test/csv/diff.py $(CSV_BUILD)/csv_cli $(CSV_DIFF_COUNT) $(CSV_DIFF_SEED)

csv-fuzz-replay: $(CSV_BUILD)/fuzz
	$(CSV_BUILD)/fuzz -runs=0 $(CSV_REPO)/test/csv/corpus/*

csv-fuzz: $(CSV_BUILD)/fuzz
	mkdir -p $(CSV_BUILD)/corpus
	cp $(CSV_REPO)/test/csv/corpus/* $(CSV_BUILD)/corpus/
	cd $(CSV_BUILD) && ./fuzz -max_total_time=$(CSV_FUZZ_SECONDS) -max_len=4096 -timeout=5 corpus

.PHONY: csv-test csv-diff csv-fuzz csv-fuzz-replay
