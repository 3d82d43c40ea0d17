-- templates.sql: an account's message templates (doc/contacts.md,
-- "Templates"): named bodies with placeholders for a contact's names,
-- company and custom fields, each with an optional fallback, checked when
-- saved and rendered in C (src/template/) for previews and campaigns.
--
-- Members read the table (row-level security keeps each account's own)
-- and write it only through the functions below.  Every statement names
-- the account by value: on Citus it is routed to the account's shard.

CREATE TABLE eightms.message_template (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	template_id	uuid NOT NULL DEFAULT eightms.uuid_v7(),
	name		text NOT NULL
		CONSTRAINT message_template_name_check CHECK (length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
	-- Ten GSM-7 segments' worth before rendering.
	body		text NOT NULL
		CONSTRAINT message_template_body_check CHECK (length(body) BETWEEN 1 AND 1600),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, template_id),
	CONSTRAINT message_template_name_key UNIQUE (account_id, name)
);
COMMENT ON TABLE eightms.message_template IS
	'An account''s message templates: a name (unique in the account) and a body with {{placeholders}}';
SELECT pg_catalog.pg_extension_config_dump('eightms.message_template', '');
ALTER TABLE eightms.message_template ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.message_template FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.message_template
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- Members read; every write goes through the functions below.
GRANT SELECT ON eightms.message_template TO eightms_user;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('message_template', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('message_template', 'template_id', 'operational', 'account', 'account_lifetime', 'key'),
	('message_template', 'name', 'content', 'account', 'account_lifetime', 'the account''s name for the template'),
	('message_template', 'body', 'content', 'account', 'account_lifetime', 'the account''s message text'),
	('message_template', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('message_template', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp');

-- ------------------------------------------------------------ the engine

CREATE FUNCTION eightms.render_template(body text, first_name text, last_name text, company text, custom jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'eightms_render_template'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION eightms.render_template(text, text, text, text, jsonb) IS
	'The body with each placeholder replaced by the contact''s value, or its fallback when the value is NULL or empty; the parsed body is kept per call site';

CREATE FUNCTION eightms.template_fields(body text, OUT names text[], OUT positions integer[])
RETURNS record
AS 'MODULE_PATHNAME', 'eightms_template_fields'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.template_fields(text) IS
	'The custom fields a template names, each once with the character of its first placeholder; 22023 with the position when the body is not a template';

-- Whether body can be saved as a template of the account: 1 to 1600
-- characters, every placeholder known, every custom field one the account
-- defines.  22023 otherwise, with the character of the placeholder at
-- fault (never the body).  Saving and campaigns call it.
CREATE FUNCTION eightms.template_check(acct uuid, body text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f record;
	defined text[];
	bad integer;
BEGIN
	IF body IS NULL OR length(body) NOT BETWEEN 1 AND 1600 THEN
		RAISE EXCEPTION 'a template''s body is 1 to 1600 characters' USING ERRCODE = '22023';
	END IF;
	f := eightms.template_fields(body);
	IF cardinality(f.names) > 0 THEN
		defined := ARRAY(SELECT c.name FROM eightms.contact_field c
						  WHERE c.account_id = acct AND c.name = ANY (f.names));
		SELECT min(u.position) INTO bad FROM unnest(f.names, f.positions) AS u(name, position)
		 WHERE NOT u.name = ANY (defined);
		IF bad IS NOT NULL THEN
			RAISE EXCEPTION 'unknown custom field at character % of the template', bad USING ERRCODE = '22023',
				HINT = 'Define it with set_contact_field(name, type); contact_fields() lists the account''s fields.';
		END IF;
	END IF;
END
$$;

-- What a rendered text is as the send path would queue it
-- (eightms.queue_message): folded first when the account folds
-- look-alikes, then its encoding and segments; the characters that force
-- UCS-2, each once in order of appearance; and whether folding changed it.
CREATE FUNCTION eightms.template_preview(body text, fold boolean,
										 OUT rendered text, OUT encoding text, OUT segments integer,
										 OUT ucs2_chars text[], OUT folded boolean)
RETURNS record
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	i record;
BEGIN
	rendered := body;
	IF body IS NOT NULL AND fold THEN
		rendered := eightms.sms_fold(body);
	END IF;
	folded := rendered IS DISTINCT FROM body;
	i := eightms.sms_info(coalesce(rendered, ''));
	encoding := i.encoding;
	segments := i.segments;
	ucs2_chars := '{}';
	IF i.encoding = 'ucs2' THEN
		ucs2_chars := ARRAY(SELECT u.ch FROM (SELECT s.ch COLLATE "C" AS ch, min(s.n) AS n
												FROM regexp_split_to_table(rendered, '') WITH ORDINALITY AS s(ch, n)
											   WHERE (eightms.sms_info(s.ch)).encoding = 'ucs2'
											   GROUP BY 1) u
							 ORDER BY u.n);
	END IF;
END
$$;

-- ------------------------------------------------------------ API

-- Save a template (owner, admin or agent): created, or its body replaced
-- when the account has one of that name.  Its id.
CREATE FUNCTION eightms_api.save_template(name text, body text) RETURNS uuid
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
	name := btrim(name);
	IF name IS NULL OR length(name) NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'a template''s name is 1 to 100 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM eightms.template_check(acct, body);
	IF (SELECT count(*) FROM eightms.message_template t WHERE t.account_id = acct AND t.name <> save_template.name) >= 1000 THEN
		RAISE EXCEPTION 'an account has at most 1000 templates' USING ERRCODE = '22023',
			HINT = 'Delete one with delete_template first.';
	END IF;
	INSERT INTO eightms.message_template AS t (account_id, name, body, created_at, updated_at)
	VALUES (acct, save_template.name, save_template.body, at, at)
	ON CONFLICT ON CONSTRAINT message_template_name_key DO UPDATE
		SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at
	RETURNING t.template_id INTO id;
	RETURN id;
END
$$;

-- The account's templates, by name (any member).
CREATE FUNCTION eightms_api.templates()
RETURNS TABLE (template_id uuid, name text, body text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	RETURN QUERY SELECT t.template_id, t.name, t.body, t.created_at, t.updated_at
				   FROM eightms.message_template t WHERE t.account_id = acct ORDER BY t.name;
END
$$;

-- One template by its name (any member).
CREATE FUNCTION eightms_api.get_template(name text)
RETURNS TABLE (template_id uuid, body text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	wanted text := btrim(get_template.name);
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	RETURN QUERY SELECT t.template_id, t.body, t.created_at, t.updated_at
				   FROM eightms.message_template t WHERE t.account_id = acct AND t.name = wanted;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no template of that name' USING ERRCODE = 'P0002', HINT = 'templates() lists them.';
	END IF;
END
$$;

CREATE FUNCTION eightms_api.delete_template(name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	DELETE FROM eightms.message_template t WHERE t.account_id = acct AND t.name = btrim(delete_template.name);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no template of that name' USING ERRCODE = 'P0002', HINT = 'templates() lists them.';
	END IF;
END
$$;

-- A body rendered for some of the account's contacts (any member): those
-- named, in that order (an id not the account's is P0002), or the first
-- sample_count by creation; an account without contacts gets one row
-- rendered without values (the fallbacks), contact_id NULL.  Each row as
-- the send path would queue it (eightms.template_preview).
CREATE FUNCTION eightms_api.preview_template(body text, contact_ids uuid[] DEFAULT NULL, sample_count integer DEFAULT 3)
RETURNS TABLE (contact_id uuid, rendered text, encoding text, segments integer, ucs2_chars text[], folded boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	fold boolean;
	known uuid[];
	missing uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	PERFORM eightms.template_check(acct, body);
	sample_count := coalesce(sample_count, 3);
	IF sample_count NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'sample_count must be 1 to 100' USING ERRCODE = '22023';
	END IF;
	IF cardinality(contact_ids) > 100 THEN
		RAISE EXCEPTION 'contact_ids must be at most 100 ids' USING ERRCODE = '22023';
	END IF;
	SELECT a.fold_lookalikes INTO fold FROM eightms.account a WHERE a.account_id = acct;
	IF contact_ids IS NOT NULL THEN
		known := ARRAY(SELECT x.contact_id FROM eightms.contact x
						WHERE x.account_id = acct AND x.contact_id = ANY (contact_ids));
		SELECT u.id INTO missing FROM unnest(contact_ids) AS u(id) WHERE NOT u.id = ANY (known) LIMIT 1;
		IF missing IS NOT NULL THEN
			RAISE EXCEPTION 'no contact %', missing USING ERRCODE = 'P0002';
		END IF;
	END IF;
	RETURN QUERY
	SELECT x.contact_id, p.*
	  FROM eightms.contact x
	 CROSS JOIN LATERAL eightms.template_preview(
			eightms.render_template(body, x.first_name, x.last_name, x.company, x.custom), fold) p
	 WHERE x.account_id = acct AND (contact_ids IS NULL OR x.contact_id = ANY (contact_ids))
	 ORDER BY array_position(contact_ids, x.contact_id), x.created_at, x.contact_id
	 LIMIT CASE WHEN contact_ids IS NULL THEN sample_count END;
	IF NOT FOUND AND contact_ids IS NULL THEN
		RETURN QUERY SELECT NULL::uuid, p.*
					   FROM eightms.template_preview(eightms.render_template(body, NULL, NULL, NULL, NULL), fold) p;
	END IF;
END
$$;

GRANT EXECUTE ON FUNCTION eightms.render_template(text, text, text, text, jsonb), eightms.template_fields(text),
	eightms.template_check(uuid, text), eightms.template_preview(text, boolean)
TO eightms_user, eightms_dba;
GRANT EXECUTE ON FUNCTION eightms_api.save_template(text, text), eightms_api.templates(),
	eightms_api.get_template(text), eightms_api.delete_template(text),
	eightms_api.preview_template(text, uuid[], integer)
TO eightms_user;
