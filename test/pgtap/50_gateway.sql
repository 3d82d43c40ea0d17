-- The gateway's whole flow through the PostgREST contract: pair, heartbeat,
-- send, claim, report, inbound, STOP, refused send; idempotency; leases;
-- revoked device tokens; other accounts' phones.
BEGIN;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

SELECT pgrst.as_user('olivia');
SELECT account_id AS acct FROM eightms_api.create_account('Olivia Optometry', 'America/New_York') \gset
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('zoe');
SELECT account_id AS other_acct FROM eightms_api.create_account('Zoe Zoo') \gset
SELECT code AS other_code FROM eightms_api.create_pairing_code() \gset

-- Pairing: anonymous, single use, yields a device JWT.
SELECT pgrst.as_anon();
SELECT * FROM eightms_api.pair_phone(:'code', 'android-abc', 'Front desk', '1.4.2') \gset pair_
SELECT is(:'pair_account_id'::uuid, :'acct'::uuid, 'the phone is paired to the account that made the code');
SELECT throws_ok(format('SELECT * FROM eightms_api.pair_phone(%L, %L)', :'code', 'android-other'), '28000',
				 'pairing code is invalid or has expired', 'a pairing code works once');
SELECT * FROM eightms_api.pair_phone(:'other_code', 'android-zzz') \gset other_
SELECT pgrst.as_user('olivia', :'acct');
SELECT code AS spare_code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_anon();
SELECT throws_ok(format('SELECT * FROM eightms_api.pair_phone(%L, %L, %L)', :'spare_code', 'android-long', repeat('n', 101)),
				 '22023', 'a phone name must be at most 100 characters', 'a phone name over 100 characters is refused');
SELECT throws_ok(format('SELECT * FROM eightms_api.pair_phone(%L, %L, NULL, %L)', :'spare_code', 'android-long', repeat('9', 51)),
				 '22023', 'app_version must be at most 50 characters', 'an app version over 50 characters is refused');
SELECT pgrst.reset();
SELECT is((eightms.jwt_verify(:'pair_token') ->> 'role'), 'eightms_phone', 'the device token carries the phone role');
SELECT is((SELECT count(*) FROM eightms.pairing_code WHERE code_hash = sha256(convert_to(:'code', 'UTF8'))), 1::bigint,
		  'the pairing code is stored as its SHA-256');

-- Heartbeat with telemetry; the gateway password is sealed.
SELECT pgrst.as_token(:'pair_token');
SELECT isnt(eightms_api.heartbeat(87, '4G', true, '1.4.3', 'local-pass-123'), NULL, 'the phone sends a heartbeat');
SELECT throws_ok($$SELECT eightms_api.heartbeat(120, 'wifi')$$, '22023', NULL, 'a battery above 100% is refused');
SELECT throws_ok($$SELECT eightms_api.heartbeat(50, 'carrier-pigeon')$$, '22023', NULL, 'an unknown network type is refused');
SELECT throws_ok($$SELECT eightms_api.heartbeat(50, 'wifi', app_version => repeat('9', 51))$$, '22023',
				 'app_version must be at most 50 characters', 'an app version over 50 characters is refused, not a check violation');
SELECT throws_ok($$SELECT eightms_api.heartbeat(50, 'wifi', gateway_password => '')$$, '22023',
				 'a gateway password must be 1 to 200 characters', 'an empty gateway password is refused');
SELECT throws_ok($$SELECT eightms_api.heartbeat(50, 'wifi', gateway_password => repeat('p', 201))$$, '22023',
				 'a gateway password must be 1 to 200 characters', 'a gateway password over 200 characters is refused');
SELECT pgrst.as_user('olivia', :'acct');
SELECT is((SELECT online::text || ' ' || network || ' ' || battery_pct FROM eightms_api.phones WHERE phone_id = :'pair_phone_id'),
		  'true 4g 87', 'the dashboard sees the phone online with its telemetry');
SELECT pgrst.reset();
SELECT is((SELECT eightms.unseal(gateway_password, 'phone:' || account_id || ':' || phone_id || ':gateway_password')
			 FROM eightms.phone WHERE phone_id = :'pair_phone_id'), 'local-pass-123', 'the gateway password is stored sealed');

