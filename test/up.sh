#!/usr/bin/env bash
# test/up.sh: build and install eightms, run a private PostgreSQL cluster
# with pg_cron and eightms preloaded, create the database and the extension,
# and print how to connect plus a short demo.  Safe to run again: it keeps
# the cluster, its data and its secrets, restarts the server so a newly
# built library is loaded, and updates the extension in the database
# (ALTER EXTENSION eightms UPDATE) when it has an older version.
#
#   EIGHTMS_PORT  the port (default 54329)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${EIGHTMS_PORT:-54329}
DB=eightms
INITDB=$PGBIN/initdb
PGCTL=$PGBIN/pg_ctl

ensure_packages
build_extension
say "installing eightms into PostgreSQL $PGVER"
make -C "$REPO" -s install PG_CONFIG=$PGBIN/pg_config >/dev/null

# The cluster lives under the repo (ignored by git) when the postgres user
# can reach it; a clone under /root (mode 700) cannot be, so fall back.
LOCAL=$REPO/.local
if ! as_postgres test -x "$REPO" 2>/dev/null; then
	LOCAL=/var/lib/eightms/local
	say "the postgres user cannot enter $REPO; keeping the cluster in $LOCAL instead"
fi
mkdir -p "$LOCAL"
chown postgres:postgres "$LOCAL"
chmod 700 "$LOCAL"
DATA=$LOCAL/pgdata
SOCK=$LOCAL/run
LOG=$LOCAL/server.log
SECRETS=$LOCAL/secrets.env

ensure_secrets "$SECRETS"
init_cluster "$DATA" "$PORT" "$SOCK" "$DB"
say "starting the cluster in $DATA on port $PORT"
start_cluster "$DATA" "$SECRETS" "$LOG"

export PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if ! psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
	psql -d postgres -c "CREATE DATABASE $DB"
fi
# The extension: created, or updated from the version the database has to
# the one just installed (the server runs the new library already), as a
# DBA would at a release.
INSTALLED=$(psql -d "$DB" -Atc "SELECT extversion FROM pg_extension WHERE extname = 'eightms'")
VERSION=$(psql -d "$DB" -Atc "SELECT default_version FROM pg_available_extensions WHERE name = 'eightms'")
BUILT_SUM=$(sha256sum "$REPO/eightms--$VERSION.sql" | cut -c1-64)
start_over() {
	say "      To start over (this deletes the database's data):"
	say "      psql -h $SOCK -p $PORT -U postgres -d postgres -c 'DROP DATABASE $DB WITH (FORCE)' && bash test/up.sh"
	STALE=1
}
if [ -z "$INSTALLED" ]; then
	psql -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms CASCADE"
	echo "$BUILT_SUM" > "$LOCAL/installed-script.sha256"
elif [ "$INSTALLED" != "$VERSION" ]; then
	if psql -d "$DB" -Atc "SELECT path IS NOT NULL FROM pg_extension_update_paths('eightms')
							WHERE source = '$INSTALLED' AND target = '$VERSION'" | grep -q t; then
		say "updating eightms in database $DB from $INSTALLED to $VERSION"
		# 0.2.0 requires pg_trgm, which ALTER EXTENSION does not create.
		psql -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" -c "ALTER EXTENSION eightms UPDATE"
		echo "$BUILT_SUM" > "$LOCAL/installed-script.sha256"
	else
		say "note: database $DB has eightms $INSTALLED, and this tree has no upgrade script from it to $VERSION."
		start_over
	fi
elif [ -s "$LOCAL/installed-script.sha256" ] && [ "$(cat "$LOCAL/installed-script.sha256")" != "$BUILT_SUM" ]; then
	# A released version's script never changes, so this is a developer's
	# database: sql/ was edited under the unreleased version it already has,
	# which ALTER EXTENSION UPDATE cannot apply again (the upgrade script
	# starts from the last release).  Say so rather than drop the data.
	say "note: the extension's SQL changed since database $DB got eightms $VERSION, under the same version."
	start_over
