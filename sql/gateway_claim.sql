-- gateway_claim.sql: the phone's loop: reading what phones write, moving
-- work off phones that are gone, expiry, claims and delivery reports.

-- The uuid a text spells, or NULL (src/util/try_uuid.c).
CREATE FUNCTION eightms.try_uuid(text) RETURNS uuid
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_try_uuid';
GRANT EXECUTE ON FUNCTION eightms.try_uuid(text) TO eightms_user, eightms_phone, eightms_dba, eightms_worker;

-- Whether a batch of reports names each message once, with ids try_uuid
-- reads (src/util/try_uuid.c): what report_messages asks before its one-pass path.
CREATE FUNCTION eightms.ids_are_distinct(reports jsonb) RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_ids_are_distinct';
COMMENT ON FUNCTION eightms.ids_are_distinct(jsonb) IS
	'True when every element of the array is an object whose "id" try_uuid reads, all different';
GRANT EXECUTE ON FUNCTION eightms.ids_are_distinct(jsonb) TO eightms_phone;

-- The time a phone wrote (a report's "at", an inbound message's
-- "received_at"), or NULL when it cannot be read (src/gateway/json_time.c): a JSON
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

-- Each function below keeps every statement on one table with
-- account_id = <one value>: Citus routes such a statement to the account's
-- shard even under a generic plan (doc/scale-out.md); joins, EXISTS
-- subqueries, UPDATE ... FROM and INSERT ... SELECT on the tenant tables are
-- done as named steps instead, reading into arrays and variables first.
-- The values of now() and seal() are read into variables before the
-- statement that writes them, and what an UPDATE sets calls no function
-- that is not immutable (an error text is built with || from a cast, not
-- format()): Citus 13.2 cannot plan such an UPDATE under a generic plan,
-- and with its local fast path on, crashes the coordinator planning it.

-- A scheduled job's step for one account: messages past their expiry are
-- expired, and leases that ran out go back in the queue (attempts + 1), or
-- fail after the last attempt.
CREATE FUNCTION eightms.expire_account_messages(acct uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer;
	k integer;
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	t_now timestamptz := now();
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	-- The campaign messages among those expired or failed: their
	-- recipients follow (sql/campaign_stats.sql).
	n := 0;
	FOR mid, cid IN
		UPDATE eightms.message m SET status = 'expired', pending = NULL, lease_expires_at = NULL,
			error = 'not sent before it expired'
		 WHERE m.account_id = acct AND m.pending AND m.expires_at < t_now
		RETURNING m.message_id, m.campaign_id
	LOOP
		n := n + 1;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	k := 0;
	FOR mid, cid IN
		UPDATE eightms.message m SET status = 'failed', pending = NULL, failed_at = t_now,
			error = 'the phone did not report within its lease ' || (m.attempts + 1)::text || ' times',
			attempts = m.attempts + 1, lease_expires_at = NULL
		 WHERE m.account_id = acct AND m.pending AND m.status = 'claimed' AND m.lease_expires_at < t_now
		   AND m.attempts + 1 >= max_attempts
		RETURNING m.message_id, m.campaign_id
	LOOP
		k := k + 1;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	n := n + k;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
	UPDATE eightms.message m SET status = 'queued', pending = true, failed_at = NULL, error = NULL,
		attempts = m.attempts + 1, lease_expires_at = NULL
	 WHERE m.account_id = acct AND m.pending AND m.status = 'claimed' AND m.lease_expires_at < t_now;
	GET DIAGNOSTICS k = ROW_COUNT;
	RETURN n + k;
END
$$;

-- Queued work of an account's phones that went offline (or were unpaired:
-- see phone_gone) moves to its healthiest phones online.  Found from the
-- phones, so that a claim does not walk the account's queue.  Spread as
-- send_messages spreads new conversations: the i-th message (in send
-- order) to the i-th free slot, shortest queue first, so that the queues
-- even out; the phones and their queues are read once, not once per
-- message.  With no healthy phone a message is left to any phone
-- (unassigned), as pick_phone would.
CREATE FUNCTION eightms.move_offline_queues(acct uuid, any_unpaired boolean) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer := 0;
	k integer;
	window_start timestamptz := now() - current_setting('eightms.online_window')::interval;
	offline uuid[];
	moving uuid[];
	targets uuid[];
	t record;
