-- Campaigns (doc/campaigns.md): saved audiences, creating and changing a
-- draft, every state move allowed and refused (E8C02 naming the state),
-- the estimate's figures, the fan-out (exclusions, duplicates, zones),
-- send windows (a recipient outside its window waits, inside it is queued;
-- a message whose window closes while queued is not claimable and moves to
-- its next window; the TTL counts from the opening), daylight-saving days
-- in three zones, an opt-out after the fan-out, cancel and completion;
-- other accounts and roles refused.
BEGIN;
SELECT * FROM no_plan();

SELECT pgrst.as_user('olga');
SELECT account_id AS acct FROM eightms_api.create_account('Olga Opticians', 'America/New_York') \gset
SELECT pgrst.as_user('gus');
SELECT account_id AS gb FROM eightms_api.create_account('Gus Garage', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.reset();
INSERT INTO eightms.phone (account_id, phone_id, device_id, rate_limit, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000c1', 'olga-phone', NULL, now(), 90);
INSERT INTO eightms.member (account_id, user_id, email, role) VALUES (:'acct', 'agnes', 'agnes@example.test', 'agent');
-- The one day of the week the campaigns below send on: today in
-- Kiritimati (UTC+14), never today in Pago Pago (UTC-11), a day or two
-- behind.
SELECT extract(isodow FROM now() AT TIME ZONE 'Pacific/Kiritimati')::smallint AS kday \gset

-- ---------------------------------------------------------------- contacts
SELECT pgrst.as_user('olga', :'acct');
SELECT eightms_api.set_contact_field('plan', 'text');
SELECT eightms_api.create_contact('{"phone": "+12125550101", "first_name": "Ada", "tags": ["vip"], "custom": {"plan": "gold"}}') AS ada \gset
SELECT eightms_api.create_contact('{"phone": "+16847331234", "first_name": "Sione", "tags": ["vip"]}') AS sione \gset
SELECT eightms_api.create_contact('{"phone": "+12125550102", "first_name": "Grace", "tags": ["vip", "nyc"]}') AS grace \gset
SELECT eightms_api.create_contact('{"phone": "+12125550103", "first_name": "Otto", "tags": ["vip"]}') AS otto \gset
SELECT eightms_api.add_opt_out('+12125550103');
SELECT pgrst.reset();
-- A number the engine places in no region (imported under older metadata).
INSERT INTO eightms.contact (account_id, contact_id, phone, first_name, tags, source)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000d1', '+15550100000', 'Nemo', '{vip}', 'import');
-- Grace reads her windows in Kiritimati.
UPDATE eightms.contact SET time_zone = 'Pacific/Kiritimati' WHERE account_id = :'acct' AND contact_id = :'grace';

-- ---------------------------------------------------------------- segments
SELECT pgrst.as_user('olga', :'acct');
SELECT eightms_api.save_segment('VIPs', '{"tags_any": ["vip"]}') AS vips \gset
SELECT is((SELECT array_agg(name) FROM eightms_api.segments()), ARRAY['VIPs'], 'a segment is saved and listed');
SELECT is(eightms_api.save_segment('VIPs', '{"tags_all": ["vip", "nyc"]}'), :'vips'::uuid, 'saving under the same name changes it');
SELECT is((SELECT audience FROM eightms_api.segments()), '{"tags_all": ["vip", "nyc"]}'::jsonb, 'with the new audience');
SELECT throws_ok($$SELECT eightms_api.save_segment('x', '{}')$$, '22023', NULL, 'an empty audience is refused');
SELECT throws_ok($$SELECT eightms_api.save_segment('x', '{"colour": "red"}')$$, '22023', NULL, 'an unknown key is refused');
SELECT throws_ok($$SELECT eightms_api.save_segment('x', '{"where_custom": [{"field": "nope", "op": "exists"}]}')$$, '22023',
				 NULL, 'a filter on an undefined field is refused');
SELECT throws_ok(format($$SELECT eightms_api.save_segment('x', '{"segment_id": "%s"}')$$, :'vips'), '22023', NULL,
				 'a saved audience names no segment');
SELECT throws_ok($$SELECT eightms_api.save_segment('x', '{"contact_ids": ["not-a-uuid"]}')$$, '22023', NULL,
				 'contact ids must be ids');

-- ---------------------------------------------------------------- create and update
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}')$$, '22023', NULL, 'a campaign needs a body or a template');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', template => 't', body => 'b')$$, '22023', NULL,
				 'not both');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'Hi {{nickname}}')$$, '22023',
				 'unknown placeholder at character 4 of the template', 'an unknown placeholder is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'Hi {{custom.shoe_size}}')$$, '22023',
				 NULL, 'a placeholder of an undefined field is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'Hi {{ first name }}')$$, '22023',
				 NULL, 'a placeholder written wrong is refused');
