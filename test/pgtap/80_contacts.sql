-- Contacts (doc/contacts.md): creating, changing and deleting them through
-- the API, custom fields and their type checks, the list's search (names,
-- emails, companies, numbers in any format), filters, sorts and keyset
-- pages; the opt-out list made visible and manageable by members, with
-- its consent events; a number opted out by hand refused and held exactly
-- as after a STOP; roles and other accounts refused.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('olga');
SELECT account_id AS acct FROM eightms_api.create_account('Olga Opticians', 'America/New_York') \gset
SELECT pgrst.as_user('gus');
SELECT account_id AS gb FROM eightms_api.create_account('Gus Garage', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000c1', 'olga-phone', NULL, now(), 90);
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'agnes', 'agnes@example.test', 'agent'),
	(:'acct', 'adam', 'adam@example.test', 'admin');

-- ---------------------------------------------------------------- fields
SELECT pgrst.as_user('olga', :'acct');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('plan', 'choice', ARRAY['gold', 'silver', 'bronze'])$$,
				'an owner defines a choice field');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('visits', 'number')$$, 'a number field');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('renews_on', 'date')$$, 'a date field');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('vip', 'boolean')$$, 'a boolean field');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('notes', 'text')$$, 'a text field');
SELECT is((SELECT array_agg(name || ':' || type ORDER BY name) FROM eightms_api.contact_fields()),
		  ARRAY['notes:text', 'plan:choice', 'renews_on:date', 'vip:boolean', 'visits:number'], 'contact_fields lists them');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('Bad Name', 'text')$$, '22023', NULL, 'a name not in snake case is refused');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('x', 'colour')$$, '22023', NULL, 'an unknown type is refused');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('x', 'text', ARRAY['a'])$$, '22023', NULL, 'choices without type choice are refused');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('x', 'choice')$$, '22023', NULL, 'a choice without choices is refused');
SELECT throws_ok($$SELECT eightms_api.drop_contact_field('nope')$$, 'P0002', NULL, 'dropping an unknown field is P0002');

-- ---------------------------------------------------------------- create
SELECT eightms_api.create_contact('{"phone": "(212) 555-0101", "first_name": " Ada ", "last_name": "Lovelace",
	"email": "Ada@Example.COM", "company": "Analytical Engines", "tags": ["vip", "nyc", "vip"],
	"custom": {"plan": "gold", "visits": 12, "renews_on": "2025-01-31", "vip": true}}') AS ada \gset
SELECT eightms_api.create_contact('{"phone": "+44 20 7946 0958", "first_name": "Charles", "last_name": "Babbage",
	"company": "Difference Ltd", "tags": ["london"], "custom": {"plan": "silver", "visits": 3}}') AS charles \gset
SELECT eightms_api.create_contact('{"phone": "212-555-0102", "first_name": "Grace", "last_name": "Hopper",
	"email": "grace@navy.example", "tags": ["nyc"], "custom": {"visits": 40}}') AS grace \gset
SELECT is((SELECT phone FROM eightms_api.get_contact(:'ada')), '+12125550101', 'a national number is read in the account''s region');
SELECT is((SELECT row(first_name, email, tags, source)::text FROM eightms_api.get_contact(:'ada')),
		  row('Ada', 'ada@example.com', ARRAY['vip', 'nyc'], 'api')::text,
		  'names trimmed, email lower-cased, tags each once in order, source api');
SELECT is((SELECT custom FROM eightms_api.get_contact(:'ada')),
		  '{"plan": "gold", "visits": 12, "renews_on": "2025-01-31", "vip": true}'::jsonb, 'custom values kept');
SELECT is((SELECT phone FROM eightms_api.get_contact(:'charles')), '+442079460958', 'an international number is kept international');
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'acct'), 3::bigint, 'three contacts');