else
	echo "$BUILT_SUM" > "$LOCAL/installed-script.sha256"
fi
psql -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
# Scheduled jobs, once the extension has any (named, so this is idempotent).
psql -d "$DB" -Atc "SELECT to_regprocedure('eightms.schedule_jobs()') IS NOT NULL" | grep -q t \
	&& psql -d "$DB" -c "SELECT eightms.schedule_jobs()" >/dev/null

# A login role for PostgREST (the "authenticator"), with a password kept
# beside the cluster, and a PostgREST configuration that uses it.
PGRST_ENV=$LOCAL/postgrest.env
if [ ! -s "$PGRST_ENV" ]; then
	(umask 077; echo "EIGHTMS_AUTHENTICATOR_PASSWORD=$(head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_')" > "$PGRST_ENV")
fi
# shellcheck source=/dev/null
. "$PGRST_ENV"
PGOPTIONS="-c client_min_messages=warning" psql -d "$DB" -v pw="$EIGHTMS_AUTHENTICATOR_PASSWORD" <<'SQL'
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eightms_authenticator') AS missing \gset
\if :missing
CREATE ROLE eightms_authenticator LOGIN NOINHERIT;
\endif
ALTER ROLE eightms_authenticator PASSWORD :'pw';
GRANT eightms_anon, eightms_user, eightms_phone TO eightms_authenticator;
SQL

if [ -n "${STALE:-}" ]; then
	say "skipping the demo: database $DB has a build of the extension this tree cannot update"
else
# The bridge worker connects once the database and extension exist.
for _ in $(seq 1 30); do
	psql -d "$DB" -Atc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eightms bridge'" | grep -q 1 && break
	sleep 0.5
done
say "demo: the main flow as PostgREST would drive it"
psql -d "$DB" -P pager=off <<'SQL'
\pset footer off
-- A dashboard user signs in (JWT sub "demo-owner") and creates an account,
-- once; PostgREST does exactly these steps for each request.
BEGIN;
\set owner_claims '{"role":"eightms_user","sub":"demo-owner","email":"owner@demo.example","email_verified":true}'
\set other_claims '{"role":"eightms_user","sub":"demo-other","email":"boss@other.example","email_verified":true}'
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT count(*) = 0 AS first_run FROM eightms_api.my_accounts() \gset
\if :first_run
\echo 'First run: demo-owner creates an account and invites an agent (the token is shown once):'
SELECT account_id, company_name, timezone, default_region
  FROM eightms_api.create_account('Demo Dental', 'America/New_York', 'Demo', 'US');
SELECT invitation_id, token, expires_at FROM eightms_api.invite_member('agent@demo.example', 'agent');
\endif
COMMIT;

-- Another business signs up; it must stay invisible to the first.
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'other_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'other_claims', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT count(*) = 0 AS first_run FROM eightms_api.my_accounts() \gset
\if :first_run
SELECT account_id AS other_account FROM eightms_api.create_account('Other Org', 'Europe/London', NULL, 'GB') \gset
\endif
COMMIT;

BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The demo owner''s accounts (eightms_api.my_accounts):'
SELECT account_id, company_name, role, status FROM eightms_api.my_accounts();
\echo 'Row-level security: the same query as demo-owner and as the superuser:'
SELECT count(*) AS accounts_visible_to_demo_owner FROM eightms.account;
\echo 'Phone numbers, read in the account''s default region (US):'
SELECT raw, eightms.e164(raw) AS e164, eightms.phone_type(raw) AS type, eightms.phone_region(raw) AS region
  FROM unnest(ARRAY['(650) 253-0000', '1-800-FLOWERS', '+44 20 7946 0018', '011 54 9 11 2345 6789']) AS raw;
COMMIT;