-- A template named is read (message_template) and its text copied.
SELECT eightms_api.save_template('greeting', 'Hi {{first_name|there}} ({{custom.plan|basic}})') AS greeting \gset
SELECT eightms_api.create_campaign('from a template', '{"all": true}', template => 'greeting') AS tcamp \gset
SELECT is((SELECT row(template_id, body)::text FROM eightms_api.campaign(:'tcamp')),
		  row(:'greeting'::uuid, 'Hi {{first_name|there}} ({{custom.plan|basic}})')::text,
		  'a campaign from a template keeps its id and a copy of its text');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', template => 'no such')$$, 'P0002', NULL,
				 'a template that is not the account''s is refused');
SELECT eightms_api.delete_campaign(:'tcamp');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'x', window_from => '20:00', window_until => '09:00')$$,
				 '22023', 'window_from must come before window_until', 'a window ending before it starts is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'x', window_days => '{0}')$$,
				 '22023', NULL, 'a day that is no ISO day is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'x', ttl => '8 days')$$,
				 '22023', NULL, 'a ttl over 7 days is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"all": true}', body => 'x', phone_ids => ARRAY['00000000-0000-4000-8000-000000000999'::uuid])$$,
				 '22023', NULL, 'a phone not of the account is refused');
SELECT throws_ok($$SELECT eightms_api.create_campaign('c', '{"segment_id": "00000000-0000-4000-8000-000000000999"}', body => 'x')$$,
				 'P0002', NULL, 'an unknown segment is refused');
SELECT eightms_api.create_campaign('Spring', format('{"segment_id": "%s"}', :'vips')::jsonb,
								   body => 'Hi {{first_name|there}}, your plan: {{custom.plan|none}}') AS seg_camp \gset
SELECT throws_ok(format($$SELECT eightms_api.delete_segment('%s')$$, :'vips'), '2BP01', NULL,
				 'a segment a draft names cannot be deleted');
SELECT lives_ok(format($$SELECT eightms_api.update_campaign('%s', '{"name": "Spring sale", "audience": {"tags_any": ["nyc"]}, "ttl": "2 hours"}')$$, :'seg_camp'),
				'a draft is changed');
SELECT is((SELECT row(name, audience, ttl)::text FROM eightms_api.campaign(:'seg_camp')),
		  row('Spring sale', '{"tags_any": ["nyc"]}'::jsonb, '2 hours'::interval)::text, 'with the changes given');
SELECT throws_ok(format($$SELECT eightms_api.update_campaign('%s', '{"colour": "red"}')$$, :'seg_camp'), '22023', NULL,
				 'an unknown key is refused');
SELECT lives_ok(format($$SELECT eightms_api.delete_segment('%s')$$, :'vips'), 'then the segment can go');
SELECT is((SELECT count(*) FROM eightms_api.segments()), 0::bigint, 'and is gone');

-- ---------------------------------------------------------------- estimate
-- Every contact tagged vip, one listed twice, one id of no contact.
SELECT eightms_api.create_campaign('Main', jsonb_build_object('tags_any', ARRAY['vip'],
		'contact_ids', ARRAY[:'ada', :'sione', :'grace', :'otto', '00000000-0000-4000-8000-0000000000d1', :'ada',
							 '00000000-0000-4000-8000-00000000dead']),
		body => 'Hi {{first_name|there}}, your plan: {{custom.plan|none}}. ' || repeat('x', 140),
		window_from => '00:00', window_until => '23:59:59', window_days => ARRAY[:kday]::smallint[], ttl => '3 hours') AS camp \gset
