-- Consent as carriers and the FCC read it (doc/consent.md): every row of
-- the table of what counts, through receive_messages as a phone sends it;
-- the false positives; unclear replies flagged for review with one
-- clarification; confirmations once per change, from the account's
-- templates; template validation; the consent history export.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('olga');
SELECT account_id AS acct FROM eightms_api.create_account('Olga Opticians', 'America/New_York') \gset
SELECT pgrst.as_user('gus');
SELECT account_id AS gb FROM eightms_api.create_account('Gus Garage', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000d1', 'olga-phone', NULL, now(), 90),
	   (:'gb', '00000000-0000-4000-8000-0000000000d2', 'gus-phone', NULL, now(), 90);
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'agnes', 'agnes@example.test', 'agent');

-- The table of doc/consent.md, one row per phrasing: the body, the answer
-- receive_messages gives (its consent column) and the rule that matched.
-- Each row comes from its own number.
CREATE TEMP TABLE cases (n serial, body text, consent text, rule text, note text);
INSERT INTO cases (body, consent, rule, note) VALUES
	-- English, the FCC's words and the carriers', alone or with courtesy words.
	('STOP', 'opt_out', 'stop.keyword', 'the keyword'),
	('STOP please', 'opt_out', 'stop.keyword', 'with please'),
	(E'Stop \U0001F6D1', 'opt_out', 'stop.keyword', 'with an emoji'),
	('STOP STOP', 'opt_out', 'stop.keyword', 'repeated'),
	('stop all', 'opt_out', 'stop.keyword', 'stop all'),
	('Opt-out', 'opt_out', 'stop.keyword', 'Opt-out with a hyphen'),
	('opt out', 'opt_out', 'stop.keyword', 'opt out in two words'),
	('OPTOUT', 'opt_out', 'stop.keyword', 'OPTOUT'),
	('"STOP"', 'opt_out', 'stop.keyword', 'in quotes'),
	(E'\uFF33\uFF34\uFF2F\uFF30', 'opt_out', 'stop.keyword', 'full-width'),
	(E'STOP\u00A0', 'opt_out', 'stop.keyword', 'with a no-break space'),
	(E'\u00A0STOP\u200B', 'opt_out', 'stop.keyword', 'with a no-break and a zero-width space'),
	(E'ST\u200BOP', 'opt_out', 'stop.keyword', 'a zero-width space inside'),
	('  stop! ', 'opt_out', 'stop.keyword', 'spaces and punctuation'),
	('STOPALL', 'opt_out', 'stop.keyword', 'STOPALL'),
	('Unsubscribe', 'opt_out', 'stop.keyword', 'UNSUBSCRIBE'),
	('cancel', 'opt_out', 'stop.keyword', 'CANCEL'),
	('END', 'opt_out', 'stop.keyword', 'END'),
	('Quit.', 'opt_out', 'stop.keyword', 'QUIT'),
	('revoke', 'opt_out', 'stop.keyword', 'REVOKE'),
	('REMOVE', 'opt_out', 'stop.keyword', 'REMOVE'),
	('TD', 'opt_out', 'stop.keyword', 'TD (Canada)'),
	-- Spanish.
	('ALTO', 'opt_out', 'stop.keyword', 'ALTO'),
	('parar', 'opt_out', 'stop.keyword', 'PARAR'),
	('Cancelar', 'opt_out', 'stop.keyword', 'CANCELAR'),
	('BAJA', 'opt_out', 'stop.keyword', 'BAJA'),
	('Alto, por favor', 'opt_out', 'stop.keyword', 'ALTO por favor'),
	-- French (STOP is French too).
	(E'ARR\u00CAT', 'opt_out', 'stop.keyword', 'ARRÊT'),
	('ARRET', 'opt_out', 'stop.keyword', 'ARRET'),
	(E'Arr\u00EAte', 'opt_out', 'stop.keyword', 'Arrête'),
	(E'arr\u00EAter', 'opt_out', 'stop.keyword', 'arrêter'),
	(E'D\u00C9SABONNER', 'opt_out', 'stop.keyword', 'DÉSABONNER'),
	('desabonner', 'opt_out', 'stop.keyword', 'DESABONNER'),
	(E'D\u0065\u0301sinscrire', 'opt_out', 'stop.keyword', 'désinscrire with a combining accent'),
	('Annuler', 'opt_out', 'stop.keyword', 'ANNULER'),
	('STOP SVP', 'opt_out', 'stop.keyword', 'STOP SVP'),
	(E'Stop, s\u2019il vous pla\u00EEt', 'opt_out', 'stop.keyword', 'STOP s''il vous plaît'),
	-- Short replies (at most 6 words) with a keyword among other words.
	('please stop texting me', 'opt_out', 'stop.short', 'a short sentence'),
	('No. Stop.', 'opt_out', 'stop.short', 'no, stop'),
	('stop sending me these', 'opt_out', 'stop.short', 'stop sending'),
	(E'\u041F\u0440\u0438\u0432\u0435\u0442 STOP', 'opt_out', 'stop.short', 'another script beside STOP'),
	('Dejen de escribir, ALTO', 'opt_out', 'stop.short', 'Spanish sentence'),
	(E'Arr\u00EAtez les messages', 'opt_out', 'stop.short', 'French sentence, ARRÊTEZ'),
	('the bus stop', 'opt_out', 'stop.short', 'a short reply that uses stop otherwise still revokes'),
	('cancel my appointment', 'opt_out', 'stop.short', 'cancel my appointment revokes (documented)'),
	-- Negated in a short reply: flagged, not revoked.
	('don''t stop texting me', 'review', 'review.negated', 'don''t stop'),
	(E'Don\u2019t STOP', 'review', 'review.negated', 'don’t with a typographic apostrophe'),
	('do not stop', 'review', 'review.negated', 'do not stop'),
	('never stop', 'review', 'review.negated', 'never stop'),
	-- Longer messages with a keyword: flagged, not revoked.
	('I will be there by the end of the day, see you', 'review', 'review.long', 'end of the day'),
	('please stop sending me these messages every day', 'review', 'review.long', 'a long revocation is flagged'),
	('We waited at the bus stop for an hour today', 'review', 'review.long', 'the bus stop in a long message'),
	-- Help, alone or with courtesy words.
	('HELP', 'help', 'help.keyword', 'HELP'),
	('info', 'help', 'help.keyword', 'INFO'),
	('Help please', 'help', 'help.keyword', 'HELP please'),
	('AYUDA', 'help', 'help.keyword', 'AYUDA'),
	('Aide', 'help', 'help.keyword', 'AIDE'),
	-- Ordinary messages.
	('Hello', NULL, NULL, 'a greeting'),
	('thanks for the info', NULL, NULL, 'INFO in a sentence is a message'),
	('help me find my glasses', NULL, NULL, 'HELP in a sentence is a message'),
	('Yes, see you Tuesday', NULL, NULL, 'YES in a sentence is a message'),
	('I stopped by yesterday', NULL, NULL, 'stopped is not stop'),
	('UNSTOPPABLE', NULL, NULL, 'a longer word'),
	('', NULL, NULL, 'an empty body'),
	(E'\U0001F6D1', NULL, NULL, 'an emoji alone');
