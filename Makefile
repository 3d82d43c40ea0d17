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
	sql/consent.sql \
	sql/privileges.sql

MODULE_big = eightms
# The module: its entry point plus one file per capability.
OBJS = \
	src/eightms.o \
	src/preload.o \
	src/claims.o \
	src/pre_request.o \
	src/try_uuid.o \
	src/consent_ascii.o \
	src/json_time.o \
	src/message_state.o \
	src/uuid_v7.o \
	src/random.o \
	src/seal_gcm.o \
	src/secrets.o \
	src/seal.o \
	src/base64url.o \
	src/jwt.o \
	src/jwt_keys.o \
	src/webhook_signature.o \
	src/bridge/bridge_address.o \
	src/bridge/api.o \
	src/bridge/handoff.o \
	src/bridge/queue.o \
	src/bridge/recorder.o \
	src/bridge/transfer.o \
	src/bridge/worker.o \
	src/phone/phone.o \
	src/phone/tables/v9_0_35.o \
	src/phone/phone_sql.o \
	src/sms_encoding.o \
	src/sms_sql.o

# The install script of the current version is generated from SQL_PARTS;
# every released install script and every upgrade script is kept as written
# in sql/versions/ and never changed once released (see CHANGELOG.md).
DATA_built = eightms--$(EXTVERSION).sql
DATA = $(wildcard sql/versions/eightms--*.sql)
EXTRA_CLEAN = eightms-phone .phone-build

# The version is written once, in eightms.control; the C code gets it here.
PG_CPPFLAGS = -I$(srcdir)/src -DEIGHTMS_VERSION='"$(EXTVERSION)"'
# Warnings are errors in the test command and CI (WERROR=1, which
# test/lib.sh passes), not in a plain `make`: a newer compiler's new warning
# should not stop a DBA's build.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare \
	$(if $(WERROR),-Werror)
SHLIB_LINK = -lcrypto -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

eightms--$(EXTVERSION).sql: $(SQL_PARTS) eightms.control
	@{ echo "-- eightms $(EXTVERSION): generated from sql/*.sql by make; edit those files, not this one."; \
	   printf '%s\n' '\echo Use "CREATE EXTENSION eightms CASCADE" to load this file. \quit'; \
	   for f in $(SQL_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# The phone-number engine outside the server (tool, differential test,
# fuzzer, benchmark, tables): its own fragment.
include src/phone/phone.mk

.PHONY: up test
up:
	bash test/up.sh
test:
	bash test/run.sh
