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
	sql/gateway_tables.sql \
	sql/gateway_routing.sql \
	sql/gateway_phones.sql \
	sql/gateway_send.sql \
	sql/gateway_claim.sql \
	sql/gateway_inbound.sql \
	sql/gateway_inbox.sql \
	sql/consent.sql \
	sql/privacy.sql \
	sql/dsar.sql \
	sql/contacts.sql \
	sql/contacts_import.sql \
	sql/templates.sql \
	sql/campaigns.sql \
	sql/campaign_stats.sql \
	sql/distribute.sql \
	sql/privileges.sql

MODULE_big = eightms
# The module: its entry point plus one file per capability.
OBJS = \
	src/eightms.o \
	src/preload.o \
	src/util/try_uuid.o \
	src/util/uuid_v7.o \
	src/util/tz_name.o \
	src/util/base64url.o \
	src/secrets/random.o \
	src/secrets/seal_gcm.o \
	src/secrets/secrets.o \
	src/secrets/seal.o \
	src/secrets/webhook_signature.o \
	src/auth/claims.o \
	src/auth/pre_request.o \
	src/auth/jwt.o \
	src/auth/jwt_keys.o \
	src/gateway/json_time.o \
	src/gateway/message_state.o \
	src/sms/consent_ascii.o \
	src/sms/sms_encoding.o \
	src/sms/sms_sql.o \
	src/template/template.o \
	src/template/template_sql.o \
	src/phone/phone.o \
	src/phone/tables/v9_0_35.o \
	src/phone/phone_sql.o \
	src/bridge/bridge_address.o \
	src/bridge/api.o \
	src/bridge/handoff.o \
	src/bridge/queue.o \
	src/bridge/recorder.o \
	src/bridge/transfer.o \
	src/bridge/worker.o \
	src/csv/csv.o \
	src/csv/csv_sql.o

# The install script of the current version is generated from SQL_PARTS;
# every released install script and every upgrade script is kept as written
# in sql/versions/ and never changed once released (see CHANGELOG.md).
DATA_built = eightms--$(EXTVERSION).sql
# The DBA's command for data-subject requests (doc/privacy.md), into bindir.
SCRIPTS = bin/eightms-dsar
DATA = $(wildcard sql/versions/eightms--*.sql)
EXTRA_CLEAN = eightms-phone .phone-build .csv-build .template-build test/regress/results test/regress/regression.diffs \
	test/regress/regression.out test/isolation/output_iso test/tmp_check .engine-build

# The version is written once, in eightms.control; the C code gets it here.
PG_CPPFLAGS = -I$(srcdir)/src -DEIGHTMS_VERSION='"$(EXTVERSION)"'
# Warnings are errors in the test command and CI (WERROR=1, which
# test/lib.sh passes), not in a plain `make`: a newer compiler's new warning
# should not stop a DBA's build.
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare \
	$(if $(WERROR),-Werror)
SHLIB_LINK = -lcrypto -lcurl