-- Opting back in: each from a number that opted out first.
CREATE TEMP TABLE starts (n serial, body text, rule text, note text);
INSERT INTO starts (body, rule, note) VALUES
	('START', 'start.keyword', 'START'),
	('unstop', 'start.keyword', 'UNSTOP'),
	('Yes', 'start.keyword', 'YES'),
	('YES please', 'start.keyword', 'YES please'),
	('INICIO', 'start.keyword', 'INICIO'),
	('Comenzar', 'start.keyword', 'COMENZAR'),
	('COMMENCER', 'start.keyword', 'COMMENCER'),
	(E'D\u00E9marrer', 'start.keyword', 'DÉMARRER');
CREATE TEMP TABLE got (kind text, n integer, consent text, message_id uuid, error text);
SELECT pgrst.share_tap();

SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
INSERT INTO got
SELECT 'case', r.device_message_id::integer, r.consent, r.message_id, r.error
  FROM eightms_api.receive_messages((SELECT jsonb_agg(jsonb_build_object(
			'from', '+1 202 555 ' || (1000 + n), 'body', body, 'device_message_id', n::text) ORDER BY n) FROM cases)) r;
INSERT INTO got
SELECT 'stop', r.device_message_id::integer - 100, r.consent, r.message_id, r.error
  FROM eightms_api.receive_messages((SELECT jsonb_agg(jsonb_build_object(
			'from', '+1 202 555 ' || (2000 + n), 'body', 'STOP', 'device_message_id', (100 + n)::text) ORDER BY n) FROM starts)) r;