-- Bad input, each with its SQLSTATE.
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "555"}')$$, '22023', 'phone is not a valid phone number',
				 'an invalid number is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"first_name": "Nobody"}')$$, '22023', 'a contact needs a phone number',
				 'a contact without a number is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "email": "not-an-email"}')$$, '22023',
				 'email is not an email address', 'an invalid email is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "nickname": "x"}')$$, '22023',
				 'a contact has no key "nickname"', 'an unknown key is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"shoe_size": 9}}')$$, '22023',
				 'custom field "shoe_size" is not defined', 'an undefined custom field is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"visits": "12"}}')$$, '22023',
				 'custom field "visits" takes a value of type number', 'a number field refuses a string');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"renews_on": "2025-02-30"}}')$$, '22023',
				 'custom field "renews_on" takes a value of type date', 'a date field refuses a day that does not exist');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"vip": "yes"}}')$$, '22023',
				 'custom field "vip" takes a value of type boolean', 'a boolean field refuses a string');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"plan": "platinum"}}')$$, '22023',
				 'custom field "plan" takes a value of type choice', 'a choice field refuses a value not among its choices');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "custom": {"notes": ""}}')$$, '22023',
				 'custom field "notes" takes a value of type text', 'a text field refuses an empty string');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550103", "tags": "vip"}')$$, '22023', NULL,
				 'tags that are not an array are refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('[1]')$$, '22023', 'a contact is a JSON object', 'an array is refused');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+1 212 555 0101"}')$$, '23505', NULL,
				 'the same number twice in the account is refused, in any format');
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'acct'), 3::bigint, 'nothing refused was stored');

-- ---------------------------------------------------------------- update
SELECT lives_ok(format($$SELECT eightms_api.update_contact(%L, '{"company": null, "custom": {"vip": null, "visits": 13}, "tags": ["vip"]}')$$, :'ada'),
				'a partial update');
SELECT is((SELECT row(first_name, company, custom, tags)::text FROM eightms_api.get_contact(:'ada')),
		  row('Ada', NULL, '{"plan": "gold", "visits": 13, "renews_on": "2025-01-31"}'::jsonb, ARRAY['vip'])::text,
		  'keys absent kept, a null key cleared, custom merged with a null removing its key, tags replaced');
SELECT cmp_ok((SELECT updated_at FROM eightms_api.get_contact(:'ada')), '>=', (SELECT created_at FROM eightms_api.get_contact(:'ada')),
			  'updated_at moves');
SELECT throws_ok(format($$SELECT eightms_api.update_contact(%L, '{"phone": null}')$$, :'ada'), '22023', NULL,
				 'the number cannot be cleared');
SELECT throws_ok(format($$SELECT eightms_api.update_contact(%L, '{"phone": "+12125550102"}')$$, :'ada'), '23505', NULL,
				 'nor changed to another contact''s');
SELECT throws_ok(format($$SELECT eightms_api.update_contact(%L, '{}')$$, gen_random_uuid()), 'P0002', NULL,
				 'an unknown contact is P0002');

-- A field's definition changes only when every value still fits.
SELECT throws_ok($$SELECT eightms_api.set_contact_field('plan', 'choice', ARRAY['silver', 'bronze'])$$, '22023',
				 'the field''s values of 1 contacts do not fit the new definition', 'dropping a choice in use is refused');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('visits', 'date')$$, '22023', NULL, 'retyping a field in use is refused');
SELECT lives_ok($$SELECT eightms_api.set_contact_field('plan', 'choice', ARRAY['gold', 'silver', 'bronze', 'platinum'])$$,
				'adding a choice is fine');

-- ---------------------------------------------------------------- list
SELECT is((SELECT array_agg(first_name ORDER BY ord) FROM eightms_api.contacts(sort => 'name') WITH ORDINALITY AS t(contact_id, phone, first_name, last_name, email, company, custom, tags, source, created_at, updated_at, opted_out, opted_out_at, cursor, ord)),
		  ARRAY['Charles', 'Grace', 'Ada'], 'sorted by last name');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => 'hop')), ARRAY['Grace'], 'a prefix of a last name');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => 'ANALYT')), NULL::text[],
		  'a company cleared is not found');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => 'differ')), ARRAY['Charles'], 'a company');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => 'navy.example')), ARRAY['Grace'], 'an email');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => 'Babage')), ARRAY['Charles'], 'a misspelt name, fuzzily');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => '(212) 555-0101')), ARRAY['Ada'], 'a number in national format');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => '+1 212-555-0101')), ARRAY['Ada'], 'in international format');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => '011 44 20 7946 0958')), ARRAY['Charles'],
		  'with an international prefix');
SELECT is((SELECT array_agg(first_name ORDER BY first_name) FROM eightms_api.contacts(search => '555 01')), ARRAY['Ada', 'Grace'],
		  'by a run of digits');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(search => '100%')), NULL::text[], 'a wildcard is a literal');
SELECT is((SELECT array_agg(first_name ORDER BY first_name) FROM eightms_api.contacts(tags_any => ARRAY['vip', 'london'])),
		  ARRAY['Ada', 'Charles'], 'tags, any');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(tags_all => ARRAY['nyc'])), ARRAY['Grace'], 'tags, all');
