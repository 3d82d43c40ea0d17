-- Batches: send_messages queues what plainly goes through in one statement
-- and must answer exactly as item-by-item sending would; report_messages
-- folds a batch per message and must answer as reports applied one by one;
-- routing spreads new conversations over the healthy phones; pacing.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('bella');
SELECT account_id AS acct FROM eightms_api.create_account('Bella Bakery', 'America/Chicago') \gset
SELECT pgrst.as_user('carl');
SELECT account_id AS other_acct FROM eightms_api.create_account('Carl Cars') \gset
SELECT pgrst.reset();
-- Four healthy phones (one with a low battery but charging), one flat one.
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, charging)
SELECT :'acct', ('00000000-0000-4000-8000-00000000000' || i)::uuid, 'dev-' || i, now(),
	   CASE i WHEN 4 THEN 10 WHEN 5 THEN 5 ELSE 90 END, i = 4
  FROM generate_series(1, 5) i;
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct)
VALUES (:'other_acct', '00000000-0000-4000-8000-0000000000aa', 'dev-other', now(), 90);
INSERT INTO eightms.opt_out (account_id, number) VALUES (:'acct', '+13125550100');

-- ------------------------------------------------------------ send_messages

SELECT pgrst.as_user('bella', :'acct');
SELECT * FROM eightms_api.send_message('+1 312 555 0101', 'earlier', idempotency_key => 'k-old') \gset old_
CREATE TEMP TABLE batch AS
SELECT * FROM eightms_api.send_messages($$[
	{"to": "(312) 555-0102", "body": "one"},
	{"to": "12", "body": "too short"},
	{"to": "+1 312 555 0100", "body": "opted out"},
	{"to": "+1 312 555 0103", "body": ""},
	{"to": "+1 312 555 0104", "body": "keyed", "idempotency_key": "k-1"},
	{"to": "+1 312 555 0105", "body": "same key again", "idempotency_key": "k-1"},
	{"to": "+1 312 555 0106", "body": "an old key", "idempotency_key": "k-old"},
	{"to": "+1 312 555 0107", "body": "pinned", "phone_id": "00000000-0000-4000-8000-000000000003"},
	{"to": "+1 312 555 0108", "body": "another account's phone", "phone_id": "00000000-0000-4000-8000-0000000000aa"},
	{"to": "+1 312 555 0102", "body": "two"}
]$$);
SELECT results_eq($$SELECT item, status, error_code FROM batch ORDER BY item$$,
	$$VALUES (1, 'queued', NULL), (2, 'refused', '22023'), (3, 'refused', 'E8O01'), (4, 'refused', '22023'),
			 (5, 'queued', NULL), (6, 'queued', NULL), (7, 'queued', NULL), (8, 'queued', NULL),
			 (9, 'refused', 'P0002'), (10, 'queued', NULL)$$,
	'each item of a mixed batch is queued or refused with its SQLSTATE, in item order');
SELECT is((SELECT error FROM batch WHERE item = 3), 'the recipient has opted out of messages from this account',
		  'a refused item carries the same message as send_message would raise');
SELECT throws_ok($$SELECT eightms_api.send_message('12', 'too short')$$, '22023',
				 (SELECT error FROM batch WHERE item = 2), 'the number''s error is the one send_message raises');
SELECT is((SELECT message_id FROM batch WHERE item = 6), (SELECT message_id FROM batch WHERE item = 5),
		  'a key repeated within the batch returns the first item''s message');
SELECT is((SELECT message_id FROM batch WHERE item = 7), :'old_message_id'::uuid,
		  'a key seen before returns the earlier message');
SELECT is((SELECT count(*) FROM eightms_api.messages WHERE direction = 'out'), 5::bigint,
		  'five messages are queued in all: the earlier one and four new');
SELECT is((SELECT array_agg(body ORDER BY created_at, body) FROM eightms_api.messages WHERE peer_number = '+13125550102'),
		  ARRAY['one', 'two'], 'two items to one number share its conversation');
SELECT is((SELECT count(DISTINCT conversation_id) FROM eightms_api.messages WHERE peer_number = '+13125550102'), 1::bigint,
		  'in one conversation');