INSERT INTO got
SELECT 'start', r.device_message_id::integer - 200, r.consent, r.message_id, r.error
  FROM eightms_api.receive_messages((SELECT jsonb_agg(jsonb_build_object(
			'from', '+1 202 555 ' || (2000 + n), 'body', body, 'device_message_id', (200 + n)::text) ORDER BY n) FROM starts)) r;
SELECT pgrst.reset();
-- What the account recorded, copied to read beside the cases: Citus joins
-- no distributed table with a temporary one.
CREATE TEMP TABLE recorded_event AS SELECT * FROM eightms.consent_event WHERE account_id = :'acct';
CREATE TEMP TABLE recorded_review AS SELECT * FROM eightms.consent_review WHERE account_id = :'acct';
CREATE TEMP TABLE recorded_opt_out AS SELECT * FROM eightms.opt_out WHERE account_id = :'acct';

SELECT is(g.consent, c.consent, format('%s: %s -> %s', coalesce(c.rule, 'nothing'), c.note, coalesce(c.consent, 'nothing')))
  FROM cases c JOIN got g ON g.kind = 'case' AND g.n = c.n ORDER BY c.n;
SELECT is((SELECT e.rule FROM recorded_event e WHERE e.account_id = :'acct' AND e.number = '+1202555' || (1000 + c.n)
			AND e.action = 'opt_out'),
		  c.rule, format('%s: %s is recorded under its rule', c.rule, c.note))
  FROM cases c WHERE c.consent = 'opt_out' ORDER BY c.n;
SELECT is((SELECT r.rule FROM recorded_review r WHERE r.account_id = :'acct' AND r.number = '+1202555' || (1000 + c.n)),
		  c.rule, format('%s: %s is flagged for review', c.rule, c.note))
  FROM cases c WHERE c.consent = 'review' ORDER BY c.n;
SELECT is((SELECT count(*) FROM recorded_opt_out o WHERE o.account_id = :'acct' AND o.number = '+1202555' || (1000 + c.n)),
		  0::bigint, format('%s: %s does not opt the number out', coalesce(c.rule, 'nothing'), c.note))
  FROM cases c WHERE c.consent IS DISTINCT FROM 'opt_out' ORDER BY c.n;
SELECT is(g.consent, 'opt_in', format('%s: %s opts a number back in', s.rule, s.note))
  FROM starts s JOIN got g ON g.kind = 'start' AND g.n = s.n ORDER BY s.n;
SELECT is((SELECT e.rule || ' ' || e.keyword FROM recorded_event e WHERE e.account_id = :'acct'
			AND e.number = '+1202555' || (2000 + s.n) AND e.action = 'opt_in'),
		  s.rule || ' ' || upper(translate(s.body, E'\u00E9', 'e')) || '', format('%s: %s is recorded with its keyword', s.rule, s.note))
  FROM starts s WHERE s.body NOT LIKE '% %' ORDER BY s.n;

