-- eightms 0.1.0 -> 0.2.0: written by hand, section by section, as each change
-- lands in sql/.  Run by ALTER EXTENSION eightms UPDATE; after it the catalog
-- equals a fresh install of 0.2.0 (test/extra.d/upgrade.sh checks that).
\echo Use "ALTER EXTENSION eightms UPDATE" to load this file. \quit

-- ==== suspended accounts and writable columns
-- Accepting an invitation and pairing a phone reach an account the
-- pre-request hook did not choose; both now refuse a suspended or disabled
-- account with the hook's error (issue 17, finding 6).
CREATE FUNCTION eightms.refuse_inactive_account(acct uuid, status text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF status <> 'active' THEN
		RAISE EXCEPTION 'account % is %', acct, status
			USING ERRCODE = '42501',
				  HINT = 'Contact support to reactivate the account.';
	END IF;
END
$$;
COMMENT ON FUNCTION eightms.refuse_inactive_account(uuid, text) IS
	'Raise the error every request to a suspended or disabled account gets (42501); a NULL status passes';

CREATE FUNCTION eightms.require_active_account(acct uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	st text;
BEGIN
	SELECT a.status INTO st FROM eightms.account a WHERE a.account_id = acct FOR SHARE;
	PERFORM eightms.refuse_inactive_account(acct, st);
END
$$;
COMMENT ON FUNCTION eightms.require_active_account(uuid) IS
	'Lock the account''s row (FOR SHARE) and raise refuse_inactive_account''s error unless it is active';

REVOKE ALL ON FUNCTION eightms.refuse_inactive_account(uuid, text), eightms.require_active_account(uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms_api.accept_invitation(token text) RETURNS eightms_api.profile
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid		text := eightms.require_user();
	email	text := eightms.require_verified_email();
	inv		eightms.invitation;
	result	eightms_api.profile;
BEGIN
	SELECT * INTO inv FROM eightms.invitation i
	 WHERE i.token_hash = eightms.token_hash(coalesce(accept_invitation.token, ''))
	 FOR UPDATE;
	-- One message for unknown, used, revoked and expired tokens alike, so
	-- the answer tells a guesser nothing.
	IF NOT FOUND OR inv.accepted_at IS NOT NULL OR inv.revoked_at IS NOT NULL
	   OR inv.expires_at < now() THEN
		RAISE EXCEPTION 'invitation is invalid or has expired'
			USING ERRCODE = '28000',
				  HINT = 'Ask the account owner for a new invitation.';
	END IF;
	IF inv.email <> email THEN
		RAISE EXCEPTION 'this invitation was sent to another email address'
			USING ERRCODE = '42501',
				  HINT = 'Sign in with the address the invitation was sent to.';
	END IF;
	-- A suspended or disabled account gains no members.
	PERFORM eightms.require_active_account(inv.account_id);
	INSERT INTO eightms.member (account_id, user_id, email, role, invited_by)
	VALUES (inv.account_id, uid, email, inv.role, inv.invited_by)
	ON CONFLICT (account_id, user_id) DO NOTHING;
	UPDATE eightms.invitation i SET accepted_at = now(), accepted_by = uid
	 WHERE i.account_id = inv.account_id AND i.invitation_id = inv.invitation_id;
	PERFORM eightms.act_on_account(inv.account_id,
		(SELECT m.role FROM eightms.member m WHERE m.account_id = inv.account_id AND m.user_id = uid));
	SELECT a.account_id, a.company_name, a.display_name, a.timezone, a.default_region,
		   a.status, a.created_at, a.updated_at
	  INTO result FROM eightms.account a WHERE a.account_id = inv.account_id;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.pair_phone(code text, device_id text, name text DEFAULT NULL,
									   app_version text DEFAULT NULL)
RETURNS TABLE (phone_id uuid, account_id uuid, token text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pc eightms.pairing_code;
	p eightms.phone;
	prev eightms.phone;
BEGIN
	SELECT * INTO pc FROM eightms.pairing_code c
	 WHERE c.code_hash = eightms.token_hash(upper(btrim(coalesce(pair_phone.code, ''))))
	 FOR UPDATE;
	IF NOT FOUND OR pc.used_at IS NOT NULL OR pc.expires_at < now() THEN
		RAISE EXCEPTION 'pairing code is invalid or has expired'
			USING ERRCODE = '28000', HINT = 'Create a new pairing code in the dashboard.';
	END IF;
	-- Nor phones: a code made before the account was suspended stays
	-- unused, and works again once it is reactivated (if not expired).
	PERFORM eightms.require_active_account(pc.account_id);
	IF device_id IS NULL OR length(device_id) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'device_id must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	IF length(name) > 100 THEN
		RAISE EXCEPTION 'a phone name must be at most 100 characters' USING ERRCODE = '22023';
	END IF;
	IF length(app_version) > 50 THEN
		RAISE EXCEPTION 'app_version must be at most 50 characters' USING ERRCODE = '22023';
	END IF;
	-- Pairing the same device again replaces its earlier pairing (at most
	-- one: the device index is unique among paired phones), whose pacing
	-- it keeps: the owner's setting, and the claims Android still counts.
	UPDATE eightms.phone o SET unpaired_at = now(), token_version = o.token_version + 1
	 WHERE o.account_id = pc.account_id AND o.device_id = pair_phone.device_id AND o.unpaired_at IS NULL
	RETURNING o.* INTO prev;
	INSERT INTO eightms.phone (account_id, device_id, name, app_version)
	VALUES (pc.account_id, pair_phone.device_id, pair_phone.name, pair_phone.app_version)
	RETURNING * INTO p;
	-- It is the same handset: its conversations (so that replies keep
	-- threading on it) and the messages waiting for it or in its hands move
	-- to the new pairing, which may report what the earlier one claimed.
	IF prev.phone_id IS NOT NULL THEN
		UPDATE eightms.phone n SET rate_limit = prev.rate_limit, rate_window = prev.rate_window,
			   rate_unit = prev.rate_unit, recent_claims = prev.recent_claims
		 WHERE n.account_id = p.account_id AND n.phone_id = p.phone_id;
		UPDATE eightms.conversation c SET phone_id = p.phone_id
		  FROM eightms.lock_phone_conversations(pc.account_id, prev.phone_id) l(id)
		 WHERE c.account_id = pc.account_id AND c.conversation_id = l.id;
		UPDATE eightms.message m SET phone_id = p.phone_id
		 WHERE m.account_id = pc.account_id AND m.phone_id = prev.phone_id AND m.pending;
	END IF;
	UPDATE eightms.pairing_code c SET used_at = now(), phone_id = p.phone_id
	 WHERE c.account_id = pc.account_id AND c.code_hash = pc.code_hash;
	RETURN QUERY SELECT p.phone_id, p.account_id,
		eightms.jwt_sign(jsonb_build_object('role', 'eightms_phone', 'account_id', p.account_id,
											'phone_id', p.phone_id, 'tv', p.token_version),
						 interval '365 days');
END
$$;

-- Columns that name what someone may do (a member's or an invitation's
-- role, a pairing code, a phone's token version and unpairing) are written
-- only by eightms's functions after their checks, no longer by an API
-- role's own SQL in its account (issue 17, finding 1's review).  The
-- functions that write them become SECURITY DEFINER; each names the
-- current account in every statement.
REVOKE UPDATE (role) ON eightms.member FROM eightms_user;
REVOKE DELETE ON eightms.member FROM eightms_user;
REVOKE INSERT ON eightms.invitation FROM eightms_user;
REVOKE INSERT, UPDATE ON eightms.phone, eightms.pairing_code FROM eightms_user;
GRANT UPDATE (rate_limit, rate_window, rate_unit) ON eightms.phone TO eightms_user;
REVOKE UPDATE ON eightms.phone FROM eightms_phone;
GRANT UPDATE (last_heartbeat_at, battery_pct, charging, network, app_version, gateway_password, recent_claims)
	ON eightms.phone TO eightms_phone;
ALTER FUNCTION eightms_api.invite_member(text, text) SECURITY DEFINER;
ALTER FUNCTION eightms_api.set_member_role(text, text) SECURITY DEFINER;
ALTER FUNCTION eightms_api.remove_member(text) SECURITY DEFINER;
ALTER FUNCTION eightms_api.create_pairing_code(interval) SECURITY DEFINER;
ALTER FUNCTION eightms_api.unpair_phone(uuid) SECURITY DEFINER;

-- ==== sessions
-- Sign-out belongs to the session and to the user, not to an account or a
-- membership (issue 17, finding 5).  The revocations move from the
-- per-account eightms.session, where removing a member deleted them, to two
-- global tables; eightms.session keeps when each session was first and last
-- seen acting on an account.

-- Signed-out sessions, in every account; read only by the pre-request hook,
-- written only by sign_out() (SECURITY DEFINER): no API role has any
-- privilege on them, and nothing in them belongs to a tenant.
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
GRANT SELECT ON eightms.session_revocation, eightms.user_revocation TO eightms_dba;

-- Every session signed out in 0.1.0, in any account, stays signed out
-- everywhere (its earliest sign-out is kept, so the purge counts from it).
INSERT INTO eightms.session_revocation (session_hash, user_id, revoked_at)
SELECT DISTINCT ON (s.session_hash) s.session_hash, s.user_id, s.revoked_at
  FROM eightms.session s
 WHERE s.revoked_at IS NOT NULL
 ORDER BY s.session_hash, s.revoked_at;
-- Its column grant to eightms_user goes with it.
ALTER TABLE eightms.session DROP COLUMN revoked_at;
COMMENT ON TABLE eightms.session IS
	'Sign-in sessions seen acting on the account (first and last seen), keyed by SHA-256 of the JWT session id; never the raw id';

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
	'Delete session and sign-out-everywhere revocations older than keep (30 days); scheduled daily';
REVOKE ALL ON FUNCTION eightms.jwt_issued_at(jsonb), eightms.purge_session_revocations(interval) FROM PUBLIC;

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-purge-session-revocations', '29 3 * * *', 'SELECT eightms.purge_session_revocations()',
	 'delete session revocations and sign-outs everywhere older than 30 days');

-- The pre-request hook checks both tables on every dashboard request, with
-- or without an account.
CREATE OR REPLACE FUNCTION eightms.pre_request_member() RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	claims		jsonb := eightms.jwt_claims();
	api_role	text := coalesce(claims ->> 'role', 'eightms_anon');
	uid			text := nullif(claims ->> 'sub', '');
	headers		jsonb;
	wanted		text;
	acct		uuid;
	mrole		text;
	astatus		text;
	sid			text;
	shash		bytea;
	iat			timestamptz;
	revoked		boolean;
	sseen		timestamptz;
BEGIN
	IF api_role = 'eightms_user' THEN
		IF uid IS NULL THEN
			RAISE EXCEPTION 'the JWT has no "sub" claim'
				USING ERRCODE = '28000',
					  HINT = 'Dashboard tokens must name the signed-in user in "sub".';
		END IF;

		headers := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
		wanted := coalesce(nullif(headers ->> 'x-eightms-account', ''), nullif(claims ->> 'account_id', ''));

		IF wanted IS NOT NULL THEN
			-- Read as uuid_in reads it (a case-insensitive regular expression
			-- here cost 40,000 instructions, an eighth of the hook).
			acct := eightms.try_uuid(wanted);
			IF acct IS NULL THEN
				RAISE EXCEPTION 'invalid account id "%"', left(wanted, 64)
					USING ERRCODE = '22P02',
						  HINT = 'X-Eightms-Account must be one of the ids eightms_api.my_accounts() returns.';
			END IF;
			SELECT m.role, a.status INTO mrole, astatus
			  FROM eightms.member m JOIN eightms.account a USING (account_id)
			 WHERE m.account_id = acct AND m.user_id = uid;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'not a member of account %', acct
					USING ERRCODE = '42501',
						  HINT = 'eightms_api.my_accounts() lists the accounts you belong to.';
			END IF;
		ELSE
			-- No choice made: a user with exactly one account acts on it.
			SELECT min(m.account_id::text)::uuid, min(m.role), min(a.status)
			  INTO acct, mrole, astatus
			  FROM eightms.member m JOIN eightms.account a USING (account_id)
			 WHERE m.user_id = uid
			HAVING count(*) = 1;
		END IF;

		IF acct IS NOT NULL THEN
			PERFORM eightms.refuse_inactive_account(acct, astatus);
		END IF;

		-- Signed-out sessions are refused on every request, with or without
		-- an account: a sign-out belongs to the session (session_id or sid)
		-- and, for sign_out(everywhere), to every token of the user issued
		-- at or before it (by iat; a token without a numeric iat cannot show
		-- it came later and is refused too), never to a membership.
		sid := coalesce(nullif(claims ->> 'session_id', ''), nullif(claims ->> 'sid', ''));
		IF sid IS NOT NULL THEN
			shash := eightms.token_hash(sid);
		END IF;
		iat := eightms.jwt_issued_at(claims);
		SELECT EXISTS (SELECT FROM eightms.session_revocation r WHERE r.session_hash = shash)
			   OR EXISTS (SELECT FROM eightms.user_revocation u
						   WHERE u.user_id = uid AND (iat IS NULL OR iat <= u.signed_out_at)),
			   (SELECT s.last_seen_at FROM eightms.session s
				 WHERE s.account_id = acct AND s.session_hash = shash)
		  INTO revoked, sseen;
		IF revoked THEN
			RAISE EXCEPTION 'this session has been signed out'
				USING ERRCODE = '28000',
					  HINT = 'Sign in again to get a new session.';
		END IF;
		-- Which sessions act on an account, and when last.  GET requests
		-- run read-only under PostgREST: record then only what a writable
		-- transaction can.
		IF acct IS NOT NULL AND shash IS NOT NULL
		   AND current_setting('transaction_read_only') = 'off' THEN
			IF sseen IS NULL THEN
				INSERT INTO eightms.session (account_id, session_hash, user_id)
				VALUES (acct, shash, uid)
				ON CONFLICT DO NOTHING;
			ELSIF sseen < now() - interval '1 minute' THEN
				UPDATE eightms.session s SET last_seen_at = now()
				 WHERE s.account_id = acct AND s.session_hash = shash
				   AND s.last_seen_at < now() - interval '1 minute';
			END IF;
		END IF;

		PERFORM eightms.act_on_account(acct, mrole);
		RETURN;
	ELSE
		-- Anonymous (and any other) callers act on no account.
		PERFORM eightms.act_on_account(NULL, NULL);
	END IF;
END
$$;

-- sign_out() writes the global tables (SECURITY DEFINER) and needs no
-- account; its grant to eightms_user stays.
CREATE OR REPLACE FUNCTION eightms_api.sign_out(everywhere boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me		text := eightms.require_user();
	claims	jsonb := eightms.jwt_claims();
	sid		text := coalesce(nullif(claims ->> 'session_id', ''), nullif(claims ->> 'sid', ''));
	all_of	boolean := coalesce(everywhere, false);
	n		integer;
BEGIN
	IF NOT all_of AND sid IS NULL THEN
		RAISE EXCEPTION 'the JWT names no session'
			USING ERRCODE = '22023',
				  HINT = 'Use sign_out(everywhere => true), or a token with a session_id claim.';
	END IF;
	IF all_of THEN
		INSERT INTO eightms.user_revocation AS u (user_id, signed_out_at)
		-- This token too, even if the provider's clock runs ahead of ours
		-- (by up to five minutes: a far-future iat must not lock the user
		-- out past the retention of this row).
		VALUES (me, greatest(now(), least(eightms.jwt_issued_at(claims), now() + interval '5 minutes')))
		ON CONFLICT (user_id) DO UPDATE SET signed_out_at = greatest(u.signed_out_at, excluded.signed_out_at);
	END IF;
	WITH revoked AS (
		INSERT INTO eightms.session_revocation (session_hash, user_id)
		SELECT h, me
		  FROM (SELECT eightms.token_hash(sid) WHERE sid IS NOT NULL
				UNION
				SELECT s.session_hash FROM eightms.session s WHERE all_of AND s.user_id = me) AS known(h)
		ON CONFLICT (session_hash) DO NOTHING
		RETURNING 1)
	SELECT count(*) INTO n FROM revoked;
	RETURN n;
END
$$;

-- ==== account setters
-- An agent's own SQL may not do what the API refuses an agent: the
-- account's profile, options and deletion, and invitations' revocation, are
-- written only by the API's functions after their role checks.
REVOKE UPDATE (company_name, display_name, timezone, default_region, updated_at) ON eightms.account FROM eightms_user;
REVOKE UPDATE (fold_lookalikes) ON eightms.account FROM eightms_user;
REVOKE DELETE ON eightms.account FROM eightms_user;
REVOKE UPDATE (revoked_at) ON eightms.invitation FROM eightms_user;
ALTER FUNCTION eightms_api.update_profile(text, text, text, text) SECURITY DEFINER;
ALTER FUNCTION eightms_api.revoke_invitation(uuid) SECURITY DEFINER;
ALTER FUNCTION eightms_api.delete_account(text) SECURITY DEFINER;
ALTER FUNCTION eightms_api.set_message_options(boolean) SECURITY DEFINER;


-- ==== auth
-- Tenancy no longer rests on request.jwt.claims, which any role may set:
-- the pre-request hook verifies the request's bearer token itself and binds
-- the verified claims to the transaction and role (eightms.verified_claims,
-- a setting only superusers may set); current_account_id(), jwt_claims()
-- and everything built on them read only that binding.  email_verified
-- counts only as a JSON true.
CREATE OR REPLACE FUNCTION eightms.jwt_claims() RETURNS jsonb
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_jwt_claims';
COMMENT ON FUNCTION eightms.jwt_claims() IS
	'The JWT claims the pre-request hook verified for the current transaction and role, or {} outside a request';

COMMENT ON FUNCTION eightms.current_account_id() IS
	'The account the pre-request hook verified for the current transaction and role; NULL when none (then no tenant row is visible)';

CREATE FUNCTION eightms.bind_account(acct uuid, member_role text) RETURNS jsonb
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'eightms_bind_account';
REVOKE ALL ON FUNCTION eightms.bind_account(uuid, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms.act_on_account(acct uuid, member_role text) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	claims jsonb := eightms.bind_account(acct, member_role);
BEGIN
	IF pg_catalog.current_setting('citus.propagate_set_commands', true) OPERATOR(pg_catalog.=) 'local' THEN
		EXECUTE pg_catalog.format('SET LOCAL request.jwt.claims = %L', claims::text);
	ELSE
		PERFORM pg_catalog.set_config('request.jwt.claims', claims::text, true);
	END IF;
END
$$;

COMMENT ON FUNCTION eightms_api.pre_request() IS
	'PostgREST db-pre-request: verifies the bearer token and binds its claims to the transaction, picks and checks the account (X-Eightms-Account header), refuses disabled accounts, revoked device tokens and signed-out sessions';

CREATE OR REPLACE FUNCTION eightms.require_verified_email() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims	jsonb := eightms.jwt_claims();
	email	text := lower(nullif(btrim(claims ->> 'email'), ''));
BEGIN
	IF email IS NULL THEN
		RAISE EXCEPTION 'the JWT has no "email" claim'
			USING ERRCODE = '28000',
				  HINT = 'Configure the auth provider to include the verified email in the token.';
	END IF;
	IF current_setting('eightms.require_verified_email', true) IS DISTINCT FROM 'off'
	   AND (claims -> 'email_verified') IS DISTINCT FROM 'true'::jsonb THEN
		RAISE EXCEPTION 'the JWT''s email is not verified'
			USING ERRCODE = '28000',
				  HINT = 'The token must carry "email_verified": true: verify the address with the sign-in provider, then sign in again.';
	END IF;
	RETURN email;
END
$$;


-- ==== bridge
-- Issue 17, findings 1, 2, 3, 9 and the header values of 10 (CHANGELOG).

-- The host and origin of a URL, read by libcurl's URL API as the worker
-- reads it.
CREATE FUNCTION eightms.http_url_host(url text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_http_url_host'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.http_url_host(text) IS
	'The host of an http or https URL as libcurl parses it (lower case, IPv6 without brackets); NULL when it does not parse';

CREATE FUNCTION eightms.http_origin(url text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_http_origin'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.http_origin(text) IS
	'scheme://host:port of an http or https URL as libcurl parses it (lower case, default port explicit); NULL when it does not parse';

-- Finding 9: the host is generated from the URL by that parser, so that
-- it cannot disagree with what the worker sends.  The view that reads it
-- goes and comes back; the column comes last, as in a fresh install.
DROP VIEW eightms.http_queue_stats;
ALTER TABLE eightms.http_request DROP COLUMN host;
ALTER TABLE eightms.http_request
	ADD COLUMN host text GENERATED ALWAYS AS (eightms.http_url_host(url)) STORED;
CREATE VIEW eightms.http_queue_stats AS
	SELECT r.host,
		   count(*) FILTER (WHERE r.state = 'queued' AND r.id <> ALL (f.ids)) AS queued,
		   count(*) FILTER (WHERE r.state = 'queued' AND r.next_attempt_at <= now()
							AND r.id <> ALL (f.ids)) AS due,
		   count(*) FILTER (WHERE r.id = ANY (f.ids)) AS in_flight,
		   count(*) FILTER (WHERE r.state = 'done') AS done,
		   count(*) FILTER (WHERE r.state = 'dead') AS dead,
		   coalesce(sum(greatest(r.attempts - 1, 0)), 0) AS retries,
		   count(*) FILTER (WHERE r.error IS NOT NULL) AS with_errors,
		   count(*) FILTER (WHERE r.callback_error IS NOT NULL) AS callback_errors,
		   min(r.next_attempt_at) FILTER (WHERE r.state = 'queued' AND r.id <> ALL (f.ids)) AS next_due
	  FROM eightms.http_request r CROSS JOIN eightms.http_in_flight() AS f(ids)
	 GROUP BY r.host;
COMMENT ON VIEW eightms.http_queue_stats IS 'The bridge by host: queued, due, in flight, done, dead, retries, errors';
GRANT SELECT ON eightms.http_queue_stats TO eightms_dba;

-- Finding 1: the operator roles read the queue and never write it; only
-- http_enqueue() (C, recording current_user as the enqueuer) does, through
-- http_enqueue_internal(), which runs as the extension's owner.
REVOKE ALL ON eightms.http_request FROM eightms_worker, eightms_dba;
GRANT SELECT ON eightms.http_request TO eightms_worker, eightms_dba;

-- Finding 10: header values are what RFC 9110 lets a sender send.
CREATE OR REPLACE FUNCTION eightms.http_check_headers(h jsonb, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF h IS NULL THEN
		RETURN;
	END IF;
	IF jsonb_typeof(h) <> 'object' THEN
		RAISE EXCEPTION '% must be a JSON object of header names to string values', what
			USING ERRCODE = '22023';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(h) LOOP
		IF k !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
			RAISE EXCEPTION 'invalid header name in %: "%"', what, left(k, 64) USING ERRCODE = '22023';
		END IF;
		IF jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'header % in % must be a string', left(k, 64), what USING ERRCODE = '22023';
		END IF;
		IF (v #>> '{}') !~ '^([!-~]([ \t!-~]*[!-~])?)?$' THEN
			RAISE EXCEPTION 'header % in % has a value HTTP does not allow', left(k, 64), what
				USING ERRCODE = '22023',
					  HINT = 'Header values are visible ASCII characters, with spaces and tabs only between them: no control characters, no line breaks, no non-ASCII (encode it, e.g. as RFC 8187 or base64).';
		END IF;
		IF lower(k) IN ('idempotency-key', 'host', 'content-length', 'transfer-encoding', 'connection') THEN
			RAISE EXCEPTION 'header % is set by the bridge', left(k, 64) USING ERRCODE = '22023';
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION eightms.http_enqueue_internal(
	enqueuer regrole,
	method text,
	url text,
	headers jsonb,
	body bytea,
	secret_headers jsonb,
	timeout interval,
	max_attempts integer,
	idempotency_key text,
	callback regprocedure,
	callback_context jsonb,
	follow_redirects boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text := upper(method);
	origin text;
	ikey text := coalesce(idempotency_key, gen_random_uuid()::text);
	new_id bigint;
	cb_name text[];
	cb_schema oid;
BEGIN
	IF enqueuer IS NULL THEN
		RAISE EXCEPTION 'http_enqueue_internal needs the enqueuing role' USING ERRCODE = '22023';
	END IF;
	IF url IS NULL OR length(url) > 8192 THEN
		RAISE EXCEPTION 'the URL is missing or longer than 8192 characters' USING ERRCODE = '22023';
	END IF;
	IF url !~* '^https?://[^/?#]' THEN
		RAISE EXCEPTION 'only http and https URLs can be requested: "%"', left(url, 128)
			USING ERRCODE = '22023',
				  HINT = 'Use an absolute URL such as https://api.example.com/path.';
	END IF;
	IF url ~ '[\s\x00-\x1f]' THEN
		RAISE EXCEPTION 'the URL contains spaces or control characters' USING ERRCODE = '22023';
	END IF;
	-- The worker's parser has the last word on what the URL means.
	origin := eightms.http_origin(url);
	IF origin IS NULL THEN
		RAISE EXCEPTION 'the URL is not a valid http or https URL'
			USING ERRCODE = '22023',
				  HINT = 'Use an absolute URL such as https://api.example.com/path.';
	END IF;
	IF m NOT IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
		RAISE EXCEPTION 'unsupported HTTP method "%"', left(method, 16)
			USING ERRCODE = '22023', HINT = 'Use GET, HEAD, POST, PUT, PATCH or DELETE.';
	END IF;
	PERFORM eightms.http_check_headers(headers, 'headers');
	PERFORM eightms.http_check_headers(secret_headers, 'secret_headers');
	-- Sent as the Idempotency-Key header: a field value like any other.
	IF length(ikey) NOT BETWEEN 1 AND 255 OR ikey !~ '^[!-~]([ \t!-~]*[!-~])?$' THEN
		RAISE EXCEPTION 'the idempotency key must be 1 to 255 visible ASCII characters (spaces and tabs only between them)'
			USING ERRCODE = '22023';
	END IF;
	IF timeout IS NULL OR timeout < interval '100 milliseconds' OR timeout > interval '10 minutes' THEN
		RAISE EXCEPTION 'timeout must be between 100 milliseconds and 10 minutes' USING ERRCODE = '22023';
	END IF;
	IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 100 THEN
		RAISE EXCEPTION 'max_attempts must be between 1 and 100' USING ERRCODE = '22023';
	END IF;
	IF callback IS NOT NULL THEN
		SELECT ARRAY[n.nspname::text, p.proname::text], n.oid INTO cb_name, cb_schema
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE p.oid = callback AND p.pronargs = 2
		   AND p.proargtypes[0] = 'bigint'::regtype AND p.proargtypes[1] = 'jsonb'::regtype;
		IF cb_name IS NULL THEN
			RAISE EXCEPTION 'callback % must take (request_id bigint, context jsonb)', callback
				USING ERRCODE = '22023';
		END IF;
		-- A temporary schema ends with its session, and another session
		-- may get the same name: a callback there could be anyone's.
		IF cb_schema = pg_my_temp_schema() OR pg_is_other_temp_schema(cb_schema) THEN
			RAISE EXCEPTION 'callback % is in a temporary schema', callback
				USING ERRCODE = '22023',
					  HINT = 'Create the callback function in a permanent schema.';
		END IF;
		IF NOT has_function_privilege(enqueuer::oid, callback::oid, 'EXECUTE') THEN
			RAISE EXCEPTION 'role % may not execute callback %', enqueuer, callback
				USING ERRCODE = '42501',
					  HINT = 'The callback runs as the role that enqueues the request: grant it EXECUTE on the function.';
		END IF;
	END IF;

	-- The id comes first: the secret headers are sealed to it and to the
	-- destination, so that they open for this request and URL only.
	new_id := nextval('eightms.http_request_id_seq'::regclass);
	INSERT INTO eightms.http_request AS r
		(id, method, url, headers, secret_headers, body, timeout_ms, max_attempts,
		 follow_redirects, idempotency_key, callback, callback_context, enqueued_by)
	OVERRIDING SYSTEM VALUE
	VALUES
		(new_id, m, url, coalesce(headers, '{}'),
		 CASE WHEN secret_headers IS NOT NULL AND secret_headers <> '{}'
			  THEN eightms.seal(secret_headers::text, 'http_request:' || new_id || ':' || origin || ':' || ikey) END,
		 body, (extract(epoch FROM timeout) * 1000)::integer, max_attempts,
		 follow_redirects, ikey, cb_name, callback_context, enqueuer);
	PERFORM eightms.bridge_wake_at_commit();
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION eightms.http_enqueue_internal(regrole, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'http_enqueue''s checks and insert, as the extension''s owner; called only by http_enqueue''s C with current_user (granted to no role)';
REVOKE ALL ON FUNCTION eightms.http_enqueue_internal(regrole, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) FROM PUBLIC;

-- Same signature, defaults and grants; now C, which passes current_user.
CREATE OR REPLACE FUNCTION eightms.http_enqueue(
	method text,
	url text,
	headers jsonb DEFAULT '{}',
	body bytea DEFAULT NULL,
	secret_headers jsonb DEFAULT NULL,
	timeout interval DEFAULT '30 seconds',
	max_attempts integer DEFAULT 5,
	idempotency_key text DEFAULT NULL,
	callback regprocedure DEFAULT NULL,
	callback_context jsonb DEFAULT NULL,
	follow_redirects boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'eightms_http_enqueue'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION eightms.http_enqueue(text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'Queue an HTTP request for the bridge worker (sent after commit, at least once, with a stable Idempotency-Key)';

-- Finding 3: the secret headers are sealed to the request's id, its
-- destination's origin and its idempotency key.
DROP FUNCTION eightms.http_secret_header_lines(bytea, text);
CREATE FUNCTION eightms.http_secret_header_lines(sealed bytea, request_id bigint, idempotency_key text, url text)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF sealed IS NULL THEN
		RETURN '{}';
	END IF;
	RETURN ARRAY(SELECT k || ': ' || v
				   FROM jsonb_each_text(eightms.unseal(sealed, 'http_request:' || request_id || ':'
												 || eightms.http_origin(url) || ':' || idempotency_key)::jsonb) AS h(k, v));
EXCEPTION WHEN OTHERS THEN
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eightms.http_secret_header_lines(bytea, bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.http_secret_header_lines(bytea, bigint, text, text) TO eightms_worker;
REVOKE ALL ON FUNCTION eightms.http_url_host(text), eightms.http_origin(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.http_url_host(text), eightms.http_origin(text) TO eightms_worker, eightms_dba;

UPDATE eightms.sealed_column
   SET context_sql = $$'http_request:' || id || ':' || eightms.http_origin(url) || ':' || idempotency_key$$
 WHERE table_name = 'eightms.http_request'::regclass AND column_name = 'secret_headers';
COMMENT ON COLUMN eightms.http_request.secret_headers IS
	'Headers such as Authorization, sealed with context ''http_request:'' || id || '':'' || eightms.http_origin(url) || '':'' || idempotency_key (bound to this request and its destination); opened only by the worker';

-- Values sealed under 0.1.0's context ('http_request:' || idempotency_key)
-- are sealed again under the new one, queued or finished (rotate_seals()
-- needs every value to open under the registered context).  Without the
-- keys (or for a value that does not open) they are left as they are: a
-- queued request among them goes dead, unsent, with an error that says so.
DO $$
DECLARE
	r record;
	ctx text;
	resealed bigint := 0;
	unopened bigint := 0;
BEGIN
	IF NOT EXISTS (SELECT FROM eightms.seal_status() s WHERE s.active) THEN
		SELECT count(*) INTO unopened FROM eightms.http_request WHERE secret_headers IS NOT NULL;
		IF unopened > 0 THEN
			RAISE NOTICE 'eightms: % requests have secret headers sealed under 0.1.0''s context and no seal key is loaded: they were left as they are', unopened
				USING HINT = 'Queued ones among them will go dead unsent ("could not open the secret headers"); enqueue them again.';
		END IF;
		RETURN;
	END IF;
	FOR r IN SELECT q.id, q.url, q.idempotency_key, q.secret_headers FROM eightms.http_request q
			  WHERE q.secret_headers IS NOT NULL ORDER BY q.id LOOP
		ctx := 'http_request:' || r.id || ':' || eightms.http_origin(r.url) || ':' || r.idempotency_key;
		BEGIN
			IF ctx IS NULL THEN
				RAISE EXCEPTION 'the URL does not parse';
			END IF;
			UPDATE eightms.http_request
			   SET secret_headers = eightms.seal(eightms.unseal(r.secret_headers, 'http_request:' || r.idempotency_key), ctx)
			 WHERE id = r.id;
			resealed := resealed + 1;
		EXCEPTION WHEN OTHERS THEN
			unopened := unopened + 1;
		END;
	END LOOP;
	IF unopened > 0 THEN
		RAISE NOTICE 'eightms: sealed the secret headers of % requests again; % could not be opened and were left as they are', resealed, unopened
			USING HINT = 'Queued ones among them will go dead unsent ("could not open the secret headers"); enqueue them again.';
	END IF;
END
$$;
