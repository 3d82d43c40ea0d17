-- contacts.sql: the account's contacts (a number with a name, an email, a
-- company, custom fields and tags), the definitions of its custom fields,
-- and the opt-out list made visible and manageable by members
-- (doc/contacts.md).
--
-- Members read both tables (row-level security keeps each account's own);
-- they write them only through the functions below, which check every
-- value: a number read by the phone engine with the account's region, an
-- email lower-cased, custom values against the account's definitions.
-- Every statement names the account by value: on Citus it is routed to the
-- account's shard.

-- ------------------------------------------------------------ tables

CREATE TABLE eightms.contact_field (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	name		text NOT NULL
		CONSTRAINT contact_field_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
	type		text NOT NULL
		CONSTRAINT contact_field_type_check CHECK (type IN ('text', 'number', 'date', 'boolean', 'choice')),
	-- The values a choice may take; NULL for every other type.
	choices		text[]
		CONSTRAINT contact_field_choices_check
			CHECK ((type = 'choice') = (choices IS NOT NULL) AND (choices IS NULL OR cardinality(choices) BETWEEN 1 AND 100)),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, name)
);
COMMENT ON TABLE eightms.contact_field IS
	'The custom fields an account defines for its contacts: name, type (text, number, date, boolean, choice), choices';
SELECT pg_catalog.pg_extension_config_dump('eightms.contact_field', '');