SELECT is((SELECT phone_id FROM eightms_api.messages WHERE body = 'pinned'),
		  '00000000-0000-4000-8000-000000000003'::uuid, 'an item naming a phone is sent from it');
SELECT is((SELECT count(*) FROM eightms_api.messages m JOIN eightms_api.conversations c USING (account_id, conversation_id)
			WHERE m.body IN ('one', 'keyed') AND c.phone_id IS NOT NULL AND c.last_message_at IS NOT NULL), 2::bigint,
		  'new conversations get a phone and a last-message time');

-- A malformed field anywhere sends the batch the slow way: same answers.
SELECT results_eq($$SELECT item, status, error_code FROM eightms_api.send_messages(
		'[{"to":"+1 312 555 0111","body":"fine"},{"to":"+1 312 555 0112","body":"x","phone_id":"not-a-uuid"},
		  {"to":"+1 312 555 0113","body":"x","send_at":"whenever"}]') ORDER BY item$$,
	$$VALUES (1, 'queued', NULL), (2, 'refused', '22P02'), (3, 'refused', '22007')$$,
	'a malformed phone id or time refuses only its own item');

-- Routing: new conversations go to the healthy phones, shortest queue first.
SELECT pgrst.reset();
DELETE FROM eightms.message WHERE account_id = :'acct';
DELETE FROM eightms.conversation WHERE account_id = :'acct';
SELECT pgrst.as_user('bella', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.send_messages(
			(SELECT jsonb_agg(jsonb_build_object('to', '+1 312 555 02' || lpad(i::text, 2, '0'), 'body', 'hello'))
			   FROM generate_series(1, 12) i)) WHERE status = 'queued'), 12::bigint, 'twelve new numbers are queued');
SELECT results_eq($$SELECT phone_id, count(*) FROM eightms_api.messages GROUP BY phone_id ORDER BY phone_id$$,
	$$VALUES ('00000000-0000-4000-8000-000000000001'::uuid, 3::bigint), ('00000000-0000-4000-8000-000000000002'::uuid, 3::bigint),
			 ('00000000-0000-4000-8000-000000000003'::uuid, 3::bigint), ('00000000-0000-4000-8000-000000000004'::uuid, 3::bigint)$$,
	'they are spread evenly over the four healthy phones; the flat one gets none');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 312 555 0299', 'and one more')),
		  '00000000-0000-4000-8000-000000000001'::uuid,
		  'send_message then picks the shortest queue, ties to the fullest battery');

-- Routing counts queues up to eightms.routing_queue_cap, so that it does
-- not read a campaign's whole backlog: past it phones count alike.  Phone 1
-- now has four queued, the other healthy ones three.
SELECT results_eq(format($$SELECT phone_id, queue_length FROM eightms.healthy_phones(%L, 3) ORDER BY phone_id$$, :'acct'),
	$$VALUES ('00000000-0000-4000-8000-000000000001'::uuid, 3::bigint), ('00000000-0000-4000-8000-000000000002'::uuid, 3::bigint),
			 ('00000000-0000-4000-8000-000000000003'::uuid, 3::bigint), ('00000000-0000-4000-8000-000000000004'::uuid, 3::bigint)$$,
	'a queue longer than the cap counts as the cap');
SELECT is((SELECT queue_length FROM eightms.healthy_phones(:'acct') WHERE phone_id = '00000000-0000-4000-8000-000000000001'),
		  4::bigint, 'without a cap the whole queue is counted (as when an offline phone''s queue is moved)');
SELECT pgrst.reset();
-- (Taken with set_config, as the role: on Citus a SET LOCAL of this
-- superuser setting would also be sent to the workers' connections of the
-- request's role, which may not set it; doc/scale-out.md.)
SELECT set_config('eightms.routing_queue_cap', '3', true);
SELECT pgrst.as_user('bella', :'acct');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 312 555 0298', 'past the cap')),
		  '00000000-0000-4000-8000-000000000001'::uuid,
		  'past the cap queues tie, and the fullest battery wins even with the longer queue');
