-- contacts_import.sql: the contacts import (a CSV file or a JSON array, in
-- one call or as a job of chunks) and the export (CSV lines or JSON rows)
-- (doc/contacts.md, "Import" and "Export").
--
-- The import is set-based: the CSV reader in C (src/csv/csv_sql.c) gives
-- the file's records, each record becomes a row of
-- eightms.contact_import_row, and eightms.contact_import_apply checks them
-- all, merges them with the account's contacts and writes them in one
-- INSERT ... ON CONFLICT, with the checks of contact_apply
-- (eightms.try_e164, contact_email_ok, custom_value_ok).

-- ------------------------------------------------------------ the reader

CREATE TYPE eightms.csv_record AS (line bigint, fields text[], error text, delimiter text);

CREATE FUNCTION eightms.csv_rows(csv bytea, delimiter text DEFAULT NULL) RETURNS SETOF eightms.csv_record
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'eightms_csv_rows';
COMMENT ON FUNCTION eightms.csv_rows(bytea, text) IS
	'The records of a CSV file (header included): line, fields, or the reader''s error name; the delimiter on the first';
CREATE FUNCTION eightms.csv_line_ends(csv bytea) RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_csv_line_ends';
CREATE FUNCTION eightms.csv_line(fields text[], delimiter text DEFAULT ',') RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_csv_line';
COMMENT ON FUNCTION eightms.csv_line(text[], text) IS
	'One CSV record as RFC 4180 writes it (quoted where needed), without its line end';

-- ------------------------------------------------------------ import jobs

-- A large file imported in chunks (doc/contacts.md, "Import jobs"): the
-- mapping and mode, the header read from the first chunk, and the counts
-- the dashboard polls.  lines: the physical lines of the chunks so far, so
-- that the next chunk's lines are numbered in the file.
CREATE TABLE eightms.contact_import (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	import_id	uuid NOT NULL DEFAULT eightms.uuid_v7(),
	created_by	text,
	mapping		jsonb,
	mode		text NOT NULL
		CONSTRAINT contact_import_mode_check CHECK (mode IN ('create_only', 'upsert', 'replace')),
	delimiter	text CONSTRAINT contact_import_delimiter_check CHECK (delimiter IN (',', ';', 'tab')),
	header		text[],
	state		text NOT NULL DEFAULT 'open'
		CONSTRAINT contact_import_state_check CHECK (state IN ('open', 'done', 'failed')),
	chunks		integer NOT NULL DEFAULT 0,
	lines		bigint NOT NULL DEFAULT 0,
	rows_done	bigint NOT NULL DEFAULT 0,
	inserted	bigint NOT NULL DEFAULT 0,
	updated		bigint NOT NULL DEFAULT 0,
	unchanged	bigint NOT NULL DEFAULT 0,
	rejected	bigint NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	finished_at	timestamptz,
	PRIMARY KEY (account_id, import_id)
);
COMMENT ON TABLE eightms.contact_import IS
	'tenant: a contacts import in chunks: mapping, mode, header, state (open, done, failed) and counts';
SELECT pg_catalog.pg_extension_config_dump('eightms.contact_import', '');

-- The first rejections of a job (at most 1000 of them: the lowest lines),
-- by line: the reason code and its detail, never the row's values.
CREATE TABLE eightms.contact_import_rejection (
	account_id	uuid NOT NULL,
	import_id	uuid NOT NULL,
	line		bigint NOT NULL,
	reason		text NOT NULL,
	detail		text,
	PRIMARY KEY (account_id, import_id, line),
	FOREIGN KEY (account_id, import_id) REFERENCES eightms.contact_import (account_id, import_id) ON DELETE CASCADE
);
COMMENT ON TABLE eightms.contact_import_rejection IS
	'tenant: the first 1000 rejected lines of an import job: line, reason code, detail (a field or the reader''s error)';
SELECT pg_catalog.pg_extension_config_dump('eightms.contact_import_rejection', '');

