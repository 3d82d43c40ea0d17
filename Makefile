# eightms: built with PGXS.  `make && make install`, or see README.md.

EXTENSION = eightms
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" eightms.control)

# The extension's SQL, one file per domain, in dependency order.  Each later
# capability appends its file here; privileges.sql stays last because it
# sweeps PUBLIC's grants off everything created before it.
SQL_PARTS = \
	sql/schema.sql \
	sql/tenancy.sql \
	sql/api_tenancy.sql \
	sql/jobs.sql \
	sql/seal.sql \
	sql/bridge.sql \
	sql/phone.sql \
	sql/sms.sql \
	sql/gateway.sql \
	sql/privileges.sql

MODULE_big = eightms
# The module: its entry point plus one file per capability.
OBJS = \
	src/eightms.o \
	src/random.o \
	src/seal_gcm.o \
	src/seal.o \
	src/base64url.o \
	src/jwt.o \
	src/webhook_signature.o \
	src/bridge_address.o \
	src/bridge.o \
	src/phone.o \
	src/phonemeta/v9_0_35.o \
	src/phone_sql.o \
	src/sms_encoding.o \
	src/sms_sql.o

DATA_built = eightms--$(EXTVERSION).sql
EXTRA_CLEAN = eightms-phone .phone-build

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = -lcrypto -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

eightms--$(EXTVERSION).sql: $(SQL_PARTS) eightms.control
	@{ echo "-- eightms $(EXTVERSION): generated from sql/*.sql by make; edit those files, not this one."; \
	   printf '%s\n' '\echo Use "CREATE EXTENSION eightms CASCADE" to load this file. \quit'; \
	   for f in $(SQL_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# The phone-number engine outside the server: the command-line tool, the
# differential test against libphonenumber, the fuzzer, and the tables.
PHONE_SRC = src/phone.c src/phonemeta/v9_0_35.c src/phonemeta/v8_12_57.c
PHONE_DIFF_COUNT ?= 20000
PHONE_DIFF_SEED ?= 1
PHONE_FUZZ_SECONDS ?= 600

all: eightms-phone

eightms-phone: $(PHONE_SRC) src/phone_cli.c src/phone.h
	$(CC) -O2 -Wall -Wextra -Werror -Isrc -o $@ $(PHONE_SRC) src/phone_cli.c

phone-diff-bin: $(PHONE_SRC) src/phone.h test/phone/diff.cc
	mkdir -p .phone-build
	for f in $(PHONE_SRC); do $(CC) -O2 -Isrc -c $$f -o .phone-build/$$(basename $$f .c).o || exit 1; done
	$(CXX) -O2 -Isrc -o .phone-build/diff test/phone/diff.cc .phone-build/*.o -lphonenumber

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

# Regenerate the committed tables from the vendored metadata.
phone-tables:
	python3 src/phonemeta/gen.py data/phonenumber/PhoneNumberMetadata-v9.0.35.xml v9_0_35 > src/phonemeta/v9_0_35.c
	python3 src/phonemeta/gen.py data/phonenumber/PhoneNumberMetadata-v8.12.57.xml v8_12_57 > src/phonemeta/v8_12_57.c

.PHONY: up test phone-diff phone-diff-bin phone-diff-full phone-fuzz phone-tables
up:
	bash test/up.sh
test:
	bash test/run.sh
