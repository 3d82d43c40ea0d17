-- gateway_tables.sql: the gateway's tables (paired phones, pairing codes,
-- conversations, messages, opt-outs and the consent history), with their
-- indexes, policies and grants.  The gateway's functions follow, one file
-- per domain, in the Makefile's order: gateway_routing.sql (which phone
-- sends), gateway_phones.sql (pairing, heartbeat, pacing),
-- gateway_send.sql (the outbound queue), gateway_claim.sql (the phone's
-- loop: claims and reports), gateway_inbound.sql (received SMS),
-- gateway_inbox.sql (conversations, operators' view).
--
-- outbound:  queued --claim--> claimed --> sent --> delivered
--               ^                |  lease runs out      \--> failed
--               \----------------/  (attempts + 1)   queued/claimed --> expired | canceled
-- inbound:   received (exactly once per handset and device message id)
--
-- States only move forward; each keeps its timestamp.  A message is
-- canceled by cancel_messages (while queued), its recipient's STOP, or a
-- claim that finds its number opted out since it was queued.  One move
-- goes back: the phone that held a message reports it sent or delivered
-- after the gateway gave it up (eightms.given_up).
--
-- The functions on the hot path (send, claim, report, receive) run with
-- plan_cache_mode = force_generic_plan: their statements are the same for
-- every account and batch, and planning a batch statement afresh on each
-- call cost more than running it.

-- Message ids: time-ordered UUIDs (src/util/uuid_v7.c), cheaper to make than
-- gen_random_uuid() and appended at the right of the primary key.
CREATE FUNCTION eightms.uuid_v7() RETURNS uuid
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_uuid_v7';
GRANT EXECUTE ON FUNCTION eightms.uuid_v7() TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

CREATE TABLE eightms.phone (
	account_id			uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	phone_id			uuid NOT NULL DEFAULT gen_random_uuid(),
	device_id			text NOT NULL
		CONSTRAINT phone_device_id_check CHECK (length(device_id) BETWEEN 1 AND 200),
	name				text
		CONSTRAINT phone_name_check CHECK (length(name) <= 100),
	token_version		integer NOT NULL DEFAULT 1,
	paired_at			timestamptz NOT NULL DEFAULT now(),
	unpaired_at			timestamptz,
	-- Telemetry, and only what the privacy policy lists.
	last_heartbeat_at	timestamptz,
	battery_pct			integer
		CONSTRAINT phone_battery_check CHECK (battery_pct BETWEEN 0 AND 100),
	-- charging is part of the battery state: routing sends to a phone low
	-- on battery while it charges (healthy_phones).  The app's version is
	-- not kept (issue 21): pair_phone and heartbeat accept and ignore it.
	charging			boolean,
	network				text
		CONSTRAINT phone_network_check CHECK (network IN ('wifi', '5g', '4g', '3g', '2g', 'none', 'unknown')),
	gateway_password	bytea,
	-- Pacing: Android's own default is 30 SMS per 30 minutes; NULL turns
	-- pacing off (a phone whose limit was lifted with adb).
	rate_limit			integer DEFAULT 30
		CONSTRAINT phone_rate_limit_check CHECK (rate_limit BETWEEN 1 AND 10000),
	rate_window			interval NOT NULL DEFAULT '30 minutes'
		CONSTRAINT phone_rate_window_check CHECK (rate_window BETWEEN '1 minute' AND '1 day'),
	-- What rate_limit counts: messages, or SMS segments (Android itself
	-- counts each part of a long message).
	rate_unit			text NOT NULL DEFAULT 'messages'
		CONSTRAINT phone_rate_unit_check CHECK (rate_unit IN ('messages', 'segments')),
	-- When this phone's claims within its window were made, one entry per
	-- message or segment claimed (at most rate_limit of them): pacing reads
	-- one row instead of counting messages.
	recent_claims		timestamptz[] NOT NULL DEFAULT '{}',
	PRIMARY KEY (account_id, phone_id)
);
CREATE UNIQUE INDEX phone_device_idx ON eightms.phone (account_id, device_id) WHERE unpaired_at IS NULL;
COMMENT ON TABLE eightms.phone IS 'Paired Android phones: device id, telemetry (battery, network, heartbeat) and pacing';
SELECT pg_catalog.pg_extension_config_dump('eightms.phone', '');
INSERT INTO eightms.sealed_column VALUES
	('eightms.phone', 'gateway_password', $$'phone:' || account_id || ':' || phone_id || ':gateway_password'$$);

CREATE TABLE eightms.pairing_code (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	code_hash	bytea NOT NULL,
	created_by	text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	used_at		timestamptz,
	phone_id	uuid,
	PRIMARY KEY (account_id, code_hash)
);
-- Pairing finds the code before it knows the account.
CREATE INDEX pairing_code_hash_idx ON eightms.pairing_code (code_hash);
COMMENT ON TABLE eightms.pairing_code IS 'Short-lived single-use pairing codes, stored as SHA-256';
SELECT pg_catalog.pg_extension_config_dump('eightms.pairing_code', '');

CREATE TABLE eightms.conversation (
	-- Indexed columns first, fixed-width ones ahead of the number: every
	-- update compares them between the old and new row version, and
	-- PostgreSQL finds a column in one step only while no NULL or
	-- variable-width column comes before it (bench/README.md).
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	conversation_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	-- The minute of the last message.  The inbox index holds this rather
	-- than last_message_at, so that every message but the first of a
	-- minute updates the conversation without new index entries (a HOT
	-- update); the inbox sorts within a minute (list_conversations).
	active_minute	timestamptz GENERATED ALWAYS AS (date_bin('1 minute', last_message_at, '2000-01-01 00:00:00+00')) STORED,
	-- E.164 numbers (here and in message, opt_out, consent_event) compare
	-- byte by byte: a locale's rules would only make indexes slower.
	peer_number		text COLLATE "C" NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	unread_count	integer NOT NULL DEFAULT 0,
	last_message_at	timestamptz,
	phone_id		uuid,
	archived_at		timestamptz,
	PRIMARY KEY (account_id, conversation_id),
	CONSTRAINT conversation_peer_key UNIQUE (account_id, peer_number)
);
CREATE INDEX conversation_recent_idx ON eightms.conversation (account_id, active_minute DESC);
-- Room on each page for those updates.
ALTER TABLE eightms.conversation SET (fillfactor = 80);
SELECT pg_catalog.pg_extension_config_dump('eightms.conversation', '');

-- The rule every row version of eightms.message keeps (src/gateway/message_state.c).
CREATE FUNCTION eightms.message_state_ok(direction text, status text, pending boolean) RETURNS boolean
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_message_state_ok';
COMMENT ON FUNCTION eightms.message_state_ok(text, text, boolean) IS
	'direction out or in; status one of the eight message states; pending true exactly while queued or claimed, else NULL';
-- Checks run with the writer's rights: every role that writes messages.
GRANT EXECUTE ON FUNCTION eightms.message_state_ok(text, text, boolean) TO eightms_user, eightms_phone, eightms_dba;

-- No foreign keys: a key check is a query per message written, a tenth
-- of a bulk send.  Messages are written only by the functions below, each
-- with the conversation it has just found or created (and locked); deleting
-- a conversation deletes its messages by the trigger after the table, and
-- deleting an account deletes its conversations.
CREATE TABLE eightms.message (
	-- Indexed columns first (NOT NULL and fixed-width ones leading, then
	-- phone_id and pending): each update compares every indexed column of
	-- the old and new row version, and PostgreSQL reaches a column in one
	-- step only while no NULL or variable-width column precedes it; after
	-- a NULL it walks every column before it.  Ordered so, a lifecycle
	-- costs 2.2% fewer instructions (bench/README.md).
	account_id			uuid NOT NULL,
	message_id			uuid NOT NULL DEFAULT eightms.uuid_v7(),
	conversation_id		uuid NOT NULL,
	send_at				timestamptz NOT NULL DEFAULT now(),
	created_at			timestamptz NOT NULL DEFAULT now(),
	segments			integer NOT NULL,
	attempts			integer NOT NULL DEFAULT 0,
	phone_id			uuid,
	-- True while the message waits for or sits on a phone (queued or
	-- claimed), else NULL.  The queue indexes look at this rather than at
	-- status, so that claiming (queued -> claimed) and delivering (sent ->
	-- delivered) change no indexed column: both are HOT updates that add no
	-- index entries.  Each statement that sets status sets this too, and
	-- the check below holds them to each other: a generated column would do
	-- the same, but PostgreSQL copies the whole row to compute one, on every
	-- write (about 5% of a message's lifecycle).
	pending				boolean,
	direction			text NOT NULL,
	status				text NOT NULL,
	encoding			text NOT NULL,
	idempotency_key		text,
	device_message_id	text,
	peer_number			text COLLATE "C" NOT NULL,
	expires_at			timestamptz,
	lease_expires_at	timestamptz,
	claimed_at			timestamptz,
	sent_at				timestamptz,
	delivered_at		timestamptz,
	failed_at			timestamptz,
	canceled_at			timestamptz,
	received_at			timestamptz,
	error				text,
	body				text NOT NULL,
	-- The handset an inbound message came from (the phone's device_id), so
	-- that a handset paired again (a new phone_id) is still recognised when
	-- it uploads a message again; NULL for outbound.  Last because it came
	-- with 0.2.0 (an upgrade appends columns).
	device_id			text,
	-- The campaign an outbound message was queued for (sql/campaigns.sql),
	-- else NULL: reports and receipts find its recipient row by this and
	-- the number.  Not indexed: no report pays for it in index entries.
	campaign_id			uuid,
	-- A campaign message's send window closes here (sql/campaigns.sql):
	-- no claim hands it out from then on, and the campaigns job moves it
	-- to its next window.  NULL for every other message.
	window_closes_at	timestamptz,
	CONSTRAINT message_state_check CHECK (eightms.message_state_ok(direction, status, pending)),
	PRIMARY KEY (account_id, message_id)
);
-- Partial: most messages have neither key, and every row version would
-- otherwise add an entry to both indexes.
CREATE UNIQUE INDEX message_idempotency_key ON eightms.message (account_id, idempotency_key)
	WHERE idempotency_key IS NOT NULL;
-- Inbound exactly once per handset: keyed on the device, not the pairing.
CREATE UNIQUE INDEX message_device_message_key ON eightms.message (account_id, device_id, device_message_id)
	WHERE device_message_id IS NOT NULL;
-- Room on each page for the HOT updates of the messages on it.
ALTER TABLE eightms.message SET (fillfactor = 70);
-- A phone's claim: its due queued messages in order.
-- (claimed messages stay in it until reported: a claim steps over its own
-- phone's messages in flight, at most the claims of one lease).
CREATE INDEX message_queue_idx ON eightms.message (account_id, phone_id, send_at) WHERE pending;
-- What no phone was chosen for (none was online): any phone takes it.
CREATE INDEX message_unassigned_idx ON eightms.message (account_id, send_at) WHERE pending AND phone_id IS NULL;
-- The campaigns job: campaign messages still waiting when their window
-- closed.  Only campaign messages have an entry.
CREATE INDEX message_window_idx ON eightms.message (account_id, window_closes_at)
	WHERE pending AND window_closes_at IS NOT NULL;
-- A conversation's messages in order: an inbound message at the time the
-- phone received it (received_at, never later than its arrival), an
-- outbound one at its creation.  Its id is unique across accounts, so the
-- account is checked on the row, not carried in every entry.
CREATE INDEX message_conversation_idx ON eightms.message (conversation_id, (coalesce(received_at, created_at)), message_id);
SELECT pg_catalog.pg_extension_config_dump('eightms.message', '');

-- What ON DELETE CASCADE did: a conversation's messages go with it, as
-- the owner, as a cascade is (whoever may delete the conversation may
-- delete its messages).  A row trigger, keyed by the account: on Citus it
-- runs on the conversation's shard and deletes from the colocated message
-- shard on the same node (a statement trigger's transition table cannot be
-- read there); on one server it is an index scan of
-- message_conversation_idx per conversation deleted.
CREATE FUNCTION eightms.delete_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM eightms.message m
	 WHERE m.account_id = OLD.account_id AND m.conversation_id = OLD.conversation_id;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eightms.delete_conversation_messages() FROM PUBLIC;
CREATE TRIGGER conversation_delete_messages AFTER DELETE ON eightms.conversation
	FOR EACH ROW EXECUTE FUNCTION eightms.delete_conversation_messages();
-- And TRUNCATE, which a foreign key would have refused without CASCADE.
CREATE FUNCTION eightms.truncate_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- On the conversations only: on Citus the trigger also fires on each
	-- shard, where it would empty every account's messages from each of
	-- them at once, and the shards' truncates deadlock.
	IF TG_RELID = 'eightms.conversation'::regclass THEN
		TRUNCATE eightms.message;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eightms.truncate_conversation_messages() FROM PUBLIC;
CREATE TRIGGER conversation_truncate_messages AFTER TRUNCATE ON eightms.conversation
	FOR EACH STATEMENT EXECUTE FUNCTION eightms.truncate_conversation_messages();

-- Numbers that texted STOP (or were added by the account), honoured before
-- anything is sent; every change of consent is kept.
CREATE TABLE eightms.opt_out (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	number		text COLLATE "C" NOT NULL,
	opted_out_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, number)
);
SELECT pg_catalog.pg_extension_config_dump('eightms.opt_out', '');
CREATE TABLE eightms.consent_event (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	event_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	number		text COLLATE "C" NOT NULL,
	action		text NOT NULL CONSTRAINT consent_event_action_check CHECK (action IN ('opt_out', 'opt_in')),
	keyword		text,
	message_id	uuid,
	at			timestamptz NOT NULL DEFAULT now(),
	-- Each change keeps what proves it (sql/consent.sql): the exact text
	-- received, the form the rules read, the rule that matched, and the
	-- confirmation it queued (when is the column at).  Last, in the order
	-- 0.2.0's upgrade adds them.
	inbound_text text,
	normalized	text,
	rule		text,
	confirmation_id uuid,
	-- A change a member made by hand (sql/contacts.sql): who (the user id)
	-- and why.  Last: 0.2.0's upgrade adds them after the four above.
	changed_by	text,
	reason		text,
	PRIMARY KEY (account_id, event_id)
);
-- One number's history, and its last opt-out (opt_outs, consent_history).
CREATE INDEX consent_event_number_idx ON eightms.consent_event (account_id, number, at);
COMMENT ON COLUMN eightms.consent_event.inbound_text IS 'The inbound SMS that made the change, exactly as received (NULL for a change made by a member)';
COMMENT ON COLUMN eightms.consent_event.normalized IS 'That text as the consent rules read it (eightms.consent_normalize)';
COMMENT ON COLUMN eightms.consent_event.rule IS 'The rule of doc/consent.md that matched (stop.keyword, stop.short, start.keyword, review.member), or member.opt_out / member.opt_in for a change made by hand';
COMMENT ON COLUMN eightms.consent_event.confirmation_id IS 'The confirmation queued for this change (eightms.message), one per change';
COMMENT ON COLUMN eightms.consent_event.changed_by IS 'The user id of the member who made the change by hand (add_opt_out, remove_opt_out), else NULL';
COMMENT ON COLUMN eightms.consent_event.reason IS 'Why a member made the change by hand, as they wrote it';
SELECT pg_catalog.pg_extension_config_dump('eightms.consent_event', '');

ALTER TABLE eightms.phone ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.phone FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.phone
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.pairing_code ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.pairing_code FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.pairing_code
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.conversation ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.conversation FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.conversation
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.message ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.message FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.message
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.opt_out ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.opt_out FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.opt_out
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.consent_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.consent_event FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.consent_event
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON eightms.conversation,
	eightms.message, eightms.opt_out TO eightms_user;
-- A pairing code mints a device token, and a phone's token_version and
-- unpaired_at decide which device tokens are honoured: only the SECURITY
-- DEFINER functions write them (create_pairing_code, pair_phone,
-- unpair_phone), never an API role's own SQL.  Users change pacing, phones
-- their telemetry and pacing record, and nothing else of a phone.
GRANT SELECT, DELETE ON eightms.phone, eightms.pairing_code TO eightms_user;
GRANT UPDATE (rate_limit, rate_window, rate_unit) ON eightms.phone TO eightms_user;
GRANT SELECT ON eightms.phone TO eightms_phone;
GRANT UPDATE (last_heartbeat_at, battery_pct, charging, network, gateway_password, recent_claims)
	ON eightms.phone TO eightms_phone;
GRANT DELETE ON eightms.opt_out TO eightms_phone;
GRANT SELECT, INSERT, UPDATE ON eightms.conversation, eightms.message, eightms.opt_out
	TO eightms_phone;
-- A history that proves something is written by eightms alone: API roles
-- may add to it through the functions of sql/consent.sql, never rewrite or
-- delete it (deleting the account still deletes it).
GRANT SELECT ON eightms.consent_event TO eightms_user;
GRANT SELECT, INSERT ON eightms.consent_event TO eightms_phone;