-- Sending.
SELECT pgrst.as_user('olivia', :'acct');
SELECT * FROM eightms_api.send_message('(212) 555-0198', 'Your glasses are ready!', idempotency_key => 'order-77') \gset sent_
SELECT is(:'sent_peer_number'::text, '+12125550198', 'the recipient is normalized to E.164 with the account''s region');
SELECT is(:'sent_status'::text, 'queued', 'the message is queued');
SELECT is(:'sent_encoding' || '/' || :'sent_segments'::text, 'gsm7/1', 'encoding and segments are stored');
SELECT is((SELECT message_id FROM eightms_api.send_message('(212) 555-0198', 'Your glasses are ready!', idempotency_key => 'order-77')),
		  :'sent_message_id'::uuid, 'the same idempotency key returns the same message');
SELECT is((SELECT count(*) FROM eightms_api.messages WHERE idempotency_key = 'order-77'), 1::bigint, 'and queues nothing more');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('12', 'hi')$$, '22023', NULL, 'an unusable number is refused');
SELECT is((SELECT array_agg(status ORDER BY item) FROM eightms_api.send_messages(
			'[{"to":"+1 212 555 0111","body":"a"},{"to":"nope","body":"b"},{"to":"+1 212 555 0112","body":""}]')),
		  ARRAY['queued', 'refused', 'refused'], 'a batch reports each item; a refused item blocks none');
-- Bad input is refused with its own message, never an internal error.
SELECT throws_ok($$SELECT * FROM eightms_api.send_message(NULL, 'hi')$$, '22023', 'a recipient number is required',
				 'a missing recipient is refused (not a not-null violation)');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0113', 'hi', idempotency_key => repeat('k', 201))$$,
				 '22023', 'an idempotency key must be 1 to 200 characters', 'an idempotency key over 200 characters is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0113', 'hi', idempotency_key => '')$$,
				 '22023', 'an idempotency key must be 1 to 200 characters', 'an empty idempotency key is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0113', 'hi', send_at => 'infinity')$$,
				 '22023', 'send_at must be a date and time, not infinity', 'a message is not scheduled for ever');
SELECT results_eq($$SELECT status, error_code, error FROM eightms_api.send_messages(
			('[{"to": null, "body": "a"}, {"to": "+1 212 555 0113", "body": "b", "idempotency_key": "' || repeat('k', 201) || '"},
			   {"to": "+1 212 555 0113", "body": "c", "send_at": "-infinity"},
			   {"to": "+1 212 555 0113", "body": "d", "idempotency_key": ""}]')::jsonb) ORDER BY item$$,
	$$VALUES ('refused', '22023', 'a recipient number is required'),
			 ('refused', '22023', 'an idempotency key must be 1 to 200 characters'),
			 ('refused', '22023', 'send_at must be a date and time, not -infinity'),
			 ('refused', '22023', 'an idempotency key must be 1 to 200 characters')$$,
	'a batch refuses the same items with the same messages');
SELECT throws_ok($$SELECT eightms_api.set_message_options(NULL)$$, '22023', 'fold_lookalikes must be true or false',
				 'message options refuse a null');
SELECT throws_ok(format('SELECT eightms_api.mark_read(%L)', gen_random_uuid()), 'P0002', NULL,
				 'marking an unknown conversation read is an error, as archiving and deleting are');

-- Claims: the other account's phone sees nothing; ours gets the messages.
SELECT pgrst.as_token(:'other_token');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'another account''s phone claims nothing');
SELECT pgrst.as_token(:'pair_token');
CREATE TEMP TABLE claimed AS SELECT * FROM eightms_api.claim_messages(10);
SELECT is((SELECT count(*) FROM claimed), 2::bigint, 'the phone claims the queued messages');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10)), 0::bigint, 'a claimed message is not handed out again');

-- Reports move forward only; late and repeated reports are harmless.
SELECT is((SELECT accepted FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'sent_message_id', 'status', 'sent')))),
		  true, 'sent is accepted');