SELECT message_id AS capped_m FROM eightms_api.send_messages('[{"to": "+1 312 555 0296", "body": "a batch past the cap"}]') \gset
SELECT is((SELECT phone_id FROM eightms_api.messages WHERE message_id = :'capped_m'),
		  '00000000-0000-4000-8000-000000000001'::uuid, 'a batch routes past the cap the same way');
SELECT pgrst.reset();
RESET eightms.routing_queue_cap;
SELECT pgrst.as_user('bella', :'acct');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 312 555 0297', 'under the cap')),
		  '00000000-0000-4000-8000-000000000002'::uuid,
		  'under the cap the shortest queue wins');
SELECT pgrst.reset();
DELETE FROM eightms.conversation WHERE account_id = :'acct' AND peer_number IN ('+13125550296', '+13125550297', '+13125550298');

-- The batch step itself: a batch answers the same through the one-by-one
-- path, so only a direct call shows that the plain items go together (a
-- statement that always failed would otherwise go unnoticed).
SELECT pgrst.as_user('bella', :'acct');
SELECT is(eightms.queue_plain_outbound(:'acct', '[{"to": "+1 312 555 0281", "body": "new"},
		  {"to": "12", "body": "left to the slow path"}, {"to": "+1 312 555 0102", "body": "known"}]',
		  'US', false, '1 day') IS NOT NULL, true, 'the batch step queues a batch itself');
SELECT is((SELECT count(*) FROM eightms_api.messages WHERE peer_number IN ('+13125550281', '+13125550102')
			  AND body IN ('new', 'known')), 2::bigint, 'a new number and a known one, the invalid one left');
SELECT pgrst.reset();
DELETE FROM eightms.conversation WHERE account_id = :'acct' AND peer_number = '+13125550281';
DELETE FROM eightms.message WHERE account_id = :'acct' AND body = 'known';

-- ------------------------------------------------------------ report_messages

SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000002');
CREATE TEMP TABLE got AS SELECT * FROM eightms_api.claim_messages(3);
SELECT is((SELECT count(*) FROM got), 3::bigint, 'the phone claims its three messages');
SELECT message_id AS m1 FROM got ORDER BY message_id LIMIT 1 OFFSET 0 \gset
SELECT message_id AS m2 FROM got ORDER BY message_id LIMIT 1 OFFSET 1 \gset
SELECT message_id AS m3 FROM got ORDER BY message_id LIMIT 1 OFFSET 2 \gset
SELECT message_id AS foreign_m FROM eightms.message WHERE account_id = :'acct'
   AND phone_id = '00000000-0000-4000-8000-000000000001' LIMIT 1 \gset
SELECT results_eq(format($$SELECT message_id, status, accepted, note FROM eightms_api.report_messages(%L)$$, jsonb_build_array(
		jsonb_build_object('id', :'m1', 'status', 'sent', 'at', '2026-01-01 10:00:00+00'),
		jsonb_build_object('id', :'m1', 'status', 'delivered', 'at', '2026-01-01 10:00:05+00'),
		jsonb_build_object('id', :'m1', 'status', 'sent'),
		jsonb_build_object('id', :'m2', 'status', 'delivered', 'at', '2026-01-01 11:00:00+00'),
		jsonb_build_object('id', :'m2', 'status', 'failed'),
		jsonb_build_object('id', :'m3', 'status', 'sent', 'at', '2026-01-01 12:00:00+00'),
		jsonb_build_object('id', :'m3', 'status', 'bounced'),
		jsonb_build_object('id', :'m3', 'status', 'failed', 'error', 'RESULT_ERROR_NO_SERVICE', 'at', '2026-01-01 12:01:00+00'),
		jsonb_build_object('id', :'m3', 'status', 'delivered'),
		jsonb_build_object('id', :'foreign_m', 'status', 'sent'),
		jsonb_build_object('id', 'not-an-id', 'status', 'sent'),
		jsonb_build_object('id', :'m1'))),
	format($$VALUES (%L::uuid, 'sent', true, NULL::text), (%1$L, 'delivered', true, NULL), (%1$L, 'sent', true, 'already delivered'),
		(%2$L::uuid, 'delivered', true, NULL), (%2$L, 'failed', true, 'already delivered'),
		(%3$L::uuid, 'sent', true, NULL), (%3$L, 'bounced', false, 'status must be sent, delivered or failed'),
		(%3$L, 'failed', true, NULL), (%3$L, 'delivered', true, 'already failed'),
		(%4$L::uuid, 'sent', false, 'no such message for this phone'),
		(NULL, 'sent', false, 'no such message for this phone'),
		(%1$L, NULL, false, 'status must be sent, delivered or failed')$$, :'m1', :'m2', :'m3', :'foreign_m'),
	'a batch answers each report, in order, as if applied one by one');
