-- gateway_inbound.sql: SMS received by phones, stored exactly once, and
-- the replies the gateway queues on its own.

-- A reply the gateway sends on its own (the confirmations and the help
-- reply of sql/consent.sql), on the phone the message came in on; it is
-- queued even to an opted-out number, so its callers decide.  Returns the
-- message's id, which the consent change it confirms keeps.
CREATE FUNCTION eightms.queue_reply(acct uuid, conv uuid, phone uuid, number text, body text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	i record;
	mid uuid;
BEGIN
	i := eightms.sms_info(body);
	INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body,
								 encoding, segments, status, pending, expires_at)
	VALUES (acct, conv, 'out', phone, number, body, i.encoding, i.segments, 'queued', true,
			now() + current_setting('eightms.message_ttl')::interval)
	RETURNING message_id INTO mid;
	RETURN mid;
END
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

-- Receiving, a batch's first step: the conversations the batch will write
-- are taken first, in the order send_messages takes them: those that exist
-- with a phone, locked in number order, then the rest, created (or locked)
-- in number order.  Taken one by one in the batch's order, a batch from two
-- senders and a send to both, or another phone's messages from both, could
-- each hold one and wait for the other, and the deadlock aborts one.  Only
-- the senders of items receive_messages will store, so that no
-- conversation is left empty by an item in error or a message stored
-- before.  The upsert writes nothing: every conflicting row is locked all
-- the same, and each message is then counted in one write, as for a
-- single one.
CREATE FUNCTION eightms.lock_senders(acct uuid, me uuid, dev text, region text, messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	dmids text[] := ARRAY(SELECT m ->> 'device_message_id' FROM jsonb_array_elements(messages) m);
	stored text[];
	peers text[];
	with_phone text[];
	peer text;
BEGIN
	SELECT array_agg(d.device_message_id) INTO stored FROM eightms.message d
	 WHERE d.account_id = acct AND d.device_id = dev
	   AND d.device_message_id = ANY (dmids);
	peers := ARRAY(
		SELECT DISTINCT coalesce(eightms.try_e164(m ->> 'from', region, false), left(btrim(m ->> 'from'), 32)) COLLATE "C"
		  FROM jsonb_array_elements(messages) m
		 WHERE eightms.inbound_error(m, m ->> 'device_message_id') IS NULL
		   AND NOT coalesce(m ->> 'device_message_id' = ANY (stored), false));
	SELECT array_agg(c.peer_number) INTO with_phone FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.peer_number = ANY (peers) AND c.phone_id IS NOT NULL;
	FOR peer IN
		SELECT u.peer FROM unnest(peers) AS u(peer)
		 ORDER BY coalesce(u.peer = ANY (with_phone), false) DESC, u.peer COLLATE "C"
	LOOP
		INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id)
		VALUES (acct, peer, me)
		ON CONFLICT (account_id, peer_number) DO UPDATE SET phone_id = cv.phone_id WHERE false;
	END LOOP;
END
$$;