SELECT is((SELECT array_agg(first_name ORDER BY first_name) FROM eightms_api.contacts(where_custom => '[{"field": "visits", "op": "gt", "value": 5}]')),
		  ARRAY['Ada', 'Grace'], 'a number comparison');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(where_custom => '[{"field": "plan", "op": "eq", "value": "silver"}]')),
		  ARRAY['Charles'], 'a choice equal');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(where_custom => '[{"field": "renews_on", "op": "lt", "value": "2025-06-01"}, {"field": "plan", "op": "exists"}]')),
		  ARRAY['Ada'], 'a date comparison and a field present, together');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(where_custom => '[{"field": "plan", "op": "missing"}]')),
		  ARRAY['Grace'], 'a field missing');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(where_custom => '[{"field": "visits", "op": "gt", "value": "5"}]')$$, '22023', NULL,
				 'a comparison with a value of the wrong type is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(where_custom => '[{"field": "vip", "op": "lt", "value": true}]')$$, '22023', NULL,
				 'a boolean has no order');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(where_custom => '[{"field": "nope", "op": "eq", "value": 1}]')$$, '22023', NULL,
				 'an undefined field is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(sort => 'phone')$$, '22023', NULL, 'an unknown sort is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(page_size => 0)$$, '22023', NULL, 'a page of none is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts(after => 'zz')$$, '22023', NULL, 'a cursor that is not one is refused');

-- Keyset pages: every contact once, in order, while contacts are added
-- before the cursor's position.
SELECT pgrst.reset();
INSERT INTO eightms.contact (account_id, phone, first_name, last_name, source, created_at)
SELECT :'acct', '+1212555' || lpad(g::text, 4, '0'), 'P' || g, 'Page' || lpad((g - 1000)::text, 3, '0'), 'import',
	   '2024-01-01'::timestamptz + g * interval '1 minute'
  FROM generate_series(1000, 1024) g;
SELECT pgrst.as_user('olga', :'acct');
SELECT cursor AS c1 FROM eightms_api.contacts(sort => 'name', page_size => 10) OFFSET 9 \gset
SELECT pgrst.reset();
INSERT INTO eightms.contact (account_id, phone, first_name, last_name, source)
VALUES (:'acct', '+12125550999', 'Aaron', 'Aardvark', 'import');
SELECT pgrst.as_user('olga', :'acct');
SELECT cursor AS c2 FROM eightms_api.contacts(sort => 'name', page_size => 10, after => :'c1') OFFSET 9 \gset
SELECT is((SELECT array_agg(last_name) FROM eightms_api.contacts(sort => 'name', page_size => 10, after => :'c2')),
		  ARRAY['Page017', 'Page018', 'Page019', 'Page020', 'Page021', 'Page022', 'Page023', 'Page024'],
		  'the third page by name starts where the second ended, though a contact came before the first');
SELECT is((SELECT count(*) FROM (SELECT * FROM eightms_api.contacts(sort => 'created_at', descending => true, page_size => 200)) s),
		  29::bigint, 'every contact on one page');
SELECT cursor AS d1 FROM eightms_api.contacts(sort => 'created_at', descending => true, page_size => 20) OFFSET 19 \gset
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(sort => 'created_at', descending => true, page_size => 20, after => :'d1')),
		  ARRAY['P1008', 'P1007', 'P1006', 'P1005', 'P1004', 'P1003', 'P1002', 'P1001', 'P1000'],
		  'newest first, the second page the rest');
SELECT throws_ok(format($$SELECT * FROM eightms_api.contacts(sort => 'updated_at', after => %L)$$, :'d1'), '22023', NULL,
				 'a cursor of another sort is refused');
SELECT is((SELECT count(*) FROM eightms_api.contact_count()), 1::bigint, 'contact_count answers');
SELECT is(eightms_api.contact_count(), 29::bigint, 'and counts every contact');

-- ---------------------------------------------------------------- other accounts and roles
SELECT pgrst.as_user('gus', :'gb');
SELECT is((SELECT count(*) FROM eightms_api.contacts()), 0::bigint, 'another account lists none of them');
SELECT is((SELECT count(*) FROM eightms.contact), 0::bigint, 'nor reads the table');
SELECT throws_ok(format('SELECT * FROM eightms_api.get_contact(%L)', :'ada'), 'P0002', NULL, 'nor gets one');
SELECT throws_ok(format($$SELECT eightms_api.update_contact(%L, '{"first_name": "X"}')$$, :'ada'), 'P0002', NULL, 'nor changes one');
SELECT throws_ok(format('SELECT eightms_api.delete_contact(%L)', :'ada'), 'P0002', NULL, 'nor deletes one');
SELECT is(eightms_api.delete_contacts(ARRAY[:'ada', :'grace']::uuid[]), 0::bigint, 'nor deletes them in a batch');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "07400 123456", "custom": {"plan": "gold"}}')$$, '22023',
				 'custom field "plan" is not defined', 'the fields are the account''s own');
