# template.mk: the template parser outside the server, included by the top
# Makefile (or run alone: make -f src/template/template.mk).
# src/template/template.c needs no PostgreSQL headers; its tests
# (test/template/, run by test/engine/template.sh in the engine tier) build
# with plain cc and clang.
#
#   template-test         the unit tests, under ASan and UBSan
#   template-fuzz         libFuzzer with ASan+UBSan for TEMPLATE_FUZZ_SECONDS,
#                         from the seed corpus test/template/corpus (the
#                         run's corpus and any crash stay in .template-build/)
#   template-fuzz-replay  the seed corpus through the fuzz target once

TEMPLATE_REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../..)
TEMPLATE_BUILD ?= $(TEMPLATE_REPO)/.template-build
TEMPLATE_SRC = $(TEMPLATE_REPO)/src/template/template.c $(TEMPLATE_REPO)/src/template/template.h
TEMPLATE_CFLAGS = -Wall -Wextra -Werror -Wno-missing-field-initializers -I$(TEMPLATE_REPO)/src
TEMPLATE_FUZZ_SECONDS ?= 600

$(TEMPLATE_BUILD)/template_test: $(TEMPLATE_SRC) $(TEMPLATE_REPO)/test/template/template_test.c
	mkdir -p $(TEMPLATE_BUILD)
	$(CC) -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined $(TEMPLATE_CFLAGS) \
		-o $@ $(TEMPLATE_REPO)/test/template/template_test.c $(TEMPLATE_REPO)/src/template/template.c

$(TEMPLATE_BUILD)/fuzz: $(TEMPLATE_SRC) $(TEMPLATE_REPO)/test/template/fuzz.c
	mkdir -p $(TEMPLATE_BUILD)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(TEMPLATE_CFLAGS) \
		-o $@ $(TEMPLATE_REPO)/test/template/fuzz.c $(TEMPLATE_REPO)/src/template/template.c

template-test: $(TEMPLATE_BUILD)/template_test
	$(TEMPLATE_BUILD)/template_test

template-fuzz-replay: $(TEMPLATE_BUILD)/fuzz
	$(TEMPLATE_BUILD)/fuzz -runs=0 $(TEMPLATE_REPO)/test/template/corpus/*

template-fuzz: $(TEMPLATE_BUILD)/fuzz
	mkdir -p $(TEMPLATE_BUILD)/corpus
	cp $(TEMPLATE_REPO)/test/template/corpus/* $(TEMPLATE_BUILD)/corpus/
	cd $(TEMPLATE_BUILD) && ./fuzz -max_total_time=$(TEMPLATE_FUZZ_SECONDS) -max_len=4096 -timeout=5 corpus

.PHONY: template-test template-fuzz template-fuzz-replay