-- The record proves the change: the exact text, its normalised form, the
-- rule, the keyword, when (the time of the change, which queued the
-- confirmation with it), and the confirmation it queued.
SELECT results_eq(
	$$SELECT e.inbound_text, e.normalized, e.rule, e.keyword, e.at = m.created_at, m.body LIKE 'You have been unsubscribed from Olga Opticians.%'
		FROM eightms.consent_event e JOIN eightms.message m ON m.account_id = e.account_id AND m.message_id = e.confirmation_id
	   WHERE e.account_id = (SELECT account_id FROM eightms.account WHERE company_name = 'Olga Opticians')
		 AND e.number = '+12025551003'$$,
	$$VALUES (E'Stop \U0001F6D1', 'STOP', 'stop.keyword', 'STOP', true, true)$$,
	'an opt-out keeps the exact text, its normalised form, the rule, the keyword, the time and its confirmation');
SELECT is((SELECT e.keyword FROM eightms.consent_event e WHERE e.account_id = :'acct' AND e.number = '+12025551006'),
		  'OPT OUT', 'Opt-out is recorded as the keyword OPT OUT');
SELECT is((SELECT e.message_id FROM eightms.consent_event e WHERE e.account_id = :'acct' AND e.number = '+12025551001'),
		  (SELECT g.message_id FROM got g WHERE g.kind = 'case' AND g.n = 1), 'the change names the inbound message');

-- Confirmations: one per change, queued to the number at once, carrying
-- the template's fields; a repeated STOP changes nothing and sends nothing.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 202 555 1001", "body": "STOP", "device_message_id": "again-1"}]')),
		  'opt_out', 'a second STOP still answers opt_out');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 202 555 1001", "body": "stop please", "device_message_id": "again-2"}]')),
		  'opt_out', 'and a third');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message m WHERE m.account_id = :'acct' AND m.peer_number = '+12025551001'
			AND m.direction = 'out'), 1::bigint, 'one opt-out confirmation for three STOPs: one per change');
SELECT is((SELECT count(*) FROM eightms.consent_event e WHERE e.account_id = :'acct' AND e.number = '+12025551001'),
		  1::bigint, 'and one consent change');
SELECT is((SELECT count(*) FROM eightms.consent_event e
			 JOIN eightms.message m ON m.account_id = e.account_id AND m.message_id = e.confirmation_id
			WHERE e.account_id = :'acct' AND m.status = 'queued' AND m.direction = 'out' AND m.peer_number = e.number),
		  (SELECT count(*) FROM eightms.consent_event e WHERE e.account_id = :'acct'),
		  'every change has its confirmation queued to its number');
SELECT is((SELECT m.body FROM eightms.consent_event e JOIN eightms.message m ON m.account_id = e.account_id AND m.message_id = e.confirmation_id
			WHERE e.account_id = :'acct' AND e.number = '+12025552001' AND e.action = 'opt_in'),
		  'Olga Opticians: you are subscribed again. Msg frequency varies. Msg & data rates may apply. Reply HELP for help, STOP to unsubscribe.',
		  'the resubscribe confirmation names the business, the rates notice, HELP and STOP');
SELECT is((SELECT count(*) FROM eightms.message m WHERE m.account_id = :'acct' AND m.peer_number = '+12025552001'
			AND m.direction = 'out'), 2::bigint, 'a STOP then a START: two changes, two confirmations');
-- (The account's messages copied, as its consent records above.)
CREATE TEMP TABLE recorded_message AS SELECT * FROM eightms.message WHERE account_id = :'acct';
SELECT is((SELECT m.body FROM recorded_message m WHERE m.account_id = :'acct' AND m.peer_number = '+1202555' || (1000 + c.n)
			AND m.direction = 'out'),
		  'Olga Opticians help: reply to this message. Msg & data rates may apply. Reply STOP to unsubscribe, START to resubscribe.',
		  'the default HELP reply names the business, a care contact, the rates notice and STOP')
  FROM cases c WHERE c.body = 'HELP';
SELECT is((SELECT count(*) FROM recorded_message m WHERE m.account_id = :'acct' AND m.direction = 'out'
			AND m.peer_number IN (SELECT '+1202555' || (1000 + c.n) FROM cases c WHERE c.consent IS NULL OR c.consent = 'review')),
		  0::bigint, 'ordinary messages and unclear ones get no automatic reply');
-- START from a number that never opted out: no change, nothing sent.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 202 555 3001", "body": "START", "device_message_id": "st-1"}]')),
		  NULL, 'START from a number that has not opted out changes nothing');
