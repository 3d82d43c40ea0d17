-- gateway_send.sql: the outbound queue: conversations, opt-outs, queueing
-- and sending messages, canceling them, and the account's sending option.

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
DECLARE
	hit text[];
BEGIN
	-- A statement on one table keyed by the account, as Citus plans it
	-- with parameters (an ARRAY(subquery) it cannot).
	SELECT coalesce(array_agg(o.number), '{}') INTO hit FROM eightms.opt_out o
	 WHERE o.account_id = acct AND o.number = ANY (numbers COLLATE "C");
	RETURN hit;
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
-- Each statement reads or writes one table by the account, so that Citus
-- routes it to the account's shards with the cached plan; the clock is
-- read once, before them.
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
	region text;
	ttl interval := current_setting('eightms.message_ttl')::interval;
	at timestamptz := now();
	due timestamptz;
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
	-- The account's region is passed to e164 (with a NULL region it would
	-- look it up again, unplanned, for every message).
	SELECT a.fold_lookalikes, a.default_region INTO fold, region FROM eightms.account a WHERE a.account_id = acct;
	-- The bounds hold for what will be sent: folding turns an ellipsis into
	-- three characters and drops zero-width spaces.
	fold := body IS NOT NULL AND fold;
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
	e164 := eightms.e164(to_number, region, true);
	IF phone IS NOT NULL THEN
		PERFORM FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = phone AND p.unpaired_at IS NULL;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'no paired phone %', phone USING ERRCODE = 'P0002';
		END IF;
	END IF;
	-- A conversation keeps its phone, so replies thread on the handset;
	-- a new one (or one without a phone) gets the healthiest phone.
	-- The row is locked (updated) before the message refers to it: with no
	-- foreign key, that is what keeps a concurrent delete_conversation from
	-- leaving this message without its conversation.  It is also the
	-- consent lock (above): the opt-out list is read after it.
	UPDATE eightms.conversation c SET last_message_at = at
	 WHERE c.account_id = acct AND c.peer_number = e164
	RETURNING c.conversation_id, c.phone_id INTO conv, conv_phone;
	IF conv IS NULL OR conv_phone IS NULL THEN
		conv := eightms.conversation_for(acct, e164, coalesce(phone, eightms.pick_phone(acct)));
		UPDATE eightms.conversation c SET last_message_at = at
		 WHERE c.account_id = acct AND c.conversation_id = conv
		RETURNING c.phone_id INTO conv_phone;
	END IF;
	PERFORM FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = e164;
	IF FOUND THEN
		RAISE EXCEPTION 'the recipient has opted out of messages from this account'
			USING ERRCODE = 'E8O01',
				  HINT = 'The recipient must text START to opt back in; nothing was queued.';
	END IF;
	info := eightms.sms_info(body);
	due := coalesce(send_at, at);
	INSERT INTO eightms.message AS x (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, pending, idempotency_key, send_at, expires_at)
	VALUES (acct, conv, 'out', coalesce(phone, conv_phone), e164, body, info.encoding, info.segments,
			'queued', true, idem, due, due + ttl)
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

-- The items of a batch that pass every check needing no table: a valid
-- number, a fit body (folded when the account folds), a usable send_at,
-- a well-formed idempotency key not used by an earlier item of the batch.
-- A phone_id or send_at that is not a uuid or a time fails the statement
-- (and so the batch goes one by one).  SQL without a SET clause, so that
-- the planner inlines it.
CREATE FUNCTION eightms.outbound_items(messages jsonb, region text, fold boolean, ttl interval)
RETURNS TABLE (ord integer, e164 text, body text, phone uuid, idem text, send_at timestamptz)
LANGUAGE sql STABLE
AS $$
	SELECT n.ord, n.e164, n.body, n.phone, n.idem, n.send_at
	  FROM (SELECT i.*, eightms.try_e164(i.raw_to, region, true) COLLATE "C" AS e164,
				   row_number() OVER (PARTITION BY i.idem ORDER BY i.ord) AS idem_rank
			  FROM (SELECT t.ord::integer AS ord, t.x ->> 'to' AS raw_to,
						   CASE WHEN fold THEN eightms.sms_fold(t.x ->> 'body') ELSE t.x ->> 'body' END AS body,
						   (t.x ->> 'phone_id')::uuid AS phone, t.x ->> 'idempotency_key' AS idem,
						   (t.x ->> 'send_at')::timestamptz AS send_at, eightms.outbound_item_error(t.x) AS item_error
					  FROM jsonb_array_elements(messages) WITH ORDINALITY AS t(x, ord)) i) n
	 WHERE n.item_error IS NULL AND n.e164 IS NOT NULL AND length(n.body) BETWEEN 1 AND 1600
	   AND (n.send_at IS NULL OR eightms.send_at_error(n.send_at, ttl) IS NULL)
	   AND (n.idem IS NULL OR (n.idem_rank = 1 AND length(n.idem) BETWEEN 1 AND 200))
	 ORDER BY n.ord
