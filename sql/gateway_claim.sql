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

GRANT EXECUTE ON FUNCTION eightms_api.claim_messages(integer), eightms_api.report_messages(jsonb)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.expire_messages(uuid), eightms.status_rank(text),
	eightms.given_up(text, timestamptz, timestamptz, text), eightms.sent_regardless(text, text),
	eightms.phone_gone(timestamptz, timestamptz, timestamptz, boolean)
TO eightms_user, eightms_phone, eightms_dba;
