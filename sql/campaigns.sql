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
-- fan-out to the end of its message.
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
	PRIMARY KEY (account_id, campaign_id, phone),
	FOREIGN KEY (account_id, campaign_id) REFERENCES eightms.campaign (account_id, campaign_id) ON DELETE CASCADE
);
-- The campaigns job's release: a running campaign's recipients whose
-- window has opened.
CREATE INDEX campaign_recipient_waiting_idx ON eightms.campaign_recipient (account_id, campaign_id, window_opens_at)
	WHERE state = 'waiting';
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
