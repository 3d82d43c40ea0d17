-- tenancy.sql: accounts, their members and invitations, and sign-in sessions.
--
-- Every tenant table leads its primary key with account_id, its foreign keys
-- include it, and its one policy compares it to eightms.current_account_id().

-- ISO 3166-1 alpha-2 codes (plus XK, which numbering plans use for Kosovo):
-- the default region an account's phone numbers are read in.
CREATE FUNCTION eightms.is_region_code(code text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT code = ANY ('{AD,AE,AF,AG,AI,AL,AM,AO,AQ,AR,AS,AT,AU,AW,AX,AZ,BA,BB,BD,BE,BF,BG,BH,BI,BJ,BL,BM,BN,BO,BQ,BR,BS,BT,BV,BW,BY,BZ,CA,CC,CD,CF,CG,CH,CI,CK,CL,CM,CN,CO,CR,CU,CV,CW,CX,CY,CZ,DE,DJ,DK,DM,DO,DZ,EC,EE,EG,EH,ER,ES,ET,FI,FJ,FK,FM,FO,FR,GA,GB,GD,GE,GF,GG,GH,GI,GL,GM,GN,GP,GQ,GR,GS,GT,GU,GW,GY,HK,HM,HN,HR,HT,HU,ID,IE,IL,IM,IN,IO,IQ,IR,IS,IT,JE,JM,JO,JP,KE,KG,KH,KI,KM,KN,KP,KR,KW,KY,KZ,LA,LB,LC,LI,LK,LR,LS,LT,LU,LV,LY,MA,MC,MD,ME,MF,MG,MH,MK,ML,MM,MN,MO,MP,MQ,MR,MS,MT,MU,MV,MW,MX,MY,MZ,NA,NC,NE,NF,NG,NI,NL,NO,NP,NR,NU,NZ,OM,PA,PE,PF,PG,PH,PK,PL,PM,PN,PR,PS,PT,PW,PY,QA,RE,RO,RS,RU,RW,SA,SB,SC,SD,SE,SG,SH,SI,SJ,SK,SL,SM,SN,SO,SR,SS,ST,SV,SX,SY,SZ,TC,TD,TF,TG,TH,TJ,TK,TL,TM,TN,TO,TR,TT,TV,TW,TZ,UA,UG,UM,US,UY,UZ,VA,VC,VE,VG,VI,VN,VU,WF,WS,XK,YE,YT,ZA,ZM,ZW}'::text[])
$$;

-- An IANA time zone name as the server's tz database knows it ("Europe/Paris",
-- "UTC"), not an abbreviation or a POSIX offset string.
CREATE FUNCTION eightms.is_timezone_name(tz text) RETURNS boolean
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_is_timezone_name';
COMMENT ON FUNCTION eightms.is_timezone_name(text) IS
	'Whether a text is exactly a name pg_timezone_names lists (src/util/tz_name.c reads them once per backend)';

CREATE TABLE eightms.account (
	account_id		uuid NOT NULL DEFAULT gen_random_uuid(),
	company_name	text NOT NULL
		CONSTRAINT account_company_name_check CHECK (length(btrim(company_name)) BETWEEN 1 AND 200),
	display_name	text
		CONSTRAINT account_display_name_check CHECK (length(display_name) <= 200),
	timezone		text NOT NULL DEFAULT 'UTC'
		CONSTRAINT account_timezone_check CHECK (eightms.is_timezone_name(timezone)),
	default_region	text NOT NULL DEFAULT 'US'
		CONSTRAINT account_default_region_check CHECK (eightms.is_region_code(default_region)),
	status			text NOT NULL DEFAULT 'active'
		CONSTRAINT account_status_check CHECK (status IN ('active', 'suspended', 'disabled')),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	-- An account option: fold typographic look-alikes to GSM-7 before
	-- sending, so one curly quote does not turn a message into UCS-2
	-- (sql/gateway_send.sql).  Last: 0.1.0 added it after the table.
	fold_lookalikes	boolean NOT NULL DEFAULT false,
	PRIMARY KEY (account_id)
);
COMMENT ON TABLE eightms.account IS 'A business account: its profile and status';
COMMENT ON COLUMN eightms.account.default_region IS 'ISO 3166-1 region used to read phone numbers written without a country code';
COMMENT ON COLUMN eightms.account.status IS 'active; suspended or disabled accounts are refused by the pre-request hook';
-- pg_dump leaves out the rows of an extension's tables unless the extension
-- marks them: each table of account data is marked where it is created, so
-- that a dump of the database holds what the accounts wrote
-- (doc/operations.md, "Backups and upgrades"; test/t/005_dump_restore.pl).
-- The registries the script fills itself (scheduled_job, sealed_column) are
-- not: CREATE EXTENSION writes them again.
SELECT pg_catalog.pg_extension_config_dump('eightms.account', '');

