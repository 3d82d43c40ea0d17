-- Campaign stats and attribution (doc/campaigns.md, "Stats and
-- attribution"): a recipient follows its message through claims, reports
-- (duplicate, out of order, given up then sent), expiry, cancels and
-- opt-outs, each move counted once; the stats equal a recount of the
-- recipients and read only the counters; replies and opt-outs attributed
-- to the campaign that reached the number last within the account's
-- window, never to another account's; campaign_stats refuses another
-- account's campaign.  Recipients and their messages are made here as the
-- release would make them.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('cora');
SELECT account_id AS acct FROM eightms_api.create_account('Cora Cakes', 'America/New_York') \gset
SELECT pgrst.as_user('bram');
SELECT account_id AS other FROM eightms_api.create_account('Bram Bikes', 'America/New_York') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct) VALUES
	(:'acct', '00000000-0000-4000-8000-0000000000d1', 'cora-phone', NULL, now(), 90),
	(:'other', '00000000-0000-4000-8000-0000000000d2', 'bram-phone', NULL, now(), 90);
INSERT INTO eightms.campaign (account_id, campaign_id, name, body, created_by, state) VALUES
	(:'acct', '00000000-0000-4000-8000-00000000ca01', 'Spring', 'Spring sale', 'cora', 'running'),
	(:'acct', '00000000-0000-4000-8000-00000000ca02', 'Summer', 'Summer sale', 'cora', 'running'),
	(:'other', '00000000-0000-4000-8000-00000000cb01', 'Bikes', 'Bike sale', 'bram', 'running');

-- Queue a campaign's messages to numbers as the release does: through the
-- gateway, message.campaign_id set, the recipient queued with its message
-- (and counted as the fan-out and the release count it).
CREATE FUNCTION pg_temp.release(acct uuid, camp uuid, phone uuid, numbers text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	ids uuid[];
BEGIN
	PERFORM eightms.count_recipient_moves(acct, array_fill(camp, ARRAY[cardinality(numbers)]), NULL,
										  array_fill('waiting'::text, ARRAY[cardinality(numbers)]));
	INSERT INTO eightms.campaign_recipient (account_id, campaign_id, phone, state, time_zone, segments)
	SELECT acct, camp, n, 'waiting', 'UTC', 1 FROM unnest(numbers) n;
	ids := eightms.queue_plain_outbound(acct, (SELECT jsonb_agg(jsonb_build_object('to', n, 'body', 'Sale on') ORDER BY i)
												 FROM unnest(numbers) WITH ORDINALITY u(n, i)), 'US', false, interval '1 day');
	UPDATE eightms.message m SET campaign_id = camp, phone_id = phone
	 WHERE m.account_id = acct AND m.message_id = ANY (ids);
	UPDATE eightms.campaign_recipient r SET message_id = u.id, state = 'queued', body = NULL
	  FROM unnest(numbers, ids) u(n, id)
	 WHERE r.account_id = acct AND r.campaign_id = camp AND r.phone = u.n;
	PERFORM eightms.count_recipient_moves(acct, array_fill(camp, ARRAY[cardinality(numbers)]),
										  array_fill('waiting'::text, ARRAY[cardinality(numbers)]),
										  array_fill('queued'::text, ARRAY[cardinality(numbers)]));
END
$$;

-- The stats against a recount of the recipients.
CREATE FUNCTION pg_temp.recount(acct uuid, camp uuid) RETURNS text
LANGUAGE sql AS $$
	SELECT row(count(*), count(*) FILTER (WHERE state = 'waiting'), count(*) FILTER (WHERE state = 'queued'),
			   count(*) FILTER (WHERE reached_at IS NOT NULL), count(*) FILTER (WHERE state = 'delivered'),
			   count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE state = 'expired'),
			   count(*) FILTER (WHERE state = 'canceled'), count(*) FILTER (WHERE replied_at IS NOT NULL),
			   count(*) FILTER (WHERE opted_out_at IS NOT NULL))::text
	  FROM eightms.campaign_recipient WHERE account_id = acct AND campaign_id = camp
$$;
CREATE FUNCTION pg_temp.stats(camp uuid) RETURNS text
LANGUAGE sql AS $$
	SELECT row(recipients, waiting, queued, sent, delivered, failed, expired, canceled, replied, opted_out)::text
	  FROM eightms_api.campaign_stats(camp)
$$;
GRANT EXECUTE ON FUNCTION pg_temp.stats(uuid) TO eightms_user;

SELECT pg_temp.release(:'acct', '00000000-0000-4000-8000-00000000ca01', '00000000-0000-4000-8000-0000000000d1',
					   ARRAY(SELECT '+1212555' || lpad(g::text, 4, '0') FROM generate_series(1000, 1059) g));