SELECT is(eightms_api.create_contact('{"phone": "+1 212 555 0101"}') IS NOT NULL, true,
		  'the same number is a contact of each account');
SELECT is((SELECT phone FROM eightms_api.contacts(search => '07400 123456')), NULL, 'national format is the account''s region');
SELECT is(eightms_api.add_opt_out('+12125550101', 'asked Gus'), true, 'an opt-out is the account''s own (not in Olga''s list below)');
SELECT throws_ok(format('SELECT pgrst.as_user(%L, %L)', 'nobody', :'acct'), '42501', NULL, 'a non-member is refused');
SELECT pgrst.as_user('nobody');
SELECT throws_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550104"}')$$, '28000', NULL, 'without an account nothing is created');
SELECT throws_ok($$SELECT * FROM eightms_api.contacts()$$, '28000', NULL, 'nor listed');
SELECT pgrst.as_user('agnes', :'acct');
SELECT lives_ok($$SELECT eightms_api.create_contact('{"phone": "+12125550104"}')$$, 'an agent creates contacts');
SELECT throws_ok($$SELECT eightms_api.set_contact_field('age', 'number')$$, '42501', NULL, 'an agent defines no fields');
SELECT throws_ok($$SELECT eightms_api.delete_all_contacts(30)$$, '42501', NULL, 'an agent deletes not all contacts');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.contact WHERE account_id = :'acct'), 30::bigint, 'thirty contacts');
SELECT pgrst.as_user('agnes', :'acct');
SELECT throws_ok($$INSERT INTO eightms.contact (account_id, phone, source) VALUES (eightms.current_account_id(), '+12125550105', 'api')$$,
				 '42501', NULL, 'members write no contact directly');
SELECT throws_ok($$INSERT INTO eightms.contact_field (account_id, name, type) VALUES (eightms.current_account_id(), 'x', 'text')$$,
				 '42501', NULL, 'nor a field');

-- ---------------------------------------------------------------- opt-outs
SELECT pgrst.as_user('agnes', :'acct');
SELECT message_id AS before_id FROM eightms_api.send_message('(212) 555-0102', 'queued before the opt-out') \gset
SELECT is(eightms_api.add_opt_out('212 555 0102', 'asked at the counter'), true, 'an agent opts a number out by hand');
SELECT is(eightms_api.add_opt_out('+12125550102', 'again'), false, 'a second time changes nothing');
SELECT is((SELECT status FROM eightms_api.messages WHERE message_id = :'before_id'), 'canceled',
		  'what waited for the number is canceled, as a STOP does');
SELECT throws_ok($$SELECT eightms_api.send_message('+12125550102', 'after the opt-out')$$, 'E8O01', NULL,
				 'a send to a number opted out by hand is refused, as after a STOP');
SELECT is((SELECT count(*) FROM eightms.message WHERE peer_number = '+12125550102' AND direction = 'out' AND status <> 'canceled'),
		  0::bigint, 'and nothing is sent to it: no confirmation for a change made by hand');
SELECT is((SELECT row(opted_out, opted_out_at IS NOT NULL)::text FROM eightms_api.get_contact(:'grace')), '(t,t)',
		  'the contact shows its consent state');
SELECT is((SELECT array_agg(first_name) FROM eightms_api.contacts(where_opted_out => true)), ARRAY['Grace'], 'opted out only');
SELECT is((SELECT count(*) FROM eightms_api.contacts(where_opted_out => false, page_size => 200)), 29::bigint, 'and the others');
SELECT is((SELECT row(number, how, rule, changed_by, reason, contact_id)::text FROM eightms_api.opt_outs()),
		  row('+12125550102', 'member', 'member.opt_out', 'agnes', 'asked at the counter', :'grace'::uuid)::text,
		  'the list says when, how, by whom, why, and whose number');
SELECT throws_ok($$SELECT eightms_api.remove_opt_out('+12125550102', 'changed her mind')$$, '42501', NULL,
				 'an agent does not lift an opt-out');