SELECT is((SELECT row(e.*)::text FROM eightms_api.estimate_campaign(:'camp') e), row(3, 1, 2, 1, 6)::text,
		  'estimate: 3 recipients; 1 opted out, 2 invalid (no region, no such contact), 1 repeated; 2 segments each');

-- ---------------------------------------------------------------- state moves
SELECT throws_ok(format($$SELECT eightms_api.pause_campaign('%s')$$, :'camp'), 'E8C02', 'the campaign is draft: it cannot be paused',
				 'a draft cannot be paused');
SELECT throws_ok(format($$SELECT eightms_api.resume_campaign('%s')$$, :'camp'), 'E8C02', NULL, 'a draft cannot be resumed');
SELECT is(eightms_api.schedule_campaign(:'camp'), 'scheduled', 'a draft is scheduled');
SELECT throws_ok(format($$SELECT eightms_api.schedule_campaign('%s')$$, :'camp'), 'E8C02',
				 'the campaign is scheduled: it cannot be scheduled', 'twice is refused');
SELECT throws_ok(format($$SELECT eightms_api.update_campaign('%s', '{"name": "x"}')$$, :'camp'), 'E8C02', NULL,
				 'a scheduled campaign cannot be changed');
SELECT throws_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'camp'), 'E8C02', NULL,
				 'a scheduled campaign cannot be deleted');
SELECT throws_ok(format($$SELECT eightms_api.pause_campaign('%s')$$, :'camp'), 'E8C02', NULL, 'nor paused before it runs');

-- ---------------------------------------------------------------- fan-out
SELECT pgrst.reset();
SELECT cmp_ok(eightms.run_campaigns(), '>', 0::bigint, 'the job starts the campaign');
-- The job's clock (its transaction's now(), as started_at records it):
-- on the Citus tier each statement here is a transaction of its own.
SELECT started_at AS job_at FROM eightms.campaign WHERE campaign_id = :'camp' \gset
SELECT is((SELECT row(state, audience_count, excluded_opted_out, excluded_invalid, excluded_duplicate)::text
			 FROM eightms.campaign WHERE campaign_id = :'camp'),
		  row('running', 7, 1, 2, 1)::text, 'running, with the figures: 7 entries named, 1 opted out, 2 invalid, 1 repeated');
SELECT is((SELECT array_agg(phone || ' ' || time_zone || ' ' || segments ORDER BY phone) FROM eightms.campaign_recipient
			WHERE campaign_id = :'camp'),
		  ARRAY['+12125550101 America/New_York 2', '+12125550102 Pacific/Kiritimati 2', '+16847331234 Pacific/Pago_Pago 2'],
		  'one recipient per number; zones: the account''s, the contact''s, the region''s only one');