BEGIN
	SELECT array_agg(p.phone_id) INTO offline FROM eightms.phone p
	 WHERE p.account_id = acct
	   AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at, window_start, any_unpaired);
	IF offline IS NULL THEN
		RETURN 0;
	END IF;
	SELECT array_agg(m.message_id ORDER BY m.send_at, m.message_id) INTO moving FROM eightms.message m
	 WHERE m.account_id = acct AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued';
	IF moving IS NULL THEN
		RETURN 0;
	END IF;
	targets := ARRAY(SELECT h.phone_id
					   FROM eightms.healthy_phones(acct) h, generate_series(1, cardinality(moving)) g
					  ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id
					  LIMIT cardinality(moving));
	-- One write per target phone.  Without targets, unnest pads them with
	-- NULL: unassigned.
	FOR t IN SELECT u.phone, array_agg(u.id) AS ids FROM unnest(moving, targets) AS u(id, phone) GROUP BY u.phone LOOP
		UPDATE eightms.message m SET phone_id = t.phone
		 WHERE m.account_id = acct AND m.message_id = ANY (t.ids)
		   -- Again on the row as updated: a claim may have taken it meanwhile.
		   AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued';
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	END LOOP;
	RETURN n;
END
$$;

-- A claim for its account (acct) moves the queued work of its phones that
-- are gone: unpairing moves a phone's work away itself (unpair_phone,
-- pair_phone), so a claim looks only at phones unpaired within the online
-- window, for what a send racing the unpairing queued.  The scheduled job
-- (every minute, no account) does so for every account, each in turn, with
-- phones unpaired at any time, and first expires and requeues
-- (expire_account_messages).  A claim does the latter for what it picks:
-- it never hands out an expired message, and a phone takes back its own
-- run-out leases itself.
CREATE FUNCTION eightms.expire_messages(acct uuid DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer := 0;
	a uuid;
BEGIN
	IF acct IS NOT NULL THEN
		RETURN eightms.move_offline_queues(acct, false);
	END IF;
	FOR a IN SELECT x.account_id FROM eightms.account x LOOP
		n := n + eightms.expire_account_messages(a) + eightms.move_offline_queues(a, true);
	END LOOP;
	RETURN n;
END
$$;

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-expire-messages', '* * * * *', 'SELECT eightms.expire_messages()',
	 'requeue messages whose lease ran out, fail them after the last attempt, expire old ones');

