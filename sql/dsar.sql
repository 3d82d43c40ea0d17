-- dsar.sql: data-subject requests (export and erasure of one member,
-- contact or account), their log, and the deletion of an account
-- (doc/privacy.md, "Data-subject requests").
--
-- Everything here is driven by the registry of privacy.sql
-- (eightms.data_column): the tables searched for a subject are those with
-- a personal column of that subject (its locators), and an export holds
-- every registered column of each row found.  A column classified later is
-- searched, exported and erased without a change here.

-- The request log: who asked, about whom, what was done and when.  The
-- subject is kept sealed (eightms.seal, opened only by a superuser), never
-- in clear: the log outlives the data it describes, and must not become a
-- copy of it.  Kept (rule dsar_request) three years after completion.
CREATE TABLE eightms.dsar_request (
	request_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind			text NOT NULL CONSTRAINT dsar_request_kind_check CHECK (kind IN ('export', 'erase')),
	subject_kind	text NOT NULL
		CONSTRAINT dsar_request_subject_kind_check CHECK (subject_kind IN ('member', 'contact', 'account')),
	-- The email or number, sealed with context 'dsar_request:' || request_id;
	-- NULL for an account (account_id says which).
	subject_sealed	bytea,
	-- The account the request is confined to; NULL: every account.
	account_id		uuid,
	requested_by	name NOT NULL DEFAULT session_user,
	-- The owner's user id when the owner asked through the API.
	requester_user	text,
	received_at		timestamptz NOT NULL DEFAULT now(),
	due_at			timestamptz NOT NULL DEFAULT now() + interval '30 days',
	-- An account deletion with a grace period runs only after this.
	not_before		timestamptz,
	completed_at	timestamptz,
	completed_by	name,
	result			jsonb
);
COMMENT ON TABLE eightms.dsar_request IS
	'global: every data-subject request (export, erasure, account deletion): who asked, the subject sealed, received, due, completed, counts';
CREATE INDEX dsar_request_open_idx ON eightms.dsar_request (due_at) WHERE completed_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('eightms.dsar_request', '');
SELECT pg_catalog.pg_extension_config_dump('eightms.dsar_request_request_id_seq', '');
INSERT INTO eightms.sealed_column VALUES
	('eightms.dsar_request', 'subject_sealed', $$'dsar_request:' || request_id$$);

INSERT INTO eightms.retention_rule (rule_name, covers, default_keep, counted_from, reason) VALUES
	('dsar_request', 'the data-subject request log (kind, sealed subject, dates, counts)', '3 years',
	 'the request''s completion',
	 'proof that each request was answered in time, for a regulator''s inquiry (limitation periods of 3 years and more); an open request is never purged'),
	('account_deletion', 'accounts their owner deleted: disabled, their pending work cancelled, until everything goes',
	 '0 seconds', 'the owner''s deletion',
	 'a grace period in which a deletion can be undone by the platform; none by default, a superuser may set one');

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('dsar_request', 'request_id', 'operational', 'none', 'dsar_request', 'key'),
	('dsar_request', 'kind', 'operational', 'none', 'dsar_request', 'export or erase'),
	('dsar_request', 'subject_kind', 'operational', 'none', 'dsar_request', 'member, contact or account'),
	('dsar_request', 'subject_sealed', 'secret', 'none', 'dsar_request', 'the email or number, sealed; opened only by a superuser'),
	('dsar_request', 'account_id', 'operational', 'account', 'dsar_request', 'the account the request is confined to'),
	('dsar_request', 'requested_by', 'operational', 'none', 'dsar_request', 'database role'),
	('dsar_request', 'requester_user', 'personal', 'member', 'dsar_request', 'user id of the owner who asked through the API'),
	('dsar_request', 'received_at', 'operational', 'none', 'dsar_request', 'timestamp'),
	('dsar_request', 'due_at', 'operational', 'none', 'dsar_request', 'timestamp'),
	('dsar_request', 'not_before', 'operational', 'none', 'dsar_request', 'timestamp'),
	('dsar_request', 'completed_at', 'operational', 'none', 'dsar_request', 'timestamp'),
	('dsar_request', 'completed_by', 'operational', 'none', 'dsar_request', 'database role'),
	('dsar_request', 'result', 'operational', 'none', 'dsar_request', 'counts per table'),
	('http_request', 'account_id', 'operational', 'account', 'http_request', 'key'),
	('http_attempt', 'account_id', 'operational', 'account', 'http_request', 'key');