SELECT is((SELECT body FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+12125550101'),
		  'Hi Ada, your plan: gold. ' || repeat('x', 140), 'each text rendered');
SELECT is((SELECT body FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+16847331234'),
		  'Hi Sione, your plan: none. ' || repeat('x', 140), 'fallbacks where a value is missing');
SELECT ok((SELECT window_opens_at > now() FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+16847331234'),
		  'Pago Pago''s recipient waits for a later day');
SELECT is((SELECT window_opens_at FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+12125550102'),
		  :'job_at'::timestamptz, 'Kiritimati''s window is open now');
SELECT is((SELECT row(sum(k.recipients), sum(k.waiting), sum(k.queued))::text FROM eightms.campaign_counter k
			WHERE k.campaign_id = :'camp'),
		  (SELECT row(count(*), count(*) FILTER (WHERE r.state = 'waiting'), count(*) FILTER (WHERE r.state = 'queued'))::text
			 FROM eightms.campaign_recipient r WHERE r.campaign_id = :'camp'),
		  'the stats'' counters hold the fan-out''s recipients by state');

-- ---------------------------------------------------------------- release and windows
SELECT is((SELECT array_agg(phone || ' ' || state ORDER BY phone) FROM eightms.campaign_recipient WHERE campaign_id = :'camp'),
		  ARRAY['+12125550101 ' || CASE WHEN extract(isodow FROM now() AT TIME ZONE 'America/New_York') = :kday
										 THEN 'queued' ELSE 'waiting' END,
				'+12125550102 queued', '+16847331234 waiting'],
		  'the job queued the recipients inside their window, not the one outside');
SELECT is((SELECT row(m.status, m.campaign_id, m.send_at, m.expires_at, m.window_closes_at, m.body)::text
			 FROM eightms.message m JOIN eightms.campaign_recipient r ON r.account_id = m.account_id AND r.message_id = m.message_id
			WHERE m.account_id = :'acct' AND r.account_id = :'acct' AND r.campaign_id = :'camp' AND r.phone = '+12125550102'),
		  row('queued', :'camp'::uuid, :'job_at'::timestamptz, :'job_at'::timestamptz + interval '3 hours',
			  eightms.window_closing(:'job_at', 'Pacific/Kiritimati', '00:00', '23:59:59', ARRAY[:kday]::smallint[]),
			  'Hi Grace, your plan: none. ' || repeat('x', 140))::text,
		  'its message: the campaign''s, sent now, expiring ttl after its window opened, closing with the window');
SELECT is((SELECT body FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+12125550102'), NULL,
		  'a queued recipient keeps no text');
SELECT is((SELECT count(*) FROM eightms.message m JOIN eightms.campaign_recipient r ON r.account_id = m.account_id AND r.message_id = m.message_id
			WHERE m.account_id = :'acct' AND r.account_id = :'acct' AND r.campaign_id = :'camp' AND r.phone = '+16847331234'), 0::bigint, 'no message for the one waiting');
-- The window closes while the message is queued.
UPDATE eightms.message m SET window_closes_at = now() - interval '1 second'
  FROM eightms.campaign_recipient r
 WHERE m.account_id = :'acct' AND r.account_id = :'acct' AND r.account_id = m.account_id
   AND r.message_id = m.message_id AND r.campaign_id = :'camp' AND r.phone = '+12125550102';
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) c WHERE c.to_number = '+12125550102'), 0::bigint,
		  'a message whose window closed is not claimed');
SELECT pgrst.reset();
-- Today is no longer one of its days (as tomorrow would be): its next
-- window is a later day.
SELECT (:kday % 7 + 1)::smallint AS nday \gset
UPDATE eightms.campaign SET window_days = ARRAY[:nday]::smallint[] WHERE campaign_id = :'camp';
SELECT eightms.run_campaigns();
SELECT is((SELECT row(m.status, m.send_at, m.window_closes_at)::text
			 FROM eightms.message m JOIN eightms.campaign_recipient r ON r.account_id = m.account_id AND r.message_id = m.message_id
			WHERE m.account_id = :'acct' AND r.account_id = :'acct' AND r.campaign_id = :'camp' AND r.phone = '+12125550102'),
		  (SELECT row('queued', w.opens_at, w.closes_at)::text
			 FROM eightms.send_window(now(), 'Pacific/Kiritimati', '00:00', '23:59:59', ARRAY[:nday]::smallint[]) w),
		  'the job moves it to its next window');
SELECT ok((SELECT m.send_at > now() AND m.expires_at = :'job_at'::timestamptz + interval '3 hours'
			 FROM eightms.message m JOIN eightms.campaign_recipient r ON r.account_id = m.account_id AND r.message_id = m.message_id
			WHERE m.account_id = :'acct' AND r.account_id = :'acct' AND r.campaign_id = :'camp' AND r.phone = '+12125550102'),
		  'keeping its expiry, counted from the window it was queued in');
SELECT pgrst.as_phone(:'acct', '00000000-0000-4000-8000-0000000000c1');
SELECT is((SELECT count(*) FROM eightms_api.claim_messages(10) c WHERE c.to_number = '+12125550102'), 0::bigint,
		  'and it is not claimed before then');
SELECT pgrst.reset();
UPDATE eightms.campaign SET window_days = ARRAY[:kday]::smallint[] WHERE campaign_id = :'camp';

-- A number that opts out after the fan-out: canceled at release.  Pago
-- Pago's window is made to have opened (as the clock would).
SELECT pgrst.as_user('olga', :'acct');
SELECT eightms_api.add_opt_out('+16847331234');
SELECT pgrst.reset();
UPDATE eightms.campaign_recipient SET window_opens_at = now() - interval '1 minute', time_zone = 'Pacific/Kiritimati'
 WHERE campaign_id = :'camp' AND phone = '+16847331234';
SELECT eightms.run_campaigns();
SELECT is((SELECT state FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND phone = '+16847331234'), 'canceled',
		  'a number opted out since the fan-out is canceled, not queued');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND peer_number = '+16847331234' AND direction = 'out'),
		  0::bigint, 'and nothing is queued to it');

