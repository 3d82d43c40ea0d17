-- Cancelling queued messages (a scheduled campaign stopped, a batch sent by
-- mistake): what is still queued is canceled with its time and who did it,
-- and no phone claims it; what a phone has claimed is left to its report;
-- every id gets an answer; other accounts' messages are out of reach.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('carla');
SELECT account_id AS acct FROM eightms_api.create_account('Carla Catering') \gset
SELECT pgrst.as_user('otto');
SELECT account_id AS other FROM eightms_api.create_account('Otto Optics') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000c1', 'carla-phone', NULL, now(), 90);

-- Two messages due now, three scheduled for tomorrow.
SELECT pgrst.as_user('carla', :'acct');
CREATE TEMP TABLE sent AS
SELECT item, message_id FROM eightms_api.send_messages((
	SELECT jsonb_agg(jsonb_build_object('to', '+1 212 555 07' || lpad(i::text, 2, '0'), 'body', 'Menu ' || i)
					 || CASE WHEN i > 2 THEN jsonb_build_object('send_at', now() + interval '1 day') ELSE '{}' END
					 ORDER BY i)
	  FROM generate_series(1, 5) i));
SELECT message_id AS m1 FROM sent WHERE item = 1 \gset
SELECT message_id AS m2 FROM sent WHERE item = 2 \gset
SELECT message_id AS m3 FROM sent WHERE item = 3 \gset
SELECT message_id AS m4 FROM sent WHERE item = 4 \gset
SELECT message_id AS m5 FROM sent WHERE item = 5 \gset

-- The phone takes the first of the two due now.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT array_agg(message_id) FROM eightms_api.claim_messages(1)), ARRAY[:'m1'::uuid],
		  'the phone claims the first message due');

-- Cancel: the claimed one, a queued one, two scheduled ones, one twice, an
-- unknown id and a NULL.
SELECT pgrst.as_user('carla', :'acct');
SELECT results_eq(
	format($$SELECT message_id, canceled, status FROM eightms_api.cancel_messages(ARRAY[%L, %L, %L, %L, NULL, %L, %L]::uuid[])$$,
		   :'m1', :'m2', :'m3', '00000000-0000-4000-8000-00000000dead', :'m2', :'m4'),
	format($$VALUES (%L::uuid, false, 'claimed'), (%L::uuid, true, 'canceled'), (%L::uuid, true, 'canceled'),
					('00000000-0000-4000-8000-00000000dead'::uuid, false, NULL), (%L::uuid, true, 'canceled')$$,
		   :'m1', :'m2', :'m3', :'m4'),
	'each id is answered once, in order: queued and scheduled ones canceled, the claimed one left, an unknown one without a status');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message
			WHERE message_id IN (:'m2', :'m3', :'m4') AND status = 'canceled' AND pending IS NULL
			  AND canceled_at IS NOT NULL AND error = 'canceled by carla'),
		  3::bigint, 'canceled messages keep when and by whom, and leave the queue');
SELECT is((SELECT status FROM eightms.message WHERE message_id = :'m1'), 'claimed', 'the claimed message is untouched');

-- Nothing canceled is claimed, even once it would be due.
UPDATE eightms.message SET send_at = now() - interval '1 minute' WHERE account_id = :'acct' AND send_at > now();
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT array_agg(message_id) FROM eightms_api.claim_messages(10)), ARRAY[:'m5'::uuid],
		  'the next claim gets only the scheduled message that was not canceled');
-- A late report for a canceled message moves nothing.
SELECT is((SELECT note FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'m3', 'status', 'sent')))),
		  'already canceled', 'a report for a canceled message is answered "already canceled"');
SELECT is((SELECT status FROM eightms.message WHERE message_id = :'m3'), 'canceled', 'and the message stays canceled');
SELECT throws_ok(format($$SELECT * FROM eightms_api.cancel_messages(ARRAY[%L]::uuid[])$$, :'m5'), '42501', NULL,
				 'a phone cannot cancel messages');

-- Again, and from another account.
SELECT pgrst.as_user('carla', :'acct');
SELECT results_eq(format($$SELECT canceled, status FROM eightms_api.cancel_messages(ARRAY[%L]::uuid[])$$, :'m2'),
				  $$VALUES (false, 'canceled')$$, 'canceling twice changes nothing and says canceled');
SELECT pgrst.as_user('otto', :'other');
SELECT results_eq(format($$SELECT canceled, status FROM eightms_api.cancel_messages(ARRAY[%L]::uuid[])$$, :'m5'),
				  $$VALUES (false, NULL::text)$$, 'another account''s message is not found');
SELECT pgrst.reset();
SELECT is((SELECT status FROM eightms.message WHERE message_id = :'m5'), 'claimed', 'and is left as it was');

-- Bad input.
SELECT pgrst.as_user('carla', :'acct');
SELECT throws_ok($$SELECT * FROM eightms_api.cancel_messages(NULL)$$, '22023', NULL, 'a NULL array is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.cancel_messages(array_fill('00000000-0000-4000-8000-000000000001'::uuid, ARRAY[10001]))$$,
				 '22023', NULL, 'more than 10000 ids are refused');
SELECT is((SELECT count(*) FROM eightms_api.cancel_messages('{}')), 0::bigint, 'an empty array cancels nothing');

-- A STOP cancels what waits for the number, with the time too.
SELECT message_id AS m6 FROM eightms_api.send_message('+1 212 555 0799', 'Last call') \gset
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 212 555 0799", "body": "STOP", "device_message_id": "stop-1"}]')),
		  'opt_out', 'the number opts out');
SELECT pgrst.reset();
SELECT is((SELECT status || ' ' || (canceled_at IS NOT NULL) || ' ' || error FROM eightms.message WHERE message_id = :'m6'),
		  'canceled true recipient opted out', 'a STOP cancels the queued message with its time and reason');

SELECT * FROM finish();
ROLLBACK;