SELECT is((SELECT accepted FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'sent_message_id', 'status', 'delivered')))),
		  true, 'delivered is accepted');
SELECT is((SELECT note FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'sent_message_id', 'status', 'sent')))),
		  'already delivered', 'a late sent after delivered changes nothing');
SELECT pgrst.as_token(:'other_token');
SELECT is((SELECT accepted FROM eightms_api.report_messages(jsonb_build_array(jsonb_build_object('id', :'sent_message_id', 'status', 'failed')))),
		  false, 'a report for another account''s message is rejected');
SELECT pgrst.reset();
SELECT is((SELECT status || ' ' || (sent_at IS NOT NULL) || ' ' || (delivered_at IS NOT NULL) FROM eightms.message WHERE message_id = :'sent_message_id'),
		  'delivered true true', 'the message is delivered and keeps each timestamp');

-- A time the phone wrote that cannot be read never fails its batch (the
-- phone would send the same batch again and again): the report counts from
-- its arrival.  Times are ISO 8601 strings or milliseconds since 1970.
SELECT message_id AS other_message_id FROM claimed WHERE message_id <> :'sent_message_id' \gset
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT accepted FROM eightms_api.report_messages(jsonb_build_array(
			jsonb_build_object('id', :'other_message_id', 'status', 'sent', 'at', 1767225600000)))),
		  true, 'a report timed in milliseconds since 1970 is accepted');
-- (The report's time named in its own request: on Citus each request is a
-- transaction of its own, with a now() of its own.)
SELECT now() AS report_at, array_agg(coalesce(note, 'moved') ORDER BY note NULLS FIRST) AS report_notes
  FROM eightms_api.report_messages(jsonb_build_array(
			jsonb_build_object('id', :'other_message_id', 'status', 'delivered', 'at', 'half past ten'),
			jsonb_build_object('id', :'other_message_id', 'status', 'delivered', 'at', '2026-01-02T00:00:00Z'))) \gset
SELECT is(:'report_notes'::text[],
		  ARRAY['moved', 'already delivered'], 'a report with an unreadable time is applied, and the batch with it');
SELECT pgrst.reset();
SELECT is((SELECT (sent_at = '2026-01-01 00:00:00+00') || ' ' || (delivered_at = :'report_at') FROM eightms.message WHERE message_id = :'other_message_id'),
		  'true true', 'the readable time is kept, the unreadable one is the time of the report');

-- Inbound: exactly once per device message id; two equal texts both kept.
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT array_agg(duplicate ORDER BY device_message_id) FROM eightms_api.receive_messages(
			'[{"from":"+12125550198","body":"Thanks!","device_message_id":"sms-1"},
			  {"from":"+12125550198","body":"Thanks!","device_message_id":"sms-2"}]')),
		  ARRAY[false, false], 'two distinct messages with the same text are both stored');
SELECT is((SELECT duplicate FROM eightms_api.receive_messages('[{"from":"+12125550198","body":"Thanks!","device_message_id":"sms-1"}]')),
		  true, 'a repeated device message id is recognised and not stored again');
