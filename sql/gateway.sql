-- gateway.sql: paired phones, the outbound queue, delivery reports, inbound
-- SMS, opt-outs and conversations.
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

-- Message ids: time-ordered UUIDs (src/uuid_v7.c), cheaper to make than
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
	charging			boolean,
	network				text
		CONSTRAINT phone_network_check CHECK (network IN ('wifi', '5g', '4g', '3g', '2g', 'none', 'unknown')),
	app_version			text
		CONSTRAINT phone_app_version_check CHECK (length(app_version) <= 50),
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

-- The rule every row version of eightms.message keeps (src/message_state.c).
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
-- A conversation's messages in order: an inbound message at the time the
-- phone received it (received_at, never later than its arrival), an
-- outbound one at its creation.  Its id is unique across accounts, so the
-- account is checked on the row, not carried in every entry.
CREATE INDEX message_conversation_idx ON eightms.message (conversation_id, (coalesce(received_at, created_at)), message_id);
SELECT pg_catalog.pg_extension_config_dump('eightms.message', '');

-- What ON DELETE CASCADE did: a conversation's messages go with it, one
-- statement per delete (an account's deletion removes all its
-- conversations at once).  As the owner, as a cascade is: whoever may
-- delete the conversation may delete its messages.
CREATE FUNCTION eightms.delete_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM eightms.message m USING gone g
	 WHERE m.account_id = g.account_id AND m.conversation_id = g.conversation_id;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eightms.delete_conversation_messages() FROM PUBLIC;
CREATE TRIGGER conversation_delete_messages AFTER DELETE ON eightms.conversation
	REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION eightms.delete_conversation_messages();
-- And TRUNCATE, which a foreign key would have refused without CASCADE.
CREATE FUNCTION eightms.truncate_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	TRUNCATE eightms.message;
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
	PRIMARY KEY (account_id, event_id)
);
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
	eightms.message, eightms.opt_out, eightms.consent_event TO eightms_user;
-- A pairing code mints a device token, and a phone's token_version and
-- unpaired_at decide which device tokens are honoured: only the SECURITY
-- DEFINER functions write them (create_pairing_code, pair_phone,
-- unpair_phone), never an API role's own SQL.  Users change pacing, phones
-- their telemetry and pacing record, and nothing else of a phone.
GRANT SELECT, DELETE ON eightms.phone, eightms.pairing_code TO eightms_user;
GRANT UPDATE (rate_limit, rate_window, rate_unit) ON eightms.phone TO eightms_user;
GRANT SELECT ON eightms.phone TO eightms_phone;
GRANT UPDATE (last_heartbeat_at, battery_pct, charging, network, app_version, gateway_password, recent_claims)
	ON eightms.phone TO eightms_phone;
GRANT DELETE ON eightms.opt_out TO eightms_phone;
GRANT SELECT, INSERT, UPDATE ON eightms.conversation, eightms.message, eightms.opt_out, eightms.consent_event
	TO eightms_phone;

-- An account option: fold typographic look-alikes to GSM-7 before sending,
-- so one curly quote does not turn a message into UCS-2.
ALTER TABLE eightms.account ADD COLUMN fold_lookalikes boolean NOT NULL DEFAULT false;

-- Phones fit to send: online, battery above eightms.min_battery_pct (20) or
-- charging, a network other than none; with their queue length (what waits for them, counted on
-- message_queue_idx), the first thing routing looks at, counted up to
-- count_cap (NULL: all of it).  Routing a new conversation passes
-- eightms.routing_queue_cap (1,000): four phones with a campaign's 100,000
-- queued each took 21.6 ms to count, for every batch (and every single
-- send) to a new number, several times the send itself; capped, 0.35 ms.
-- At Android's default pace a phone sends 1,440 messages in a day, the
-- default message lifetime, so past the cap a queue is full either way,
-- and such phones share new conversations evenly.  Moving an offline
-- phone's queue (rare) counts whole queues, to even them out.
CREATE FUNCTION eightms.healthy_phones(acct uuid, count_cap integer DEFAULT NULL)
RETURNS TABLE (phone_id uuid, queue_length bigint, battery_pct integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	RETURN QUERY
	SELECT p.phone_id,
		   (SELECT count(*) FROM (SELECT FROM eightms.message m
								   WHERE m.account_id = acct AND m.phone_id = p.phone_id AND m.pending
								   LIMIT count_cap) q),
		   p.battery_pct
	  FROM eightms.phone p
	 WHERE p.account_id = acct AND p.unpaired_at IS NULL
	   AND p.last_heartbeat_at > now() - current_setting('eightms.online_window')::interval
	   AND (p.charging OR coalesce(p.battery_pct, 0) > current_setting('eightms.min_battery_pct')::integer)
	   -- A phone that reports no network cannot send what it is given.
	   AND p.network IS DISTINCT FROM 'none';
END
$$;

-- A phone's conversations, locked in number order: the order sends lock
-- conversations in.  Pairing again and unpairing rewrite all of a phone's
-- conversations; in the order the table gives them, doing so during a
-- campaign could hold one conversation a batch is about to send to while
-- the batch holds another, and the deadlock would fail one of them.
CREATE FUNCTION eightms.lock_phone_conversations(acct uuid, phone uuid) RETURNS SETOF uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.conversation_id FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.phone_id = phone
	 ORDER BY c.peer_number
	   FOR NO KEY UPDATE
$$;

-- The healthiest phone to send from: the shortest queue, then the fullest
-- battery.  NULL when none is fit; any phone may then claim.
CREATE FUNCTION eightms.pick_phone(acct uuid) RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT h.phone_id
			  FROM eightms.healthy_phones(acct, current_setting('eightms.routing_queue_cap')::integer) h
			 ORDER BY h.queue_length, h.battery_pct DESC NULLS LAST, h.phone_id
			 LIMIT 1);
END
$$;

-- The calling phone (device token), or an error.
CREATE FUNCTION eightms.current_phone_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(eightms.jwt_claims() ->> 'phone_id', '')::uuid $$;

-- The calling phone, or an error ('this call is for paired phones'): the
-- phone_id claim as current_phone_id() reads it, with an account in the
-- claims too.  In C (src/claims.c), from the claims current_account_id()
-- keeps parsed: every API call of a phone starts with it.
CREATE FUNCTION eightms.require_phone() RETURNS uuid
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'eightms_require_phone';

-- The uuid a text spells, or NULL (src/try_uuid.c).
CREATE FUNCTION eightms.try_uuid(text) RETURNS uuid
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_try_uuid';
GRANT EXECUTE ON FUNCTION eightms.try_uuid(text) TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

-- Whether a batch of reports names each message once, with ids try_uuid
-- reads (src/try_uuid.c): what report_messages asks before its one-pass path.
CREATE FUNCTION eightms.ids_are_distinct(reports jsonb) RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_ids_are_distinct';
COMMENT ON FUNCTION eightms.ids_are_distinct(jsonb) IS
	'True when every element of the array is an object whose "id" try_uuid reads, all different';
GRANT EXECUTE ON FUNCTION eightms.ids_are_distinct(jsonb) TO eightms_phone;

-- The time a phone wrote (a report's "at", an inbound message's
-- "received_at"), or NULL when it cannot be read (src/json_time.c): a JSON
-- number of milliseconds since 1970, or a string timestamptz reads (ISO
-- 8601 without a subtransaction).  Never an error, so that one bad time
-- does not fail, and keep failing, a phone's whole batch.  STABLE: a time
-- without an offset is read in the session's time zone.  Not PARALLEL SAFE:
-- strings other than ISO 8601 are read in a subtransaction.
CREATE FUNCTION eightms.json_time(value jsonb) RETURNS timestamptz
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'eightms_json_time';
COMMENT ON FUNCTION eightms.json_time(jsonb) IS
	'A JSON number of milliseconds since 1970 or a string timestamptz reads, as timestamptz; NULL for anything else';
GRANT EXECUTE ON FUNCTION eightms.json_time(jsonb) TO eightms_phone;

-- ------------------------------------------------------------ pairing

