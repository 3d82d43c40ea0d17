-- campaign_stats.sql: what becomes of a campaign's messages, counted, and
-- the replies and opt-outs attributed to it (doc/campaigns.md, "Stats and
-- attribution").
--
-- A recipient row follows its message (sql/campaigns.sql): the gateway's
-- functions that move messages (report_messages, a claim's cancel or
-- expiry, expire_messages, cancel_queued, an opt-out) hand the campaign
-- messages of their batch to follow_campaign_messages, and only when the
-- batch has any: traffic that is not a campaign's pays nothing.  Every
-- move of a recipient is counted in the same transaction, into
-- campaign_counter, which a stats call sums.
--
-- The counters are kept in 16 rows per campaign (a slot each, picked by
-- the backend), summed when read: one row per campaign would be locked by
-- every transaction that counts, until it commits, and every phone's
-- report batches of a large campaign would then wait on each other.  Two
-- transactions collide only when their backends share a slot.

-- An account option: how long after a campaign's message reached a number
-- a reply or an opt-out from that number counts for the campaign.  Last in
-- the table: an upgrade appends it.
ALTER TABLE eightms.account
	ADD COLUMN attribution_window interval NOT NULL DEFAULT '72 hours'
		CONSTRAINT account_attribution_window_check
			CHECK (attribution_window BETWEEN interval '1 hour' AND interval '30 days');
COMMENT ON COLUMN eightms.account.attribution_window IS
	'A reply or opt-out counts for the campaign whose message reached the number last within this long (1 hour to 30 days)';

CREATE TABLE eightms.campaign_counter (
	account_id	uuid NOT NULL,
	campaign_id	uuid NOT NULL,
	slot		smallint NOT NULL
		CONSTRAINT campaign_counter_slot_check CHECK (slot BETWEEN 0 AND 15),
	-- Recipients by their state now.
	recipients	bigint NOT NULL DEFAULT 0,
	waiting		bigint NOT NULL DEFAULT 0,
	queued		bigint NOT NULL DEFAULT 0,
	sent		bigint NOT NULL DEFAULT 0,
	delivered	bigint NOT NULL DEFAULT 0,
	failed		bigint NOT NULL DEFAULT 0,
	expired		bigint NOT NULL DEFAULT 0,
	canceled	bigint NOT NULL DEFAULT 0,
	-- Recipients whose message went out (reached_at set), replied, opted out.
	reached		bigint NOT NULL DEFAULT 0,
	replied		bigint NOT NULL DEFAULT 0,
	opted_out	bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, campaign_id, slot),
	FOREIGN KEY (account_id, campaign_id) REFERENCES eightms.campaign (account_id, campaign_id) ON DELETE CASCADE
);
COMMENT ON TABLE eightms.campaign_counter IS
	'A campaign''s recipients counted by state, reached, replied and opted out, in slots summed when read';