SELECT is((SELECT array_agg(duplicate) FROM eightms_api.receive_messages(
			'[{"from":"+12125550199","body":"bad clock","device_message_id":"sms-t1","received_at":"half past ten"},
			  {"from":"+12125550199","body":"millis","device_message_id":"sms-t2","received_at":1767225600000},
			  {"from":"+12125550199","body":"iso","device_message_id":"sms-t3","received_at":"2026-01-01T01:00:00+01:00"}]')),
		  ARRAY[false, false, false], 'an inbound batch with an unreadable received_at is stored whole');
SELECT pgrst.reset();
SELECT is((SELECT array_agg(body || ' ' || CASE received_at WHEN created_at THEN 'arrival' WHEN '2026-01-01 00:00:00+00' THEN 'new year'
											  ELSE received_at::text END ORDER BY body)
			 FROM eightms.message WHERE account_id = :'acct' AND device_message_id LIKE 'sms-t_'),
		  ARRAY['bad clock arrival', 'iso new year', 'millis new year'],
		  'received_at: milliseconds and ISO 8601 are read, an unreadable one is the time of arrival');
SELECT pgrst.as_token(:'pair_token');
-- An item that can never be stored is answered with its reason and blocks
-- none of the others in its batch.
CREATE TEMP TABLE inbound_mixed AS
SELECT row_number() OVER () AS item, r.* FROM eightms_api.receive_messages(($$[
	{"from": "+12125550197", "body": "first", "device_message_id": "sms-m1"},
	"not an object",
	{"from": "+12125550197", "body": "no id"},
	{"from": "+12125550197", "body": "long id", "device_message_id": "$$ || repeat('x', 201) || $$"},
	{"body": "no sender", "device_message_id": "sms-m2"},
	{"from": "   ", "body": "blank sender", "device_message_id": "sms-m3"},
	{"from": {"number": "+12125550197"}, "body": "sender not a string", "device_message_id": "sms-m4"},
	{"from": "+12125550197", "body": ["not", "a string"], "device_message_id": "sms-m5"},
	{"from": "+12125550197", "device_message_id": "sms-m6"},
	{"from": "+12125550197", "body": "last", "device_message_id": "sms-m7"}
]$$)::jsonb) r;
SELECT results_eq($$SELECT item, message_id IS NOT NULL, duplicate, error FROM inbound_mixed ORDER BY item$$,
	$$VALUES (1::bigint, true, false, NULL::text), (2, false, NULL::boolean, 'not a JSON object'),
			 (3, false, NULL, 'device_message_id must be 1 to 200 characters'),
			 (4, false, NULL, 'device_message_id must be 1 to 200 characters'),
			 (5, false, NULL, 'from must be the sender''s number or name'),
			 (6, false, NULL, 'from must be the sender''s number or name'),
			 (7, false, NULL, 'from must be the sender''s number or name'),
			 (8, false, NULL, 'body must be a string'),
			 (9, true, false, NULL), (10, true, false, NULL)$$,
	'each inbound item is stored or answered with why it cannot be, in item order');
SELECT pgrst.reset();
SELECT is((SELECT array_agg(coalesce(nullif(body, ''), '(empty)') ORDER BY device_message_id) FROM eightms.message
			WHERE account_id = :'acct' AND peer_number = '+12125550197'),
		  ARRAY['first', '(empty)', 'last'], 'only the storable items are stored (a missing body is an empty one)');
-- A batch takes its senders' conversations before it stores anything, and
-- creates them only for what it will store: an item in error or a message
-- stored before leaves no empty conversation behind.
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT array_agg(coalesce(error, duplicate::text) ORDER BY device_message_id) FROM eightms_api.receive_messages(
			'[{"from": "+12125550181", "body": ["not", "a string"], "device_message_id": "sms-e1"},
			  {"from": "+12125550182", "body": "Thanks!", "device_message_id": "sms-1"},
			  {"from": "+12125550183", "body": "new", "device_message_id": "sms-e2"}]')),
		  ARRAY['true', 'body must be a string', 'false'], 'a batch with an item in error and a repeated message');
SELECT pgrst.reset();
SELECT is((SELECT array_agg(peer_number || ' ' || unread_count) FROM eightms.conversation
			WHERE account_id = :'acct' AND peer_number IN ('+12125550181', '+12125550182', '+12125550183')),
		  ARRAY['+12125550183 1'], 'it made a conversation only for the message it stored');
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT error FROM eightms_api.receive_messages(jsonb_build_array(jsonb_build_object(
			'from', '+12125550197', 'body', repeat('b', 39016), 'device_message_id', 'sms-m8')))),
		  'body must be at most 39015 characters', 'an inbound body longer than 255 segments is refused');
SELECT throws_ok(format('SELECT * FROM eightms_api.receive_messages(%L)',
						(SELECT jsonb_agg(jsonb_build_object('from', '+12125550197', 'body', 'x', 'device_message_id', 'b-' || g))
						   FROM generate_series(1, 1001) g)),
				 '22023', NULL, 'an inbound batch is at most 1000 messages');