$$;

-- Lock the conversations with these numbers that exist and have a phone
-- (nearly all), marking their last message: one scan of the number index,
-- which takes the locks in number order (the order every batch shares).
CREATE FUNCTION eightms.touch_conversations(acct uuid, numbers text[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	RETURN QUERY
	UPDATE eightms.conversation cv SET last_message_at = at
	 WHERE cv.account_id = acct AND cv.peer_number = ANY (numbers COLLATE "C") AND cv.phone_id IS NOT NULL
	RETURNING cv.conversation_id, cv.peer_number, cv.phone_id;
END
$$;

-- Create the conversations with these numbers (or, created meanwhile or
-- without a phone, take them over), in number order too, each with its
-- phone.  INSERT ... SELECT: Citus plans it only with the values known.
-- plan_cache_mode = auto (the callers' force_generic_plan would otherwise
-- hold here too): on one server the plan cache settles on the generic plan
-- after its first calls; Citus prices a generic plan it cannot route out
-- of reach, so there every call gets a custom plan.
CREATE FUNCTION eightms.create_conversations(acct uuid, numbers text[], phones uuid[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
	RETURN QUERY
	INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id, last_message_at)
	SELECT acct, u.number, u.phone, at
	  FROM unnest(numbers, phones) AS u(number, phone)
	 ORDER BY u.number COLLATE "C"
	ON CONFLICT ON CONSTRAINT conversation_peer_key DO UPDATE
		SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id), last_message_at = EXCLUDED.last_message_at
	RETURNING cv.conversation_id, cv.peer_number, cv.phone_id;
END
$$;

-- Open the conversations of a batch's numbers that touch_conversations did
-- not hold (held: those it did), given one row per number in number order,
-- with the phone and the position of its first item: they are spread over
-- the healthy phones as pick_phone would, shortest queue first (unless the
-- item names its phone), in the order of their first items, and created.
CREATE FUNCTION eightms.open_conversations(acct uuid, numbers text[], named uuid[], firsts integer[],
										   held text[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	new_numbers text[];
	new_phones uuid[];
BEGIN
	WITH rest AS (
		SELECT u.number, u.phone, u.first
		  FROM unnest(numbers, named, firsts) AS u(number, phone, first)
		 WHERE u.number <> ALL (held)),
	unrouted AS (
		SELECT r.number, row_number() OVER (ORDER BY r.first) AS k FROM rest r WHERE r.phone IS NULL),
	slots AS (
		SELECT h.phone_id,
			   row_number() OVER (ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id) AS k
		  FROM eightms.healthy_phones(acct, current_setting('eightms.routing_queue_cap')::integer) h,
			   generate_series(1, (SELECT count(*) FROM unrouted)) g
		 -- Counting queues only when some conversation needs a phone.
		 WHERE EXISTS (SELECT FROM unrouted))
	SELECT array_agg(r.number ORDER BY r.number), array_agg(coalesce(r.phone, s.phone_id) ORDER BY r.number)
	  INTO new_numbers, new_phones
	  FROM rest r
	  LEFT JOIN unrouted un ON un.number = r.number
	  LEFT JOIN slots s ON s.k = un.k;
	RETURN QUERY SELECT * FROM eightms.create_conversations(acct, new_numbers, new_phones, at);
END
$$;

-- Insert a batch's messages, in item order; their ids.  No ON
-- CONFLICT: it would make every row a speculative insertion (a lock and a
-- second WAL record each, about 1% of a lifecycle).  A key another
-- transaction took meanwhile raises unique_violation instead, and the
-- batch goes one by one, where that item gets the message already queued
-- under its key.  INSERT ... SELECT, with plan_cache_mode = auto as
-- create_conversations has it.  The arrays are read by subscript (one
-- value of each a row): unnest would materialize each of them.  RETURNING
-- is what makes Citus send the rows to the shards as INSERT statements:
-- without it, it sends them as COPY, which row-level security refuses.
CREATE FUNCTION eightms.insert_outbound(acct uuid, ids uuid[], convs uuid[], phones uuid[], numbers text[],
										bodies text[], idems text[], send_ats timestamptz[], at timestamptz,
										ttl interval, campaign uuid DEFAULT NULL,
										expires timestamptz[] DEFAULT NULL, closes timestamptz[] DEFAULT NULL)
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
	-- A campaign's release (sql/campaigns.sql) passes its campaign, each
	-- message's expiry (its window's opening + the campaign's ttl) and its
	-- window's closing; a send passes none of them.
	RETURN QUERY
	INSERT INTO eightms.message AS x (account_id, message_id, conversation_id, direction, phone_id, peer_number,
									  body, encoding, segments, status, pending, idempotency_key, send_at, expires_at,
									  campaign_id, window_closes_at)
	SELECT acct, ids[k], convs[k], 'out', phones[k], numbers[k], bodies[k], i.encoding, i.segments, 'queued', true,
		   idems[k], coalesce(send_ats[k], at), coalesce(expires[k], coalesce(send_ats[k], at) + ttl),
		   campaign, closes[k]
	  FROM generate_subscripts(ids, 1) AS k
	 CROSS JOIN LATERAL eightms.sms_info(bodies[k]) i
	 ORDER BY k
	RETURNING x.message_id;
END
$$;

-- The fast path of send_messages: queue every item that plainly goes
-- through, in named steps of one table each; answer each item's message
-- id (NULL: left to the slow path).  Raises T8R01 to undo it all when
-- what it holds is not what it read: a STOP that committed while it
-- waited for a conversation.  The steps pass arrays, read once: each
-- statement of one table keyed by the account (single-shard on Citus,
-- with cached plans); the steps that write many rows and answer them are
-- functions of their own (touch_conversations, open_conversations).
CREATE FUNCTION eightms.queue_plain_outbound(acct uuid, messages jsonb, region text, fold boolean, ttl interval)
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	at timestamptz := now();
	ords integer[];
	numbers text[];
	bodies text[];
	phones uuid[];
	idems text[];
	send_ats timestamptz[];
	ids uuid[];
	opted text[];
	paired uuid[] := '{}';
	used text[] := '{}';
	peers text[];
	named uuid[];
	firsts integer[];
	held_numbers text[];
	held_ids uuid[];
	held_phones uuid[];
	convs uuid[];
	senders uuid[];
BEGIN
	-- The items that pass every check needing no table, each with the id
	-- its message will have.
	SELECT array_agg(i.ord), array_agg(i.e164), array_agg(i.body), array_agg(i.phone), array_agg(i.idem),
		   array_agg(i.send_at), array_agg(eightms.uuid_v7())
	  INTO ords, numbers, bodies, phones, idems, send_ats, ids
	  FROM eightms.outbound_items(messages, region, fold, ttl) i;
	IF ords IS NULL THEN
		RETURN array_fill(NULL::uuid, ARRAY[jsonb_array_length(messages)]);
	END IF;
	-- Of those, the ones the account's tables let through: the number not
	-- opted out, the phone named (if any) paired, the idempotency key not
	-- used before.  The opt-out list is read again once the conversations
	-- are held.
	opted := eightms.opted_out(acct, numbers);
	IF cardinality(array_remove(phones, NULL)) > 0 THEN
		SELECT coalesce(array_agg(p.phone_id), '{}') INTO paired FROM eightms.phone p
		 WHERE p.account_id = acct AND p.phone_id = ANY (phones) AND p.unpaired_at IS NULL;
	END IF;
	IF cardinality(array_remove(idems, NULL)) > 0 THEN
		SELECT coalesce(array_agg(o.idempotency_key), '{}') INTO used FROM eightms.message o
		 WHERE o.account_id = acct AND o.idempotency_key = ANY (idems);
	END IF;
	IF cardinality(opted) > 0 OR cardinality(array_remove(phones, NULL)) > cardinality(paired)
	   OR cardinality(used) > 0 THEN
		SELECT array_agg(u.ord), array_agg(u.e164), array_agg(u.body), array_agg(u.phone), array_agg(u.idem),
			   array_agg(u.send_at), array_agg(u.id)
		  INTO ords, numbers, bodies, phones, idems, send_ats, ids
		  FROM unnest(ords, numbers, bodies, phones, idems, send_ats, ids)
			   AS u(ord, e164, body, phone, idem, send_at, id)
		 WHERE u.e164 <> ALL (opted)
		   AND (u.phone IS NULL OR u.phone = ANY (paired))
		   AND (u.idem IS NULL OR u.idem <> ALL (used));
		IF ords IS NULL THEN
			RETURN array_fill(NULL::uuid, ARRAY[jsonb_array_length(messages)]);
		END IF;
	END IF;
	-- One row per number, from its first item (in number order as the
	-- subquery reads them; the statements that lock conversations take
	-- them in number order, the order every batch shares, whatever the
	-- order of the array).
	SELECT array_agg(p.e164), array_agg(p.phone), array_agg(p.ord)
	  INTO peers, named, firsts
	  FROM (SELECT DISTINCT ON (u.e164) u.e164, u.phone, u.ord
			  FROM unnest(numbers, phones, ords) AS u(e164, phone, ord) ORDER BY u.e164, u.ord) p;
	-- Hold the conversations (the consent lock): those that exist with a
	-- phone first, then the others, opened.
	SELECT array_agg(t.peer_number), array_agg(t.conversation_id), array_agg(t.phone_id)
	  INTO held_numbers, held_ids, held_phones
	  FROM eightms.touch_conversations(acct, peers, at) t;
	IF coalesce(cardinality(held_numbers), 0) < cardinality(peers) THEN
		SELECT held_numbers || array_agg(h.peer_number), held_ids || array_agg(h.conversation_id),
			   held_phones || array_agg(h.phone_id)
		  INTO held_numbers, held_ids, held_phones
		  FROM eightms.open_conversations(acct, peers, named, firsts, coalesce(held_numbers, '{}'), at) h;
	END IF;
	SELECT array_agg(c.id ORDER BY u.ord), array_agg(coalesce(u.phone, c.phone) ORDER BY u.ord)
	  INTO convs, senders
	  FROM unnest(ords, numbers, phones) AS u(ord, e164, phone)
	  JOIN unnest(held_numbers, held_ids, held_phones) AS c(number, id, phone) ON c.number = u.e164;
	IF (SELECT count(*) FROM eightms.insert_outbound(acct, ids, convs, senders, numbers, bodies, idems, send_ats, at, ttl))
	   IS DISTINCT FROM cardinality(ords) THEN
		-- Cannot happen (every item is inserted or the statement fails);
		-- should it, the slow path settles each item.
		RAISE EXCEPTION USING ERRCODE = 'T8R01';
	END IF;
	-- The opt-out list again, now that the conversations are held: a STOP
	-- that committed while this waited for one of them.
	IF cardinality(eightms.opted_out(acct, peers)) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'T8R01';
	END IF;
	-- Realtime: ids only, never content or numbers; one notification per
	-- phone and hundred messages (a payload holds 8000 bytes).
	PERFORM count(pg_notify('eightms_outbound',
							json_build_object('account_id', acct, 'phone_id', g.phone_id, 'message_ids', g.ids)::text))
	   FROM (SELECT c.phone_id, json_agg(c.message_id) AS ids
			   FROM (SELECT u.phone_id, u.message_id, (row_number() OVER (PARTITION BY u.phone_id) - 1) / 100 AS chunk
					   FROM unnest(ids, senders) AS u(message_id, phone_id)) c
			  GROUP BY c.phone_id, c.chunk) g;
	IF cardinality(ords) = jsonb_array_length(messages) THEN
		RETURN ids;
	END IF;
	RETURN ARRAY(SELECT f.id
				   FROM generate_series(1, jsonb_array_length(messages)) AS it(ord)
				   LEFT JOIN unnest(ords, ids) AS f(ord, id) ON f.ord = it.ord
				  ORDER BY it.ord);
END
$$;

-- A batch: each item queued or refused on its own, in one transaction.
-- The items that plainly go through (a valid number, not opted out, a fit
-- body, no idempotency key seen before) are queued together
-- (queue_plain_outbound); the rest, and the whole batch should that fail,
-- go one by one through queue_message, which gives each refusal its own
-- error.
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
		ids := eightms.queue_plain_outbound(acct, messages, region, fold, ttl);
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

-- Cancel what is still queued of these messages of the account, as one
-- statement on one table (a single-shard UPDATE on Citus); the ids
-- canceled.  The recipients of the campaign messages among them follow
-- (sql/campaign_stats.sql).
CREATE FUNCTION eightms.cancel_queued(acct uuid, ids uuid[], at timestamptz, why text) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	FOR mid, cid IN
		UPDATE eightms.message m
		   SET status = 'canceled', pending = NULL, canceled_at = at, error = why
		 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.status = 'queued'
		RETURNING m.message_id, m.campaign_id
	LOOP
		RETURN NEXT mid;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
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
	known uuid[];
	statuses text[];
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF message_ids IS NULL OR cardinality(message_ids) > 10000 THEN
		RAISE EXCEPTION 'message_ids must be an array of at most 10000 message ids' USING ERRCODE = '22023',
			HINT = 'Cancel a larger batch in several calls.';
	END IF;
	SELECT coalesce(array_agg(c.id), '{}') INTO gone
	  FROM eightms.cancel_queued(acct, message_ids, now(), 'canceled by ' || left(eightms.current_user_id(), 255)) c(id);
	-- A statement of its own: what a claim took meanwhile (the update
	-- waited for it and then left it) reads as claimed here.
	SELECT array_agg(m.message_id), array_agg(m.status) INTO known, statuses FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (message_ids) AND m.direction = 'out';
	RETURN QUERY
	SELECT i.id, i.id = ANY (gone), CASE WHEN i.id = ANY (gone) THEN 'canceled' ELSE k.status END
	  FROM (SELECT DISTINCT ON (u.id) u.id, u.ord FROM unnest(message_ids) WITH ORDINALITY AS u(id, ord)
			 WHERE u.id IS NOT NULL ORDER BY u.id, u.ord) i
	  LEFT JOIN unnest(known, statuses) AS k(id, status) ON k.id = i.id
	 ORDER BY i.ord;
END
$$;
COMMENT ON FUNCTION eightms_api.cancel_messages(uuid[]) IS
	'Cancel queued outbound messages; answers each id with canceled and its status (claimed ones are left to the phone)';

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

GRANT EXECUTE ON FUNCTION eightms_api.send_message(text, text, uuid, text, timestamptz),
	eightms_api.send_messages(jsonb), eightms_api.cancel_messages(uuid[]), eightms_api.set_message_options(boolean)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms.conversation_for(uuid, text, uuid),
	eightms.queue_message(uuid, text, text, uuid, text, timestamptz),
	eightms.opted_out(uuid, text[]), eightms.body_error(text, boolean),
	eightms.send_at_error(timestamptz, interval), eightms.outbound_item_error(jsonb)
TO eightms_user, eightms_phone, eightms_dba;
-- The steps of send_messages and cancel_messages run as their caller.
GRANT EXECUTE ON FUNCTION eightms.outbound_items(jsonb, text, boolean, interval),
	eightms.touch_conversations(uuid, text[], timestamptz),
	eightms.create_conversations(uuid, text[], uuid[], timestamptz),
	eightms.open_conversations(uuid, text[], uuid[], integer[], text[], timestamptz),
	eightms.insert_outbound(uuid, uuid[], uuid[], uuid[], text[], text[], text[], timestamptz[], timestamptz, interval,
		uuid, timestamptz[], timestamptz[]),
	eightms.queue_plain_outbound(uuid, jsonb, text, boolean, interval),
	eightms.cancel_queued(uuid, uuid[], timestamptz, text)
TO eightms_user;