-- HELP from an opted-out number: answered help, but nothing is sent to it.
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 202 555 1001", "body": "HELP", "device_message_id": "again-3"}]')),
		  'help', 'HELP from an opted-out number is recognised');
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12025553001' AND direction = 'out'),
		  0::bigint, 'and is sent no confirmation');
SELECT is((SELECT count(*) FROM eightms.message m WHERE m.account_id = :'acct' AND m.peer_number = '+12025551001'
			AND m.direction = 'out'), 1::bigint, 'an opted-out number is sent no HELP reply (only the STOP confirmation bypasses the opt-out)');

-- A region without the rates notice.
SELECT pgrst.as_phone(:'gb', '00000000-0000-4000-8000-0000000000d2');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+44 7700 900123", "body": "help", "device_message_id": "gb-1"}]')),
		  'help', 'HELP in a GB account');
SELECT pgrst.reset();
SELECT is((SELECT body FROM eightms.message WHERE account_id = :'gb' AND direction = 'out'),
		  'Gus Garage help: reply to this message. Reply STOP to unsubscribe, START to resubscribe.',
		  'outside the United States and Canada the HELP reply has no rates notice');

-- Templates: owners and admins set them, validated (22023 with a hint).
SELECT pgrst.as_user('olga', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.consent_templates() WHERE is_default), 5::bigint, 'every template starts at its default');
SELECT is(eightms_api.set_consent_template('contact', 'care@olga.test'), 'care@olga.test', 'the owner sets the care contact');
SELECT is(eightms_api.set_consent_template('stop', 'Olga Opticians: unsubscribed, no more texts. Text START to come back.'),
		  'Olga Opticians: unsubscribed, no more texts. Text START to come back.', 'and a STOP confirmation naming the business literally');
SELECT is(eightms_api.set_consent_template('help', '{business}: questions? {contact}. {rates} STOP to opt out.'),
		  'Olga Opticians: questions? care@olga.test. Msg & data rates may apply. STOP to opt out.', 'and a HELP reply with placeholders');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('welcome', '{business}')$$, '22023',
				 'a consent template''s kind is help, stop, start, clarify or contact', 'an unknown kind is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('help', NULL)$$, '22023',
				 'a consent template must not be empty', 'a NULL template is refused (reset_consent_template resets)');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('stop', '   ')$$, '22023',
				 'a consent template must not be empty', 'a blank template is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('stop', 'You are unsubscribed. Reply START to resubscribe.')$$, '22023',
				 'a consent reply must name the business', 'a template without the business name is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('help', '{business}: {rates} Reply STOP to unsubscribe.')$$, '22023',
				 'a HELP reply must give the customer-care contact', 'a HELP reply without the care contact is refused');
SELECT lives_ok($$SELECT eightms_api.set_consent_template('help', '{business}: email care@olga.test. {rates} Reply STOP to unsubscribe.')$$,
				'the care contact written out counts');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('help', '{business}: {contact}. {rates}')$$, '22023',
				 'a HELP reply must say how to opt out', 'a HELP reply without STOP is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('start', '{business}: welcome back. {rates}')$$, '22023',
				 'a START reply must say how to opt out', 'a resubscribe confirmation without STOP is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('start', '{business}: welcome back. Reply STOP to unsubscribe.')$$, '22023',
				 'a START reply must say "Msg & data rates may apply" in this account''s region',
				 'a US account''s resubscribe confirmation without the rates notice is refused');