SELECT pgrst.reset();
SELECT results_eq(format($$SELECT message_id, status, sent_at, delivered_at, failed_at, error, attempts
		FROM eightms.message WHERE message_id IN (%L, %L, %L) ORDER BY sent_at$$, :'m1', :'m2', :'m3'),
	format($$VALUES (%L::uuid, 'delivered', '2026-01-01 10:00:00+00'::timestamptz, '2026-01-01 10:00:05+00'::timestamptz,
					  NULL::timestamptz, NULL::text, 1),
				   (%L::uuid, 'delivered', '2026-01-01 11:00:00+00', '2026-01-01 11:00:00+00', NULL, NULL, 1),
				   (%L::uuid, 'failed', '2026-01-01 12:00:00+00', NULL, '2026-01-01 12:01:00+00', 'RESULT_ERROR_NO_SERVICE', 1)$$,
		   :'m1', :'m2', :'m3'),
	'each message ends in the state its reports lead to, with every timestamp, counting one attempt');
SELECT is((SELECT status FROM eightms.message WHERE message_id = :'foreign_m'), 'queued',
		  'another phone''s message is untouched');

-- ------------------------------------------------------------ pacing

SELECT pgrst.as_user('bella', :'acct');
SELECT throws_ok($$SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-000000000001', 0)$$, '22023', NULL,
				 'a limit below one is refused');
SELECT throws_ok($$SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-0000000000aa', 5)$$, 'P0002', NULL,
				 'another account''s phone cannot be paced');
SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-000000000001', 2, '1 hour');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000001');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 2::bigint, 'a phone paced at 2 per hour claims two');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'and then nothing within the hour');
SELECT pgrst.reset();
UPDATE eightms.phone SET recent_claims = ARRAY[now() - interval '61 minutes', now() - interval '2 minutes']
 WHERE phone_id = '00000000-0000-4000-8000-000000000001';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000001');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 1::bigint, 'a claim that left the window frees its place');
SELECT pgrst.as_user('bella', :'acct');
SELECT eightms_api.set_phone_pacing('00000000-0000-4000-8000-000000000001', NULL);
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000001');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 1::bigint, 'with pacing off the rest of its queue comes');

-- A phone takes its own queue first, then what no phone was chosen for.
SELECT pgrst.reset();
UPDATE eightms.message SET phone_id = NULL WHERE account_id = :'acct' AND phone_id = '00000000-0000-4000-8000-000000000003';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000004');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(100)), 6::bigint,
		  'a phone claims its own three, then the three left without a phone');

-- A batch that names each message once takes the direct path (no locking
-- pass): the same answers, report by report.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000004');
SELECT message_id AS q1 FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000004' AND status = 'claimed' ORDER BY message_id LIMIT 1 OFFSET 0 \gset
SELECT message_id AS q2 FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000004' AND status = 'claimed' ORDER BY message_id LIMIT 1 OFFSET 1 \gset
SELECT message_id AS q3 FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000004' AND status = 'claimed' ORDER BY message_id LIMIT 1 OFFSET 2 \gset
SELECT message_id AS q4 FROM eightms.message WHERE phone_id = '00000000-0000-4000-8000-000000000004' AND status = 'claimed' ORDER BY message_id LIMIT 1 OFFSET 3 \gset
SELECT results_eq(format($$SELECT message_id, status, accepted, note FROM eightms_api.report_messages(%L)$$, jsonb_build_array(
		jsonb_build_object('id', :'q1', 'status', 'sent'),
		jsonb_build_object('id', :'q2', 'status', 'delivered'),
		jsonb_build_object('id', :'q3', 'status', 'failed', 'error', 'RESULT_ERROR_RADIO_OFF'),
		jsonb_build_object('id', :'q4', 'status', 'bounced'),
		jsonb_build_object('id', :'foreign_m', 'status', 'sent'))),
	format($$VALUES (%L::uuid, 'sent', true, NULL::text), (%L::uuid, 'delivered', true, NULL),
		(%L::uuid, 'failed', true, NULL), (%L::uuid, 'bounced', false, 'status must be sent, delivered or failed'),
		(%L::uuid, 'sent', false, 'no such message for this phone')$$, :'q1', :'q2', :'q3', :'q4', :'foreign_m'),
	'each report of a batch naming each message once is answered in order');
