-- gateway.sql: paired phones, the outbound queue, delivery reports, inbound
-- SMS, opt-outs and conversations.
--
-- outbound:  queued --claim--> claimed --> sent --> delivered
--               ^                |  lease runs out      \--> failed
--               \----------------/  (attempts + 1)   queued/claimed --> expired | canceled
-- inbound:   received (exactly once per phone and device message id)
--
-- States only move forward; each keeps its timestamp.

CREATE TABLE eightms.phone (
	account_id			uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	phone_id			uuid NOT NULL DEFAULT gen_random_uuid(),
	device_id			text NOT NULL
		CONSTRAINT phone_device_id_check CHECK (length(device_id) BETWEEN 1 AND 200),
	name				text,
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
	-- Pacing: Android's own default is 30 SMS per 30 minutes.
	rate_limit			integer NOT NULL DEFAULT 30
		CONSTRAINT phone_rate_limit_check CHECK (rate_limit BETWEEN 1 AND 100000),
	rate_window			interval NOT NULL DEFAULT '30 minutes',
	PRIMARY KEY (account_id, phone_id)
);
CREATE UNIQUE INDEX phone_device_idx ON eightms.phone (account_id, device_id) WHERE unpaired_at IS NULL;
COMMENT ON TABLE eightms.phone IS 'Paired Android phones: device id, telemetry (battery, network, heartbeat) and pacing';
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

CREATE TABLE eightms.conversation (
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	conversation_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	peer_number		text NOT NULL,
	phone_id		uuid,
	last_message_at	timestamptz,
	unread_count	integer NOT NULL DEFAULT 0,
	archived_at		timestamptz,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, conversation_id),
	CONSTRAINT conversation_peer_key UNIQUE (account_id, peer_number)
);
CREATE INDEX conversation_recent_idx ON eightms.conversation (account_id, last_message_at DESC, conversation_id);

CREATE TABLE eightms.message (
	account_id			uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	message_id			uuid NOT NULL DEFAULT gen_random_uuid(),
	conversation_id		uuid NOT NULL,
	direction			text NOT NULL CONSTRAINT message_direction_check CHECK (direction IN ('out', 'in')),
	phone_id			uuid,
	peer_number			text NOT NULL,
	body				text NOT NULL,
	encoding			text NOT NULL,
	segments			integer NOT NULL,
	status				text NOT NULL
		CONSTRAINT message_status_check CHECK (status IN ('queued', 'claimed', 'sent', 'delivered', 'failed',
														  'expired', 'canceled', 'received')),
	idempotency_key		text,
	device_message_id	text,
	attempts			integer NOT NULL DEFAULT 0,
	lease_expires_at	timestamptz,
	send_at				timestamptz NOT NULL DEFAULT now(),
	expires_at			timestamptz,
	error				text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	claimed_at			timestamptz,
	sent_at				timestamptz,
	delivered_at		timestamptz,
	failed_at			timestamptz,
	received_at			timestamptz,
	PRIMARY KEY (account_id, message_id),
	FOREIGN KEY (account_id, conversation_id) REFERENCES eightms.conversation (account_id, conversation_id) ON DELETE CASCADE,
	CONSTRAINT message_idempotency_key UNIQUE (account_id, idempotency_key),
	CONSTRAINT message_device_message_key UNIQUE (account_id, phone_id, device_message_id)
);
-- A phone's claim: its due queued messages in order.
CREATE INDEX message_queue_idx ON eightms.message (account_id, phone_id, send_at) WHERE status = 'queued';
-- Lease expiry and message expiry, which every claim checks.
CREATE INDEX message_claimed_idx ON eightms.message (account_id, lease_expires_at) WHERE status = 'claimed';
CREATE INDEX message_pending_expiry_idx ON eightms.message (account_id, expires_at) WHERE status IN ('queued', 'claimed');
CREATE INDEX message_conversation_idx ON eightms.message (account_id, conversation_id, created_at, message_id);

