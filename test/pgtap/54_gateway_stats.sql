-- Operators see every outbound queue by account and phone, with the
-- phone's health, so that stuck work shows: messages due and not taken,
-- scheduled ones, claims in flight, leases run out, and queues on a phone
-- that is offline or unpaired, or on none yet.  Only operators read it.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('sven');
SELECT account_id AS acct FROM eightms_api.create_account('Sven Sailing') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct, charging)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000f1', 'sven-up', NULL, now(), 70, false),
	   (:'acct', '00000000-0000-4000-8000-0000000000f2', 'sven-down', NULL, now() - interval '1 hour', 50, true);

-- On the online phone: three due, of which it claims one, and two for
-- tomorrow; on the offline phone, one claim whose lease ran out; one with
-- no phone yet.
SELECT pgrst.as_user('sven', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.send_messages((
			SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 08' || lpad(i::text, 2, '0'), 'body', 'Regatta ' || i,
												'phone_id', '00000000-0000-4000-8000-0000000000f1')
							 || CASE WHEN i > 3 THEN jsonb_build_object('send_at', now() + interval '1 day') ELSE '{}' END)
			  FROM generate_series(1, 5) i)) WHERE status = 'queued'), 5::bigint, 'five messages are queued on the online phone');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000f1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(1)), 1::bigint, 'it claims one');
SELECT pgrst.reset();
-- When the stuck messages were due, named once: the Citus tier runs the
-- insert and the assertion in transactions of their own (test/citus).
SELECT now() - interval '2 hours' AS stuck_due \gset
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, pending, claimed_at, lease_expires_at, send_at)
SELECT :'acct', c.conversation_id, 'out', p, c.peer_number, 'Stuck', 'gsm7', 1, s, true,
	   CASE WHEN s = 'claimed' THEN now() - interval '1 hour' END,
	   CASE WHEN s = 'claimed' THEN now() - interval '50 minutes' END, :'stuck_due'::timestamptz
  FROM eightms.conversation c,
	   (VALUES ('00000000-0000-4000-8000-0000000000f2'::uuid, 'claimed'), (NULL::uuid, 'queued')) v(p, s)
 WHERE c.account_id = :'acct' AND c.peer_number = '+12125550801';

SELECT results_eq(
	format($$SELECT device_id, online, unpaired, due, scheduled, claimed, lease_expired, oldest_due_at IS NOT NULL
			   FROM eightms.gateway_queue_stats WHERE account_id = %L ORDER BY device_id NULLS LAST$$, :'acct'),
	$$VALUES ('sven-down', false, false, 0::bigint, 0::bigint, 0::bigint, 1::bigint, false),
			 ('sven-up', true, false, 2::bigint, 2::bigint, 1::bigint, 0::bigint, true),
			 (NULL, NULL, NULL, 1::bigint, 0::bigint, 0::bigint, 0::bigint, true)$$,
	'each phone''s queue: due, scheduled, claimed, leases run out; and what has no phone yet');
SELECT is((SELECT oldest_due_at FROM eightms.gateway_queue_stats WHERE account_id = :'acct' AND phone_id IS NULL),
		  :'stuck_due'::timestamptz, 'the oldest due message shows how long work has waited');

-- Operators only.
SET LOCAL ROLE eightms_dba;
SELECT is((SELECT sum(due + scheduled + claimed + lease_expired) FROM eightms.gateway_queue_stats WHERE account_id = :'acct'),
		  7::numeric, 'an operator reads every account''s queues');
RESET ROLE;
SELECT pgrst.as_user('sven', :'acct');
SELECT throws_ok($$SELECT * FROM eightms.gateway_queue_stats$$, '42501', NULL, 'a dashboard user cannot read it');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000f1');
SELECT throws_ok($$SELECT * FROM eightms.gateway_queue_stats$$, '42501', NULL, 'nor can a phone');
SELECT pgrst.reset();

SELECT * FROM finish();
ROLLBACK;