-- SECURITY DEFINER: no API role may insert a pairing code itself; the code
-- is for the current account, after the role check.
CREATE FUNCTION eightms_api.create_pairing_code(valid_for interval DEFAULT '10 minutes')
RETURNS TABLE (code text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c text;
	e timestamptz := now() + least(greatest(valid_for, interval '1 minute'), interval '1 hour');
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	-- 10 characters of an unambiguous alphabet: about 50 bits.
	SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789', 1 + get_byte(b, i) % 31, 1), '')
	  INTO c FROM (SELECT eightms.random_bytes(10) AS b) r, generate_series(0, 9) i;
	INSERT INTO eightms.pairing_code (account_id, code_hash, created_by, expires_at)
	VALUES (eightms.current_account_id(), eightms.token_hash(c), eightms.current_user_id(), e);
	RETURN QUERY SELECT c, e;
END
$$;

-- The phone pairs anonymously with the code; it gets its device JWT.
CREATE FUNCTION eightms_api.pair_phone(code text, device_id text, name text DEFAULT NULL,
									   app_version text DEFAULT NULL)
RETURNS TABLE (phone_id uuid, account_id uuid, token text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pc eightms.pairing_code;
	p eightms.phone;
	prev eightms.phone;
BEGIN
	SELECT * INTO pc FROM eightms.pairing_code c
	 WHERE c.code_hash = eightms.token_hash(upper(btrim(coalesce(pair_phone.code, ''))))
	 FOR UPDATE;
	IF NOT FOUND OR pc.used_at IS NOT NULL OR pc.expires_at < now() THEN
		RAISE EXCEPTION 'pairing code is invalid or has expired'
			USING ERRCODE = '28000', HINT = 'Create a new pairing code in the dashboard.';
	END IF;
	-- Nor phones: a code made before the account was suspended stays
	-- unused, and works again once it is reactivated (if not expired).
	PERFORM eightms.require_active_account(pc.account_id);
	IF device_id IS NULL OR length(device_id) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'device_id must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	IF length(name) > 100 THEN
		RAISE EXCEPTION 'a phone name must be at most 100 characters' USING ERRCODE = '22023';
	END IF;
	IF length(app_version) > 50 THEN
		RAISE EXCEPTION 'app_version must be at most 50 characters' USING ERRCODE = '22023';
	END IF;
	-- Pairing the same device again replaces its earlier pairing (at most
	-- one: the device index is unique among paired phones), whose pacing
	-- it keeps: the owner's setting, and the claims Android still counts.
	UPDATE eightms.phone o SET unpaired_at = now(), token_version = o.token_version + 1
	 WHERE o.account_id = pc.account_id AND o.device_id = pair_phone.device_id AND o.unpaired_at IS NULL
	RETURNING o.* INTO prev;
	INSERT INTO eightms.phone (account_id, device_id, name, app_version)
	VALUES (pc.account_id, pair_phone.device_id, pair_phone.name, pair_phone.app_version)
	RETURNING * INTO p;
	-- It is the same handset: its conversations (so that replies keep
	-- threading on it) and the messages waiting for it or in its hands move
	-- to the new pairing, which may report what the earlier one claimed.
	IF prev.phone_id IS NOT NULL THEN
		UPDATE eightms.phone n SET rate_limit = prev.rate_limit, rate_window = prev.rate_window,
			   rate_unit = prev.rate_unit, recent_claims = prev.recent_claims
		 WHERE n.account_id = p.account_id AND n.phone_id = p.phone_id;
		UPDATE eightms.conversation c SET phone_id = p.phone_id
		  FROM eightms.lock_phone_conversations(pc.account_id, prev.phone_id) l(id)
		 WHERE c.account_id = pc.account_id AND c.conversation_id = l.id;
		UPDATE eightms.message m SET phone_id = p.phone_id
		 WHERE m.account_id = pc.account_id AND m.phone_id = prev.phone_id AND m.pending;
	END IF;
	UPDATE eightms.pairing_code c SET used_at = now(), phone_id = p.phone_id
	 WHERE c.account_id = pc.account_id AND c.code_hash = pc.code_hash;
	RETURN QUERY SELECT p.phone_id, p.account_id,
		eightms.jwt_sign(jsonb_build_object('role', 'eightms_phone', 'account_id', p.account_id,
											'phone_id', p.phone_id, 'tv', p.token_version),
						 interval '365 days');
END
$$;

CREATE FUNCTION eightms_api.heartbeat(battery_pct integer, network text DEFAULT 'unknown',
									  charging boolean DEFAULT NULL, app_version text DEFAULT NULL,
									  gateway_password text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
BEGIN
	IF battery_pct IS NOT NULL AND battery_pct NOT BETWEEN 0 AND 100 THEN
		RAISE EXCEPTION 'battery_pct must be between 0 and 100' USING ERRCODE = '22023';
	END IF;
	IF network IS NOT NULL AND lower(network) NOT IN ('wifi', '5g', '4g', '3g', '2g', 'none', 'unknown') THEN
		RAISE EXCEPTION 'unknown network type "%"', left(network, 20)
			USING ERRCODE = '22023', HINT = 'Use wifi, 5g, 4g, 3g, 2g, none or unknown.';
	END IF;
	IF length(app_version) > 50 THEN
		RAISE EXCEPTION 'app_version must be at most 50 characters' USING ERRCODE = '22023';
	END IF;
	IF length(gateway_password) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'a gateway password must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	UPDATE eightms.phone p SET
		last_heartbeat_at = now(),
		battery_pct = heartbeat.battery_pct,
		network = coalesce(lower(heartbeat.network), 'unknown'),
		charging = heartbeat.charging,
		app_version = coalesce(heartbeat.app_version, p.app_version),
		gateway_password = CASE WHEN heartbeat.gateway_password IS NULL THEN p.gateway_password
			ELSE eightms.seal(heartbeat.gateway_password, 'phone:' || acct || ':' || me || ':gateway_password') END
	 WHERE p.account_id = acct AND p.phone_id = me;
	RETURN now();
END
$$;

-- SECURITY DEFINER: it alone (with pair_phone) revokes device tokens;
-- every statement names the current account.
CREATE FUNCTION eightms_api.unpair_phone(phone_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	UPDATE eightms.phone p SET unpaired_at = now(), token_version = p.token_version + 1
	 WHERE p.account_id = eightms.current_account_id() AND p.phone_id = unpair_phone.phone_id
	   AND p.unpaired_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no paired phone %', unpair_phone.phone_id USING ERRCODE = 'P0002';
	END IF;
	-- Its queued work goes back to the account's other phones.
	UPDATE eightms.message m SET phone_id = NULL
	 WHERE m.account_id = eightms.current_account_id() AND m.phone_id = unpair_phone.phone_id
	   AND m.pending AND m.status = 'queued';
	-- Its conversations lose it too: it will not be back (pairing again
	-- makes a new phone), and a conversation without a phone gets the
	-- healthiest one with its next message, instead of queuing it on this
	-- one for the next claim to move.
	UPDATE eightms.conversation c SET phone_id = NULL
	  FROM eightms.lock_phone_conversations(eightms.current_account_id(), unpair_phone.phone_id) l(id)
	 WHERE c.account_id = eightms.current_account_id() AND c.conversation_id = l.id;
END
$$;

-- Pacing per phone: at most rate_limit messages per rate_window, or none
-- (NULL) for a phone whose Android limit was lifted.
CREATE FUNCTION eightms_api.set_phone_pacing(phone_id uuid, rate_limit integer,
											 rate_window interval DEFAULT '30 minutes',
											 unit text DEFAULT 'messages')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	IF rate_limit NOT BETWEEN 1 AND 10000 OR rate_window IS NULL
	   OR rate_window NOT BETWEEN interval '1 minute' AND interval '1 day' THEN
		RAISE EXCEPTION 'pacing must be 1 to 10000 messages per 1 minute to 1 day'
			USING ERRCODE = '22023',
				  HINT = 'Pass a NULL rate_limit to turn pacing off for a phone whose own limit was lifted.';
	END IF;
	IF unit IS NULL OR unit NOT IN ('messages', 'segments') THEN
		RAISE EXCEPTION 'pacing counts messages or segments' USING ERRCODE = '22023',
			HINT = 'Android counts each part of a long SMS: segments matches its own limit.';
	END IF;
	UPDATE eightms.phone p SET rate_limit = set_phone_pacing.rate_limit, rate_window = set_phone_pacing.rate_window,
		   rate_unit = unit
	 WHERE p.account_id = eightms.current_account_id() AND p.phone_id = set_phone_pacing.phone_id
	   AND p.unpaired_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no paired phone %', set_phone_pacing.phone_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- Phones with their online status (last heartbeat within eightms.online_window).
CREATE VIEW eightms_api.phones WITH (security_invoker = true) AS
	SELECT p.account_id, p.phone_id, p.device_id, p.name, p.paired_at, p.unpaired_at,
		   p.last_heartbeat_at, p.battery_pct, p.charging, p.network, p.app_version,
		   p.rate_limit, p.rate_window, p.rate_unit,
		   (p.unpaired_at IS NULL AND p.last_heartbeat_at > now()
			- coalesce(current_setting('eightms.online_window', true), '5min')::interval) AS online
	  FROM eightms.phone p;
GRANT SELECT ON eightms_api.phones TO eightms_user;

GRANT EXECUTE ON FUNCTION eightms_api.create_pairing_code(interval), eightms_api.unpair_phone(uuid),
	eightms_api.set_phone_pacing(uuid, integer, interval, text) TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.pair_phone(text, text, text, text) TO eightms_anon;
GRANT EXECUTE ON FUNCTION eightms_api.heartbeat(integer, text, boolean, text, text) TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.current_phone_id(), eightms.require_phone()
	TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

-- ------------------------------------------------------------ sending

-- Find or create the conversation with a number.
CREATE FUNCTION eightms.conversation_for(acct uuid, number text, phone uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	c uuid;
BEGIN
	INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id)
	VALUES (acct, number, phone)
	ON CONFLICT (account_id, peer_number) DO UPDATE SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id)
	RETURNING cv.conversation_id INTO c;
	RETURN c;
END
$$;

-- The consent lock.  A send and a change of consent to the same number
-- serialise on the number's conversation row: receive_messages takes it
-- before it records a STOP (or START) and cancels what waits for the
-- number; a send takes it (creating the conversation if need be) before it
-- reads eightms.opt_out, in a statement of its own and so with a snapshot
-- taken after the lock was granted.  Whichever comes second sees the
-- other: a send after a STOP is refused, a STOP after a send cancels what
-- the send queued.  Batches take the locks in number order (those that
-- exist with a phone first), as receive_messages does.  Anything else that
-- queues to a number (campaign fan-out) must do the same: lock its
-- conversations, then ask eightms.opted_out.  What slips past (a number the
-- account put on its opt-out list by hand) is caught by the claim, which
-- never hands out a message queued before its number opted out.
CREATE FUNCTION eightms.opted_out(acct uuid, numbers text[]) RETURNS text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	RETURN ARRAY(SELECT o.number FROM eightms.opt_out o
				  WHERE o.account_id = acct AND o.number = ANY (numbers COLLATE "C"));
END
$$;
COMMENT ON FUNCTION eightms.opted_out(uuid, text[]) IS
	'The numbers of the list that have opted out; ask it only while holding their conversations'' row locks (the consent lock)';

-- Why an outbound body cannot be sent, or NULL: 1 to 1,600 characters of
-- what will be sent, after folding look-alikes when the account does.
CREATE FUNCTION eightms.body_error(body text, folded boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN body IS NULL OR length(body) NOT BETWEEN 1 AND 1600 THEN
		CASE WHEN folded THEN 'a message body must be 1 to 1600 characters once look-alikes are folded'
			 ELSE 'a message body must be 1 to 1600 characters' END END
$$;

-- Why send_at cannot be used, or NULL: a finite time, not so far in the
-- past that the message would expire before it is sent.
CREATE FUNCTION eightms.send_at_error(send_at timestamptz, ttl interval) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN NOT isfinite(send_at) THEN 'send_at must be a date and time, not ' || send_at::text
				WHEN send_at + ttl < now() THEN 'send_at is further in the past than a message lives' END
$$;

-- Queue one outbound message (internal; send_message and send_messages).
CREATE FUNCTION eightms.queue_message(acct uuid, to_number text, body text, phone uuid,
									  idem text, send_at timestamptz)
RETURNS eightms.message
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	e164 text;
	info record;
	m eightms.message;
	conv uuid;
	conv_phone uuid;
	fold boolean;
	ttl interval := current_setting('eightms.message_ttl')::interval;
	err text;
BEGIN
	IF to_number IS NULL OR btrim(to_number) = '' THEN
		RAISE EXCEPTION 'a recipient number is required' USING ERRCODE = '22023',
			HINT = 'Write it with its country code (+44 ...) or as dialled in the account''s default region.';
	END IF;
	IF length(idem) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'an idempotency key must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	err := eightms.send_at_error(send_at, ttl);
	IF err IS NOT NULL THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023',
			HINT = 'Pass a time with its offset (2026-11-29T10:00:00-05:00); a message lives eightms.message_ttl from its send_at.';
	END IF;
	IF idem IS NOT NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		IF FOUND THEN
			RETURN m;
		END IF;
	END IF;
	-- The bounds hold for what will be sent: folding turns an ellipsis into
	-- three characters and drops zero-width spaces.
	fold := body IS NOT NULL AND (SELECT a.fold_lookalikes FROM eightms.account a WHERE a.account_id = acct);
	IF fold THEN
		body := eightms.sms_fold(body);
	END IF;
	err := eightms.body_error(body, fold);
	IF err IS NOT NULL AND fold THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023',
			HINT = 'The account folds typographic look-alikes to GSM-7 (set_message_options): an ellipsis counts three characters, zero-width spaces none.';
	ELSIF err IS NOT NULL THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023';
	END IF;
	-- The account's region, read here with a cached plan (e164 with a NULL
	-- region would look it up again, unplanned, for every message).
	e164 := eightms.e164(to_number, (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct), true);
	IF phone IS NOT NULL AND NOT EXISTS (SELECT FROM eightms.phone p WHERE p.account_id = acct
										 AND p.phone_id = phone AND p.unpaired_at IS NULL) THEN
		RAISE EXCEPTION 'no paired phone %', phone USING ERRCODE = 'P0002';
	END IF;
	-- A conversation keeps its phone, so replies thread on the handset;
	-- a new one (or one without a phone) gets the healthiest phone.
	-- The row is locked (updated) before the message refers to it: with no
	-- foreign key, that is what keeps a concurrent delete_conversation from
	-- leaving this message without its conversation.  It is also the
	-- consent lock (above): the opt-out list is read after it.
	UPDATE eightms.conversation c SET last_message_at = now()
	 WHERE c.account_id = acct AND c.peer_number = e164
	RETURNING c.conversation_id, c.phone_id INTO conv, conv_phone;
	IF conv IS NULL OR conv_phone IS NULL THEN
		conv := eightms.conversation_for(acct, e164, coalesce(phone, eightms.pick_phone(acct)));
		UPDATE eightms.conversation c SET last_message_at = now()
		 WHERE c.account_id = acct AND c.conversation_id = conv
		RETURNING c.phone_id INTO conv_phone;
	END IF;
	IF EXISTS (SELECT FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = e164) THEN
		RAISE EXCEPTION 'the recipient has opted out of messages from this account'
			USING ERRCODE = 'E8O01',
				  HINT = 'The recipient must text START to opt back in; nothing was queued.';
	END IF;
	info := eightms.sms_info(body);
	INSERT INTO eightms.message AS x (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, pending, idempotency_key, send_at, expires_at)
	VALUES (acct, conv, 'out', coalesce(phone, conv_phone), e164, body, info.encoding, info.segments,
			'queued', true, idem, coalesce(send_at, now()),
			coalesce(send_at, now()) + ttl)
	ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING * INTO m;
	IF m.message_id IS NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		RETURN m;
	END IF;
	-- Realtime: ids only, never content or numbers.
	PERFORM pg_notify('eightms_outbound', json_build_object('account_id', acct, 'phone_id', m.phone_id,
															'message_ids', json_build_array(m.message_id))::text);
	RETURN m;
END
$$;

CREATE VIEW eightms_api.messages WITH (security_invoker = true) AS
	SELECT account_id, message_id, conversation_id, direction, phone_id, peer_number, body, encoding,
		   segments, status, idempotency_key, attempts, send_at, expires_at, error, created_at,
		   claimed_at, sent_at, delivered_at, failed_at, canceled_at, received_at
	  FROM eightms.message;
GRANT SELECT ON eightms_api.messages TO eightms_user;

CREATE FUNCTION eightms_api.send_message(to_number text, body text, phone_id uuid DEFAULT NULL,
										 idempotency_key text DEFAULT NULL, send_at timestamptz DEFAULT NULL)
RETURNS eightms_api.messages
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m eightms.message;
	r eightms_api.messages;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	m := eightms.queue_message(eightms.current_account_id(), to_number, body, phone_id, idempotency_key, send_at);
	SELECT * INTO r FROM eightms_api.messages v WHERE v.account_id = m.account_id AND v.message_id = m.message_id;
	RETURN r;
END
$$;

-- Why send_messages cannot take an item x, or NULL: an object whose
-- values are strings (or null), as the API says; a number or an object
-- would otherwise be queued as its JSON text.  SQL without a SET clause,
-- so the planner inlines it.
CREATE FUNCTION eightms.outbound_item_error(x jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN jsonb_typeof(x) IS DISTINCT FROM 'object' THEN 'an item must be a JSON object'
		WHEN jsonb_typeof(x -> 'to') NOT IN ('string', 'null') THEN 'to must be a string: the recipient''s number'
		WHEN jsonb_typeof(x -> 'body') NOT IN ('string', 'null') THEN 'body must be a string'
		WHEN jsonb_typeof(x -> 'idempotency_key') NOT IN ('string', 'null') THEN 'idempotency_key must be a string'
		WHEN jsonb_typeof(x -> 'phone_id') NOT IN ('string', 'null') THEN 'phone_id must be a string: a phone''s id'
		WHEN jsonb_typeof(x -> 'send_at') NOT IN ('string', 'null') THEN 'send_at must be a string: a time with its offset' END
$$;

-- A batch: each item queued or refused on its own, in one transaction.
-- The items that plainly go through (a valid number, not opted out, a fit
-- body, no idempotency key seen before) are queued by one statement; the
-- rest, and the whole batch should that statement fail, go one by one
-- through queue_message, which gives each refusal its own error.  That
-- statement reads the opt-out list before it holds the conversations
-- (the consent lock, above): once it holds them, the list is read again,
-- and should a number have opted out meanwhile the statement is undone
-- and the batch goes one by one.
CREATE FUNCTION eightms_api.send_messages(messages jsonb)
RETURNS TABLE (item integer, message_id uuid, status text, error_code text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	acct uuid;
	region text;
	fold boolean;
	ttl interval := current_setting('eightms.message_ttl')::interval;
	ids uuid[];
	numbers text[];
	want integer;
	got integer;
	x jsonb;
	m eightms.message;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 10000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 10000 items' USING ERRCODE = '22023';
	END IF;
	SELECT a.default_region, a.fold_lookalikes INTO region, fold FROM eightms.account a WHERE a.account_id = acct;
	BEGIN
		WITH items AS (
			SELECT t.ord::integer AS ord, t.x ->> 'to' AS raw_to,
				   CASE WHEN fold THEN eightms.sms_fold(t.x ->> 'body') ELSE t.x ->> 'body' END AS body,
				   (t.x ->> 'phone_id')::uuid AS phone, t.x ->> 'idempotency_key' AS idem,
				   (t.x ->> 'send_at')::timestamptz AS send_at, eightms.outbound_item_error(t.x) AS item_error
			  FROM jsonb_array_elements(messages) WITH ORDINALITY AS t(x, ord)),
		norm AS (
			SELECT items.*, eightms.try_e164(items.raw_to, region, true) COLLATE "C" AS e164,
				   row_number() OVER (PARTITION BY items.idem ORDER BY items.ord) AS idem_rank
			  FROM items),
		fast AS MATERIALIZED (
			SELECT n.ord, n.e164, n.phone, n.idem, n.send_at, eightms.uuid_v7() AS message_id, n.body
			  FROM norm n
			 WHERE n.item_error IS NULL AND n.e164 IS NOT NULL AND length(n.body) BETWEEN 1 AND 1600
			   AND (n.send_at IS NULL OR eightms.send_at_error(n.send_at, ttl) IS NULL)
			   AND NOT EXISTS (SELECT FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = n.e164)
			   AND (n.phone IS NULL
					OR EXISTS (SELECT FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = n.phone
								AND p.unpaired_at IS NULL))
			   AND (n.idem IS NULL
					OR (n.idem_rank = 1 AND length(n.idem) BETWEEN 1 AND 200
						AND NOT EXISTS (SELECT FROM eightms.message o WHERE o.account_id = acct
										 AND o.idempotency_key = n.idem)))),
		-- One row per number, from its first item, in number order (the
		-- lock order every batch shares).
		peers AS (
			SELECT DISTINCT ON (f.e164) f.e164, f.ord, f.phone FROM fast f ORDER BY f.e164, f.ord),
		-- Conversations that exist and have a phone (nearly all) are
		-- updated by one scan of the number index, which takes their locks
		-- in number order: half the work of an upsert, which locks each row
		-- before it updates it.
		conv_old AS (
			UPDATE eightms.conversation cv SET last_message_at = now()
			 WHERE cv.account_id = acct AND cv.peer_number = ANY (ARRAY(SELECT pr.e164 FROM peers pr))
			   AND cv.phone_id IS NOT NULL
			RETURNING cv.conversation_id, cv.peer_number, cv.phone_id),
		-- The other numbers (new conversations, and ones without a phone)
		-- are spread over the healthy phones as pick_phone would, shortest
		-- queue first, unless the item names its phone.
		unrouted AS (
			SELECT pr.e164, row_number() OVER (ORDER BY pr.ord) AS k
			  FROM peers pr
			 WHERE pr.phone IS NULL AND pr.e164 NOT IN (SELECT o.peer_number FROM conv_old o)),
		slots AS (
			SELECT h.phone_id,
				   row_number() OVER (ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id) AS k
			  FROM eightms.healthy_phones(acct, current_setting('eightms.routing_queue_cap')::integer) h,
				   generate_series(1, (SELECT count(*) FROM unrouted)) g
			 -- Counting queues only when some conversation needs a phone.
			 WHERE EXISTS (SELECT FROM unrouted)),
		-- The rest are created (or, created meanwhile or without a phone,
		-- taken over), in number order too.
		conv_new AS (
			INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id, last_message_at)
			SELECT acct, pr.e164, coalesce(pr.phone, s.phone_id), now()
			  FROM peers pr
			  LEFT JOIN unrouted u ON u.e164 = pr.e164
			  LEFT JOIN slots s ON s.k = u.k
			 WHERE pr.e164 NOT IN (SELECT o.peer_number FROM conv_old o)
			 ORDER BY pr.e164
			ON CONFLICT (account_id, peer_number) DO UPDATE
				SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id), last_message_at = EXCLUDED.last_message_at
			RETURNING cv.conversation_id, cv.peer_number, cv.phone_id),
		conv AS (
			SELECT * FROM conv_old UNION ALL SELECT * FROM conv_new),
		ins AS (
			INSERT INTO eightms.message AS x (account_id, message_id, conversation_id, direction, phone_id,
											  peer_number, body, encoding, segments, status, pending, idempotency_key,
											  send_at, expires_at)
			SELECT acct, f.message_id, c.conversation_id, 'out', coalesce(f.phone, c.phone_id), f.e164, f.body,
				   i.encoding, i.segments, 'queued', true, f.idem, coalesce(f.send_at, now()),
				   coalesce(f.send_at, now()) + ttl
			  FROM fast f
			  JOIN conv c ON c.peer_number = f.e164
			 CROSS JOIN LATERAL eightms.sms_info(f.body) i
			 ORDER BY f.ord
			-- No ON CONFLICT: it would make every row a speculative insertion
			-- (a lock and a second WAL record each, about 1% of a lifecycle).
			-- A key another transaction took meanwhile raises unique_violation
			-- instead, and the batch goes one by one below, where that item
			-- gets the message already queued under its key.
			RETURNING x.message_id, x.phone_id),
		-- Realtime: ids only, never content or numbers; one notification
		-- per phone and hundred messages (a payload holds 8000 bytes).
		chunks AS (
			SELECT ins.phone_id, ins.message_id,
				   (row_number() OVER (PARTITION BY ins.phone_id) - 1) / 100 AS chunk
			  FROM ins),
		notified AS (
			SELECT sum(g.n) AS n,
				   count(pg_notify('eightms_outbound',
								   json_build_object('account_id', acct, 'phone_id', g.phone_id,
													 'message_ids', g.ids)::text)) AS notes
			  FROM (SELECT ch.phone_id, json_agg(ch.message_id) AS ids, count(*) AS n
					  FROM chunks ch GROUP BY ch.phone_id, ch.chunk) g)
		SELECT (SELECT count(*) FROM fast), (SELECT coalesce(n, 0) FROM notified),
			   (SELECT array_agg(f.message_id ORDER BY it.ord) FROM items it LEFT JOIN fast f ON f.ord = it.ord),
			   (SELECT array_agg(pr.e164) FROM peers pr)
		  INTO want, got, ids, numbers;
		IF got <> want THEN
			-- Cannot happen (every row of fast is inserted or the statement
			-- fails); should it, the slow path below settles each item.
			RAISE EXCEPTION USING ERRCODE = 'T8R01';
		END IF;
		-- The opt-out list again, now that the conversations are held: a
		-- STOP that committed while this statement waited for one of them.
		IF cardinality(numbers) > 0 AND cardinality(eightms.opted_out(acct, numbers)) > 0 THEN
			RAISE EXCEPTION USING ERRCODE = 'T8R01';
		END IF;
	EXCEPTION WHEN OTHERS THEN
		ids := NULL;
	END;
	IF ids IS NOT NULL AND array_position(ids, NULL) IS NULL THEN
		RETURN QUERY SELECT u.ord::integer, u.id, 'queued'::text, NULL::text, NULL::text
					   FROM unnest(ids) WITH ORDINALITY AS u(id, ord);
		RETURN;
	END IF;
	FOR i IN 1 .. jsonb_array_length(messages) LOOP
		item := i;
		IF ids[i] IS NOT NULL THEN
			message_id := ids[i];
			status := 'queued';
			error_code := NULL;
			error := NULL;
			RETURN NEXT;
			CONTINUE;
		END IF;
		x := messages -> (i - 1);
		BEGIN
			error := eightms.outbound_item_error(x);
			IF error IS NOT NULL THEN
				RAISE EXCEPTION '%', error USING ERRCODE = '22023';
			END IF;
			m := eightms.queue_message(acct, x ->> 'to', x ->> 'body', (x ->> 'phone_id')::uuid,
									   x ->> 'idempotency_key', (x ->> 'send_at')::timestamptz);
			message_id := m.message_id;
			status := m.status;
			error_code := NULL;
			error := NULL;
		EXCEPTION WHEN OTHERS THEN
			message_id := NULL;
			status := 'refused';
			GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, error = MESSAGE_TEXT;
		END;
		RETURN NEXT;
	END LOOP;
END
$$;

-- Cancel queued messages (a scheduled campaign stopped, a batch sent by
-- mistake).  Only what is still queued: a claimed message is in a phone's
-- hands and may be on its way, so it is left to its report, and the answer
-- says so.  Each id is answered: canceled, or the status it has (NULL for
-- no message of this account).
CREATE FUNCTION eightms_api.cancel_messages(message_ids uuid[])
RETURNS TABLE (message_id uuid, canceled boolean, status text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	gone uuid[];
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF message_ids IS NULL OR cardinality(message_ids) > 10000 THEN
		RAISE EXCEPTION 'message_ids must be an array of at most 10000 message ids' USING ERRCODE = '22023',
			HINT = 'Cancel a larger batch in several calls.';
	END IF;
	WITH c AS (
		UPDATE eightms.message m
		   SET status = 'canceled', pending = NULL, canceled_at = now(),
			   error = 'canceled by ' || left(eightms.current_user_id(), 255)
		 WHERE m.account_id = acct AND m.message_id = ANY (message_ids)
		   AND m.direction = 'out' AND m.status = 'queued'
		RETURNING m.message_id)
	SELECT coalesce(array_agg(c.message_id), '{}') INTO gone FROM c;
	-- A statement of its own: what a claim took meanwhile (the update
	-- waited for it and then left it) reads as claimed here.
	RETURN QUERY
	SELECT i.id, i.id = ANY (gone), CASE WHEN i.id = ANY (gone) THEN 'canceled' ELSE m.status END
	  FROM (SELECT DISTINCT ON (u.id) u.id, u.ord FROM unnest(message_ids) WITH ORDINALITY AS u(id, ord)
			 WHERE u.id IS NOT NULL ORDER BY u.id, u.ord) i
	  LEFT JOIN eightms.message m ON m.account_id = acct AND m.message_id = i.id AND m.direction = 'out'
	 ORDER BY i.ord;
END
$$;
COMMENT ON FUNCTION eightms_api.cancel_messages(uuid[]) IS
	'Cancel queued outbound messages; answers each id with canceled and its status (claimed ones are left to the phone)';

-- ------------------------------------------------------------ the phone's loop

-- Whether a phone's queued work moves to other phones: paired and not
-- heard from since the online window began, or unpaired since then (or
-- at all, for the scheduled job).  Inlined.
CREATE FUNCTION eightms.phone_gone(unpaired_at timestamptz, last_heartbeat_at timestamptz, since timestamptz,
								   any_unpaired boolean)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN unpaired_at IS NULL THEN last_heartbeat_at IS NULL OR last_heartbeat_at < since
				ELSE any_unpaired OR unpaired_at > since END
$$;

-- Queued work of phones that went offline moves to the healthiest phone
-- online: run by a claim for its account when one of its phones is gone.  The scheduled job (every
-- minute, no account) also expires messages past their expiry and puts
-- leases that ran out back in the queue (attempts + 1), or fails them
-- after the last attempt.  A claim does both for what it picks: it never
-- hands out an expired message, and a phone takes back its own run-out
-- leases itself.
CREATE FUNCTION eightms.expire_messages(acct uuid DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer;
	k integer;
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	window_start timestamptz := now() - current_setting('eightms.online_window')::interval;
	-- One account (a claim) or all (the scheduled job); an array keeps
	-- both on the account_id indexes.  Set below: as an initializer with
	-- its subquery, it ran as a query in every claim (about 4% of a claim
	-- that finds nothing).
	accts uuid[];
	offline uuid[];
	a uuid;
	moving uuid[];
	targets uuid[];
BEGIN
	n := 0;
	IF acct IS NULL THEN
		accts := ARRAY(SELECT a.account_id FROM eightms.account a);
		UPDATE eightms.message m SET status = 'expired', pending = NULL, lease_expires_at = NULL,
			error = 'not sent before it expired'
		 WHERE m.account_id = ANY (accts) AND m.pending AND m.expires_at < now();
		GET DIAGNOSTICS n = ROW_COUNT;
		UPDATE eightms.message m SET
			status = CASE WHEN m.attempts + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,
			pending = CASE WHEN m.attempts + 1 >= max_attempts THEN NULL ELSE true END,
			failed_at = CASE WHEN m.attempts + 1 >= max_attempts THEN now() END,
			error = CASE WHEN m.attempts + 1 >= max_attempts
						 THEN format('the phone did not report within its lease %s times', m.attempts + 1) END,
			attempts = m.attempts + 1,
			lease_expires_at = NULL
		 WHERE m.account_id = ANY (accts) AND m.pending AND m.status = 'claimed' AND m.lease_expires_at < now();
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	ELSE
		accts := ARRAY[acct];
	END IF;
	-- Found from the phones, so a claim does not walk the account's queue.
	-- Unpairing moves a phone's work away itself (unpair_phone, pair_phone):
	-- a claim looks only at phones unpaired within the online window, for
	-- what a send racing the unpairing queued; the scheduled job at all.
	offline := ARRAY(SELECT p.phone_id FROM eightms.phone p
					  WHERE p.account_id = ANY (accts)
						AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at, window_start, acct IS NULL));
	IF cardinality(offline) > 0 THEN
		-- Spread over the account's healthy phones as send_messages spreads
		-- new conversations: the i-th message (in send order) to the i-th
		-- free slot, shortest queue first, so that the queues even out.
		-- The phones and their queues are read once per account, not once
		-- per message; with no healthy phone a message is left to any
		-- phone (unassigned), as pick_phone would.
		FOR a IN SELECT DISTINCT p.account_id FROM eightms.phone p
				  WHERE p.account_id = ANY (accts) AND p.phone_id = ANY (offline) LOOP
			moving := ARRAY(SELECT m.message_id FROM eightms.message m
							 WHERE m.account_id = a AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued'
							 ORDER BY m.send_at, m.message_id);
			CONTINUE WHEN cardinality(moving) = 0;
			targets := ARRAY(SELECT h.phone_id
							   FROM eightms.healthy_phones(a) h, generate_series(1, cardinality(moving)) g
							  ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id
							  LIMIT cardinality(moving));
			-- Without targets, unnest pads them with NULL: unassigned.
			UPDATE eightms.message m SET phone_id = t.phone
			  FROM unnest(moving, targets) AS t(id, phone)
			 WHERE m.account_id = a AND m.message_id = t.id
			   -- Again on the row as updated: a claim may have taken it meanwhile.
			   AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued';
			GET DIAGNOSTICS k = ROW_COUNT;
			n := n + k;
		END LOOP;
	END IF;
	RETURN n;
END
$$;

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-expire-messages', '* * * * *', 'SELECT eightms.expire_messages()',
	 'requeue messages whose lease ran out, fail them after the last attempt, expire old ones');

CREATE FUNCTION eightms_api.claim_messages(max integer DEFAULT 10)
RETURNS TABLE (message_id uuid, to_number text, body text, encoding text, segments integer,
			   attempt integer, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	lim integer;
	by_segments boolean := false;
	budget integer;
	recent timestamptz[];
	picked uuid[];
	tids tid[];
	fates text[];
	segs integer[];
	convs uuid[];
	keep integer;
	n integer;
	-- Set once there is something to claim.
	max_attempts integer;
	lease interval;
	gone boolean;
	due boolean;
BEGIN
	-- One statement asks what a claim usually finds: whether a phone of the
	-- account is gone, whose work then moves first (expire_messages), and
	-- whether either queue the picks below read has anything due (what
	-- they would find, before they decide each message's fate).  With
	-- nothing due, as for an idle phone's every poll, the claim is over
	-- without the pacing lock and the picks.
	SELECT EXISTS (SELECT FROM eightms.phone p
					WHERE p.account_id = acct
					  AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at,
											 now() - current_setting('eightms.online_window')::interval, false)),
		   EXISTS (SELECT FROM eightms.message m
					WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= now()
					  AND (m.status = 'queued' OR m.lease_expires_at < now()))
		   OR EXISTS (SELECT FROM eightms.message m
					   WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= now())
	  INTO gone, due;
	IF gone THEN
		PERFORM eightms.expire_messages(acct);
	ELSIF NOT due THEN
		RETURN;
	END IF;
	max_attempts := current_setting('eightms.message_max_attempts')::integer;
	lease := current_setting('eightms.message_lease')::interval;
	max := least(greatest(coalesce(max, 10), 0), 100);
	-- Pacing: this phone's claims within its window, kept on its row; the
	-- row lock makes two concurrent claims of one phone count each other.
	-- A phone without a limit (no row here) is neither read twice nor locked.
	SELECT p.rate_limit, p.rate_unit = 'segments',
		   ARRAY(SELECT t FROM unnest(p.recent_claims) t WHERE t > now() - p.rate_window)
	  INTO lim, by_segments, recent
	  FROM eightms.phone p
	 WHERE p.account_id = acct AND p.phone_id = me AND p.rate_limit IS NOT NULL
	   FOR NO KEY UPDATE;
	IF lim IS NOT NULL THEN
		-- One entry in recent per message, or per segment, claimed.
		budget := greatest(lim - cardinality(recent), 0);
		max := least(max, budget);
	END IF;
	IF max = 0 THEN
		RETURN;
	END IF;
	-- This phone's own queue first (with its own claims whose lease ran
	-- out: it takes them back), then messages no phone was chosen for; each
	-- in send_at order straight off message_queue_idx.  What becomes of
	-- each is decided as it is locked: what expired while queued is not
	-- sent; what was queued before its number opted out is canceled (a
	-- STOP cancels what waits for the number itself: this is for a number
	-- the account put on its opt-out list, or a send that did not take the
	-- consent lock; the STOP confirmation, queued with the opt-out, and
	-- help replies after it go out); a lease that ran out on the last
	-- allowed attempt fails the message; the rest is claimed (a run-out
	-- lease as a new attempt).
	-- Each row's ctid is kept so that the update below finds it without
	-- the primary key: the rows are locked, so it cannot move meanwhile.
	SELECT coalesce(array_agg(s.message_id), '{}'), coalesce(array_agg(s.ctid), '{}'), coalesce(array_agg(s.fate), '{}'),
		   coalesce(array_agg(s.segments), '{}')
	  INTO picked, tids, fates, segs
	  FROM (SELECT m.message_id, m.ctid, m.segments,
				   CASE WHEN m.expires_at < now() THEN 'expired'
						WHEN EXISTS (SELECT FROM eightms.opt_out o WHERE o.account_id = acct
									  AND o.number = m.peer_number AND o.opted_out_at > m.created_at)
						THEN 'canceled'
						WHEN m.status = 'claimed' AND m.attempts + 1 >= max_attempts THEN 'failed'
						ELSE 'claimed' END AS fate
			  FROM eightms.message m
			 WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= now()
			   AND (m.status = 'queued' OR m.lease_expires_at < now())
			 ORDER BY m.send_at
			 LIMIT max
			   FOR UPDATE SKIP LOCKED) s;
	IF cardinality(picked) < max THEN
		-- Their conversations are kept (below), after a NULL for each of
		-- this phone's own messages.
		convs := array_fill(NULL::uuid, ARRAY[cardinality(picked)]);
		SELECT picked || coalesce(array_agg(s.message_id), '{}'), tids || coalesce(array_agg(s.ctid), '{}'),
			   fates || coalesce(array_agg(s.fate), '{}'), segs || coalesce(array_agg(s.segments), '{}'),
			   convs || coalesce(array_agg(s.conversation_id), '{}')
		  INTO picked, tids, fates, segs, convs
		  FROM (SELECT m.message_id, m.ctid, m.segments, m.conversation_id,
					   CASE WHEN m.expires_at < now() THEN 'expired'
							WHEN EXISTS (SELECT FROM eightms.opt_out o WHERE o.account_id = acct
										  AND o.number = m.peer_number AND o.opted_out_at > m.created_at)
							THEN 'canceled'
							ELSE 'claimed' END AS fate
				  FROM eightms.message m
				 WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= now()
				 ORDER BY m.send_at
				 LIMIT max - cardinality(picked)
				   FOR UPDATE SKIP LOCKED) s;
	END IF;
	-- Paced by segments: the messages, in order, whose segments fit what is
	-- left of the window (what expires or fails here costs none).  The rest
	-- stay queued; their row locks go with this transaction.
	IF by_segments THEN
		keep := (SELECT count(*)
				   FROM (SELECT sum(CASE WHEN u.f = 'claimed' THEN u.s ELSE 0 END) OVER (ORDER BY u.i) AS used
						   FROM unnest(segs, fates) WITH ORDINALITY AS u(s, f, i)) x
				  WHERE x.used <= budget);
		-- A message longer than the whole limit would never fit: it goes
		-- out alone, in a window with nothing else in it.
		IF keep = 0 AND cardinality(recent) = 0 THEN
			keep := 1;
		END IF;
		picked := picked[1:keep];
		tids := tids[1:keep];
		fates := fates[1:keep];
		segs := segs[1:keep];
		convs := convs[1:keep];
	END IF;
	IF cardinality(picked) = 0 THEN
		RETURN;
	END IF;
	RETURN QUERY
	WITH settled AS (
		UPDATE eightms.message m SET
			status = f.fate,
			pending = CASE WHEN f.fate = 'claimed' THEN true END,
			error = CASE f.fate WHEN 'expired' THEN 'not sent before it expired'
								WHEN 'failed' THEN format('the phone did not report within its lease %s times',
														  m.attempts + 1)
								WHEN 'canceled' THEN 'recipient opted out'
								ELSE m.error END,
			failed_at = CASE WHEN f.fate = 'failed' THEN now() ELSE m.failed_at END,
			canceled_at = CASE WHEN f.fate = 'canceled' THEN now() ELSE m.canceled_at END,
			attempts = CASE WHEN m.status = 'claimed' AND f.fate NOT IN ('expired', 'canceled') THEN m.attempts + 1
							ELSE m.attempts END,
			phone_id = CASE WHEN f.fate = 'claimed' THEN me ELSE m.phone_id END,
			claimed_at = CASE WHEN f.fate = 'claimed' THEN now() ELSE m.claimed_at END,
			lease_expires_at = CASE WHEN f.fate = 'claimed' THEN now() + lease END
		  FROM unnest(picked, tids, fates) AS f(id, tid, fate)
		 WHERE m.ctid = f.tid AND m.account_id = acct AND m.message_id = f.id
		RETURNING m.message_id, m.peer_number, m.body, m.encoding, m.segments, m.attempts + 1 AS attempt,
				  m.lease_expires_at, m.status)
	SELECT c.message_id, c.peer_number, c.body, c.encoding, c.segments, c.attempt, c.lease_expires_at
	  FROM settled c
	 WHERE c.status = 'claimed';
	GET DIAGNOSTICS n = ROW_COUNT;
	-- A conversation whose messages no phone was chosen for (none was
	-- online) gets the phone that sends them, so that its next message and
	-- the replies thread on that handset.  A conversation locked meanwhile
	-- is left: a send or a reply holding it gives it a phone itself, and
	-- waiting for it while this claim holds message rows could deadlock
	-- with a STOP, which takes the conversation first.
	IF convs[cardinality(convs)] IS NOT NULL THEN
		UPDATE eightms.conversation c SET phone_id = me
		  FROM (SELECT c2.ctid FROM eightms.conversation c2
				 WHERE c2.account_id = acct AND c2.phone_id IS NULL
				   AND c2.conversation_id IN (SELECT u.conv FROM unnest(convs, fates) AS u(conv, fate)
											   WHERE u.fate = 'claimed')
				 ORDER BY c2.peer_number
				   FOR NO KEY UPDATE SKIP LOCKED) l
		 WHERE c.ctid = l.ctid AND c.account_id = acct;
	END IF;
	IF lim IS NOT NULL AND n > 0 THEN
		IF by_segments THEN
			n := (SELECT sum(u.s) FROM unnest(segs, fates) AS u(s, f) WHERE u.f = 'claimed');
		END IF;
		UPDATE eightms.phone p SET recent_claims = recent || array_fill(now(), ARRAY[n])
		 WHERE p.account_id = acct AND p.phone_id = me;
	END IF;
END
$$;

-- Status order: a report can only move a message forward.
CREATE FUNCTION eightms.status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- A plain CASE (not STRICT) so that the planner inlines it.
AS $$
	SELECT CASE status WHEN 'queued' THEN 1 WHEN 'claimed' THEN 2 WHEN 'sent' THEN 3 WHEN 'delivered' THEN 4 END
$$;

-- Whether the gateway gave up a message a phone had claimed and had not
-- reported sent: it expired, was canceled (a STOP cancels what is in a
-- phone's hands too) or failed for want of a report within its lease.  The
-- phone may have sent it all the same: its sent or delivered report then
-- wins, as the carrier bills it and the recipient has it.  Inlined.
CREATE FUNCTION eightms.given_up(status text, claimed_at timestamptz, sent_at timestamptz, error text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT claimed_at IS NOT NULL AND sent_at IS NULL
		   AND (status IN ('expired', 'canceled')
				OR (status = 'failed' AND error LIKE 'the phone did not report within its lease %'))
$$;

-- What a message given up keeps as its error once the phone reports it
-- sent: what the gateway had decided, and that it went out regardless.
CREATE FUNCTION eightms.sent_regardless(status text, error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT left(format('sent by the phone after it was %s (%s)', status, coalesce(error, status)), 500)
$$;

-- A batch of reports is folded per message in one statement: the state
-- before each report is what the reports ahead of it in the batch left, so
-- the answer is the same as applying them one by one, and each message is
-- written once however many reports it has.
CREATE FUNCTION eightms_api.report_messages(reports jsonb)
RETURNS TABLE (message_id uuid, status text, accepted boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
BEGIN
	IF jsonb_typeof(reports) IS DISTINCT FROM 'array' OR jsonb_array_length(reports) > 10000 THEN
		RAISE EXCEPTION 'reports must be a JSON array of at most 10000 {id, status, error, at}' USING ERRCODE = '22023';
	END IF;
	-- The usual batch names each message once: then each report is checked
	-- against the row as the update finds it, with no locking pass first.
	IF eightms.ids_are_distinct(reports) THEN
		RETURN QUERY
		WITH rep AS (
			SELECT t.ord, eightms.try_uuid(t.x ->> 'id') AS id, t.x ->> 'status' AS st, t.x ->> 'error' AS err,
				   least(coalesce(eightms.json_time(t.x -> 'at'), now()), now()) AS at
			  FROM jsonb_array_elements(reports) WITH ORDINALITY AS t(x, ord)),
		moved AS (
			UPDATE eightms.message x SET
				status = rep.st,
				pending = NULL,
				lease_expires_at = NULL,
				sent_at = CASE WHEN rep.st IN ('sent', 'delivered') THEN coalesce(x.sent_at, rep.at) ELSE x.sent_at END,
				delivered_at = CASE WHEN rep.st = 'delivered' THEN rep.at ELSE x.delivered_at END,
				failed_at = CASE WHEN rep.st = 'failed' THEN rep.at ELSE x.failed_at END,
				error = CASE WHEN rep.st = 'failed' THEN left(coalesce(rep.err, 'failed on the phone'), 500)
							 WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
							 ELSE x.error END,
				attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
			  FROM rep
			 WHERE x.account_id = acct AND x.message_id = rep.id AND x.direction = 'out' AND x.phone_id = me
			   AND rep.st IN ('sent', 'delivered', 'failed')
			   AND ((x.status NOT IN ('delivered', 'failed', 'expired', 'canceled')
					 AND (rep.st = 'failed' OR eightms.status_rank(rep.st) > eightms.status_rank(x.status)))
					OR (rep.st IN ('sent', 'delivered')
						AND eightms.given_up(x.status, x.claimed_at, x.sent_at, x.error)))
			RETURNING x.message_id),
		-- What did not move: late, repeated, malformed or not this phone's.
		still AS (
			SELECT m.message_id, m.status FROM eightms.message m
			 WHERE m.account_id = acct AND m.direction = 'out' AND m.phone_id = me
			   AND m.message_id IN (SELECT rep.id FROM rep WHERE rep.id NOT IN (SELECT moved.message_id FROM moved)))
		SELECT rep.id, rep.st,
			   (moved.message_id IS NOT NULL OR still.message_id IS NOT NULL)
			   AND coalesce(rep.st IN ('sent', 'delivered', 'failed'), false),
			   CASE WHEN moved.message_id IS NOT NULL THEN NULL
					WHEN still.message_id IS NULL THEN 'no such message for this phone'
					WHEN rep.st IS NULL OR rep.st NOT IN ('sent', 'delivered', 'failed')
					THEN 'status must be sent, delivered or failed'
					ELSE 'already ' || still.status END
		  FROM rep
		  LEFT JOIN moved ON moved.message_id = rep.id
		  LEFT JOIN still ON still.message_id = rep.id
		 ORDER BY rep.ord;
		RETURN;
	END IF;
	RETURN QUERY
	WITH rep AS (
		SELECT t.ord,
			   -- A malformed id names no message.
			   eightms.try_uuid(t.x ->> 'id') AS id,
			   t.x ->> 'status' AS st,
			   t.x ->> 'error' AS err,
			   least(coalesce(eightms.json_time(t.x -> 'at'), now()), now()) AS at
		  FROM jsonb_array_elements(reports) WITH ORDINALITY AS t(x, ord)),
	cur AS (
		SELECT m.message_id, m.status, eightms.given_up(m.status, m.claimed_at, m.sent_at, m.error) AS given_up
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.message_id IN (SELECT rep.id FROM rep)
		   AND m.direction = 'out' AND m.phone_id = me
		 ORDER BY m.message_id
		   FOR NO KEY UPDATE),
	-- What the valid reports ahead of each one in the batch did.
	ahead AS (
		SELECT rep.*, cur.status AS s0, cur.message_id IS NOT NULL AS mine, coalesce(cur.given_up, false) AS given_up,
			   coalesce(bool_or(rep.st = 'sent') OVER w, false) AS sent_ahead,
			   coalesce(bool_or(rep.st = 'delivered') OVER w, false) AS delivered_ahead,
			   (array_agg(rep.st) FILTER (WHERE rep.st IN ('delivered', 'failed')) OVER w)[1] AS final_ahead
		  FROM rep LEFT JOIN cur ON cur.message_id = rep.id
		WINDOW w AS (PARTITION BY rep.id ORDER BY rep.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
	before AS (
		SELECT ahead.*,
			   -- A message given up stays so until a sent or delivered
			   -- report of the phone's takes it back.
			   CASE WHEN s0 IN ('delivered', 'failed', 'expired', 'canceled')
						 AND NOT (given_up AND (sent_ahead OR delivered_ahead)) THEN s0
					WHEN final_ahead IS NOT NULL THEN final_ahead
					WHEN sent_ahead THEN 'sent'
					ELSE s0 END AS was
		  FROM ahead),
	step AS (
		SELECT before.*,
			   mine AND st IN ('sent', 'delivered', 'failed')
			   AND ((was NOT IN ('delivered', 'failed', 'expired', 'canceled')
					 AND (st = 'failed' OR eightms.status_rank(st) > eightms.status_rank(was)))
					OR (given_up AND was = s0 AND st IN ('sent', 'delivered'))) AS moves
		  FROM before),
	final AS (
		SELECT step.id,
			   (array_agg(step.st ORDER BY step.ord DESC))[1] AS st,
			   (array_agg(step.at ORDER BY step.ord) FILTER (WHERE step.st IN ('sent', 'delivered')))[1] AS sent_at,
			   max(step.at) FILTER (WHERE step.st = 'delivered') AS delivered_at,
			   max(step.at) FILTER (WHERE step.st = 'failed') AS failed_at,
			   max(left(coalesce(step.err, 'failed on the phone'), 500)) FILTER (WHERE step.st = 'failed') AS error
		  FROM step
		 WHERE step.moves
		 GROUP BY step.id),
	written AS (
		UPDATE eightms.message x SET
			status = final.st,
			pending = NULL,
			lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, final.sent_at),
			delivered_at = coalesce(final.delivered_at, x.delivered_at),
			failed_at = coalesce(final.failed_at, x.failed_at),
			error = CASE WHEN final.error IS NOT NULL THEN final.error
						 WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		  FROM final
		 WHERE x.account_id = acct AND x.message_id = final.id
		RETURNING 1)
	SELECT step.id, step.st,
		   step.mine AND coalesce(step.st IN ('sent', 'delivered', 'failed'), false),
		   CASE WHEN NOT step.mine THEN 'no such message for this phone'
				WHEN step.st IS NULL OR step.st NOT IN ('sent', 'delivered', 'failed')
				THEN 'status must be sent, delivered or failed'
				WHEN NOT step.moves THEN 'already ' || step.was END
	  FROM step
	 ORDER BY step.ord;
END
$$;

-- ------------------------------------------------------------ inbound

-- A reply the gateway sends on its own (the confirmations and the help
-- reply of sql/consent.sql), on the phone the message came in on; it is
-- queued even to an opted-out number, so its callers decide.  Returns the
-- message's id, which the consent change it confirms keeps.
CREATE FUNCTION eightms.queue_reply(acct uuid, conv uuid, phone uuid, number text, body text)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body,
								 encoding, segments, status, pending, expires_at)
	SELECT acct, conv, 'out', phone, number, body, i.encoding, i.segments, 'queued', true,
		   now() + current_setting('eightms.message_ttl')::interval
	  FROM eightms.sms_info(body) i
	RETURNING message_id
$$;

-- Why receive_messages cannot store an inbound item x (whose
-- device_message_id is given), or NULL: asked of each item, and of a
-- batch's items before their senders' conversations are locked.  SQL
-- without a SET clause, so the planner inlines it: a message costs what
-- the expression did written out in the loop.
CREATE FUNCTION eightms.inbound_error(x jsonb, device_message_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN jsonb_typeof(x) IS DISTINCT FROM 'object' THEN 'not a JSON object'
		WHEN device_message_id IS NULL OR length(device_message_id) NOT BETWEEN 1 AND 200
		THEN 'device_message_id must be 1 to 200 characters'
		WHEN jsonb_typeof(x -> 'from') IS DISTINCT FROM 'string' OR btrim(x ->> 'from') = ''
		THEN 'from must be the sender''s number or name'
		WHEN jsonb_typeof(x -> 'body') NOT IN ('string', 'null') THEN 'body must be a string'
		-- 255 segments of 153 characters: the longest concatenated SMS.
		WHEN length(x ->> 'body') > 39015 THEN 'body must be at most 39015 characters' END
$$;

CREATE FUNCTION eightms_api.receive_messages(messages jsonb)
RETURNS TABLE (device_message_id text, message_id uuid, duplicate boolean, consent text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
-- The conflict target names columns that are also output parameters.
#variable_conflict use_column
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	x jsonb;
	sender text;
	conv uuid;
	mid uuid;
	region text;
	-- Messages are recognised per handset: pairing it again keeps them.
	dev text;
	heard timestamptz;
BEGIN
	-- The account's region and the handset, read together.
	SELECT a.default_region, p.device_id INTO region, dev
	  FROM eightms.account a
	  LEFT JOIN eightms.phone p ON p.account_id = a.account_id AND p.phone_id = me
	 WHERE a.account_id = acct;
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 1000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 1000 {from, body, received_at, device_message_id}'
			USING ERRCODE = '22023', HINT = 'Send a longer backlog in several calls.';
	END IF;
	-- The conversations the batch will write are taken first, in the order
	-- send_messages takes them: those that exist with a phone, locked in
	-- number order, then the rest, created (or locked) in number order.
	-- Taken one by one in the batch's order, a batch from two senders and a
	-- send to both, or another phone's messages from both, could each hold
	-- one and wait for the other, and the deadlock aborts one.  Only the
	-- senders of items the loop will store, so that no conversation is
	-- left empty by an item in error or a message stored before.  The
	-- WHERE writes nothing: every conflicting row is locked all the same,
	-- and the loop counts each message in one write, as for a single one.
	IF jsonb_array_length(messages) > 1 THEN
		INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id)
		SELECT acct, s.peer, me
		  FROM (SELECT DISTINCT coalesce(eightms.try_e164(m ->> 'from', region, false),
										 left(btrim(m ->> 'from'), 32)) COLLATE "C" AS peer
				  FROM jsonb_array_elements(messages) m
				 WHERE eightms.inbound_error(m, m ->> 'device_message_id') IS NULL
				   AND NOT EXISTS (SELECT FROM eightms.message d WHERE d.account_id = acct AND d.device_id = dev
									AND d.device_message_id = m ->> 'device_message_id')) s
		 ORDER BY EXISTS (SELECT FROM eightms.conversation c WHERE c.account_id = acct
						   AND c.peer_number = s.peer AND c.phone_id IS NOT NULL) DESC, s.peer
		ON CONFLICT (account_id, peer_number) DO UPDATE SET phone_id = cv.phone_id WHERE false;
	END IF;
	FOR x IN SELECT * FROM jsonb_array_elements(messages) LOOP
		device_message_id := x ->> 'device_message_id';
		message_id := NULL;
		duplicate := NULL;
		consent := NULL;
		-- An item that can never be stored is answered, not raised: raised,
		-- it would fail the whole batch, and the phone would send the same
		-- batch again and again while the other messages in it wait.
		error := eightms.inbound_error(x, device_message_id);
		IF error IS NOT NULL THEN
			RETURN NEXT;
			CONTINUE;
		END IF;
		SELECT m.message_id INTO mid FROM eightms.message m
		 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = receive_messages.device_message_id;
		IF FOUND THEN
			message_id := mid; duplicate := true;
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- Short codes and alphanumeric senders are kept as given.
		sender := coalesce(eightms.try_e164(x ->> 'from', region, false), left(btrim(x ->> 'from'), 32));
		-- When the phone received it, never later than its arrival: a
		-- message uploaded late takes its place in the inbox, and a phone
		-- whose clock runs ahead cannot pin one on top.
		heard := least(coalesce(eightms.json_time(x -> 'received_at'), now()), now());
		-- The conversation, found or created, counts the message at once: one
		-- write of its row (and its lock, held until commit) rather than an
		-- upsert and then an update.  A new message brings an archived
		-- conversation back to the inbox.
		INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id, unread_count, last_message_at)
		VALUES (acct, sender, me, 1, heard)
		ON CONFLICT (account_id, peer_number) DO UPDATE
			SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id), unread_count = cv.unread_count + 1,
				last_message_at = greatest(cv.last_message_at, EXCLUDED.last_message_at), archived_at = NULL
		RETURNING cv.conversation_id INTO conv;
		INSERT INTO eightms.message AS m (account_id, conversation_id, direction, phone_id, peer_number, body,
										  encoding, segments, status, device_message_id, received_at, device_id)
		SELECT acct, conv, 'in', me, sender, coalesce(x ->> 'body', ''), i.encoding, i.segments, 'received',
			   receive_messages.device_message_id, heard, dev
		  FROM eightms.sms_info(coalesce(x ->> 'body', '')) i
		ON CONFLICT (account_id, device_id, device_message_id) WHERE device_message_id IS NOT NULL DO NOTHING
		RETURNING m.message_id INTO mid;
		IF mid IS NULL THEN
			-- Stored meanwhile by a concurrent call (the check above missed
			-- it): not counted twice.  The conversation row is locked by the
			-- upsert, so nothing came between.
			UPDATE eightms.conversation c SET unread_count = c.unread_count - 1
			 WHERE c.account_id = acct AND c.conversation_id = conv;
			duplicate := true;
			SELECT m.message_id INTO message_id FROM eightms.message m
			 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = receive_messages.device_message_id;
			RETURN NEXT;
			CONTINUE;
		END IF;
		message_id := mid; duplicate := false;

		-- STOP, START, HELP and unclear replies (sql/consent.sql).
		consent := eightms.apply_consent(acct, conv, me, sender, mid, x ->> 'body');
		PERFORM pg_notify('eightms_inbound', json_build_object('account_id', acct, 'message_id', mid)::text);
		RETURN NEXT;
	END LOOP;
END
$$;

-- ------------------------------------------------------------ inbox

CREATE FUNCTION eightms_api.mark_read(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE eightms.conversation c SET unread_count = 0
	 WHERE c.account_id = eightms.require_account() AND c.conversation_id = mark_read.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', mark_read.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

CREATE FUNCTION eightms_api.delete_conversation(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	DELETE FROM eightms.conversation c
	 WHERE c.account_id = eightms.current_account_id() AND c.conversation_id = delete_conversation.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', delete_conversation.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

CREATE FUNCTION eightms_api.archive_conversation(conversation_id uuid, archived boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF archived IS NULL THEN
		RAISE EXCEPTION 'archived must be true or false' USING ERRCODE = '22023',
			HINT = 'Pass false to bring a conversation back to the inbox.';
	END IF;
	UPDATE eightms.conversation c SET archived_at = CASE WHEN archived THEN now() END
	 WHERE c.account_id = eightms.require_account() AND c.conversation_id = archive_conversation.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', archive_conversation.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- The inbox, newest first, a page at a time: pass the last row's
-- (last_message_at, conversation_id) to get the next page (keyset
-- pagination, stable while messages arrive).
CREATE FUNCTION eightms_api.list_conversations(after_at timestamptz DEFAULT NULL, after_id uuid DEFAULT NULL,
											   page_size integer DEFAULT 50, archived boolean DEFAULT false)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid, last_message_at timestamptz,
			   unread_count integer, archived_at timestamptz, last_body text, last_direction text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- The page first, then each row's last message: only the page's rows
	-- look their last message up.
	SELECT c.conversation_id, c.peer_number, c.phone_id, c.last_message_at, c.unread_count, c.archived_at,
		   lm.body, lm.direction
	  FROM (SELECT c.*
			  FROM eightms.conversation c
			 WHERE c.account_id = eightms.require_account()
			   AND (c.archived_at IS NOT NULL) = coalesce(archived, false)
			   AND c.last_message_at IS NOT NULL
			   AND (after_at IS NULL
					OR (c.active_minute <= date_bin('1 minute', after_at, '2000-01-01 00:00:00+00')
						AND (c.last_message_at, c.conversation_id) < (after_at, after_id)))
			 -- The same order as by last_message_at alone: the index gives
			 -- the minutes, and only the rows within a minute are sorted.
			 ORDER BY c.active_minute DESC, c.last_message_at DESC, c.conversation_id DESC
			 LIMIT least(greatest(coalesce(page_size, 50), 1), 200)) c
	  LEFT JOIN LATERAL (SELECT m.body, m.direction FROM eightms.message m
						  WHERE m.account_id = c.account_id AND m.conversation_id = c.conversation_id
						  ORDER BY coalesce(m.received_at, m.created_at) DESC, m.message_id DESC LIMIT 1) lm ON true
	 ORDER BY c.last_message_at DESC, c.conversation_id DESC
$$;

-- A conversation's messages, newest first, a page at a time: an inbound
-- message at its received_at (when the phone received it, never after its
-- arrival), an outbound one at its created_at; pass the last row's time
-- (that one of the two) and id for the next page.
CREATE FUNCTION eightms_api.conversation_messages(conversation_id uuid, after_at timestamptz DEFAULT NULL,
												  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF eightms_api.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT v.* FROM eightms_api.messages v
	 WHERE v.account_id = eightms.require_account() AND v.conversation_id = conversation_messages.conversation_id
	   AND (after_at IS NULL OR (coalesce(v.received_at, v.created_at), v.message_id) < (after_at, after_id))
	 ORDER BY coalesce(v.received_at, v.created_at) DESC, v.message_id DESC
	 LIMIT least(greatest(coalesce(page_size, 50), 1), 200)
$$;

CREATE FUNCTION eightms_api.set_message_options(fold_lookalikes boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	IF fold_lookalikes IS NULL THEN
		RAISE EXCEPTION 'fold_lookalikes must be true or false' USING ERRCODE = '22023';
	END IF;
	UPDATE eightms.account a SET fold_lookalikes = set_message_options.fold_lookalikes
	 WHERE a.account_id = eightms.current_account_id();
END
$$;

CREATE VIEW eightms_api.conversations WITH (security_invoker = true) AS
	SELECT account_id, conversation_id, peer_number, phone_id, last_message_at, unread_count, archived_at, created_at
	  FROM eightms.conversation;
GRANT SELECT ON eightms_api.conversations TO eightms_user;

-- For operators: every queue by account and phone, with the phone's
-- health, so that stuck work shows (messages due but not taken, leases
-- run out, a queue on a phone that is offline or unpaired).  Reads the
-- messages that are pending, through the queue index.
CREATE VIEW eightms.gateway_queue_stats WITH (security_invoker = true) AS
	SELECT m.account_id, m.phone_id, p.device_id,
		   p.last_heartbeat_at > now() - current_setting('eightms.online_window')::interval AS online,
		   CASE WHEN p.phone_id IS NOT NULL THEN p.unpaired_at IS NOT NULL END AS unpaired, p.battery_pct, p.charging,
		   count(*) FILTER (WHERE m.status = 'queued' AND m.send_at <= now()) AS due,
		   count(*) FILTER (WHERE m.status = 'queued' AND m.send_at > now()) AS scheduled,
		   count(*) FILTER (WHERE m.status = 'claimed' AND m.lease_expires_at >= now()) AS claimed,
		   count(*) FILTER (WHERE m.status = 'claimed' AND m.lease_expires_at < now()) AS lease_expired,
		   min(m.send_at) FILTER (WHERE m.status = 'queued' AND m.send_at <= now()) AS oldest_due_at
	  FROM eightms.message m
	  LEFT JOIN eightms.phone p ON p.account_id = m.account_id AND p.phone_id = m.phone_id
	 WHERE m.pending
	 GROUP BY m.account_id, m.phone_id, p.phone_id, p.device_id, p.last_heartbeat_at, p.unpaired_at, p.battery_pct, p.charging;
COMMENT ON VIEW eightms.gateway_queue_stats IS
	'Outbound queues by account and phone (NULL: no phone yet): due, scheduled, claimed, leases run out, oldest due; with the phone''s health';
-- The view runs with the reader's rights; operators read every account's.
GRANT SELECT ON eightms.message, eightms.phone TO eightms_dba;
GRANT SELECT ON eightms.gateway_queue_stats TO eightms_dba;

GRANT EXECUTE ON FUNCTION eightms_api.send_message(text, text, uuid, text, timestamptz),
	eightms_api.send_messages(jsonb), eightms_api.cancel_messages(uuid[]), eightms_api.mark_read(uuid), eightms_api.delete_conversation(uuid),
	eightms_api.archive_conversation(uuid, boolean), eightms_api.set_message_options(boolean),
	eightms_api.list_conversations(timestamptz, uuid, integer, boolean),
	eightms_api.conversation_messages(uuid, timestamptz, uuid, integer)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.claim_messages(integer), eightms_api.report_messages(jsonb),
	eightms_api.receive_messages(jsonb), eightms.inbound_error(jsonb, text)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.conversation_for(uuid, text, uuid),
	eightms.queue_reply(uuid, uuid, uuid, text, text), eightms.pick_phone(uuid), eightms.healthy_phones(uuid, integer),
	eightms.lock_phone_conversations(uuid, uuid),
	eightms.queue_message(uuid, text, text, uuid, text, timestamptz), eightms.expire_messages(uuid),
	eightms.status_rank(text), eightms.opted_out(uuid, text[]), eightms.body_error(text, boolean),
	eightms.send_at_error(timestamptz, interval), eightms.outbound_item_error(jsonb),
	eightms.given_up(text, timestamptz, timestamptz, text), eightms.sent_regardless(text, text),
	eightms.phone_gone(timestamptz, timestamptz, timestamptz, boolean)
TO eightms_user, eightms_phone, eightms_dba;
