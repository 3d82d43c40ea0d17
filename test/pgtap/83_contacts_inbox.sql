-- Contacts in the inbox (doc/contacts.md): a conversation shows the name
-- of the account's contact with its number, never another account's; an
-- inbound message from an unknown number makes a contact when the
-- account's option is on (one per number, however many messages in the
-- batch), nothing when it is off, and leaves an existing contact as it is.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('olga');
SELECT account_id AS acct FROM eightms_api.create_account('Olga Opticians', 'America/New_York') \gset
SELECT pgrst.as_user('gus');
SELECT account_id AS gb FROM eightms_api.create_account('Gus Garage', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id) VALUES (:'acct', '00000000-0000-4000-8000-0000000008d1', 'olga-inbox');
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'agnes', 'agnes@example.test', 'agent');

-- Gus has a contact with the number Olga's known contact writes from.
SELECT pgrst.as_user('gus', :'gb');
SELECT eightms_api.create_contact('{"phone": "+12125550111", "first_name": "Gus''s", "last_name": "Contact"}');
SELECT eightms_api.create_contact('{"phone": "+12125550112", "first_name": "Only", "last_name": "Gus"}');
SELECT pgrst.as_user('olga', :'acct');
SELECT eightms_api.create_contact('{"phone": "+12125550111", "first_name": "Ada", "last_name": "Lovelace",
	"company": "Engines"}') AS ada \gset

-- ---------------------------------------------------------------- option off
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000008d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[
	{"from": "+12125550111", "body": "Hello", "device_message_id": "i-1"},
	{"from": "+12125550112", "body": "Hi", "device_message_id": "i-2"}]') WHERE error IS NULL), 2::bigint,
	'two messages received');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'acct'), 1::bigint,
		  'option off (the default): no contact is made');

-- ---------------------------------------------------------------- names in the inbox
SELECT pgrst.as_user('agnes', :'acct');
SELECT is((SELECT row(contact_id, first_name, last_name)::text FROM eightms_api.list_conversations() WHERE peer_number = '+12125550111'),
		  row(:'ada'::uuid, 'Ada', 'Lovelace')::text, 'a conversation shows the account''s contact with its number');
SELECT is((SELECT row(contact_id, first_name, last_name)::text FROM eightms_api.list_conversations() WHERE peer_number = '+12125550112'),
		  row(NULL::uuid, NULL::text, NULL::text)::text,
		  'a number with no contact in the account: NULLs, though another account has a contact with it');
SELECT is((SELECT count(*) FROM eightms_api.list_conversations()), 2::bigint, 'one row per conversation still');

-- ---------------------------------------------------------------- option on
SELECT throws_ok($$SELECT eightms_api.set_contact_options(true)$$, '42501', NULL, 'an agent cannot set the option');
SELECT pgrst.as_user('olga', :'acct');
SELECT throws_ok($$SELECT eightms_api.set_contact_options(NULL)$$, '22023', NULL, 'NULL is refused');
SELECT lives_ok($$SELECT eightms_api.set_contact_options(true)$$, 'an owner turns the option on');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000008d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[
	{"from": "+12125550113", "body": "one", "device_message_id": "i-3"},
	{"from": "(212) 555-0113", "body": "two", "device_message_id": "i-4"},
	{"from": "+12125550111", "body": "again", "device_message_id": "i-5"},
	{"from": "+12125550112", "body": "hi again", "device_message_id": "i-6"},
	{"from": "ACME", "body": "promo", "device_message_id": "i-7"},
	{"from": "+12125550113", "body": "dup", "device_message_id": "i-3"},
	{"body": "bad item", "device_message_id": "i-8"}]') WHERE error IS NULL), 6::bigint,
	'a batch with a new number twice, a known one, an alphanumeric sender, a duplicate and a bad item');
SELECT pgrst.reset();
SELECT is((SELECT array_agg(phone || ':' || source ORDER BY phone) FROM eightms.contact WHERE account_id = :'acct'),
		  ARRAY['+12125550111:api', '+12125550112:inbound', '+12125550113:inbound'],
		  'one contact per new number (source inbound), none for an alphanumeric sender');
SELECT is((SELECT row(first_name, last_name, company, source)::text FROM eightms.contact WHERE contact_id = :'ada'),
		  row('Ada', 'Lovelace', 'Engines', 'api')::text, 'an existing contact is left untouched');
SELECT is((SELECT row(first_name, last_name, email, company, custom, tags)::text FROM eightms.contact
			WHERE account_id = :'acct' AND phone = '+12125550113'),
		  row(NULL::text, NULL::text, NULL::text, NULL::text, '{}'::jsonb, '{}'::text[])::text, 'the number alone');
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'gb'), 2::bigint, 'another account''s contacts unchanged');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000008d1');
SELECT is((SELECT count(*) FROM eightms_api.receive_messages('[{"from": "+12125550114", "body": "solo", "device_message_id": "i-9"}]')
			WHERE error IS NULL), 1::bigint, 'a single message');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'acct' AND phone = '+12125550114'), 1::bigint,
		  'a single message from a new number makes its contact too');
-- A phone with SQL of its own adds contacts to its account, no more.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000008d1');
SELECT throws_ok($$UPDATE eightms.contact SET source = 'api'$$, '42501', NULL, 'a phone cannot change a contact');
SELECT throws_ok($$DELETE FROM eightms.contact$$, '42501', NULL, 'nor delete one');
SELECT throws_ok(format($$INSERT INTO eightms.contact (account_id, phone, source) VALUES (%L, '+12125550115', 'inbound')$$, :'gb'),
				 '42501', NULL, 'nor add one to another account');
SELECT pgrst.reset();
SELECT pgrst.as_user('olga', :'acct');
SELECT is((SELECT first_name FROM eightms_api.list_conversations() WHERE peer_number = '+12125550111'), 'Ada',
		  'the inbox names the contact as before');
SELECT ok((SELECT contact_id IS NOT NULL AND first_name IS NULL FROM eightms_api.list_conversations() WHERE peer_number = '+12125550113'),
		  'a contact made from an inbound message shows its id, without a name');

SELECT * FROM finish();
ROLLBACK;
