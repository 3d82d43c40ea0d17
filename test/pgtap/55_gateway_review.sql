-- Issue 18's review of the gateway: the bugs it found (2 to 6; bug 1, the
-- race with a STOP, is proven by test/isolation/specs) and the behaviour
-- it found surprising, each as decided in doc/api.md and doc/phone-protocol.md.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('fiona');
SELECT account_id AS acct FROM eightms_api.create_account('Fiona Florist', 'America/New_York') \gset
SELECT pgrst.reset();
-- A and B paired, both offline for now; C online with no network.
INSERT INTO eightms.phone (account_id, phone_id, device_id, battery_pct, charging)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000a1', 'dev-a', 90, true),
	   (:'acct', '00000000-0000-4000-8000-0000000000b1', 'dev-b', 90, true);
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, charging, network)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000c1', 'dev-c', now(), 90, true, 'none');

-- ------------------------------------------------------------ routing

SELECT is((SELECT count(*) FROM eightms.healthy_phones(:'acct')), 0::bigint,
		  'a phone reporting no network is not fit to send: routing gives it nothing');

-- Bug 3: the first message of a conversation, sent while no phone was
-- online, makes the phone that claims it the conversation's.
SELECT pgrst.as_user('fiona', :'acct');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 212 555 0150', 'first')), NULL,
		  'with no phone online the first message waits for any phone');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000b1');
SELECT eightms_api.heartbeat(90, 'wifi', true);
SELECT is((SELECT array_agg(body) FROM eightms_api.claim_messages(10)), ARRAY['first'], 'B comes online and claims it');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000a1');
SELECT eightms_api.heartbeat(95, 'wifi', true);
SELECT pgrst.as_user('fiona', :'acct');
SELECT is((SELECT phone_id FROM eightms_api.conversations WHERE peer_number = '+12125550150'),
		  '00000000-0000-4000-8000-0000000000b1'::uuid, 'the conversation now names the phone that sent its first message');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 212 555 0150', 'second')),
		  '00000000-0000-4000-8000-0000000000b1'::uuid,
		  'its next message goes to that phone, though A (an empty queue) is healthier');

-- ------------------------------------------------------------ bounds

-- Bug 2: with folding on, the bounds hold for the folded body.
SELECT eightms_api.set_message_options(true);
SELECT throws_ok(format('SELECT * FROM eightms_api.send_message(%L, %L)', '+1 212 555 0140', repeat(chr(8203), 2)),
				 '22023', 'a message body must be 1 to 1600 characters once look-alikes are folded',
				 'two zero-width spaces fold to an empty SMS: refused');
SELECT throws_ok(format('SELECT * FROM eightms_api.send_message(%L, %L)', '+1 212 555 0140', repeat(chr(8230), 1600)),
				 '22023', 'a message body must be 1 to 1600 characters once look-alikes are folded',
				 '1,600 ellipses fold to 4,800 characters: refused');
SELECT is((SELECT length(body) FROM eightms_api.send_message('+1 212 555 0140', repeat(chr(8230), 533))), 1599,
		  '533 ellipses fold to 1,599 characters: queued');
SELECT results_eq(format($$SELECT status, error_code, error FROM eightms_api.send_messages(%L) ORDER BY item$$,
						 jsonb_build_array(jsonb_build_object('to', '+1 212 555 0141', 'body', repeat(chr(8203), 2)),
										   jsonb_build_object('to', '+1 212 555 0141', 'body', repeat(chr(8230), 1600)),
										   jsonb_build_object('to', '+1 212 555 0141', 'body', 'fine'))),
	$$VALUES ('refused', '22023', 'a message body must be 1 to 1600 characters once look-alikes are folded'),
			 ('refused', '22023', 'a message body must be 1 to 1600 characters once look-alikes are folded'),
			 ('queued', NULL, NULL)$$,
	'a batch refuses the same folded bodies');
SELECT eightms_api.set_message_options(false);

-- Bug 5: values that are not strings are refused per item, not texted.
SELECT results_eq($$SELECT status, error_code, error FROM eightms_api.send_messages('[
		{"to": "+1 212 555 0142", "body": {"promo": 1}},
		{"to": "+1 212 555 0142", "body": ["a", "b"]},
		{"to": "+1 212 555 0142", "body": true},
		{"to": 12125550142, "body": "a number for a number"},
		{"to": "+1 212 555 0142", "body": "a numeric key", "idempotency_key": 5},
		{"to": "+1 212 555 0142", "body": "a numeric phone", "phone_id": 5},
		"not an object",
		{"to": "+1 212 555 0142", "body": "fine"}]') ORDER BY item$$,
	$$VALUES ('refused', '22023', 'body must be a string'), ('refused', '22023', 'body must be a string'),
			 ('refused', '22023', 'body must be a string'),
			 ('refused', '22023', 'to must be a string: the recipient''s number'),
			 ('refused', '22023', 'idempotency_key must be a string'),
			 ('refused', '22023', 'phone_id must be a string: a phone''s id'),
			 ('refused', '22023', 'an item must be a JSON object'),
			 ('queued', NULL, NULL)$$,
	'non-string values are refused item by item; the rest of the batch is queued');