-- The gateway: the dashboard makes a one-time pairing code, a phone pairs
-- with it anonymously and gets its device token; then send, claim, report,
-- and an inbound STOP.  Done on the first run; later runs show the result.
SELECT count(*) = 0 AS gateway_first_run FROM eightms.phone WHERE device_id = 'demo-pixel-7' \gset
\if :gateway_first_run
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
COMMIT;
BEGIN;
SELECT set_config('request.headers', '{}', true), set_config('role', 'eightms_anon', true),
	   set_config('request.jwt.claims', '{"role":"eightms_anon"}', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT phone_id, token FROM eightms_api.pair_phone(:'code', 'demo-pixel-7', 'Front desk', '1.0.0') \gset
COMMIT;
SELECT eightms.jwt_verify(:'token')::text AS phone_claims \gset
\echo 'A phone paired with a one-time code; its device token carries:'
SELECT :'phone_claims'::jsonb - 'iat' - 'exp' AS device_token_claims;
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || :'token')::text, true),
	   set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', :'phone_claims', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT eightms_api.heartbeat(86, 'wifi', true, '1.0.0') \gset
COMMIT;
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The dashboard sends a batch (send_messages); each item is queued or refused:'
SELECT item, status, error_code, error FROM eightms_api.send_messages($$[
	{"to": "(212) 555-0142", "body": "Your appointment is tomorrow at 10:00.", "idempotency_key": "demo-1"},
	{"to": "212-555-0199", "body": "Your glasses are ready – come by any time 👓", "idempotency_key": "demo-2"},
	{"to": "555-01", "body": "a number too short"}]$$);
COMMIT;
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || :'token')::text, true),
	   set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', :'phone_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The phone claims its work (claim_messages), sends it and reports (report_messages):'
SELECT to_number, encoding, segments, attempt FROM eightms_api.claim_messages(10);
SELECT status, accepted, note FROM eightms_api.report_messages(coalesce((
	SELECT jsonb_agg(jsonb_build_object('id', m.message_id, 'status', s.status))
	  FROM eightms.message m, (VALUES ('sent'), ('delivered')) s(status)
	 WHERE m.status = 'claimed' AND m.phone_id = eightms.current_phone_id()), '[]'));
\echo 'An inbound SMS: the second recipient texts STOP (receive_messages):'
SELECT duplicate, consent FROM eightms_api.receive_messages(
	'[{"from": "+1 212 555 0199", "body": "Stop", "device_message_id": "demo-sms-1"}]');
COMMIT;
\endif
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The account''s messages (view eightms_api.messages):'
SELECT peer_number, direction, status, encoding, segments, left(body, 40) AS body
  FROM eightms_api.messages ORDER BY created_at, direction DESC, body;
\echo 'Sending to the number that texted STOP is refused:'
SELECT status, error_code, error FROM eightms_api.send_messages('[{"to": "+12125550199", "body": "One more offer"}]');
COMMIT;

-- Contacts, a template and a campaign to completion through the paired
-- phone.  Done on the first run; later runs show the campaign's stats.
SELECT count(*) = 0 AS campaign_first_run FROM eightms.campaign WHERE name = 'Demo: check-up reminder' \gset
SELECT json_build_object('role', 'eightms_phone', 'account_id', p.account_id, 'phone_id', p.phone_id,
						 'tv', p.token_version)::text AS phone_claims
  FROM eightms.phone p WHERE p.device_id = 'demo-pixel-7' AND p.unpaired_at IS NULL \gset
SELECT eightms.jwt_sign(:'phone_claims') AS phone_token \gset
\set template_body 'Hi {{first_name|there}}, your {{custom.plan|yearly}} check-up is due. Reply STOP to opt out.'
\if :campaign_first_run
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
SELECT eightms_api.set_contact_field('plan', 'choice', '{basic,premium}') \gset
\echo 'The dashboard imports a CSV (import_contacts_csv): a result for every line, by line number:'
SELECT line, result, reason, detail FROM eightms_api.import_contacts_csv(
	E'Mobile,First,Last,Plan,Tags\r\n'
	'(212) 555-0150,Ana,Silva,premium,demo|vip\r\n'
	'+1 212 555 0151,"Ben ""Benny""",Okafor,basic,demo\r\n'
	'212-555-0152,Zoë,,basic,demo\r\n'
	'555-01,Dan,,basic,demo\r\n'
	'212 555 0153,Eve,,gold,demo\r\n'
	'212.555.0150,Ana,Silva-Lee,premium,demo|vip\r\n',
	'{"Mobile": "phone", "First": "first_name", "Last": "last_name", "Plan": "custom.plan",
	  "Tags": {"field": "tags", "separator": "|"}}');
