-- test/isolation/helpers.sql: what the isolation specs share, installed by
-- test/run.sh into the test database after test/helpers.sql.
--
-- Each spec makes an account of its own in its setup (owner "iso-<spec>",
-- phones paired through pair_phone and online by a heartbeat, all through
-- the PostgREST contract of test/helpers.sql) and deletes it in its
-- teardown; its sessions act as that owner or a phone with iso.as_owner
-- and iso.as_phone, inside the step's own transaction (PostgREST's
-- settings are transaction-local).  Procedures, so that a step prints only
-- what the API answers.
CREATE SCHEMA iso;

CREATE TABLE iso.actor (
	spec		text NOT NULL,
	name		text NOT NULL,
	account_id	uuid NOT NULL,
	phone_id	uuid,
	token		text,
	PRIMARY KEY (spec, name)
);

-- Values a spec keeps between its steps (ids it must not print, as they
-- differ from run to run): a step notes one, a later step compares.
CREATE TABLE iso.memo (
	spec	text NOT NULL,
	key		text NOT NULL,
	value	text,
	PRIMARY KEY (spec, key)
);

-- An account for spec with the named phones, paired and online.
CREATE FUNCTION iso.setup(spec text, phones text[] DEFAULT ARRAY['p1']) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	acct uuid;
	code text;
	ph text;
	pid uuid;
	tok text;
BEGIN
	PERFORM pgrst.as_user('iso-' || spec);
	SELECT a.account_id INTO acct FROM eightms_api.create_account('Iso ' || spec) a;
	FOREACH ph IN ARRAY phones LOOP
		PERFORM pgrst.as_user('iso-' || spec, acct);
		SELECT c.code INTO code FROM eightms_api.create_pairing_code() c;
		PERFORM pgrst.as_anon();
		SELECT p.phone_id, p.token INTO pid, tok FROM eightms_api.pair_phone(code, 'iso-' || spec || '-' || ph) p;
		PERFORM pgrst.as_token(tok);
		PERFORM eightms_api.heartbeat(90, 'wifi', true);
		PERFORM pgrst.reset();
		INSERT INTO iso.actor VALUES (spec, ph, acct, pid, tok);
	END LOOP;
	INSERT INTO iso.actor VALUES (spec, 'owner', acct, NULL, NULL);
END
$$;

CREATE FUNCTION iso.account(spec text) RETURNS uuid
LANGUAGE sql STABLE
AS $$ SELECT a.account_id FROM iso.actor a WHERE a.spec = account.spec AND a.name = 'owner' $$;

CREATE PROCEDURE iso.as_owner(spec text)
LANGUAGE sql
AS $$ SELECT pgrst.as_user('iso-' || spec, iso.account(spec)) $$;

CREATE PROCEDURE iso.as_phone(spec text, phone text DEFAULT 'p1')
LANGUAGE sql
AS $$ SELECT pgrst.as_token((SELECT a.token FROM iso.actor a WHERE a.spec = as_phone.spec AND a.name = phone)) $$;

-- The account's outbound messages, as the superuser sees them.
CREATE FUNCTION iso.outbound(spec text)
RETURNS TABLE (peer_number text, body text, status text, error text)
LANGUAGE sql STABLE
AS $$
	SELECT m.peer_number, m.body, m.status, m.error FROM eightms.message m
	 WHERE m.account_id = iso.account(spec) AND m.direction = 'out'
	 ORDER BY m.peer_number, m.body
$$;

CREATE PROCEDURE iso.teardown(spec text)
LANGUAGE sql
AS $$
	DELETE FROM eightms.account a WHERE a.account_id = iso.account(spec);
	DELETE FROM iso.actor a WHERE a.spec = teardown.spec;
	DELETE FROM iso.memo m WHERE m.spec = teardown.spec;
$$;

-- JSON items without braces (a spec's SQL block ends at the first "}"):
-- an inbound SMS for receive_messages, an outbound one for send_messages.
CREATE FUNCTION iso.sms_in(sender text, body text, device_message_id text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('from', sender, 'body', body, 'device_message_id', device_message_id) $$;

CREATE FUNCTION iso.sms_out(recipient text, body text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('to', recipient, 'body', body) $$;
-- Called by the API roles, after a step has switched to them.
GRANT USAGE ON SCHEMA iso TO PUBLIC;
GRANT EXECUTE ON FUNCTION iso.sms_in(text, text, text), iso.sms_out(text, text) TO PUBLIC;


-- Note value under key (for the API roles too, inside their steps);
-- returns the key, so that a step prints no id.
CREATE FUNCTION iso.note(spec text, key text, value text) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO iso.memo VALUES (spec, key, value)
	ON CONFLICT ON CONSTRAINT memo_pkey DO UPDATE SET value = EXCLUDED.value;
	SELECT key;
$$;

CREATE FUNCTION iso.noted(spec text, key text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.value FROM iso.memo m WHERE m.spec = noted.spec AND m.key = noted.key $$;

-- Ids a step passes to the API without printing them.
CREATE FUNCTION iso.phone(spec text, phone text DEFAULT 'p1') RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT a.phone_id FROM iso.actor a WHERE a.spec = phone.spec AND a.name = phone.phone $$;

CREATE FUNCTION iso.conversation(spec text, peer text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.conversation_id FROM eightms.conversation c
	 WHERE c.account_id = (SELECT a.account_id FROM iso.actor a WHERE a.spec = conversation.spec AND a.name = 'owner')
	   AND c.peer_number = peer
$$;

CREATE FUNCTION iso.message(spec text, body text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.message_id FROM eightms.message m
	 WHERE m.account_id = (SELECT a.account_id FROM iso.actor a WHERE a.spec = message.spec AND a.name = 'owner')
	   AND m.body = message.body
$$;

-- An outbound item for a given phone.
CREATE FUNCTION iso.sms_via(recipient text, body text, phone uuid) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('to', recipient, 'body', body, 'phone_id', phone) $$;

-- Per conversation of the account (by peer number): its phone (by name,
-- or "none"), unread count and how many messages it holds.
CREATE FUNCTION iso.conversations(spec text)
RETURNS TABLE (peer_number text, phone text, unread integer, messages bigint)
LANGUAGE sql STABLE
AS $$
	SELECT c.peer_number, coalesce((SELECT a.name FROM iso.actor a WHERE a.spec = conversations.spec AND a.phone_id = c.phone_id), 'none'),
		   c.unread_count,
		   (SELECT count(*) FROM eightms.message m WHERE m.account_id = c.account_id AND m.conversation_id = c.conversation_id)
	  FROM eightms.conversation c
	 WHERE c.account_id = iso.account(spec)
	 ORDER BY c.peer_number
$$;

GRANT EXECUTE ON FUNCTION iso.note(text, text, text), iso.noted(text, text), iso.phone(text, text),
	iso.conversation(text, text), iso.message(text, text), iso.sms_via(text, text, uuid) TO PUBLIC;