-- Claiming, step 1: due messages of one queue, locked in send_at order,
-- at most lim, with what their fate is decided from: the phone's own queue
-- (own, with its own claims whose lease ran out: it takes them back), or
-- the messages no phone was chosen for; each straight off its index
-- (message_queue_idx, message_unassigned_idx).  Locked rows others hold
-- are skipped.  Each row's ctid is kept so that the claim's update finds it
-- without the primary key: the rows are locked, so it cannot move meanwhile.
-- A campaign message whose send window has closed is never handed out: the
-- campaigns job moves it to its next window (sql/campaigns.sql).
CREATE FUNCTION eightms.lock_due_messages(acct uuid, me uuid, own boolean, lim integer, t_now timestamptz)
RETURNS TABLE (message_id uuid, tid tid, segments integer, conversation_id uuid, peer_number text,
			   created_at timestamptz, expires_at timestamptz, status text, attempts integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	IF own THEN
		RETURN QUERY
		SELECT m.message_id, m.ctid, m.segments, m.conversation_id, m.peer_number, m.created_at, m.expires_at,
			   m.status, m.attempts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= t_now
		   AND (m.status = 'queued' OR m.lease_expires_at < t_now)
		   AND (m.window_closes_at IS NULL OR m.window_closes_at > t_now)
		 ORDER BY m.send_at
		 LIMIT lim
		   FOR UPDATE SKIP LOCKED;
	ELSE
		RETURN QUERY
		SELECT m.message_id, m.ctid, m.segments, m.conversation_id, m.peer_number, m.created_at, m.expires_at,
			   m.status, m.attempts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= t_now
		   AND (m.window_closes_at IS NULL OR m.window_closes_at > t_now)
		 ORDER BY m.send_at
		 LIMIT lim
		   FOR UPDATE SKIP LOCKED;
	END IF;
END
$$;

-- Claiming, step 2: what becomes of each message locked (in the order of
-- the arrays): what expired while queued is not sent; what was queued
-- before its number opted out is canceled (a STOP cancels what waits for
-- the number itself: this is for a number the account put on its opt-out
-- list, or a send that did not take the consent lock; the STOP
-- confirmation, queued with the opt-out, and help replies after it go
-- out); a lease that ran out on the last allowed attempt fails the
-- message; the rest is claimed (a run-out lease as a new attempt).  The
-- opt-outs are read after the rows are locked, in a statement of their
-- own: a snapshot no older than the lock's.
CREATE FUNCTION eightms.claim_fates(acct uuid, peers text[], created timestamptz[], expires timestamptz[],
									statuses text[], attempts integer[], t_now timestamptz)
RETURNS text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	opted text[];
	opted_at timestamptz[];
BEGIN
	SELECT array_agg(o.number), array_agg(o.opted_out_at) INTO opted, opted_at
	  FROM eightms.opt_out o
	 WHERE o.account_id = acct AND o.number = ANY (peers);
	RETURN ARRAY(
		SELECT CASE WHEN u.expires_at < t_now THEN 'expired'
					WHEN opted IS NOT NULL
						 AND EXISTS (SELECT FROM unnest(opted, opted_at) AS o(number, at)
									  WHERE o.number = u.peer AND o.at > u.created_at)
					THEN 'canceled'
					WHEN u.status = 'claimed' AND u.attempts + 1 >= max_attempts THEN 'failed'
					ELSE 'claimed' END
		  FROM unnest(peers, created, expires, statuses, attempts) WITH ORDINALITY
			   AS u(peer, created_at, expires_at, status, attempts, i)
		 ORDER BY u.i);
END
$$;

-- Claiming, step 3: each message locked takes its fate, one write per
-- fate; returns the messages claimed, as claim_messages answers them.
CREATE FUNCTION eightms.settle_claims(acct uuid, me uuid, ids uuid[], tids tid[], fates text[], t_now timestamptz)
RETURNS TABLE (message_id uuid, to_number text, body text, encoding text, segments integer,
			   attempt integer, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	lease_end timestamptz := t_now + current_setting('eightms.message_lease')::interval;
	f text;
	f_ids uuid[];
	f_tids tid[];
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	FOR f, f_ids, f_tids IN
		SELECT u.fate, array_agg(u.id), array_agg(u.tid) FROM unnest(ids, tids, fates) AS u(id, tid, fate) GROUP BY u.fate
	LOOP
		IF f = 'claimed' THEN
			RETURN QUERY
			UPDATE eightms.message m SET status = 'claimed', pending = true,
				attempts = CASE WHEN m.status = 'claimed' THEN m.attempts + 1 ELSE m.attempts END,
				phone_id = me, claimed_at = t_now, lease_expires_at = lease_end
			 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
			RETURNING m.message_id, m.peer_number, m.body, m.encoding, m.segments, m.attempts + 1, m.lease_expires_at;
		ELSIF f = 'expired' THEN
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'expired', pending = NULL, lease_expires_at = NULL,
					error = 'not sent before it expired'
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		ELSIF f = 'canceled' THEN
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'canceled', pending = NULL, lease_expires_at = NULL,
					error = 'recipient opted out', canceled_at = t_now
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		ELSE
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'failed', pending = NULL, lease_expires_at = NULL,
					error = 'the phone did not report within its lease ' || (m.attempts + 1)::text || ' times',
					failed_at = t_now, attempts = m.attempts + 1
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		END IF;
	END LOOP;
	-- What was not claimed and is a campaign's: its recipient follows
	-- (a claimed one stays queued).
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
END
$$;

-- Claiming, step 4: conversations whose messages no phone was chosen for
-- (none was online) get the phone that sends them, so that their next
-- message and the replies thread on that handset.  A conversation locked
-- meanwhile is left: a send or a reply holding it gives it a phone itself,
-- and waiting for it while the claim holds message rows could deadlock
-- with a STOP, which takes the conversation first.
CREATE FUNCTION eightms.give_conversations_phone(acct uuid, me uuid, convs uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	locked uuid[] := '{}';
	c uuid;
BEGIN
	FOR c IN SELECT c2.conversation_id FROM eightms.conversation c2
			  WHERE c2.account_id = acct AND c2.phone_id IS NULL AND c2.conversation_id = ANY (convs)
			  ORDER BY c2.peer_number
				FOR NO KEY UPDATE SKIP LOCKED LOOP
		locked := locked || c;
	END LOOP;
	UPDATE eightms.conversation x SET phone_id = me
	 WHERE x.account_id = acct AND x.conversation_id = ANY (locked);
END
$$;

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
	t_now timestamptz := now();
	lim integer;
	by_segments boolean := false;
	win interval;
	budget integer;
	recent timestamptz[];
	picked uuid[];
	tids tid[];
	segs integer[];
	convs uuid[];
	peers text[];
	created timestamptz[];
	expires timestamptz[];
	statuses text[];
	tries integer[];
	fates text[];
	keep integer;
	n integer;
BEGIN
	-- What a claim usually finds first: whether a phone of the account is
	-- gone, whose work then moves first (expire_messages), and whether
	-- either queue the picks below read has anything due.  With nothing
	-- due, as for an idle phone's every poll, the claim is over without the
	-- pacing lock and the picks.
	PERFORM FROM eightms.phone p
	 WHERE p.account_id = acct
	   AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at,
							  t_now - current_setting('eightms.online_window')::interval, false)
	 LIMIT 1;
	IF FOUND THEN
		PERFORM eightms.expire_messages(acct);
	ELSE
		PERFORM FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= t_now
		   AND (m.status = 'queued' OR m.lease_expires_at < t_now)
		 LIMIT 1;
		IF NOT FOUND THEN
			PERFORM FROM eightms.message m
			 WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= t_now
			 LIMIT 1;
			IF NOT FOUND THEN
				RETURN;
			END IF;
		END IF;
	END IF;
	max := least(greatest(coalesce(max, 10), 0), 100);
	-- Pacing: this phone's claims within its window, kept on its row; the
	-- row lock makes two concurrent claims of one phone count each other.
	-- A phone without a limit (no row here) is neither read twice nor locked.
	SELECT p.rate_limit, p.rate_unit = 'segments', p.rate_window, p.recent_claims
	  INTO lim, by_segments, win, recent
	  FROM eightms.phone p
	 WHERE p.account_id = acct AND p.phone_id = me AND p.rate_limit IS NOT NULL
	   FOR NO KEY UPDATE;
	IF lim IS NOT NULL THEN
		recent := ARRAY(SELECT t FROM unnest(recent) t WHERE t > t_now - win);
		-- One entry in recent per message, or per segment, claimed.
		budget := greatest(lim - cardinality(recent), 0);
		max := least(max, budget);
	END IF;
	IF max = 0 THEN
		RETURN;
	END IF;
	-- This phone's own queue first, then messages no phone was chosen for,
	-- whose conversations are kept (step 4), after a NULL for each of this
	-- phone's own messages.
	SELECT coalesce(array_agg(q.message_id), '{}'), coalesce(array_agg(q.tid), '{}'),
		   coalesce(array_agg(q.segments), '{}'), coalesce(array_agg(q.peer_number), '{}'),
		   coalesce(array_agg(q.created_at), '{}'), coalesce(array_agg(q.expires_at), '{}'),
		   coalesce(array_agg(q.status), '{}'), coalesce(array_agg(q.attempts), '{}')
	  INTO picked, tids, segs, peers, created, expires, statuses, tries
	  FROM eightms.lock_due_messages(acct, me, true, max, t_now) q;
	IF cardinality(picked) < max THEN
		convs := array_fill(NULL::uuid, ARRAY[cardinality(picked)]);
		SELECT picked || coalesce(array_agg(q.message_id), '{}'), tids || coalesce(array_agg(q.tid), '{}'),
			   segs || coalesce(array_agg(q.segments), '{}'), peers || coalesce(array_agg(q.peer_number), '{}'),
			   created || coalesce(array_agg(q.created_at), '{}'), expires || coalesce(array_agg(q.expires_at), '{}'),
			   statuses || coalesce(array_agg(q.status), '{}'), tries || coalesce(array_agg(q.attempts), '{}'),
			   convs || coalesce(array_agg(q.conversation_id), '{}')
		  INTO picked, tids, segs, peers, created, expires, statuses, tries, convs
		  FROM eightms.lock_due_messages(acct, me, false, max - cardinality(picked), t_now) q;
	END IF;
	IF cardinality(picked) = 0 THEN
		RETURN;
	END IF;
	fates := eightms.claim_fates(acct, peers, created, expires, statuses, tries, t_now);
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
	RETURN QUERY SELECT * FROM eightms.settle_claims(acct, me, picked, tids, fates, t_now);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF convs[cardinality(convs)] IS NOT NULL THEN
		PERFORM eightms.give_conversations_phone(acct, me,
			ARRAY(SELECT u.conv FROM unnest(convs, fates) AS u(conv, fate) WHERE u.fate = 'claimed'));
	END IF;
	IF lim IS NOT NULL AND n > 0 THEN
		IF by_segments THEN
			n := (SELECT sum(u.s) FROM unnest(segs, fates) AS u(s, f) WHERE u.f = 'claimed');
		END IF;
		recent := recent || array_fill(t_now, ARRAY[n]);
		UPDATE eightms.phone p SET recent_claims = recent
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

-- Reporting, the usual batch's step: the reports of one status (st) move
-- their messages, each checked against the row as the update finds it, with
-- no locking pass first; ids, ats and errs are the reports', in id order
-- (each id once), so that a message's report is found by a binary search
-- (width_bucket) rather than a walk of the batch.  Returns the messages
-- moved.  One statement per status, each written out
-- with its status as a literal: Citus cannot deparse a comparison of the
-- parameter inside the shard's statement.  No column is set to a bare
-- array element either: Citus 13.2.2's deparser takes that for an
-- assignment to an element and crashes the backend; inside coalesce with
-- the column (NULL until this report: the status check says so) it is the
-- same value.
CREATE FUNCTION eightms.apply_reports(acct uuid, me uuid, st text, ids uuid[], ats timestamptz[], errs text[])
RETURNS TABLE (message_id uuid, campaign_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	IF st = 'sent' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'sent', pending = NULL, lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, ats[width_bucket(x.message_id, ids)]),
			error = CASE WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND (x.status IN ('queued', 'claimed') OR eightms.given_up(x.status, x.claimed_at, x.sent_at, x.error))
		RETURNING x.message_id, x.campaign_id;
	ELSIF st = 'delivered' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'delivered', pending = NULL, lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, ats[width_bucket(x.message_id, ids)]),
			delivered_at = coalesce(ats[width_bucket(x.message_id, ids)], x.delivered_at),
			error = CASE WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND (x.status IN ('queued', 'claimed', 'sent')
				OR eightms.given_up(x.status, x.claimed_at, x.sent_at, x.error))
		RETURNING x.message_id, x.campaign_id;
	ELSIF st = 'failed' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'failed', pending = NULL, lease_expires_at = NULL,
			failed_at = coalesce(ats[width_bucket(x.message_id, ids)], x.failed_at),
			error = left(coalesce(errs[width_bucket(x.message_id, ids)], 'failed on the phone'), 500),
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND x.status NOT IN ('delivered', 'failed', 'expired', 'canceled')
		RETURNING x.message_id, x.campaign_id;
	END IF;
END
$$;

-- Reporting, a batch that names a message more than once: what each
-- report does, given the reports (in batch order) and the state of the
-- phone's messages they name (cur_*, locked).  The state before each report
-- is what the reports ahead of it in the batch left, so the answer is the
-- same as applying them one by one.
CREATE FUNCTION eightms.report_steps(ids uuid[], sts text[], errs text[], ats timestamptz[],
									 cur_ids uuid[], cur_statuses text[], cur_given_up boolean[])
RETURNS TABLE (ord bigint, id uuid, st text, err text, at timestamptz, was text, mine boolean, moves boolean)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH rep AS (
		SELECT * FROM unnest(ids, sts, errs, ats) WITH ORDINALITY AS r(id, st, err, at, ord)),
	cur AS (
		SELECT * FROM unnest(cur_ids, cur_statuses, cur_given_up) AS c(message_id, status, given_up)),
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
		  FROM ahead)
	SELECT before.ord, before.id, before.st, before.err, before.at, before.was, before.mine,
		   before.mine AND before.st IN ('sent', 'delivered', 'failed')
		   AND ((before.was NOT IN ('delivered', 'failed', 'expired', 'canceled')
				 AND (before.st = 'failed' OR eightms.status_rank(before.st) > eightms.status_rank(before.was)))
				OR (before.given_up AND before.was = before.s0 AND before.st IN ('sent', 'delivered')))
	  FROM before
	 ORDER BY before.ord
