-- gateway_inbox.sql: the dashboard's inbox (reading, archiving and
-- deleting conversations, paging them and their messages) and the
-- operators' view of the queues.

CREATE FUNCTION eightms_api.mark_read(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- The account first: a statement keyed by a value, not a call, is the
	-- one Citus routes to the account's shard.
	acct uuid := eightms.require_account();
BEGIN
	UPDATE eightms.conversation c SET unread_count = 0
	 WHERE c.account_id = acct AND c.conversation_id = mark_read.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', mark_read.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

CREATE FUNCTION eightms_api.delete_conversation(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	-- Its messages and reviews go with it (the row triggers of
	-- gateway_tables.sql and consent.sql).
	DELETE FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.conversation_id = delete_conversation.conversation_id;
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
DECLARE
	acct uuid := eightms.require_account();
	-- Read before the statement: Citus cannot send now() inside a CASE
	-- to the shard.
	at timestamptz := CASE WHEN archived THEN now() END;
BEGIN
	IF archived IS NULL THEN
		RAISE EXCEPTION 'archived must be true or false' USING ERRCODE = '22023',
			HINT = 'Pass false to bring a conversation back to the inbox.';
	END IF;
	UPDATE eightms.conversation c SET archived_at = at
	 WHERE c.account_id = acct AND c.conversation_id = archive_conversation.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', archive_conversation.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- The inbox, newest first, a page at a time: pass the last row's
-- (last_message_at, conversation_id) to get the next page (keyset
-- pagination, stable while messages arrive).  Each row names the
-- account's contact with that number, if any (contact_id, first_name,
-- last_name; NULL otherwise).  PL/pgSQL, with the account read first:
-- Citus plans no statement of an SQL function that has parameters, and
-- routes this one (the conversation, its colocated messages and contacts)
-- to the account's shards by its value.
CREATE FUNCTION eightms_api.list_conversations(after_at timestamptz DEFAULT NULL, after_id uuid DEFAULT NULL,
											   page_size integer DEFAULT 50, archived boolean DEFAULT false)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid, last_message_at timestamptz,
			   unread_count integer, archived_at timestamptz, last_body text, last_direction text,
			   contact_id uuid, first_name text, last_name text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	-- The page first, then each row's last message and contact: only the
	-- page's rows look them up (the contact by contact_phone_key).
	RETURN QUERY
	SELECT c.conversation_id, c.peer_number, c.phone_id, c.last_message_at, c.unread_count, c.archived_at,
		   lm.body, lm.direction, ct.contact_id, ct.first_name, ct.last_name
	  FROM (SELECT c.*
			  FROM eightms.conversation c
			 WHERE c.account_id = acct
			   AND (c.archived_at IS NOT NULL) = coalesce(list_conversations.archived, false)
			   AND c.last_message_at IS NOT NULL
			   AND (after_at IS NULL
					OR (c.active_minute <= date_bin('1 minute', after_at, '2000-01-01 00:00:00+00')
						AND (c.last_message_at, c.conversation_id) < (after_at, after_id)))
			 -- The same order as by last_message_at alone: the index gives
			 -- the minutes, and only the rows within a minute are sorted.
			 ORDER BY c.active_minute DESC, c.last_message_at DESC, c.conversation_id DESC
			 LIMIT least(greatest(coalesce(page_size, 50), 1), 200)) c
	  -- The account by its value here too: Citus routes the whole statement
	  -- to one shard only when each table names it.
	  LEFT JOIN LATERAL (SELECT m.body, m.direction FROM eightms.message m
						  WHERE m.account_id = acct AND m.conversation_id = c.conversation_id
						  ORDER BY coalesce(m.received_at, m.created_at) DESC, m.message_id DESC LIMIT 1) lm ON true
	  LEFT JOIN eightms.contact ct ON ct.account_id = acct AND ct.phone = c.peer_number
	 ORDER BY c.last_message_at DESC, c.conversation_id DESC;
END
$$;

-- A conversation's messages, newest first, a page at a time: an inbound
-- message at its received_at (when the phone received it, never after its
-- arrival), an outbound one at its created_at; pass the last row's time
-- (that one of the two) and id for the next page.
CREATE FUNCTION eightms_api.conversation_messages(conversation_id uuid, after_at timestamptz DEFAULT NULL,
												  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF eightms_api.messages
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	-- PL/pgSQL, the account read first, as list_conversations.
	RETURN QUERY
	SELECT v.* FROM eightms_api.messages v
	 WHERE v.account_id = acct AND v.conversation_id = conversation_messages.conversation_id
	   AND (after_at IS NULL OR (coalesce(v.received_at, v.created_at), v.message_id) < (after_at, after_id))
	 ORDER BY coalesce(v.received_at, v.created_at) DESC, v.message_id DESC
	 LIMIT least(greatest(coalesce(page_size, 50), 1), 200);
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

GRANT EXECUTE ON FUNCTION eightms_api.mark_read(uuid), eightms_api.delete_conversation(uuid),
	eightms_api.archive_conversation(uuid, boolean),
	eightms_api.list_conversations(timestamptz, uuid, integer, boolean),
	eightms_api.conversation_messages(uuid, timestamptz, uuid, integer)
TO eightms_user;