-- The subject as stored: an E.164 number, an email, or an account id.
-- Errors name no value.
CREATE FUNCTION eightms.dsar_subject(subject_kind text, subject text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	CASE subject_kind
	WHEN 'contact' THEN
		IF subject IS NULL OR subject !~ '^\+[1-9][0-9]{5,14}$' THEN
			RAISE EXCEPTION 'a contact is named by an E.164 number' USING ERRCODE = '22023',
				HINT = 'Pass the number as +<country code><number>, e.g. +12125550199.';
		END IF;
		RETURN subject;
	WHEN 'member' THEN
		IF subject IS NULL OR length(subject) > 320 OR subject !~ '^[^@\s]+@[^@\s]+$' THEN
			RAISE EXCEPTION 'a member is named by an email address' USING ERRCODE = '22023';
		END IF;
		RETURN lower(subject);
	WHEN 'account' THEN
		RETURN NULL;
	ELSE
		RAISE EXCEPTION 'the subject is a member, a contact or an account' USING ERRCODE = '22023';
	END CASE;
END
$$;

-- The values that identify a subject in its locator columns: a contact's
-- number; a member's email and the user ids it has, or had, in any account
-- (the memberships with that email, and invitations to it that were
-- accepted).
CREATE FUNCTION eightms.dsar_identifiers(subject_kind text, subject text, acct uuid) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF subject_kind = 'contact' THEN
		RETURN ARRAY[subject];
	END IF;
	RETURN ARRAY(SELECT subject
				 UNION SELECT m.user_id FROM eightms.member m
						WHERE lower(m.email) = subject AND (acct IS NULL OR m.account_id = acct)
				 UNION SELECT i.accepted_by FROM eightms.invitation i
						WHERE lower(i.email) = subject AND i.accepted_by IS NOT NULL
						  AND (acct IS NULL OR i.account_id = acct));
END
$$;

-- The tables searched for a subject and how, from the registry:
--   locators  its personal columns of the subject (a row is the subject's
--             when one of them holds one of its identifiers), or for an
--             account the account_id column;
--   via       for a contact, a key column the table shares with the
--             table whose rows are one per account and number (a
--             conversation): the table is read by those keys through its
--             index, and the locators still decide;
--   keep      the rows stay on erasure (the opt-out list, which must
--             outlive the contact to keep them from being texted again; the
--             revocations, whose removal would bring signed-out tokens
--             back, and which go by their own 30-day rule);
--   nullable  whether each locator can be cleared rather than the row
--             deleted (a member named as the one who did something).
CREATE FUNCTION eightms.dsar_plan(subject_kind text)
RETURNS TABLE (table_name name, locators name[], nullable boolean[], via name, root boolean, keep boolean,
			   has_account boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH loc AS (
		SELECT d.table_name, d.column_name, NOT a.attnotnull AS nullable
		  FROM eightms.data_column d
		  JOIN pg_catalog.pg_attribute a
			ON a.attrelid = pg_catalog.to_regclass('eightms.' || pg_catalog.quote_ident(d.table_name))
		   AND a.attname = d.column_name AND NOT a.attisdropped
		 WHERE CASE WHEN subject_kind = 'account' THEN d.column_name = 'account_id'
					ELSE d.class = 'personal' AND d.subject = subject_kind END
		   -- The request log is about requests, not searched for their subjects.
		   AND d.table_name <> 'dsar_request'
	),
	-- A root: a table with a unique key of exactly (account_id, locator).
	roots AS (
		SELECT l.table_name, k.column_name AS key
		  FROM loc l
		  JOIN eightms.data_column k ON k.table_name = l.table_name AND k.subject = subject_kind
		   AND k.reason = 'key' AND k.column_name <> 'account_id'
		 WHERE subject_kind = 'contact'
		   AND EXISTS (SELECT FROM pg_catalog.pg_index i
						WHERE i.indrelid = ('eightms.' || pg_catalog.quote_ident(l.table_name))::regclass
						  AND i.indisunique AND i.indnatts = 2
						  AND (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname)
								 FROM pg_catalog.pg_attribute a
								WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
							  = pg_catalog.array_cat(ARRAY['account_id'], ARRAY[l.column_name::text])
							  OR (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname)
									FROM pg_catalog.pg_attribute a
								   WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
								 = ARRAY[l.column_name::text, 'account_id'])
	)
	SELECT l.table_name,
		   pg_catalog.array_agg(l.column_name ORDER BY l.column_name),
		   pg_catalog.array_agg(l.nullable ORDER BY l.column_name),
		   (SELECT r.key FROM roots r
			 WHERE r.table_name <> l.table_name
			   AND EXISTS (SELECT FROM eightms.data_column v
							WHERE v.table_name = l.table_name AND v.column_name = r.key AND v.subject = subject_kind)
			 LIMIT 1),
		   EXISTS (SELECT FROM roots r WHERE r.table_name = l.table_name),
		   subject_kind <> 'account'
			 AND l.table_name IN ('opt_out', 'session_revocation', 'user_revocation'),
		   EXISTS (SELECT FROM eightms.data_column x WHERE x.table_name = l.table_name AND x.column_name = 'account_id')
	  FROM loc l
	 GROUP BY l.table_name
	 ORDER BY l.table_name
$$;

-- The WHERE clause that finds a subject's rows of one table:
-- $1 its identifiers, $2 the account (NULL: every account), $3 the keys
-- of its root rows.
CREATE FUNCTION eightms.dsar_where(p record, subject_kind text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w text;
BEGIN
	IF subject_kind = 'account' THEN
		RETURN 't.account_id = $2';
	END IF;
	SELECT string_agg(format('t.%I = ANY ($1)', c), ' OR ') INTO w FROM unnest(p.locators) c;
	w := '(' || w || ')';
	IF p.has_account THEN
		w := w || ' AND ($2 IS NULL OR t.account_id = $2)';
	END IF;
	IF p.via IS NOT NULL THEN
		w := w || format(' AND t.%I = ANY ($3::%s[])', p.via,
						 (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
						   WHERE a.attrelid = ('eightms.' || quote_ident(p.table_name))::regclass AND a.attname = p.via));
	END IF;
	RETURN w;
END
$$;

-- A row of one table as the export shows it: every registered column,
-- secrets as "sealed, present" (or null), binary values in base64.
CREATE FUNCTION eightms.dsar_row_json(tbl name) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT 'pg_catalog.jsonb_build_object(' || pg_catalog.string_agg(
			 pg_catalog.format('%L, %s', d.column_name,
				CASE WHEN d.class = 'secret' THEN pg_catalog.format('CASE WHEN t.%I IS NOT NULL THEN ''sealed, present'' END', d.column_name)
					 WHEN a.atttypid = 'bytea'::regtype THEN pg_catalog.format('pg_catalog.encode(t.%I, ''base64'')', d.column_name)
					 ELSE pg_catalog.format('t.%I', d.column_name) END),
			 ', ' ORDER BY a.attnum) || ')'
	  FROM eightms.data_column d
	  JOIN pg_catalog.pg_attribute a
		ON a.attrelid = ('eightms.' || pg_catalog.quote_ident(tbl))::regclass AND a.attname = d.column_name
	 WHERE d.table_name = tbl
$$;

-- The one worker behind every request: finds the subject's rows in every
-- table of its plan and exports them (a JSON document, doc/privacy.md) or
-- erases them (deletes each row, or clears a nullable locator), and
-- returns the counts.  Not granted: eightms.dsar_export and dsar_erase
-- check and log first.
CREATE FUNCTION eightms.dsar_run(kind text, subject_kind text, subject text, acct uuid, request bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids text[] := CASE WHEN subject_kind <> 'account' THEN eightms.dsar_identifiers(subject_kind, subject, acct) END;
	roots text[] := '{}';
	keys text[];
	p record;
	w text;
	n bigint;
	rows jsonb;
	data jsonb := '{}';
	tables jsonb := '[]';
	counts jsonb := '{}';
	kept jsonb := '{}';
	k text;
BEGIN
	-- The roots' keys first: they narrow the other tables' search.
	FOR p IN SELECT * FROM eightms.dsar_plan(subject_kind) x WHERE x.root LOOP
		FOR k IN SELECT d.column_name FROM eightms.data_column d
				  WHERE d.table_name = p.table_name AND d.subject = subject_kind AND d.reason = 'key' LOOP
			EXECUTE format('SELECT coalesce(array_agg(t.%I::text), ''{}'') FROM eightms.%I t WHERE %s',
						   k, p.table_name, eightms.dsar_where(p, subject_kind))
				INTO keys USING ids, acct, roots;
			roots := roots || keys;
		END LOOP;
	END LOOP;
	-- The roots last: an erasure counts each table's own rows before a
	-- root's deletion takes its dependants with it.
	FOR p IN SELECT * FROM eightms.dsar_plan(subject_kind) x ORDER BY x.root, x.table_name LOOP
		w := eightms.dsar_where(p, subject_kind);
		IF kind = 'export' THEN
			EXECUTE format('SELECT coalesce(jsonb_agg(%s), ''[]'') FROM eightms.%I t WHERE %s',
						   eightms.dsar_row_json(p.table_name), p.table_name, w)
				INTO rows USING ids, acct, roots;
			n := jsonb_array_length(rows);
			data := data || jsonb_build_object(p.table_name, rows);
			tables := tables || jsonb_build_object('table', p.table_name, 'rows', n,
												   'searched_by', to_jsonb(p.locators));
		ELSIF kind = 'count' OR p.keep THEN
			EXECUTE format('SELECT count(*) FROM eightms.%I t WHERE %s', p.table_name, w)
				INTO n USING ids, acct, roots;
			IF kind = 'count' THEN
				counts := counts || jsonb_build_object(p.table_name, n);
			ELSIF n > 0 THEN
				kept := kept || jsonb_build_object(p.table_name, n);
			END IF;
		ELSE
			-- A NOT NULL locator is what the row is about: the row goes.  A
			-- nullable one names the subject as whoever did something: it
			-- is cleared where it names them.
			EXECUTE format('DELETE FROM eightms.%I t WHERE %s AND (%s)', p.table_name, w,
						   coalesce((SELECT string_agg(format('t.%I = ANY ($1)', c), ' OR ')
									   FROM unnest(p.locators, p.nullable) u(c, nul) WHERE NOT u.nul), 'false'))
				USING ids, acct, roots;
			GET DIAGNOSTICS n = ROW_COUNT;
			FOR k IN SELECT c FROM unnest(p.locators, p.nullable) u(c, nul) WHERE u.nul LOOP
				EXECUTE format('UPDATE eightms.%I t SET %I = NULL WHERE t.%I = ANY ($1)%s', p.table_name, k, k,
							   CASE WHEN p.has_account THEN ' AND ($2 IS NULL OR t.account_id = $2)' ELSE '' END)
					USING ids, acct;
			END LOOP;
			counts := counts || jsonb_build_object(p.table_name, n);
		END IF;
	END LOOP;
	IF kind = 'export' THEN
		RETURN jsonb_build_object(
			'format', 'eightms-dsar-export',
			'format_version', 1,
			'manifest', jsonb_build_object(
				'request_id', request,
				'subject', jsonb_build_object('kind', subject_kind, 'value', subject, 'account_id', acct),
				'generated_at', now(),
				'eightms_version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'eightms'),
				'tables', tables),
			'data', data);
	END IF;
	RETURN jsonb_build_object('request_id', request, CASE kind WHEN 'count' THEN 'rows' ELSE 'erased' END, counts,
							  'kept', kept);
END
$$;

-- Record a request (as received) or find the one named, checking it is
-- for this kind and subject.  Returns its id.
CREATE FUNCTION eightms.dsar_log(kind text, subject_kind text, subject text, acct uuid, request bigint,
								 requester text DEFAULT NULL, received timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r eightms.dsar_request;
BEGIN
	IF request IS NULL THEN
		request := nextval('eightms.dsar_request_request_id_seq'::regclass);
		INSERT INTO eightms.dsar_request AS d (request_id, kind, subject_kind, subject_sealed, account_id,
											   requester_user, received_at, due_at)
		OVERRIDING SYSTEM VALUE
		VALUES (request, kind, subject_kind,
				CASE WHEN subject IS NOT NULL THEN eightms.seal(subject, 'dsar_request:' || request) END,
				acct, requester, received, received + interval '30 days');
		RETURN request;
	END IF;
	SELECT * INTO r FROM eightms.dsar_request d WHERE d.request_id = request FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no data-subject request %', request USING ERRCODE = '22023';
	END IF;
	IF r.completed_at IS NOT NULL THEN
		RAISE EXCEPTION 'data-subject request % was completed already', request USING ERRCODE = '55000';
	END IF;
	IF r.kind <> kind OR r.subject_kind <> subject_kind OR r.account_id IS DISTINCT FROM acct
	   OR (subject IS NOT NULL AND eightms.unseal(r.subject_sealed, 'dsar_request:' || request) <> subject) THEN
		RAISE EXCEPTION 'data-subject request % is for another kind, subject or account', request
			USING ERRCODE = '22023', HINT = 'eightms.dsar_log shows each request''s kind and subject kind.';
	END IF;
	RETURN request;
END
$$;

CREATE FUNCTION eightms.dsar_check_account(acct uuid, required boolean) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF acct IS NULL AND required THEN
		RAISE EXCEPTION 'an account request names the account' USING ERRCODE = '22023';
	END IF;
	IF acct IS NOT NULL AND NOT EXISTS (SELECT 1 FROM eightms.account a WHERE a.account_id = acct) THEN
		RAISE EXCEPTION 'no account %', acct USING ERRCODE = '22023';
	END IF;
END
$$;

-- Record a request as received (e.g. by email) before acting on it: it is
-- due 30 days after received, and listed by dsar_overdue() until an export
-- or erasure names it (request => id).
CREATE FUNCTION eightms.dsar_open(kind text, subject_kind text, subject text DEFAULT NULL,
								  account uuid DEFAULT NULL, received timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF kind IS NULL OR kind NOT IN ('export', 'erase') THEN
		RAISE EXCEPTION 'a request is an export or an erase' USING ERRCODE = '22023';
	END IF;
	IF received IS NULL OR NOT isfinite(received) OR received > now() THEN
		RAISE EXCEPTION 'received must be a time not in the future' USING ERRCODE = '22023';
	END IF;
	PERFORM eightms.dsar_check_account(account, subject_kind = 'account');
	RETURN eightms.dsar_log(kind, subject_kind, eightms.dsar_subject(subject_kind, subject), account, NULL,
							NULL, received);
END
$$;
COMMENT ON FUNCTION eightms.dsar_open(text, text, text, uuid, timestamptz) IS
	'Record a data-subject request as received (due 30 days later); dsar_export or dsar_erase with request => its id answers it';

-- Log a request (or take the open one named), answer it and mark it
-- completed with its counts.  Returns the export, or the erasure's counts.
CREATE FUNCTION eightms.dsar_answer(kind text, subject_kind text, subject text, acct uuid, request bigint,
									requester text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	res jsonb;
	counts jsonb;
BEGIN
	request := eightms.dsar_log(kind, subject_kind, subject, acct, request, requester);
	IF kind = 'erase' AND subject_kind = 'account' THEN
		res := jsonb_build_object('request_id', request, 'erased', eightms.purge_account(acct), 'kept', '{}'::jsonb);
	ELSE
		res := eightms.dsar_run(kind, subject_kind, subject, acct, request);
	END IF;
	IF kind = 'export' THEN
		counts := (SELECT jsonb_object_agg(t ->> 'table', (t ->> 'rows')::bigint)
					 FROM jsonb_array_elements(res -> 'manifest' -> 'tables') t);
	ELSE
		counts := res -> 'erased';
	END IF;
	UPDATE eightms.dsar_request d SET completed_at = now(), completed_by = session_user, result = counts
	 WHERE d.request_id = request;
	RETURN res;
END
$$;

-- Export: one JSON document of everything held about the subject
-- (doc/dsar-export.schema.json).  Logged as completed.
CREATE FUNCTION eightms.dsar_export(subject_kind text, subject text DEFAULT NULL, account uuid DEFAULT NULL,
									request bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s text := eightms.dsar_subject(subject_kind, subject);
BEGIN
	PERFORM eightms.dsar_check_account(account, subject_kind = 'account');
	RETURN eightms.dsar_answer('export', subject_kind, s, account, request);
END
$$;
COMMENT ON FUNCTION eightms.dsar_export(text, text, uuid, bigint) IS
	'Export everything held about a member (email), a contact (E.164, in one account or all) or an account, as one JSON document; logged in dsar_request';

-- Cancel what an account has in flight: its queued bridge requests (and
-- their attempts) go, its messages waiting for or sitting on a phone are
-- canceled.  Returns the counts.
CREATE FUNCTION eightms.cancel_account_work(acct uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	nreq bigint;
	nmsg bigint;
BEGIN
	DELETE FROM eightms.http_attempt x WHERE x.account_id = acct
	   AND x.request_id IN (SELECT r.id FROM eightms.http_request r WHERE r.account_id = acct AND r.state = 'queued');
	DELETE FROM eightms.http_request r WHERE r.account_id = acct AND r.state = 'queued';
	GET DIAGNOSTICS nreq = ROW_COUNT;
	UPDATE eightms.message m SET status = 'canceled', pending = NULL, canceled_at = now(), lease_expires_at = NULL
	 WHERE m.account_id = acct AND m.pending;
	GET DIAGNOSTICS nmsg = ROW_COUNT;
	RETURN jsonb_build_object('http_request', nreq, 'message', nmsg);
END
$$;

-- Everything an account holds, gone: its bridge requests and their
-- attempts, its messages, its campaigns' recipients, then the account
-- (every other table follows it by its foreign key).  One table at a time, keyed by account_id (Citus).
CREATE FUNCTION eightms.purge_account(acct uuid) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	counts jsonb;
	n bigint;
BEGIN
	counts := jsonb_build_object('account', 0);
	-- The requests first: deleting one waits for the bridge's recorder if
	-- it is recording that request's outcome, and the attempts' statement
	-- after it then sees the attempt the recorder added (the recorder adds
	-- none for a request already gone).
	DELETE FROM eightms.http_request r WHERE r.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('http_request', n);
	DELETE FROM eightms.http_attempt x WHERE x.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('http_attempt', n);
	DELETE FROM eightms.message m WHERE m.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('message', n);
	-- Campaign recipients have no foreign key either (sql/campaigns.sql).
	DELETE FROM eightms.campaign_recipient r WHERE r.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	counts := counts || jsonb_build_object('campaign_recipient', n);
	DELETE FROM eightms.account a WHERE a.account_id = acct;
	GET DIAGNOSTICS n = ROW_COUNT;
	-- The sessions are the coordinator's on Citus, where the member
	-- trigger that removes them on one server runs on the shards.
	PERFORM eightms.forget_sessions(acct);
	RETURN counts || jsonb_build_object('account', n);
END
$$;

-- Erase: deletes or clears every row of the subject (dsar_run), cancelling
-- the pending work of a contact with its messages; an account goes whole
-- (purge_account).  The opt-out list and the revocations stay (dsar_plan).
-- A member who is an account's only owner is refused: that account would
-- be left without one.
CREATE FUNCTION eightms.dsar_erase(subject_kind text, subject text DEFAULT NULL, account uuid DEFAULT NULL,
								   request bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s text := eightms.dsar_subject(subject_kind, subject);
	ids text[];
BEGIN
	PERFORM eightms.dsar_check_account(account, subject_kind = 'account');
	IF subject_kind = 'member' THEN
		ids := eightms.dsar_identifiers('member', s, account);
		IF EXISTS (SELECT 1 FROM eightms.member m
					WHERE m.user_id = ANY (ids) AND m.role = 'owner' AND (account IS NULL OR m.account_id = account)
					  AND NOT EXISTS (SELECT 1 FROM eightms.member o
									   WHERE o.account_id = m.account_id AND o.role = 'owner' AND NOT o.user_id = ANY (ids))) THEN
			RAISE EXCEPTION 'the member is the only owner of an account'
				USING ERRCODE = '55000',
					  HINT = 'Have another member made owner, or delete that account (erase --account), first.';
		END IF;
	END IF;
	RETURN eightms.dsar_answer('erase', subject_kind, s, account, request);
END
$$;
COMMENT ON FUNCTION eightms.dsar_erase(text, text, uuid, bigint) IS
	'Erase a member (email), a contact (E.164, in one account or all) or an account; keeps the opt-out list; logged in dsar_request';

-- How many rows each table searched still holds of a subject (the check
-- after an erasure).  Not logged: it shows counts, nothing held.
CREATE FUNCTION eightms.dsar_count(subject_kind text, subject text DEFAULT NULL, account uuid DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN eightms.dsar_run('count', subject_kind, eightms.dsar_subject(subject_kind, subject), account, NULL) -> 'rows';
END
$$;
COMMENT ON FUNCTION eightms.dsar_count(text, text, uuid) IS
	'Rows each table searched holds of a member, contact or account now, per the registry (no data, not logged)';

-- The log as the DBA reads it: everything but the sealed subjects.
CREATE VIEW eightms.dsar_log AS
	SELECT d.request_id, d.kind, d.subject_kind, d.account_id, d.requested_by, d.received_at, d.due_at,
		   d.not_before, d.completed_at, d.completed_by, d.result
	  FROM eightms.dsar_request d;
COMMENT ON VIEW eightms.dsar_log IS 'The data-subject request log without the sealed subjects';

CREATE FUNCTION eightms.dsar_overdue() RETURNS SETOF eightms.dsar_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM eightms.dsar_log l WHERE l.completed_at IS NULL AND l.due_at < pg_catalog.now() ORDER BY l.request_id
$$;
COMMENT ON FUNCTION eightms.dsar_overdue() IS 'Data-subject requests still open 30 days after they were received';

-- The deletions an owner asked for, once their grace period is over
-- (rule account_deletion): run by the job every five minutes.
CREATE FUNCTION eightms.run_account_deletions() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	n bigint := 0;
BEGIN
	FOR r IN SELECT d.request_id, d.account_id FROM eightms.dsar_request d
			  WHERE d.completed_at IS NULL AND d.kind = 'erase' AND d.subject_kind = 'account'
				AND d.not_before <= now()
			  ORDER BY d.request_id FOR UPDATE SKIP LOCKED LOOP
		UPDATE eightms.dsar_request d SET completed_at = now(), completed_by = session_user,
			   result = eightms.purge_account(r.account_id)
		 WHERE d.request_id = r.request_id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION eightms.run_account_deletions() IS
	'Delete the accounts whose owner deleted them once the grace period (rule account_deletion) is over';
INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-account-deletions', '*/5 * * * *', 'SELECT eightms.run_account_deletions()',
	 'accounts deleted by their owner go once the account_deletion grace period is over');

-- Self-service portability: the owner's export of the whole account.
CREATE FUNCTION eightms_api.export_account() RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner');
	RETURN eightms.dsar_answer('export', 'account', NULL, eightms.current_account_id(), NULL,
							   eightms.current_user_id());
END
$$;
COMMENT ON FUNCTION eightms_api.export_account() IS
	'Owner: everything the account holds, as one JSON document (the data-subject export format); logged';
GRANT EXECUTE ON FUNCTION eightms_api.export_account() TO eightms_user;

-- The DBA: requests and their log through these functions only.
GRANT EXECUTE ON FUNCTION eightms.dsar_open(text, text, text, uuid, timestamptz),
	eightms.dsar_export(text, text, uuid, bigint), eightms.dsar_erase(text, text, uuid, bigint),
	eightms.dsar_count(text, text, uuid), eightms.dsar_overdue(), eightms.run_account_deletions()
TO eightms_dba;
GRANT SELECT ON eightms.dsar_log TO eightms_dba;
