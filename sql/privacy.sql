-- privacy.sql: what eightms holds about whom, how long it keeps it, and the
-- purges that enforce that (doc/privacy.md).
--
-- Two registries the script fills itself, like scheduled_job: the
-- retention rules and a classification of every column of every eightms
-- table.  test/pgtap/01_registry.sql fails when a column exists without a
-- classification or a classification names a column that does not exist,
-- so a capability that adds a table registers its data here.  Code (data
-- subject requests, account deletion checks, doc/privacy.md's tables)
-- reads them rather than lists of its own.

-- An account's own, shorter, retention of message bodies (NULL: the
-- platform's, eightms.retention_keep('message_body')), and since when it
-- has its status, which the suspended and disabled account rules count
-- from.  Last in the table: an upgrade appends them.
ALTER TABLE eightms.account
	ADD COLUMN message_retention interval
		CONSTRAINT account_message_retention_check CHECK (message_retention >= interval '1 day'),
	ADD COLUMN status_since timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN eightms.account.message_retention IS
	'Message bodies are erased this long after the message was created (set by an owner, at most the platform''s message_body rule); NULL: the platform''s rule';
COMMENT ON COLUMN eightms.account.status_since IS 'When status last changed; the suspended_account and disabled_account rules count from it';

CREATE FUNCTION eightms.account_status_since() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.status IS DISTINCT FROM OLD.status THEN
		NEW.status_since := now();
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER account_status_since BEFORE UPDATE OF status ON eightms.account
	FOR EACH ROW EXECUTE FUNCTION eightms.account_status_since();

-- The rules.  default_keep is the platform's maximum as shipped; NULL
-- means no age limit: the data goes with what owns it (the account, the
-- extension).  A superuser may change a rule's keep with
-- eightms.set_retention(), kept in retention_setting (dumped, so a restore
-- keeps the platform's policy).
CREATE TABLE eightms.retention_rule (
	rule_name		text NOT NULL PRIMARY KEY
		CONSTRAINT retention_rule_name_check CHECK (rule_name ~ '^[a-z_]+$'),
	covers			text NOT NULL,
	default_keep	interval,
	counted_from	text NOT NULL,
	reason			text NOT NULL
);
COMMENT ON TABLE eightms.retention_rule IS
	'global: retention rules (what, how long by default, counted from when, why); filled by CREATE EXTENSION';

INSERT INTO eightms.retention_rule (rule_name, covers, default_keep, counted_from, reason) VALUES
	('account_lifetime', 'accounts, members, phones, conversations, message metadata, opt-outs, consent reviews and templates, contacts and their custom fields',
	 NULL, 'the account''s deletion',
	 'the service itself: delete_account, or the suspended_account and disabled_account rules, remove all of it'),
	('extension', 'the extension''s own registries (jobs, sealed columns, retention rules and settings, this classification)',
	 NULL, 'the extension''s removal', 'definitions, no data about anyone'),
	('invitation', 'invitations accepted, revoked or expired', '30 days',
	 'acceptance, revocation or expiry, whichever came first',
	 'lets an owner see who was invited and whether they joined; the member row records the rest'),
	('pairing_code', 'pairing codes used or expired', '1 day', 'use or expiry, whichever came first',
	 'a spent code proves nothing after the pairing it made'),
	('session', 'sign-in sessions seen acting on an account', '90 days', 'the session''s last request',
	 'members review recent sign-ins; a session idle this long has no live token'),
	('session_revocation', 'signed-out sessions (hash of the session id, user id)', '30 days', 'the sign-out',
	 'must outlive every token it refuses; 30 days covers the usual providers'' longest dashboard JWT'),
	('user_revocation', 'sign-outs everywhere (user id)', '30 days', 'the sign-out',
	 'must outlive every token it refuses, as session_revocation'),
	('phone_telemetry', 'an unpaired phone''s telemetry and sealed gateway password', '30 days', 'the unpairing',
	 'routing needs telemetry only while a phone is paired; the device id and name stay for its messages'' attribution'),
	('http_request', 'finished bridge requests (URL, headers, bodies, response) and their attempts', '7 days',
	 'the request''s outcome', 'delivery evidence for a week of support questions; sealed headers go with them'),
	('cron_history', 'pg_cron''s run history (cron.job_run_details), when pg_cron is installed', '7 days',
	 'the run''s end', 'pg_cron never deletes it; a week shows whether the jobs run'),
	('consent_event', 'consent history: each opt-out and opt-in with its keyword and reply text', '5 years',
	 'the event', 'proof of consent against claims under the TCPA (4-year limitation period) and similar laws, plus a year; the opt-out itself is kept while the account exists'),
	('message_body', 'message bodies (erased; the message''s delivery and billing metadata stay)', NULL,
	 'the message''s creation', 'no platform limit by default; each account''s owner may set one (set_message_retention), and a platform keep caps every account'),
	('suspended_account', 'accounts suspended and not reactivated, with all their data', '365 days', 'the suspension',
	 'a suspension is a reversible hold (billing, abuse review); a year without reactivation ends it'),
	('disabled_account', 'accounts disabled, with all their data', '90 days', 'the account''s disabling',
	 'disabled is closed; 90 days leaves time to undo a mistake or export'),
	('purge_log', 'the purge log (rule, counts, timestamps; no personal data)', '2 years', 'the purge',
	 'evidence that retention ran, for audits covering the last two years');

-- A platform setting of a rule's keep (NULL: no age limit), in place of its
-- default_keep.  Dumped with the accounts' data.
CREATE TABLE eightms.retention_setting (
	rule_name	text NOT NULL PRIMARY KEY REFERENCES eightms.retention_rule (rule_name),
	keep		interval CONSTRAINT retention_setting_keep_check CHECK (keep > interval '0'),
	set_at		timestamptz NOT NULL DEFAULT now(),
	set_by		name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE eightms.retention_setting IS
	'global: the platform''s keep of a retention rule where it differs from the rule''s default (eightms.set_retention)';
SELECT pg_catalog.pg_extension_config_dump('eightms.retention_setting', '');

CREATE FUNCTION eightms.retention_keep(rule text) RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN s.rule_name IS NOT NULL THEN s.keep ELSE r.default_keep END
	  FROM eightms.retention_rule r LEFT JOIN eightms.retention_setting s USING (rule_name)
	 WHERE r.rule_name = rule
$$;
COMMENT ON FUNCTION eightms.retention_keep(text) IS 'A retention rule''s keep now: the platform''s setting, else its default (NULL: no age limit)';

-- Superuser only (no grant): the platform's policy.
CREATE FUNCTION eightms.set_retention(rule text, keep interval) RETURNS interval
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM eightms.retention_rule r WHERE r.rule_name = rule) THEN
		RAISE EXCEPTION 'no retention rule "%"', left(rule, 64)
			USING ERRCODE = '22023', HINT = 'SELECT rule_name FROM eightms.retention_rule lists them.';
	END IF;
	IF keep <= interval '0' THEN
		RAISE EXCEPTION 'a retention must be longer than zero' USING ERRCODE = '22023';
	END IF;
	INSERT INTO eightms.retention_setting AS s (rule_name, keep) VALUES (rule, set_retention.keep)
	ON CONFLICT (rule_name) DO UPDATE SET keep = EXCLUDED.keep, set_at = now(), set_by = current_user;
	RETURN eightms.retention_keep(rule);
END
$$;
COMMENT ON FUNCTION eightms.set_retention(text, interval) IS
	'Set the platform''s keep of a retention rule (NULL: no age limit); superuser only';

-- Every column of every eightms table: what it holds, whose it is, and the
-- rule that says how long it stays.
--   class:   personal (identifies or describes a person), secret (a
--            credential or its hash, sealed or hashed), content (what people
--            wrote), telemetry (what a phone reports about itself),
--            operational (keys, states, timestamps, settings)
--   subject: member (a dashboard user), contact (the number an account
--            texts with), phone (a paired handset), account (the business),
--            none
CREATE TABLE eightms.data_column (
	table_name	name NOT NULL,
	column_name	name NOT NULL,
	class		text NOT NULL
		CONSTRAINT data_column_class_check CHECK (class IN ('personal', 'secret', 'content', 'telemetry', 'operational')),
	subject		text NOT NULL
		CONSTRAINT data_column_subject_check CHECK (subject IN ('member', 'contact', 'phone', 'account', 'none')),
	retention	text NOT NULL REFERENCES eightms.retention_rule (rule_name),
	reason		text NOT NULL,
	PRIMARY KEY (table_name, column_name)
);
COMMENT ON TABLE eightms.data_column IS
	'global: every column of every eightms table classified (class, data subject, retention rule); filled by CREATE EXTENSION';

-- Each purge's evidence: what a rule removed, when, and how long it took.
CREATE TABLE eightms.purge_log (
	purge_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rule_name		text NOT NULL,
	started_at		timestamptz NOT NULL,
	duration		interval NOT NULL,
	rows_removed	bigint NOT NULL,
	oldest			timestamptz,
	newest			timestamptz,
	keep			interval,
	run_by			name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE eightms.purge_log IS
	'global: one row per purge that removed something: rule, rows, oldest and newest timestamps removed, duration';
SELECT pg_catalog.pg_extension_config_dump('eightms.purge_log', '');
SELECT pg_catalog.pg_extension_config_dump('eightms.purge_log_purge_id_seq', '');

-- How far the message-body purge has got in each account: every message
-- whose id is at most position is done (its body erased or empty), or was
-- still pending, held by a writer or not yet old enough when the purge
-- passed it, and is then named in deferred and looked at again by each
-- run until it can go.  Without it each run would walk the account's
-- erased messages from its first (a year of them, at a one-day retention)
-- before it reached one to erase.  Written only by the purge.
CREATE TABLE eightms.body_purge (
	account_id	uuid NOT NULL PRIMARY KEY REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	position	uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
	deferred	uuid[] NOT NULL DEFAULT '{}',
	purged_at	timestamptz
);
COMMENT ON TABLE eightms.body_purge IS
	'tenant: where the message-body purge has got to in the account (messages up to position done, except those deferred)';
SELECT pg_catalog.pg_extension_config_dump('eightms.body_purge', '');
ALTER TABLE eightms.body_purge ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.body_purge FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.body_purge
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('account', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('account', 'company_name', 'personal', 'account', 'account_lifetime', 'the business''s name, a sole trader''s own'),
	('account', 'display_name', 'personal', 'account', 'account_lifetime', 'the name shown to contacts'),
	('account', 'timezone', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'default_region', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'status', 'operational', 'account', 'account_lifetime', 'state'),
	('account', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('account', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('account', 'fold_lookalikes', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'message_retention', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'status_since', 'operational', 'account', 'account_lifetime', 'timestamp'),

	('member', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('member', 'user_id', 'personal', 'member', 'account_lifetime', 'the auth provider''s id of the user'),
	('member', 'email', 'personal', 'member', 'account_lifetime', 'the member''s verified email'),
	('member', 'role', 'operational', 'member', 'account_lifetime', 'what the member may do'),
	('member', 'invited_by', 'personal', 'member', 'account_lifetime', 'user id of the inviter'),
	('member', 'created_at', 'operational', 'member', 'account_lifetime', 'timestamp'),

	('invitation', 'account_id', 'operational', 'account', 'invitation', 'key'),
	('invitation', 'invitation_id', 'operational', 'none', 'invitation', 'key'),
	('invitation', 'email', 'personal', 'member', 'invitation', 'the invitee''s email'),
	('invitation', 'role', 'operational', 'member', 'invitation', 'the role it grants'),
	('invitation', 'token_hash', 'secret', 'member', 'invitation', 'SHA-256 of the invitation token'),
	('invitation', 'invited_by', 'personal', 'member', 'invitation', 'user id of the inviter'),
	('invitation', 'created_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'expires_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'accepted_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'accepted_by', 'personal', 'member', 'invitation', 'user id of who accepted'),
	('invitation', 'revoked_at', 'operational', 'none', 'invitation', 'timestamp'),

	('session', 'account_id', 'operational', 'account', 'session', 'key'),
	('session', 'session_hash', 'secret', 'member', 'session', 'SHA-256 of the JWT session id'),
	('session', 'user_id', 'personal', 'member', 'session', 'the signed-in user'),
	('session', 'created_at', 'operational', 'member', 'session', 'first seen'),
	('session', 'last_seen_at', 'operational', 'member', 'session', 'last seen'),

	('session_revocation', 'session_hash', 'secret', 'member', 'session_revocation', 'SHA-256 of the JWT session id'),
	('session_revocation', 'user_id', 'personal', 'member', 'session_revocation', 'the signed-out user'),
	('session_revocation', 'revoked_at', 'operational', 'member', 'session_revocation', 'timestamp'),
	('user_revocation', 'user_id', 'personal', 'member', 'user_revocation', 'the user signed out everywhere'),
	('user_revocation', 'signed_out_at', 'operational', 'member', 'user_revocation', 'timestamp'),

	('scheduled_job', 'job_name', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'schedule', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'command', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'description', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'table_name', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'column_name', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'context_sql', 'operational', 'none', 'extension', 'definition'),

	('http_request', 'id', 'operational', 'none', 'http_request', 'key'),
	('http_request', 'method', 'operational', 'none', 'http_request', 'request'),
	('http_request', 'url', 'personal', 'none', 'http_request', 'may carry identifiers in its path or query'),
	('http_request', 'headers', 'personal', 'none', 'http_request', 'may carry identifiers'),
	('http_request', 'secret_headers', 'secret', 'none', 'http_request', 'sealed credentials'),
	('http_request', 'body', 'content', 'none', 'http_request', 'what the caller sends (email text, CRM records)'),
	('http_request', 'timeout_ms', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'max_attempts', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'follow_redirects', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'idempotency_key', 'operational', 'none', 'http_request', 'key'),
	('http_request', 'callback', 'operational', 'none', 'http_request', 'function name'),
	('http_request', 'callback_context', 'operational', 'none', 'http_request', 'ids for the callback'),
	('http_request', 'enqueued_by', 'operational', 'none', 'http_request', 'database role'),
	('http_request', 'state', 'operational', 'none', 'http_request', 'state'),
	('http_request', 'attempts', 'operational', 'none', 'http_request', 'count'),
	('http_request', 'next_attempt_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'created_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'finished_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'response_status', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'response_headers', 'personal', 'none', 'http_request', 'may carry identifiers'),
	('http_request', 'response_body', 'content', 'none', 'http_request', 'what the peer answered'),
	('http_request', 'error', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'callback_error', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'host', 'operational', 'none', 'http_request', 'the URL''s host'),
	('http_attempt', 'request_id', 'operational', 'none', 'http_request', 'key'),
	('http_attempt', 'attempt', 'operational', 'none', 'http_request', 'key'),
	('http_attempt', 'started_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_attempt', 'duration_ms', 'operational', 'none', 'http_request', 'timing'),
	('http_attempt', 'status', 'operational', 'none', 'http_request', 'outcome'),
	('http_attempt', 'error', 'operational', 'none', 'http_request', 'outcome'),

	('phone', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('phone', 'phone_id', 'operational', 'phone', 'account_lifetime', 'key'),
	('phone', 'device_id', 'personal', 'phone', 'account_lifetime', 'the device identifier; attributes its messages'),
	('phone', 'name', 'personal', 'phone', 'account_lifetime', 'the name a member gave it'),
	('phone', 'token_version', 'operational', 'phone', 'account_lifetime', 'which device tokens count'),
	('phone', 'paired_at', 'operational', 'phone', 'account_lifetime', 'timestamp'),
	('phone', 'unpaired_at', 'operational', 'phone', 'account_lifetime', 'timestamp'),
	('phone', 'last_heartbeat_at', 'telemetry', 'phone', 'phone_telemetry', 'heartbeat'),
	('phone', 'battery_pct', 'telemetry', 'phone', 'phone_telemetry', 'battery percentage'),
	('phone', 'charging', 'telemetry', 'phone', 'phone_telemetry', 'part of the battery state: routing sends to a low phone on a charger'),
	('phone', 'network', 'telemetry', 'phone', 'phone_telemetry', 'network type'),
	('phone', 'gateway_password', 'secret', 'phone', 'phone_telemetry', 'sealed; the phone''s local gateway password'),
	('phone', 'rate_limit', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'rate_window', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'rate_unit', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'recent_claims', 'operational', 'phone', 'account_lifetime', 'pacing record'),

	('pairing_code', 'account_id', 'operational', 'account', 'pairing_code', 'key'),
	('pairing_code', 'code_hash', 'secret', 'none', 'pairing_code', 'SHA-256 of the code'),
	('pairing_code', 'created_by', 'personal', 'member', 'pairing_code', 'user id of who made it'),
	('pairing_code', 'created_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'expires_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'used_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'phone_id', 'operational', 'phone', 'pairing_code', 'the phone it paired'),

	('conversation', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('conversation', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('conversation', 'active_minute', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'peer_number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('conversation', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'unread_count', 'operational', 'contact', 'account_lifetime', 'count'),
	('conversation', 'last_message_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'phone_id', 'operational', 'phone', 'account_lifetime', 'the phone it goes through'),
	('conversation', 'archived_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),

	('message', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('message', 'message_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('message', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('message', 'send_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'segments', 'operational', 'contact', 'account_lifetime', 'billing'),
	('message', 'attempts', 'operational', 'contact', 'account_lifetime', 'count'),
	('message', 'phone_id', 'operational', 'phone', 'account_lifetime', 'attribution'),
	('message', 'pending', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'direction', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'status', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'encoding', 'operational', 'contact', 'account_lifetime', 'billing'),
	('message', 'idempotency_key', 'operational', 'none', 'account_lifetime', 'the caller''s key'),
	('message', 'device_message_id', 'operational', 'phone', 'account_lifetime', 'the handset''s id'),
	('message', 'peer_number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('message', 'expires_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'lease_expires_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'claimed_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'sent_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'delivered_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'failed_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'canceled_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'received_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'error', 'operational', 'contact', 'account_lifetime', 'outcome'),
	('message', 'body', 'content', 'contact', 'message_body', 'the text'),
	('message', 'device_id', 'personal', 'phone', 'account_lifetime', 'the handset an inbound message came from'),
	('message', 'campaign_id', 'operational', 'contact', 'account_lifetime', 'the campaign it was sent for'),
	('message', 'window_closes_at', 'operational', 'contact', 'account_lifetime', 'send window'),

	('opt_out', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('opt_out', 'number', 'personal', 'contact', 'account_lifetime', 'the suppressed number: never text it again'),
	('opt_out', 'opted_out_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),

	('consent_event', 'account_id', 'operational', 'account', 'consent_event', 'key'),
	('consent_event', 'event_id', 'operational', 'contact', 'consent_event', 'key'),
	('consent_event', 'number', 'personal', 'contact', 'consent_event', 'the contact''s phone number'),
	('consent_event', 'action', 'operational', 'contact', 'consent_event', 'opt_out or opt_in'),
	('consent_event', 'keyword', 'operational', 'contact', 'consent_event', 'the keyword matched'),
	('consent_event', 'message_id', 'operational', 'contact', 'consent_event', 'the reply'),
	('consent_event', 'at', 'operational', 'contact', 'consent_event', 'timestamp'),
	('consent_event', 'inbound_text', 'content', 'contact', 'consent_event', 'the reply''s text, the proof'),
	('consent_event', 'normalized', 'content', 'contact', 'consent_event', 'the reply as matched'),
	('consent_event', 'rule', 'operational', 'contact', 'consent_event', 'the rule matched'),
	('consent_event', 'confirmation_id', 'operational', 'contact', 'consent_event', 'the confirmation sent'),
	('consent_event', 'changed_by', 'personal', 'member', 'consent_event', 'user id of the member who made the change by hand'),
	('consent_event', 'reason', 'content', 'contact', 'consent_event', 'why a member made the change, as written'),

	('consent_review', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_review', 'review_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('consent_review', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('consent_review', 'number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('consent_review', 'message_id', 'operational', 'contact', 'account_lifetime', 'the reply'),
	('consent_review', 'normalized', 'content', 'contact', 'account_lifetime', 'the reply as matched'),
	('consent_review', 'rule', 'operational', 'contact', 'account_lifetime', 'the rule matched'),
	('consent_review', 'keyword', 'operational', 'contact', 'account_lifetime', 'the keyword matched'),
	('consent_review', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'clarification_id', 'operational', 'contact', 'account_lifetime', 'the question sent'),
	('consent_review', 'clarified_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'resolved_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'resolved_by', 'personal', 'member', 'account_lifetime', 'user id of the reviewer'),
	('consent_review', 'resolution', 'operational', 'contact', 'account_lifetime', 'outcome'),

	('consent_template', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_template', 'kind', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_template', 'template', 'content', 'account', 'account_lifetime', 'the account''s reply text'),
	('consent_template', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('consent_template', 'updated_by', 'personal', 'member', 'account_lifetime', 'user id of the editor'),

	('retention_rule', 'rule_name', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'covers', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'default_keep', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'counted_from', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'reason', 'operational', 'none', 'extension', 'definition'),
	('retention_setting', 'rule_name', 'operational', 'none', 'extension', 'platform setting'),
	('retention_setting', 'keep', 'operational', 'none', 'extension', 'platform setting'),
	('retention_setting', 'set_at', 'operational', 'none', 'extension', 'timestamp'),
	('retention_setting', 'set_by', 'operational', 'none', 'extension', 'database role'),
	('data_column', 'table_name', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'column_name', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'class', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'subject', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'retention', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'reason', 'operational', 'none', 'extension', 'definition'),
	('purge_log', 'purge_id', 'operational', 'none', 'purge_log', 'key'),
	('purge_log', 'rule_name', 'operational', 'none', 'purge_log', 'the rule'),
	('purge_log', 'started_at', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'duration', 'operational', 'none', 'purge_log', 'timing'),
	('purge_log', 'rows_removed', 'operational', 'none', 'purge_log', 'count'),
	('purge_log', 'oldest', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'newest', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'keep', 'operational', 'none', 'purge_log', 'the rule''s keep then'),
	('purge_log', 'run_by', 'operational', 'none', 'purge_log', 'database role'),
	('body_purge', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('body_purge', 'position', 'operational', 'none', 'account_lifetime', 'a message id: how far the purge has got'),
	('body_purge', 'deferred', 'operational', 'none', 'account_lifetime', 'message ids the purge looks at again'),
	('body_purge', 'purged_at', 'operational', 'none', 'account_lifetime', 'timestamp');

-- The lower bound of the time-ordered message ids (src/uuid_v7.c: the
-- first 48 bits are the Unix time in milliseconds) made at or after t:
-- the body purge walks an account's messages older than its retention on
-- the primary key.
CREATE FUNCTION eightms.uuid_v7_floor(t timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT (pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.floor(pg_catalog.date_part('epoch', t) * 1000)::bigint), 12, '0')
			|| '00000000000000000000')::uuid
$$;

-- One account's round of the body purge: the messages it deferred, and
-- the next n after its position older than cutoff, in id order (time
-- order: the ids are UUIDv7); of those, the final ones with a body lose it,
-- locked SKIP LOCKED.  What could not go yet (pending, held by a writer,
-- younger than cutoff) is deferred, at most 1,000 messages: past that the
-- position waits at the thousandth.  examined: the messages after the
-- position looked at (n of them: more may follow).  Every statement names
-- the account: one shard on Citus.
CREATE FUNCTION eightms.erase_bodies(acct uuid, cutoff timestamptz, n integer,
									 OUT rows_removed bigint, OUT oldest timestamptz, OUT newest timestamptz,
									 OUT examined bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pos uuid;
	held uuid[];
	upto uuid;
	hi uuid := eightms.uuid_v7_floor(cutoff);
BEGIN
	rows_removed := 0;
	examined := 0;
	SELECT b.position, b.deferred INTO pos, held FROM eightms.body_purge b WHERE b.account_id = acct;
	IF pos IS NULL THEN
		INSERT INTO eightms.body_purge (account_id) VALUES (acct) ON CONFLICT DO NOTHING;
	ELSIF held = '{}' AND NOT EXISTS (SELECT 1 FROM eightms.message t
										WHERE t.account_id = acct AND t.message_id > pos AND t.message_id < hi) THEN
		RETURN;
	END IF;
	-- One purge at a time in an account: a second waits, then starts
	-- where the first ended.
	SELECT b.position, b.deferred INTO pos, held FROM eightms.body_purge b WHERE b.account_id = acct FOR UPDATE;

	EXECUTE $q$
		WITH c AS MATERIALIZED (
			SELECT t.ctid, t.message_id, t.created_at, t.pending IS NULL AND t.body = '' AS done, false AS ahead
			  FROM eightms.message t WHERE t.account_id = $1 AND t.message_id = ANY ($4)
			UNION ALL
			(SELECT t.ctid, t.message_id, t.created_at, t.pending IS NULL AND t.body = '', true
			   FROM eightms.message t WHERE t.account_id = $1 AND t.message_id > $2 AND t.message_id < $5
			  ORDER BY t.message_id LIMIT $6)),
		v AS MATERIALIZED (
			SELECT t.ctid, t.created_at FROM eightms.message t
			 WHERE t.account_id = $1 AND t.ctid = ANY (ARRAY(SELECT c.ctid FROM c WHERE NOT c.done AND c.created_at < $3))
			   AND t.pending IS NULL AND t.body <> '' AND t.created_at < $3
			   FOR UPDATE OF t SKIP LOCKED),
		g AS (UPDATE eightms.message t SET body = ''
			   WHERE t.account_id = $1 AND t.ctid = ANY (ARRAY(SELECT v.ctid FROM v)) RETURNING 1)
		SELECT (SELECT count(*) FROM g), (SELECT min(v.created_at) FROM v), (SELECT max(v.created_at) FROM v),
			   (SELECT c.message_id FROM c WHERE c.ahead ORDER BY 1 DESC LIMIT 1), (SELECT count(*) FROM c WHERE c.ahead),
			   ARRAY(SELECT c.message_id FROM c WHERE NOT c.done AND c.ctid NOT IN (SELECT v.ctid FROM v)
					  ORDER BY c.message_id LIMIT 1001)
	$q$ INTO rows_removed, oldest, newest, upto, examined, held
		USING acct, pos, cutoff, held, hi, n;
	IF cardinality(held) > 1000 THEN
		upto := held[1000];
		held := held[1:1000];
	END IF;
	UPDATE eightms.body_purge b SET position = coalesce(upto, b.position), deferred = held, purged_at = now()
	 WHERE b.account_id = acct;
END
$$;
COMMENT ON FUNCTION eightms.erase_bodies(uuid, timestamptz, integer) IS
	'One account''s round of the message-body purge: from its position, at most n messages examined';

-- One rule's purge: at most batch_size rows (every row lock it takes is
-- released at the caller's commit, and the table is never locked or
-- rewritten), or with dry_run what would go now (all of it, nothing
-- changed).  The candidates of a rule: its table's rows (ctid, or the key
-- of a reference table; acct, the account of a table distributed by it,
-- with /*acct*/ where its statement adds the account) and the timestamp
-- the rule counts from (ts), older than cutoff ($1), with the rule's keep
-- ($2); taken FOR UPDATE SKIP LOCKED, so rows a writer holds wait for the
-- next run.  The action deletes them, or for the telemetry rule erases
-- the columns and keeps the row; the body rule goes its own way, account
-- by account from where each got to (erase_bodies).  more: the batch was
-- full, there may be more to go.
CREATE FUNCTION eightms.purge_rule(rule text, keep interval, batch_size integer, dry_run boolean,
								   OUT rows_removed bigint, OUT oldest timestamptz, OUT newest timestamptz,
								   OUT more boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl text;
	cand text;
	act text := 'DELETE FROM %s t WHERE %s RETURNING t.*';
	also text := '';
	place text;
	acct uuid;
	n bigint;
	o timestamptz;
	w timestamptz;
	seen bigint := 0;
	cut timestamptz;
BEGIN
	rows_removed := 0;
	more := false;
	CASE rule
	WHEN 'invitation' THEN
		tbl := 'eightms.invitation';
		cand := 'SELECT t.ctid, t.account_id AS acct, least(t.accepted_at, t.revoked_at, t.expires_at) AS ts FROM eightms.invitation t
				  WHERE least(t.accepted_at, t.revoked_at, t.expires_at) < $1 /*acct*/';
	WHEN 'pairing_code' THEN
		tbl := 'eightms.pairing_code';
		cand := 'SELECT t.ctid, t.account_id AS acct, least(t.used_at, t.expires_at) AS ts FROM eightms.pairing_code t
				  WHERE least(t.used_at, t.expires_at) < $1 /*acct*/';
	WHEN 'session' THEN
		tbl := 'eightms.session';
		cand := 'SELECT t.ctid, t.last_seen_at AS ts FROM eightms.session t WHERE t.last_seen_at < $1';
	WHEN 'session_revocation' THEN
		tbl := 'eightms.session_revocation';
		cand := 'SELECT t.session_hash AS k, t.revoked_at AS ts FROM eightms.session_revocation t WHERE t.revoked_at < $1';
	WHEN 'user_revocation' THEN
		tbl := 'eightms.user_revocation';
		cand := 'SELECT t.user_id AS k, t.signed_out_at AS ts FROM eightms.user_revocation t WHERE t.signed_out_at < $1';
	WHEN 'phone_telemetry' THEN
		tbl := 'eightms.phone';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.unpaired_at AS ts FROM eightms.phone t WHERE t.unpaired_at < $1 /*acct*/
				  AND (t.last_heartbeat_at, t.battery_pct, t.charging, t.network, t.gateway_password) IS DISTINCT FROM
					  (NULL::timestamptz, NULL::integer, NULL::boolean, NULL::text, NULL::bytea)';
		act := 'UPDATE %s t SET last_heartbeat_at = NULL, battery_pct = NULL, charging = NULL, network = NULL,
				gateway_password = NULL WHERE %s RETURNING t.*';
	WHEN 'http_request' THEN
		tbl := 'eightms.http_request';
		cand := 'SELECT t.ctid, t.finished_at AS ts FROM eightms.http_request t
				  WHERE t.state IN (''done'', ''dead'') AND t.finished_at < $1';
		also := ', a AS (DELETE FROM eightms.http_attempt x USING g WHERE x.request_id = g.id)';
	WHEN 'cron_history' THEN
		IF to_regclass('cron.job_run_details') IS NULL THEN
			RETURN;
		END IF;
		tbl := 'cron.job_run_details';
		cand := 'SELECT t.ctid, t.end_time AS ts FROM cron.job_run_details t WHERE t.end_time < $1';
	WHEN 'consent_event' THEN
		tbl := 'eightms.consent_event';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.at AS ts FROM eightms.consent_event t WHERE t.at < $1 /*acct*/';
	WHEN 'suspended_account', 'disabled_account' THEN
		tbl := 'eightms.account';
		cand := format('SELECT t.ctid, t.account_id AS acct, t.status_since AS ts FROM eightms.account t WHERE t.status = %L
						 AND t.status_since < $1 /*acct*/', split_part(rule, '_', 1));
		-- An account goes with everything it holds: one at a time.
		batch_size := least(batch_size, 1);
	WHEN 'purge_log' THEN
		tbl := 'eightms.purge_log';
		cand := 'SELECT t.ctid, t.started_at AS ts FROM eightms.purge_log t WHERE t.started_at < $1';
	WHEN 'dsar_request' THEN
		-- An open request is never purged (sql/dsar.sql).
		tbl := 'eightms.dsar_request';
		cand := 'SELECT t.ctid, t.completed_at AS ts FROM eightms.dsar_request t WHERE t.completed_at < $1';
	WHEN 'message_body' THEN
		-- Per account: its own retention, capped by the platform's keep.
		tbl := 'eightms.message';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.created_at AS ts
				   FROM eightms.account a
				   JOIN eightms.message t ON t.account_id = a.account_id
					AND t.message_id < eightms.uuid_v7_floor(now() - least(a.message_retention, $2))
				  WHERE coalesce(a.message_retention, $2) IS NOT NULL
					AND t.created_at < now() - least(a.message_retention, $2)
					AND t.pending IS NULL AND t.body <> ''''';
	ELSE
		-- account_lifetime and extension: nothing goes by age.
		RETURN;
	END CASE;
	IF rule <> 'message_body' AND keep IS NULL THEN
		RETURN;
	END IF;

	IF dry_run THEN
		EXECUTE format('SELECT count(*), min(v.ts), max(v.ts) FROM (%s) v', cand)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
		RETURN;
	END IF;

	IF rule = 'message_body' THEN
		-- Account by account from where each got to (erase_bodies), the
		-- least recently purged first, so that one account's backlog does
		-- not keep the others waiting; batch_size: messages examined.
		FOR acct, cut IN EXECUTE
				'SELECT a.account_id, now() - least(a.message_retention, $1)
				   FROM eightms.account a LEFT JOIN eightms.body_purge b ON b.account_id = a.account_id
				  WHERE coalesce(a.message_retention, $1) IS NOT NULL
				  ORDER BY b.purged_at NULLS FIRST, a.account_id' USING keep LOOP
			SELECT e.rows_removed, e.oldest, e.newest, seen + e.examined INTO n, o, w, seen
			  FROM eightms.erase_bodies(acct, cut, (batch_size - seen)::integer) e;
			rows_removed := rows_removed + n;
			oldest := least(oldest, o);
			newest := greatest(newest, w);
			EXIT WHEN seen >= batch_size;
		END LOOP;
		more := seen >= batch_size;
		RETURN;
	END IF;

	-- Where the table lives on Citus decides how its rows are named (the
	-- same statements on one server): a table distributed by account_id
	-- goes an account at a time, each statement on one account's shard,
	-- where a row's ctid means something; a reference table by key, in key
	-- order, so that every copy removes the same rows; a table of the
	-- coordinator's own, and pg_cron's history, by ctid.
	SELECT p.placement INTO place FROM eightms.distribution_plan() p WHERE p.table_name = tbl::regclass;
	IF place = 'distributed' THEN
		-- The accounts of the first batch_size candidates, then each
		-- account's own, locked there; what remains waits for the next call.
		FOR acct IN EXECUTE format('SELECT DISTINCT v.acct FROM (%s LIMIT %s) v', replace(cand, '/*acct*/', ''), batch_size)
				USING now() - keep, keep LOOP
			IF tbl = 'eightms.account' THEN
				-- An account goes as delete_account removes it, with its
				-- bridge requests and its sessions (eightms.purge_account).
				EXECUTE format('SELECT count(*), min(v.ts), max(v.ts) FROM (%s FOR UPDATE OF t SKIP LOCKED) v',
							   replace(cand, '/*acct*/', 'AND t.account_id = $3'))
					INTO n, o, w USING now() - keep, keep, acct;
				IF n > 0 THEN
					PERFORM eightms.purge_account(acct);
				END IF;
			ELSE
				EXECUTE format('WITH v AS MATERIALIZED (%s LIMIT %s FOR UPDATE OF t SKIP LOCKED), g AS (%s)
								SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
							   replace(cand, '/*acct*/', 'AND t.account_id = $3'), batch_size - rows_removed,
							   format(act, tbl, 't.account_id = $3 AND t.ctid = ANY (ARRAY(SELECT v.ctid FROM v))'))
					INTO n, o, w USING now() - keep, keep, acct;
			END IF;
			rows_removed := rows_removed + n;
			oldest := least(oldest, o);
			newest := greatest(newest, w);
			EXIT WHEN rows_removed >= batch_size;
		END LOOP;
	ELSIF place = 'reference' THEN
		EXECUTE format('WITH v AS MATERIALIZED (%s ORDER BY 1 LIMIT %s), g AS (DELETE FROM %s t WHERE %s IN (SELECT v.k FROM v) RETURNING 1)
						SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
					   cand, batch_size, tbl, CASE tbl WHEN 'eightms.session_revocation' THEN 't.session_hash' ELSE 't.user_id' END)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
	ELSE
		EXECUTE format('WITH v AS MATERIALIZED (%s LIMIT %s FOR UPDATE OF t SKIP LOCKED), g AS (%s)%s
						SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
					   cand, batch_size, format(act, tbl, 't.ctid = ANY (ARRAY(SELECT v.ctid FROM v))'), also)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
	END IF;
	more := rows_removed >= batch_size;
END
$$;
COMMENT ON FUNCTION eightms.purge_rule(text, interval, integer, boolean) IS
	'One retention rule''s purge: at most batch_size rows, or with dry_run a count of all that would go';

-- Every rule (or those named), at most batch_size rows each; with dry_run,
-- what would go now and nothing changed.  Each rule that removed rows
-- writes a purge_log row.  more: the batch was full, call again (as the
-- job, eightms.purge(), does; by hand, loop while any rule says more).
-- SECURITY DEFINER: eightms_dba runs it without any write privilege of its
-- own on the tables.
CREATE FUNCTION eightms.run_purges(dry_run boolean DEFAULT false, batch_size integer DEFAULT 10000,
								   rules text[] DEFAULT NULL)
RETURNS TABLE (rule_name text, keep interval, rows_removed bigint, oldest timestamptz, newest timestamptz,
			   more boolean, duration interval)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	t0 timestamptz;
BEGIN
	IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 1000000 THEN
		RAISE EXCEPTION 'batch_size must be 1 to 1000000' USING ERRCODE = '22023';
	END IF;
	IF dry_run IS NULL THEN
		RAISE EXCEPTION 'dry_run must be true or false' USING ERRCODE = '22023';
	END IF;
	IF EXISTS (SELECT FROM unnest(rules) u(n) WHERE NOT EXISTS (SELECT FROM eightms.retention_rule x WHERE x.rule_name = u.n)) THEN
		RAISE EXCEPTION 'unknown retention rule in rules'
			USING ERRCODE = '22023', HINT = 'SELECT rule_name FROM eightms.retention_rule lists them.';
	END IF;
	FOR r IN SELECT x.rule_name FROM eightms.retention_rule x
			  WHERE rules IS NULL OR x.rule_name = ANY (rules) ORDER BY x.rule_name LOOP
		rule_name := r.rule_name;
		keep := eightms.retention_keep(r.rule_name);
		t0 := clock_timestamp();
		SELECT p.rows_removed, p.oldest, p.newest, p.more INTO rows_removed, oldest, newest, more
		  FROM eightms.purge_rule(r.rule_name, keep, batch_size, dry_run) p;
		duration := clock_timestamp() - t0;
		IF NOT dry_run AND rows_removed > 0 THEN
			INSERT INTO eightms.purge_log (rule_name, started_at, duration, rows_removed, oldest, newest, keep)
			VALUES (r.rule_name, t0, duration, rows_removed, oldest, newest, keep);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION eightms.run_purges(boolean, integer, text[]) IS
	'Run the retention purges (every rule, or those named), at most batch_size rows each, logging each to purge_log; dry_run: report what would go';
GRANT EXECUTE ON FUNCTION eightms.run_purges(boolean, integer, text[]) TO eightms_dba;

-- The retention job: rounds of run_purges(), each committed, for the
-- rules that still have more, until none has or the time budget is spent.
-- After each round it rests rest times as long as the round took: with
-- the default, twice as long, so a backlog is cleared with about a third
-- of a core, and the sends, claims and reports beside it keep their
-- latency (bench/privacy: resting once as long, their p99 doubled).
-- Each round's row locks last that round only.  A procedure, so that it
-- can commit between rounds; therefore neither SECURITY DEFINER nor SET
-- options (PostgreSQL allows no transaction control in such a procedure):
-- it runs as its caller, pg_cron's job owner or the DBA, and does all its
-- work through run_purges(), which is SECURITY DEFINER and pins its path.
-- Call it on its own, not inside a transaction block.
CREATE PROCEDURE eightms.purge(budget interval DEFAULT '4 minutes', batch_size integer DEFAULT 5000,
							   rest double precision DEFAULT 2)
LANGUAGE plpgsql
AS $$
DECLARE
	deadline timestamptz;
	todo text[];
	t0 timestamptz;
BEGIN
	IF budget IS NULL OR budget OPERATOR(pg_catalog.<=) '0'::interval THEN
		RAISE EXCEPTION 'budget must be a positive interval' USING ERRCODE = '22023';
	END IF;
	IF rest IS NULL OR rest OPERATOR(pg_catalog.<) 0 OR rest OPERATOR(pg_catalog.>) 100 THEN
		RAISE EXCEPTION 'rest must be 0 to 100 (times the round''s own duration)' USING ERRCODE = '22023';
	END IF;
	deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) budget;
	LOOP
		t0 := pg_catalog.clock_timestamp();
		SELECT pg_catalog.array_agg(r.rule_name) FILTER (WHERE r.more) INTO todo
		  FROM eightms.run_purges(false, batch_size, todo) r;
		COMMIT;
		EXIT WHEN todo IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
		PERFORM pg_catalog.pg_sleep(rest OPERATOR(pg_catalog.*)
									pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) t0));
	END LOOP;
END
$$;
COMMENT ON PROCEDURE eightms.purge(interval, integer, double precision) IS
	'The retention job: committed rounds of run_purges(batch_size) until nothing is left or budget is spent, resting rest times each round''s duration between rounds';
GRANT EXECUTE ON PROCEDURE eightms.purge(interval, integer, double precision) TO eightms_dba;

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-run-purges', '*/5 * * * *', 'CALL eightms.purge()',
	 'retention: every rule of eightms.retention_rule, in rounds of up to 5,000 rows resting twice as long as each, for at most 4 minutes, logged in eightms.purge_log');

-- The account's message-body retention, set by an owner: bodies older
-- than it are erased (the messages' delivery and billing metadata stay).
-- NULL: the platform's rule.  Never longer than the platform's keep.
CREATE FUNCTION eightms_api.set_message_retention(keep interval) RETURNS interval
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	platform interval := eightms.retention_keep('message_body');
BEGIN
	PERFORM eightms.require_member_role('owner');
	IF keep < interval '1 day' THEN
		RAISE EXCEPTION 'a message retention must be at least 1 day' USING ERRCODE = '22023';
	END IF;
	IF keep > platform THEN
		RAISE EXCEPTION 'a message retention may not be longer than the platform''s (%)', platform
			USING ERRCODE = '22023', HINT = 'Pass a shorter interval, or NULL to follow the platform''s retention.';
	END IF;
	UPDATE eightms.account a SET message_retention = keep, updated_at = now()
	 WHERE a.account_id = eightms.current_account_id();
	RETURN least(keep, platform);
END
$$;
COMMENT ON FUNCTION eightms_api.set_message_retention(interval) IS
	'Owner: erase message bodies this long after each message (at least 1 day, at most the platform''s); NULL: the platform''s rule. Returns the retention in force';
GRANT EXECUTE ON FUNCTION eightms_api.set_message_retention(interval) TO eightms_user;

-- What the DBA reads: the rules with their keep now, and the evidence.
GRANT SELECT ON eightms.retention_rule, eightms.retention_setting, eightms.data_column, eightms.purge_log
	TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.retention_keep(text) TO eightms_dba;
