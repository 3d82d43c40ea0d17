-- A phone that goes offline: its queued messages move to the healthy
-- phones, spread so that the queues even out (not all to the one that was
-- shortest when the move began); what it has claimed stays with it; with no
-- healthy phone left, its messages wait for any phone (unassigned).
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('dora');
SELECT account_id AS acct FROM eightms_api.create_account('Dora Dental') \gset
SELECT pgrst.reset();
-- A and B healthy, C about to go offline, D online but flat.
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, charging)
VALUES (:'acct', '00000000-0000-4000-8000-00000000000a', 'dev-a', now(), 90, false),
	   (:'acct', '00000000-0000-4000-8000-00000000000b', 'dev-b', now(), 80, false),
	   (:'acct', '00000000-0000-4000-8000-00000000000c', 'dev-c', now(), 70, false),
	   (:'acct', '00000000-0000-4000-8000-00000000000d', 'dev-d', now(), 5, false);

-- Two messages queued on A, twelve on C.
SELECT pgrst.as_user('dora', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.send_messages((
			SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 01' || lpad(i::text, 2, '0'), 'body', 'hello ' || i,
												'phone_id', CASE WHEN i <= 2 THEN '00000000-0000-4000-8000-00000000000a'
																 ELSE '00000000-0000-4000-8000-00000000000c' END)
							 ORDER BY i)
			  FROM generate_series(1, 14) i)) WHERE status = 'queued'),
		  14::bigint, 'fourteen messages are queued, two on A and twelve on C');
-- C claims one of its twelve, then goes quiet.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000c');
SELECT message_id AS c_claimed FROM eightms_api.claim_messages(1) \gset
SELECT pgrst.reset();
UPDATE eightms.phone SET last_heartbeat_at = now() - interval '1 hour'
 WHERE phone_id = '00000000-0000-4000-8000-00000000000c';

-- The next claim of any phone of the account moves C's queue.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000a');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(0)), 0::bigint, 'a claim of nothing still looks after the queue');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND status = 'queued'
			  AND phone_id = '00000000-0000-4000-8000-00000000000c'),
		  0::bigint, 'no queued message is left on the offline phone');
-- Water-filling from queues of 2 (A) and 0 (B), ties to the fuller
-- battery: B takes 6 of the 11, A 5, so that they end with 7 and 6.
SELECT results_eq(format($$SELECT phone_id, count(*) FROM eightms.message
							 WHERE account_id = %L AND status = 'queued' GROUP BY phone_id ORDER BY phone_id$$, :'acct'),
				  $$VALUES ('00000000-0000-4000-8000-00000000000a'::uuid, 7::bigint),
						   ('00000000-0000-4000-8000-00000000000b'::uuid, 6::bigint)$$,
				  'the offline phone''s queue is spread over the healthy phones so that the queues even out');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct'
			  AND phone_id = '00000000-0000-4000-8000-00000000000d'),
		  0::bigint, 'a phone with a flat battery gets none');
-- The battery floor is eightms.min_battery_pct (20 by default).
SET LOCAL eightms.min_battery_pct = 3;
SELECT is((SELECT count(*) FROM eightms.healthy_phones(:'acct') WHERE phone_id = '00000000-0000-4000-8000-00000000000d'),
		  1::bigint, 'with eightms.min_battery_pct at 3, a phone at 5% is fit to send');
RESET eightms.min_battery_pct;
SELECT is((SELECT status || ' ' || phone_id FROM eightms.message WHERE account_id = :'acct' AND message_id = :'c_claimed'),
		  'claimed 00000000-0000-4000-8000-00000000000c',
		  'what the offline phone had claimed stays with it (its lease decides)');
SELECT is((SELECT count(*) FROM eightms.message m JOIN eightms.conversation c USING (account_id, conversation_id)
			WHERE m.account_id = :'acct' AND c.phone_id = '00000000-0000-4000-8000-00000000000c'),
		  12::bigint, 'the conversations keep their phone, for when it is back');

-- The scheduled job does the same for every account: A goes offline, and
-- B, the one healthy phone left, takes A's seven.
UPDATE eightms.phone SET last_heartbeat_at = now() - interval '1 hour'
 WHERE phone_id = '00000000-0000-4000-8000-00000000000a';
SELECT cmp_ok(eightms.expire_messages(), '>=', 7, 'the scheduled job moves the queue of a phone that went offline');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND status = 'queued'
			  AND phone_id = '00000000-0000-4000-8000-00000000000b'),
		  13::bigint, 'all of it to the one healthy phone');

-- With no healthy phone left, the queue waits for any phone.
UPDATE eightms.phone SET last_heartbeat_at = now() - interval '1 hour'
 WHERE phone_id = '00000000-0000-4000-8000-00000000000b';
SELECT is(eightms.expire_messages(:'acct'), 13, 'with no healthy phone the messages are still moved');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND status = 'queued' AND phone_id IS NULL),
		  13::bigint, 'to no phone: any phone that comes back may claim them');