-- ---------------------------------------------------------------- pause, resume, complete
SELECT pgrst.as_user('olga', :'acct');
SELECT is(eightms_api.pause_campaign(:'camp'), 'paused', 'a running campaign is paused');
SELECT throws_ok(format($$SELECT eightms_api.pause_campaign('%s')$$, :'camp'), 'E8C02', 'the campaign is paused: it cannot be paused',
				 'twice is refused');
SELECT throws_ok(format($$SELECT eightms_api.schedule_campaign('%s')$$, :'camp'), 'E8C02', NULL, 'a paused campaign is not scheduled');
SELECT pgrst.reset();
UPDATE eightms.campaign_recipient SET window_opens_at = now() - interval '1 minute', time_zone = 'Pacific/Kiritimati'
 WHERE campaign_id = :'camp' AND state = 'waiting';
SELECT eightms.run_campaigns();
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND state = 'waiting'),
		  (SELECT count(*) FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND state = 'waiting'),
		  'a paused campaign releases nothing');
SELECT pgrst.as_user('olga', :'acct');
SELECT is(eightms_api.resume_campaign(:'camp'), 'running', 'and is resumed');
SELECT throws_ok(format($$SELECT eightms_api.resume_campaign('%s')$$, :'camp'), 'E8C02', NULL, 'a running campaign is not resumed');
SELECT pgrst.reset();
SELECT eightms.run_campaigns();
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE campaign_id = :'camp' AND state = 'waiting'), 0::bigint,
		  'resumed, it releases what is due');
SELECT is((SELECT state FROM eightms.campaign WHERE campaign_id = :'camp'), 'running', 'running while messages are queued');
-- What follows a queued message is its report's (the attribution work).
UPDATE eightms.campaign_recipient SET state = 'delivered' WHERE campaign_id = :'camp' AND state = 'queued';
SELECT eightms.run_campaigns();
SELECT is((SELECT state FROM eightms.campaign WHERE campaign_id = :'camp'), 'completed', 'with none waiting or queued it completes');
SELECT pgrst.as_user('olga', :'acct');
SELECT throws_ok(format($$SELECT eightms_api.cancel_campaign('%s')$$, :'camp'), 'E8C02', 'the campaign is completed: it cannot be canceled',
				 'a completed campaign is not canceled');
SELECT throws_ok(format($$SELECT eightms_api.resume_campaign('%s')$$, :'camp'), 'E8C02', NULL, 'nor resumed');

-- ---------------------------------------------------------------- cancel
SELECT eightms_api.create_campaign('Two', '{"all": true}', body => 'Hello {{first_name}}', window_from => '00:00',
								   window_until => '23:59:59') AS two \gset
SELECT is(eightms_api.schedule_campaign(:'two'), 'scheduled', 'another is scheduled');
SELECT pgrst.reset();
SELECT eightms.run_campaigns();
SELECT pgrst.as_user('olga', :'acct');
SELECT is(eightms_api.cancel_campaign(:'two'), 'canceled', 'a running campaign is canceled');
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE campaign_id = :'two' AND state NOT IN ('canceled')), 0::bigint,
		  'every recipient waiting or queued is canceled');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'acct' AND campaign_id = :'two' AND status <> 'canceled'),
		  0::bigint, 'and every message it queued');