-- user_id is the JWT "sub" of the auth provider; email is the verified email
-- that provider put in the JWT when the member joined.
CREATE TABLE eightms.member (
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	user_id			text NOT NULL
		CONSTRAINT member_user_id_check CHECK (length(user_id) BETWEEN 1 AND 255),
	email			text NOT NULL
		CONSTRAINT member_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$' AND length(email) <= 320),
	role			text NOT NULL
		CONSTRAINT member_role_check CHECK (role IN ('owner', 'admin', 'agent')),
	invited_by		text,
	created_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, user_id)
);
-- eightms_api.my_accounts() and the pre-request hook look members up by user.
CREATE INDEX member_user_id_idx ON eightms.member (user_id);
COMMENT ON TABLE eightms.member IS 'Users of an account (JWT sub) and their role: owner, admin or agent';
SELECT pg_catalog.pg_extension_config_dump('eightms.member', '');

-- An invitation is accepted with a token shown once to the inviter; only its
-- SHA-256 is kept.
CREATE TABLE eightms.invitation (
	account_id		uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	invitation_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	email			text NOT NULL
		CONSTRAINT invitation_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$' AND length(email) <= 320),
	role			text NOT NULL
		CONSTRAINT invitation_role_check CHECK (role IN ('owner', 'admin', 'agent')),
	token_hash		bytea NOT NULL
		CONSTRAINT invitation_token_hash_check CHECK (length(token_hash) = 32),
	invited_by		text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	expires_at		timestamptz NOT NULL,
	accepted_at		timestamptz,
	accepted_by		text,
	revoked_at		timestamptz,
	PRIMARY KEY (account_id, invitation_id)
);
-- Accepting looks the invitation up by its token before the account is known.
CREATE INDEX invitation_token_hash_idx ON eightms.invitation (token_hash);
COMMENT ON TABLE eightms.invitation IS 'Pending invitations to join an account; the token is stored only as SHA-256';
SELECT pg_catalog.pg_extension_config_dump('eightms.invitation', '');

-- Sign-in sessions of the auth provider seen acting on an account, by the
-- SHA-256 of the JWT's session id claim (session_id or sid): when each was
-- first and last seen there.  The raw id is never stored.  Whether a session
-- is signed out is not here but in eightms.session_revocation, which no
-- membership or account owns.
--
-- Written only by the pre-request hook (eightms.record_session), as the
-- hook's owner, and then read by the request's own role: on Citus the
-- table stays on the coordinator (sql/distribute.sql), since a shard the
-- owner wrote may not be read by another role in the same transaction.
-- So no foreign key to member (Citus has none from a local table to a
-- distributed one): a member's sessions go with the member by the trigger
-- below, and eightms.forget_sessions() for what deletes on the shards.
CREATE TABLE eightms.session (
	account_id		uuid NOT NULL,
	session_hash	bytea NOT NULL
		CONSTRAINT session_hash_check CHECK (length(session_hash) = 32),
	user_id			text NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT now(),
	last_seen_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, session_hash)
);
CREATE INDEX session_user_idx ON eightms.session (account_id, user_id);
COMMENT ON TABLE eightms.session IS
	'Sign-in sessions seen acting on the account (first and last seen), keyed by SHA-256 of the JWT session id; never the raw id';