SELECT throws_ok(format('SELECT * FROM eightms_api.report_messages(%L)',
						(SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'status', 'sent')) FROM generate_series(1, 10001))),
				 '22023', NULL, 'a report batch is at most 10000 reports');
SELECT pgrst.as_user('olivia', :'acct');
SELECT is((SELECT unread_count FROM eightms_api.conversations WHERE peer_number = '+12125550198'), 2,
		  'the conversation counts two unread messages');
SELECT lives_ok(format('SELECT eightms_api.mark_read(%L)',
					   (SELECT conversation_id FROM eightms_api.conversations WHERE peer_number = '+12125550198')),
				'a member marks the conversation read');
SELECT is((SELECT unread_count FROM eightms_api.conversations WHERE peer_number = '+12125550198'), 0,
		  'it has no unread messages then');
-- JSON nulls for the paging arguments mean their defaults.
SELECT cmp_ok((SELECT count(*) FROM eightms_api.list_conversations(page_size => NULL)), '>', 1::bigint,
			  'a null page size lists a whole default page, not one row');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations(archived => NULL)),
		  (SELECT count(*) FROM eightms_api.list_conversations()), 'a null archived lists the unarchived conversations');

-- STOP: honoured at once, one confirmation, refused sends afterwards.
SELECT pgrst.as_user('olivia', :'acct');
SELECT message_id AS waiting_id FROM eightms_api.send_message('+1 212 555 0198', 'Still waiting') \gset
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from":"(212) 555-0198","body":"  stop ","device_message_id":"sms-3"}]')),
		  'opt_out', 'STOP (any case, whole message) opts the number out');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from":"+12125550198","body":"STOP","device_message_id":"sms-4"}]')),
		  'opt_out', 'a second STOP is accepted');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12125550198'
			 AND direction = 'out' AND body LIKE 'You have been unsubscribed%'), 1::bigint,
		  'exactly one confirmation is queued');
SELECT is((SELECT status || ': ' || error FROM eightms.message WHERE message_id = :'waiting_id'),
		  'canceled: recipient opted out', 'a message still queued to the number is canceled at once');
SELECT is((SELECT count(*) FROM eightms.consent_event WHERE account_id = :'acct' AND action = 'opt_out'), 1::bigint,
		  'the consent change is kept with its source message');
SELECT pgrst.as_user('olivia', :'acct');
SELECT throws_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0198', 'One more offer')$$, 'E8O01',
				 'the recipient has opted out of messages from this account', 'sending to an opted-out number is refused');
SELECT pgrst.as_token(:'pair_token');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from":"+12125550198","body":"START","device_message_id":"sms-5"}]')),
		  'opt_in', 'START opts the number back in');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from":"+12125550198","body":"help","device_message_id":"sms-6"}]')),
		  'help', 'HELP queues the help reply');
SELECT pgrst.as_user('olivia', :'acct');
SELECT lives_ok($$SELECT * FROM eightms_api.send_message('+1 212 555 0198', 'Welcome back')$$, 'after START, sending works again');

-- Leases: a claim that is never reported goes back to the queue.
SELECT pgrst.as_token(:'pair_token');
SELECT count(*) FROM eightms_api.claim_messages(10);
SELECT pgrst.reset();
UPDATE eightms.message SET lease_expires_at = now() - interval '1 second' WHERE account_id = :'acct' AND status = 'claimed';
SELECT cmp_ok(eightms.expire_messages(), '>=', 1, 'expired leases are found');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND status = 'claimed'), 0::bigint,
		  'no message stays claimed past its lease');
SELECT is((SELECT min(attempts) FROM eightms.message WHERE account_id = :'acct' AND status = 'queued' AND direction = 'out'), 1,
		  'a requeued message counts the attempt');

-- Inbox: keyset pages, archive, folding look-alikes, routing.
SELECT pgrst.as_user('olivia', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations(page_size => 2)), 2::bigint, 'the inbox pages');
SELECT last_message_at AS p_at, conversation_id AS p_id FROM eightms_api.list_conversations(page_size => 2)
 ORDER BY last_message_at, conversation_id LIMIT 1 \gset
