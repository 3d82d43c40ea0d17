-- Message templates (doc/contacts.md, "Templates"): saving, listing,
-- getting and deleting them through the API; placeholders with fallbacks,
-- custom values of every type, the escape for a literal {{; unknown
-- placeholders and undefined custom fields refused with their position
-- (never the body); render_template's contract for campaigns (NULLs,
-- custom types, one parse per body); previews with encodings, the
-- characters that force UCS-2 and the account's folding on and off; roles
-- and other accounts refused.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('olga');
SELECT account_id AS acct FROM eightms_api.create_account('Olga Opticians', 'America/New_York') \gset
SELECT pgrst.as_user('gus');
SELECT account_id AS gb FROM eightms_api.create_account('Gus Garage', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id) VALUES (:'acct', '00000000-0000-4000-8000-0000000008c1', 'olga-tpl');
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'agnes', 'agnes@example.test', 'agent');

SELECT pgrst.as_user('olga', :'acct');
SELECT eightms_api.set_contact_field('plan', 'choice', ARRAY['gold', 'silver']);
SELECT eightms_api.set_contact_field('visits', 'number');
SELECT eightms_api.set_contact_field('renews_on', 'date');
SELECT eightms_api.set_contact_field('vip', 'boolean');
SELECT eightms_api.set_contact_field('notes', 'text');
SELECT eightms_api.create_contact('{"phone": "+12125550101", "first_name": "Ada", "last_name": "Lovelace",
	"company": "Engines", "custom": {"plan": "gold", "visits": 12.50, "renews_on": "2025-01-31", "vip": true}}') AS ada \gset
SELECT eightms_api.create_contact('{"phone": "+12125550102"}') AS bare \gset
SELECT eightms_api.create_contact('{"phone": "+12125550103", "first_name": "Grace", "custom": {"vip": false}}') AS grace \gset

-- ---------------------------------------------------------------- rendering
SELECT is(eightms.render_template('Hi {{first_name}} {{last_name}} of {{company}}', 'Ada', 'Lovelace', 'Engines', NULL),
		  'Hi Ada Lovelace of Engines', 'names and company rendered');
SELECT is(eightms.render_template('Hi {{ first_name | there }}!', NULL, NULL, NULL, NULL), 'Hi there!',
		  'a NULL value renders its fallback, blanks inside braces tolerated');
SELECT is(eightms.render_template('Hi {{first_name|there}}!', '', NULL, NULL, NULL), 'Hi there!',
		  'an empty value renders its fallback');
SELECT is(eightms.render_template('Hi {{first_name}}!', NULL, NULL, NULL, NULL), 'Hi !',
		  'a missing value without fallback renders nothing');
SELECT is(eightms.render_template('{{custom.plan}} {{custom.visits}} {{custom.renews_on}} {{custom.vip}} {{custom.notes|-}}',
								  NULL, NULL, NULL, '{"plan": "gold", "visits": 12.50, "renews_on": "2025-01-31", "vip": true}'),
		  'gold 12.50 2025-01-31 true -', 'custom values: a string as is, a number as its text, a date as stored, a boolean');
SELECT is(eightms.render_template('{{custom.vip|x}} {{custom.gone|none}}', NULL, NULL, NULL, '{"vip": false, "gone": null}'),
		  'false none', 'false renders false, a JSON null its fallback');
SELECT is(eightms.render_template('{{custom.plan|basic}}', NULL, NULL, NULL, NULL), 'basic',
		  'a NULL custom means no custom values');
SELECT is(eightms.render_template('Write \{{first_name}} to greet', 'Ada', NULL, NULL, NULL),
		  'Write {{first_name}} to greet', '\{{ is a literal {{');
SELECT is(eightms.render_template('{{first_name}}', '{{last_name}}', 'x', NULL, NULL), '{{last_name}}',
		  'a value is never read as a template');
SELECT is(eightms.render_template(NULL, 'Ada', NULL, NULL, NULL), NULL, 'a NULL body renders NULL');
SELECT is((SELECT string_agg(eightms.render_template(CASE WHEN i % 2 = 0 THEN 'A {{first_name}}' ELSE 'B {{last_name|-}}' END,
													  'x' || i, NULL, NULL, NULL), ',' ORDER BY i)
			 FROM generate_series(1, 4) i),
		  'B -,A x2,B -,A x4', 'a call site rendering two bodies in turn renders each right');
SELECT is((SELECT count(DISTINCT eightms.render_template('Hi {{first_name}}', 'n' || i, NULL, NULL, NULL))
			 FROM generate_series(1, 100000) i), 100000::bigint, '100,000 rows rendered from one body');