SELECT lives_ok($$SELECT eightms_api.set_consent_template('start', '{business}: welcome back. Message and data rates may apply. Reply STOP to unsubscribe.')$$,
				'the rates notice written out counts');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('clarify', '{business}: did you mean it?')$$, '22023',
				 'a CLARIFY reply must say how to opt out', 'a clarification without STOP is refused');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('stop', '{business}: {name}, you are out.')$$, '22023',
				 'a consent template has an unknown placeholder', 'an unknown placeholder is refused');
SELECT throws_ok(format('SELECT eightms_api.set_consent_template(%L, %L)', 'stop', '{business} ' || repeat('x', 320)), '22023',
				 'a consent reply must be at most 320 characters once filled in', 'a reply over 320 characters is refused');
SELECT throws_ok(format('SELECT eightms_api.set_consent_template(%L, %L)', 'contact', repeat('x', 101)), '22023',
				 'a customer-care contact must be at most 100 characters, without placeholders', 'a long care contact is refused');
SELECT pgrst.as_user('agnes', :'acct');
SELECT throws_ok($$SELECT eightms_api.set_consent_template('stop', '{business}: unsubscribed.')$$, '42501', NULL,
				 'an agent may not change the templates');
SELECT is((SELECT rendered FROM eightms_api.consent_templates() WHERE kind = 'contact'), 'care@olga.test', 'an agent reads them');
SELECT pgrst.as_user('olga', :'acct');
SELECT throws_ok($$UPDATE eightms.consent_template SET template = 'x'$$, '42501', NULL,
				 'an owner''s own SQL does not write the templates: the API checks them');
SELECT pgrst.reset();