CREATE TABLE eightms.contact (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	-- Time-ordered, as message ids: appended at the right of the key.
	contact_id	uuid NOT NULL DEFAULT eightms.uuid_v7(),
	-- E.164, read by the phone engine with the account's region; compared
	-- byte by byte, as the gateway's numbers (gateway_tables.sql).
	phone		text COLLATE "C" NOT NULL
		CONSTRAINT contact_phone_check CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
	first_name	text CONSTRAINT contact_first_name_check CHECK (length(first_name) BETWEEN 1 AND 100),
	last_name	text CONSTRAINT contact_last_name_check CHECK (length(last_name) BETWEEN 1 AND 100),
	email		text CONSTRAINT contact_email_check CHECK (length(email) <= 320 AND email = lower(email)),
	company		text CONSTRAINT contact_company_check CHECK (length(company) BETWEEN 1 AND 200),
	custom		jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT contact_custom_check CHECK (jsonb_typeof(custom) = 'object'),
	tags		text[] NOT NULL DEFAULT '{}'
		CONSTRAINT contact_tags_check CHECK (cardinality(tags) <= 100),
	source		text NOT NULL
		CONSTRAINT contact_source_check CHECK (source IN ('import', 'api', 'inbound')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	-- The zone a campaign's send window is read in for this contact when
	-- its number's region has more than one (doc/campaigns.md); NULL: the
	-- account's.
	time_zone	text CONSTRAINT contact_time_zone_check CHECK (eightms.is_timezone_name(time_zone)),
	PRIMARY KEY (account_id, contact_id),
	CONSTRAINT contact_phone_key UNIQUE (account_id, phone)
);
COMMENT ON TABLE eightms.contact IS
	'An account''s contacts: E.164 number (unique in the account), name, email, company, custom fields, tags, source';

-- What the search reads (doc/contacts.md): the names, email, company and
-- number in one lower-case text, trigram-indexed for substrings and
-- fuzzy matches.
CREATE FUNCTION eightms.contact_search_text(first_name text, last_name text, email text, company text, phone text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT lower(concat_ws(' ', first_name, last_name, email, company, phone))
$$;
-- The name order: last name, then first name, case-insensitive.
CREATE FUNCTION eightms.contact_sort_name(first_name text, last_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT lower(concat_ws(' ', last_name, first_name))
$$;
GRANT EXECUTE ON FUNCTION eightms.contact_search_text(text, text, text, text, text),
	eightms.contact_sort_name(text, text) TO eightms_user, eightms_phone, eightms_dba;

CREATE INDEX contact_created_idx ON eightms.contact (account_id, created_at, contact_id);
CREATE INDEX contact_updated_idx ON eightms.contact (account_id, updated_at, contact_id);
CREATE INDEX contact_name_idx ON eightms.contact (account_id, eightms.contact_sort_name(first_name, last_name), contact_id);
CREATE INDEX contact_tags_idx ON eightms.contact USING gin (tags);
CREATE INDEX contact_custom_idx ON eightms.contact USING gin (custom);
CREATE INDEX contact_search_idx ON eightms.contact
	USING gin (eightms.contact_search_text(first_name, last_name, email, company, phone) gin_trgm_ops);
SELECT pg_catalog.pg_extension_config_dump('eightms.contact', '');

ALTER TABLE eightms.contact ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.contact FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.contact
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.contact_field ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.contact_field FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.contact_field
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- Members read; every write goes through the functions below.
GRANT SELECT ON eightms.contact, eightms.contact_field TO eightms_user;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('contact', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact', 'contact_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('contact', 'phone', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('contact', 'first_name', 'personal', 'contact', 'account_lifetime', 'the contact''s first name'),
	('contact', 'last_name', 'personal', 'contact', 'account_lifetime', 'the contact''s last name'),
	('contact', 'email', 'personal', 'contact', 'account_lifetime', 'the contact''s email'),
	('contact', 'company', 'personal', 'contact', 'account_lifetime', 'the contact''s company'),
	('contact', 'custom', 'content', 'contact', 'account_lifetime', 'what the account records about the contact'),
	('contact', 'tags', 'content', 'contact', 'account_lifetime', 'the account''s labels for the contact'),
	('contact', 'source', 'operational', 'contact', 'account_lifetime', 'import, api or inbound'),
	('contact', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('contact', 'updated_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('contact', 'time_zone', 'personal', 'contact', 'account_lifetime', 'the zone its send windows are read in'),
	('contact_field', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_field', 'name', 'operational', 'account', 'account_lifetime', 'definition'),
	('contact_field', 'type', 'operational', 'account', 'account_lifetime', 'definition'),
	('contact_field', 'choices', 'operational', 'account', 'account_lifetime', 'definition'),
	('contact_field', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('contact_field', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp');

-- ------------------------------------------------------------ values

-- Whether a custom value fits its field: text a string of at most 1000
-- characters, number a JSON number, date a string YYYY-MM-DD of a real
-- day, boolean true or false, choice one of the choices.
CREATE FUNCTION eightms.custom_value_ok(type text, choices text[], value jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	CASE type
	WHEN 'text' THEN
		RETURN jsonb_typeof(value) = 'string' AND length(value #>> '{}') BETWEEN 1 AND 1000;
	WHEN 'number' THEN
		RETURN jsonb_typeof(value) = 'number';
	WHEN 'boolean' THEN
		RETURN jsonb_typeof(value) = 'boolean';
	WHEN 'choice' THEN
		RETURN jsonb_typeof(value) = 'string' AND (value #>> '{}') = ANY (choices);
	WHEN 'date' THEN
		IF jsonb_typeof(value) <> 'string' OR (value #>> '{}') !~ '^\d{4}-\d{2}-\d{2}$' THEN
			RETURN false;
		END IF;
		RETURN to_char((value #>> '{}')::date, 'YYYY-MM-DD') = value #>> '{}';
	ELSE
		RETURN false;
	END CASE;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
	RETURN false;
END
$$;

-- A contact's custom values checked against the account's fields, merged
-- into what it had: a key with null removes it.  Errors name the field
-- (the account's own definition), never the value.
CREATE FUNCTION eightms.contact_custom(acct uuid, old jsonb, changes jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	f eightms.contact_field;
	res jsonb := coalesce(old, '{}');
BEGIN
	IF changes IS NULL OR jsonb_typeof(changes) = 'null' THEN
		RETURN '{}';
	END IF;
	IF jsonb_typeof(changes) <> 'object' THEN
		RAISE EXCEPTION 'custom must be a JSON object of field names and values' USING ERRCODE = '22023',
			HINT = 'e.g. {"plan": "gold", "renews_on": "2025-01-31"}; define fields with set_contact_field.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(changes) LOOP
		SELECT * INTO f FROM eightms.contact_field x WHERE x.account_id = acct AND x.name = k;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'custom field "%" is not defined', left(k, 40) USING ERRCODE = '22023',
				HINT = 'Define it with set_contact_field(name, type); contact_fields() lists the account''s fields.';
		END IF;
		IF jsonb_typeof(v) = 'null' THEN
			res := res - k;
		ELSIF NOT eightms.custom_value_ok(f.type, f.choices, v) THEN
			RAISE EXCEPTION 'custom field "%" takes a value of type %', k, f.type USING ERRCODE = '22023',
				HINT = CASE f.type WHEN 'date' THEN 'A date is a string YYYY-MM-DD.'
								   WHEN 'number' THEN 'A number is a JSON number, not a string.'
								   WHEN 'boolean' THEN 'A boolean is true or false.'
								   WHEN 'choice' THEN 'The value must be one of the field''s choices.'
								   ELSE 'Text is a string of 1 to 1000 characters.' END;
		ELSE
			res := jsonb_set(res, ARRAY[k], v);
		END IF;
	END LOOP;
	RETURN res;
END
$$;

-- One text field of a contact from its JSON: trimmed, empty as NULL, at
-- most max characters.
CREATE FUNCTION eightms.contact_text(data jsonb, key text, max integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := data -> key;
BEGIN
	IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(v) <> 'string' OR length(btrim(v #>> '{}')) > max THEN
		RAISE EXCEPTION '% must be a string of at most % characters', key, max USING ERRCODE = '22023';
	END IF;
	RETURN nullif(btrim(v #>> '{}'), '');
END
$$;

-- Whether a lower-cased email is an address name@domain.tld (NULL: no
-- email); the one check of create_contact, update_contact and the import.
CREATE FUNCTION eightms.contact_email_ok(email text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT email ~ '^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$'
$$;

-- A contact's row from its JSON (the keys of doc/contacts.md), applied
-- over old (NULL: a new contact): a key absent keeps the old value, a key
-- with null clears it.  Checks every value; the number is read with the
-- account's region.
CREATE FUNCTION eightms.contact_apply(acct uuid, old eightms.contact, data jsonb) RETURNS eightms.contact
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c eightms.contact := old;
	k text;
	t jsonb;
	region text;
BEGIN
	IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
		RAISE EXCEPTION 'a contact is a JSON object' USING ERRCODE = '22023',
			HINT = 'Keys: phone, first_name, last_name, email, company, custom, tags.';
	END IF;
	FOR k IN SELECT jsonb_object_keys(data) LOOP
		IF k NOT IN ('phone', 'first_name', 'last_name', 'email', 'company', 'custom', 'tags') THEN
			RAISE EXCEPTION 'a contact has no key "%"', left(k, 40) USING ERRCODE = '22023',
				HINT = 'Keys: phone, first_name, last_name, email, company, custom, tags.';
		END IF;
	END LOOP;
	IF data ? 'phone' OR old IS NULL THEN
		IF jsonb_typeof(data -> 'phone') IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'a contact needs a phone number' USING ERRCODE = '22023',
				HINT = 'phone is a string, in international format or the account''s national one.';
		END IF;
		SELECT a.default_region INTO region FROM eightms.account a WHERE a.account_id = acct;
		c.phone := eightms.try_e164(left(data ->> 'phone', 64), region, true);
		IF c.phone IS NULL THEN
			RAISE EXCEPTION 'phone is not a valid phone number' USING ERRCODE = '22023',
				HINT = 'Write it in international format (+<country code>...), or in the national format of the account''s region.';
		END IF;
	END IF;
	IF data ? 'first_name' THEN
		c.first_name := eightms.contact_text(data, 'first_name', 100);
	END IF;
	IF data ? 'last_name' THEN
		c.last_name := eightms.contact_text(data, 'last_name', 100);
	END IF;
	IF data ? 'company' THEN
		c.company := eightms.contact_text(data, 'company', 200);
	END IF;
	IF data ? 'email' THEN
		c.email := lower(eightms.contact_text(data, 'email', 320));
		IF NOT eightms.contact_email_ok(c.email) THEN
			RAISE EXCEPTION 'email is not an email address' USING ERRCODE = '22023',
				HINT = 'An address is name@domain.tld.';
		END IF;
	END IF;
	IF data ? 'custom' THEN
		c.custom := eightms.contact_custom(acct, c.custom, data -> 'custom');
	END IF;
	c.custom := coalesce(c.custom, '{}');
	IF data ? 'tags' THEN
		t := data -> 'tags';
		IF jsonb_typeof(t) = 'null' THEN
			c.tags := '{}';
		ELSIF jsonb_typeof(t) <> 'array' OR jsonb_array_length(t) > 100
			  OR EXISTS (SELECT FROM jsonb_array_elements(t) e
						  WHERE jsonb_typeof(e) <> 'string' OR length(btrim(e #>> '{}')) NOT BETWEEN 1 AND 50) THEN
			RAISE EXCEPTION 'tags must be an array of at most 100 strings of 1 to 50 characters' USING ERRCODE = '22023';
		ELSE
			-- Trimmed and each once, in the order given.
			c.tags := ARRAY(SELECT x FROM (SELECT btrim(e) AS x, min(i) AS i
											 FROM jsonb_array_elements_text(t) WITH ORDINALITY AS u(e, i)
											GROUP BY btrim(e)) s ORDER BY s.i);
		END IF;
	END IF;
	c.tags := coalesce(c.tags, '{}');
	RETURN c;
END
$$;

-- ------------------------------------------------------------ contacts API

-- A new contact (owner, admin or agent) from a JSON object; its id.  The
-- same number twice in the account is refused (23505).
CREATE FUNCTION eightms_api.create_contact(contact jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.contact;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	c := eightms.contact_apply(acct, NULL, contact);
	INSERT INTO eightms.contact (account_id, phone, first_name, last_name, email, company, custom, tags, source)
	VALUES (acct, c.phone, c.first_name, c.last_name, c.email, c.company, c.custom, c.tags, 'api')
	ON CONFLICT ON CONSTRAINT contact_phone_key DO NOTHING
	RETURNING contact_id INTO c.contact_id;
	IF c.contact_id IS NULL THEN
		RAISE EXCEPTION 'the account has a contact with this phone number already' USING ERRCODE = '23505',
			HINT = 'Find it with contacts(search => the number) and update it.';
	END IF;
	RETURN c.contact_id;
END
$$;

-- Change a contact (owner, admin or agent): only the keys given; a key
-- with null clears it (not phone); custom keys are merged, each null one
-- removed; tags replace the list.
CREATE FUNCTION eightms_api.update_contact(contact_id uuid, changes jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	c eightms.contact;
	at timestamptz := now();
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	SELECT * INTO c FROM eightms.contact x
	 WHERE x.account_id = acct AND x.contact_id = update_contact.contact_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no contact %', update_contact.contact_id USING ERRCODE = 'P0002';
	END IF;
	c := eightms.contact_apply(acct, c, changes);
	IF EXISTS (SELECT FROM eightms.contact x
				WHERE x.account_id = acct AND x.phone = c.phone AND x.contact_id <> c.contact_id) THEN
		RAISE EXCEPTION 'the account has another contact with this phone number' USING ERRCODE = '23505';
	END IF;
	UPDATE eightms.contact x
	   SET phone = c.phone, first_name = c.first_name, last_name = c.last_name, email = c.email,
		   company = c.company, custom = c.custom, tags = c.tags, updated_at = at
	 WHERE x.account_id = acct AND x.contact_id = c.contact_id;
END
$$;

CREATE FUNCTION eightms_api.delete_contact(contact_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	DELETE FROM eightms.contact x WHERE x.account_id = acct AND x.contact_id = delete_contact.contact_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no contact %', delete_contact.contact_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- Delete the contacts named (ids not in the account are skipped); how many
-- went.  At most 10,000 ids a call.
CREATE FUNCTION eightms_api.delete_contacts(contact_ids uuid[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	n bigint;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF contact_ids IS NULL OR cardinality(contact_ids) > 10000 THEN
		RAISE EXCEPTION 'contact_ids must be an array of at most 10000 ids' USING ERRCODE = '22023',
			HINT = 'Delete in pages, or all of them with delete_all_contacts.';
	END IF;
	DELETE FROM eightms.contact x WHERE x.account_id = acct AND x.contact_id = ANY (contact_ids);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- Every contact of the account (owner or admin), confirmed by the number
-- the caller believes it has: when it holds another number of contacts
-- now, nothing is deleted (E8C01).  Returns how many went.
CREATE FUNCTION eightms_api.delete_all_contacts(expected_count bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	n bigint;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	IF expected_count IS NULL OR expected_count < 0 THEN
		RAISE EXCEPTION 'expected_count must be the number of contacts the account has' USING ERRCODE = '22023',
			HINT = 'Read it from contact_count().';
	END IF;
	-- Deleted, then counted: what was deleted is exactly what is compared,
	-- whatever was added meanwhile, and a mismatch undoes it all.
	DELETE FROM eightms.contact x WHERE x.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n <> expected_count THEN
		RAISE EXCEPTION 'the account has % contacts, not %', n, expected_count USING ERRCODE = 'E8C01',
			HINT = 'Nothing was deleted. Read the count again (contact_count()), check it with the user, and call again with it.';
	END IF;
	RETURN n;
END
$$;

CREATE FUNCTION eightms_api.contact_count() RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	n bigint;
BEGIN
	SELECT count(*) INTO n FROM eightms.contact x WHERE x.account_id = acct;
	RETURN n;
END
$$;

-- The page of contacts a WHERE clause selects ($1 the account, $2.. the
-- arguments of the caller's clause), with each one's consent state and
-- its cursor.  The one query of get_contact and contacts.
CREATE FUNCTION eightms.contact_rows(acct uuid, cond text, order_by text, sort_key text, lim integer,
									 a2 text DEFAULT NULL, a3 text DEFAULT NULL, a4 text DEFAULT NULL,
									 a5 text[] DEFAULT NULL, a6 text[] DEFAULT NULL, a7 text DEFAULT NULL,
									 a8 uuid DEFAULT NULL, a9 boolean DEFAULT NULL)
RETURNS TABLE (contact_id uuid, phone text, first_name text, last_name text, email text, company text,
			   custom jsonb, tags text[], source text, created_at timestamptz, updated_at timestamptz,
			   opted_out boolean, opted_out_at timestamptz, sort_value text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- Both tables keyed by the account's value: one shard on Citus.
	RETURN QUERY EXECUTE format(
		'SELECT c.contact_id, c.phone::text, c.first_name, c.last_name, c.email, c.company, c.custom, c.tags,
				c.source, c.created_at, c.updated_at, o.number IS NOT NULL, o.opted_out_at, (%s)::text
		   FROM eightms.contact c
		   LEFT JOIN eightms.opt_out o ON o.account_id = $1 AND o.account_id = c.account_id AND o.number = c.phone
		  WHERE c.account_id = $1 AND (%s)
		  ORDER BY %s
		  LIMIT %s', sort_key, cond, order_by, lim)
		USING acct, a2, a3, a4, a5, a6, a7, a8, a9;
END
$$;

CREATE FUNCTION eightms_api.get_contact(id uuid)
RETURNS TABLE (contact_id uuid, phone text, first_name text, last_name text, email text, company text,
			   custom jsonb, tags text[], source text, created_at timestamptz, updated_at timestamptz,
			   opted_out boolean, opted_out_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	RETURN QUERY
	SELECT r.contact_id, r.phone, r.first_name, r.last_name, r.email, r.company, r.custom, r.tags, r.source,
		   r.created_at, r.updated_at, r.opted_out, r.opted_out_at
	  FROM eightms.contact_rows(acct, 'c.contact_id = $8', 'c.contact_id', 'NULL', 1,
								a8 => get_contact.id) r;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no contact %', get_contact.id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- One comparison of a custom field for the contacts list: {"field": name,
-- "op": eq|ne|lt|lte|gt|gte|exists|missing, "value": v}, as SQL with the
-- value quoted, typed by the field's definition.
CREATE FUNCTION eightms.contact_custom_filter(acct uuid, f jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d eightms.contact_field;
	op text := f ->> 'op';
	v jsonb := f -> 'value';
	cast_to text;
BEGIN
	IF jsonb_typeof(f) IS DISTINCT FROM 'object' OR jsonb_typeof(f -> 'field') IS DISTINCT FROM 'string' THEN
		RAISE EXCEPTION 'a custom filter is {"field": name, "op": ..., "value": ...}' USING ERRCODE = '22023';
	END IF;
	SELECT * INTO d FROM eightms.contact_field x WHERE x.account_id = acct AND x.name = f ->> 'field';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'custom field "%" is not defined', left(f ->> 'field', 40) USING ERRCODE = '22023',
			HINT = 'contact_fields() lists the account''s fields.';
	END IF;
	IF op = 'exists' THEN
		RETURN format('c.custom ? %L', d.name);
	ELSIF op = 'missing' THEN
		RETURN format('NOT c.custom ? %L', d.name);
	ELSIF op IS NULL OR op NOT IN ('eq', 'ne', 'lt', 'lte', 'gt', 'gte') THEN
		RAISE EXCEPTION 'a custom filter''s op is eq, ne, lt, lte, gt, gte, exists or missing' USING ERRCODE = '22023';
	END IF;
	IF v IS NULL OR NOT eightms.custom_value_ok(d.type, d.choices, v) THEN
		RAISE EXCEPTION 'custom filter on "%" needs a value of type %', d.name, d.type USING ERRCODE = '22023';
	END IF;
	IF op = 'eq' THEN
		-- Containment: the GIN index on custom answers it.
		RETURN format('c.custom @> %L', jsonb_build_object(d.name, v));
	ELSIF op = 'ne' THEN
		RETURN format('NOT c.custom @> %L', jsonb_build_object(d.name, v));
	ELSIF d.type IN ('boolean', 'choice') THEN
		RAISE EXCEPTION 'a % field compares only with eq or ne', d.type USING ERRCODE = '22023';
	END IF;
	cast_to := CASE d.type WHEN 'number' THEN 'numeric' WHEN 'date' THEN 'date' ELSE 'text' END;
	RETURN format('(c.custom ->> %L)::%s %s %L::%s', d.name, cast_to,
				  CASE op WHEN 'lt' THEN '<' WHEN 'lte' THEN '<=' WHEN 'gt' THEN '>' ELSE '>=' END,
				  v #>> '{}', cast_to);
END
$$;

-- The account's contacts, a page at a time (any member):
--   search     a name, email, company or number: substrings of each, and
--              fuzzy (trigram word similarity); a query that reads as a
--              number finds it in any format (the account's region for a
--              national one), or by its digits;
--   tags_any / tags_all  contacts with any / all of these tags;
--   where_custom     a JSON array of comparisons of custom fields
--                    (contact_custom_filter);
--   where_opted_out  true: only those opted out; false: only those not;
--   sort       name, created_at or updated_at; descending;
--   after      the cursor of the last row of the previous page (opaque);
-- Each row says whether its number has opted out, and since when.
CREATE FUNCTION eightms_api.contacts(search text DEFAULT NULL, tags_any text[] DEFAULT NULL,
									 tags_all text[] DEFAULT NULL, where_custom jsonb DEFAULT NULL,
									 where_opted_out boolean DEFAULT NULL, sort text DEFAULT 'created_at',
									 descending boolean DEFAULT false, after text DEFAULT NULL,
									 page_size integer DEFAULT 50)
RETURNS TABLE (contact_id uuid, phone text, first_name text, last_name text, email text, company text,
			   custom jsonb, tags text[], source text, created_at timestamptz, updated_at timestamptz,
			   opted_out boolean, opted_out_at timestamptz, cursor text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	conds text[] := ARRAY['true'];
	key_expr text;
	key_type text;
	q text;
	num text;
	digits text;
	trgm text;
	cur jsonb;
	f jsonb;
	after_key text;
	after_id uuid;
	dir text;
BEGIN
	descending := coalesce(descending, false);
	dir := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
	sort := coalesce(sort, 'created_at');
	IF sort NOT IN ('name', 'created_at', 'updated_at') THEN
		RAISE EXCEPTION 'sort is name, created_at or updated_at' USING ERRCODE = '22023';
	END IF;
	page_size := coalesce(page_size, 50);
	IF page_size NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'page_size must be 1 to 200' USING ERRCODE = '22023',
			HINT = 'Page on with the cursor of the last row.';
	END IF;
	key_expr := CASE sort WHEN 'name' THEN 'eightms.contact_sort_name(c.first_name, c.last_name)'
						  ELSE 'c.' || sort END;
	-- Never NULL (the name is '' without one): keyset comparisons hold.
	key_type := CASE sort WHEN 'name' THEN 'text' ELSE 'timestamptz' END;

	q := lower(btrim(left(search, 200)));
	IF q <> '' THEN
		digits := regexp_replace(q, '\D', '', 'g');
		IF q ~ '^[0-9+()./ -]+$' AND length(digits) >= 3 THEN
			-- A number: as the engine reads it in the account's region, or
			-- any number with these digits.
			num := eightms.try_e164(q, (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct), false);
			conds := conds || 'c.phone = $3 OR c.phone LIKE ''%'' || $4 || ''%'''::text;
		ELSE
			-- Substrings through the trigram index; a single word also
			-- fuzzily, by word similarity (pg_trgm's <% operator, from its
			-- own schema), for a misspelt name.
			IF q ~ '^\w{3,}$' THEN
				SELECT e.extnamespace::regnamespace::text INTO trgm FROM pg_extension e WHERE e.extname = 'pg_trgm';
			END IF;
			conds := conds || (
				'eightms.contact_search_text(c.first_name, c.last_name, c.email, c.company, c.phone) LIKE ''%'' || $2 || ''%'''
				|| CASE WHEN trgm IS NOT NULL THEN format(
					' OR $3 OPERATOR(%I.<%%) eightms.contact_search_text(c.first_name, c.last_name, c.email, c.company, c.phone)',
					trgm) ELSE '' END);
			-- $2 for LIKE, its wildcards escaped; $3 as written, for <%.
			num := q;
			q := replace(replace(replace(q, '\', '\\'), '%', '\%'), '_', '\_');
		END IF;
	END IF;
	IF tags_any IS NOT NULL THEN
		conds := conds || 'c.tags && $5'::text;
	END IF;
	IF tags_all IS NOT NULL THEN
		conds := conds || 'c.tags @> $6'::text;
	END IF;
	IF where_custom IS NOT NULL THEN
		IF jsonb_typeof(where_custom) <> 'array' OR jsonb_array_length(where_custom) > 20 THEN
			RAISE EXCEPTION 'where_custom is an array of at most 20 filters' USING ERRCODE = '22023',
				HINT = 'Each filter is {"field": name, "op": eq|ne|lt|lte|gt|gte|exists|missing, "value": ...}.';
		END IF;
		FOR f IN SELECT * FROM jsonb_array_elements(where_custom) LOOP
			conds := conds || eightms.contact_custom_filter(acct, f);
		END LOOP;
	END IF;
	IF where_opted_out IS NOT NULL THEN
		conds := conds || '(o.number IS NOT NULL) = $9'::text;
	END IF;
	IF after IS NOT NULL THEN
		BEGIN
			cur := convert_from(decode(left(after, 4000), 'hex'), 'UTF8')::jsonb;
			after_key := cur ->> 'k';
			after_id := (cur ->> 'i')::uuid;
		EXCEPTION WHEN OTHERS THEN
			cur := NULL;
		END;
		IF cur IS NULL OR jsonb_typeof(cur) <> 'object' OR after_id IS NULL
		   OR cur ->> 's' IS DISTINCT FROM sort OR (cur ->> 'd')::boolean IS DISTINCT FROM coalesce(descending, false)
		   OR after_key IS NULL THEN
			RAISE EXCEPTION 'after is not a cursor this list gave with this sort' USING ERRCODE = '22023',
				HINT = 'Pass the cursor of the last row of the previous page, with the same sort and descending.';
		END IF;
		conds := conds || format('(%s, c.contact_id) %s ($7::%s, $8)', key_expr,
								 CASE WHEN descending THEN '<' ELSE '>' END, key_type);
	END IF;

	RETURN QUERY
	SELECT r.contact_id, r.phone, r.first_name, r.last_name, r.email, r.company, r.custom, r.tags, r.source,
		   r.created_at, r.updated_at, r.opted_out, r.opted_out_at,
		   encode(convert_to(jsonb_build_object('s', sort, 'd', coalesce(descending, false), 'k', r.sort_value,
												'i', r.contact_id)::text, 'UTF8'), 'hex')
	  FROM eightms.contact_rows(acct, '(' || array_to_string(conds, ') AND (') || ')',
								format('%s %s, c.contact_id %s', key_expr, dir, dir),
								CASE WHEN sort = 'name' THEN key_expr ELSE format('to_jsonb(%s) #>> ''{}''', key_expr) END,
								page_size, q, num, digits, tags_any, tags_all, after_key, after_id, where_opted_out) r;
END
$$;

-- ------------------------------------------------------------ fields API

-- Define a custom field, or change one (owner or admin).  A change that
-- would leave a contact's value outside the new definition is refused,
-- with how many contacts hold such values.
CREATE FUNCTION eightms_api.set_contact_field(name text, type text, choices text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	n bigint;
	at timestamptz := now();
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'a field''s name is lower snake case, 1 to 40 characters, starting with a letter'
			USING ERRCODE = '22023', HINT = 'e.g. plan, renews_on, vip_level_2.';
	END IF;
	IF type IS NULL OR type NOT IN ('text', 'number', 'date', 'boolean', 'choice') THEN
		RAISE EXCEPTION 'a field''s type is text, number, date, boolean or choice' USING ERRCODE = '22023';
	END IF;
	IF (type = 'choice') <> (choices IS NOT NULL) THEN
		RAISE EXCEPTION 'choices go with type choice, and only with it' USING ERRCODE = '22023';
	END IF;
	IF choices IS NOT NULL THEN
		choices := ARRAY(SELECT DISTINCT btrim(x) FROM unnest(choices) x ORDER BY 1);
		IF cardinality(choices) NOT BETWEEN 1 AND 100
		   OR EXISTS (SELECT FROM unnest(choices) x WHERE x IS NULL OR length(x) NOT BETWEEN 1 AND 100) THEN
			RAISE EXCEPTION 'choices are 1 to 100 distinct strings of 1 to 100 characters' USING ERRCODE = '22023';
		END IF;
	END IF;
	IF (SELECT count(*) FROM eightms.contact_field f WHERE f.account_id = acct AND f.name <> set_contact_field.name) >= 100 THEN
		RAISE EXCEPTION 'an account has at most 100 custom fields' USING ERRCODE = '22023',
			HINT = 'Drop one with drop_contact_field first.';
	END IF;
	SELECT count(*) INTO n FROM eightms.contact c
	 WHERE c.account_id = acct AND c.custom ? set_contact_field.name
	   AND NOT eightms.custom_value_ok(set_contact_field.type, set_contact_field.choices, c.custom -> set_contact_field.name);
	IF n > 0 THEN
		RAISE EXCEPTION 'the field''s values of % contacts do not fit the new definition', n USING ERRCODE = '22023',
			HINT = 'Change or clear those values first (contacts(where_custom => [{"field": ..., "op": "exists"}]) finds them).';
	END IF;
	INSERT INTO eightms.contact_field AS f (account_id, name, type, choices, created_at, updated_at)
	VALUES (acct, set_contact_field.name, set_contact_field.type, set_contact_field.choices, at, at)
	ON CONFLICT ON CONSTRAINT contact_field_pkey DO UPDATE
		SET type = EXCLUDED.type, choices = EXCLUDED.choices, updated_at = EXCLUDED.updated_at;
END
$$;

-- Drop a custom field (owner or admin): its definition and, in one
-- statement, its key from every contact of the account that has it.
CREATE FUNCTION eightms_api.drop_contact_field(name text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	n bigint;
	at timestamptz := now();
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	DELETE FROM eightms.contact_field f WHERE f.account_id = acct AND f.name = drop_contact_field.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no custom field "%"', left(drop_contact_field.name, 40) USING ERRCODE = 'P0002';
	END IF;
	UPDATE eightms.contact c SET custom = c.custom - drop_contact_field.name, updated_at = at
	 WHERE c.account_id = acct AND c.custom ? drop_contact_field.name;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

CREATE FUNCTION eightms_api.contact_fields()
RETURNS TABLE (name text, type text, choices text[], created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	RETURN QUERY SELECT f.name, f.type, f.choices, f.created_at, f.updated_at
				   FROM eightms.contact_field f WHERE f.account_id = acct ORDER BY f.name;
END
$$;

-- ------------------------------------------------------------ opt-outs API

-- A number as a member writes it, read with the account's region; 22023
-- when it is not one.
CREATE FUNCTION eightms.member_number(acct uuid, number text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e164 text;
BEGIN
	e164 := eightms.try_e164(left(number, 64),
							 (SELECT a.default_region FROM eightms.account a WHERE a.account_id = acct), false);
	IF e164 IS NULL THEN
		RAISE EXCEPTION 'number is not a phone number' USING ERRCODE = '22023',
			HINT = 'Write it in international format (+<country code>...), or in the national format of the account''s region.';
	END IF;
	RETURN e164;
END
$$;

-- A change of consent a member makes by hand, as a STOP or START does it
-- (eightms.change_consent) but sending nothing: the number did not text.
-- It takes the consent lock (the number's conversation row, made if need
-- be) first, so that a send to the number either comes before and is
-- canceled here, or comes after and is refused.  Recorded with the
-- member's user id and the reason.  False when the number was in that
-- state already.
CREATE FUNCTION eightms.member_consent(acct uuid, number text, action text, reason text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	conv uuid;
	t timestamptz := now();
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	IF length(reason) > 500 THEN
		RAISE EXCEPTION 'a reason is at most 500 characters' USING ERRCODE = '22023';
	END IF;
	conv := eightms.conversation_for(acct, number, NULL);
	IF action = 'opt_out' THEN
		INSERT INTO eightms.opt_out (account_id, number, opted_out_at) VALUES (acct, member_consent.number, t)
		ON CONFLICT DO NOTHING;
		IF NOT FOUND THEN
			RETURN false;
		END IF;
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
		-- The opt-out counts for the campaign that reached the number last
		-- (sql/campaign_stats.sql).
		PERFORM eightms.attribute_answers(acct, ARRAY[member_consent.number], ARRAY[t], ARRAY[true]);
	ELSE
		DELETE FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = member_consent.number;
		IF NOT FOUND THEN
			RETURN false;
		END IF;
	END IF;
	INSERT INTO eightms.consent_event (account_id, event_id, number, action, rule, at, changed_by, reason)
	VALUES (acct, eightms.uuid_v7(), member_consent.number, action, 'member.' || action, t,
			eightms.current_user_id(), nullif(btrim(reason), ''));
	RETURN true;
END
$$;

-- Put a number on the account's opt-out list by hand (owner, admin or
-- agent): nothing more is sent to it, exactly as after a STOP.  False when
-- it was on the list already.
CREATE FUNCTION eightms_api.add_opt_out(number text, reason text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	RETURN eightms.member_consent(acct, eightms.member_number(acct, number), 'opt_out', reason);
END
$$;

-- Lift an opt-out (owner or admin), with the reason the number may be
-- texted again (the consent the account has on record).  False when the
-- number was not on the list.
CREATE FUNCTION eightms_api.remove_opt_out(number text, reason text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'lifting an opt-out needs a reason' USING ERRCODE = '22023',
			HINT = 'Say how the number gave its consent again, e.g. "asked by phone on 2025-03-01".';
	END IF;
	RETURN eightms.member_consent(acct, eightms.member_number(acct, number), 'opt_in', reason);
END
$$;

-- The account's opt-out list, newest first, a page at a time (any
-- member): each number with when and how it opted out (the rule of its
-- last opt-out event: stop.keyword, stop.short, review.member,
-- member.opt_out; how is keyword, review or member), by whom and why for a
-- member's, and its contact if any.  Keyset: (after_at, after_number) of
-- the last row.
CREATE FUNCTION eightms_api.opt_outs(after_at timestamptz DEFAULT NULL, after_number text DEFAULT NULL,
									 page_size integer DEFAULT 100)
RETURNS TABLE (number text, opted_out_at timestamptz, how text, rule text, keyword text, changed_by text,
			   reason text, contact_id uuid)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	o record;
	e record;
BEGIN
	page_size := coalesce(page_size, 100);
	IF page_size NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'page_size must be 1 to 1000' USING ERRCODE = '22023',
			HINT = 'Page on with after_at and after_number from the last row.';
	END IF;
	IF (after_at IS NULL) <> (after_number IS NULL) THEN
		RAISE EXCEPTION 'after_at and after_number go together' USING ERRCODE = '22023',
			HINT = 'Give both, from the last row of the previous page, or neither.';
	END IF;
	-- The page from one table, then each row's last event and contact by
	-- key: statements of one table each, as Citus routes them.
	FOR o IN SELECT x.number, x.opted_out_at FROM eightms.opt_out x
			  WHERE x.account_id = acct
				AND (after_at IS NULL OR (x.opted_out_at, x.number) < (after_at, after_number COLLATE "C"))
			  ORDER BY x.opted_out_at DESC, x.number DESC
			  LIMIT page_size LOOP
		SELECT ev.rule, ev.keyword, ev.changed_by, ev.reason INTO e FROM eightms.consent_event ev
		 WHERE ev.account_id = acct AND ev.number = o.number AND ev.action = 'opt_out'
		 ORDER BY ev.at DESC, ev.event_id DESC LIMIT 1;
		number := o.number;
		opted_out_at := o.opted_out_at;
		rule := e.rule;
		keyword := e.keyword;
		changed_by := e.changed_by;
		reason := e.reason;
		how := CASE WHEN e.rule LIKE 'stop.%' THEN 'keyword' WHEN e.rule = 'review.member' THEN 'review'
					WHEN e.rule = 'member.opt_out' THEN 'member'
					WHEN e.keyword IS NOT NULL THEN 'keyword' END;
		SELECT c.contact_id INTO contact_id FROM eightms.contact c WHERE c.account_id = acct AND c.phone = o.number;
		RETURN NEXT;
	END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION eightms.custom_value_ok(text, text[], jsonb), eightms.contact_email_ok(text), eightms.contact_custom(uuid, jsonb, jsonb),
	eightms.contact_text(jsonb, text, integer), eightms.contact_apply(uuid, eightms.contact, jsonb),
	eightms.contact_rows(uuid, text, text, text, integer, text, text, text, text[], text[], text, uuid, boolean),
	eightms.contact_custom_filter(uuid, jsonb), eightms.member_number(uuid, text)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.create_contact(jsonb), eightms_api.update_contact(uuid, jsonb),
	eightms_api.delete_contact(uuid), eightms_api.delete_contacts(uuid[]), eightms_api.delete_all_contacts(bigint),
	eightms_api.contact_count(), eightms_api.get_contact(uuid),
	eightms_api.contacts(text, text[], text[], jsonb, boolean, text, boolean, text, integer),
	eightms_api.set_contact_field(text, text, text[]), eightms_api.drop_contact_field(text),
	eightms_api.contact_fields(),
	eightms_api.add_opt_out(text, text), eightms_api.remove_opt_out(text, text),
	eightms_api.opt_outs(timestamptz, text, integer)
TO eightms_user;

-- ------------------------------------------------------------ contacts in the inbox

-- An account option: a message from a number that is not a contact yet
-- makes one (source inbound, the number alone).  Last in the table: an
-- upgrade appends it.
ALTER TABLE eightms.account ADD COLUMN create_contacts_from_inbound boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN eightms.account.create_contacts_from_inbound IS
	'A message from a number that is not one of the account''s contacts makes it one (set_contact_options)';
INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('account', 'create_contacts_from_inbound', 'operational', 'account', 'account_lifetime', 'setting');

-- The account's contact options (owner or admin), as set_message_options.
CREATE FUNCTION eightms_api.set_contact_options(create_contacts_from_inbound boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	IF create_contacts_from_inbound IS NULL THEN
		RAISE EXCEPTION 'create_contacts_from_inbound must be true or false' USING ERRCODE = '22023';
	END IF;
	UPDATE eightms.account a SET create_contacts_from_inbound = set_contact_options.create_contacts_from_inbound
	 WHERE a.account_id = acct;
END
$$;

-- These numbers, the senders of new inbound messages, made contacts of
-- the account when they are not (receive_messages, when the account's
-- option is on): one statement for a batch.  Anything that is not an
-- E.164 number (a short code, an alphanumeric sender) stays out.  Run as
-- the phone, which may insert its account's contacts (the grant below;
-- never update or delete them): on Citus, a SECURITY DEFINER writer could
-- not touch the placements the phone has written in the same transaction.
CREATE FUNCTION eightms.inbound_contacts(acct uuid, numbers text[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- Not the generic plans receive_messages asks for: Citus routes this
-- statement by the account's value.
SET plan_cache_mode = auto
AS $$
BEGIN
	INSERT INTO eightms.contact (account_id, phone, source)
	SELECT DISTINCT acct, u.phone COLLATE "C", 'inbound' FROM unnest(numbers) AS u(phone)
	 WHERE u.phone ~ '^\+[1-9][0-9]{1,14}$'
	-- Without a conflict target, which would need SELECT on its columns:
	-- the number is the only key a new contact can meet.
	ON CONFLICT DO NOTHING;
END
$$;

GRANT EXECUTE ON FUNCTION eightms_api.set_contact_options(boolean) TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms.inbound_contacts(uuid, text[]) TO eightms_phone;
-- The whole row: Citus does not give a column's grant to the shards.
GRANT INSERT ON eightms.contact TO eightms_phone;