# ---- Tests, as contrib modules run theirs (doc: "Testing" in the README).
# `make installcheck` runs the pg_regress, isolation and TAP tiers against
# the server that PGHOST/PGPORT/PGUSER name, where eightms is installed and
# preloaded and its secrets set (test/run.sh makes such a server and runs
# every tier, pgTAP and the engines' too).  Each tier alone:
# installcheck-regress, installcheck-isolation, installcheck-tap,
# engine-check.
#
# pg_regress: the inputs in test/regress/sql, the expected output in the
# top-level expected/ (pg_regress takes the files of its output directory
# before those of its input directory), the results in test/regress.
REGRESS = $(sort $(notdir $(basename $(wildcard $(srcdir)/test/regress/sql/*.sql))))
# pg_trgm first: eightms requires it (the contacts' search), and pg_regress
# creates each extension without CASCADE.
REGRESS_OPTS = --outputdir=test/regress --load-extension=pg_trgm --load-extension=eightms
# Isolation specs: races between sessions, in a database of their own
# with the PostgREST stand-ins of test/helpers.sql (isolation-prep).
ISOLATION = $(sort $(notdir $(basename $(wildcard $(srcdir)/test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation --outputdir=test/isolation/output_iso --use-existing
REGRESS_PREP = isolation-prep
# TAP tests on PostgreSQL::Test::Cluster, each with clusters of its own:
# what needs a server to itself (crashes, restarts, preload, key files).
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl
PROVE_FLAGS = -I $(srcdir)/test/t

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The tests' databases (after PGXS, which names them after the module).
CONTRIB_TESTDB = eightms_regress
ISOLATION_TESTDB = eightms_isolation

eightms--$(EXTVERSION).sql: $(SQL_PARTS) eightms.control
	@{ echo "-- eightms $(EXTVERSION): generated from sql/*.sql by make; edit those files, not this one."; \
	   printf '%s\n' '\echo Use "CREATE EXTENSION eightms CASCADE" to load this file. \quit'; \
	   for f in $(SQL_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# The phone-number engine outside the server (tool, differential test,
# fuzzer, benchmark, tables): its own fragment.
include src/phone/phone.mk
# The CSV reader outside the server (unit tests, the check against Python's
# csv module, the fuzzer): its own fragment.
include src/csv/csv.mk
# The template parser outside the server (unit tests, the fuzzer).
include src/template/template.mk

# The test tiers one at a time (installcheck runs the first three).  The
# psql of the server's installation creates the isolation database.
PSQL = '$(bindir)/psql' -X -q -v ON_ERROR_STOP=1
isolation-prep:
	$(PSQL) -d postgres -c 'DROP DATABASE IF EXISTS $(ISOLATION_TESTDB)' -c 'CREATE DATABASE $(ISOLATION_TESTDB)'
	$(PSQL) -d $(ISOLATION_TESTDB) -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION eightms CASCADE' \
		-f $(srcdir)/test/helpers.sql -f $(srcdir)/test/isolation/helpers.sql >/dev/null

installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

installcheck-isolation: isolation-prep
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

# PGXS's prove_installcheck, with the directory the clusters go in
# (TAP_TESTDIR, tmp_check under it) and the command prove runs under
# (TAP_RUN) settable: the suite runs as root, and PostgreSQL only as a
# user of its own (test/run.sh: TAP_RUN='runuser -u postgres --'), and
# where the tests are read from (TAP_SRCDIR: run.sh's copy of test/, as
# postgres may not enter the clone).
TAP_TESTDIR ?= $(CURDIR)/test
TAP_RUN ?=
TAP_SRCDIR ?= $(srcdir)
installcheck-tap:
	rm -rf '$(TAP_TESTDIR)'/tmp_check
	$(TAP_RUN) $(MKDIR_P) '$(TAP_TESTDIR)'/tmp_check
	cd $(TAP_SRCDIR) && TESTDIR='$(TAP_TESTDIR)' PATH="$(bindir):$$PATH" PGPORT='6$(DEF_PGPORT)' \
		PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
		$(TAP_RUN) $(PROVE) $(PG_PROVE_FLAGS) $(PROVE_FLAGS) $(PROVE_TESTS)

# The engines outside the server (phone numbers: differential samples
# against libphonenumber, the CLI, the fuzz corpus replayed under ASan and
# UBSan, the generated tables; SMS encoding; AES-GCM known answers; the CSV
# reader: its unit tests, Python's csv module, its fuzz corpus): each
# harness in test/engine prints "N passed, N failed", and so does the total.
engine-check:
	@p=0; f=0; for t in $(srcdir)/test/engine/*.sh; do \
		echo "==> engine: $$(basename $$t)"; \
		out=$$(bash $$t 2>&1); rc=$$?; printf '%s\n' "$$out"; \
		line=$$(printf '%s\n' "$$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$$' | tail -n 1); \
		if [ -n "$$line" ]; then p=$$((p + $$(echo "$$line" | cut -d' ' -f1))); f=$$((f + $$(echo "$$line" | cut -d' ' -f3))); fi; \
		if [ $$rc -ne 0 ] && [ -z "$$line" ]; then f=$$((f + 1)); fi; \
	done; \
	echo "$$p passed, $$f failed"; [ $$f -eq 0 ]

.PHONY: isolation-prep installcheck-regress installcheck-isolation installcheck-tap engine-check

.PHONY: up test
up:
	bash test/up.sh
test:
	bash test/run.sh
