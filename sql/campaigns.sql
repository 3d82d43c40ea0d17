-- campaigns.sql: campaigns (one text, from a template, to an audience of
-- the account's contacts, within a send window in each recipient's local
-- time), their recipients, and the saved audiences they may name
-- (doc/campaigns.md).
--
-- draft --schedule--> scheduled --(start_at)--> running --> completed
--   \                     |   \                  |   ^
--    \--------------------+----+--> canceled <---+   | resume
--                                                pause --> paused
--
-- A campaign fans out once, when it starts: one row per distinct number of
-- its audience, each with its text rendered and the opening of its first
-- send window.  A recipient waits there (no message exists for it) until
-- its window opens; the campaigns job then queues its message through the
-- gateway's own path (routing, pacing, the opt-out check at claim).  The
-- recipient row then follows its message to the end and carries what the
-- stats and attribution count: reached, replied, opted out.
--
-- Members read the three tables (row-level security keeps each account's
-- own); they write them only through the functions below.  Every statement
-- names the account by value: on Citus it is routed to the account's shard.

-- ------------------------------------------------------------ tables

-- A saved audience: the same object a campaign's audience takes.
CREATE TABLE eightms.contact_segment (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	segment_id	uuid NOT NULL DEFAULT eightms.uuid_v7(),
	name		text NOT NULL
		CONSTRAINT contact_segment_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 100),
	audience	jsonb NOT NULL
		CONSTRAINT contact_segment_audience_check CHECK (jsonb_typeof(audience) = 'object'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, segment_id),
	CONSTRAINT contact_segment_name_key UNIQUE (account_id, name)
);
COMMENT ON TABLE eightms.contact_segment IS
	'Saved audiences: a name and the filter a campaign''s audience takes (tags, custom fields, contact ids)';
SELECT pg_catalog.pg_extension_config_dump('eightms.contact_segment', '');

CREATE TABLE eightms.campaign (
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	campaign_id		uuid NOT NULL DEFAULT eightms.uuid_v7(),
	name			text NOT NULL
		CONSTRAINT campaign_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
	-- The template chosen, and its text copied when the campaign was last
	-- edited: a template edited or deleted later changes no campaign.
	template_id		uuid,
	body			text NOT NULL
		CONSTRAINT campaign_body_check CHECK (length(body) BETWEEN 1 AND 1600),
	-- Who receives it (doc/campaigns.md, "Audience"): tags, custom-field
	-- filters, contact ids or a saved segment.
	audience		jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT campaign_audience_check CHECK (jsonb_typeof(audience) = 'object'),
	-- The phones that may send it; NULL: routing as usual.
	phone_ids		uuid[]
		CONSTRAINT campaign_phone_ids_check CHECK (cardinality(phone_ids) BETWEEN 1 AND 100),
	state			text NOT NULL DEFAULT 'draft'
		CONSTRAINT campaign_state_check
			CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'canceled')),
	-- When it may start; NULL: as soon as it is scheduled.
	start_at		timestamptz,
	-- The send window, in each recipient's local time: from window_from
	-- (inclusive) to window_until (exclusive), on the ISO days of the week
	-- listed (1 Monday .. 7 Sunday).
	window_from		time NOT NULL DEFAULT '09:00',
	window_until	time NOT NULL DEFAULT '20:00',
	window_days		smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}'
		CONSTRAINT campaign_window_days_check
			CHECK (cardinality(window_days) BETWEEN 1 AND 7 AND window_days <@ '{1,2,3,4,5,6,7}'),
	-- How long a message may wait once its window has opened.
	ttl				interval NOT NULL DEFAULT '1 day'
		CONSTRAINT campaign_ttl_check CHECK (ttl BETWEEN '1 minute' AND '7 days'),
	-- The member who created it (the JWT "sub").
	created_by		text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	started_at		timestamptz,
	completed_at	timestamptz,
	canceled_at		timestamptz,
	-- The fan-out's figures: the audience's rows, and those left out.
	audience_count		integer,
	excluded_opted_out	integer,
	excluded_invalid	integer,
	excluded_duplicate	integer,
	CONSTRAINT campaign_window_check CHECK (window_from < window_until),
	PRIMARY KEY (account_id, campaign_id)
);
COMMENT ON TABLE eightms.campaign IS
	'Campaigns: a text to an audience of contacts within a send window in each recipient''s local time';
SELECT pg_catalog.pg_extension_config_dump('eightms.campaign', '');