SELECT is((SELECT count(*) FROM eightms_api.list_conversations(:'p_at', :'p_id', 50)
			WHERE conversation_id IN (SELECT conversation_id FROM eightms_api.list_conversations(page_size => 2))),
		  0::bigint, 'the next page (keyset after the last row) repeats nothing');
SELECT is((SELECT last_body FROM eightms_api.list_conversations() WHERE peer_number = '+12125550198'),
		  (SELECT body FROM eightms_api.messages WHERE peer_number = '+12125550198' ORDER BY created_at DESC, message_id DESC LIMIT 1),
		  'each conversation shows its last message');
-- (The conversation named first: Citus would send a subquery of the
-- conversations, with the function call around it, to a shard.)
SELECT conversation_id AS conv198 FROM eightms_api.conversations WHERE peer_number = '+12125550198' \gset
SELECT is((SELECT count(*) FROM eightms_api.conversation_messages(:'conv198')),
		  (SELECT count(*) FROM eightms_api.messages WHERE peer_number = '+12125550198'),
		  'a conversation''s messages are listed');
SELECT is((SELECT count(*) FROM eightms_api.conversation_messages(:'conv198', page_size => 4)),
		  4::bigint, 'and paged');
SELECT eightms_api.archive_conversation(:'conv198');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations() WHERE peer_number = '+12125550198'), 0::bigint,
		  'an archived conversation leaves the inbox');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations(archived => true)), 1::bigint, 'and is listed with the archived ones');
SELECT eightms_api.set_message_options(true);
SELECT is((SELECT body || ' ' || encoding FROM eightms_api.send_message('+1 212 555 0177', 'It’s ready – come by…')),
		  'It''s ready - come by... gsm7', 'with the account option on, look-alikes are folded and the message stays GSM-7');
SELECT is((SELECT phone_id FROM eightms_api.send_message('+1 212 555 0166', 'hi')), :'pair_phone_id'::uuid,
		  'a new conversation is routed to the healthy online phone');

-- Deleting a conversation deletes its messages, and only its.
SELECT count(*) AS others_before FROM eightms.message WHERE account_id = :'acct' AND peer_number <> '+12125550198' \gset
SELECT cmp_ok((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12125550198'), '>', 0::bigint,
			  'the conversation to delete has messages');
SELECT lives_ok(format('SELECT eightms_api.delete_conversation(%L)',
					   (SELECT conversation_id FROM eightms_api.conversations WHERE peer_number = '+12125550198')),
				'a member deletes a conversation');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12125550198'), 0::bigint,
		  'its messages, inbound and outbound, are gone with it');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number <> '+12125550198'),
		  :'others_before'::bigint, 'the account''s other conversations keep theirs');

-- Device claims the hook cannot read are refused, not raised as a cast error.
SELECT throws_ok('SELECT pgrst.request(''eightms_phone'', ''{"account_id":"not-a-uuid","tv":1}'')', '28000',
				 'device token has no valid account_id claim', 'a malformed account_id claim is refused as a bad token');
SELECT throws_ok('SELECT pgrst.request(''eightms_phone'', ''{"tv":1}'')', '28000',
				 'device token has no valid account_id claim', 'a device token without account_id is refused');
SELECT throws_ok(format('SELECT pgrst.request(''eightms_phone'', %L)',
					   jsonb_build_object('account_id', :'acct', 'phone_id', 'phone-1', 'tv', 1)),
				 '22P02', NULL, 'a malformed phone_id claim is refused as the uuid cast refuses it');
SELECT pgrst.reset();
UPDATE eightms.account SET status = 'disabled' WHERE account_id = :'acct';
SELECT throws_ok(format('SELECT pgrst.as_token(%L)', :'pair_token'), '42501', format('account %s is disabled', :'acct'),
				 'a phone of a disabled account is refused, naming the account, with the dashboard''s error');