-- Numbers that texted STOP (or were added by the account), honoured before
-- anything is sent; every change of consent is kept.
CREATE TABLE eightms.opt_out (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	number		text NOT NULL,
	opted_out_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, number)
);
CREATE TABLE eightms.consent_event (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	event_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	number		text NOT NULL,
	action		text NOT NULL CONSTRAINT consent_event_action_check CHECK (action IN ('opt_out', 'opt_in')),
	keyword		text,
	message_id	uuid,
	at			timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, event_id)
);

DO $rls$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['phone', 'pairing_code', 'conversation', 'message', 'opt_out', 'consent_event'] LOOP
		EXECUTE format('ALTER TABLE eightms.%I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format('ALTER TABLE eightms.%I FORCE ROW LEVEL SECURITY', t);
		EXECUTE format('CREATE POLICY tenant_isolation ON eightms.%I USING (account_id = eightms.current_account_id()) WITH CHECK (account_id = eightms.current_account_id())', t);
	END LOOP;
END
$rls$;

GRANT SELECT, INSERT, UPDATE, DELETE ON eightms.phone, eightms.pairing_code, eightms.conversation,
	eightms.message, eightms.opt_out, eightms.consent_event TO eightms_user;
GRANT SELECT, UPDATE ON eightms.phone TO eightms_phone;
GRANT DELETE ON eightms.opt_out TO eightms_phone;
GRANT SELECT, INSERT, UPDATE ON eightms.conversation, eightms.message, eightms.opt_out, eightms.consent_event
	TO eightms_phone;

-- An account option: fold typographic look-alikes to GSM-7 before sending,
-- so one curly quote does not turn a message into UCS-2.
ALTER TABLE eightms.account ADD COLUMN fold_lookalikes boolean NOT NULL DEFAULT false;
GRANT UPDATE (fold_lookalikes) ON eightms.account TO eightms_user;

-- The healthiest phone to send from: online, battery above 20% or charging,
-- the shortest queue.  NULL when none is; any phone may then claim.
CREATE FUNCTION eightms.pick_phone(acct uuid) RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT p.phone_id FROM eightms.phone p
	 WHERE p.account_id = acct AND p.unpaired_at IS NULL
	   AND p.last_heartbeat_at > now() - current_setting('eightms.online_window')::interval
	   AND (p.charging OR coalesce(p.battery_pct, 0) > 20)
	 ORDER BY (SELECT count(*) FROM eightms.message m
				WHERE m.account_id = acct AND m.phone_id = p.phone_id AND m.status IN ('queued', 'claimed')),
			  p.battery_pct DESC NULLS LAST, p.phone_id
	 LIMIT 1
$$;

-- The calling phone (device token), or an error.
CREATE FUNCTION eightms.current_phone_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(eightms.jwt_claims() ->> 'phone_id', '')::uuid $$;

CREATE FUNCTION eightms.require_phone() RETURNS uuid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p uuid := eightms.current_phone_id();
BEGIN
	IF p IS NULL OR eightms.current_account_id() IS NULL THEN
		RAISE EXCEPTION 'this call is for paired phones' USING ERRCODE = '42501',
			HINT = 'Call it with the device token pair_phone returned.';
	END IF;
	RETURN p;
END
$$;

-- ------------------------------------------------------------ pairing

CREATE FUNCTION eightms_api.create_pairing_code(valid_for interval DEFAULT '10 minutes')
RETURNS TABLE (code text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
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
BEGIN
	SELECT * INTO pc FROM eightms.pairing_code c
	 WHERE c.code_hash = eightms.token_hash(upper(btrim(coalesce(pair_phone.code, ''))))
	 FOR UPDATE;
	IF NOT FOUND OR pc.used_at IS NOT NULL OR pc.expires_at < now() THEN
		RAISE EXCEPTION 'pairing code is invalid or has expired'
			USING ERRCODE = '28000', HINT = 'Create a new pairing code in the dashboard.';
	END IF;
	IF device_id IS NULL OR length(device_id) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'device_id must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	-- Pairing the same device again replaces its earlier pairing.
	UPDATE eightms.phone o SET unpaired_at = now(), token_version = o.token_version + 1
	 WHERE o.account_id = pc.account_id AND o.device_id = pair_phone.device_id AND o.unpaired_at IS NULL;
	INSERT INTO eightms.phone (account_id, device_id, name, app_version)
	VALUES (pc.account_id, pair_phone.device_id, pair_phone.name, pair_phone.app_version)
	RETURNING * INTO p;
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

CREATE FUNCTION eightms_api.unpair_phone(phone_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
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
	   AND m.status = 'queued';
END
$$;

-- Phones with their online status (last heartbeat within eightms.online_window).
CREATE VIEW eightms_api.phones WITH (security_invoker = true) AS
	SELECT p.account_id, p.phone_id, p.device_id, p.name, p.paired_at, p.unpaired_at,
		   p.last_heartbeat_at, p.battery_pct, p.charging, p.network, p.app_version,
		   p.rate_limit, p.rate_window,
		   (p.unpaired_at IS NULL AND p.last_heartbeat_at > now()
			- coalesce(current_setting('eightms.online_window', true), '5min')::interval) AS online
	  FROM eightms.phone p;
GRANT SELECT ON eightms_api.phones TO eightms_user;

GRANT EXECUTE ON FUNCTION eightms_api.create_pairing_code(interval), eightms_api.unpair_phone(uuid) TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.pair_phone(text, text, text, text) TO eightms_anon;
GRANT EXECUTE ON FUNCTION eightms_api.heartbeat(integer, text, boolean, text, text) TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.current_phone_id(), eightms.require_phone()
	TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

-- ------------------------------------------------------------ sending

-- Opt-out keywords (US CTIA norms): the whole message, any case.
CREATE FUNCTION eightms.consent_keyword(body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN k IN ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE', 'OPTOUT', 'OPT OUT') THEN 'stop'
		WHEN k IN ('START', 'UNSTOP', 'YES') THEN 'start'
		WHEN k IN ('HELP', 'INFO') THEN 'help'
	END
	  FROM (SELECT upper(regexp_replace(btrim(body, E' \t\r\n.!'), '\s+', ' ', 'g')) AS k) s
$$;

-- Find or create the conversation with a number.
CREATE FUNCTION eightms.conversation_for(acct uuid, number text, phone uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
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

-- Queue one outbound message (internal; send_message and send_messages).
CREATE FUNCTION eightms.queue_message(acct uuid, to_number text, body text, phone uuid,
									  idem text, send_at timestamptz)
RETURNS eightms.message
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e164 text;
	info record;
	m eightms.message;
	conv uuid;
	conv_phone uuid;
	fold boolean;
BEGIN
	IF idem IS NOT NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		IF FOUND THEN
			RETURN m;
		END IF;
	END IF;
	IF body IS NULL OR length(body) = 0 OR length(body) > 1600 THEN
		RAISE EXCEPTION 'a message body must be 1 to 1600 characters' USING ERRCODE = '22023';
	END IF;
	-- The account's region, read here with a cached plan (e164 with a NULL
	-- region would look it up again, unplanned, for every message).
	e164 := eightms.e164(to_number, (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct), true);
	IF EXISTS (SELECT FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = e164) THEN
		RAISE EXCEPTION '% has opted out of messages from this account', e164
			USING ERRCODE = 'E8O01',
				  HINT = 'The recipient must text START to opt back in; nothing was queued.';
	END IF;
	IF phone IS NOT NULL AND NOT EXISTS (SELECT FROM eightms.phone p WHERE p.account_id = acct
										 AND p.phone_id = phone AND p.unpaired_at IS NULL) THEN
		RAISE EXCEPTION 'no paired phone %', phone USING ERRCODE = 'P0002';
	END IF;
	IF (SELECT a.fold_lookalikes FROM eightms.account a WHERE a.account_id = acct) THEN
		body := eightms.sms_fold(body);
	END IF;
	-- A conversation keeps its phone, so replies thread on the handset;
	-- a new one gets the healthiest phone.
	conv := eightms.conversation_for(acct, e164, coalesce(phone, eightms.pick_phone(acct)));
	SELECT c.phone_id INTO conv_phone FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.conversation_id = conv;
	info := eightms.sms_info(body);
	INSERT INTO eightms.message AS x (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, idempotency_key, send_at, expires_at)
	VALUES (acct, conv, 'out', coalesce(phone, conv_phone), e164, body, info.encoding, info.segments,
			'queued', idem, coalesce(send_at, now()),
			coalesce(send_at, now()) + current_setting('eightms.message_ttl')::interval)
	ON CONFLICT (account_id, idempotency_key) DO NOTHING
	RETURNING * INTO m;
	IF m.message_id IS NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		RETURN m;
	END IF;
	UPDATE eightms.conversation c SET last_message_at = now()
	 WHERE c.account_id = acct AND c.conversation_id = conv;
	-- Realtime: ids only, never content or numbers.
	PERFORM pg_notify('eightms_outbound', json_build_object('account_id', acct, 'message_id', m.message_id,
															'phone_id', m.phone_id)::text);
	RETURN m;
END
$$;

CREATE VIEW eightms_api.messages WITH (security_invoker = true) AS
	SELECT account_id, message_id, conversation_id, direction, phone_id, peer_number, body, encoding,
		   segments, status, idempotency_key, attempts, send_at, expires_at, error, created_at,
		   claimed_at, sent_at, delivered_at, failed_at, received_at
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

-- A batch: each item queued or refused on its own, in one transaction.
CREATE FUNCTION eightms_api.send_messages(messages jsonb)
RETURNS TABLE (item integer, message_id uuid, status text, error_code text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	x jsonb;
	i integer := 0;
	m eightms.message;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 10000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 10000 items' USING ERRCODE = '22023';
	END IF;
	FOR x IN SELECT * FROM jsonb_array_elements(messages) LOOP
		i := i + 1;
		item := i;
		BEGIN
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

-- ------------------------------------------------------------ the phone's loop

-- Leases that ran out go back to the queue (attempts + 1) or fail; messages
-- past their expiry expire.  Run by pg_cron, and by each claim for its account.
CREATE FUNCTION eightms.expire_messages(acct uuid DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
	k integer;
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	window_start timestamptz := now() - current_setting('eightms.online_window')::interval;
	-- One account (a claim) or all (the scheduled job); an array keeps
	-- both on the account_id indexes.
	accts uuid[] := CASE WHEN acct IS NULL THEN ARRAY(SELECT a.account_id FROM eightms.account a)
						 ELSE ARRAY[acct] END;
BEGIN
	UPDATE eightms.message m SET status = 'expired', lease_expires_at = NULL, error = 'not sent before it expired'
	 WHERE m.account_id = ANY (accts) AND m.status IN ('queued', 'claimed') AND m.expires_at < now();
	GET DIAGNOSTICS n = ROW_COUNT;
	UPDATE eightms.message m SET
		status = CASE WHEN m.attempts + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,
		failed_at = CASE WHEN m.attempts + 1 >= max_attempts THEN now() END,
		error = CASE WHEN m.attempts + 1 >= max_attempts
					 THEN format('the phone did not report within its lease %s times', m.attempts + 1) END,
		attempts = m.attempts + 1,
		lease_expires_at = NULL
	 WHERE m.account_id = ANY (accts) AND m.status = 'claimed' AND m.lease_expires_at < now();
	GET DIAGNOSTICS k = ROW_COUNT;
	n := n + k;
	-- Queued work of phones that went offline goes to the healthiest phone
	-- online (or to whichever phone claims first when none is).
	UPDATE eightms.message m SET phone_id = eightms.pick_phone(m.account_id)
	  FROM eightms.phone p
	 WHERE p.account_id = ANY (accts)
	   AND (p.unpaired_at IS NOT NULL OR p.last_heartbeat_at IS NULL OR p.last_heartbeat_at < window_start)
	   AND m.account_id = p.account_id AND m.phone_id = p.phone_id AND m.status = 'queued';
	GET DIAGNOSTICS k = ROW_COUNT;
	RETURN n + k;
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
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	lim integer;
	win interval;
	recent integer;
	lease interval := current_setting('eightms.message_lease')::interval;
BEGIN
	PERFORM eightms.expire_messages(acct);
	SELECT p.rate_limit, p.rate_window INTO lim, win FROM eightms.phone p
	 WHERE p.account_id = acct AND p.phone_id = me;
	-- Pacing: what this phone claimed within its window counts.
	SELECT count(*) INTO recent FROM eightms.message m
	 WHERE m.account_id = acct AND m.phone_id = me AND m.claimed_at > now() - win;
	max := least(greatest(coalesce(max, 10), 0), 100, greatest(lim - recent, 0));
	IF max = 0 THEN
		RETURN;
	END IF;
	RETURN QUERY
	WITH picked AS (
		SELECT m.account_id, m.message_id FROM eightms.message m
		 WHERE m.account_id = acct AND m.status = 'queued' AND m.send_at <= now()
		   AND (m.phone_id = me OR m.phone_id IS NULL)
		 ORDER BY m.send_at, m.created_at
		 LIMIT max
		 FOR UPDATE SKIP LOCKED)
	UPDATE eightms.message m SET status = 'claimed', phone_id = me, claimed_at = now(),
		lease_expires_at = now() + lease
	  FROM picked
	 WHERE m.account_id = picked.account_id AND m.message_id = picked.message_id
	RETURNING m.message_id, m.peer_number, m.body, m.encoding, m.segments, m.attempts + 1, m.lease_expires_at;
END
$$;

-- Status order: a report can only move a message forward.
CREATE FUNCTION eightms.status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT array_position(ARRAY['queued', 'claimed', 'sent', 'delivered'], status) $$;

CREATE FUNCTION eightms_api.report_messages(reports jsonb)
RETURNS TABLE (message_id uuid, status text, accepted boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	r jsonb;
	m eightms.message;
	new_status text;
	at_time timestamptz;
BEGIN
	IF jsonb_typeof(reports) IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'reports must be a JSON array of {id, status, error, at}' USING ERRCODE = '22023';
	END IF;
	FOR r IN SELECT * FROM jsonb_array_elements(reports) LOOP
		message_id := NULL;
		BEGIN
			message_id := (r ->> 'id')::uuid;
		EXCEPTION WHEN invalid_text_representation THEN
			message_id := NULL;
		END;
		new_status := r ->> 'status';
		status := new_status;
		at_time := least(coalesce((r ->> 'at')::timestamptz, now()), now());
		SELECT * INTO m FROM eightms.message x
		 WHERE x.account_id = acct AND x.message_id = report_messages.message_id AND x.direction = 'out'
		 FOR UPDATE;
		IF NOT FOUND OR m.phone_id IS DISTINCT FROM me THEN
			-- Another phone's or account's message looks like no message at all.
			accepted := false; note := 'no such message for this phone';
		ELSIF new_status NOT IN ('sent', 'delivered', 'failed') THEN
			accepted := false; note := 'status must be sent, delivered or failed';
		ELSIF m.status IN ('failed', 'expired', 'canceled')
			  OR (new_status <> 'failed' AND eightms.status_rank(new_status) <= coalesce(eightms.status_rank(m.status), 0))
			  OR (new_status = 'failed' AND m.status = 'delivered') THEN
			-- Late or repeated: accepted without harm, nothing moves back.
			accepted := true; note := 'already ' || m.status;
		ELSE
			UPDATE eightms.message x SET
				status = new_status,
				lease_expires_at = NULL,
				sent_at = CASE WHEN new_status IN ('sent', 'delivered') THEN coalesce(x.sent_at, at_time) ELSE x.sent_at END,
				delivered_at = CASE WHEN new_status = 'delivered' THEN at_time ELSE x.delivered_at END,
				failed_at = CASE WHEN new_status = 'failed' THEN at_time ELSE x.failed_at END,
				error = CASE WHEN new_status = 'failed' THEN left(coalesce(r ->> 'error', 'failed on the phone'), 500) ELSE x.error END,
				attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
			 WHERE x.account_id = acct AND x.message_id = m.message_id;
			accepted := true; note := NULL;
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;

-- ------------------------------------------------------------ inbound

-- A reply the gateway sends on its own (opt-out confirmation, help), on the
-- phone the message came in on; it is queued even to an opted-out number.
CREATE FUNCTION eightms.queue_reply(acct uuid, conv uuid, phone uuid, number text, body text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body,
								 encoding, segments, status, expires_at)
	SELECT acct, conv, 'out', phone, number, body, i.encoding, i.segments, 'queued',
		   now() + current_setting('eightms.message_ttl')::interval
	  FROM eightms.sms_info(body) i
$$;

CREATE FUNCTION eightms_api.receive_messages(messages jsonb)
RETURNS TABLE (device_message_id text, message_id uuid, duplicate boolean, consent text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	x jsonb;
	sender text;
	conv uuid;
	kw text;
	mid uuid;
	reply text;
	region text := (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct);
BEGIN
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'messages must be a JSON array of {from, body, received_at, device_message_id}'
			USING ERRCODE = '22023';
	END IF;
	FOR x IN SELECT * FROM jsonb_array_elements(messages) LOOP
		device_message_id := x ->> 'device_message_id';
		consent := NULL;
		IF device_message_id IS NULL OR length(device_message_id) NOT BETWEEN 1 AND 200 THEN
			RAISE EXCEPTION 'every inbound message needs a device_message_id' USING ERRCODE = '22023';
		END IF;
		SELECT m.message_id INTO mid FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = me AND m.device_message_id = receive_messages.device_message_id;
		IF FOUND THEN
			message_id := mid; duplicate := true;
			RETURN NEXT;
			CONTINUE;
		END IF;
		-- Short codes and alphanumeric senders are kept as given.
		sender := coalesce(eightms.try_e164(x ->> 'from', region, false), left(btrim(x ->> 'from'), 32));
		conv := eightms.conversation_for(acct, sender, me);
		INSERT INTO eightms.message AS m (account_id, conversation_id, direction, phone_id, peer_number, body,
										  encoding, segments, status, device_message_id, received_at)
		SELECT acct, conv, 'in', me, sender, coalesce(x ->> 'body', ''), i.encoding, i.segments, 'received',
			   receive_messages.device_message_id,
			   least(coalesce((x ->> 'received_at')::timestamptz, now()), now())
		  FROM eightms.sms_info(coalesce(x ->> 'body', '')) i
		ON CONFLICT ON CONSTRAINT message_device_message_key DO NOTHING
		RETURNING m.message_id INTO mid;
		IF mid IS NULL THEN
			duplicate := true;
			SELECT m.message_id INTO message_id FROM eightms.message m
			 WHERE m.account_id = acct AND m.phone_id = me AND m.device_message_id = receive_messages.device_message_id;
			RETURN NEXT;
			CONTINUE;
		END IF;
		message_id := mid; duplicate := false;
		UPDATE eightms.conversation c SET unread_count = c.unread_count + 1, last_message_at = now()
		 WHERE c.account_id = acct AND c.conversation_id = conv;

		kw := eightms.consent_keyword(x ->> 'body');
		IF kw = 'stop' THEN
			INSERT INTO eightms.opt_out (account_id, number) VALUES (acct, sender) ON CONFLICT DO NOTHING;
			IF FOUND THEN
				INSERT INTO eightms.consent_event (account_id, number, action, keyword, message_id)
				VALUES (acct, sender, 'opt_out', upper(btrim(x ->> 'body')), mid);
				-- Anything still waiting for this number is canceled at once.
				UPDATE eightms.message m SET status = 'canceled', error = 'recipient opted out'
				 WHERE m.account_id = acct AND m.peer_number = sender AND m.status IN ('queued', 'claimed');
				-- One confirmation, sent even though the number is now opted out.
				PERFORM eightms.queue_reply(acct, conv, me, sender,
					format('You have been unsubscribed from %s. No more messages will be sent. Reply START to resubscribe.',
						   (SELECT a.company_name FROM eightms.account a WHERE a.account_id = acct)));
			END IF;
			consent := 'opt_out';
		ELSIF kw = 'start' THEN
			DELETE FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = sender;
			IF FOUND THEN
				INSERT INTO eightms.consent_event (account_id, number, action, keyword, message_id)
				VALUES (acct, sender, 'opt_in', upper(btrim(x ->> 'body')), mid);
				consent := 'opt_in';
			END IF;
		ELSIF kw = 'help' THEN
			SELECT format('%s: reply STOP to unsubscribe, START to resubscribe.', a.company_name)
			  INTO reply FROM eightms.account a WHERE a.account_id = acct;
			PERFORM eightms.queue_reply(acct, conv, me, sender, reply);
			consent := 'help';
		END IF;
		PERFORM pg_notify('eightms_inbound', json_build_object('account_id', acct, 'message_id', mid)::text);
		RETURN NEXT;
	END LOOP;
END
$$;

-- ------------------------------------------------------------ inbox

CREATE FUNCTION eightms_api.mark_read(conversation_id uuid) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE eightms.conversation c SET unread_count = 0
	 WHERE c.account_id = eightms.require_account() AND c.conversation_id = mark_read.conversation_id
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
	SELECT c.conversation_id, c.peer_number, c.phone_id, c.last_message_at, c.unread_count, c.archived_at,
		   lm.body, lm.direction
	  FROM eightms.conversation c
	  LEFT JOIN LATERAL (SELECT m.body, m.direction FROM eightms.message m
						  WHERE m.account_id = c.account_id AND m.conversation_id = c.conversation_id
						  ORDER BY m.created_at DESC, m.message_id DESC LIMIT 1) lm ON true
	 WHERE c.account_id = eightms.require_account()
	   AND (c.archived_at IS NOT NULL) = archived
	   AND c.last_message_at IS NOT NULL
	   AND (after_at IS NULL OR (c.last_message_at, c.conversation_id) < (after_at, after_id))
	 ORDER BY c.last_message_at DESC, c.conversation_id DESC
	 LIMIT least(greatest(page_size, 1), 200)
$$;

-- A conversation's messages, newest first, a page at a time.
CREATE FUNCTION eightms_api.conversation_messages(conversation_id uuid, after_at timestamptz DEFAULT NULL,
												  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF eightms_api.messages
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT v.* FROM eightms_api.messages v
	 WHERE v.account_id = eightms.require_account() AND v.conversation_id = conversation_messages.conversation_id
	   AND (after_at IS NULL OR (v.created_at, v.message_id) < (after_at, after_id))
	 ORDER BY v.created_at DESC, v.message_id DESC
	 LIMIT least(greatest(page_size, 1), 200)
$$;

CREATE FUNCTION eightms_api.set_message_options(fold_lookalikes boolean) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	UPDATE eightms.account a SET fold_lookalikes = set_message_options.fold_lookalikes
	 WHERE a.account_id = eightms.current_account_id();
END
$$;

CREATE VIEW eightms_api.conversations WITH (security_invoker = true) AS
	SELECT account_id, conversation_id, peer_number, phone_id, last_message_at, unread_count, archived_at, created_at
	  FROM eightms.conversation;
GRANT SELECT ON eightms_api.conversations TO eightms_user;

GRANT EXECUTE ON FUNCTION eightms_api.send_message(text, text, uuid, text, timestamptz),
	eightms_api.send_messages(jsonb), eightms_api.mark_read(uuid), eightms_api.delete_conversation(uuid),
	eightms_api.archive_conversation(uuid, boolean), eightms_api.set_message_options(boolean),
	eightms_api.list_conversations(timestamptz, uuid, integer, boolean),
	eightms_api.conversation_messages(uuid, timestamptz, uuid, integer)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.claim_messages(integer), eightms_api.report_messages(jsonb),
	eightms_api.receive_messages(jsonb)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.consent_keyword(text), eightms.conversation_for(uuid, text, uuid),
	eightms.queue_reply(uuid, uuid, uuid, text, text), eightms.pick_phone(uuid),
	eightms.queue_message(uuid, text, text, uuid, text, timestamptz), eightms.expire_messages(uuid),
	eightms.status_rank(text)
TO eightms_user, eightms_phone, eightms_dba;