-- A non-campaign message rides along in every batch.
SELECT pgrst.as_user('cora', :'acct');
SELECT message_id AS plain FROM eightms_api.send_messages('[{"to": "+12125559999", "body": "Hello"}]') \gset
SELECT pgrst.reset();
UPDATE eightms.message SET phone_id = '00000000-0000-4000-8000-0000000000d1' WHERE message_id = :'plain';

SELECT pgrst.as_user('cora', :'acct');
SELECT is(pg_temp.stats('00000000-0000-4000-8000-00000000ca01'), '(60,0,60,0,0,0,0,0,0,0)', 'sixty recipients queued');

-- ------------------------------------------------------------ reports
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(100)), 61::bigint, 'the phone claims them all');
CREATE TEMP TABLE ids AS
SELECT m.message_id AS id, row_number() OVER (ORDER BY m.peer_number) AS i FROM eightms.message m
 WHERE m.campaign_id = '00000000-0000-4000-8000-00000000ca01';
GRANT SELECT ON ids TO eightms_phone;
-- A batch of distinct ids (one write per status): a third sent, a third
-- delivered, a sixth failed, and the plain message.
SELECT is((SELECT count(*) FILTER (WHERE accepted) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', CASE WHEN i <= 20 THEN 'sent' WHEN i <= 40 THEN 'delivered' ELSE 'failed' END))
	   FROM ids WHERE i <= 50) || jsonb_build_array(jsonb_build_object('id', :'plain', 'status', 'sent')))),
	51::bigint, 'a batch of distinct reports is taken');
-- Duplicates, out of order, repeated and late: delivered then sent,
-- sent twice, delivered again, failed after delivered.
SELECT ok((SELECT count(*) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(x ORDER BY random())
	   FROM (SELECT jsonb_build_object('id', id, 'status', s) AS x
			   FROM ids, unnest(ARRAY['delivered', 'sent', 'sent', 'delivered', 'failed']) s
			  WHERE i BETWEEN 11 AND 30 OR i BETWEEN 51 AND 55) r))) > 0, 'a batch of repeated reports in random order');
-- A random mix, three times over, both paths.
SELECT ok((SELECT count(*) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', (ARRAY['sent', 'delivered', 'failed'])[1 + floor(random() * 3)::int])
					  ORDER BY random())
	   FROM ids, generate_series(1, 3) g WHERE i <= 55 AND random() < 0.5))) >= 0, 'a random mix of reports');
-- Sent, then failed, in one batch: the recipient failed, but was reached.
SELECT id AS sf FROM ids WHERE i = 56 \gset
SELECT is((SELECT count(*) FILTER (WHERE accepted) FROM eightms_api.report_messages(
	format('[{"id": "%s", "status": "sent"}, {"id": "%s", "status": "failed"}]', :'sf', :'sf')::jsonb)), 2::bigint,
	'sent then failed in one batch');
SELECT is((SELECT row(state, reached_at IS NOT NULL)::text FROM eightms.campaign_recipient WHERE message_id = :'sf'),
		  '(failed,t)', 'its recipient failed after it was reached');
SELECT pgrst.as_user('cora', :'acct');
SELECT is(pg_temp.stats('00000000-0000-4000-8000-00000000ca01'),
		  pg_temp.recount(:'acct', '00000000-0000-4000-8000-00000000ca01'), 'stats equal a recount after the reports');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.campaign_recipient r JOIN eightms.message m USING (account_id, message_id)
			WHERE r.campaign_id = '00000000-0000-4000-8000-00000000ca01'
			  AND r.state <> CASE WHEN m.status IN ('queued', 'claimed') THEN 'queued' ELSE m.status END),
		  0::bigint, 'each recipient has its message''s state');
SELECT is((SELECT count(*) FROM eightms.campaign_recipient r JOIN eightms.message m USING (account_id, message_id)
			WHERE r.campaign_id = '00000000-0000-4000-8000-00000000ca01'
			  AND r.reached_at IS DISTINCT FROM m.sent_at),
		  0::bigint, 'reached_at is when its message was sent');