SELECT pgrst.reset();
UPDATE eightms.account SET status = 'active' WHERE account_id = :'acct';
-- A device token whose account is gone names no active account: 28000,
-- pair again.  (Its phone row went with the account; the token remains.)
SELECT throws_ok(format('SELECT pgrst.request(''eightms_phone'', %L)',
					   jsonb_build_object('account_id', gen_random_uuid(), 'phone_id', gen_random_uuid(), 'tv', 1)),
				 '28000', NULL, 'a device token of an account that no longer exists is refused');
SELECT ok(NOT has_function_privilege('eightms_phone', 'eightms.pre_request_member()', 'EXECUTE')
		  AND NOT has_function_privilege('eightms_user', 'eightms.pre_request_member()', 'EXECUTE')
		  AND NOT has_function_privilege('eightms_anon', 'eightms.pre_request_member()', 'EXECUTE'),
		  'the members'' half of the hook runs only from the hook');
-- require_phone(), which every phone call starts with, reads the claims
-- the hook verified for this transaction and role, never request.jwt.claims.
SELECT pgrst.as_token(:'pair_token');
SELECT is(eightms.require_phone(), :'pair_phone_id'::uuid, 'require_phone names the phone of the verified claims');
SELECT pgrst.as_token(:'other_token');
SELECT is(eightms.require_phone(), :'other_phone_id'::uuid, 'and the next request''s phone once they change');
SELECT pgrst.as_user('olivia', :'acct');
SELECT throws_ok('SELECT eightms.require_phone()', '42501', 'this call is for paired phones',
				 'claims without a phone are refused');
SELECT pgrst.as_user('olivia', :'acct', extra_claims => '{"phone_id": ""}');
SELECT throws_ok('SELECT eightms.require_phone()', '42501', 'this call is for paired phones',
				 'an empty phone_id is no phone');
SELECT pgrst.as_user('nomad', extra_claims => jsonb_build_object('phone_id', :'pair_phone_id'));
SELECT throws_ok('SELECT eightms.require_phone()', '42501', 'this call is for paired phones',
				 'a phone without an account is refused');
SELECT pgrst.as_user('olivia', :'acct', extra_claims => '{"phone_id": "phone-1"}');
SELECT throws_ok('SELECT eightms.require_phone()', '22P02', NULL, 'a phone_id that is no uuid fails as its cast does');
SELECT pgrst.reset();
SELECT throws_ok('SELECT eightms.require_phone()', '42501', 'this call is for paired phones', 'no request, no phone');
SELECT set_config('role', 'eightms_phone', true);
SELECT set_config('request.jwt.claims', jsonb_build_object('role', 'eightms_phone', 'account_id', :'acct',
													   'phone_id', :'pair_phone_id', 'tv', 1)::text, true);
SELECT throws_ok('SELECT eightms.require_phone()', '42501', 'this call is for paired phones',
				 'claims set by hand, without the hook, are no phone');
SELECT pgrst.reset();
-- Where Citus propagates SET LOCAL (doc/architecture.md), the hook re-issues a
-- phone's claims as SET LOCAL; elsewhere it leaves them as they are.  The
-- request reads the same either way.
SET LOCAL citus.propagate_set_commands = 'local';
SELECT lives_ok(format('SELECT pgrst.as_token(%L)', :'pair_token'),
				'with citus.propagate_set_commands = local a phone''s request passes the hook');
SELECT is(eightms.current_account_id(), :'acct'::uuid, 'and acts on the phone''s account');
SELECT is(eightms.jwt_claims() ->> 'phone_id', :'pair_phone_id', 'with the phone''s claims unchanged');
SELECT pgrst.as_user('olivia', :'acct');
SELECT is(eightms.jwt_claims() ->> 'account_role', 'owner', 'a user''s claims are re-issued with the account and role');
SELECT pgrst.reset();
RESET citus.propagate_set_commands;

-- Unpairing revokes the device token at once.
SELECT pgrst.as_user('olivia', :'acct');
SELECT eightms_api.unpair_phone(:'pair_phone_id');
SELECT throws_ok(format('SELECT pgrst.as_token(%L)', :'pair_token'), '28000', 'this device token has been revoked',
				 'the old device token is refused by the pre-request hook');

SELECT * FROM finish();
ROLLBACK;