-- One row per distinct number a campaign reaches (its key), from the
-- fan-out to the end of its message.  No foreign key to the campaign, for
-- the reason the gateway's message table has none: its check is a query
-- per row written, a large share of the fan-out, which inserts the rows
-- under the campaign's row lock anyway.  delete_campaign deletes a
-- campaign's recipients and eightms.purge_account an account's.
CREATE TABLE eightms.campaign_recipient (
	account_id		uuid NOT NULL,
	campaign_id		uuid NOT NULL,
	phone			text COLLATE "C" NOT NULL,
	contact_id		uuid,
	-- waiting (for its window, no message yet), queued (its message is in
	-- the gateway's queue or on a phone), then its message's end: sent,
	-- delivered, failed, expired; canceled when it was not sent (its
	-- number opted out, the campaign was canceled).
	state			text NOT NULL DEFAULT 'waiting'
		CONSTRAINT campaign_recipient_state_check
			CHECK (state IN ('waiting', 'queued', 'sent', 'delivered', 'failed', 'expired', 'canceled')),
	-- The zone its window is read in (doc/campaigns.md, "Send window").
	time_zone		text NOT NULL,
	segments		integer NOT NULL,
	-- When the window it waits for (or was queued in) opens.
	window_opens_at	timestamptz,
	message_id		uuid,
	-- When its message was sent: attribution counts from here.
	reached_at		timestamptz,
	replied_at		timestamptz,
	opted_out_at	timestamptz,
	-- The rendered text while it waits; NULL once queued (the message
	-- holds it from then on).
	body			text,
	PRIMARY KEY (account_id, campaign_id, phone)
);
-- The campaigns job's release: a running campaign's recipients whose
-- window has opened.
CREATE INDEX campaign_recipient_waiting_idx ON eightms.campaign_recipient (account_id, campaign_id, window_opens_at)
	WHERE state = 'waiting';
-- The job's completion check: a running campaign's recipients whose
-- message is still in the gateway's hands.
CREATE INDEX campaign_recipient_queued_idx ON eightms.campaign_recipient (account_id, campaign_id)
	WHERE state = 'queued';
-- Attribution: the campaign whose message reached a number last.
CREATE INDEX campaign_recipient_reached_idx ON eightms.campaign_recipient (account_id, phone, reached_at)
	WHERE reached_at IS NOT NULL;
COMMENT ON TABLE eightms.campaign_recipient IS
	'A campaign''s recipients: one per number, its state, window, message and what it answered';
SELECT pg_catalog.pg_extension_config_dump('eightms.campaign_recipient', '');

ALTER TABLE eightms.contact_segment ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.contact_segment FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.contact_segment
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.campaign ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.campaign FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.campaign
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.campaign_recipient ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.campaign_recipient FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.campaign_recipient
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- Members read; every write goes through the functions below.
GRANT SELECT ON eightms.contact_segment, eightms.campaign, eightms.campaign_recipient TO eightms_user;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('contact_segment', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_segment', 'segment_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_segment', 'name', 'operational', 'account', 'account_lifetime', 'the account''s name for the audience'),
	('contact_segment', 'audience', 'operational', 'account', 'account_lifetime', 'the filter (tags, fields, contact ids)'),
	('contact_segment', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('contact_segment', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign', 'campaign_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign', 'name', 'operational', 'account', 'account_lifetime', 'the account''s name for the campaign'),
	('campaign', 'template_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign', 'body', 'content', 'account', 'account_lifetime', 'the template text sent'),
	('campaign', 'audience', 'operational', 'account', 'account_lifetime', 'the filter (tags, fields, contact ids)'),
	('campaign', 'phone_ids', 'operational', 'account', 'account_lifetime', 'routing'),
	('campaign', 'state', 'operational', 'account', 'account_lifetime', 'state'),
	('campaign', 'start_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'window_from', 'operational', 'account', 'account_lifetime', 'send window'),
	('campaign', 'window_until', 'operational', 'account', 'account_lifetime', 'send window'),
	('campaign', 'window_days', 'operational', 'account', 'account_lifetime', 'send window'),
	('campaign', 'ttl', 'operational', 'account', 'account_lifetime', 'send window'),
	('campaign', 'created_by', 'personal', 'member', 'account_lifetime', 'the member who created it'),
	('campaign', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'started_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'completed_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'canceled_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('campaign', 'audience_count', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign', 'excluded_opted_out', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign', 'excluded_invalid', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign', 'excluded_duplicate', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_recipient', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_recipient', 'campaign_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('campaign_recipient', 'phone', 'personal', 'contact', 'account_lifetime', 'the number the campaign texts'),
	('campaign_recipient', 'contact_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('campaign_recipient', 'state', 'operational', 'contact', 'account_lifetime', 'state'),
	('campaign_recipient', 'time_zone', 'personal', 'contact', 'account_lifetime', 'the zone its send window is read in'),
	('campaign_recipient', 'segments', 'operational', 'contact', 'account_lifetime', 'billing'),
	('campaign_recipient', 'window_opens_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('campaign_recipient', 'message_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('campaign_recipient', 'reached_at', 'operational', 'contact', 'account_lifetime', 'attribution'),
	('campaign_recipient', 'replied_at', 'operational', 'contact', 'account_lifetime', 'attribution'),
	('campaign_recipient', 'opted_out_at', 'operational', 'contact', 'account_lifetime', 'attribution'),
	('campaign_recipient', 'body', 'content', 'contact', 'account_lifetime', 'the text while it waits for its window; cleared when queued');

-- ------------------------------------------------------------ send windows

-- BEGIN generated by tools/region_zones.py from tzdata's zone.tab; do not edit
-- The zone of each region (ISO 3166-1 alpha-2) that has exactly one.
CREATE FUNCTION eightms.region_zone()
RETURNS TABLE (region text, zone text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT v.region, v.zone FROM (VALUES
		('AD', 'Europe/Andorra'),
		('AE', 'Asia/Dubai'),
		('AF', 'Asia/Kabul'),
		('AG', 'America/Antigua'),
		('AI', 'America/Anguilla'),
		('AL', 'Europe/Tirane'),
		('AM', 'Asia/Yerevan'),
		('AO', 'Africa/Luanda'),
		('AS', 'Pacific/Pago_Pago'),
		('AT', 'Europe/Vienna'),
		('AW', 'America/Aruba'),
		('AX', 'Europe/Mariehamn'),
		('AZ', 'Asia/Baku'),
		('BA', 'Europe/Sarajevo'),
		('BB', 'America/Barbados'),
		('BD', 'Asia/Dhaka'),
		('BE', 'Europe/Brussels'),
		('BF', 'Africa/Ouagadougou'),
		('BG', 'Europe/Sofia'),
		('BH', 'Asia/Bahrain'),
		('BI', 'Africa/Bujumbura'),
		('BJ', 'Africa/Porto-Novo'),
		('BL', 'America/St_Barthelemy'),
		('BM', 'Atlantic/Bermuda'),
		('BN', 'Asia/Brunei'),
		('BO', 'America/La_Paz'),
		('BQ', 'America/Kralendijk'),
		('BS', 'America/Nassau'),
		('BT', 'Asia/Thimphu'),
		('BW', 'Africa/Gaborone'),
		('BY', 'Europe/Minsk'),
		('BZ', 'America/Belize'),
		('CC', 'Indian/Cocos'),
		('CF', 'Africa/Bangui'),
		('CG', 'Africa/Brazzaville'),
		('CH', 'Europe/Zurich'),
		('CI', 'Africa/Abidjan'),
		('CK', 'Pacific/Rarotonga'),
		('CM', 'Africa/Douala'),
		('CO', 'America/Bogota'),
		('CR', 'America/Costa_Rica'),
		('CU', 'America/Havana'),
		('CV', 'Atlantic/Cape_Verde'),
		('CW', 'America/Curacao'),
		('CX', 'Indian/Christmas'),
		('CZ', 'Europe/Prague'),
		('DJ', 'Africa/Djibouti'),
		('DK', 'Europe/Copenhagen'),
		('DM', 'America/Dominica'),
		('DO', 'America/Santo_Domingo'),
		('DZ', 'Africa/Algiers'),
		('EE', 'Europe/Tallinn'),
		('EG', 'Africa/Cairo'),
		('EH', 'Africa/El_Aaiun'),
		('ER', 'Africa/Asmara'),
		('ET', 'Africa/Addis_Ababa'),
		('FI', 'Europe/Helsinki'),
		('FJ', 'Pacific/Fiji'),
		('FK', 'Atlantic/Stanley'),
		('FO', 'Atlantic/Faroe'),
		('FR', 'Europe/Paris'),
		('GA', 'Africa/Libreville'),
		('GB', 'Europe/London'),
		('GD', 'America/Grenada'),
		('GE', 'Asia/Tbilisi'),
		('GF', 'America/Cayenne'),
		('GG', 'Europe/Guernsey'),
		('GH', 'Africa/Accra'),
		('GI', 'Europe/Gibraltar'),
		('GM', 'Africa/Banjul'),
		('GN', 'Africa/Conakry'),
		('GP', 'America/Guadeloupe'),
		('GQ', 'Africa/Malabo'),
		('GR', 'Europe/Athens'),
		('GS', 'Atlantic/South_Georgia'),
		('GT', 'America/Guatemala'),
		('GU', 'Pacific/Guam'),
		('GW', 'Africa/Bissau'),
		('GY', 'America/Guyana'),
		('HK', 'Asia/Hong_Kong'),
		('HN', 'America/Tegucigalpa'),
		('HR', 'Europe/Zagreb'),
		('HT', 'America/Port-au-Prince'),
		('HU', 'Europe/Budapest'),
		('IE', 'Europe/Dublin'),
		('IL', 'Asia/Jerusalem'),
		('IM', 'Europe/Isle_of_Man'),
		('IN', 'Asia/Kolkata'),
		('IO', 'Indian/Chagos'),
		('IQ', 'Asia/Baghdad'),
		('IR', 'Asia/Tehran'),
		('IS', 'Atlantic/Reykjavik'),
		('IT', 'Europe/Rome'),
		('JE', 'Europe/Jersey'),
		('JM', 'America/Jamaica'),
		('JO', 'Asia/Amman'),
		('JP', 'Asia/Tokyo'),
		('KE', 'Africa/Nairobi'),
		('KG', 'Asia/Bishkek'),
		('KH', 'Asia/Phnom_Penh'),
		('KM', 'Indian/Comoro'),
		('KN', 'America/St_Kitts'),
		('KP', 'Asia/Pyongyang'),
		('KR', 'Asia/Seoul'),
		('KW', 'Asia/Kuwait'),
		('KY', 'America/Cayman'),
		('LA', 'Asia/Vientiane'),
		('LB', 'Asia/Beirut'),
		('LC', 'America/St_Lucia'),
		('LI', 'Europe/Vaduz'),
		('LK', 'Asia/Colombo'),
		('LR', 'Africa/Monrovia'),
		('LS', 'Africa/Maseru'),
		('LT', 'Europe/Vilnius'),
		('LU', 'Europe/Luxembourg'),
		('LV', 'Europe/Riga'),
		('LY', 'Africa/Tripoli'),
		('MA', 'Africa/Casablanca'),
		('MC', 'Europe/Monaco'),
		('MD', 'Europe/Chisinau'),
		('ME', 'Europe/Podgorica'),
		('MF', 'America/Marigot'),
		('MG', 'Indian/Antananarivo'),
		('MK', 'Europe/Skopje'),
		('ML', 'Africa/Bamako'),
		('MM', 'Asia/Yangon'),
		('MO', 'Asia/Macau'),
		('MP', 'Pacific/Saipan'),
		('MQ', 'America/Martinique'),
		('MR', 'Africa/Nouakchott'),
		('MS', 'America/Montserrat'),
		('MT', 'Europe/Malta'),
		('MU', 'Indian/Mauritius'),
		('MV', 'Indian/Maldives'),
		('MW', 'Africa/Blantyre'),
		('MZ', 'Africa/Maputo'),
		('NA', 'Africa/Windhoek'),
		('NC', 'Pacific/Noumea'),
		('NE', 'Africa/Niamey'),
		('NF', 'Pacific/Norfolk'),
		('NG', 'Africa/Lagos'),
		('NI', 'America/Managua'),
		('NL', 'Europe/Amsterdam'),
		('NO', 'Europe/Oslo'),
		('NP', 'Asia/Kathmandu'),
		('NR', 'Pacific/Nauru'),
		('NU', 'Pacific/Niue'),
		('OM', 'Asia/Muscat'),
		('PA', 'America/Panama'),
		('PE', 'America/Lima'),
		('PH', 'Asia/Manila'),
		('PK', 'Asia/Karachi'),
		('PL', 'Europe/Warsaw'),
		('PM', 'America/Miquelon'),
		('PN', 'Pacific/Pitcairn'),
		('PR', 'America/Puerto_Rico'),
		('PW', 'Pacific/Palau'),
		('PY', 'America/Asuncion'),
		('QA', 'Asia/Qatar'),
		('RE', 'Indian/Reunion'),
		('RO', 'Europe/Bucharest'),
		('RS', 'Europe/Belgrade'),
		('RW', 'Africa/Kigali'),
		('SA', 'Asia/Riyadh'),
		('SB', 'Pacific/Guadalcanal'),
		('SC', 'Indian/Mahe'),
		('SD', 'Africa/Khartoum'),
		('SE', 'Europe/Stockholm'),
		('SG', 'Asia/Singapore'),
		('SH', 'Atlantic/St_Helena'),
		('SI', 'Europe/Ljubljana'),
		('SJ', 'Arctic/Longyearbyen'),
		('SK', 'Europe/Bratislava'),
		('SL', 'Africa/Freetown'),
		('SM', 'Europe/San_Marino'),
		('SN', 'Africa/Dakar'),
		('SO', 'Africa/Mogadishu'),
		('SR', 'America/Paramaribo'),
		('SS', 'Africa/Juba'),
		('ST', 'Africa/Sao_Tome'),
		('SV', 'America/El_Salvador'),
		('SX', 'America/Lower_Princes'),
		('SY', 'Asia/Damascus'),
		('SZ', 'Africa/Mbabane'),
		('TC', 'America/Grand_Turk'),
		('TD', 'Africa/Ndjamena'),
		('TF', 'Indian/Kerguelen'),
		('TG', 'Africa/Lome'),
		('TH', 'Asia/Bangkok'),
		('TJ', 'Asia/Dushanbe'),
		('TK', 'Pacific/Fakaofo'),
		('TL', 'Asia/Dili'),
		('TM', 'Asia/Ashgabat'),
		('TN', 'Africa/Tunis'),
		('TO', 'Pacific/Tongatapu'),
		('TR', 'Europe/Istanbul'),
		('TT', 'America/Port_of_Spain'),
		('TV', 'Pacific/Funafuti'),
		('TW', 'Asia/Taipei'),
		('TZ', 'Africa/Dar_es_Salaam'),
		('UG', 'Africa/Kampala'),
		('UY', 'America/Montevideo'),
		('VA', 'Europe/Vatican'),
		('VC', 'America/St_Vincent'),
		('VE', 'America/Caracas'),
		('VG', 'America/Tortola'),
		('VI', 'America/St_Thomas'),
		('VN', 'Asia/Ho_Chi_Minh'),
		('VU', 'Pacific/Efate'),
		('WF', 'Pacific/Wallis'),
		('WS', 'Pacific/Apia'),
		('YE', 'Asia/Aden'),
		('YT', 'Indian/Mayotte'),
		('ZA', 'Africa/Johannesburg'),
		('ZM', 'Africa/Lusaka'),
		('ZW', 'Africa/Harare')
	) AS v(region, zone)
$$;
-- END generated by tools/region_zones.py

-- The send window around an instant, in a zone: the window open at "at"
-- (opens_at is then "at" itself), else the next one to open; each day's
-- window runs from wfrom (inclusive) to wuntil (exclusive) in local time,
-- on the ISO days listed.  A local time is read as PostgreSQL reads one
-- (timestamp AT TIME ZONE): on a spring-forward day a time in the gap
-- (02:30 where clocks go from 02:00 to 03:00) is read with the offset
-- before the change, so a window edge there moves later by the gap
-- (03:30); on a fall-back day a time that happens twice is its second
-- occurrence.  Windows within the day (09:00 to 20:00) are unaffected.
CREATE FUNCTION eightms.send_window(at timestamptz, zone text, wfrom time, wuntil time, days smallint[],
									OUT opens_at timestamptz, OUT closes_at timestamptz, OUT starts_at timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d date := (at AT TIME ZONE zone)::date;
	o timestamptz;
	c timestamptz;
BEGIN
	IF at IS NULL OR zone IS NULL OR wfrom IS NULL OR wuntil IS NULL OR wfrom >= wuntil
	   OR cardinality(days) IS NULL OR NOT days <@ '{1,2,3,4,5,6,7}'::smallint[] THEN
		RETURN;
	END IF;
	-- Each day's window lies within its day: the first day listed on or
	-- after the local date whose window has not closed is the one; a week
	-- and a day cover every choice of days.
	FOR i IN 0 .. 7 LOOP
		IF extract(isodow FROM d + i)::smallint = ANY (days) THEN
			o := ((d + i) + wfrom) AT TIME ZONE zone;
			c := ((d + i) + wuntil) AT TIME ZONE zone;
			IF at < c AND o < c THEN
				opens_at := greatest(at, o);
				closes_at := c;
				starts_at := o;
				RETURN;
			END IF;
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION eightms.window_opening(at timestamptz, zone text, wfrom time, wuntil time, days smallint[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT (eightms.send_window(at, zone, wfrom, wuntil, days)).opens_at
$$;
COMMENT ON FUNCTION eightms.window_opening(timestamptz, text, time, time, smallint[]) IS
	'The earliest instant at or after at inside the send window (from, until on the ISO days listed, local time in zone): at itself when inside';

CREATE FUNCTION eightms.window_closing(at timestamptz, zone text, wfrom time, wuntil time, days smallint[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT (eightms.send_window(at, zone, wfrom, wuntil, days)).closes_at
$$;
COMMENT ON FUNCTION eightms.window_closing(timestamptz, text, time, time, smallint[]) IS
	'When the send window open at at (else the next one to open) closes';

-- ------------------------------------------------------------ texts

-- ------------------------------------------------------------ audiences

-- The SQL condition (on the contacts, alias c) an audience selects, its
-- values quoted: an object of
--   all          true: every contact;
--   tags_any / tags_all  contacts with any / all of these tags;
--   where_custom         comparisons of custom fields, as contacts() takes
--                        them (eightms.contact_custom_filter);
--   contact_ids          these contacts (at most 100,000 ids);
--   segment_id           a saved audience (alone; a saved one names none).
-- Every key given must hold (they are ANDed); at least one is required.
CREATE FUNCTION eightms.audience_condition(acct uuid, audience jsonb, nested boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	conds text[] := '{}';
	seg jsonb;
	f jsonb;
BEGIN
	IF jsonb_typeof(audience) IS DISTINCT FROM 'object' OR audience = '{}' THEN
		RAISE EXCEPTION 'an audience is a JSON object with at least one of all, tags_any, tags_all, where_custom, contact_ids, segment_id'
			USING ERRCODE = '22023', HINT = 'e.g. {"tags_any": ["vip"]}, {"contact_ids": [...]}, {"segment_id": "..."} or {"all": true}.';
	END IF;
	IF audience ? 'segment_id' THEN
		IF nested OR (SELECT count(*) FROM jsonb_object_keys(audience)) > 1 THEN
			RAISE EXCEPTION 'segment_id stands alone in an audience, and a saved audience names no segment'
				USING ERRCODE = '22023';
		END IF;
		SELECT s.audience INTO seg FROM eightms.contact_segment s
		 WHERE s.account_id = acct AND s.segment_id = eightms.try_uuid(audience_condition.audience ->> 'segment_id');
		IF seg IS NULL THEN
			RAISE EXCEPTION 'no segment %', left(audience_condition.audience ->> 'segment_id', 40) USING ERRCODE = 'P0002',
				HINT = 'segments() lists the account''s saved audiences.';
		END IF;
		RETURN eightms.audience_condition(acct, seg, true);
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(audience) LOOP
		IF k = 'all' THEN
			IF v IS DISTINCT FROM 'true'::jsonb THEN
				RAISE EXCEPTION 'all takes true' USING ERRCODE = '22023';
			END IF;
		ELSIF k IN ('tags_any', 'tags_all') THEN
			IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) NOT BETWEEN 1 AND 100
			   OR EXISTS (SELECT FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string') THEN
				RAISE EXCEPTION '% is an array of 1 to 100 tags', k USING ERRCODE = '22023';
			END IF;
			conds := conds || format('c.tags %s %L::text[]', CASE k WHEN 'tags_any' THEN '&&' ELSE '@>' END,
									 ARRAY(SELECT btrim(e) FROM jsonb_array_elements_text(v) e));
		ELSIF k = 'where_custom' THEN
			IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) > 20 THEN
				RAISE EXCEPTION 'where_custom is an array of at most 20 filters' USING ERRCODE = '22023',
					HINT = 'Each filter is {"field": name, "op": eq|ne|lt|lte|gt|gte|exists|missing, "value": ...}.';
			END IF;
			FOR f IN SELECT * FROM jsonb_array_elements(v) LOOP
				conds := conds || eightms.contact_custom_filter(acct, f);
			END LOOP;
		ELSIF k = 'contact_ids' THEN
			IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) NOT BETWEEN 1 AND 100000
			   OR EXISTS (SELECT FROM jsonb_array_elements(v) e
						   WHERE jsonb_typeof(e) <> 'string' OR eightms.try_uuid(e #>> '{}') IS NULL) THEN
				RAISE EXCEPTION 'contact_ids is an array of 1 to 100000 contact ids' USING ERRCODE = '22023';
			END IF;
			conds := conds || format('c.contact_id = ANY (%L::uuid[])',
									 ARRAY(SELECT DISTINCT (e #>> '{}')::uuid FROM jsonb_array_elements(v) e));
		ELSE
			RAISE EXCEPTION 'an audience has no key "%"', left(k, 40) USING ERRCODE = '22023',
				HINT = 'Keys: all, tags_any, tags_all, where_custom, contact_ids, segment_id.';
		END IF;
	END LOOP;
	RETURN coalesce('(' || nullif(array_to_string(conds, ') AND ('), '') || ')', 'true');
END
$$;

-- The contact ids an audience lists (through its segment too), as given:
-- repeated ones and ones that are no contact of the account count as
-- excluded (duplicate, invalid).
CREATE FUNCTION eightms.audience_ids(acct uuid, audience jsonb) RETURNS uuid[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	seg jsonb;
BEGIN
	-- PL/pgSQL, in two statements: Citus plans no SQL function with
	-- parameters that reads a distributed table.
	SELECT s.audience INTO seg FROM eightms.contact_segment s
	 WHERE s.account_id = acct AND s.segment_id = eightms.try_uuid(audience_ids.audience ->> 'segment_id');
	RETURN ARRAY(SELECT eightms.try_uuid(e #>> '{}')
				   FROM jsonb_array_elements(coalesce(seg, audience_ids.audience) -> 'contact_ids') e);
END
$$;

-- The contacts of a campaign's audience, one row per contact it selects,
-- as SQL with parameters $1 the account, $3 the account's region, $5 its
-- time zone: each with its number, names, company and custom fields,
-- its number's region (NULL: the phone engine places it in none), the
-- zone its window is read in (the number's region's when the region has
-- one zone, else the contact's, else the account's), and whether its
-- number is opted out.  Nothing rendered: the fan-out's counts and zones
-- read it alone.
CREATE FUNCTION eightms.audience_contacts(acct uuid, audience jsonb) RETURNS text
LANGUAGE sql STABLE
AS $$
	SELECT format(
		'SELECT c.account_id, c.contact_id, c.phone, c.first_name, c.last_name, c.company, c.custom, g.region,
				coalesce(z.zone, c.time_zone, $5) AS tz, o.number IS NOT NULL AS opted
		   FROM eightms.contact c
		   LEFT JOIN eightms.opt_out o ON o.account_id = $1 AND o.number = c.phone
		  CROSS JOIN LATERAL (SELECT eightms.phone_region(c.phone, $3) AS region) g
		   LEFT JOIN eightms.region_zone() z ON z.region = g.region
		  WHERE c.account_id = $1 AND %s', eightms.audience_condition(acct, audience))
$$;

-- The rows of a campaign's audience (eightms.audience_contacts) with, as
-- further parameters, $2 the campaign's text and $4 whether the account
-- folds look-alikes: each contact's text rendered (folded when the
-- account folds) and its segments, and whether it is invalid (a number
-- the phone engine places in no region, a rendered text that is empty or
-- longer than 1,600 characters).  The estimate's query and the fan-out's.
CREATE FUNCTION eightms.audience_rows(acct uuid, audience jsonb) RETURNS text
LANGUAGE sql STABLE
AS $$
	SELECT format(
		'SELECT a.account_id, a.contact_id, a.phone, a.tz, t.body, (eightms.sms_info(t.body)).segments, a.opted,
				a.region IS NULL OR eightms.body_error(t.body, false) IS NOT NULL AS invalid
		   FROM (%s) a
		  CROSS JOIN LATERAL (SELECT CASE WHEN $4 THEN eightms.sms_fold(r.body) ELSE r.body END AS body
								FROM (SELECT eightms.render_template($2, a.first_name, a.last_name, a.company,
																	 a.custom) AS body) r) t',
		eightms.audience_contacts(acct, audience))
$$;

-- ------------------------------------------------------------ segments API

-- Save an audience under a name (owner, admin or agent): a new one, or the
-- one of that name changed.  Its id.
CREATE FUNCTION eightms_api.save_segment(name text, audience jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	id uuid;
	at timestamptz := now();
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF name IS NULL OR length(btrim(name)) NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'a segment''s name is 1 to 100 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM eightms.audience_condition(acct, audience, true);
	INSERT INTO eightms.contact_segment AS s (account_id, name, audience, created_at, updated_at)
	VALUES (acct, btrim(save_segment.name), save_segment.audience, at, at)
	ON CONFLICT ON CONSTRAINT contact_segment_name_key DO UPDATE
		SET audience = EXCLUDED.audience, updated_at = EXCLUDED.updated_at
	RETURNING s.segment_id INTO id;
	RETURN id;
END
$$;

CREATE FUNCTION eightms_api.segments()
RETURNS TABLE (segment_id uuid, name text, audience jsonb, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	RETURN QUERY SELECT s.segment_id, s.name, s.audience, s.created_at, s.updated_at
				   FROM eightms.contact_segment s WHERE s.account_id = acct ORDER BY s.name;
END
$$;

-- Delete a saved audience (owner, admin or agent); refused while a draft
-- or scheduled campaign names it (it is read when the campaign starts).
CREATE FUNCTION eightms_api.delete_segment(segment_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	n bigint;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	PERFORM FROM eightms.contact_segment s
	 WHERE s.account_id = acct AND s.segment_id = delete_segment.segment_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no segment %', delete_segment.segment_id USING ERRCODE = 'P0002';
	END IF;
	SELECT count(*) INTO n FROM eightms.campaign c
	 WHERE c.account_id = acct AND c.state IN ('draft', 'scheduled')
	   AND c.audience ->> 'segment_id' = delete_segment.segment_id::text;
	IF n > 0 THEN
		RAISE EXCEPTION 'the segment is the audience of % campaigns not started yet', n USING ERRCODE = '2BP01',
			HINT = 'Change their audience (update_campaign) or cancel them first.';
	END IF;
	DELETE FROM eightms.contact_segment s WHERE s.account_id = acct AND s.segment_id = delete_segment.segment_id;
END
$$;

-- ------------------------------------------------------------ campaigns API

-- A campaign's row after the changes given (keys of create_campaign),
-- every value checked; a template is read by name and its text copied.
CREATE FUNCTION eightms.campaign_apply(acct uuid, c eightms.campaign, changes jsonb) RETURNS eightms.campaign
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
BEGIN
	IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'changes is a JSON object' USING ERRCODE = '22023',
			HINT = 'Keys: name, template, body, audience, phone_ids, start_at, window_from, window_until, window_days, ttl.';
	END IF;
	FOR k IN SELECT jsonb_object_keys(changes) LOOP
		IF k NOT IN ('name', 'template', 'body', 'audience', 'phone_ids', 'start_at', 'window_from', 'window_until',
					 'window_days', 'ttl') THEN
			RAISE EXCEPTION 'a campaign has no key "%"', left(k, 40) USING ERRCODE = '22023',
				HINT = 'Keys: name, template, body, audience, phone_ids, start_at, window_from, window_until, window_days, ttl.';
		END IF;
	END LOOP;
	IF changes ? 'template' AND changes ? 'body' AND jsonb_typeof(changes -> 'template') <> 'null'
	   AND jsonb_typeof(changes -> 'body') <> 'null' THEN
		RAISE EXCEPTION 'give a template or a body, not both' USING ERRCODE = '22023';
	END IF;
	BEGIN
		IF changes ? 'name' THEN
			c.name := btrim(changes ->> 'name');
			IF c.name IS NULL OR length(c.name) NOT BETWEEN 1 AND 200 THEN
				RAISE EXCEPTION 'a campaign''s name is 1 to 200 characters' USING ERRCODE = '22023';
			END IF;
		END IF;
		IF changes ? 'template' AND jsonb_typeof(changes -> 'template') <> 'null' THEN
			SELECT t.template_id, t.body INTO c.template_id, c.body
			  FROM eightms.message_template t
			 WHERE t.account_id = acct AND t.name = changes ->> 'template';
			IF c.template_id IS NULL THEN
				RAISE EXCEPTION 'no template of that name' USING ERRCODE = 'P0002',
					HINT = 'templates() lists the account''s templates.';
			END IF;
		ELSIF changes ? 'body' THEN
			c.template_id := NULL;
			c.body := changes ->> 'body';
		END IF;
		IF changes ? 'audience' THEN
			c.audience := changes -> 'audience';
		END IF;
		IF changes ? 'phone_ids' THEN
			c.phone_ids := CASE WHEN jsonb_typeof(changes -> 'phone_ids') = 'null' THEN NULL
								ELSE ARRAY(SELECT DISTINCT e::uuid FROM jsonb_array_elements_text(changes -> 'phone_ids') e) END;
		END IF;
		IF changes ? 'start_at' THEN
			c.start_at := (changes ->> 'start_at')::timestamptz;
		END IF;
		IF changes ? 'window_from' THEN
			c.window_from := coalesce((changes ->> 'window_from')::time, '09:00');
		END IF;
		IF changes ? 'window_until' THEN
			c.window_until := coalesce((changes ->> 'window_until')::time, '20:00');
		END IF;
		IF changes ? 'window_days' THEN
			c.window_days := coalesce(ARRAY(SELECT DISTINCT e::smallint FROM jsonb_array_elements_text(changes -> 'window_days') e
											 ORDER BY 1), '{1,2,3,4,5,6,7}');
		END IF;
		IF changes ? 'ttl' THEN
			c.ttl := coalesce((changes ->> 'ttl')::interval, '1 day');
		END IF;
	EXCEPTION WHEN invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow
			  OR numeric_value_out_of_range OR invalid_parameter_value OR interval_field_overflow
			  OR wrong_object_type OR cannot_coerce THEN
		RAISE EXCEPTION 'a campaign value has the wrong form' USING ERRCODE = '22023',
			HINT = 'phone_ids: an array of phone ids; start_at: a time with its offset; window_from/until: HH:MM; window_days: ISO days 1 (Monday) to 7; ttl: an interval.';
	END;
	IF c.body IS NULL THEN
		RAISE EXCEPTION 'a campaign needs a body or a template' USING ERRCODE = '22023',
			HINT = 'Pass the text as body, or the name of one of the account''s templates as template.';
	END IF;
	-- The rules of a saved template: 1 to 1,600 characters, every
	-- placeholder one a contact has.
	PERFORM eightms.template_check(acct, c.body);
	PERFORM eightms.audience_condition(acct, c.audience);
	IF c.phone_ids IS NOT NULL AND (cardinality(c.phone_ids) NOT BETWEEN 1 AND 100 OR EXISTS (
		SELECT FROM unnest(c.phone_ids) u(id)
		 WHERE NOT EXISTS (SELECT FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = u.id AND p.unpaired_at IS NULL))) THEN
		RAISE EXCEPTION 'phone_ids names a phone that is not a paired phone of the account' USING ERRCODE = '22023',
			HINT = 'phones() lists the paired phones; pass null to route as usual.';
	END IF;
	IF c.start_at IS NOT NULL AND NOT isfinite(c.start_at) THEN
		RAISE EXCEPTION 'start_at must be a date and time' USING ERRCODE = '22023';
	END IF;
	IF c.window_from >= c.window_until THEN
		RAISE EXCEPTION 'window_from must come before window_until' USING ERRCODE = '22023',
			HINT = 'A window lies within a day, in the recipient''s local time (e.g. 09:00 to 20:00).';
	END IF;
	IF cardinality(c.window_days) NOT BETWEEN 1 AND 7 OR NOT c.window_days <@ '{1,2,3,4,5,6,7}'::smallint[] THEN
		RAISE EXCEPTION 'window_days are ISO days of the week, 1 (Monday) to 7 (Sunday)' USING ERRCODE = '22023';
	END IF;
	IF c.ttl NOT BETWEEN '1 minute' AND '7 days' THEN
		RAISE EXCEPTION 'ttl must be 1 minute to 7 days' USING ERRCODE = '22023',
			HINT = 'A message waits at most this long once its window has opened.';
	END IF;
	RETURN c;
END
$$;

-- A new campaign (owner, admin or agent), a draft: its text from a
-- template (by name) or a body, its audience, the phones that may send it
-- (NULL: routing as usual), when it may start and its send window.
CREATE FUNCTION eightms_api.create_campaign(name text, audience jsonb, template text DEFAULT NULL,
											body text DEFAULT NULL, phone_ids uuid[] DEFAULT NULL,
											start_at timestamptz DEFAULT NULL, window_from time DEFAULT '09:00',
											window_until time DEFAULT '20:00',
											window_days smallint[] DEFAULT '{1,2,3,4,5,6,7}',
											ttl interval DEFAULT '1 day')
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.campaign;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF (template IS NULL) = (body IS NULL) THEN
		RAISE EXCEPTION 'a campaign takes a template or a body' USING ERRCODE = '22023',
			HINT = 'Pass template => the name of a saved template, or body => the text.';
	END IF;
	c := eightms.campaign_apply(acct, NULL, jsonb_build_object(
		'name', name, 'template', template, 'body', body, 'audience', audience, 'phone_ids', to_jsonb(phone_ids),
		'start_at', start_at, 'window_from', window_from, 'window_until', window_until,
		'window_days', to_jsonb(window_days), 'ttl', ttl));
	INSERT INTO eightms.campaign (account_id, name, template_id, body, audience, phone_ids, start_at, window_from,
								  window_until, window_days, ttl, created_by)
	VALUES (acct, c.name, c.template_id, c.body, c.audience, c.phone_ids, c.start_at, c.window_from, c.window_until,
			c.window_days, c.ttl, coalesce(eightms.current_user_id(), 'unknown'))
	RETURNING campaign_id INTO c.campaign_id;
	RETURN c.campaign_id;
END
$$;

-- The campaign to move, locked, when its state allows the move; E8C02,
-- naming its state, when not.
CREATE FUNCTION eightms.campaign_for_move(acct uuid, id uuid, move text, allowed text[]) RETURNS eightms.campaign
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c eightms.campaign;
BEGIN
	SELECT * INTO c FROM eightms.campaign x WHERE x.account_id = acct AND x.campaign_id = id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no campaign %', id USING ERRCODE = 'P0002';
	END IF;
	IF c.state <> ALL (allowed) THEN
		RAISE EXCEPTION 'the campaign is %: it cannot be %', c.state, move USING ERRCODE = 'E8C02',
			HINT = format('Only a campaign that is %s can be %s.', array_to_string(allowed, ' or '), move);
	END IF;
	RETURN c;
END
$$;

-- Change a draft (owner, admin or agent): the keys given, as
-- create_campaign takes them (a template by name or a body).
CREATE FUNCTION eightms_api.update_campaign(campaign_id uuid, changes jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.campaign;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	c := eightms.campaign_for_move(acct, update_campaign.campaign_id, 'changed', ARRAY['draft']);
	c := eightms.campaign_apply(acct, c, changes);
	UPDATE eightms.campaign x
	   SET name = c.name, template_id = c.template_id, body = c.body, audience = c.audience, phone_ids = c.phone_ids,
		   start_at = c.start_at, window_from = c.window_from, window_until = c.window_until,
		   window_days = c.window_days, ttl = c.ttl, updated_at = now()
	 WHERE x.account_id = acct AND x.campaign_id = c.campaign_id;
END
$$;

CREATE FUNCTION eightms_api.campaign(campaign_id uuid) RETURNS SETOF eightms.campaign
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	RETURN QUERY SELECT * FROM eightms.campaign c WHERE c.account_id = acct AND c.campaign_id = campaign.campaign_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no campaign %', campaign.campaign_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- The account's campaigns, newest first, a page at a time (any member),
-- of one state or all; keyset: the campaign id of the last row.
CREATE FUNCTION eightms_api.campaigns(state text DEFAULT NULL, after uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF eightms.campaign
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	page_size := coalesce(page_size, 50);
	IF page_size NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'page_size must be 1 to 200' USING ERRCODE = '22023',
			HINT = 'Page on with after => the campaign_id of the last row.';
	END IF;
	RETURN QUERY SELECT * FROM eightms.campaign c
				  WHERE c.account_id = acct AND (campaigns.state IS NULL OR c.state = campaigns.state)
					AND (after IS NULL OR c.campaign_id < after)
				  ORDER BY c.campaign_id DESC
				  LIMIT page_size;
END
$$;

-- What a campaign's fan-out would do now (any member): the recipients, the
-- audience's entries left out (opted out, invalid, repeated), and the
-- segments of every recipient's text, rendered and encoded as it would be
-- sent (with the account's folding).  Figures as the fan-out records them
-- (doc/campaigns.md, "Estimate").
CREATE FUNCTION eightms_api.estimate_campaign(campaign_id uuid)
RETURNS TABLE (recipients bigint, excluded_opted_out bigint, excluded_invalid bigint, excluded_duplicate bigint,
			   total_segments bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	c eightms.campaign;
	a eightms.account;
	ids uuid[];
	missing bigint;
BEGIN
	SELECT * INTO c FROM eightms.campaign x WHERE x.account_id = acct AND x.campaign_id = estimate_campaign.campaign_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no campaign %', estimate_campaign.campaign_id USING ERRCODE = 'P0002';
	END IF;
	SELECT * INTO a FROM eightms.account x WHERE x.account_id = acct;
	EXECUTE format('SELECT count(*) FILTER (WHERE NOT r.opted AND NOT r.invalid), count(*) FILTER (WHERE r.opted),
						   count(*) FILTER (WHERE r.invalid AND NOT r.opted),
						   coalesce(sum(r.segments) FILTER (WHERE NOT r.opted AND NOT r.invalid), 0)
					  FROM (%s) r', eightms.audience_rows(acct, c.audience))
		INTO recipients, excluded_opted_out, excluded_invalid, total_segments
		USING acct, c.body, a.default_region, a.fold_lookalikes, a.timezone;
	ids := eightms.audience_ids(acct, c.audience);
	SELECT cardinality(ids) - count(DISTINCT u.id), count(DISTINCT u.id) - count(DISTINCT x.contact_id)
	  INTO excluded_duplicate, missing
	  FROM unnest(ids) u(id)
	  LEFT JOIN eightms.contact x ON x.account_id = acct AND x.contact_id = u.id;
	excluded_invalid := excluded_invalid + coalesce(missing, 0);
	excluded_duplicate := coalesce(excluded_duplicate, 0);
	RETURN NEXT;
END
$$;

-- A move that changes only the campaign's state (owner, admin or agent):
-- from one of the states allowed to the next.
CREATE FUNCTION eightms.move_campaign(id uuid, move text, allowed text[], next_state text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.campaign;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	c := eightms.campaign_for_move(acct, id, move, allowed);
	IF next_state = 'scheduled' THEN
		-- The audience again: a segment deleted, a field dropped since.
		PERFORM eightms.audience_condition(acct, c.audience);
	END IF;
	UPDATE eightms.campaign x SET state = next_state, updated_at = now()
	 WHERE x.account_id = acct AND x.campaign_id = c.campaign_id;
	RETURN next_state;
END
$$;

-- Schedule a draft: the campaigns job starts it at its start_at (at its
-- next run when none, or when that has passed).
CREATE FUNCTION eightms_api.schedule_campaign(campaign_id uuid) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT eightms.move_campaign(campaign_id, 'scheduled', ARRAY['draft'], 'scheduled')
$$;

-- Pause a running campaign (nothing more is released; what is queued
-- already goes out), and resume it.
CREATE FUNCTION eightms_api.pause_campaign(campaign_id uuid) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT eightms.move_campaign(campaign_id, 'paused', ARRAY['running'], 'paused')
$$;

CREATE FUNCTION eightms_api.resume_campaign(campaign_id uuid) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT eightms.move_campaign(campaign_id, 'resumed', ARRAY['paused'], 'running')
$$;

-- Cancel a campaign not finished (owner, admin or agent): its waiting
-- recipients are canceled, and those whose message is still queued with
-- it (eightms.cancel_queued); a message a phone has claimed is left to its
-- report.
CREATE FUNCTION eightms_api.cancel_campaign(campaign_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.campaign;
	at timestamptz := now();
	queued uuid[];
	gone uuid[];
	moved bigint;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	c := eightms.campaign_for_move(acct, cancel_campaign.campaign_id, 'canceled',
								   ARRAY['draft', 'scheduled', 'running', 'paused']);
	UPDATE eightms.campaign_recipient r SET state = 'canceled', body = NULL
	 WHERE r.account_id = acct AND r.campaign_id = c.campaign_id AND r.state = 'waiting';
	GET DIAGNOSTICS moved = ROW_COUNT;
	PERFORM eightms.count_campaign_moves(acct, c.campaign_id, 'waiting', 'canceled', moved);
	SELECT array_agg(r.message_id) INTO queued FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = c.campaign_id AND r.state = 'queued';
	IF queued IS NOT NULL THEN
		gone := ARRAY(SELECT eightms.cancel_queued(acct, queued, at, 'campaign canceled'));
		UPDATE eightms.campaign_recipient r SET state = 'canceled'
		 WHERE r.account_id = acct AND r.campaign_id = c.campaign_id AND r.state = 'queued'
		   AND r.message_id = ANY (gone);
		GET DIAGNOSTICS moved = ROW_COUNT;
		PERFORM eightms.count_campaign_moves(acct, c.campaign_id, 'queued', 'canceled', moved);
	END IF;
	UPDATE eightms.campaign x SET state = 'canceled', canceled_at = at, updated_at = at
	 WHERE x.account_id = acct AND x.campaign_id = c.campaign_id;
	RETURN 'canceled';
END
$$;

-- Delete a campaign that is a draft or over (owner or admin), with its
-- recipients; its messages stay, as any message does.
CREATE FUNCTION eightms_api.delete_campaign(campaign_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.campaign;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	c := eightms.campaign_for_move(acct, delete_campaign.campaign_id, 'deleted', ARRAY['draft', 'completed', 'canceled']);
	DELETE FROM eightms.campaign_recipient r WHERE r.account_id = acct AND r.campaign_id = c.campaign_id;
	DELETE FROM eightms.campaign x WHERE x.account_id = acct AND x.campaign_id = c.campaign_id;
END
$$;

-- ------------------------------------------------------------ the job

-- Count n recipients of a campaign moved from one state to another (was
-- NULL: new) in its counters (sql/campaign_stats.sql, which a stats call
-- sums): the fan-out's new recipients, the release's and a cancel's moves.
-- What follows a queued message is counted where its message moves.
CREATE FUNCTION eightms.count_campaign_moves(acct uuid, cid uuid, was text, becomes text, n bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF n > 0 THEN
		PERFORM eightms.count_recipient_moves(acct, array_fill(cid, ARRAY[n::integer]),
											  array_fill(was, ARRAY[n::integer]), array_fill(becomes, ARRAY[n::integer]));
	END IF;
END
$$;

-- A scheduled campaign starts: its audience fans out into recipients,
-- each waiting for the first opening of its window at or after the
-- start; the figures go on the campaign, and it is running.  Three
-- statements, each on the account's contacts alone (Citus plans no
-- data-modifying WITH on distributed tables): the counts and the zones
-- (eightms.audience_contacts, nothing rendered), each zone's opening,
-- then one INSERT ... SELECT (eightms.audience_rows: each contact once,
-- its text rendered) in the recipients' key order, so that the primary
-- key's index is appended to.  What is neither opted out nor inserted
-- was invalid.
CREATE FUNCTION eightms.fan_out_campaign(acct uuid, cid uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c eightms.campaign;
	a eightms.account;
	at timestamptz := now();
	n_all bigint;
	n_opted bigint;
	n_in bigint;
	zones text[];
	opens timestamptz[];
	ids uuid[];
	dup bigint;
	missing bigint;
BEGIN
	SELECT * INTO c FROM eightms.campaign x WHERE x.account_id = acct AND x.campaign_id = cid FOR UPDATE;
	IF c.state IS DISTINCT FROM 'scheduled' THEN
		RETURN 0;
	END IF;
	SELECT * INTO a FROM eightms.account x WHERE x.account_id = acct;
	EXECUTE format('SELECT count(*), count(*) FILTER (WHERE r.opted), array_agg(DISTINCT r.tz) FILTER (WHERE NOT r.opted)
					  FROM (%s) r', eightms.audience_contacts(acct, c.audience))
		INTO n_all, n_opted, zones
		USING acct, NULL::text, a.default_region, NULL::boolean, a.timezone;
	-- A zone's opening is looked up in these arrays by each row (a
	-- campaign's recipients are in a few zones).
	opens := ARRAY(SELECT eightms.window_opening(greatest(at, c.start_at), z.tz, c.window_from, c.window_until,
												 c.window_days)
					 FROM unnest(zones) WITH ORDINALITY z(tz, n) ORDER BY z.n);
	EXECUTE format('INSERT INTO eightms.campaign_recipient (account_id, campaign_id, phone, contact_id, time_zone,
															 segments, window_opens_at, body)
					SELECT r.account_id, $6, r.phone, r.contact_id, r.tz, r.segments,
						   ($8::timestamptz[])[array_position($7::text[], r.tz)], r.body
					  FROM (%s) r
					 WHERE NOT r.opted AND NOT r.invalid
					 ORDER BY r.phone', eightms.audience_rows(acct, c.audience))
		USING acct, c.body, a.default_region, a.fold_lookalikes, a.timezone, c.campaign_id, zones, opens;
	GET DIAGNOSTICS n_in = ROW_COUNT;
	PERFORM eightms.count_campaign_moves(acct, cid, NULL, 'waiting', n_in);
	ids := eightms.audience_ids(acct, c.audience);
	SELECT cardinality(ids) - count(DISTINCT u.id), count(DISTINCT u.id) - count(DISTINCT x.contact_id)
	  INTO dup, missing
	  FROM unnest(ids) u(id)
	  LEFT JOIN eightms.contact x ON x.account_id = acct AND x.contact_id = u.id;
	UPDATE eightms.campaign x
	   SET state = 'running', started_at = at, updated_at = at,
		   audience_count = n_all + coalesce(dup, 0) + coalesce(missing, 0), excluded_opted_out = n_opted,
		   excluded_invalid = n_all - n_opted - n_in + coalesce(missing, 0), excluded_duplicate = coalesce(dup, 0)
	 WHERE x.account_id = acct AND x.campaign_id = cid;
	RETURN n_in::integer;
END
$$;

-- A running campaign's queued messages still waiting when their window
-- closed move to their next window: no claim hands them out meanwhile
-- (eightms.lock_due_messages), and they keep the expiry counted from the
-- window they were queued in.
CREATE FUNCTION eightms.defer_closed_windows(acct uuid, c eightms.campaign) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	at timestamptz := now();
	ids uuid[];
	peers text[];
	g record;
	n integer := 0;
	k integer;
BEGIN
	SELECT array_agg(m.message_id), array_agg(m.peer_number) INTO ids, peers FROM eightms.message m
	 WHERE m.account_id = acct AND m.pending AND m.window_closes_at <= at AND m.status = 'queued'
	   AND m.campaign_id = c.campaign_id;
	IF ids IS NULL THEN
		RETURN 0;
	END IF;
	FOR g IN SELECT w.opens_at, w.closes_at, array_agg(u.id) AS ids
			   FROM unnest(ids, peers) AS u(id, peer)
			   JOIN eightms.campaign_recipient r
				 ON r.account_id = acct AND r.campaign_id = c.campaign_id AND r.phone = u.peer
			  CROSS JOIN LATERAL eightms.send_window(at, r.time_zone, c.window_from, c.window_until, c.window_days) w
			  GROUP BY w.opens_at, w.closes_at LOOP
		UPDATE eightms.message m SET send_at = g.opens_at, window_closes_at = g.closes_at
		 WHERE m.account_id = acct AND m.message_id = ANY (g.ids) AND m.pending AND m.status = 'queued';
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	END LOOP;
	RETURN n;
END
$$;

-- Release: up to lim of a running campaign's recipients whose window has
-- opened are queued through the gateway's bulk path, under the consent
-- lock as a send is (their conversations held, in number order, before
-- the opt-out list is read): a number opted out since the fan-out is
-- canceled, the others get their message (send_at now, expiring ttl after
-- their window opened, unclaimable once it closes), each sent by its
-- conversation's phone or, for a campaign with phones of its own, by one
-- of those.  A recipient outside its window now (it closed before the
-- release: the job ran late) waits for its next one; one queued in a
-- window that opened after the one it waited for (the job was down) has
-- its ttl counted from that window's opening.  Returns how many
-- recipients moved.  plan_cache_mode = auto, not force_generic_plan: its
-- statements that join the recipients to their windows or update them
-- from arrays are ones Citus cannot plan generically; left to choose, the
-- plan cache keeps a generic plan on one server and a custom one on Citus
-- (as eightms.create_conversations).  One plan a batch is nothing next to
-- the batch.
CREATE FUNCTION eightms.release_campaign(acct uuid, cid uuid, lim integer) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
	c eightms.campaign;
	at timestamptz := now();
	numbers text[];
	bodies text[];
	opens timestamptz[];
	closes timestamptz[];
	nexts timestamptz[];
	k integer;
	named uuid[];
	senders uuid[];
	held_numbers text[];
	held_ids uuid[];
	held_phones uuid[];
	convs uuid[];
	opted text[];
	ids uuid[];
	phones uuid[];
	n integer := 0;
	moved bigint;
BEGIN
	SELECT * INTO c FROM eightms.campaign x WHERE x.account_id = acct AND x.campaign_id = cid FOR NO KEY UPDATE;
	IF c.state IS DISTINCT FROM 'running' THEN
		RETURN 0;
	END IF;
	n := eightms.defer_closed_windows(acct, c);
	IF c.phone_ids IS NOT NULL THEN
		SELECT array_agg(p.phone_id ORDER BY p.phone_id) INTO phones FROM eightms.phone p
		 WHERE p.account_id = acct AND p.phone_id = ANY (c.phone_ids) AND p.unpaired_at IS NULL;
		IF phones IS NULL THEN
			-- None of its phones is paired: its recipients wait.
			RETURN n;
		END IF;
	END IF;
	-- The due recipients in number order (the order locks are taken in),
	-- each with the window open now in its zone, or the next one.
	SELECT array_agg(r.phone ORDER BY r.phone), array_agg(r.body ORDER BY r.phone),
		   array_agg(greatest(r.window_opens_at, w.starts_at) ORDER BY r.phone),
		   array_agg(w.closes_at ORDER BY r.phone), array_agg(w.opens_at ORDER BY r.phone)
	  INTO numbers, bodies, opens, closes, nexts
	  FROM (SELECT x.phone, x.body, x.window_opens_at, x.time_zone FROM eightms.campaign_recipient x
			 WHERE x.account_id = acct AND x.campaign_id = cid AND x.state = 'waiting' AND x.window_opens_at <= at
			 ORDER BY x.window_opens_at
			 LIMIT lim) r
	 CROSS JOIN LATERAL eightms.send_window(at, r.time_zone, c.window_from, c.window_until, c.window_days) w;
	IF numbers IS NULL THEN
		RETURN n;
	END IF;
	-- Those outside their window now (it closed before this release: the
	-- job ran late) wait for the next one.
	IF EXISTS (SELECT FROM unnest(nexts) u(opens_at) WHERE u.opens_at > at) THEN
		UPDATE eightms.campaign_recipient r SET window_opens_at = u.opens_at
		  FROM unnest(numbers, nexts) AS u(number, opens_at)
		 WHERE r.account_id = acct AND r.campaign_id = cid AND r.phone = u.number AND u.opens_at > at
		   AND r.state = 'waiting';
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
		SELECT array_agg(u.number), array_agg(u.body), array_agg(u.opens_at), array_agg(u.closes_at)
		  INTO numbers, bodies, opens, closes
		  FROM unnest(numbers, bodies, opens, closes, nexts) AS u(number, body, opens_at, closes_at, next_at)
		 WHERE u.next_at <= at;
		IF numbers IS NULL THEN
			RETURN n;
		END IF;
	END IF;
	-- The campaign's phones in turn, or routing as usual.
	IF phones IS NOT NULL THEN
		named := ARRAY(SELECT phones[(g.i - 1) % cardinality(phones) + 1] FROM generate_subscripts(numbers, 1) AS g(i));
	ELSE
		named := array_fill(NULL::uuid, ARRAY[cardinality(numbers)]);
	END IF;
	-- The consent lock: the conversations that exist with a phone, then
	-- the others, opened (touch_conversations, open_conversations).
	SELECT array_agg(t.peer_number), array_agg(t.conversation_id), array_agg(t.phone_id)
	  INTO held_numbers, held_ids, held_phones
	  FROM eightms.touch_conversations(acct, numbers, at) t;
	IF coalesce(cardinality(held_numbers), 0) < cardinality(numbers) THEN
		SELECT coalesce(held_numbers, '{}') || array_agg(h.peer_number), coalesce(held_ids, '{}') || array_agg(h.conversation_id),
			   coalesce(held_phones, '{}') || array_agg(h.phone_id)
		  INTO held_numbers, held_ids, held_phones
		  FROM eightms.open_conversations(acct, numbers, named,
										  ARRAY(SELECT generate_subscripts(numbers, 1)), coalesce(held_numbers, '{}'), at) h;
	END IF;
	-- Read with the locks held: a STOP committed meanwhile is seen.
	opted := eightms.opted_out(acct, numbers);
	IF cardinality(opted) > 0 THEN
		UPDATE eightms.campaign_recipient r SET state = 'canceled', body = NULL
		 WHERE r.account_id = acct AND r.campaign_id = cid AND r.phone = ANY (opted) AND r.state = 'waiting';
		GET DIAGNOSTICS moved = ROW_COUNT;
		PERFORM eightms.count_campaign_moves(acct, cid, 'waiting', 'canceled', moved);
		n := n + cardinality(opted);
		SELECT array_agg(u.number), array_agg(u.body), array_agg(u.opens_at), array_agg(u.closes_at), array_agg(u.named)
		  INTO numbers, bodies, opens, closes, named
		  FROM unnest(numbers, bodies, opens, closes, named) AS u(number, body, opens_at, closes_at, named)
		 WHERE u.number <> ALL (opted);
		IF numbers IS NULL THEN
			RETURN n;
		END IF;
	END IF;
	SELECT array_agg(hc.id ORDER BY u.k), array_agg(coalesce(u.named, hc.phone) ORDER BY u.k),
		   array_agg(eightms.uuid_v7() ORDER BY u.k)
	  INTO convs, senders, ids
	  FROM unnest(numbers, named) WITH ORDINALITY AS u(number, named, k)
	  JOIN unnest(held_numbers, held_ids, held_phones) AS hc(number, id, phone) ON hc.number = u.number;
	PERFORM count(*) FROM eightms.insert_outbound(acct, ids, convs, senders, numbers, bodies, NULL, NULL, at, c.ttl,
												  c.campaign_id, ARRAY(SELECT o + c.ttl FROM unnest(opens) o), closes);
	UPDATE eightms.campaign_recipient r SET state = 'queued', message_id = u.id, body = NULL, window_opens_at = u.opens_at
	  FROM unnest(numbers, ids, opens) AS u(number, id, opens_at)
	 WHERE r.account_id = acct AND r.campaign_id = cid AND r.phone = u.number AND r.state = 'waiting';
	GET DIAGNOSTICS moved = ROW_COUNT;
	PERFORM eightms.count_campaign_moves(acct, cid, 'waiting', 'queued', moved);
	-- Realtime: ids only, as send_messages notifies.
	PERFORM count(pg_notify('eightms_outbound',
							json_build_object('account_id', acct, 'phone_id', g.phone_id, 'message_ids', g.ids)::text))
	   FROM (SELECT x.phone_id, json_agg(x.message_id) AS ids
			   FROM (SELECT u.phone_id, u.message_id, (row_number() OVER (PARTITION BY u.phone_id) - 1) / 100 AS chunk
					   FROM unnest(ids, senders) AS u(message_id, phone_id)) x
			  GROUP BY x.phone_id, x.chunk) g;
	RETURN n + cardinality(ids);
END
$$;

-- A running campaign with no recipient waiting or queued (what follows a
-- queued message is written by its report) is completed.
CREATE FUNCTION eightms.complete_campaign(acct uuid, cid uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	at timestamptz := now();
BEGIN
	PERFORM FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = cid AND r.state IN ('waiting', 'queued') LIMIT 1;
	IF FOUND THEN
		RETURN false;
	END IF;
	UPDATE eightms.campaign x SET state = 'completed', completed_at = at, updated_at = at
	 WHERE x.account_id = acct AND x.campaign_id = cid AND x.state = 'running';
	RETURN FOUND;
END
$$;

-- One round of the campaigns job over every account: scheduled campaigns
-- whose start has come fan out, running ones release up to batch_size
-- recipients each and move what their closed windows hold, and those with
-- nothing left complete.  Returns how many rows it moved (0: nothing to do).
CREATE FUNCTION eightms.run_campaigns(batch_size integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j record;
	n bigint := 0;
BEGIN
	IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'batch_size must be 1 to 100000' USING ERRCODE = '22023';
	END IF;
	FOR j IN SELECT x.account_id, x.campaign_id, x.state FROM eightms.campaign x
			  WHERE x.state = 'running' OR (x.state = 'scheduled' AND coalesce(x.start_at, '-infinity') <= now())
			  ORDER BY x.account_id, x.campaign_id LOOP
		-- One campaign that cannot go on (its audience names a custom
		-- field dropped since it was scheduled) holds up no other: it is
		-- named in the log, by id and SQLSTATE only, and tried again.
		BEGIN
			IF j.state = 'scheduled' THEN
				n := n + 1 + eightms.fan_out_campaign(j.account_id, j.campaign_id);
			END IF;
			n := n + eightms.release_campaign(j.account_id, j.campaign_id, batch_size);
			IF eightms.complete_campaign(j.account_id, j.campaign_id) THEN
				n := n + 1;
			END IF;
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'campaign % of account % failed in the campaigns job (SQLSTATE %)',
				j.campaign_id, j.account_id, SQLSTATE;
		END;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION eightms.run_campaigns(integer) IS
	'One round of the campaigns job: start due campaigns (fan-out), release up to batch_size recipients per running campaign, defer what closed windows hold, complete finished ones';

-- The campaigns job: committed rounds until one finds nothing to do or
-- the budget is spent (a round's fan-out or release is never cut short).
CREATE PROCEDURE eightms.campaign_job(budget interval DEFAULT '50 seconds', batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
	deadline timestamptz;
BEGIN
	-- No SET clause (a procedure with one cannot commit): every name and
	-- operator is qualified, as in eightms.purge.
	IF budget IS NULL OR budget OPERATOR(pg_catalog.<=) '0'::interval THEN
		RAISE EXCEPTION 'budget must be a positive interval' USING ERRCODE = '22023';
	END IF;
	deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) budget;
	LOOP
		EXIT WHEN eightms.run_campaigns(batch_size) OPERATOR(pg_catalog.=) 0;
		COMMIT;
		EXIT WHEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE eightms.campaign_job(interval, integer) IS
	'The campaigns job: committed rounds of run_campaigns(batch_size) until nothing is left to do or budget is spent';

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-run-campaigns', '* * * * *', 'CALL eightms.campaign_job()',
	 'campaigns: start scheduled ones, release recipients whose send window opened, defer what closed windows hold, complete finished ones');

GRANT EXECUTE ON FUNCTION eightms.send_window(timestamptz, text, time, time, smallint[]),
	eightms.window_opening(timestamptz, text, time, time, smallint[]),
	eightms.window_closing(timestamptz, text, time, time, smallint[]),
	eightms.region_zone()
TO eightms_user, eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.run_campaigns(integer) TO eightms_dba;
GRANT EXECUTE ON PROCEDURE eightms.campaign_job(interval, integer) TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms_api.save_segment(text, jsonb), eightms_api.segments(),
	eightms_api.delete_segment(uuid),
	eightms_api.create_campaign(text, jsonb, text, text, uuid[], timestamptz, time, time, smallint[], interval),
	eightms_api.update_campaign(uuid, jsonb), eightms_api.campaign(uuid), eightms_api.campaigns(text, uuid, integer),
	eightms_api.estimate_campaign(uuid), eightms_api.schedule_campaign(uuid), eightms_api.pause_campaign(uuid),
	eightms_api.resume_campaign(uuid), eightms_api.cancel_campaign(uuid), eightms_api.delete_campaign(uuid)
TO eightms_user;