-- Given up, then sent: a claimed message expires (the job), then its phone
-- reports it sent.
SELECT id AS late FROM ids WHERE i = 60 \gset
UPDATE eightms.message SET expires_at = now() - interval '1 minute' WHERE message_id = :'late' AND status = 'claimed';
SELECT eightms.expire_account_messages(:'acct');
SELECT is((SELECT state FROM eightms.campaign_recipient WHERE message_id = :'late'), 'expired', 'expired by the job');
SELECT pgrst.as_user('cora', :'acct');
SELECT is((SELECT expired FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca01')), 1::bigint, 'counted expired');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT accepted FROM eightms_api.report_messages(format('[{"id": "%s", "status": "sent"}]', :'late')::jsonb)),
		  true, 'the phone reports it sent after all');
SELECT is((SELECT note FROM eightms_api.report_messages(format('[{"id": "%s", "status": "sent"}]', :'late')::jsonb)),
		  'already sent', 'and again: already sent');
SELECT pgrst.as_user('cora', :'acct');
SELECT is((SELECT row(expired, sent - (SELECT count(*) FROM eightms.campaign_recipient
										WHERE campaign_id = '00000000-0000-4000-8000-00000000ca01' AND reached_at IS NOT NULL))::text
			 FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca01')),
		  '(0,0)', 'given up then sent: no longer expired, counted sent once');
SELECT is(pg_temp.stats('00000000-0000-4000-8000-00000000ca01'),
		  pg_temp.recount(:'acct', '00000000-0000-4000-8000-00000000ca01'), 'stats equal a recount after expiry');

-- ------------------------------------------------------------ cancels
SELECT pgrst.reset();
SELECT pg_temp.release(:'acct', '00000000-0000-4000-8000-00000000ca02', '00000000-0000-4000-8000-0000000000d1',
					   ARRAY['+12125551000', '+12125551001', '+12125552000', '+12125552001']);
-- Read first: on Citus a query's function call cannot run another
-- distributed query inside it.
SELECT message_id AS to_cancel FROM eightms.campaign_recipient WHERE phone = '+12125552000' \gset
SELECT pgrst.as_user('cora', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.cancel_messages(ARRAY[:'to_cancel'::uuid])), 1::bigint, 'a member cancels one');
SELECT is((SELECT state FROM eightms.campaign_recipient WHERE phone = '+12125552000'), 'canceled', 'its recipient is canceled');
-- An opt-out added by hand before the claim: canceled at once.
SELECT ok(eightms_api.add_opt_out('+12125552001', 'asked by phone'), 'a member opts a number out');
SELECT is((SELECT state FROM eightms.campaign_recipient WHERE phone = '+12125552001'), 'canceled', 'its queued message''s recipient is canceled');
SELECT is((SELECT row(queued, canceled)::text FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca02')),
		  '(2,2)', 'two queued, two canceled');
SELECT is(pg_temp.stats('00000000-0000-4000-8000-00000000ca02'),
		  pg_temp.recount(:'acct', '00000000-0000-4000-8000-00000000ca02'), 'stats equal a recount after cancels');

-- ------------------------------------------------------------ attribution
SELECT pgrst.reset();
-- +12125551000 was reached by Spring 2 hours ago and by Summer 1 hour ago;
-- +12125551001 by Spring 100 hours ago (outside 72 hours) and by Summer 50.
UPDATE eightms.message SET status = 'sent', pending = NULL, sent_at = now() - interval '1 hour'
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND status = 'queued';
UPDATE eightms.campaign_recipient r SET state = 'sent', reached_at = now() - interval '1 hour'
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND state = 'queued';
SELECT eightms.count_recipient_moves(:'acct', ARRAY['00000000-0000-4000-8000-00000000ca02'::uuid, '00000000-0000-4000-8000-00000000ca02'],
									 ARRAY['queued', 'queued'], ARRAY['sent', 'sent'], ARRAY[1, 1]);
UPDATE eightms.campaign_recipient SET reached_at = now() - interval '50 hours'
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND phone = '+12125551001';
UPDATE eightms.campaign_recipient SET reached_at = now() - interval '2 hours', state = 'sent'
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca01' AND phone = '+12125551000';
UPDATE eightms.campaign_recipient SET reached_at = now() - interval '100 hours'
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca01' AND phone = '+12125551001';
-- The other account's campaign reached +12125551000 a minute ago.
INSERT INTO eightms.campaign_recipient (account_id, campaign_id, phone, state, time_zone, segments, reached_at)
VALUES (:'other', '00000000-0000-4000-8000-00000000cb01', '+12125551000', 'sent', 'UTC', 1, now() - interval '1 minute');
SELECT eightms.count_recipient_moves(:'other', ARRAY['00000000-0000-4000-8000-00000000cb01'::uuid], NULL, ARRAY['sent'], ARRAY[1]);

SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[
	{"from": "+12125551000", "body": "Is it still on?", "device_message_id": "r-1"},
	{"from": "+12125551000", "body": "Hello?", "device_message_id": "r-2"},
	{"from": "+12125551001", "body": "What sale?", "device_message_id": "r-3"},
	{"from": "+12125559999", "body": "Thanks", "device_message_id": "r-4"}]')), 4::bigint, 'four replies received');
SELECT pgrst.reset();
SELECT is((SELECT array_agg(campaign_id::text || ' ' || phone ORDER BY campaign_id, phone) FROM eightms.campaign_recipient
			WHERE replied_at IS NOT NULL),
		  ARRAY['00000000-0000-4000-8000-00000000ca02 +12125551000', '00000000-0000-4000-8000-00000000ca02 +12125551001'],
		  'replies go to the campaign that reached the number last, within the window; none to another account''s');
SELECT is((SELECT replied_at FROM eightms.campaign_recipient
			WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND phone = '+12125551000'),
		  (SELECT received_at FROM eightms.message WHERE device_message_id = 'r-1'), 'the first reply is kept');
SELECT pgrst.as_user('cora', :'acct');
SELECT is((SELECT replied FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca02')), 2::bigint,
		  'two recipients replied, each counted once');
SELECT is((SELECT replied FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca01')), 0::bigint,
		  'none for the earlier campaign');
SELECT pgrst.reset();
-- Outside the window: the Summer reach of +12125551001 moved back to 73
-- hours, Spring's 100; a reply now counts for neither.
UPDATE eightms.campaign_recipient SET reached_at = now() - interval '73 hours', replied_at = NULL
 WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND phone = '+12125551001';
SELECT eightms.count_recipient_moves(:'acct', ARRAY['00000000-0000-4000-8000-00000000ca02'::uuid], ARRAY['sent'], ARRAY['sent'],
									 NULL, ARRAY[-1]);
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125551001", "body": "Hi", "device_message_id": "r-5"}]')),
		  1::bigint, 'a reply 73 hours after the last reach');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE phone = '+12125551001' AND replied_at IS NOT NULL), 0::bigint,
		  'outside the window: attributed to no campaign');
-- A longer window, set by the owner, takes it in.
SELECT pgrst.as_user('cora', :'acct');
SELECT throws_ok($$SELECT eightms_api.set_attribution_window('31 days')$$, '22023', NULL, 'a window over 30 days is refused');
SELECT throws_ok($$SELECT eightms_api.set_attribution_window('10 minutes')$$, '22023', NULL, 'a window under an hour is refused');
SELECT lives_ok($$SELECT eightms_api.set_attribution_window('96 hours')$$, 'the owner sets a 96-hour window');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125551001", "body": "STOP", "device_message_id": "r-6"}]')),
		  1::bigint, 'a STOP from it');
