-- Consent: what an inbound SMS says about it, the replies carriers expect,
-- and the records that prove each change (doc/consent.md has the table of
-- what counts, row by row, with the reasons).
--
-- receive_messages (gateway_inbound.sql) hands every stored inbound body to
-- eightms.apply_consent; everything about keywords, confirmations, reviews
-- and the consent history is here.

-- ------------------------------------------------------------ reading replies

-- The form a reply is matched in: compatibility forms folded (NFKD: a
-- full-width STOP, a no-break space, ligatures), accents dropped, so that
-- ARRÊT and DÉSABONNER read as ARRET and DESABONNER; zero-width and
-- format characters and apostrophes dropped (DON'T is one word, DONT);
-- every run of punctuation, symbols, emoji and spaces made one space;
-- ASCII letters upper-cased.  Letters of other scripts stay as they are
-- (and count as words), in NFC.  A body all in ASCII (nearly every one)
-- is read in C (src/sms/consent_ascii.c), which gives the same text without
-- the normalizations and regular expressions; any other body as below.
-- Not STRICT, so that the planner inlines it with its coalesce; NULL
-- still reads as NULL.
CREATE FUNCTION eightms.consent_ascii(body text) RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_consent_ascii';
COMMENT ON FUNCTION eightms.consent_ascii(text) IS
	'consent_normalize of an ASCII body, NULL for any other body';

CREATE FUNCTION eightms.consent_normalize_unicode(body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT btrim(upper(regexp_replace(
		normalize(regexp_replace(normalize(body, NFKD),
								 '[\u0300-\u036F\u00AD\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF''\u2019\u02BC`]',
								 '', 'g'), NFC),
		'[^A-Za-z0-9\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u1FFF\u2C00-\u2DFF\u2E80-\u2FFF\u3040-\uD7FF\uF900-\uFDFF\uFE70-\uFEFE\uFF10-\uFFEF\U00010000-\U0001EFFF\U00020000-\U0003FFFF]+',
		' ', 'g') COLLATE "C"))
$$;
COMMENT ON FUNCTION eightms.consent_normalize_unicode(text) IS
	'consent_normalize of any body, by Unicode normalization and regular expressions';

CREATE FUNCTION eightms.consent_normalize(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT coalesce(eightms.consent_ascii(body), eightms.consent_normalize_unicode(body))
$$;
COMMENT ON FUNCTION eightms.consent_normalize(text) IS
	'An SMS body as the consent rules read it: NFKD, accents, zero-width characters and apostrophes dropped, punctuation, symbols and emoji as spaces, ASCII upper case, NFC';

-- What a reply asks for (doc/consent.md, "What counts"):
--   kind     stop, start, help, review, or NULL for an ordinary message;
--   rule     the row of the table that matched;
--   keyword  the keyword found (OPT OUT for the two words);
--   normalized  the text as consent_normalize reads it.
-- A reply's words are those of consent_normalize, OPT OUT counted as one.
CREATE FUNCTION eightms.consent_classify(body text, OUT kind text, OUT rule text, OUT keyword text,
										 OUT normalized text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- Opt-out words: the FCC's (STOP, QUIT, END, REVOKE, OPT OUT, CANCEL,
	-- UNSUBSCRIBE), the carriers' (STOPALL, OPTOUT, REMOVE, TD), Spanish
	-- (ALTO, PARAR, CANCELAR, BAJA) and French (ARRET, ARRETE, ARRETER,
	-- ARRETEZ, DESABONNER, DESINSCRIRE, ANNULER; STOP is French too).
	stop_words constant text[] := ARRAY['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'REVOKE',
		'OPTOUT', 'REMOVE', 'TD', 'ALTO', 'PARAR', 'CANCELAR', 'BAJA', 'ARRET', 'ARRETE', 'ARRETER', 'ARRETEZ',
		'DESABONNER', 'DESINSCRIRE', 'ANNULER'];
	start_words constant text[] := ARRAY['START', 'UNSTOP', 'YES', 'INICIO', 'COMENZAR', 'COMMENCER', 'DEMARRER'];
	help_words constant text[] := ARRAY['HELP', 'INFO', 'AYUDA', 'AIDE'];
	-- Words that may stand beside a keyword without making the reply a
	-- sentence: "STOP please", "stop all", "AIDE SVP".
	courtesy constant text[] := ARRAY['PLEASE', 'PLS', 'PLZ', 'ALL', 'NOW', 'THANKS', 'THANK', 'YOU', 'THX',
		'POR', 'FAVOR', 'GRACIAS', 'YA', 'SVP', 'SIL', 'VOUS', 'PLAIT', 'MERCI'];
	-- A negation right before the keyword ("don't stop").
	negations constant text[] := ARRAY['DONT', 'NOT', 'NEVER'];
	-- At most this many words is a short reply (doc/consent.md).
	short_reply constant integer := 6;
	w text[];
	n integer;
	plain boolean := true;		-- every word a keyword or a courtesy word
	negated_only boolean := true;
BEGIN
	normalized := eightms.consent_normalize(body);
	IF normalized IS NULL OR normalized = '' THEN
		RETURN;
	END IF;
	w := string_to_array(replace(' ' || normalized || ' ', ' OPT OUT ', ' OPTOUT '), ' ');
	w := w[2:cardinality(w) - 1];
	n := cardinality(w);
	FOR i IN 1 .. n LOOP
		IF w[i] = ANY (stop_words) THEN
			IF i > 1 AND w[i - 1] = ANY (negations) THEN
				keyword := coalesce(keyword, w[i]);
			ELSE
				-- The first keyword not negated is the one recorded.
				IF negated_only THEN
					keyword := w[i];
				END IF;
				negated_only := false;
			END IF;
		ELSIF NOT w[i] = ANY (courtesy) THEN
			plain := false;
		END IF;
	END LOOP;
	IF keyword IS NOT NULL THEN
		IF keyword = 'OPTOUT' AND normalized LIKE '%OPT OUT%' THEN
			keyword := 'OPT OUT';
		END IF;
		IF plain AND NOT negated_only THEN
			kind := 'stop'; rule := 'stop.keyword';
		ELSIF n <= short_reply AND NOT negated_only THEN
			kind := 'stop'; rule := 'stop.short';
		ELSIF n <= short_reply THEN
			kind := 'review'; rule := 'review.negated';
		ELSE
			kind := 'review'; rule := 'review.long';
		END IF;
		RETURN;
	END IF;
	-- Opting back in and asking for help take the keyword alone (with
	-- courtesy words): a sentence that mentions YES or INFO is a message.
	IF w <@ (start_words || courtesy) AND w && start_words THEN
		kind := 'start'; rule := 'start.keyword';
		keyword := (SELECT x FROM unnest(w) x WHERE x = ANY (start_words) LIMIT 1);
	ELSIF w <@ (help_words || courtesy) AND w && help_words THEN
		kind := 'help'; rule := 'help.keyword';
		keyword := (SELECT x FROM unnest(w) x WHERE x = ANY (help_words) LIMIT 1);
	END IF;
END
$$;
COMMENT ON FUNCTION eightms.consent_classify(text) IS
	'What an inbound SMS asks for (stop, start, help, review or NULL), the rule of doc/consent.md that matched, the keyword and the normalized text';

-- The kind alone (0.1.0's keyword test, now the rules above).
CREATE FUNCTION eightms.consent_keyword(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT (eightms.consent_classify(body)).kind
$$;

-- ------------------------------------------------------------ records

-- The consent history itself, eightms.consent_event with the columns that
-- prove each change, is defined with the gateway's tables
-- (sql/gateway_tables.sql).

-- Replies whose intent is unclear: a keyword in a longer message, or a
-- negated one.  Nothing is revoked; a member looks, may send one
-- clarification, and resolves it.
CREATE TABLE eightms.consent_review (
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	review_id		uuid NOT NULL DEFAULT gen_random_uuid(),
	conversation_id	uuid NOT NULL,
	number			text COLLATE "C" NOT NULL,
	message_id		uuid NOT NULL,
	normalized		text NOT NULL,
	rule			text NOT NULL,
	keyword			text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	clarification_id uuid,
	clarified_at	timestamptz,
	resolved_at		timestamptz,
	resolved_by		text,
	resolution		text CONSTRAINT consent_review_resolution_check CHECK (resolution IN ('opted_out', 'dismissed')),
	PRIMARY KEY (account_id, review_id)
);
CREATE INDEX consent_review_open_idx ON eightms.consent_review (account_id, created_at) WHERE resolved_at IS NULL;
CREATE INDEX consent_review_conversation_idx ON eightms.consent_review (account_id, conversation_id);
SELECT pg_catalog.pg_extension_config_dump('eightms.consent_review', '');
COMMENT ON TABLE eightms.consent_review IS
	'Inbound replies that mention an opt-out keyword without clearly revoking consent, for a member to review';
-- A review belongs to its conversation and goes with it, as its messages
-- do (gateway_tables.sql, a row trigger for the same reason): no foreign
-- key, so that TRUNCATE of the conversations still needs no CASCADE; as
-- the owner, as a cascade is.
CREATE FUNCTION eightms.delete_conversation_reviews() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		-- On the conversations only: on Citus the trigger also fires on
		-- each shard, where it would empty every account's reviews from
		-- each of them at once, and the shards' truncates deadlock.
		IF TG_RELID = 'eightms.conversation'::regclass THEN
			TRUNCATE eightms.consent_review;
		END IF;
	ELSE
		DELETE FROM eightms.consent_review r
		 WHERE r.account_id = OLD.account_id AND r.conversation_id = OLD.conversation_id;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eightms.delete_conversation_reviews() FROM PUBLIC;
CREATE TRIGGER conversation_delete_reviews AFTER DELETE ON eightms.conversation
	FOR EACH ROW EXECUTE FUNCTION eightms.delete_conversation_reviews();
CREATE TRIGGER conversation_truncate_reviews AFTER TRUNCATE ON eightms.conversation
	FOR EACH STATEMENT EXECUTE FUNCTION eightms.delete_conversation_reviews();

-- The account's replies: help, stop (the opt-out confirmation), start (the
-- resubscribe confirmation), clarify (the one question a review allows),
-- and contact (the customer-care contact the {contact} placeholder names).
-- A kind without a row uses its default (eightms.consent_default).
CREATE TABLE eightms.consent_template (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	kind		text NOT NULL CONSTRAINT consent_template_kind_check
					CHECK (kind IN ('help', 'stop', 'start', 'clarify', 'contact')),
	template	text NOT NULL CONSTRAINT consent_template_template_check CHECK (length(template) BETWEEN 1 AND 1000),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	updated_by	text,
	PRIMARY KEY (account_id, kind)
);
SELECT pg_catalog.pg_extension_config_dump('eightms.consent_template', '');

ALTER TABLE eightms.consent_review ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.consent_review FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.consent_review
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.consent_template ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.consent_template FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.consent_template
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- Read by members; written by receive_messages (as the phone) and by the
-- API's functions below.
GRANT SELECT ON eightms.consent_review, eightms.consent_template TO eightms_user;
GRANT SELECT ON eightms.consent_template TO eightms_phone;
GRANT INSERT ON eightms.consent_review TO eightms_phone;

-- ------------------------------------------------------------ replies

-- The defaults meet the CTIA handbook: every reply names the program
-- ({business}); HELP gives the care contact, how to opt out and, where
-- needed, "Msg & data rates may apply"; the opt-out confirmation says no
-- more messages will come; the resubscribe confirmation says how often,
-- the rates notice, HELP and STOP.
CREATE FUNCTION eightms.consent_default(kind text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE kind
		WHEN 'help' THEN '{business} help: {contact}. {rates} Reply STOP to unsubscribe, START to resubscribe.'
		WHEN 'stop' THEN 'You have been unsubscribed from {business}. No more messages will be sent. Reply START to resubscribe.'
		WHEN 'start' THEN '{business}: you are subscribed again. Msg frequency varies. {rates} Reply HELP for help, STOP to unsubscribe.'
		WHEN 'clarify' THEN '{business}: did you mean to stop all messages from us? Reply STOP to unsubscribe; we will not ask again.'
		WHEN 'contact' THEN 'reply to this message' END
$$;

-- Regions whose carriers expect "Msg & data rates may apply" (the United
-- States with its territories, and Canada).
CREATE FUNCTION eightms.consent_rates_notice(region text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN region IN ('US', 'CA', 'PR', 'VI', 'GU', 'AS', 'MP') THEN 'Msg & data rates may apply.' ELSE '' END
$$;

-- A template filled in: {business}, {contact}, {rates}; runs of spaces
-- left by an empty {rates} closed up.
CREATE FUNCTION eightms.consent_render(template text, business text, contact text, region text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT btrim(regexp_replace(replace(replace(replace(template, '{business}', business),
									'{contact}', contact), '{rates}', eightms.consent_rates_notice(region)),
								' {2,}', ' ', 'g'))
$$;

-- The account's reply of a kind, filled in.
-- Three lookups by key, one table each: Citus plans no join of
-- distributed tables under the generic plans its callers (receive_messages)
-- run with.
CREATE FUNCTION eightms.consent_text(acct uuid, kind text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	business text;
	region text;
	reply text;
	contact text;
BEGIN
	SELECT a.company_name, a.default_region INTO business, region FROM eightms.account a WHERE a.account_id = acct;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	SELECT t.template INTO reply FROM eightms.consent_template t
	 WHERE t.account_id = acct AND t.kind = consent_text.kind;
	SELECT t.template INTO contact FROM eightms.consent_template t
	 WHERE t.account_id = acct AND t.kind = 'contact';
	RETURN eightms.consent_render(coalesce(reply, eightms.consent_default(consent_text.kind)), business,
								  coalesce(contact, eightms.consent_default('contact')), region);
END
$$;

-- Record a change of consent and queue its confirmation, both once: a
-- number already in the state asked for changes nothing and is sent
-- nothing.  An opt-out cancels what still waits for the number, and its
-- confirmation is the one message queued to an opted-out number.
CREATE FUNCTION eightms.change_consent(acct uuid, conv uuid, phone uuid, number text, action text,
									   message_id uuid, inbound_text text, normalized text, rule text,
									   keyword text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	confirmation uuid;
	t timestamptz := now();
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	IF action = 'opt_out' THEN
		INSERT INTO eightms.opt_out (account_id, number) VALUES (acct, change_consent.number) ON CONFLICT DO NOTHING;
		IF NOT FOUND THEN
			RETURN false;
		END IF;
		-- Anything still waiting for this number is canceled at once: all
		-- of it is in the number's conversation, whose messages one index
		-- holds (the queue index would be read whole).  A campaign's
		-- recipient follows its message (sql/campaign_stats.sql).
		FOR mid, cid IN
			UPDATE eightms.message m SET status = 'canceled', pending = NULL, canceled_at = t,
				   error = 'recipient opted out'
			 WHERE m.account_id = acct AND m.conversation_id = conv AND m.pending
			RETURNING m.message_id, m.campaign_id
		LOOP
			IF cid IS NOT NULL THEN
				camp := camp || mid;
			END IF;
		END LOOP;
		IF camp IS NOT NULL THEN
			PERFORM eightms.follow_campaign_messages(acct, camp);
		END IF;
	ELSE
		DELETE FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = change_consent.number;
		IF NOT FOUND THEN
			RETURN false;
		END IF;
	END IF;
	confirmation := eightms.queue_reply(acct, conv, phone, change_consent.number,
		eightms.consent_text(acct, CASE action WHEN 'opt_out' THEN 'stop' ELSE 'start' END));
	-- Time-ordered ids: one transaction's changes share their time, and
	-- the history lists them in the order they were made.
	INSERT INTO eightms.consent_event (account_id, event_id, number, action, keyword, message_id,
									   inbound_text, normalized, rule, confirmation_id)
	VALUES (acct, eightms.uuid_v7(), change_consent.number, action, keyword, message_id,
			inbound_text, normalized, rule, confirmation);
	RETURN true;
END
$$;

-- What receive_messages does with an inbound body once the message is
-- stored: the consent column of its answer (opt_out, opt_in, help,
-- review, or NULL).  A repeated STOP answers opt_out and changes nothing;
-- a START from a number not opted out answers NULL.  The HELP reply goes
-- only to a number that has not opted out.
CREATE FUNCTION eightms.apply_consent(acct uuid, conv uuid, phone uuid, number text, message_id uuid, body text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c record;
BEGIN
	c := eightms.consent_classify(body);
	IF c.kind = 'stop' THEN
		PERFORM eightms.change_consent(acct, conv, phone, number, 'opt_out', message_id, body,
									   c.normalized, c.rule, c.keyword);
		RETURN 'opt_out';
	ELSIF c.kind = 'start' THEN
		IF eightms.change_consent(acct, conv, phone, number, 'opt_in', message_id, body,
								  c.normalized, c.rule, c.keyword) THEN
			RETURN 'opt_in';
		END IF;
	ELSIF c.kind = 'help' THEN
		-- One table, by key (no subquery: the callers' plans are generic,
		-- which Citus plans only for statements of one table).
		PERFORM FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = apply_consent.number;
		IF NOT FOUND THEN
			PERFORM eightms.queue_reply(acct, conv, phone, number, eightms.consent_text(acct, 'help'));
		END IF;
		RETURN 'help';
	ELSIF c.kind = 'review' THEN
		INSERT INTO eightms.consent_review (account_id, conversation_id, number, message_id, normalized, rule, keyword)
		VALUES (acct, conv, number, message_id, c.normalized, c.rule, c.keyword);
		RETURN 'review';
	END IF;
	RETURN NULL;
END
$$;

-- ------------------------------------------------------------ API

CREATE FUNCTION eightms.check_consent_kind(kind text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF kind IS NULL OR kind NOT IN ('help', 'stop', 'start', 'clarify', 'contact') THEN
		RAISE EXCEPTION 'a consent template''s kind is help, stop, start, clarify or contact' USING ERRCODE = '22023';
	END IF;
END
$$;

-- Check a template of a kind for the account: 22023 with a hint for each
-- rule it breaks (CTIA: every reply names the program; HELP gives a care
-- contact; HELP, START and the clarification say how to opt out; HELP and
-- START carry the rates notice in the United States and Canada).  Returns
-- the template filled in.
CREATE FUNCTION eightms.check_consent_template(acct uuid, kind text, template text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a eightms.account;
	contact text;
	filled text;
	placeholder text;
BEGIN
	PERFORM eightms.check_consent_kind(kind);
	IF template IS NULL OR btrim(template) = '' THEN
		RAISE EXCEPTION 'a consent template must not be empty' USING ERRCODE = '22023',
			HINT = 'Call reset_consent_template(kind) to go back to the default.';
	END IF;
	SELECT * INTO a FROM eightms.account x WHERE x.account_id = acct;
	IF kind = 'contact' THEN
		IF length(btrim(template)) > 100 OR template ~ '[{}]' THEN
			RAISE EXCEPTION 'a customer-care contact must be at most 100 characters, without placeholders'
				USING ERRCODE = '22023', HINT = 'Write a phone number, an email address or a web address.';
		END IF;
		RETURN btrim(template);
	END IF;
	FOR placeholder IN SELECT m[1] FROM regexp_matches(template, '\{([^{}]*)\}', 'g') m LOOP
		IF placeholder NOT IN ('business', 'contact', 'rates') THEN
			RAISE EXCEPTION 'a consent template has an unknown placeholder' USING ERRCODE = '22023',
				HINT = 'The placeholders are {business}, {contact} and {rates}.';
		END IF;
	END LOOP;
	contact := coalesce((SELECT t.template FROM eightms.consent_template t
						  WHERE t.account_id = acct AND t.kind = 'contact'), eightms.consent_default('contact'));
	filled := eightms.consent_render(template, a.company_name, contact, a.default_region);
	IF length(filled) > 320 THEN
		RAISE EXCEPTION 'a consent reply must be at most 320 characters once filled in' USING ERRCODE = '22023',
			HINT = 'Shorten it: carriers expect these replies to fit in one or two SMS.';
	END IF;
	IF strpos(template, '{business}') = 0 AND strpos(lower(template), lower(a.company_name)) = 0 THEN
		RAISE EXCEPTION 'a consent reply must name the business' USING ERRCODE = '22023',
			HINT = 'Write {business} where the business name goes.';
	END IF;
	IF kind = 'help' AND strpos(template, '{contact}') = 0 AND strpos(lower(template), lower(contact)) = 0 THEN
		RAISE EXCEPTION 'a HELP reply must give the customer-care contact' USING ERRCODE = '22023',
			HINT = 'Write {contact} where it goes, and set it with set_consent_template(''contact'', ...).';
	END IF;
	IF kind IN ('help', 'start', 'clarify') AND filled !~* '\mSTOP\M' THEN
		RAISE EXCEPTION 'a % reply must say how to opt out', upper(kind) USING ERRCODE = '22023',
			HINT = 'Include "Reply STOP to unsubscribe".';
	END IF;
	IF kind IN ('help', 'start') AND eightms.consent_rates_notice(a.default_region) <> ''
	   AND strpos(template, '{rates}') = 0 AND template !~* 'm(sg|essage)s? (&|and) data rates may apply' THEN
		RAISE EXCEPTION 'a % reply must say "Msg & data rates may apply" in this account''s region', upper(kind)
			USING ERRCODE = '22023',
				  HINT = 'Write {rates}: it prints the notice where the account''s region needs it.';
	END IF;
	RETURN filled;
END
$$;

-- Set one of the account's replies (owner or admin); returns it filled in.
CREATE FUNCTION eightms_api.set_consent_template(kind text, template text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	filled text;
	at timestamptz := now();
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	filled := eightms.check_consent_template(acct, set_consent_template.kind, set_consent_template.template);
	-- The clock read before the statement: Citus refuses now() in ON
	-- CONFLICT DO UPDATE SET.
	INSERT INTO eightms.consent_template AS t (account_id, kind, template, updated_at, updated_by)
	VALUES (acct, set_consent_template.kind, btrim(set_consent_template.template), at, eightms.current_user_id())
	ON CONFLICT ON CONSTRAINT consent_template_pkey DO UPDATE
		SET template = EXCLUDED.template, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by;
	RETURN filled;
END
$$;

-- Back to the default (owner or admin).
CREATE FUNCTION eightms_api.reset_consent_template(kind text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	PERFORM eightms.check_consent_kind(kind);
	-- The account read first: a statement names it by value, so Citus
	-- routes it to the account's shard.
	acct := eightms.current_account_id();
	DELETE FROM eightms.consent_template t
	 WHERE t.account_id = acct AND t.kind = reset_consent_template.kind;
	RETURN eightms.consent_text(acct, kind);
END
$$;

-- The account's replies as sent now, for the dashboard (any member).
-- A lookup by key per kind rather than an outer join of the kinds with the
-- table: Citus 13.2.2's planner crashed the backend on that join
-- (recursive planning of an outer join with a recurring tuple).
CREATE FUNCTION eightms_api.consent_templates()
RETURNS TABLE (kind text, template text, is_default boolean, rendered text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	k text;
	saved text;
BEGIN
	FOREACH k IN ARRAY ARRAY['help', 'stop', 'start', 'clarify', 'contact'] LOOP
		SELECT t.template INTO saved FROM eightms.consent_template t WHERE t.account_id = acct AND t.kind = k;
		kind := k;
		template := coalesce(saved, eightms.consent_default(k));
		is_default := saved IS NULL;
		rendered := CASE WHEN k = 'contact' THEN template ELSE eightms.consent_text(acct, k) END;
		RETURN NEXT;
	END LOOP;
END
$$;

-- Replies waiting for a member's look (and, with resolved ones, the
-- record of what was done), with the message that raised them.
-- The message's text by a subquery rather than an outer join: Citus
-- (on PostgreSQL 15 and 16) plans no outer join under the tables' policies
-- ("outer joins and pseudoconstant quals").
CREATE VIEW eightms_api.consent_reviews WITH (security_invoker = true) AS
	SELECT r.account_id, r.review_id, r.conversation_id, r.number AS peer_number, r.message_id,
		   (SELECT m.body FROM eightms.message m WHERE m.account_id = r.account_id AND m.message_id = r.message_id) AS body,
		   r.normalized, r.rule, r.keyword, r.created_at, r.clarification_id, r.clarified_at,
		   r.resolved_at, r.resolved_by, r.resolution
	  FROM eightms.consent_review r;
GRANT SELECT ON eightms_api.consent_reviews TO eightms_user;

-- An open review of the current account, locked, for an owner, admin or
-- agent to act on: P0002 for an unknown one, 55000 for one resolved.
CREATE FUNCTION eightms.open_consent_review(review_id uuid) RETURNS eightms.consent_review
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r eightms.consent_review;
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	-- By value: Citus locks a row only on a shard named by its key.
	acct := eightms.current_account_id();
	SELECT * INTO r FROM eightms.consent_review x
	 WHERE x.account_id = acct AND x.review_id = open_consent_review.review_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no consent review %', open_consent_review.review_id USING ERRCODE = 'P0002';
	END IF;
	IF r.resolved_at IS NOT NULL THEN
		RAISE EXCEPTION 'consent review % is resolved', r.review_id USING ERRCODE = '55000';
	END IF;
	RETURN r;
END
$$;

-- The one clarification the FCC's rule allows for an unclear reply
-- (owner, admin or agent): queued like any message (so never to a number
-- that has opted out), once per review; a second call is refused.
CREATE FUNCTION eightms_api.send_consent_clarification(review_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	r eightms.consent_review;
	m eightms.message;
BEGIN
	r := eightms.open_consent_review(send_consent_clarification.review_id);
	acct := r.account_id;
	IF r.clarification_id IS NOT NULL THEN
		RAISE EXCEPTION 'a clarification was already sent for consent review %', r.review_id
			USING ERRCODE = '55000', HINT = 'One is allowed per unclear reply; resolve the review with resolve_consent_review.';
	END IF;
	m := eightms.queue_message(acct, r.number, eightms.consent_text(acct, 'clarify'), NULL,
							   'consent-clarification:' || r.review_id, NULL);
	UPDATE eightms.consent_review x SET clarification_id = m.message_id, clarified_at = m.created_at
	 WHERE x.account_id = acct AND x.review_id = r.review_id;
	RETURN m.message_id;
END
$$;

-- A member's decision on an unclear reply (owner, admin or agent):
-- opt_out true opts the number out as a STOP would (rule review.member,
-- with the reply's text, and the confirmation); false dismisses it.
CREATE FUNCTION eightms_api.resolve_consent_review(review_id uuid, opt_out boolean) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	r eightms.consent_review;
	phone uuid;
	body text;
	at timestamptz := now();
	uid text := eightms.current_user_id();
BEGIN
	IF opt_out IS NULL THEN
		RAISE EXCEPTION 'opt_out must be true or false' USING ERRCODE = '22023',
			HINT = 'true opts the number out; false dismisses the review.';
	END IF;
	r := eightms.open_consent_review(resolve_consent_review.review_id);
	acct := r.account_id;
	IF opt_out THEN
		SELECT c.phone_id INTO phone FROM eightms.conversation c
		 WHERE c.account_id = acct AND c.conversation_id = r.conversation_id FOR UPDATE;
		SELECT m.body INTO body FROM eightms.message m WHERE m.account_id = acct AND m.message_id = r.message_id;
		PERFORM eightms.change_consent(acct, r.conversation_id, phone, r.number, 'opt_out', r.message_id,
									   body, r.normalized, 'review.member', r.keyword);
	END IF;
	UPDATE eightms.consent_review x
	   SET resolved_at = at, resolved_by = uid,
		   resolution = CASE WHEN opt_out THEN 'opted_out' ELSE 'dismissed' END
	 WHERE x.account_id = acct AND x.review_id = r.review_id;
	RETURN CASE WHEN opt_out THEN 'opted_out' ELSE 'dismissed' END;
END
$$;

-- The account's consent history, oldest first, a page at a time (owner or
-- admin): keyset (after_at, after_id) from the last row of the previous
-- page; one number's alone when number is given (read with the account's
-- region, or as written for short codes and names).
CREATE FUNCTION eightms_api.consent_history(number text DEFAULT NULL, after_at timestamptz DEFAULT NULL,
											after_id uuid DEFAULT NULL, page_size integer DEFAULT 100)
RETURNS TABLE (event_id uuid, peer_number text, action text, rule text, keyword text, inbound_text text,
			   normalized text, message_id uuid, confirmation_id uuid, at timestamptz, changed_by text,
			   reason text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	who text;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	page_size := coalesce(page_size, 100);
	IF page_size NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'page_size must be 1 to 1000' USING ERRCODE = '22023',
			HINT = 'Page on with after_at and after_id from the last row.';
	END IF;
	IF (after_at IS NULL) <> (after_id IS NULL) THEN
		RAISE EXCEPTION 'after_at and after_id go together' USING ERRCODE = '22023',
			HINT = 'Give both, from the last row of the previous page, or neither.';
	END IF;
	IF number IS NOT NULL THEN
		who := coalesce(eightms.try_e164(number, (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct), false),
						left(btrim(number), 32));
	END IF;
	RETURN QUERY
		SELECT e.event_id, e.number, e.action, e.rule, e.keyword, e.inbound_text, e.normalized, e.message_id,
			   e.confirmation_id, e.at, e.changed_by, e.reason
		  FROM eightms.consent_event e
		 WHERE e.account_id = acct
		   AND (who IS NULL OR e.number = who)
		   AND (after_at IS NULL OR (e.at, e.event_id) > (after_at, after_id))
		 ORDER BY e.at, e.event_id
		 LIMIT page_size;
END
$$;

GRANT EXECUTE ON FUNCTION eightms.consent_ascii(text), eightms.consent_normalize_unicode(text), eightms.consent_normalize(text),
	eightms.consent_classify(text),
	eightms.consent_keyword(text),
	eightms.consent_default(text), eightms.consent_rates_notice(text),
	eightms.consent_render(text, text, text, text), eightms.consent_text(uuid, text),
	eightms.change_consent(uuid, uuid, uuid, text, text, uuid, text, text, text, text),
	eightms.apply_consent(uuid, uuid, uuid, text, uuid, text)
TO eightms_user, eightms_phone, eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.check_consent_kind(text), eightms.open_consent_review(uuid) TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.set_consent_template(text, text), eightms_api.reset_consent_template(text),
	eightms_api.consent_templates(), eightms_api.send_consent_clarification(uuid),
	eightms_api.resolve_consent_review(uuid, boolean),
	eightms_api.consent_history(text, timestamptz, uuid, integer)
TO eightms_user;
