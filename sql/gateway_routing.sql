-- gateway_routing.sql: which phone sends: the phones fit to send, the
-- healthiest of them, and the order a phone's conversations are locked in.

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
DECLARE
	since timestamptz := now() - current_setting('eightms.online_window')::interval;
	min_battery integer := current_setting('eightms.min_battery_pct')::integer;
	n bigint;
BEGIN
	-- The phones, then each one's queue: one table a statement, so that
	-- Citus sends each to the account's shard (doc/scale-out.md).
	FOR phone_id, battery_pct IN
		SELECT p.phone_id, p.battery_pct
		  FROM eightms.phone p
		 WHERE p.account_id = acct AND p.unpaired_at IS NULL AND p.last_heartbeat_at > since
		   AND (p.charging OR coalesce(p.battery_pct, 0) > min_battery)
		   -- A phone that reports no network cannot send what it is given.
		   AND p.network IS DISTINCT FROM 'none'
	LOOP
		PERFORM FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = healthy_phones.phone_id AND m.pending
		 LIMIT count_cap;
		GET DIAGNOSTICS n = ROW_COUNT;
		queue_length := n;
		RETURN NEXT;
	END LOOP;
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

GRANT EXECUTE ON FUNCTION eightms.pick_phone(uuid), eightms.healthy_phones(uuid, integer),
	eightms.lock_phone_conversations(uuid, uuid)
TO eightms_user, eightms_phone, eightms_dba;