SELECT eightms_api.save_template('check-up', :'template_body') \gset
\echo 'A template previewed for the contacts (preview_template): the encoding, segments, what forces UCS-2:'
SELECT rendered, encoding, segments, ucs2_chars FROM eightms_api.preview_template(:'template_body');
\echo 'A campaign to the tag "demo", any time of day in each recipient''s zone, and its estimate:'
SELECT eightms_api.create_campaign('Demo: check-up reminder', '{"tags_any": ["demo"]}', template => 'check-up',
								   window_from => '00:00', window_until => '23:59') AS campaign_id \gset
SELECT * FROM eightms_api.estimate_campaign(:'campaign_id');
SELECT eightms_api.schedule_campaign(:'campaign_id') AS state;
COMMIT;
\echo 'The campaigns job (pg_cron runs it every minute) starts it and queues each message in its window:'
CALL eightms.campaign_job();
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || :'phone_token')::text, true),
	   set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', :'phone_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The phone claims the campaign''s messages, sends them and reports; Ana replies:'
SELECT to_number, body, encoding, segments FROM eightms_api.claim_messages(10) ORDER BY to_number;
SELECT status, accepted FROM eightms_api.report_messages(coalesce((
	SELECT jsonb_agg(jsonb_build_object('id', m.message_id, 'status', s.status))
	  FROM eightms.message m, (VALUES ('sent'), ('delivered')) s(status)
	 WHERE m.status = 'claimed' AND m.phone_id = eightms.current_phone_id()), '[]'));
SELECT duplicate, consent FROM eightms_api.receive_messages(
	'[{"from": "+12125550150", "body": "Thanks, booking now", "device_message_id": "demo-sms-2"}]');
COMMIT;
CALL eightms.campaign_job();
\endif
BEGIN;
SELECT set_config('request.headers', json_build_object('authorization', 'Bearer ' || eightms.jwt_sign(:'owner_claims'))::text, true),
	   set_config('role', 'eightms_user', true), set_config('request.jwt.claims', :'owner_claims', true) \gset
SELECT eightms_api.pre_request() \gset
\echo 'The campaign and its stats (campaign_stats): each recipient counted once:'
SELECT s.name, s.state, s.recipients, s.sent, s.delivered, s.replied, s.opted_out
  FROM eightms_api.campaigns() c, eightms_api.campaign_stats(c.campaign_id) s
 WHERE c.name = 'Demo: check-up reminder';
COMMIT;

\echo 'The seal key ring the server loaded from its key file (ids only):'
SELECT * FROM eightms.seal_status();
\echo 'The HTTP bridge worker:'
SELECT pid, backend_type, state FROM pg_stat_activity WHERE backend_type = 'eightms bridge';
SELECT count(*) AS accounts_in_database FROM eightms.account;
SELECT extname, extversion FROM pg_extension WHERE extname IN ('eightms', 'pg_cron') ORDER BY 1;
SQL
fi

cat <<EOF2

eightms is running.
  connect:   psql -h $SOCK -p $PORT -U postgres $DB
  over TCP:  postgres://eightms_authenticator:<password in $PGRST_ENV>@localhost:$PORT/$DB
  secrets:   $SECRETS (0600, the server's key file: eightms.secrets_file)
  log:       $LOG
  jobs:      SELECT * FROM eightms.job_status();  (pg_cron's runs of the scheduled work)
  PostgREST: see "Running PostgREST" in doc/operations.md (front/postgrest.conf)
  stop:      runuser -u postgres -- $PGCTL -D $DATA stop
EOF2