SELECT throws_ok($$SELECT eightms.render_template('Hi {{nope}}', 'Ada', NULL, NULL, NULL)$$, '22023',
				 'unknown placeholder at character 4 of the template', 'rendering a body that is not a template is refused');
SELECT is(p.provolatile::text || p.proparallel::text || p.proisstrict::text, 'isfalse',
		  'render_template is IMMUTABLE, PARALLEL SAFE and not STRICT')
  FROM pg_proc p WHERE p.oid = 'eightms.render_template(text, text, text, text, jsonb)'::regprocedure;

-- ---------------------------------------------------------------- saving
SELECT eightms_api.save_template('welcome', 'Hi {{first_name|there}}, your plan: {{custom.plan|basic}}') AS welcome \gset
SELECT is((SELECT body FROM eightms_api.get_template('welcome')), 'Hi {{first_name|there}}, your plan: {{custom.plan|basic}}',
		  'a saved template reads back');
SELECT is(eightms_api.save_template(' welcome ', 'Hello {{first_name}}'), :'welcome'::uuid,
		  'saving under the same name replaces the body and keeps the id');
SELECT is((SELECT body FROM eightms_api.get_template('welcome')), 'Hello {{first_name}}', 'the body replaced');
SELECT eightms_api.save_template('reminder', 'Renews on {{ custom.renews_on }}') AS reminder \gset
SELECT is((SELECT array_agg(name ORDER BY name) FROM eightms_api.templates()), ARRAY['reminder', 'welcome'],
		  'templates() lists them by name');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', 'SECRETWORD {{frist_name}}')$$, '22023',
				 'unknown placeholder at character 12 of the template',
				 'an unknown placeholder is refused with its position, and the body is not in the message');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', 'Hi {{first_name}}, {{custom.shoe_size|?}}')$$, '22023',
				 'unknown custom field at character 20 of the template',
				 'a custom field the account has not defined is refused with its position');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', 'Hi {{first_name')$$, '22023',
				 'unclosed placeholder (no }} after it) at character 4 of the template', 'an unclosed placeholder is refused');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', '{{first_name|{{company}}}}')$$, '22023',
				 'placeholder inside another placeholder at character 1 of the template', 'a nested placeholder is refused');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', '')$$, '22023', NULL, 'an empty body is refused');
SELECT throws_ok($$SELECT eightms_api.save_template('bad', repeat('x', 1601))$$, '22023', NULL, 'a body over 1600 characters is refused');
SELECT throws_ok($$SELECT eightms_api.save_template('  ', 'x')$$, '22023', NULL, 'a blank name is refused');
SELECT is((SELECT count(*) FROM eightms.message_template WHERE account_id = :'acct'), 2::bigint, 'nothing refused was stored');
SELECT throws_ok($$SELECT * FROM eightms_api.get_template('nope')$$, 'P0002', NULL, 'an unknown name is P0002');
SELECT lives_ok($$SELECT eightms_api.delete_template('reminder')$$, 'a template is deleted');
SELECT throws_ok($$SELECT eightms_api.delete_template('reminder')$$, 'P0002', NULL, 'deleting it again is P0002');
SELECT lives_ok(format($$SELECT eightms.template_check(%L, 'Hi {{custom.vip}}')$$, :'acct'), 'template_check passes a good body');

-- ---------------------------------------------------------------- previews
SELECT is((SELECT array_agg(row(contact_id, rendered, encoding, segments, ucs2_chars, folded)::text ORDER BY contact_id)
			 FROM eightms_api.preview_template('Hi {{first_name|there}}, {{custom.plan|basic}}')),
		  ARRAY[row(:'ada'::uuid, 'Hi Ada, gold', 'gsm7', 1, '{}'::text[], false)::text,
				row(:'bare'::uuid, 'Hi there, basic', 'gsm7', 1, '{}'::text[], false)::text,
				row(:'grace'::uuid, 'Hi Grace, basic', 'gsm7', 1, '{}'::text[], false)::text],
		  'without ids: the account''s first contacts, rendered');
SELECT is((SELECT count(*) FROM eightms_api.preview_template('Hi', NULL, 2)), 2::bigint, 'sample_count bounds the sample');
SELECT is((SELECT array_agg(contact_id) FROM eightms_api.preview_template('Hi', ARRAY[:'grace', :'ada']::uuid[])),
		  ARRAY[:'grace', :'ada']::uuid[], 'with ids: those contacts, in that order');
SELECT is((SELECT row(encoding, segments, ucs2_chars, folded)::text
			 FROM eightms_api.preview_template('☺ Hi {{first_name}} ☺ 漢', ARRAY[:'ada']::uuid[])),
		  row('ucs2', 1, ARRAY['☺', '漢'], false)::text, 'a character outside GSM-7 forces UCS-2 and is named, once');