SELECT is((SELECT count(*) FROM eightms_api.messages WHERE peer_number = '+12125550142'), 1::bigint,
		  'and nothing but the string body was queued');

-- send_at: a time older than a message lives is refused, not expired.
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0143', 'late', send_at => now() - interval '2 days')$$,
				 '22023', 'send_at is further in the past than a message lives', 'a send_at past the message lifetime is refused');
SELECT is((SELECT error FROM eightms_api.send_messages(jsonb_build_array(jsonb_build_object(
			'to', '+1 212 555 0143', 'body', 'late', 'send_at', now() - interval '2 days')))),
		  'send_at is further in the past than a message lives', 'in a batch too');
SELECT is((SELECT status FROM eightms_api.send_message('+1 212 555 0143', 'just late', send_at => now() - interval '1 hour')),
		  'queued', 'a send_at an hour ago is due at once');
-- A time with its offset is that instant (one without: the session's zone).
SELECT message_id AS at_nine FROM eightms_api.send_messages('[{"to": "+1 212 555 0143", "body": "at nine",
			"send_at": "2030-01-02T09:00:00-05:00"}]') \gset
SELECT is((SELECT send_at FROM eightms_api.messages WHERE message_id = :'at_nine'),
		  '2030-01-02 14:00:00+00'::timestamptz, 'send_at with an offset is read as that instant');

-- ------------------------------------------------------------ inbound

-- Bug 4: pairing the same handset again keeps inbound de-duplication.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000a1');
SELECT is((SELECT duplicate FROM eightms_api.receive_messages('[{"from": "+1 212 555 0160", "body": "hello",
			"device_message_id": "sms-1"}]')), false, 'an inbound message is stored');
SELECT pgrst.as_user('fiona', :'acct');
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon();
SELECT token AS a2_token FROM eightms_api.pair_phone(:'code', 'dev-a') \gset
SELECT pgrst.as_token(:'a2_token');
SELECT is((SELECT duplicate FROM eightms_api.receive_messages('[{"from": "+1 212 555 0160", "body": "hello",
			"device_message_id": "sms-1"}]')), true,
		  'the handset paired again uploads it again: recognised as a duplicate');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND device_message_id = 'sms-1'), 1::bigint,
		  'and stored once');

-- The inbox orders by when the phone received a message, bounded by its
-- arrival: a late upload takes its place instead of the top.
SELECT is((SELECT count(*) FROM eightms_api.receive_messages(jsonb_build_array(
			jsonb_build_object('from', '+1 212 555 0171', 'body', 'ten minutes ago', 'device_message_id', 'o-1',
							   'received_at', now() - interval '10 minutes'),
			jsonb_build_object('from', '+1 212 555 0170', 'body', 'newer', 'device_message_id', 'o-2',
							   'received_at', now() - interval '1 minute'),
			jsonb_build_object('from', '+1 212 555 0170', 'body', 'older', 'device_message_id', 'o-3',
							   'received_at', now() - interval '1 hour'),
			jsonb_build_object('from', '+1 212 555 0172', 'body', 'an hour ago', 'device_message_id', 'o-4',
							   'received_at', now() - interval '1 hour'),
			jsonb_build_object('from', '+1 212 555 0173', 'body', 'from the future', 'device_message_id', 'o-5',
							   'received_at', now() + interval '1 day')))),
		  5::bigint, 'five messages arrive at once, uploaded late and out of order');
SELECT pgrst.as_user('fiona', :'acct');
SELECT results_eq($$SELECT peer_number, last_body FROM eightms_api.list_conversations()
					 WHERE peer_number LIKE '+1212555017_'$$,
	$$VALUES ('+12125550173', 'from the future'), ('+12125550170', 'newer'),
			 ('+12125550171', 'ten minutes ago'), ('+12125550172', 'an hour ago')$$,
	'the inbox lists conversations by when the phone received their last message, the latest of them shown');
SELECT is((SELECT last_message_at FROM eightms_api.list_conversations() WHERE peer_number = '+12125550173'),
		  (SELECT created_at FROM eightms_api.messages WHERE peer_number = '+12125550173'),
		  'a phone clock ahead counts as the arrival, never later');
-- (The conversation named first: Citus would send a subquery of the
-- conversations, with the function call around it, to a shard.)
SELECT conversation_id AS conv FROM eightms_api.conversations WHERE peer_number = '+12125550170' \gset
SELECT is((SELECT array_agg(body) FROM eightms_api.conversation_messages(:'conv')),
		  ARRAY['newer', 'older'], 'a conversation''s messages come newest first by the phone''s time');

-- A new message brings an archived conversation back.
SELECT eightms_api.archive_conversation(:'conv');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations() WHERE conversation_id = :'conv'), 0::bigint,
		  'an archived conversation leaves the inbox');