SELECT throws_ok($$SELECT eightms_api.add_opt_out('12', NULL)$$, '22023', 'number is not a phone number', 'a number that is none is refused');
SELECT throws_ok($$SELECT * FROM eightms_api.opt_outs(page_size => 0)$$, '22023', NULL, 'a page of none is refused');

-- A STOP, then the list shows it by keyword.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+12125550101", "body": "STOP", "device_message_id": "c-1"}]')),
		  'opt_out', 'Ada texts STOP');
SELECT pgrst.as_user('olga', :'acct');
SELECT is((SELECT array_agg(how || ':' || coalesce(keyword, '-') ORDER BY number) FROM eightms_api.opt_outs()),
		  ARRAY['keyword:STOP', 'member:-'], 'the list says how each opted out');
SELECT is((SELECT count(*) FROM eightms_api.opt_outs(page_size => 1)), 1::bigint, 'a page of one');
SELECT is((SELECT count(*) FROM eightms_api.opt_outs(o.opted_out_at, o.number)), 1::bigint, 'and the rest after it')
  FROM eightms_api.opt_outs(page_size => 1) o;
SELECT throws_ok($$SELECT eightms_api.remove_opt_out('+12125550102', '  ')$$, '22023', 'lifting an opt-out needs a reason',
				 'lifting needs a reason');
SELECT is(eightms_api.remove_opt_out('(212) 555-0102', 'consent given again by phone'), true, 'an owner lifts an opt-out');
SELECT is(eightms_api.remove_opt_out('+12125550102', 'again'), false, 'a second time changes nothing');
SELECT is((SELECT array_agg(action || '/' || rule || '/' || coalesce(changed_by, '-') || '/' || coalesce(reason, '-') ORDER BY at, event_id)
			 FROM eightms_api.consent_history('+12125550102')),
		  ARRAY['opt_out/member.opt_out/agnes/asked at the counter', 'opt_in/member.opt_in/olga/consent given again by phone'],
		  'the consent history records both changes with who and why');
SELECT lives_ok($$SELECT eightms_api.send_message('+12125550102', 'welcome back')$$, 'the number may be texted again');
SELECT is((SELECT opted_out FROM eightms_api.get_contact(:'grace')), false, 'and its contact shows it');

-- A message queued, then the number opted out by hand with no
-- conversation lock held by the send any more: the claim holds it back.
SELECT pgrst.as_user('olga', :'acct');
SELECT message_id AS held_id FROM eightms_api.send_message('+12125550104', 'to be held') \gset
SELECT pgrst.reset();
-- As a STOP racing the send would leave it: queued before the opt-out.
INSERT INTO eightms.opt_out (account_id, number, opted_out_at) VALUES (:'acct', '+12125550104', clock_timestamp());
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) WHERE message_id = :'held_id'), 0::bigint,
		  'a message queued before its number opted out is not handed to a phone');

-- ---------------------------------------------------------------- deletes
SELECT pgrst.as_user('olga', :'acct');
SELECT lives_ok(format('SELECT eightms_api.delete_contact(%L)', :'charles'), 'delete one');
SELECT throws_ok(format('SELECT eightms_api.delete_contact(%L)', :'charles'), 'P0002', NULL, 'twice is P0002');
SELECT is(eightms_api.delete_contacts(ARRAY[:'ada', :'grace', gen_random_uuid()]::uuid[]), 2::bigint, 'delete many: the ones there');
SELECT is(eightms_api.drop_contact_field('visits'), 0::bigint, 'dropping a field no contact holds');
SELECT pgrst.reset();
UPDATE eightms.contact SET custom = '{"plan": "gold"}' WHERE account_id = :'acct' AND phone = '+12125551000';
SELECT pgrst.as_user('olga', :'acct');
SELECT is(eightms_api.drop_contact_field('plan'), 1::bigint, 'dropping a field removes its key from the contacts');
SELECT is((SELECT count(*) FROM eightms.contact WHERE custom ? 'plan'), 0::bigint, 'from every one');
SELECT throws_ok($$SELECT eightms_api.delete_all_contacts(99)$$, 'E8C01', NULL, 'delete all with the wrong count is refused');
SELECT is(eightms_api.contact_count(), 27::bigint, 'and deleted nothing');
SELECT is(eightms_api.delete_all_contacts(27), 27::bigint, 'delete all with the count');
SELECT is(eightms_api.contact_count(), 0::bigint, 'none left');
SELECT pgrst.as_user('gus', :'gb');
SELECT is(eightms_api.contact_count(), 1::bigint, 'the other account''s contact stays');

SELECT * FROM finish();
ROLLBACK;