SELECT is((SELECT row(encoding, ucs2_chars, folded)::text
			 FROM eightms_api.preview_template('Hi {{first_name}} — “ok”', ARRAY[:'ada']::uuid[])),
		  row('ucs2', ARRAY['—', '“', '”'], false)::text, 'folding off: typographic look-alikes force UCS-2');
SELECT eightms_api.set_message_options(true);
SELECT is((SELECT row(rendered, encoding, ucs2_chars, folded)::text
			 FROM eightms_api.preview_template('Hi {{first_name}} — “ok”', ARRAY[:'ada']::uuid[])),
		  row(eightms.sms_fold('Hi Ada — “ok”'), 'gsm7', '{}'::text[], true)::text,
		  'folding on: folded as the send path folds, GSM-7, and said so');
SELECT is((SELECT row(encoding, ucs2_chars, folded)::text
			 FROM eightms_api.preview_template('Hi {{first_name}} ☺', ARRAY[:'ada']::uuid[])),
		  row('ucs2', ARRAY['☺'], false)::text, 'folding on: a character without a look-alike still forces UCS-2');
SELECT is((SELECT segments FROM eightms_api.preview_template(repeat('a', 158) || ' {{first_name}}', ARRAY[:'ada']::uuid[])),
		  2, 'segments counted on the rendered text');
SELECT throws_ok($$SELECT * FROM eightms_api.preview_template('Hi {{nope}}')$$, '22023',
				 'unknown placeholder at character 4 of the template', 'a preview checks the body as saving does');
SELECT throws_ok($$SELECT * FROM eightms_api.preview_template('Hi', NULL, 0)$$, '22023', NULL, 'sample_count 0 is refused');

-- ---------------------------------------------------------------- roles and tenants
SELECT pgrst.as_user('agnes', :'acct');
SELECT lives_ok($$SELECT eightms_api.save_template('agent''s', 'Hi {{first_name}}')$$, 'an agent saves a template');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000008c1');
SELECT throws_ok($$SELECT eightms_api.save_template('phone', 'x')$$, '42501', NULL, 'a phone saves no template');
SELECT throws_ok($$SELECT * FROM eightms_api.templates()$$, '42501', NULL, 'a phone lists no template');
SELECT pgrst.as_anon();
SELECT throws_ok($$SELECT * FROM eightms_api.preview_template('x')$$, '42501', NULL, 'an anonymous caller previews nothing');

SELECT pgrst.as_user('gus', :'gb');
SELECT is((SELECT count(*) FROM eightms_api.templates()), 0::bigint, 'another account lists none of them');
SELECT is((SELECT count(*) FROM eightms.message_template), 0::bigint, 'row-level security hides them from another account');
SELECT throws_ok($$SELECT * FROM eightms_api.get_template('welcome')$$, 'P0002', NULL, 'another account gets none of them');
SELECT throws_ok($$SELECT eightms_api.delete_template('welcome')$$, 'P0002', NULL, 'another account deletes none of them');
SELECT throws_ok(format($$SELECT * FROM eightms_api.preview_template('Hi {{first_name}}', ARRAY[%L]::uuid[])$$, :'ada'),
				 'P0002', NULL, 'another account''s contact is not previewed');
SELECT throws_ok($$SELECT eightms_api.save_template('plan', '{{custom.plan}}')$$, '22023',
				 'unknown custom field at character 1 of the template', 'another account''s custom fields are not this one''s');
SELECT is((SELECT row(contact_id, rendered)::text FROM eightms_api.preview_template('Hi {{first_name|there}}')),
		  row(NULL::uuid, 'Hi there')::text, 'an account without contacts previews one row of fallbacks');
SELECT eightms_api.save_template('welcome', 'Hello') AS gus_welcome \gset
SELECT isnt(:'gus_welcome'::uuid, :'welcome'::uuid, 'the same name in another account is a template of its own');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message_template WHERE name = 'welcome'), 2::bigint, 'one welcome per account');

-- Account deletion and the data-subject export cover the table (the registry).
SELECT ok((eightms.dsar_export('account', NULL, :'gb') -> 'tables') ? 'message_template'
		  OR (eightms.dsar_export('account', NULL, :'gb')::text LIKE '%message_template%'), 'an account''s export holds its templates');
SELECT eightms.purge_account(:'gb');
SELECT is((SELECT count(*) FROM eightms.message_template WHERE account_id = :'gb'), 0::bigint, 'a deleted account''s templates go');

SELECT * FROM finish();
ROLLBACK;