-- Bug 6: a NULL is refused, not read as "not archived".
SELECT throws_ok(format('SELECT eightms_api.archive_conversation(%L, NULL)', :'conv'), '22023',
				 'archived must be true or false', 'archive_conversation refuses a null');
SELECT is((SELECT archived_at IS NOT NULL FROM eightms_api.conversations WHERE conversation_id = :'conv'), true,
		  'and leaves it archived');
SELECT eightms_api.archive_conversation(:'conv', true);
SELECT pgrst.as_token(:'a2_token');
SELECT eightms_api.receive_messages('[{"from": "+1 212 555 0170", "body": "are you there?", "device_message_id": "o-6"}]');
SELECT pgrst.as_user('fiona', :'acct');
SELECT is((SELECT last_body FROM eightms_api.list_conversations() WHERE conversation_id = :'conv'), 'are you there?',
		  'a new message brings an archived conversation back to the inbox');

-- ------------------------------------------------------------ reports

-- The phone that held the lease sent it: its report wins over the gateway
-- having given the message up (expired, canceled by a STOP, failed for
-- its lease), and the error keeps what the gateway had decided.
SELECT pgrst.as_user('fiona', :'acct');
SELECT message_id AS m_exp FROM eightms_api.send_message('+1 212 555 0180', 'will expire', phone_id => '00000000-0000-4000-8000-0000000000b1') \gset
SELECT message_id AS m_stop FROM eightms_api.send_message('+1 212 555 0181', 'will be stopped', phone_id => '00000000-0000-4000-8000-0000000000b1') \gset
SELECT message_id AS m_lease FROM eightms_api.send_message('+1 212 555 0182', 'lease runs out', phone_id => '00000000-0000-4000-8000-0000000000b1') \gset
SELECT message_id AS m_fail FROM eightms_api.send_message('+1 212 555 0183', 'phone failed', phone_id => '00000000-0000-4000-8000-0000000000b1') \gset
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000b1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) WHERE message_id IN (:'m_exp', :'m_stop', :'m_lease', :'m_fail')),
		  4::bigint, 'B claims the four');
SELECT is((SELECT note FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'m_fail', 'status', 'failed',
			'error', 'no signal')))), NULL, 'the phone reports one failed');
SELECT eightms_api.receive_messages('[{"from": "+1 212 555 0181", "body": "STOP", "device_message_id": "stop-1"}]');
SELECT pgrst.reset();
UPDATE eightms.message SET expires_at = now() - interval '1 second' WHERE message_id = :'m_exp';
SET LOCAL eightms.message_max_attempts = 1;
UPDATE eightms.message SET lease_expires_at = now() - interval '1 second' WHERE message_id = :'m_lease';
SELECT eightms.expire_messages();
RESET eightms.message_max_attempts;
SELECT results_eq(format($$SELECT status FROM eightms.message WHERE message_id IN (%L, %L, %L) ORDER BY body DESC$$,
						 :'m_stop', :'m_exp', :'m_lease'),
	$$VALUES ('expired'), ('canceled'), ('failed')$$, 'the gateway gave the three up while B held them');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000b1');
SELECT results_eq(format($$SELECT message_id, accepted, note FROM eightms_api.report_messages(%L)$$,
						 jsonb_build_array(jsonb_build_object('id', :'m_exp', 'status', 'delivered'),
										   jsonb_build_object('id', :'m_stop', 'status', 'sent'),
										   jsonb_build_object('id', :'m_fail', 'status', 'sent'))),
	format($$VALUES (%L::uuid, true, NULL::text), (%L::uuid, true, NULL), (%L::uuid, true, 'already failed')$$,
		   :'m_exp', :'m_stop', :'m_fail'),
	'B''s reports of the expired and canceled messages count; a failure it reported itself stays');
-- The same within a batch that names a message twice (folded per message).
SELECT results_eq(format($$SELECT accepted, note FROM eightms_api.report_messages(%L)$$,
						 jsonb_build_array(jsonb_build_object('id', :'m_lease', 'status', 'sent'),
										   jsonb_build_object('id', :'m_lease', 'status', 'delivered'))),
	$$VALUES (true, NULL::text), (true, NULL)$$, 'sent then delivered count for a message failed for its lease');
SELECT pgrst.reset();
SELECT results_eq(format($$SELECT status, error FROM eightms.message WHERE message_id IN (%L, %L, %L, %L) ORDER BY body DESC$$,
						 :'m_exp', :'m_stop', :'m_lease', :'m_fail'),
	$$VALUES ('delivered', 'sent by the phone after it was expired (not sent before it expired)'),
			 ('sent', 'sent by the phone after it was canceled (recipient opted out)'),
			 ('failed', 'no signal'),
			 ('delivered', 'sent by the phone after it was failed (the phone did not report within its lease 1 times)')$$,
	'each keeps what the gateway had decided in its error');

SELECT * FROM finish();
ROLLBACK;