SELECT throws_ok(format($$SELECT eightms_api.cancel_campaign('%s')$$, :'two'), 'E8C02', NULL, 'twice is refused');
SELECT eightms_api.create_campaign('Three', '{"all": true}', body => 'x') AS three \gset
SELECT is(eightms_api.cancel_campaign(:'three'), 'canceled', 'a draft is canceled');
SELECT eightms_api.create_campaign('Four', '{"all": true}', body => 'x') AS four \gset
SELECT eightms_api.schedule_campaign(:'four');
SELECT is(eightms_api.cancel_campaign(:'four'), 'canceled', 'a scheduled one too');
SELECT lives_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'two'), 'a canceled campaign is deleted');
SELECT lives_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'camp'), 'a completed one');
SELECT lives_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'seg_camp'), 'a draft');
SELECT is((SELECT count(*) FROM eightms.campaign_recipient WHERE campaign_id IN (:'two', :'camp')), 0::bigint,
		  'with their recipients');
SELECT is((SELECT array_agg(name ORDER BY name) FROM eightms_api.campaigns()), ARRAY['Four', 'Three'], 'campaigns() lists the rest');
SELECT is((SELECT array_agg(name) FROM eightms_api.campaigns(state => 'canceled', page_size => 1)), ARRAY['Four'],
		  'by state, a page at a time, newest first');
SELECT throws_ok(format($$SELECT * FROM eightms_api.campaign('%s')$$, :'two'), 'P0002', NULL, 'a deleted campaign is gone');

-- A campaign whose audience can no longer be read (a field dropped after
-- it was scheduled) holds up no other in the job.
SELECT eightms_api.set_contact_field('tier', 'text');
SELECT eightms_api.create_campaign('Five', '{"where_custom": [{"field": "tier", "op": "exists"}]}', body => 'x') AS five \gset
SELECT eightms_api.schedule_campaign(:'five');
SELECT eightms_api.drop_contact_field('tier');
SELECT eightms_api.create_campaign('Six', '{"all": true}', body => 'y') AS six \gset
SELECT eightms_api.schedule_campaign(:'six');
SELECT pgrst.reset();
SET LOCAL client_min_messages = error;
SELECT eightms.run_campaigns();
RESET client_min_messages;
SELECT is((SELECT array_agg(name || ' ' || state ORDER BY name) FROM eightms.campaign WHERE campaign_id IN (:'five', :'six')),
		  ARRAY['Five scheduled', 'Six running'], 'a campaign the job cannot start stays scheduled, and the others go on');
SELECT pgrst.as_user('olga', :'acct');

-- ---------------------------------------------------------------- roles and other accounts
SELECT pgrst.as_user('agnes', :'acct');
SELECT throws_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'three'), '42501', NULL, 'an agent does not delete campaigns');
SELECT pgrst.as_user('gus', :'gb');
SELECT is((SELECT count(*) FROM eightms_api.campaigns()), 0::bigint, 'another account lists none of them');
SELECT is((SELECT count(*) FROM eightms.campaign), 0::bigint, 'nor reads the campaign table');
SELECT is((SELECT count(*) FROM eightms.campaign_recipient), 0::bigint, 'nor the recipients');
SELECT is((SELECT count(*) FROM eightms.contact_segment), 0::bigint, 'nor the segments');
SELECT throws_ok(format($$SELECT * FROM eightms_api.campaign('%s')$$, :'three'), 'P0002', NULL, 'nor reads one');
SELECT throws_ok(format($$SELECT * FROM eightms_api.estimate_campaign('%s')$$, :'three'), 'P0002', NULL, 'nor estimates one');
SELECT throws_ok(format($$SELECT eightms_api.schedule_campaign('%s')$$, :'three'), 'P0002', NULL, 'nor moves one');
SELECT throws_ok(format($$SELECT eightms_api.delete_campaign('%s')$$, :'three'), 'P0002', NULL, 'nor deletes one');
SELECT eightms_api.create_campaign('c', jsonb_build_object('contact_ids', ARRAY[:'ada']), body => 'x') AS theirs \gset
SELECT is((SELECT row(e.*)::text FROM eightms_api.estimate_campaign(:'theirs') e), row(0, 0, 1, 0, 0)::text,
		  'nor reaches its contacts: another account''s contact id counts as invalid');