SELECT pg_catalog.pg_extension_config_dump('eightms.session', '');

-- Forget the sessions of a member (uid), or of every member of an account
-- (uid NULL): what the foreign key's cascade did.  For the deletions
-- that run on Citus shards, where member's trigger cannot reach the
-- coordinator's sessions (delete_account, the account purges).
CREATE FUNCTION eightms.forget_sessions(acct uuid, uid text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	DELETE FROM eightms.session s
	 WHERE s.account_id = acct AND (uid IS NULL OR s.user_id = uid);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION eightms.forget_sessions(uuid, text) IS
	'Delete the recorded sessions of a member (or of every member of the account, uid NULL)';

-- A member's sessions go with the member (removed, or with the account).
CREATE FUNCTION eightms.member_forget_sessions() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.forget_sessions(OLD.account_id, OLD.user_id);
	RETURN NULL;
END
$$;
CREATE TRIGGER member_forget_sessions AFTER DELETE ON eightms.member
	FOR EACH ROW EXECUTE FUNCTION eightms.member_forget_sessions();

-- Sign-out belongs to the session and to the user, not to an account: a
-- signed-out session is refused in every account and with none selected,
-- and removing a member (which deletes their eightms.session rows) or an
-- account brings none back.  Written only by eightms_api.sign_out()
-- (SECURITY DEFINER) and read only by the pre-request hook, so no API role
-- has any privilege on them, and there is no row-level security to apply:
-- nothing in them belongs to a tenant.  A revocation matters until every
-- token it refuses has expired: eightms.purge_session_revocations() deletes
-- older ones daily (doc/operations.md, Retention).
CREATE TABLE eightms.session_revocation (
	session_hash	bytea NOT NULL
		CONSTRAINT session_revocation_hash_check CHECK (length(session_hash) = 32),
	user_id			text NOT NULL
		CONSTRAINT session_revocation_user_id_check CHECK (length(user_id) BETWEEN 1 AND 255),
	revoked_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (session_hash)
);
COMMENT ON TABLE eightms.session_revocation IS
	'global: signed-out sessions, by SHA-256 of the JWT session id (never the raw id); refused in every account';
SELECT pg_catalog.pg_extension_config_dump('eightms.session_revocation', '');

-- sign_out(everywhere => true): every token of the user issued at or before
-- signed_out_at (its iat), and every token without an iat, is refused.
CREATE TABLE eightms.user_revocation (
	user_id			text NOT NULL
		CONSTRAINT user_revocation_user_id_check CHECK (length(user_id) BETWEEN 1 AND 255),
	signed_out_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id)
);
COMMENT ON TABLE eightms.user_revocation IS
	'global: users signed out everywhere (JWT sub); their tokens issued at or before signed_out_at are refused';
SELECT pg_catalog.pg_extension_config_dump('eightms.user_revocation', '');

-- When a JWT was issued: its iat, if a JSON number of seconds in range;
-- otherwise NULL, which a sign-out everywhere refuses.  No SET clause, so
-- that it is inlined into the pre-request hook; its callers pin search_path.
CREATE FUNCTION eightms.jwt_issued_at(claims jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN pg_catalog.jsonb_typeof(claims -> 'iat') = 'number'
					 AND (claims ->> 'iat')::numeric BETWEEN 0 AND 1e11
				THEN pg_catalog.to_timestamp((claims ->> 'iat')::float8) END
$$;

-- A revocation refuses tokens issued before it; once they have all expired
-- it refuses nothing.  keep must be at least the longest lifetime the auth
-- provider gives a dashboard JWT (exp - iat); 30 days covers the usual
-- providers' maximums.  Run by eightms.run_purges() (rule session_revocation,
-- privacy.sql), which logs it; this one is not granted to
-- eightms_dba, since purging early would bring signed-out sessions back.
CREATE FUNCTION eightms.purge_session_revocations(keep interval DEFAULT '30 days') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	m bigint;
BEGIN
	DELETE FROM eightms.session_revocation r WHERE r.revoked_at < now() - keep;
	GET DIAGNOSTICS n = ROW_COUNT;
	DELETE FROM eightms.user_revocation u WHERE u.signed_out_at < now() - keep;
	GET DIAGNOSTICS m = ROW_COUNT;
	RETURN n + m;