UPDATE eightms.phone SET last_heartbeat_at = now()
 WHERE phone_id = '00000000-0000-4000-8000-00000000000b';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000b');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(100)), 13::bigint, 'and the first one back claims them');

-- Unpairing is for good: the phone's conversations lose it, so that their
-- next message goes to a healthy phone rather than to the unpaired one.
UPDATE eightms.phone SET last_heartbeat_at = now()
 WHERE phone_id = '00000000-0000-4000-8000-00000000000a';
SELECT pgrst.as_user('dora', :'acct');
SELECT eightms_api.unpair_phone('00000000-0000-4000-8000-00000000000c');
SELECT is((SELECT count(*) FROM eightms.conversation WHERE account_id = :'acct'
			  AND phone_id = '00000000-0000-4000-8000-00000000000c'),
		  0::bigint, 'an unpaired phone keeps no conversation');
SELECT isnt((SELECT phone_id FROM eightms_api.send_message('+1 212 555 0105', 'after the unpairing')),
			'00000000-0000-4000-8000-00000000000c'::uuid,
			'the next message of one of its conversations goes to another phone');
SELECT message_id AS batch_m FROM eightms_api.send_messages('[{"to": "+1 212 555 0106", "body": "in a batch"}]') \gset
SELECT ok((SELECT phone_id FROM eightms.message WHERE account_id = :'acct' AND message_id = :'batch_m')
		  IN ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b'),
		  'in a batch too, to a healthy phone');

-- Pairing the same device again: the new pairing takes over the earlier
-- one's conversations and its waiting and claimed messages (the handset is
-- the same, so replies keep threading on it), and may report what the
-- earlier pairing claimed.
SELECT pgrst.as_user('dora', :'acct');
SELECT code AS code1 FROM eightms_api.create_pairing_code() \gset
SELECT code AS code2 FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon();
SELECT phone_id AS e1 FROM eightms_api.pair_phone(:'code1', 'dev-e') \gset
SELECT pgrst.reset();
UPDATE eightms.phone SET last_heartbeat_at = now(), battery_pct = 100 WHERE phone_id = :'e1';
SELECT pgrst.as_user('dora', :'acct');
SELECT count(*) AS e_sent FROM eightms_api.send_messages(format('[{"to": "+1 212 555 0150", "body": "e one", "phone_id": "%s"},
	{"to": "+1 212 555 0151", "body": "e two", "phone_id": "%s"}]', :'e1', :'e1')::jsonb) \gset
SELECT pgrst.as_phone(:'acct', :'e1');
SELECT message_id AS e_claimed FROM eightms_api.claim_messages(1) \gset
SELECT pgrst.as_user('dora', :'acct');
SELECT eightms_api.set_phone_pacing(:'e1', 40, '1 hour', 'segments');
SELECT pgrst.as_anon();
SELECT phone_id AS e2 FROM eightms_api.pair_phone(:'code2', 'dev-e') \gset
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.conversation WHERE account_id = :'acct' AND phone_id = :'e2'), 2::bigint,
		  'pairing a device again moves its conversations to the new pairing');
SELECT is((SELECT string_agg(status, ' ' ORDER BY status) FROM eightms.message WHERE account_id = :'acct' AND phone_id = :'e2'),
		  'claimed queued', 'and its claimed and queued messages');
SELECT is((SELECT rate_limit || ' ' || rate_window || ' ' || rate_unit || ' ' || cardinality(recent_claims)
			 FROM eightms.phone WHERE phone_id = :'e2'),
		  '40 01:00:00 segments 1', 'and its pacing: the owner''s setting and the claims Android still counts');
SELECT pgrst.as_phone(:'acct', :'e2');
SELECT is((SELECT accepted FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'e_claimed', 'status', 'sent')))),
		  true, 'the new pairing reports what the earlier one claimed');
SELECT pgrst.reset();

-- A claim looks only at phones unpaired within the online window (an
-- unpairing moves the phone's work itself); the scheduled job at all.
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, unpaired_at)
VALUES (:'acct', '00000000-0000-4000-8000-000000000011', 'dev-old', now() - interval '2 days', 90, now() - interval '1 day');
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, pending)
SELECT :'acct', c.conversation_id, 'out', '00000000-0000-4000-8000-000000000011', c.peer_number, 'left behind', 'gsm7', 1,
	   'queued', true
  FROM eightms.conversation c WHERE c.account_id = :'acct' LIMIT 1;
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000a');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(0)), 0::bigint, 'a claim of nothing');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000011' AND pending),
		  1::bigint, 'leaves alone a phone unpaired a day ago');