SELECT throws_ok($$INSERT INTO eightms.campaign (account_id, name, body, created_by) VALUES (eightms.current_account_id(), 'x', 'x', 'gus')$$,
				 '42501', NULL, 'no member writes the table directly');

-- ---------------------------------------------------------------- windows across daylight saving
SELECT pgrst.reset();
-- 09:00 to 20:00 on both change days, in New York, Berlin and Sydney:
-- the window opens at 09:00 local, the offset of that day.
SELECT is(eightms.window_opening('2026-03-08 05:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-08 13:00Z'::timestamptz, 'New York, spring forward: 09:00 EDT');
SELECT is(eightms.window_closing('2026-03-08 05:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-09 00:00Z'::timestamptz, 'closing at 20:00 EDT');
SELECT is(eightms.window_opening('2026-11-01 05:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-11-01 14:00Z'::timestamptz, 'New York, fall back: 09:00 EST');
SELECT is(eightms.window_opening('2026-03-29 00:00Z', 'Europe/Berlin', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-29 07:00Z'::timestamptz, 'Berlin, spring forward: 09:00 CEST');
SELECT is(eightms.window_opening('2026-10-25 00:00Z', 'Europe/Berlin', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-10-25 08:00Z'::timestamptz, 'Berlin, fall back: 09:00 CET');
SELECT is(eightms.window_closing('2026-10-25 00:00Z', 'Europe/Berlin', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-10-25 19:00Z'::timestamptz, 'closing at 20:00 CET');
SELECT is(eightms.window_opening('2026-04-04 14:00Z', 'Australia/Sydney', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-04-04 23:00Z'::timestamptz, 'Sydney, the clocks go back on 5 April: 09:00 AEST');
SELECT is(eightms.window_opening('2026-10-03 14:00Z', 'Australia/Sydney', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-10-03 22:00Z'::timestamptz, 'Sydney, forward on 4 October: 09:00 AEDT');
-- Inside the window: the instant itself; after it: the next day listed.
SELECT is(eightms.window_opening('2026-03-08 15:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-08 15:00Z'::timestamptz, 'inside the window, the instant itself');
SELECT is(eightms.window_opening('2026-03-09 01:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5}'),
		  '2026-03-09 13:00Z'::timestamptz, 'after Sunday''s close, Monday 09:00 (a weekday)');
SELECT is(eightms.window_opening('2026-03-07 01:00Z', 'America/New_York', '09:00', '20:00', '{1,2,3,4,5}'),
		  '2026-03-09 13:00Z'::timestamptz, 'Friday evening: Monday 09:00, the weekend skipped');
-- A window edge in the spring-forward gap is read with the offset before
-- the change: 02:30 does not exist on 8 March in New York, the window opens
-- at 03:30 EDT (07:30Z); in Berlin on 29 March, 02:30 is 03:30 CEST.
SELECT is(eightms.window_opening('2026-03-08 05:00Z', 'America/New_York', '02:30', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-08 07:30Z'::timestamptz, 'New York: 02:30 in the gap opens at 03:30 EDT');
SELECT is(eightms.window_opening('2026-03-28 23:00Z', 'Europe/Berlin', '02:30', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-03-29 01:30Z'::timestamptz, 'Berlin: 02:30 in the gap opens at 03:30 CEST');
-- A time that happens twice (fall back) is its second occurrence.
SELECT is(eightms.window_opening('2026-11-01 04:00Z', 'America/New_York', '01:30', '20:00', '{1,2,3,4,5,6,7}'),
		  '2026-11-01 06:30Z'::timestamptz, 'New York: 01:30 twice, the second (EST)');
SELECT is(eightms.window_opening(now(), 'Mars/Olympus', '09:00', '20:00', '{1}'), NULL, 'no window in no zone')
  FROM (SELECT 1) x WHERE false;
SELECT is((SELECT zone FROM eightms.region_zone() WHERE region = 'FR'), 'Europe/Paris', 'a region with one zone has it');
SELECT is((SELECT count(*) FROM eightms.region_zone() WHERE region IN ('US', 'DE', 'AU')), 0::bigint,
		  'regions with several zones have none');

SELECT * FROM finish();
ROLLBACK;