SELECT pg_catalog.pg_extension_config_dump('eightms.campaign_counter', '');
ALTER TABLE eightms.campaign_counter ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.campaign_counter FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.campaign_counter
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- The gateway's functions run as their caller (a phone, a member): they
-- move recipients and count them under row-level security.
GRANT SELECT ON eightms.campaign_counter TO eightms_user, eightms_phone;
GRANT INSERT, UPDATE ON eightms.campaign_counter TO eightms_user, eightms_phone;
GRANT SELECT ON eightms.campaign_recipient TO eightms_phone;
GRANT UPDATE (state, reached_at, replied_at, opted_out_at) ON eightms.campaign_recipient TO eightms_user, eightms_phone;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('account', 'attribution_window', 'operational', 'account', 'account_lifetime', 'setting'),
	('campaign_counter', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'campaign_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'slot', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'recipients', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'waiting', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'queued', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'sent', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'delivered', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'failed', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'expired', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'canceled', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'reached', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'replied', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'opted_out', 'operational', 'account', 'account_lifetime', 'count');

-- A recipient's state moves forward only: waiting, queued, sent, then one
-- end.  The one move back is a message the gateway gave up (expired,
-- canceled, failed for want of a report: eightms.given_up) that its phone
-- then reports sent or delivered: it went out, and the recipient follows.
-- A message cannot leave any other end (sql/gateway_claim.sql), so that
-- move is allowed from every end but delivered.  Inlined.
CREATE FUNCTION eightms.recipient_moves(was text, becomes text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN was IN ('failed', 'expired', 'canceled') THEN becomes IN ('sent', 'delivered')
				WHEN was = 'delivered' THEN false
				WHEN was = 'sent' THEN becomes IN ('delivered', 'failed')
				WHEN was = 'queued' THEN becomes IN ('sent', 'delivered', 'failed', 'expired', 'canceled')
				WHEN was = 'waiting' THEN becomes IN ('queued', 'sent', 'delivered', 'failed', 'expired', 'canceled')
				ELSE false END
$$;

-- Count moves of recipients, one element each: its campaign, the state it
-- had (NULL: a new recipient) and has now (NULL: removed), and 1 where it
-- was reached, replied or opted out by this move.  One write per campaign,
-- into this backend's slot, campaigns in id order (two transactions take
-- their rows in the same order).  The fan-out counts its new recipients
-- here (becomes 'waiting'), the release its waiting ones queued.
CREATE FUNCTION eightms.count_recipient_moves(acct uuid, camps uuid[], was text[], becomes text[],
											  reached integer[] DEFAULT NULL, replied integer[] DEFAULT NULL,
											  opted integer[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	my_slot smallint := (pg_backend_pid() % 16)::smallint;
	d record;
BEGIN
	-- One upsert of VALUES per campaign (an INSERT ... SELECT is no
	-- single-shard statement for Citus).
	FOR d IN
		SELECT u.camp,
			   count(*) FILTER (WHERE u.was IS NULL AND u.becomes IS NOT NULL)
				 - count(*) FILTER (WHERE u.was IS NOT NULL AND u.becomes IS NULL) AS recipients,
			   count(*) FILTER (WHERE u.becomes = 'waiting') - count(*) FILTER (WHERE u.was = 'waiting') AS waiting,
			   count(*) FILTER (WHERE u.becomes = 'queued') - count(*) FILTER (WHERE u.was = 'queued') AS queued,
			   count(*) FILTER (WHERE u.becomes = 'sent') - count(*) FILTER (WHERE u.was = 'sent') AS sent,
			   count(*) FILTER (WHERE u.becomes = 'delivered') - count(*) FILTER (WHERE u.was = 'delivered') AS delivered,
			   count(*) FILTER (WHERE u.becomes = 'failed') - count(*) FILTER (WHERE u.was = 'failed') AS failed,
			   count(*) FILTER (WHERE u.becomes = 'expired') - count(*) FILTER (WHERE u.was = 'expired') AS expired,
			   count(*) FILTER (WHERE u.becomes = 'canceled') - count(*) FILTER (WHERE u.was = 'canceled') AS canceled,
			   coalesce(sum(u.reached), 0) AS reached, coalesce(sum(u.replied), 0) AS replied,
			   coalesce(sum(u.opted), 0) AS opted
		  FROM unnest(camps, was, becomes, reached, replied, opted) AS u(camp, was, becomes, reached, replied, opted)
		 WHERE u.camp IS NOT NULL
		 GROUP BY u.camp
		 ORDER BY u.camp
	LOOP
		INSERT INTO eightms.campaign_counter AS c
			(account_id, campaign_id, slot, recipients, waiting, queued, sent, delivered, failed, expired, canceled,
			 reached, replied, opted_out)
		VALUES (acct, d.camp, my_slot, d.recipients, d.waiting, d.queued, d.sent, d.delivered,
				d.failed, d.expired, d.canceled, d.reached, d.replied, d.opted)
		ON CONFLICT (account_id, campaign_id, slot) DO UPDATE
		   SET recipients = c.recipients + EXCLUDED.recipients, waiting = c.waiting + EXCLUDED.waiting,
			   queued = c.queued + EXCLUDED.queued, sent = c.sent + EXCLUDED.sent,
			   delivered = c.delivered + EXCLUDED.delivered, failed = c.failed + EXCLUDED.failed,
			   expired = c.expired + EXCLUDED.expired, canceled = c.canceled + EXCLUDED.canceled,
			   reached = c.reached + EXCLUDED.reached, replied = c.replied + EXCLUDED.replied,
			   opted_out = c.opted_out + EXCLUDED.opted_out;
	END LOOP;
END
$$;

-- The recipients of these messages (those of a campaign; the others are
-- skipped) take their message's state, where that is a move forward
-- (recipient_moves); reached_at is set when it is first sent (its
-- message's sent_at).  Called by
-- the gateway's functions after they moved messages, with the ids of the
-- campaign messages among them only.  The recipients are locked in key
-- order first and read, so that each move is counted from the state it
-- left.  As its caller: row-level security holds.
CREATE FUNCTION eightms.follow_campaign_messages(acct uuid, ids uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	t_now timestamptz := now();
	camps uuid[];
	phones text[];
	mids uuid[];
	sts text[];
	sents timestamptz[];
	was text[];
	becomes text[];
	reached integer[];
	at timestamptz[];
BEGIN
	-- The messages in id order: each recipient finds its own by a binary
	-- search (width_bucket), as apply_reports does, with no join.
	SELECT array_agg(m.campaign_id ORDER BY m.message_id), array_agg(m.peer_number ORDER BY m.message_id),
		   array_agg(m.message_id ORDER BY m.message_id),
		   array_agg(CASE WHEN m.status IN ('queued', 'claimed') THEN 'queued' ELSE m.status END ORDER BY m.message_id),
		   array_agg(m.sent_at ORDER BY m.message_id)
	  INTO camps, phones, mids, sts, sents
	  FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.campaign_id IS NOT NULL;
	IF camps IS NULL THEN
		RETURN;
	END IF;
	PERFORM FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.phone = ANY (phones) AND r.message_id = ANY (mids)
	 ORDER BY r.campaign_id, r.phone
	   FOR NO KEY UPDATE;
	-- One table, no subquery: Citus plans a generic plan of nothing else.
	SELECT array_agg(r.campaign_id ORDER BY r.message_id), array_agg(r.message_id ORDER BY r.message_id),
		   array_agg(r.state ORDER BY r.message_id),
		   array_agg(sts[width_bucket(r.message_id, mids)] ORDER BY r.message_id),
		   array_agg(CASE WHEN r.reached_at IS NULL
							   AND (sts[width_bucket(r.message_id, mids)] IN ('sent', 'delivered')
									OR sents[width_bucket(r.message_id, mids)] IS NOT NULL)
						  THEN 1 ELSE 0 END ORDER BY r.message_id),
		   -- A message sent and then failed (one batch reported both) was
		   -- sent all the same.
		   array_agg(CASE WHEN sts[width_bucket(r.message_id, mids)] IN ('sent', 'delivered')
						  THEN coalesce(r.reached_at, sents[width_bucket(r.message_id, mids)], t_now)
						  ELSE coalesce(r.reached_at, sents[width_bucket(r.message_id, mids)]) END ORDER BY r.message_id)
	  INTO camps, mids, was, becomes, reached, at
	  FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.phone = ANY (phones) AND r.message_id = ANY (mids)
	   AND eightms.recipient_moves(r.state, sts[width_bucket(r.message_id, mids)]);
	IF camps IS NULL THEN
		RETURN;
	END IF;
	-- The moving ones, in message id order; each set from its own element,
	-- inside coalesce (Citus takes a bare array element for an assignment
	-- to an element: sql/gateway_claim.sql, apply_reports).
	UPDATE eightms.campaign_recipient r
	   SET state = coalesce(becomes[width_bucket(r.message_id, mids)], r.state),
		   reached_at = coalesce(r.reached_at, at[width_bucket(r.message_id, mids)])
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.message_id = ANY (mids);
	PERFORM eightms.count_recipient_moves(acct, camps, was, becomes, reached);
END
$$;

-- Replies and opt-outs from these numbers (peers, each with when it came:
-- ats; opted: an opt-out, else a reply), each attributed to the campaign
-- whose message reached the number last within the account's attribution
-- window before it, by the index campaign_recipient_reached_idx.  A
-- recipient's first reply and first opt-out are kept, and counted once.
CREATE FUNCTION eightms.attribute_answers(acct uuid, peers text[], ats timestamptz[], opted boolean[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	win interval;
	a record;
	camp uuid;
	rep uuid[];
	opt uuid[];
BEGIN
	SELECT x.attribution_window INTO win FROM eightms.account x WHERE x.account_id = acct;
	-- Each number's first reply and first opt-out of the batch, then its
	-- campaign by one probe of the index, then its recipient by key: every
	-- statement on one table, for Citus.
	FOR a IN
		SELECT u.peer, min(u.at) FILTER (WHERE NOT u.opt) AS replied, min(u.at) FILTER (WHERE u.opt) AS opted
		  FROM unnest(peers, ats, opted) AS u(peer, at, opt)
		 WHERE u.peer IS NOT NULL AND u.at IS NOT NULL
		 GROUP BY u.peer
		 ORDER BY u.peer
	LOOP
		SELECT r.campaign_id INTO camp FROM eightms.campaign_recipient r
		 WHERE r.account_id = acct AND r.phone = a.peer AND r.reached_at IS NOT NULL
		   AND r.reached_at <= least(a.replied, a.opted) AND r.reached_at > least(a.replied, a.opted) - win
		 ORDER BY r.reached_at DESC
		 LIMIT 1;
		CONTINUE WHEN NOT FOUND;
		IF a.replied IS NOT NULL THEN
			UPDATE eightms.campaign_recipient r SET replied_at = a.replied
			 WHERE r.account_id = acct AND r.campaign_id = camp AND r.phone = a.peer AND r.replied_at IS NULL;
			IF FOUND THEN
				rep := rep || camp;
			END IF;
		END IF;
		IF a.opted IS NOT NULL THEN
			UPDATE eightms.campaign_recipient r SET opted_out_at = a.opted
			 WHERE r.account_id = acct AND r.campaign_id = camp AND r.phone = a.peer AND r.opted_out_at IS NULL;
			IF FOUND THEN
				opt := opt || camp;
			END IF;
		END IF;
	END LOOP;
	IF rep IS NOT NULL OR opt IS NOT NULL THEN
		PERFORM eightms.count_recipient_moves(acct, coalesce(rep, '{}') || coalesce(opt, '{}'), NULL, NULL, NULL,
			array_fill(1, ARRAY[coalesce(cardinality(rep), 0)]) || array_fill(0, ARRAY[coalesce(cardinality(opt), 0)]),
			array_fill(0, ARRAY[coalesce(cardinality(rep), 0)]) || array_fill(1, ARRAY[coalesce(cardinality(opt), 0)]));
	END IF;
END
$$;

-- ------------------------------------------------------------ API

-- The stats of campaigns of the caller's account: the given ones, or all,
-- newest first.  Sums of the counters (at most 16 rows a campaign), never
-- a scan of the recipients.  sent counts the recipients whose message went
-- out (delivered, or failed after it was sent, included).
CREATE FUNCTION eightms_api.campaigns_stats(campaign_ids uuid[] DEFAULT NULL)
RETURNS TABLE (campaign_id uuid, name text, state text, recipients bigint, waiting bigint, queued bigint,
			   sent bigint, delivered bigint, failed bigint, expired bigint, canceled bigint, replied bigint,
			   opted_out bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	IF cardinality(campaign_ids) > 1000 THEN
		RAISE EXCEPTION 'campaign_ids must be at most 1000 ids' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT c.campaign_id, c.name, c.state,
		   coalesce(s.recipients, 0), coalesce(s.waiting, 0), coalesce(s.queued, 0), coalesce(s.reached, 0),
		   coalesce(s.delivered, 0), coalesce(s.failed, 0), coalesce(s.expired, 0), coalesce(s.canceled, 0),
		   coalesce(s.replied, 0), coalesce(s.opted_out, 0)
	  FROM eightms.campaign c
	  LEFT JOIN LATERAL (
		SELECT sum(k.recipients)::bigint AS recipients, sum(k.waiting)::bigint AS waiting,
			   sum(k.queued)::bigint AS queued, sum(k.reached)::bigint AS reached,
			   sum(k.delivered)::bigint AS delivered, sum(k.failed)::bigint AS failed,
			   sum(k.expired)::bigint AS expired, sum(k.canceled)::bigint AS canceled,
			   sum(k.replied)::bigint AS replied, sum(k.opted_out)::bigint AS opted_out
		  FROM eightms.campaign_counter k
		 WHERE k.account_id = acct AND k.campaign_id = c.campaign_id) s ON true
	 WHERE c.account_id = acct AND (campaign_ids IS NULL OR c.campaign_id = ANY (campaign_ids))
	 ORDER BY c.created_at DESC, c.campaign_id DESC;
END
$$;
COMMENT ON FUNCTION eightms_api.campaigns_stats(uuid[]) IS
	'Stats of the account''s campaigns (the given ones, or all): recipients by state, sent, replied, opted out';

CREATE FUNCTION eightms_api.campaign_stats(campaign uuid)
RETURNS TABLE (campaign_id uuid, name text, state text, recipients bigint, waiting bigint, queued bigint,
			   sent bigint, delivered bigint, failed bigint, expired bigint, canceled bigint, replied bigint,
			   opted_out bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY SELECT * FROM eightms_api.campaigns_stats(ARRAY[campaign_stats.campaign]);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such campaign in this account' USING ERRCODE = 'P0002',
			HINT = 'campaigns_stats() lists the account''s campaigns.';
	END IF;
END
$$;
COMMENT ON FUNCTION eightms_api.campaign_stats(uuid) IS
	'One campaign''s stats: recipients by state, sent, replied, opted out, each recipient counted once';

-- The attribution window (owner, admin), as set_message_options sets the
-- account's sending options.
CREATE FUNCTION eightms_api.set_attribution_window(attribution_window interval) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	IF attribution_window IS NULL OR attribution_window NOT BETWEEN interval '1 hour' AND interval '30 days' THEN
		RAISE EXCEPTION 'attribution_window must be 1 hour to 30 days' USING ERRCODE = '22023',
			HINT = 'Replies and opt-outs count for the campaign that reached the number last within this long.';
	END IF;
	UPDATE eightms.account a SET attribution_window = set_attribution_window.attribution_window
	 WHERE a.account_id = eightms.current_account_id();
END
$$;
COMMENT ON FUNCTION eightms_api.set_attribution_window(interval) IS
	'Set how long after a campaign reached a number its replies and opt-outs count for it (owner, admin)';

GRANT EXECUTE ON FUNCTION eightms_api.campaigns_stats(uuid[]), eightms_api.campaign_stats(uuid),
	eightms_api.set_attribution_window(interval)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms.recipient_moves(text, text),
	eightms.count_recipient_moves(uuid, uuid[], text[], text[], integer[], integer[], integer[]),
	eightms.follow_campaign_messages(uuid, uuid[]), eightms.attribute_answers(uuid, text[], timestamptz[], boolean[])
TO eightms_user, eightms_phone;