-- The account's templates are what goes out.
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000d1');
SELECT is((SELECT consent FROM eightms_api.receive_messages('[{"from": "+1 202 555 4001", "body": "Stop", "device_message_id": "tpl-1"},
																  {"from": "+1 202 555 4002", "body": "Help", "device_message_id": "tpl-2"}]') LIMIT 1),
		  'opt_out', 'a STOP after the templates changed');
SELECT pgrst.reset();
SELECT is((SELECT body FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12025554001' AND direction = 'out'),
		  'Olga Opticians: unsubscribed, no more texts. Text START to come back.', 'the STOP confirmation is the account''s template');
SELECT is((SELECT body FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+12025554002' AND direction = 'out'),
		  'Olga Opticians: email care@olga.test. Msg & data rates may apply. Reply STOP to unsubscribe.', 'and so is the HELP reply');
SELECT pgrst.as_user('olga', :'acct');
SELECT is(eightms_api.reset_consent_template('stop'),
		  'You have been unsubscribed from Olga Opticians. No more messages will be sent. Reply START to resubscribe.',
		  'a template goes back to its default');

-- Review: listed for the dashboard; one clarification, refused the second
-- time; a member's decision opts out (recorded, confirmed) or dismisses.
-- (The numbers named first: Citus reads no view of outer joins with a
-- filter from a temporary table.)
SELECT '+1202555' || (1000 + n) AS long_number FROM cases WHERE body = 'please stop sending me these messages every day' \gset
SELECT '+1202555' || (1000 + n) AS neg_number FROM cases WHERE body = 'do not stop' \gset
SELECT review_id AS long_review FROM eightms_api.consent_reviews WHERE peer_number = :'long_number' \gset
SELECT review_id AS neg_review FROM eightms_api.consent_reviews WHERE peer_number = :'neg_number' \gset
SELECT is((SELECT count(*) FROM eightms_api.consent_reviews WHERE resolved_at IS NULL),
		  (SELECT count(*) FROM cases WHERE consent = 'review'), 'the dashboard lists every unclear reply');
SELECT is((SELECT body || ' | ' || rule || ' | ' || keyword FROM eightms_api.consent_reviews WHERE review_id = :'long_review'),
		  'please stop sending me these messages every day | review.long | STOP', 'with its message, rule and keyword');
SELECT lives_ok(format('SELECT eightms_api.send_message(%L, %L)', '+1202555' ||
					   (1000 + (SELECT n FROM cases WHERE body = 'please stop sending me these messages every day')), 'Your order is ready'),
				'a number under review is not opted out');
SELECT pgrst.as_user('agnes', :'acct');
SELECT isnt(eightms_api.send_consent_clarification(:'long_review'), NULL, 'an agent sends the one clarification');
SELECT throws_ok(format('SELECT eightms_api.send_consent_clarification(%L)', :'long_review'), '55000',
				 format('a clarification was already sent for consent review %s', :'long_review'), 'a second one is refused');
SELECT pgrst.reset();
SELECT is((SELECT m.body FROM eightms.consent_review r JOIN eightms.message m ON m.account_id = r.account_id AND m.message_id = r.clarification_id
			WHERE r.review_id = :'long_review'),
		  'Olga Opticians: did you mean to stop all messages from us? Reply STOP to unsubscribe; we will not ask again.',
		  'the clarification is queued to the number, naming the business and STOP');
SELECT is((SELECT count(*) FROM eightms.message m JOIN eightms.consent_review r ON r.account_id = m.account_id AND r.number = m.peer_number
			WHERE r.review_id = :'long_review' AND m.body LIKE '%did you mean%'), 1::bigint, 'exactly once');
SELECT pgrst.as_user('agnes', :'acct');
SELECT throws_ok(format('SELECT eightms_api.resolve_consent_review(%L, NULL)', :'neg_review'), '22023',
				 'opt_out must be true or false', 'a decision must be given');
SELECT is(eightms_api.resolve_consent_review(:'neg_review', false), 'dismissed', 'a negated keyword is dismissed');
SELECT is(eightms_api.resolve_consent_review(:'long_review', true), 'opted_out', 'the long revocation is honoured by a member');
SELECT throws_ok(format('SELECT eightms_api.resolve_consent_review(%L, true)', :'long_review'), '55000',
				 format('consent review %s is resolved', :'long_review'), 'a review is resolved once');
SELECT throws_ok(format('SELECT eightms_api.send_consent_clarification(%L)', :'neg_review'), '55000',
				 format('consent review %s is resolved', :'neg_review'), 'no clarification after a decision');
SELECT throws_ok($$SELECT eightms_api.send_consent_clarification('00000000-0000-4000-8000-000000000000')$$, 'P0002',
				 'no consent review 00000000-0000-4000-8000-000000000000', 'an unknown review');
SELECT pgrst.reset();
SELECT results_eq(format($$SELECT e.rule, e.inbound_text, m.status, m.error FROM eightms.consent_event e
					   JOIN eightms.consent_review r ON r.account_id = e.account_id AND r.number = e.number
					   JOIN eightms.message m ON m.account_id = e.account_id AND m.peer_number = e.number AND m.body = 'Your order is ready'
					  WHERE r.review_id = %L$$, :'long_review'),
	$$VALUES ('review.member', 'please stop sending me these messages every day', 'canceled', 'recipient opted out')$$,
	'the member''s decision is recorded with the reply''s text and cancels what waited');
SELECT is((SELECT m.body LIKE 'You have been unsubscribed%' FROM eightms.consent_event e JOIN eightms.consent_review r
			 ON r.account_id = e.account_id AND r.number = e.number
			 JOIN eightms.message m ON m.account_id = e.account_id AND m.message_id = e.confirmation_id
			WHERE r.review_id = :'long_review'), true, 'and confirmed');

-- A review goes with its conversation.
SELECT pgrst.as_user('olga', :'acct');
SELECT lives_ok(format('SELECT eightms_api.delete_conversation(%L)',
					   (SELECT conversation_id FROM eightms_api.consent_reviews WHERE review_id = :'neg_review')),
				'a member deletes a conversation under review');
SELECT is((SELECT count(*) FROM eightms_api.consent_reviews WHERE review_id = :'neg_review'), 0::bigint,
		  'its review is deleted with it');

-- The consent history: owners and admins, paged, every field.
SELECT pgrst.as_user('olga', :'acct');
SELECT is((SELECT count(*) FROM eightms_api.consent_history(page_size => 1000)),
		  (SELECT count(*) FROM eightms.consent_event WHERE account_id = :'acct'), 'the export holds every change');
SELECT results_eq($$SELECT action, rule, keyword, inbound_text, normalized, confirmation_id IS NOT NULL
					  FROM eightms_api.consent_history('+1 202 555 2001')$$,
	$$VALUES ('opt_out', 'stop.keyword', 'STOP', 'STOP', 'STOP', true), ('opt_in', 'start.keyword', 'START', 'START', 'START', true)$$,
	'one number''s history, oldest first, with what proves each change');
SELECT at AS p_at, event_id AS p_id FROM eightms_api.consent_history(page_size => 2) ORDER BY at DESC, event_id DESC LIMIT 1 \gset
SELECT is((SELECT count(*) FROM eightms_api.consent_history(after_at => :'p_at', after_id => :'p_id', page_size => 1000)) + 2,
		  (SELECT count(*) FROM eightms_api.consent_history(page_size => 1000)), 'paging by name');
SELECT throws_ok($$SELECT * FROM eightms_api.consent_history(page_size => 0)$$, '22023', 'page_size must be 1 to 1000',
				 'a page is 1 to 1000 rows');
SELECT throws_ok($$SELECT * FROM eightms_api.consent_history(after_at => now())$$, '22023', 'after_at and after_id go together',
				 'a keyset needs both');
SELECT pgrst.as_user('agnes', :'acct');
SELECT throws_ok($$SELECT * FROM eightms_api.consent_history()$$, '42501', NULL, 'an agent may not export the history');
-- Append-only for API roles.
SELECT throws_ok($$DELETE FROM eightms.consent_event$$, '42501', NULL, 'a member may not delete consent records');
SELECT throws_ok($$UPDATE eightms.consent_event SET rule = 'x'$$, '42501', NULL, 'nor rewrite them');
SELECT throws_ok(format($$INSERT INTO eightms.consent_event (account_id, number, action) VALUES (%L, '+12025550000', 'opt_in')$$, :'acct'),
				 '42501', NULL, 'nor forge one');
-- Another account sees none of it.
SELECT pgrst.as_user('gus', :'gb');
SELECT is((SELECT count(*) FROM eightms_api.consent_history()), 0::bigint, 'another account''s export is its own');
SELECT is((SELECT count(*) FROM eightms_api.consent_reviews), 0::bigint, 'and so are its reviews');
SELECT throws_ok(format('SELECT eightms_api.send_consent_clarification(%L)', :'long_review'), 'P0002', NULL,
				 'another account''s review is unknown');
SELECT pgrst.reset();

-- A body in ASCII is read in C (eightms.consent_ascii), any other by
-- Unicode normalization and regular expressions: both give the same text
-- for every ASCII character alone, every pair of them between two
-- letters, and runs of punctuation, controls, apostrophes and backquotes.
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM (SELECT chr(c) AS t FROM generate_series(1, 127) c
								 UNION ALL
								 SELECT 'x' || chr(c) || chr(d) || 'Y' FROM generate_series(1, 127) c, generate_series(1, 127) d
								 UNION ALL
								 VALUES (''), (' '), (E'\t\n STOP \r\n'), ('don''t  `stop`!!'), ('--Opt-Out--'), ('a''''b'),
										('''`'), (E'1,2;3\x7F4')) s
			WHERE eightms.consent_ascii(s.t) IS DISTINCT FROM eightms.consent_normalize_unicode(s.t)),
		  0::bigint, 'an ASCII body reads the same in C as by normalization and regular expressions');
SELECT is(eightms.consent_ascii('ARRÊT'), NULL, 'a body with any other character is left to the general path');
SELECT is(eightms.consent_normalize('ARRÊT'), 'ARRET', 'which consent_normalize takes for it');
SELECT is(eightms.consent_normalize(NULL), NULL, 'NULL reads as NULL');

SELECT * FROM finish();
ROLLBACK;