ALTER TABLE eightms.contact_import ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.contact_import FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.contact_import
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
ALTER TABLE eightms.contact_import_rejection ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.contact_import_rejection FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.contact_import_rejection
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- Members read; every write goes through the functions below.
GRANT SELECT ON eightms.contact_import, eightms.contact_import_rejection TO eightms_user;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('contact_import', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_import', 'import_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_import', 'created_by', 'personal', 'member', 'account_lifetime', 'user id of the member who started the import'),
	('contact_import', 'mapping', 'operational', 'account', 'account_lifetime', 'the file''s column names and their fields'),
	('contact_import', 'mode', 'operational', 'account', 'account_lifetime', 'setting'),
	('contact_import', 'delimiter', 'operational', 'account', 'account_lifetime', 'setting'),
	('contact_import', 'header', 'operational', 'account', 'account_lifetime', 'the file''s column names'),
	('contact_import', 'state', 'operational', 'account', 'account_lifetime', 'state'),
	('contact_import', 'chunks', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'lines', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'rows_done', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'inserted', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'updated', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'unchanged', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'rejected', 'operational', 'account', 'account_lifetime', 'count'),
	('contact_import', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('contact_import', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('contact_import', 'finished_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('contact_import_rejection', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_import_rejection', 'import_id', 'operational', 'account', 'account_lifetime', 'key'),
	('contact_import_rejection', 'line', 'operational', 'account', 'account_lifetime', 'position in the file'),
	('contact_import_rejection', 'reason', 'operational', 'account', 'account_lifetime', 'reason code'),
	('contact_import_rejection', 'detail', 'operational', 'account', 'account_lifetime', 'the field or the reader''s error name');

-- ------------------------------------------------------------ applying rows

-- One row to import, from a CSV record or a JSON object: pos its line (or
-- array position), the values as given (NULL: empty), given the keys the
-- row sets (for upsert: the others keep the contact's values), and the
-- reason (and its detail) when the front end rejected it already.
CREATE TYPE eightms.contact_import_row AS (
	pos bigint, phone text, first_name text, last_name text, email text, company text,
	custom jsonb, tags text[], given text[], reason text, detail text);

-- The rows checked, merged with the account's contacts and written in one
-- statement; a result for each row, in order of pos.
--   create_only  a new number is inserted; a number the account has is left
--                as it is (unchanged, reason exists);
--   upsert       a new number is inserted; for one the account has, each key
--                the row gives replaces the contact's value (custom merged
--                key by key), the others stay;
--   replace      the contact becomes the row: the keys it does not give are
--                cleared.
-- The same number twice: the row with the highest pos wins, the others are
-- rejected as duplicate_in_file with the winner's contact_id.
CREATE FUNCTION eightms.contact_import_apply(acct uuid, mode text, rows eightms.contact_import_row[])
RETURNS TABLE (pos bigint, result text, reason text, detail text, contact_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- The statement is planned once a call: compiling it costs more than it saves.
SET jit = off
-- Its CTEs are estimated at a row or two whatever the file holds; a nested
-- loop chosen on that estimate rescans the account's contacts (or a CTE)
-- per row of a chunk, quadratic in the chunk.  Hash joins are linear.
SET enable_nestloop = off
AS $$
DECLARE
	region text;
	at timestamptz := now();
	numbers text[];
BEGIN
	SELECT a.default_region INTO region FROM eightms.account a WHERE a.account_id = acct;
	-- The account's contacts with these numbers, locked before the merge
	-- reads them: a member's update of one waits for the import, or the
	-- import waits for it and (a statement of its own, with a snapshot
	-- taken after the lock) merges with its result instead of writing back
	-- what the row was before it (test/isolation/specs/import_update.spec).
	-- A statement of its own: Citus cannot run a locking CTE.
	numbers := ARRAY(SELECT eightms.try_e164(left(u.phone, 64), region, true) FROM unnest(rows) u
					  WHERE u.reason IS NULL);
	PERFORM FROM eightms.contact c WHERE c.account_id = acct AND c.phone COLLATE "C" = ANY (numbers) FOR UPDATE;
	RETURN QUERY
	WITH f AS (
		SELECT x.name, x.type, x.choices FROM eightms.contact_field x WHERE x.account_id = acct
	),
	r AS (
		SELECT u.pos, u.given, u.first_name, u.last_name, u.company, u.tags, u.custom,
			   lower(u.email) AS email,
			   CASE WHEN u.reason IS NULL
					THEN eightms.try_e164(left(u.phone, 64), region, true) COLLATE "C" END AS e164,
			   u.phone AS raw,
			   -- The first check a row fails, as reason:detail.
			   CASE WHEN u.reason IS NOT NULL THEN u.reason || ':' || coalesce(u.detail, '')
			   END AS front
		  FROM unnest(rows) u
	),
	v AS (
		SELECT r.*, CASE
			WHEN r.front IS NOT NULL THEN r.front
			WHEN nullif(btrim(r.raw), '') IS NULL THEN 'missing_phone:phone'
			WHEN r.e164 IS NULL THEN 'invalid_phone:phone'
			WHEN length(r.first_name) > 100 THEN 'too_long:first_name'
			WHEN length(r.last_name) > 100 THEN 'too_long:last_name'
			WHEN length(r.company) > 200 THEN 'too_long:company'
			WHEN length(r.email) > 320 OR NOT eightms.contact_email_ok(r.email) THEN 'invalid_email:email'
			WHEN cardinality(r.tags) > 100 OR EXISTS (SELECT FROM unnest(r.tags) t WHERE length(t) > 50)
				THEN 'too_long:tags'
			WHEN r.custom IS NOT NULL AND r.custom <> '{}' THEN
				(SELECT CASE WHEN f.name IS NULL THEN 'unknown_field:custom.' ELSE 'bad_value:custom.' END || left(e.key, 40)
				   FROM jsonb_each(r.custom) e LEFT JOIN f ON f.name = e.key
				  WHERE f.name IS NULL
					 OR (jsonb_typeof(e.value) <> 'null' AND NOT eightms.custom_value_ok(f.type, f.choices, e.value))
				  ORDER BY e.key LIMIT 1)
			END AS why
		  FROM r
	),
	-- The accepted rows, the last of each number first.
	ok AS (
		SELECT v.*, row_number() OVER (PARTITION BY v.e164 ORDER BY v.pos DESC) AS nth
		  FROM v WHERE v.why IS NULL
	),
	-- Each number's winning row with the contact it has, and what the
	-- contact becomes.
	n AS (
		SELECT ok.pos, ok.e164, o.contact_id AS old_id, m.*,
			   CASE WHEN o.contact_id IS NULL THEN 'inserted'
					WHEN mode = 'create_only' THEN 'unchanged'
					WHEN (m.first_name, m.last_name, m.email, m.company, m.custom, m.tags)
						 IS NOT DISTINCT FROM (o.first_name, o.last_name, o.email, o.company, o.custom, o.tags)
						THEN 'unchanged'
					ELSE 'updated' END AS status
		  FROM ok
		  LEFT JOIN eightms.contact o ON o.account_id = acct AND o.phone = ok.e164
		  CROSS JOIN LATERAL (
			SELECT CASE WHEN whole OR 'first_name' = ANY (ok.given) THEN ok.first_name ELSE o.first_name END AS first_name,
				   CASE WHEN whole OR 'last_name' = ANY (ok.given) THEN ok.last_name ELSE o.last_name END AS last_name,
				   CASE WHEN whole OR 'email' = ANY (ok.given) THEN ok.email ELSE o.email END AS email,
				   CASE WHEN whole OR 'company' = ANY (ok.given) THEN ok.company ELSE o.company END AS company,
				   CASE WHEN whole OR ('custom' = ANY (ok.given) AND ok.custom IS NULL)
						THEN jsonb_strip_nulls(coalesce(ok.custom, '{}'))
						WHEN 'custom' = ANY (ok.given) THEN jsonb_strip_nulls(o.custom || coalesce(ok.custom, '{}'))
						ELSE o.custom END AS custom,
				   CASE WHEN whole OR 'tags' = ANY (ok.given) THEN coalesce(ok.tags, '{}') ELSE o.tags END AS tags
			  FROM (SELECT o.contact_id IS NULL OR mode = 'replace' AS whole) w
		  ) m
		 WHERE ok.nth = 1
	),
	-- One statement for the new and the changed: a number inserted meanwhile
	-- by another transaction is updated, except in create_only.
	w AS (
		INSERT INTO eightms.contact AS c (account_id, phone, first_name, last_name, email, company, custom, tags,
										  source, created_at, updated_at)
		SELECT acct, n.e164, n.first_name, n.last_name, n.email, n.company, n.custom, n.tags, 'import', at, at
		  FROM n WHERE n.status IN ('inserted', 'updated')
		ON CONFLICT ON CONSTRAINT contact_phone_key DO UPDATE
			SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, email = EXCLUDED.email,
				company = EXCLUDED.company, custom = EXCLUDED.custom, tags = EXCLUDED.tags, updated_at = at
			WHERE mode <> 'create_only'
		RETURNING c.contact_id, c.phone
	)
	SELECT v.pos,
		   CASE WHEN v.why IS NOT NULL OR v.pos <> n.pos THEN 'rejected'
				WHEN n.status = 'inserted' AND w.contact_id IS NULL THEN 'unchanged'
				ELSE n.status END,
		   CASE WHEN v.why IS NOT NULL THEN split_part(v.why, ':', 1)
				WHEN v.pos <> n.pos THEN 'duplicate_in_file'
				WHEN mode = 'create_only' AND (n.old_id IS NOT NULL OR w.contact_id IS NULL) THEN 'exists' END,
		   CASE WHEN v.why IS NOT NULL THEN nullif(substr(v.why, strpos(v.why, ':') + 1), '')
				WHEN v.pos <> n.pos THEN 'line ' || n.pos END,
		   coalesce(w.contact_id, n.old_id)
	  FROM v
	  LEFT JOIN n ON n.e164 = v.e164 AND v.why IS NULL
	  LEFT JOIN w ON w.phone = n.e164
	 ORDER BY v.pos;
END
$$;

-- ------------------------------------------------------------ CSV

-- A custom field's value from a CSV cell, typed by the field: a number
-- read as JSON number, a boolean from true/false, yes/no, 1/0; text, date
-- and choice as strings.  What does not read stays a string, which the
-- field's check then rejects (bad_value).
CREATE FUNCTION eightms.custom_value_from_text(type text, cell text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN type = 'number' AND cell ~ '^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?$' THEN to_jsonb(cell::numeric)
		WHEN type = 'boolean' AND lower(cell) IN ('true', 'yes', 'y', '1') THEN 'true'::jsonb
		WHEN type = 'boolean' AND lower(cell) IN ('false', 'no', 'n', '0') THEN 'false'::jsonb
		ELSE to_jsonb(cell) END
$$;

-- The mapping checked against a header: one row per mapped column with
-- its index, the field (phone, first_name, last_name, email, company,
-- tags, or custom.<name>), the custom field's type and the tags'
-- separator.  NULL mapping: each column named as a field maps to it.
-- Refused (22023) when it names a column the header lacks, a field that
-- does not exist, a field twice, or no phone.
CREATE FUNCTION eightms.contact_import_columns(acct uuid, header text[], mapping jsonb)
RETURNS TABLE (idx integer, field text, type text, separator text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	i integer;
	fld text;
	sep text;
	ftype text;
	seen text[] := '{}';
BEGIN
	IF mapping IS NULL THEN
		SELECT coalesce(jsonb_object_agg(h, h), '{}') INTO mapping
		  FROM unnest(header) h
		 WHERE h IN ('phone', 'first_name', 'last_name', 'email', 'company', 'tags') OR h ~ '^custom\.';
	END IF;
	IF jsonb_typeof(mapping) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'mapping is a JSON object of column names and fields' USING ERRCODE = '22023',
			HINT = 'e.g. {"Mobile": "phone", "Name": "first_name", "Tags": {"field": "tags", "separator": "|"}}.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(mapping) LOOP
		i := array_position(header, k);
		IF i IS NULL THEN
			SELECT min(o) INTO i FROM unnest(header) WITH ORDINALITY u(h, o) WHERE lower(btrim(h)) = lower(btrim(k));
		END IF;
		IF i IS NULL THEN
			RAISE EXCEPTION 'mapping names the column "%", which the header does not have', left(k, 60)
				USING ERRCODE = '22023', HINT = 'The keys of mapping are the header''s column names.';
		END IF;
		sep := NULL;
		IF jsonb_typeof(v) = 'object' THEN
			fld := v ->> 'field';
			sep := v ->> 'separator';
		ELSIF jsonb_typeof(v) = 'string' THEN
			fld := v #>> '{}';
		ELSE
			fld := NULL;
		END IF;
		ftype := NULL;
		IF fld ~ '^custom\.' THEN
			SELECT x.type INTO ftype FROM eightms.contact_field x
			 WHERE x.account_id = acct AND x.name = substr(fld, 8);
			IF ftype IS NULL THEN
				RAISE EXCEPTION 'mapping names the custom field "%", which is not defined', left(substr(fld, 8), 40)
					USING ERRCODE = '22023', HINT = 'Define it with set_contact_field(name, type) first.';
			END IF;
		ELSIF fld IS NULL OR fld NOT IN ('phone', 'first_name', 'last_name', 'email', 'company', 'tags') THEN
			RAISE EXCEPTION 'mapping maps the column "%" to no field', left(k, 60) USING ERRCODE = '22023',
				HINT = 'Fields: phone, first_name, last_name, email, company, custom.<name>, tags (or {"field": "tags", "separator": "|"}).';
		END IF;
		IF fld = 'tags' THEN
			sep := coalesce(sep, '|');
			IF length(sep) <> 1 THEN
				RAISE EXCEPTION 'the tags'' separator is one character' USING ERRCODE = '22023';
			END IF;
		ELSIF sep IS NOT NULL THEN
			RAISE EXCEPTION 'a separator goes with the field tags only' USING ERRCODE = '22023';
		END IF;
		IF fld = ANY (seen) THEN
			RAISE EXCEPTION 'mapping maps two columns to %', fld USING ERRCODE = '22023';
		END IF;
		seen := seen || fld;
		idx := i;
		field := fld;
		type := ftype;
		separator := sep;
		RETURN NEXT;
	END LOOP;
	IF NOT 'phone' = ANY (seen) THEN
		RAISE EXCEPTION 'mapping maps no column to phone' USING ERRCODE = '22023',
			HINT = 'e.g. {"Mobile": "phone"}.';
	END IF;
END
$$;

-- The refusal of a file or chunk over 10 MB: the job takes larger files.
CREATE FUNCTION eightms.contact_import_size(bytes bigint) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF bytes > 10 * 1024 * 1024 THEN
		RAISE EXCEPTION 'a file or chunk is at most 10 MB' USING ERRCODE = '54000',
			HINT = 'Import a larger file as a job: start_contact_import, then add_contact_import_chunk with chunks of whole lines.';
	END IF;
END
$$;

-- A CSV file's records imported into the account: the first record is the
-- header unless header is given (a job's later chunks), and lines are
-- numbered after line_offset.  The header's row gets no result.
CREATE FUNCTION eightms.contact_import_csv(acct uuid, csv bytea, mapping jsonb, mode text, delimiter text,
										   header text[] DEFAULT NULL, line_offset bigint DEFAULT 0)
RETURNS TABLE (line bigint, result text, reason text, detail text, contact_id uuid, header_read text[],
			   delimiter_read text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	recs eightms.csv_record[];
	cols record;
	first integer := 1;
	ip integer; ifn integer; iln integer; iem integer; ico integer; itg integer;
	sep text;
	cust jsonb;
	rows eightms.contact_import_row[];
BEGIN
	IF mode IS NULL OR mode NOT IN ('create_only', 'upsert', 'replace') THEN
		RAISE EXCEPTION 'mode is create_only, upsert or replace' USING ERRCODE = '22023';
	END IF;
	PERFORM eightms.contact_import_size(octet_length(csv));
	recs := ARRAY(SELECT r FROM eightms.csv_rows(csv, delimiter) r);
	IF header IS NULL THEN
		IF cardinality(recs) = 0 OR recs[1].fields IS NULL THEN
			RAISE EXCEPTION 'the file has no header' USING ERRCODE = '22023',
				HINT = 'The first line names the columns, e.g. phone,first_name,last_name.';
		END IF;
		header := recs[1].fields;
		delimiter := recs[1].delimiter;
		first := 2;
	END IF;
	header_read := header;
	delimiter_read := coalesce(delimiter, recs[1].delimiter);
	-- The mapping's columns: one index per plain field, custom fields as
	-- (index, name, type).
	SELECT max(c.idx) FILTER (WHERE c.field = 'phone'), max(c.idx) FILTER (WHERE c.field = 'first_name'),
		   max(c.idx) FILTER (WHERE c.field = 'last_name'), max(c.idx) FILTER (WHERE c.field = 'email'),
		   max(c.idx) FILTER (WHERE c.field = 'company'), max(c.idx) FILTER (WHERE c.field = 'tags'),
		   max(c.separator),
		   coalesce(jsonb_agg(jsonb_build_array(c.idx, substr(c.field, 8), c.type)) FILTER (WHERE c.type IS NOT NULL), '[]')
	  INTO ip, ifn, iln, iem, ico, itg, sep, cust
	  FROM eightms.contact_import_columns(acct, header, mapping) c;

	rows := ARRAY(
		SELECT ROW(line_offset + x.line,
				   x.fields[ip], nullif(btrim(x.fields[ifn]), ''), nullif(btrim(x.fields[iln]), ''),
				   nullif(btrim(x.fields[iem]), ''), nullif(btrim(x.fields[ico]), ''),
				   cv.custom, tg.tags,
				   array_remove(ARRAY[CASE WHEN nullif(btrim(x.fields[ifn]), '') IS NOT NULL THEN 'first_name' END,
									  CASE WHEN nullif(btrim(x.fields[iln]), '') IS NOT NULL THEN 'last_name' END,
									  CASE WHEN nullif(btrim(x.fields[iem]), '') IS NOT NULL THEN 'email' END,
									  CASE WHEN nullif(btrim(x.fields[ico]), '') IS NOT NULL THEN 'company' END,
									  CASE WHEN cv.custom IS NOT NULL THEN 'custom' END,
									  CASE WHEN tg.tags IS NOT NULL THEN 'tags' END], NULL),
				   CASE WHEN x.error IN ('field_too_long', 'record_too_long') THEN 'too_long'
						WHEN x.error IS NOT NULL THEN 'malformed_row'
						WHEN cardinality(x.fields) <> cardinality(header) THEN 'malformed_row' END,
				   CASE WHEN x.error IS NOT NULL THEN x.error
						WHEN cardinality(x.fields) <> cardinality(header) THEN 'field_count' END
				   )::eightms.contact_import_row
		  FROM unnest(recs[first:]) x
		  LEFT JOIN LATERAL (
			SELECT jsonb_object_agg(m ->> 1, eightms.custom_value_from_text(m ->> 2, btrim(x.fields[(m ->> 0)::integer])))
					   AS custom
			  FROM jsonb_array_elements(cust) m
			 WHERE cust <> '[]' AND nullif(btrim(x.fields[(m ->> 0)::integer]), '') IS NOT NULL
		  ) cv ON true
		  LEFT JOIN LATERAL (
			SELECT ARRAY(SELECT s.t FROM (SELECT btrim(e) AS t, min(o) AS o
											FROM unnest(string_to_array(x.fields[itg], sep)) WITH ORDINALITY u(e, o)
										   WHERE btrim(e) <> '' GROUP BY btrim(e)) s
						  ORDER BY s.o) AS tags
			 WHERE nullif(btrim(x.fields[itg]), '') IS NOT NULL
		  ) tg ON true);

	RETURN QUERY
	SELECT a.pos, a.result, a.reason, a.detail, a.contact_id, header_read, delimiter_read
	  FROM eightms.contact_import_apply(acct, mode, rows) a;
END
$$;

-- Import a CSV file of at most 10 MB (owner, admin or agent): a result for
-- every line after the header, in order.  One transaction: the accepted
-- rows are all written, or (on an error) none; rejected rows are reported,
-- not raised.
CREATE FUNCTION eightms_api.import_contacts_csv(csv text, mapping jsonb DEFAULT NULL, mode text DEFAULT 'upsert',
												delimiter text DEFAULT NULL)
RETURNS TABLE (line bigint, result text, reason text, detail text, contact_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF csv IS NULL THEN
		RAISE EXCEPTION 'csv is the file''s text' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT i.line, i.result, i.reason, i.detail, i.contact_id
	  FROM eightms.contact_import_csv(acct, textsend(csv), mapping, mode, delimiter) i;
END
$$;

-- ------------------------------------------------------------ JSON

-- Import a JSON array of contacts (owner, admin or agent), each an object
-- with the keys of create_contact: a result for each, by its position
-- (1-based).  A key absent keeps the contact's value (upsert), a key with
-- null clears it.
CREATE FUNCTION eightms_api.import_contacts(rows jsonb, mode text DEFAULT 'upsert')
RETURNS TABLE ("position" bigint, result text, reason text, detail text, contact_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	staged eightms.contact_import_row[];
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF mode IS NULL OR mode NOT IN ('create_only', 'upsert', 'replace') THEN
		RAISE EXCEPTION 'mode is create_only, upsert or replace' USING ERRCODE = '22023';
	END IF;
	IF jsonb_typeof(rows) IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'rows is a JSON array of contacts' USING ERRCODE = '22023',
			HINT = 'e.g. [{"phone": "+12125550101", "first_name": "Ada"}].';
	END IF;
	PERFORM eightms.contact_import_size(pg_column_size(rows));
	staged := ARRAY(
		SELECT ROW(e.o,
				   CASE WHEN jsonb_typeof(e.j -> 'phone') = 'string' THEN e.j ->> 'phone' END,
				   nullif(btrim(e.j ->> 'first_name'), ''), nullif(btrim(e.j ->> 'last_name'), ''),
				   nullif(btrim(e.j ->> 'email'), ''), nullif(btrim(e.j ->> 'company'), ''),
				   CASE WHEN jsonb_typeof(e.j -> 'custom') = 'object' THEN e.j -> 'custom' END,
				   CASE WHEN jsonb_typeof(e.j -> 'tags') = 'array' AND bad.key IS NULL
						THEN ARRAY(SELECT s.t FROM (SELECT btrim(t) AS t, min(o) AS o
													  FROM jsonb_array_elements_text(e.j -> 'tags') WITH ORDINALITY u(t, o)
													 WHERE btrim(t) <> '' GROUP BY btrim(t)) s ORDER BY s.o) END,
				   CASE WHEN jsonb_typeof(e.j) = 'object' THEN ARRAY(SELECT jsonb_object_keys(e.j)) END,
				   CASE WHEN jsonb_typeof(e.j) IS DISTINCT FROM 'object' THEN 'malformed_row'
						WHEN bad.key IS NOT NULL THEN bad.why END,
				   CASE WHEN jsonb_typeof(e.j) IS DISTINCT FROM 'object' THEN 'not_an_object'
						WHEN bad.key IS NOT NULL THEN left(bad.key, 40) END)::eightms.contact_import_row
		  FROM jsonb_array_elements(rows) WITH ORDINALITY e(j, o)
		  -- The first key of the object that is unknown or of the wrong type.
		  LEFT JOIN LATERAL (
			SELECT k.key, CASE WHEN k.key NOT IN ('phone', 'first_name', 'last_name', 'email', 'company', 'custom', 'tags')
							   THEN 'unknown_field' ELSE 'bad_value' END AS why
			  FROM jsonb_each(CASE WHEN jsonb_typeof(e.j) = 'object' THEN e.j END) k
			 WHERE k.key NOT IN ('phone', 'first_name', 'last_name', 'email', 'company', 'custom', 'tags')
				OR (jsonb_typeof(k.value) <> 'null' AND k.key <> 'phone'
					AND jsonb_typeof(k.value) <> CASE k.key WHEN 'custom' THEN 'object' WHEN 'tags' THEN 'array'
															ELSE 'string' END)
				OR (k.key = 'tags' AND jsonb_typeof(k.value) = 'array'
					AND EXISTS (SELECT FROM jsonb_array_elements(k.value) t WHERE jsonb_typeof(t) <> 'string'))
			 ORDER BY k.key LIMIT 1
		  ) bad ON true);
	RETURN QUERY SELECT a.pos, a.result, a.reason, a.detail, a.contact_id
				   FROM eightms.contact_import_apply(acct, mode, staged) a;
END
$$;

-- ------------------------------------------------------------ jobs API

-- The job as the dashboard polls it: its state and counts, and its first
-- rejections (line, reason, detail), lowest lines first.
CREATE FUNCTION eightms_api.contact_import(id uuid)
RETURNS TABLE (import_id uuid, state text, mode text, chunks integer, lines bigint, rows_done bigint,
			   inserted bigint, updated bigint, unchanged bigint, rejected bigint, rejections jsonb,
			   created_at timestamptz, updated_at timestamptz, finished_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	RETURN QUERY
	SELECT j.import_id, j.state, j.mode, j.chunks, j.lines, j.rows_done, j.inserted, j.updated, j.unchanged,
		   j.rejected,
		   coalesce((SELECT jsonb_agg(jsonb_build_object('line', x.line, 'reason', x.reason, 'detail', x.detail)
									  ORDER BY x.line)
					   FROM eightms.contact_import_rejection x
					  WHERE x.account_id = acct AND x.import_id = j.import_id), '[]'),
		   j.created_at, j.updated_at, j.finished_at
	  FROM eightms.contact_import j
	 WHERE j.account_id = acct AND j.import_id = contact_import.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no import %', contact_import.id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- The job, locked, for a call that changes it: P0002 when not the
-- account's, 55000 when it is not open.
CREATE FUNCTION eightms.contact_import_open(acct uuid, id uuid) RETURNS eightms.contact_import
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	j eightms.contact_import;
BEGIN
	SELECT * INTO j FROM eightms.contact_import x WHERE x.account_id = acct AND x.import_id = id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no import %', id USING ERRCODE = 'P0002';
	END IF;
	IF j.state <> 'open' THEN
		RAISE EXCEPTION 'import % is %', id, j.state USING ERRCODE = '55000',
			HINT = 'Start another import.';
	END IF;
	RETURN j;
END
$$;

-- Start an import job (owner, admin or agent): its id.  The mapping is
-- checked against the header when the first chunk brings it.
CREATE FUNCTION eightms_api.start_contact_import(mapping jsonb DEFAULT NULL, mode text DEFAULT 'upsert',
												 delimiter text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	id uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF mode IS NULL OR mode NOT IN ('create_only', 'upsert', 'replace') THEN
		RAISE EXCEPTION 'mode is create_only, upsert or replace' USING ERRCODE = '22023';
	END IF;
	IF delimiter = E'\t' THEN
		delimiter := 'tab';
	END IF;
	IF delimiter = '' THEN
		delimiter := NULL;
	END IF;
	IF delimiter NOT IN (',', ';', 'tab') THEN
		RAISE EXCEPTION 'the delimiter is a comma, a semicolon or a tab' USING ERRCODE = '22023',
			HINT = 'Pass '','', '';'', ''tab'', or NULL to detect it from the header.';
	END IF;
	IF mapping IS NOT NULL AND jsonb_typeof(mapping) <> 'object' THEN
		RAISE EXCEPTION 'mapping is a JSON object of column names and fields' USING ERRCODE = '22023';
	END IF;
	INSERT INTO eightms.contact_import (account_id, created_by, mapping, mode, delimiter)
	VALUES (acct, eightms.current_user_id(), mapping, mode, delimiter)
	RETURNING contact_import.import_id INTO id;
	RETURN id;
END
$$;

-- Add the next chunk of the file (owner, admin or agent), applied in this
-- call's transaction: whole lines, at most 10 MB, the first with the
-- header.  chunk is the chunk's number, from 1: a number already applied
-- changes nothing (a retry after a lost answer), one that skips a chunk is
-- refused (22023).  Returns the job as contact_import does.
CREATE FUNCTION eightms_api.add_contact_import_chunk(id uuid, chunk integer, csv_chunk text)
RETURNS TABLE (import_id uuid, state text, mode text, chunks integer, lines bigint, rows_done bigint,
			   inserted bigint, updated bigint, unchanged bigint, rejected bigint, rejections jsonb,
			   created_at timestamptz, updated_at timestamptz, finished_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	j eightms.contact_import;
	bytes bytea;
	hdr text[];
	delim text;
	c record;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	j := eightms.contact_import_open(acct, add_contact_import_chunk.id);
	IF chunk IS NULL OR chunk > j.chunks + 1 THEN
		RAISE EXCEPTION 'chunk % comes after chunk %', chunk, j.chunks + 1 USING ERRCODE = '22023',
			HINT = 'Send the chunks in order, numbered from 1.';
	END IF;
	IF chunk > j.chunks AND csv_chunk IS NOT NULL THEN
		bytes := textsend(csv_chunk);
		PERFORM eightms.contact_import_size(octet_length(bytes));
		WITH r AS (
			SELECT * FROM eightms.contact_import_csv(acct, bytes, j.mapping, j.mode, j.delimiter, j.header, j.lines)
		),
		kept AS (
			INSERT INTO eightms.contact_import_rejection (account_id, import_id, line, reason, detail)
			SELECT acct, j.import_id, r.line, r.reason, r.detail FROM r
			 WHERE r.result = 'rejected'
			 ORDER BY r.line
			 LIMIT greatest(0, 1000 - (SELECT count(*) FROM eightms.contact_import_rejection x
										WHERE x.account_id = acct AND x.import_id = j.import_id))
		)
		SELECT count(*) AS n, count(*) FILTER (WHERE r.result = 'inserted') AS ins,
			   count(*) FILTER (WHERE r.result = 'updated') AS upd,
			   count(*) FILTER (WHERE r.result = 'unchanged') AS unch,
			   count(*) FILTER (WHERE r.result = 'rejected') AS rej,
			   (SELECT r1.header_read FROM r r1 LIMIT 1) AS hdr, min(r.delimiter_read) AS delim
		  INTO c FROM r;
		-- A chunk of only a header gives no row: the header is read again
		-- from the chunk.
		hdr := c.hdr;
		delim := c.delim;
		IF j.header IS NULL AND hdr IS NULL THEN
			SELECT x.fields, x.delimiter INTO hdr, delim
			  FROM eightms.csv_rows(bytes, j.delimiter) x LIMIT 1;
		END IF;
		UPDATE eightms.contact_import x
		   SET header = coalesce(x.header, hdr), delimiter = coalesce(x.delimiter, delim),
			   chunks = chunk, lines = x.lines + eightms.csv_line_ends(bytes), rows_done = x.rows_done + c.n,
			   inserted = x.inserted + c.ins, updated = x.updated + c.upd, unchanged = x.unchanged + c.unch,
			   rejected = x.rejected + c.rej, updated_at = now()
		 WHERE x.account_id = acct AND x.import_id = j.import_id;
	END IF;
	RETURN QUERY SELECT * FROM eightms_api.contact_import(j.import_id);
END
$$;

-- End a job (owner, admin or agent): done, or failed when the dashboard
-- gives it up (abandon => true).  Chunks applied stay applied.
CREATE FUNCTION eightms_api.finish_contact_import(id uuid, abandon boolean DEFAULT false)
RETURNS TABLE (import_id uuid, state text, mode text, chunks integer, lines bigint, rows_done bigint,
			   inserted bigint, updated bigint, unchanged bigint, rejected bigint, rejections jsonb,
			   created_at timestamptz, updated_at timestamptz, finished_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	j eightms.contact_import;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	j := eightms.contact_import_open(acct, finish_contact_import.id);
	UPDATE eightms.contact_import x
	   SET state = CASE WHEN coalesce(abandon, false) THEN 'failed' ELSE 'done' END,
		   finished_at = now(), updated_at = now()
	 WHERE x.account_id = acct AND x.import_id = j.import_id;
	RETURN QUERY SELECT * FROM eightms_api.contact_import(j.import_id);
END
$$;

-- ------------------------------------------------------------ export

-- The account's contacts with the filters of eightms_api.contacts, in
-- pages of that function, as one row each (jsonb: the columns of
-- contacts but its cursor).
-- Materialized: plpgsql returns the rows through a tuplestore, which
-- spills to a temporary file past work_mem.
CREATE FUNCTION eightms_api.export_contacts_json(search text DEFAULT NULL, tags_any text[] DEFAULT NULL,
												 tags_all text[] DEFAULT NULL, where_custom jsonb DEFAULT NULL,
												 where_opted_out boolean DEFAULT NULL)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur text;
	page jsonb;
BEGIN
	LOOP
		SELECT jsonb_agg(to_jsonb(c) ORDER BY c.created_at, c.contact_id) INTO page
		  FROM eightms_api.contacts(search, tags_any, tags_all, where_custom, where_opted_out,
									'created_at', false, cur, 200) c;
		EXIT WHEN page IS NULL;
		RETURN QUERY SELECT e - 'cursor' FROM jsonb_array_elements(page) e;
		EXIT WHEN jsonb_array_length(page) < 200;
		-- The next page starts after the last row of this one.
		cur := page -> -1 ->> 'cursor';
	END LOOP;
END
$$;

-- The same as CSV lines: the header first (phone, first_name, last_name,
-- email, company, tags, then custom.<name> for each of the account's
-- fields in name order), then a line per contact; tags joined with
-- tag_separator; RFC 4180 quoting.  Read back by import_contacts_csv with
-- no mapping.
CREATE FUNCTION eightms_api.export_contacts_csv(search text DEFAULT NULL, tags_any text[] DEFAULT NULL,
												tags_all text[] DEFAULT NULL, where_custom jsonb DEFAULT NULL,
												where_opted_out boolean DEFAULT NULL, delimiter text DEFAULT ',',
												tag_separator text DEFAULT '|')
RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	fields text[];
BEGIN
	IF tag_separator IS NULL OR length(tag_separator) <> 1 THEN
		RAISE EXCEPTION 'tag_separator is one character' USING ERRCODE = '22023';
	END IF;
	fields := ARRAY(SELECT f.name FROM eightms.contact_field f WHERE f.account_id = acct ORDER BY f.name);
	RETURN NEXT eightms.csv_line(ARRAY['phone', 'first_name', 'last_name', 'email', 'company', 'tags']
								 || ARRAY(SELECT 'custom.' || x FROM unnest(fields) x), delimiter);
	RETURN QUERY
	SELECT eightms.csv_line(ARRAY[j ->> 'phone', j ->> 'first_name', j ->> 'last_name', j ->> 'email',
								  j ->> 'company',
								  nullif(array_to_string(ARRAY(SELECT jsonb_array_elements_text(j -> 'tags')),
														 tag_separator), '')]
							|| ARRAY(SELECT j -> 'custom' ->> x FROM unnest(fields) x), delimiter)
	  FROM eightms_api.export_contacts_json(search, tags_any, tags_all, where_custom, where_opted_out) j;
END
$$;

GRANT EXECUTE ON FUNCTION eightms.csv_rows(bytea, text), eightms.csv_line_ends(bytea), eightms.csv_line(text[], text),
	eightms.contact_import_apply(uuid, text, eightms.contact_import_row[]),
	eightms.custom_value_from_text(text, text), eightms.contact_import_columns(uuid, text[], jsonb),
	eightms.contact_import_size(bigint),
	eightms.contact_import_csv(uuid, bytea, jsonb, text, text, text[], bigint),
	eightms.contact_import_open(uuid, uuid)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.import_contacts_csv(text, jsonb, text, text),
	eightms_api.import_contacts(jsonb, text),
	eightms_api.contact_import(uuid), eightms_api.start_contact_import(jsonb, text, text),
	eightms_api.add_contact_import_chunk(uuid, integer, text), eightms_api.finish_contact_import(uuid, boolean),
	eightms_api.export_contacts_json(text, text[], text[], jsonb, boolean),
	eightms_api.export_contacts_csv(text, text[], text[], jsonb, boolean, text, text)
TO eightms_user;