SELECT cmp_ok(eightms.expire_messages(), '>=', 1, 'the scheduled job');
SELECT is((SELECT count(*) FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000011' AND pending),
		  0::bigint, 'moves what was left on it');

-- Pacing by segments, as Android counts: 3 segments an hour; a
-- two-segment message and a one-segment one fit, the next one-segment
-- message does not.
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-00000000000f', 'dev-f', now(), 100);
SELECT pgrst.as_user('dora', :'acct');
SELECT throws_ok($$SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-00000000000f', 3, '1 hour', 'parts')$$,
				 '22023', NULL, 'pacing counts messages or segments, nothing else');
SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-00000000000f', 3, '1 hour', 'segments');
SELECT is((SELECT rate_limit || ' ' || rate_unit FROM eightms_api.phones WHERE phone_id = '00000000-0000-4000-8000-00000000000f'),
		  '3 segments', 'the dashboard sees the phone''s pacing');
CREATE TEMP TABLE f_sent AS SELECT * FROM eightms_api.send_messages(format('[
	{"to": "+1 212 555 0160", "body": "%s", "phone_id": "00000000-0000-4000-8000-00000000000f"},
	{"to": "+1 212 555 0161", "body": "short", "phone_id": "00000000-0000-4000-8000-00000000000f"},
	{"to": "+1 212 555 0162", "body": "short too", "phone_id": "00000000-0000-4000-8000-00000000000f"}]',
	repeat('x', 200))::jsonb);
SELECT is((SELECT string_agg(m.segments::text, ' ' ORDER BY s.item) FROM f_sent s JOIN eightms_api.messages m USING (message_id)),
		  '2 1 1', 'three messages of 2, 1 and 1 segments are queued for it');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000f');
SELECT is((SELECT string_agg(segments::text, ' ') FROM eightms_api.claim_messages(10)), '2 1',
		  'paced at 3 segments an hour, the phone claims the messages whose segments fit');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'and then nothing within the hour');
SELECT pgrst.reset();
SELECT is((SELECT cardinality(recent_claims) FROM eightms.phone WHERE phone_id = '00000000-0000-4000-8000-00000000000f'), 3,
		  'each segment claimed counts');
-- A message longer than the whole limit goes out alone in an empty window.
UPDATE eightms.phone SET recent_claims = '{}' WHERE phone_id = '00000000-0000-4000-8000-00000000000f';
SELECT pgrst.as_user('dora', :'acct');
SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-00000000000f', 1, '1 hour', 'segments');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000f');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 1::bigint,
		  'with a limit of one segment, the next message still goes out, alone');
SELECT pgrst.reset();
-- A two-segment message waits at the head of the queue: nothing is claimed.
SELECT pgrst.as_user('dora', :'acct');
SELECT count(*) FROM eightms_api.send_messages(format('[{"to": "+1 212 555 0163", "body": "%s", "phone_id": "00000000-0000-4000-8000-00000000000f"}]',
	repeat('y', 200))::jsonb);
SELECT pgrst.reset();
UPDATE eightms.phone SET recent_claims = ARRAY[now()] WHERE phone_id = '00000000-0000-4000-8000-00000000000f';
SELECT pgrst.as_user('dora', :'acct');
SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-00000000000f', 2, '1 hour', 'segments');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-00000000000f');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint,
		  'with one segment left of two, a two-segment message waits');
SELECT pgrst.reset();

-- An idle phone's poll (nothing queued for it, nothing unassigned) still
-- moves the queue of a phone gone offline before it finds nothing: the
-- poller, the one healthy phone, gets that queue and claims it at once.
SELECT pgrst.as_user('ivy');
SELECT account_id AS ivy FROM eightms_api.create_account('Ivy Inn') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, rate_limit)
VALUES (:'ivy', '00000000-0000-4000-8000-000000000021', 'dev-g', now(), 90, NULL),
	   (:'ivy', '00000000-0000-4000-8000-000000000022', 'dev-h', now(), 90, NULL);
SELECT pgrst.as_user('ivy', :'ivy');
SELECT is((SELECT count(*) FROM eightms_api.send_messages(
			'[{"to": "+1 212 555 0170", "body": "one", "phone_id": "00000000-0000-4000-8000-000000000022"},
			  {"to": "+1 212 555 0171", "body": "two", "phone_id": "00000000-0000-4000-8000-000000000022"}]'
		  ) WHERE status = 'queued'), 2::bigint, 'two messages are queued on H');
SELECT pgrst.as_phone(:'ivy', '00000000-0000-4000-8000-000000000021');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'G polls and finds nothing for it');
SELECT pgrst.reset();
UPDATE eightms.phone SET last_heartbeat_at = now() - interval '1 hour'
 WHERE phone_id = '00000000-0000-4000-8000-000000000022';
SELECT pgrst.as_phone(:'ivy', '00000000-0000-4000-8000-000000000021');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 2::bigint,
		  'once H is gone, G''s next poll moves H''s queue to G and claims it');
SELECT pgrst.reset();

SELECT * FROM finish();
ROLLBACK;