SELECT results_eq(format($$SELECT message_id, status, accepted, note FROM eightms_api.report_messages(%L)$$, jsonb_build_array(
		jsonb_build_object('id', :'q1', 'status', 'sent'),
		jsonb_build_object('id', :'q2', 'status', 'failed'),
		jsonb_build_object('id', :'q3', 'status', 'delivered'))),
	format($$VALUES (%L::uuid, 'sent', true, 'already sent'), (%L::uuid, 'failed', true, 'already delivered'),
		(%L::uuid, 'delivered', true, 'already failed')$$, :'q1', :'q2', :'q3'),
	'late and repeated reports are accepted and change nothing');
SELECT is((SELECT note FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'q1', 'status', 'delivered')))),
		  NULL, 'delivered after sent moves on');
SELECT pgrst.reset();
SELECT results_eq(format($$SELECT status, attempts, sent_at IS NOT NULL, delivered_at IS NOT NULL, error
		FROM eightms.message WHERE message_id IN (%L, %L, %L, %L) ORDER BY status, message_id$$, :'q1', :'q2', :'q3', :'q4'),
	$$VALUES ('claimed', 0, false, false, NULL::text), ('delivered', 1, true, true, NULL),
			 ('delivered', 1, true, true, NULL), ('failed', 1, false, false, 'RESULT_ERROR_RADIO_OFF')$$,
	'the messages end where their reports lead, each attempt counted once');

-- Each report of such a batch takes its own time and error, whatever the
-- batch's order (a status's reports are looked up by message id).
SELECT pgrst.as_user('bella', :'acct');
SELECT count(*) FROM eightms_api.send_messages((SELECT jsonb_agg(jsonb_build_object('to', '+1 312 555 03' || (10 + i),
	'body', 'timed ' || i, 'phone_id', '00000000-0000-4000-8000-000000000003')) FROM generate_series(1, 6) i));
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
CREATE TEMP TABLE timed AS
SELECT c.message_id, row_number() OVER (ORDER BY c.message_id DESC) AS k FROM eightms_api.claim_messages(10) c;
SELECT is((SELECT count(*) FROM timed), 6::bigint, 'the phone claims the six');
SELECT is((SELECT count(*) FROM eightms_api.report_messages((
		SELECT jsonb_agg(CASE WHEN t.k <= 4
							  THEN jsonb_build_object('id', t.message_id, 'status', 'sent',
													  'at', '2026-01-01 10:00:00+00'::timestamptz + t.k * interval '1 minute')
							  ELSE jsonb_build_object('id', t.message_id, 'status', 'failed', 'error', 'E' || t.k,
													  'at', '2026-01-01 11:00:00+00'::timestamptz + t.k * interval '1 minute') END
						 ORDER BY t.k)
		  FROM timed t)) r WHERE r.accepted AND r.note IS NULL), 6::bigint,
	'a batch of six reports in reverse id order moves all six');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM timed t JOIN eightms.message m USING (message_id)
			WHERE CASE WHEN t.k <= 4
					   THEN m.status = 'sent' AND m.sent_at = '2026-01-01 10:00:00+00'::timestamptz + t.k * interval '1 minute'
					   ELSE m.status = 'failed' AND m.error = 'E' || t.k
							AND m.failed_at = '2026-01-01 11:00:00+00'::timestamptz + t.k * interval '1 minute' END),
		  6::bigint, 'each message has the time and error of its own report');