$$;

-- A batch of reports: each message is written once however many reports
-- it has, and the answer is the same as applying the reports one by one.
CREATE FUNCTION eightms_api.report_messages(reports jsonb)
RETURNS TABLE (message_id uuid, status text, accepted boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	t_now timestamptz := now();
	ids uuid[];
	sts text[];
	errs text[];
	ats timestamptz[];
	sent_ids uuid[];
	sent_ats timestamptz[];
	delivered_ids uuid[];
	delivered_ats timestamptz[];
	failed_ids uuid[];
	failed_ats timestamptz[];
	failed_errs text[];
	moved uuid[] := '{}';
	still_ids uuid[];
	still_statuses text[];
	cur_given_up boolean[];
	f record;
	-- The campaign messages moved (sql/campaign_stats.sql).
	camp uuid[];
	c uuid;
BEGIN
	IF jsonb_typeof(reports) IS DISTINCT FROM 'array' OR jsonb_array_length(reports) > 10000 THEN
		RAISE EXCEPTION 'reports must be a JSON array of at most 10000 {id, status, error, at}' USING ERRCODE = '22023';
	END IF;
	IF eightms.ids_are_distinct(reports) THEN
		-- The usual batch names each message once: one write per status.
		-- The reports' ids and statuses in batch order, for the answer, and
		-- each status's reports in id order (apply_reports), read at once.
		SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(r.st), '{}'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'sent'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'sent'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'delivered'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'delivered'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'failed'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'failed'),
			   array_agg(r.err ORDER BY r.id) FILTER (WHERE r.st = 'failed')
		  INTO ids, sts, sent_ids, sent_ats, delivered_ids, delivered_ats, failed_ids, failed_ats, failed_errs
		  FROM (SELECT eightms.try_uuid(t.x ->> 'id') AS id, t.x ->> 'status' AS st, t.x ->> 'error' AS err,
					   least(coalesce(eightms.json_time(t.x -> 'at'), t_now), t_now) AS at
				  FROM jsonb_array_elements(reports) AS t(x)
				-- Each report read once, not once for each aggregate.
				OFFSET 0) r;
		IF sent_ids IS NOT NULL THEN
			SELECT coalesce(array_agg(a.message_id), '{}'), array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'sent', sent_ids, sent_ats, NULL) a;
		END IF;
		IF delivered_ids IS NOT NULL THEN
			SELECT moved || coalesce(array_agg(a.message_id), '{}'),
				   camp || array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'delivered', delivered_ids, delivered_ats, NULL) a;
		END IF;
		IF failed_ids IS NOT NULL THEN
			SELECT moved || coalesce(array_agg(a.message_id), '{}'),
				   camp || array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'failed', failed_ids, failed_ats, failed_errs) a;
		END IF;
		IF camp IS NOT NULL THEN
			PERFORM eightms.follow_campaign_messages(acct, camp);
		END IF;
		-- What did not move: late, repeated, malformed or not this phone's
		-- (the ids are distinct: when as many moved, all did).
		IF cardinality(moved) < cardinality(ids) THEN
			still_ids := ARRAY(SELECT u FROM unnest(ids) u EXCEPT SELECT u FROM unnest(moved) u);
		END IF;
		IF cardinality(still_ids) > 0 THEN
			SELECT array_agg(m.message_id), array_agg(m.status) INTO still_ids, still_statuses
			  FROM eightms.message m
			 WHERE m.account_id = acct AND m.direction = 'out' AND m.phone_id = me AND m.message_id = ANY (still_ids);
		ELSE
			still_ids := NULL;
		END IF;
		RETURN QUERY
		SELECT r.id, r.st,
			   (mv.id IS NOT NULL OR still.status IS NOT NULL) AND coalesce(r.st IN ('sent', 'delivered', 'failed'), false),
			   CASE WHEN mv.id IS NOT NULL THEN NULL
					WHEN still.status IS NULL THEN 'no such message for this phone'
					WHEN r.st IS NULL OR r.st NOT IN ('sent', 'delivered', 'failed')
					THEN 'status must be sent, delivered or failed'
					ELSE 'already ' || still.status END
		  FROM unnest(ids, sts) WITH ORDINALITY AS r(id, st, ord)
		  -- Joined, not r.id = ANY (moved): that walks the batch for each report.
		  LEFT JOIN unnest(moved) AS mv(id) ON mv.id = r.id
		  LEFT JOIN unnest(still_ids, still_statuses) AS still(id, status) ON still.id = r.id
		 ORDER BY r.ord;
		RETURN;
	END IF;
	-- The reports, in batch order; a malformed id names no message.
	SELECT coalesce(array_agg(eightms.try_uuid(t.x ->> 'id')), '{}'), coalesce(array_agg(t.x ->> 'status'), '{}'),
		   coalesce(array_agg(t.x ->> 'error'), '{}'),
		   coalesce(array_agg(least(coalesce(eightms.json_time(t.x -> 'at'), t_now), t_now)), '{}')
	  INTO ids, sts, errs, ats
	  FROM jsonb_array_elements(reports) AS t(x);
	-- A message named more than once: the phone's messages named are
	-- locked, then read, and each report is folded in (report_steps).
	PERFORM FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.phone_id = me
	 ORDER BY m.message_id
	   FOR NO KEY UPDATE;
	SELECT array_agg(m.message_id), array_agg(m.status),
		   array_agg(eightms.given_up(m.status, m.claimed_at, m.sent_at, m.error))
	  INTO still_ids, still_statuses, cur_given_up
	  FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.phone_id = me;
	FOR f IN
		SELECT step.id,
			   (array_agg(step.st ORDER BY step.ord DESC))[1] AS st,
			   (array_agg(step.at ORDER BY step.ord) FILTER (WHERE step.st IN ('sent', 'delivered')))[1] AS sent_at,
			   max(step.at) FILTER (WHERE step.st = 'delivered') AS delivered_at,
			   max(step.at) FILTER (WHERE step.st = 'failed') AS failed_at,
			   max(left(coalesce(step.err, 'failed on the phone'), 500)) FILTER (WHERE step.st = 'failed') AS error
		  FROM eightms.report_steps(ids, sts, errs, ats, still_ids, still_statuses, cur_given_up) step
		 WHERE step.moves
		 GROUP BY step.id
	LOOP
		UPDATE eightms.message x SET
			status = f.st,
			pending = NULL,
			lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, f.sent_at),
			delivered_at = coalesce(f.delivered_at, x.delivered_at),
			failed_at = coalesce(f.failed_at, x.failed_at),
			error = CASE WHEN f.error IS NOT NULL THEN f.error
						 WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = f.id
		RETURNING x.campaign_id INTO c;
		IF c IS NOT NULL THEN
			camp := camp || f.id;
		END IF;
	END LOOP;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
	RETURN QUERY
	SELECT step.id, step.st,
		   step.mine AND coalesce(step.st IN ('sent', 'delivered', 'failed'), false),
		   CASE WHEN NOT step.mine THEN 'no such message for this phone'
				WHEN step.st IS NULL OR step.st NOT IN ('sent', 'delivered', 'failed')
				THEN 'status must be sent, delivered or failed'
				WHEN NOT step.moves THEN 'already ' || step.was END
	  FROM eightms.report_steps(ids, sts, errs, ats, still_ids, still_statuses, cur_given_up) step
	 ORDER BY step.ord;
END
$$;

GRANT EXECUTE ON FUNCTION eightms_api.claim_messages(integer), eightms_api.report_messages(jsonb)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.lock_due_messages(uuid, uuid, boolean, integer, timestamptz),
	eightms.claim_fates(uuid, text[], timestamptz[], timestamptz[], text[], integer[], timestamptz),
	eightms.settle_claims(uuid, uuid, uuid[], tid[], text[], timestamptz),
	eightms.give_conversations_phone(uuid, uuid, uuid[]),
	eightms.apply_reports(uuid, uuid, text, uuid[], timestamptz[], text[]),
	eightms.report_steps(uuid[], text[], text[], timestamptz[], uuid[], text[], boolean[])
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.expire_messages(uuid), eightms.expire_account_messages(uuid),
	eightms.move_offline_queues(uuid, boolean), eightms.status_rank(text),
	eightms.given_up(text, timestamptz, timestamptz, text), eightms.sent_regardless(text, text),
	eightms.phone_gone(timestamptz, timestamptz, timestamptz, boolean)
TO eightms_user, eightms_phone, eightms_dba;