END
$$;
COMMENT ON FUNCTION eightms.purge_session_revocations(interval) IS
	'Delete session and sign-out-everywhere revocations older than keep (30 days), unlogged; eightms.run_purges() does it on schedule';

-- Row-level security: one policy per table, the same comparison everywhere.
ALTER TABLE eightms.account ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.account FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.account
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

ALTER TABLE eightms.member ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.member FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.member
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

ALTER TABLE eightms.invitation ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.invitation FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.invitation
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

ALTER TABLE eightms.session ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.session FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.session
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

-- Table privileges for the API roles; RLS narrows them to the caller's account.
-- The account's profile and settings, its deletion, and invitations are
-- written only by update_profile, set_message_options, delete_account and
-- revoke_invitation (SECURITY DEFINER, after their role checks): an agent's
-- own SQL may not do what the API refuses an agent.
GRANT SELECT ON eightms.account TO eightms_user, eightms_phone;
-- A member's role and an invitation's role name what a member may do in
-- the account: only set_member_role, remove_member and invite_member
-- (SECURITY DEFINER, after their role checks) write them, never the
-- caller's own SQL.
GRANT SELECT ON eightms.member TO eightms_user;
GRANT SELECT ON eightms.invitation TO eightms_user;
GRANT SELECT ON eightms.session TO eightms_user;
-- eightms_dba reads none of these: a member's data reaches an operator
-- only through the data-subject functions, which log each request
-- (sql/dsar.sql).

-- The caller's role in the current account, or NULL.
CREATE FUNCTION eightms.current_member_role() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT m.role FROM eightms.member m
	 WHERE m.account_id = eightms.current_account_id()
	   AND m.user_id = eightms.current_user_id()
$$;

-- Raise unless the caller holds one of the given roles in the current account.
CREATE FUNCTION eightms.require_member_role(VARIADIC allowed text[]) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r text;
	uid text := eightms.require_user();
	acct uuid := eightms.require_account();
BEGIN
	-- current_member_role()'s query, here so that its plan is kept (a SQL
	-- function that reads a table is parsed and planned on every call), and
	-- with the account by value, which Citus routes to the account's shard.
	SELECT m.role INTO r FROM eightms.member m WHERE m.account_id = acct AND m.user_id = uid;
	IF r IS NULL OR NOT r = ANY (allowed) THEN
		RAISE EXCEPTION 'this needs the % role in the account', array_to_string(allowed, ' or ')
			USING ERRCODE = '42501',
				  DETAIL = format('Your role is %s.', coalesce(r, 'none')),
				  HINT = 'Ask an owner of the account to change your role.';
	END IF;
	RETURN r;
END
$$;

-- Tokens shown once (invitations, pairing codes) and their stored hash.
CREATE FUNCTION eightms.random_bytes(nbytes int) RETURNS bytea
AS 'MODULE_PATHNAME', 'eightms_random_bytes'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.random_bytes(int) IS 'nbytes (1..1024) from the server''s cryptographically strong random source';

CREATE FUNCTION eightms.random_token(nbytes int DEFAULT 24) RETURNS text
LANGUAGE sql VOLATILE STRICT PARALLEL SAFE
AS $$
	SELECT pg_catalog.translate(pg_catalog.rtrim(pg_catalog.encode(eightms.random_bytes(nbytes), 'base64'), '='), '+/', '-_')
$$;
COMMENT ON FUNCTION eightms.random_token(int) IS 'A URL-safe random token of nbytes random bytes (base64url, no padding)';

CREATE FUNCTION eightms.token_hash(token text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8'))
$$;