-- Leases: a phone takes back its own claims whose lease ran out, counting
-- the attempt; a lease that runs out on the last attempt fails the message.
SELECT pgrst.as_user('bella', :'acct');
SELECT message_id AS lm FROM eightms_api.send_message('+1 312 555 0300', 'lease test',
	phone_id => '00000000-0000-4000-8000-000000000003') \gset
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
SELECT is((SELECT attempt FROM eightms_api.claim_messages(10) WHERE message_id = :'lm'), 1, 'a first claim is attempt 1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'a message in flight is not handed out again');
SELECT pgrst.reset();
UPDATE eightms.message SET lease_expires_at = now() - interval '1 second' WHERE message_id = :'lm';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
SELECT is((SELECT attempt FROM eightms_api.claim_messages(10) WHERE message_id = :'lm'), 2,
		  'the phone takes back its own claim whose lease ran out, as attempt 2');
SELECT pgrst.reset();
UPDATE eightms.message SET lease_expires_at = now() - interval '1 second' WHERE message_id = :'lm';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000001');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) WHERE message_id = :'lm'), 0::bigint,
		  'another phone does not take it');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
SELECT is((SELECT attempt FROM eightms_api.claim_messages(10) WHERE message_id = :'lm'), 3, 'attempt 3');
SELECT pgrst.reset();
UPDATE eightms.message SET lease_expires_at = now() - interval '1 second' WHERE message_id = :'lm';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'after the last attempt nothing is handed out');
SELECT pgrst.reset();
SELECT is((SELECT status || ' ' || attempts || ': ' || error FROM eightms.message WHERE message_id = :'lm'),
		  'failed 3: the phone did not report within its lease 3 times', 'the message fails and says why');

-- Expiry: a claim never hands out a message past its expiry and marks it;
-- the scheduled job expires what no claim reached.
SELECT pgrst.as_user('bella', :'acct');
SELECT message_id AS em FROM eightms_api.send_message('+1 312 555 0301', 'too late',
	phone_id => '00000000-0000-4000-8000-000000000003') \gset
SELECT message_id AS em2 FROM eightms_api.send_message('+1 312 555 0302', 'too late as well',
	phone_id => '00000000-0000-4000-8000-000000000002') \gset
SELECT pgrst.reset();
UPDATE eightms.message SET expires_at = now() - interval '1 second' WHERE message_id IN (:'em', :'em2');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-000000000003');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) WHERE message_id = :'em'), 0::bigint,
		  'a message past its expiry is not handed out');
SELECT pgrst.reset();
SELECT is((SELECT status || ': ' || error FROM eightms.message WHERE message_id = :'em'),
		  'expired: not sent before it expired', 'the claim marks it expired');
SELECT cmp_ok(eightms.expire_messages(), '>=', 1, 'the scheduled job finds the rest');
SELECT is((SELECT status FROM eightms.message WHERE message_id = :'em2'), 'expired', 'and expires them');

-- ------------------------------------------------------------ conversations in a batch

-- A batch to numbers with a conversation (one of them left without a phone,
-- as when none was online) and to a new number: each message joins its
-- number's one conversation, the phoneless one gets a phone, and every
-- conversation is marked active now.
SELECT pgrst.reset();
INSERT INTO eightms.conversation (account_id, peer_number, phone_id, last_message_at)
VALUES (:'acct', '+13125550170', '00000000-0000-4000-8000-000000000002', now() - interval '1 day'),
	   (:'acct', '+13125550171', NULL, now() - interval '1 day');
SELECT pgrst.as_user('bella', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.send_messages($$[
	{"to": "+13125550170", "body": "existing"}, {"to": "+13125550171", "body": "phoneless"},
	{"to": "+13125550172", "body": "new"}, {"to": "+13125550170", "body": "existing again"}]$$) WHERE status = 'queued'),
		  4::bigint, 'a batch over existing, phoneless and new conversations queues every item');
SELECT is((SELECT count(*) FROM eightms.conversation WHERE account_id = :'acct' AND peer_number IN ('+13125550170', '+13125550171', '+13125550172')),
		  3::bigint, 'one conversation per number, none duplicated');