SELECT pgrst.reset();
SELECT is((SELECT row(opted_out_at IS NOT NULL, replied_at IS NULL)::text FROM eightms.campaign_recipient
			WHERE campaign_id = '00000000-0000-4000-8000-00000000ca02' AND phone = '+12125551001'),
		  '(t,t)', 'the STOP is an opt-out of the last campaign within 96 hours, not a reply');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125551001", "body": "STOP", "device_message_id": "r-7"}]')),
		  1::bigint, 'a second STOP');
SELECT pgrst.as_user('cora', :'acct');
SELECT ok(eightms_api.add_opt_out('+12125551000', 'asked in the shop'), 'a member opts the other number out');
SELECT is((SELECT opted_out FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca02')), 2::bigint,
		  'two opted out, each counted once');
SELECT is(pg_temp.stats('00000000-0000-4000-8000-00000000ca02'),
		  pg_temp.recount(:'acct', '00000000-0000-4000-8000-00000000ca02'), 'stats equal a recount after attribution');
SELECT pgrst.as_user('bram', :'other');
SELECT is((SELECT row(replied, opted_out)::text FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000cb01')),
		  '(0,0)', 'the other account''s campaign got nothing of it');

-- ------------------------------------------------------------ reading
SELECT throws_ok($$SELECT * FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca01')$$, 'P0002', NULL,
				 'campaign_stats refuses another account''s campaign');
SELECT is((SELECT count(*) FROM eightms_api.campaigns_stats()), 1::bigint, 'campaigns_stats lists only the account''s own');
SELECT pgrst.as_user('cora', :'acct');
SELECT is((SELECT array_agg(name ORDER BY name) FROM eightms_api.campaigns_stats()), ARRAY['Spring', 'Summer'],
		  'campaigns_stats lists the account''s campaigns');
SELECT pgrst.reset();
SELECT n_tup_ins AS ignore, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans_before
  FROM pg_stat_xact_user_tables WHERE relid = 'eightms.campaign_recipient'::regclass \gset
SELECT pgrst.as_user('cora', :'acct');
SELECT ok((SELECT recipients FROM eightms_api.campaign_stats('00000000-0000-4000-8000-00000000ca01')) = 60, 'a stats call');
SELECT pgrst.reset();
SELECT is((SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
			WHERE relid = 'eightms.campaign_recipient'::regclass), :'scans_before'::bigint,
		  'a stats call reads no recipient: it sums the counters');

SELECT * FROM finish();
ROLLBACK;