-- Receiving, one item's step: the message stored (or found stored: a
-- duplicate), its conversation counting it, and what its body does to
-- consent.  x is an item inbound_error passed.
CREATE FUNCTION eightms.receive_one(acct uuid, me uuid, dev text, region text, x jsonb,
									OUT message_id uuid, OUT duplicate boolean, OUT consent text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	dmid text := x ->> 'device_message_id';
	body text := coalesce(x ->> 'body', '');
	sender text;
	heard timestamptz;
	conv uuid;
	mid uuid;
	i record;
BEGIN
	SELECT m.message_id INTO mid FROM eightms.message m
	 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = dmid;
	IF FOUND THEN
		message_id := mid; duplicate := true;
		RETURN;
	END IF;
	-- Short codes and alphanumeric senders are kept as given.
	sender := coalesce(eightms.try_e164(x ->> 'from', region, false), left(btrim(x ->> 'from'), 32));
	-- When the phone received it, never later than its arrival: a message
	-- uploaded late takes its place in the inbox, and a phone whose clock
	-- runs ahead cannot pin one on top.
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
	i := eightms.sms_info(body);
	INSERT INTO eightms.message AS m (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, device_message_id, received_at, device_id)
	VALUES (acct, conv, 'in', me, sender, body, i.encoding, i.segments, 'received', dmid, heard, dev)
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
		 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = dmid;
		RETURN;
	END IF;
	message_id := mid; duplicate := false;
	-- STOP, START, HELP and unclear replies (sql/consent.sql).
	consent := eightms.apply_consent(acct, conv, me, sender, mid, x ->> 'body');
	PERFORM pg_notify('eightms_inbound', json_build_object('account_id', acct, 'message_id', mid)::text);
END
$$;

CREATE FUNCTION eightms_api.receive_messages(messages jsonb)
RETURNS TABLE (device_message_id text, message_id uuid, duplicate boolean, consent text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	x jsonb;
	region text;
	-- Messages are recognised per handset: pairing it again keeps them.
	dev text;
	-- The account's option (sql/contacts.sql): the new messages whose
	-- senders become contacts, made in one statement after the batch.
	make_contacts boolean;
	stored uuid[];
	senders text[];
	-- The account has campaigns that reached numbers: the batch's new
	-- messages, and whether each opted its number out, for attribution.
	attribute boolean;
	mids uuid[];
	opted_ids uuid[];
	peers text[];
	ats timestamptz[];
	opts boolean[];
BEGIN
	SELECT a.default_region, a.create_contacts_from_inbound INTO region, make_contacts
	  FROM eightms.account a WHERE a.account_id = acct;
	SELECT p.device_id INTO dev FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = me;
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 1000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 1000 {from, body, received_at, device_message_id}'
			USING ERRCODE = '22023', HINT = 'Send a longer backlog in several calls.';
	END IF;
	IF jsonb_array_length(messages) > 1 THEN
		PERFORM eightms.lock_senders(acct, me, dev, region, messages);
	END IF;
	-- One probe of campaign_recipient_reached_idx.
	PERFORM FROM eightms.campaign_recipient r WHERE r.account_id = acct AND r.reached_at IS NOT NULL LIMIT 1;
	attribute := FOUND;
	FOR x IN SELECT * FROM jsonb_array_elements(messages) LOOP
		device_message_id := x ->> 'device_message_id';
		message_id := NULL;
		duplicate := NULL;
		consent := NULL;
		-- An item that can never be stored is answered, not raised: raised,
		-- it would fail the whole batch, and the phone would send the same
		-- batch again and again while the other messages in it wait.
		error := eightms.inbound_error(x, device_message_id);
		IF error IS NULL THEN
			SELECT r.message_id, r.duplicate, r.consent INTO message_id, duplicate, consent
			  FROM eightms.receive_one(acct, me, dev, region, x) r;
			IF make_contacts AND NOT duplicate THEN
				stored := stored || message_id;
			END IF;
			IF attribute AND NOT duplicate THEN
				mids := mids || receive_messages.message_id;
				IF consent = 'opt_out' THEN
					opted_ids := opted_ids || receive_messages.message_id;
				END IF;
			END IF;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF stored IS NOT NULL THEN
		SELECT array_agg(m.peer_number) INTO senders FROM eightms.message m
		 WHERE m.account_id = acct AND m.message_id = ANY (stored);
		PERFORM eightms.inbound_contacts(acct, senders);
	END IF;
	-- Replies and opt-outs count for the campaign that reached their
	-- number last (sql/campaign_stats.sql), once per batch.
	IF mids IS NOT NULL THEN
		SELECT array_agg(m.peer_number), array_agg(m.received_at), array_agg(coalesce(m.message_id = ANY (opted_ids), false))
		  INTO peers, ats, opts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.message_id = ANY (mids);
		PERFORM eightms.attribute_answers(acct, peers, ats, opts);
	END IF;
END
$$;

GRANT EXECUTE ON FUNCTION eightms_api.receive_messages(jsonb), eightms.inbound_error(jsonb, text),
	eightms.lock_senders(uuid, uuid, text, text, jsonb), eightms.receive_one(uuid, uuid, text, text, jsonb)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.queue_reply(uuid, uuid, uuid, text, text)
TO eightms_user, eightms_phone, eightms_dba;