SELECT is((SELECT count(*) FROM eightms.message m JOIN eightms.conversation c USING (account_id, conversation_id)
			WHERE m.account_id = :'acct' AND m.body IN ('existing', 'phoneless', 'new', 'existing again')
			  AND c.peer_number = m.peer_number AND c.last_message_at = m.created_at AND m.phone_id = c.phone_id),
		  4::bigint, 'each message is in its number''s conversation, on its phone, and the conversation is active now');
SELECT is((SELECT phone_id FROM eightms.conversation WHERE account_id = :'acct' AND peer_number = '+13125550170'),
		  '00000000-0000-4000-8000-000000000002'::uuid, 'an existing conversation keeps its phone');
SELECT isnt((SELECT phone_id FROM eightms.conversation WHERE account_id = :'acct' AND peer_number = '+13125550171'),
			NULL, 'the phoneless conversation got one');

-- Every message's pending flag agrees with its status (the queue indexes
-- read the flag), and a write that changes one without the other is refused.
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message
			WHERE pending IS DISTINCT FROM (CASE WHEN status IN ('queued', 'claimed') THEN true END)),
		  0::bigint, 'pending is true exactly for queued and claimed messages');
SELECT throws_ok(format('UPDATE eightms.message SET status = %L WHERE message_id = %L', 'canceled',
						(SELECT message_id FROM eightms.message WHERE status = 'queued' LIMIT 1)),
				 '23514', NULL, 'a status change that leaves pending behind is refused');

-- ------------------------------------------------------------ inbox order

-- The inbox index holds the minute of each conversation's last message;
-- the list must still come out exactly by last_message_at, newest first,
-- within a minute and across minutes, and page by keyset without a gap.
SELECT pgrst.reset();
DELETE FROM eightms.message WHERE account_id = :'acct';
DELETE FROM eightms.conversation WHERE account_id = :'acct';
INSERT INTO eightms.conversation (account_id, peer_number, last_message_at)
SELECT :'acct', '+1312555' || (2000 + i),
	   -- Several per minute, some sharing a timestamp (the id breaks ties).
	   timestamptz '2026-11-20 10:00:00+00' + (i / 4) * interval '17 seconds'
  FROM generate_series(1, 40) i;
SELECT pgrst.as_user('bella', :'acct');
SELECT is(array(SELECT conversation_id FROM eightms_api.list_conversations(page_size => 200)),
		  array(SELECT conversation_id FROM eightms.conversation WHERE account_id = :'acct'
				 ORDER BY last_message_at DESC, conversation_id DESC),
		  'the inbox lists conversations exactly by their last message, newest first');
CREATE TEMP TABLE pages (n serial, conversation_id uuid);
DO $$
DECLARE
	at timestamptz;
	id uuid;
	got integer;
BEGIN
	LOOP
		INSERT INTO pages (conversation_id)
		SELECT l.conversation_id FROM eightms_api.list_conversations(at, id, 3) l;
		GET DIAGNOSTICS got = ROW_COUNT;
		EXIT WHEN got = 0;
		SELECT c.last_message_at, c.conversation_id INTO at, id
		  FROM pages p JOIN eightms.conversation c USING (conversation_id) ORDER BY p.n DESC LIMIT 1;
	END LOOP;
END
$$;
SELECT is(array(SELECT conversation_id FROM pages ORDER BY n),
		  array(SELECT conversation_id FROM eightms_api.list_conversations(page_size => 200)),
		  'paging by threes across minute boundaries yields the same list, with no gap or repeat');

-- Truncating conversations truncates messages too, as TRUNCATE ... CASCADE
-- over the foreign key the table no longer has would.
SELECT pgrst.as_user('bella', :'acct');
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+13125550190", "body": "before the truncate"}]');
SELECT pgrst.reset();
SELECT cmp_ok((SELECT count(*) FROM eightms.message), '>', 0::bigint, 'there are messages before the truncate');
TRUNCATE eightms.conversation;
SELECT is((SELECT count(*) FROM eightms.message), 0::bigint, 'truncating conversations leaves no message behind');

SELECT * FROM finish();
ROLLBACK;
