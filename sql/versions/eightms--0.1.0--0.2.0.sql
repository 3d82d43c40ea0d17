-- eightms 0.1.0 -> 0.2.0: written by hand, section by section, as each change
-- lands in sql/.  Run by ALTER EXTENSION eightms UPDATE; after it the catalog
-- equals a fresh install of 0.2.0 (test/t/008_upgrade.pl checks that).
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
	h		bytea := eightms.token_hash(coalesce(accept_invitation.token, ''));
	acct	uuid;
BEGIN
	-- The token names its account: found without a lock (on Citus, a read
	-- of every shard, which may not lock), then locked on the account's.
	SELECT i.account_id INTO acct FROM eightms.invitation i WHERE i.token_hash = h;
	SELECT * INTO inv FROM eightms.invitation i
	 WHERE i.account_id = acct AND i.token_hash = h
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
	h bytea := eightms.token_hash(upper(btrim(coalesce(pair_phone.code, ''))));
	acct uuid;
	t_now timestamptz := now();
	pc eightms.pairing_code;
	p eightms.phone;
	prev eightms.phone;
	convs uuid[];
BEGIN
	-- The code's account first, without a lock (on Citus a read of every
	-- shard by the hash's index: codes are made with no account in the
	-- phone's hands), then the code locked by its key, on one shard.
	SELECT c.account_id INTO acct FROM eightms.pairing_code c WHERE c.code_hash = h;
	SELECT * INTO pc FROM eightms.pairing_code c
	 WHERE c.account_id = acct AND c.code_hash = h
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
	UPDATE eightms.phone o SET unpaired_at = t_now, token_version = o.token_version + 1
	 WHERE o.account_id = pc.account_id AND o.device_id = pair_phone.device_id AND o.unpaired_at IS NULL
	RETURNING o.* INTO prev;
	INSERT INTO eightms.phone (account_id, device_id, name)
	VALUES (pc.account_id, pair_phone.device_id, pair_phone.name)
	RETURNING * INTO p;
	-- It is the same handset: its conversations (so that replies keep
	-- threading on it) and the messages waiting for it or in its hands move
	-- to the new pairing, which may report what the earlier one claimed.
	IF prev.phone_id IS NOT NULL THEN
		UPDATE eightms.phone n SET rate_limit = prev.rate_limit, rate_window = prev.rate_window,
			   rate_unit = prev.rate_unit, recent_claims = prev.recent_claims
		 WHERE n.account_id = p.account_id AND n.phone_id = p.phone_id;
		convs := ARRAY(SELECT eightms.lock_phone_conversations(pc.account_id, prev.phone_id));
		UPDATE eightms.conversation c SET phone_id = p.phone_id
		 WHERE c.account_id = pc.account_id AND c.conversation_id = ANY (convs);
		UPDATE eightms.message m SET phone_id = p.phone_id
		 WHERE m.account_id = pc.account_id AND m.phone_id = prev.phone_id AND m.pending;
	END IF;
	UPDATE eightms.pairing_code c SET used_at = t_now, phone_id = p.phone_id
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
GRANT UPDATE (last_heartbeat_at, battery_pct, charging, network, gateway_password, recent_claims)
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
SET plan_cache_mode = force_generic_plan
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
	revoked		boolean := false;
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
			-- Read as uuid_in reads it, without the case-insensitive regular
			-- expression that used to weigh on every dashboard request.
			acct := eightms.try_uuid(wanted);
			IF acct IS NULL THEN
				RAISE EXCEPTION 'invalid account id "%"', left(wanted, 64)
					USING ERRCODE = '22P02',
						  HINT = 'X-Eightms-Account must be one of the ids eightms_api.my_accounts() returns.';
			END IF;
			-- One table per statement, each by key: Citus plans such a
			-- statement under a generic plan (a join of two distributed
			-- tables with parameters it cannot), and on one server it is
			-- the same two index lookups.
			SELECT m.role INTO mrole FROM eightms.member m
			 WHERE m.account_id = acct AND m.user_id = uid;
			IF NOT FOUND THEN
				RAISE EXCEPTION 'not a member of account %', acct
					USING ERRCODE = '42501',
						  HINT = 'eightms_api.my_accounts() lists the accounts you belong to.';
			END IF;
		ELSE
			-- No choice made: a user with exactly one account acts on it.
			SELECT s.account_id, s.role INTO acct, mrole FROM eightms.sole_membership(uid) s;
		END IF;

		IF acct IS NOT NULL THEN
			SELECT a.status INTO astatus FROM eightms.account a WHERE a.account_id = acct;
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
			PERFORM FROM eightms.session_revocation r WHERE r.session_hash = shash;
			revoked := FOUND;
		END IF;
		IF NOT revoked THEN
			iat := eightms.jwt_issued_at(claims);
			PERFORM FROM eightms.user_revocation u
			 WHERE u.user_id = uid AND (iat IS NULL OR iat <= u.signed_out_at);
			revoked := FOUND;
		END IF;
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
			PERFORM eightms.record_session(acct, shash, uid);
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
	account uuid,
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
		RAISE EXCEPTION 'only http and https URLs can be requested'
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
		 follow_redirects, idempotency_key, callback, callback_context, enqueued_by, account_id)
	OVERRIDING SYSTEM VALUE
	VALUES
		(new_id, m, url, coalesce(headers, '{}'),
		 CASE WHEN secret_headers IS NOT NULL AND secret_headers <> '{}'
			  THEN eightms.seal(secret_headers::text, 'http_request:' || new_id || ':' || origin || ':' || ikey) END,
		 body, (extract(epoch FROM timeout) * 1000)::integer, max_attempts,
		 follow_redirects, ikey, cb_name, callback_context, enqueuer, account);
	PERFORM eightms.bridge_wake_at_commit();
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION eightms.http_enqueue_internal(regrole, uuid, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) IS
	'http_enqueue''s checks and insert, as the extension''s owner; called only by http_enqueue''s C with current_user and the verified account (granted to no role)';
REVOKE ALL ON FUNCTION eightms.http_enqueue_internal(regrole, uuid, text, text, jsonb, bytea, jsonb, interval, integer, text, regprocedure, jsonb, boolean) FROM PUBLIC;

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

-- ==== consent keywords
-- Opt-out in any reasonable words, unclear replies flagged for review with
-- one clarification, confirmations from per-account templates once per
-- change, and consent records that prove each change (issue 18, items 7
-- to 9; doc/consent.md).  sql/consent.sql, as it stands, then the two
-- gateway functions it changes: queue_reply returns the message's id (a
-- new return type: dropped and created again), and receive_messages hands
-- each stored body to eightms.apply_consent.
DROP FUNCTION eightms.queue_reply(uuid, uuid, uuid, text, text);
-- A reply the gateway sends on its own (the confirmations and the help
-- reply of sql/consent.sql), on the phone the message came in on; it is
-- queued even to an opted-out number, so its callers decide.  Returns the
-- message's id, which the consent change it confirms keeps.
CREATE OR REPLACE FUNCTION eightms.queue_reply(acct uuid, conv uuid, phone uuid, number text, body text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	i record;
	mid uuid;
BEGIN
	i := eightms.sms_info(body);
	INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body,
								 encoding, segments, status, pending, expires_at)
	VALUES (acct, conv, 'out', phone, number, body, i.encoding, i.segments, 'queued', true,
			now() + current_setting('eightms.message_ttl')::interval)
	RETURNING message_id INTO mid;
	RETURN mid;
END
$$;
GRANT EXECUTE ON FUNCTION eightms.queue_reply(uuid, uuid, uuid, text, text) TO eightms_user, eightms_phone, eightms_dba;

-- ------------------------------------------------------------ reading replies

-- The form a reply is matched in: compatibility forms folded (NFKD: a
-- full-width STOP, a no-break space, ligatures), accents dropped, so that
-- ARRÊT and DÉSABONNER read as ARRET and DESABONNER; zero-width and
-- format characters and apostrophes dropped (DON'T is one word, DONT);
-- every run of punctuation, symbols, emoji and spaces made one space;
-- ASCII letters upper-cased.  Letters of other scripts stay as they are
-- (and count as words), in NFC.  A body all in ASCII (nearly every one)
-- is read in C (src/consent_ascii.c), which gives the same text without
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
CREATE OR REPLACE FUNCTION eightms.consent_keyword(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT (eightms.consent_classify(body)).kind
$$;

-- ------------------------------------------------------------ records

-- Each change keeps what proves it: the exact text received, the form the
-- rules read, the rule that matched, and the confirmation it queued (when
-- is the existing column at).
ALTER TABLE eightms.consent_event
	ADD COLUMN inbound_text text,
	ADD COLUMN normalized text,
	ADD COLUMN rule text,
	ADD COLUMN confirmation_id uuid;
COMMENT ON COLUMN eightms.consent_event.inbound_text IS 'The inbound SMS that made the change, exactly as received (NULL for a change made by a member)';
COMMENT ON COLUMN eightms.consent_event.normalized IS 'That text as the consent rules read it (eightms.consent_normalize)';
COMMENT ON COLUMN eightms.consent_event.rule IS 'The rule of doc/consent.md that matched (stop.keyword, stop.short, start.keyword, review.member), or member.opt_out / member.opt_in for a change made by hand';
COMMENT ON COLUMN eightms.consent_event.confirmation_id IS 'The confirmation queued for this change (eightms.message), one per change';
-- A history that proves something is written by eightms alone: API roles
-- may add to it through the functions below, never rewrite or delete it
-- (deleting the account still deletes it).
REVOKE INSERT, UPDATE, DELETE ON eightms.consent_event FROM eightms_user;
REVOKE UPDATE ON eightms.consent_event FROM eightms_phone;

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

DO $rls$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['consent_review', 'consent_template'] LOOP
		EXECUTE format('ALTER TABLE eightms.%I ENABLE ROW LEVEL SECURITY', t);
		EXECUTE format('ALTER TABLE eightms.%I FORCE ROW LEVEL SECURITY', t);
		EXECUTE format('CREATE POLICY tenant_isolation ON eightms.%I USING (account_id = eightms.current_account_id()) WITH CHECK (account_id = eightms.current_account_id())', t);
	END LOOP;
END
$rls$;
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

REVOKE ALL ON FUNCTION eightms.queue_reply(uuid, uuid, uuid, text, text),
	eightms.consent_ascii(text), eightms.consent_normalize_unicode(text), eightms.consent_normalize(text),
	eightms.consent_classify(text),
	eightms.consent_default(text), eightms.consent_rates_notice(text),
	eightms.consent_render(text, text, text, text), eightms.consent_text(uuid, text),
	eightms.change_consent(uuid, uuid, uuid, text, text, uuid, text, text, text, text),
	eightms.apply_consent(uuid, uuid, uuid, text, uuid, text),
	eightms.check_consent_kind(text), eightms.check_consent_template(uuid, text, text),
	eightms.open_consent_review(uuid),
	eightms_api.set_consent_template(text, text), eightms_api.reset_consent_template(text),
	eightms_api.consent_templates(), eightms_api.send_consent_clarification(uuid),
	eightms_api.resolve_consent_review(uuid, boolean),
	eightms_api.consent_history(text, timestamptz, uuid, integer)
FROM PUBLIC;

-- (eightms_api.receive_messages: defined again below)

-- ==== gateway fixes
-- Issue 18: the consent lock (a send and a STOP serialise on the number's
-- conversation; a claim cancels what was queued before its number opted
-- out), bounds on the folded body, a sticky phone for conversations whose
-- first message no phone was chosen for, inbound de-duplication per
-- handset, per-item refusal of non-string values in send_messages,
-- archive_conversation refusing NULL, send_at older than a message lives,
-- no routing to a phone without a network, the inbox in the order the
-- phone received messages, archived conversations back with a new
-- message, and a phone's sent report winning over the gateway giving up.

-- Inbound is recognised per handset: the device the message came from.
-- Messages stored before keep their de-duplication: each gets its phone's
-- device, but a message a handset paired again stored a second time (the
-- bug) keeps none, so that the first stays the one its id names.
ALTER TABLE eightms.message ADD COLUMN device_id text;
UPDATE eightms.message m SET device_id = p.device_id
  FROM eightms.phone p
 WHERE m.device_message_id IS NOT NULL AND p.account_id = m.account_id AND p.phone_id = m.phone_id
   AND NOT EXISTS (SELECT FROM eightms.message e
					 JOIN eightms.phone q ON q.account_id = e.account_id AND q.phone_id = e.phone_id
					WHERE e.account_id = m.account_id AND e.device_message_id = m.device_message_id
					  AND q.device_id = p.device_id AND (e.created_at, e.message_id) < (m.created_at, m.message_id));
DROP INDEX eightms.message_device_message_key;
-- Inbound exactly once per handset: keyed on the device, not the pairing.
CREATE UNIQUE INDEX message_device_message_key ON eightms.message (account_id, device_id, device_message_id)
	WHERE device_message_id IS NOT NULL;
-- The conversation's messages in the order the phone received them.
DROP INDEX eightms.message_conversation_idx;
CREATE INDEX message_conversation_idx ON eightms.message (conversation_id, (coalesce(received_at, created_at)), message_id);

CREATE OR REPLACE FUNCTION eightms.opted_out(acct uuid, numbers text[]) RETURNS text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	hit text[];
BEGIN
	-- A statement on one table keyed by the account, as Citus plans it
	-- with parameters (an ARRAY(subquery) it cannot).
	SELECT coalesce(array_agg(o.number), '{}') INTO hit FROM eightms.opt_out o
	 WHERE o.account_id = acct AND o.number = ANY (numbers COLLATE "C");
	RETURN hit;
END
$$;

COMMENT ON FUNCTION eightms.opted_out(uuid, text[]) IS
	'The numbers of the list that have opted out; ask it only while holding their conversations'' row locks (the consent lock)';

CREATE FUNCTION eightms.body_error(body text, folded boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN body IS NULL OR length(body) NOT BETWEEN 1 AND 1600 THEN
		CASE WHEN folded THEN 'a message body must be 1 to 1600 characters once look-alikes are folded'
			 ELSE 'a message body must be 1 to 1600 characters' END END
$$;

CREATE FUNCTION eightms.send_at_error(send_at timestamptz, ttl interval) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN NOT isfinite(send_at) THEN 'send_at must be a date and time, not ' || send_at::text
				WHEN send_at + ttl < now() THEN 'send_at is further in the past than a message lives' END
$$;

CREATE FUNCTION eightms.outbound_item_error(x jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN jsonb_typeof(x) IS DISTINCT FROM 'object' THEN 'an item must be a JSON object'
		WHEN jsonb_typeof(x -> 'to') NOT IN ('string', 'null') THEN 'to must be a string: the recipient''s number'
		WHEN jsonb_typeof(x -> 'body') NOT IN ('string', 'null') THEN 'body must be a string'
		WHEN jsonb_typeof(x -> 'idempotency_key') NOT IN ('string', 'null') THEN 'idempotency_key must be a string'
		WHEN jsonb_typeof(x -> 'phone_id') NOT IN ('string', 'null') THEN 'phone_id must be a string: a phone''s id'
		WHEN jsonb_typeof(x -> 'send_at') NOT IN ('string', 'null') THEN 'send_at must be a string: a time with its offset' END
$$;

CREATE FUNCTION eightms.given_up(status text, claimed_at timestamptz, sent_at timestamptz, error text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT claimed_at IS NOT NULL AND sent_at IS NULL
		   AND (status IN ('expired', 'canceled')
				OR (status = 'failed' AND error LIKE 'the phone did not report within its lease %'))
$$;

CREATE FUNCTION eightms.sent_regardless(status text, error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT left(format('sent by the phone after it was %s (%s)', status, coalesce(error, status)), 500)
$$;

REVOKE ALL ON FUNCTION eightms.opted_out(uuid, text[]), eightms.body_error(text, boolean),
	eightms.send_at_error(timestamptz, interval), eightms.outbound_item_error(jsonb),
	eightms.given_up(text, timestamptz, timestamptz, text), eightms.sent_regardless(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.opted_out(uuid, text[]), eightms.body_error(text, boolean),
	eightms.send_at_error(timestamptz, interval), eightms.outbound_item_error(jsonb),
	eightms.given_up(text, timestamptz, timestamptz, text), eightms.sent_regardless(text, text)
TO eightms_user, eightms_phone, eightms_dba;

CREATE OR REPLACE FUNCTION eightms.healthy_phones(acct uuid, count_cap integer DEFAULT NULL)
RETURNS TABLE (phone_id uuid, queue_length bigint, battery_pct integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	since timestamptz := now() - current_setting('eightms.online_window')::interval;
	min_battery integer := current_setting('eightms.min_battery_pct')::integer;
	n bigint;
BEGIN
	-- The phones, then each one's queue: one table a statement, so that
	-- Citus sends each to the account's shard (doc/scale-out.md).
	FOR phone_id, battery_pct IN
		SELECT p.phone_id, p.battery_pct
		  FROM eightms.phone p
		 WHERE p.account_id = acct AND p.unpaired_at IS NULL AND p.last_heartbeat_at > since
		   AND (p.charging OR coalesce(p.battery_pct, 0) > min_battery)
		   -- A phone that reports no network cannot send what it is given.
		   AND p.network IS DISTINCT FROM 'none'
	LOOP
		PERFORM FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = healthy_phones.phone_id AND m.pending
		 LIMIT count_cap;
		GET DIAGNOSTICS n = ROW_COUNT;
		queue_length := n;
		RETURN NEXT;
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION eightms.queue_message(acct uuid, to_number text, body text, phone uuid,
									  idem text, send_at timestamptz)
RETURNS eightms.message
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	e164 text;
	info record;
	m eightms.message;
	conv uuid;
	conv_phone uuid;
	fold boolean;
	region text;
	ttl interval := current_setting('eightms.message_ttl')::interval;
	at timestamptz := now();
	due timestamptz;
	err text;
BEGIN
	IF to_number IS NULL OR btrim(to_number) = '' THEN
		RAISE EXCEPTION 'a recipient number is required' USING ERRCODE = '22023',
			HINT = 'Write it with its country code (+44 ...) or as dialled in the account''s default region.';
	END IF;
	IF length(idem) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'an idempotency key must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	err := eightms.send_at_error(send_at, ttl);
	IF err IS NOT NULL THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023',
			HINT = 'Pass a time with its offset (2026-11-29T10:00:00-05:00); a message lives eightms.message_ttl from its send_at.';
	END IF;
	IF idem IS NOT NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		IF FOUND THEN
			RETURN m;
		END IF;
	END IF;
	-- The account's region is passed to e164 (with a NULL region it would
	-- look it up again, unplanned, for every message).
	SELECT a.fold_lookalikes, a.default_region INTO fold, region FROM eightms.account a WHERE a.account_id = acct;
	-- The bounds hold for what will be sent: folding turns an ellipsis into
	-- three characters and drops zero-width spaces.
	fold := body IS NOT NULL AND fold;
	IF fold THEN
		body := eightms.sms_fold(body);
	END IF;
	err := eightms.body_error(body, fold);
	IF err IS NOT NULL AND fold THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023',
			HINT = 'The account folds typographic look-alikes to GSM-7 (set_message_options): an ellipsis counts three characters, zero-width spaces none.';
	ELSIF err IS NOT NULL THEN
		RAISE EXCEPTION '%', err USING ERRCODE = '22023';
	END IF;
	e164 := eightms.e164(to_number, region, true);
	IF phone IS NOT NULL THEN
		PERFORM FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = phone AND p.unpaired_at IS NULL;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'no paired phone %', phone USING ERRCODE = 'P0002';
		END IF;
	END IF;
	-- A conversation keeps its phone, so replies thread on the handset;
	-- a new one (or one without a phone) gets the healthiest phone.
	-- The row is locked (updated) before the message refers to it: with no
	-- foreign key, that is what keeps a concurrent delete_conversation from
	-- leaving this message without its conversation.  It is also the
	-- consent lock (above): the opt-out list is read after it.
	UPDATE eightms.conversation c SET last_message_at = at
	 WHERE c.account_id = acct AND c.peer_number = e164
	RETURNING c.conversation_id, c.phone_id INTO conv, conv_phone;
	IF conv IS NULL OR conv_phone IS NULL THEN
		conv := eightms.conversation_for(acct, e164, coalesce(phone, eightms.pick_phone(acct)));
		UPDATE eightms.conversation c SET last_message_at = at
		 WHERE c.account_id = acct AND c.conversation_id = conv
		RETURNING c.phone_id INTO conv_phone;
	END IF;
	PERFORM FROM eightms.opt_out o WHERE o.account_id = acct AND o.number = e164;
	IF FOUND THEN
		RAISE EXCEPTION 'the recipient has opted out of messages from this account'
			USING ERRCODE = 'E8O01',
				  HINT = 'The recipient must text START to opt back in; nothing was queued.';
	END IF;
	info := eightms.sms_info(body);
	due := coalesce(send_at, at);
	INSERT INTO eightms.message AS x (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, pending, idempotency_key, send_at, expires_at)
	VALUES (acct, conv, 'out', coalesce(phone, conv_phone), e164, body, info.encoding, info.segments,
			'queued', true, idem, due, due + ttl)
	ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING * INTO m;
	IF m.message_id IS NULL THEN
		SELECT * INTO m FROM eightms.message x WHERE x.account_id = acct AND x.idempotency_key = idem;
		RETURN m;
	END IF;
	-- Realtime: ids only, never content or numbers.
	PERFORM pg_notify('eightms_outbound', json_build_object('account_id', acct, 'phone_id', m.phone_id,
															'message_ids', json_build_array(m.message_id))::text);
	RETURN m;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.send_messages(messages jsonb)
RETURNS TABLE (item integer, message_id uuid, status text, error_code text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	acct uuid;
	region text;
	fold boolean;
	ttl interval := current_setting('eightms.message_ttl')::interval;
	ids uuid[];
	x jsonb;
	m eightms.message;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 10000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 10000 items' USING ERRCODE = '22023';
	END IF;
	SELECT a.default_region, a.fold_lookalikes INTO region, fold FROM eightms.account a WHERE a.account_id = acct;
	BEGIN
		ids := eightms.queue_plain_outbound(acct, messages, region, fold, ttl);
	EXCEPTION WHEN OTHERS THEN
		ids := NULL;
	END;
	IF ids IS NOT NULL AND array_position(ids, NULL) IS NULL THEN
		RETURN QUERY SELECT u.ord::integer, u.id, 'queued'::text, NULL::text, NULL::text
					   FROM unnest(ids) WITH ORDINALITY AS u(id, ord);
		RETURN;
	END IF;
	FOR i IN 1 .. jsonb_array_length(messages) LOOP
		item := i;
		IF ids[i] IS NOT NULL THEN
			message_id := ids[i];
			status := 'queued';
			error_code := NULL;
			error := NULL;
			RETURN NEXT;
			CONTINUE;
		END IF;
		x := messages -> (i - 1);
		BEGIN
			error := eightms.outbound_item_error(x);
			IF error IS NOT NULL THEN
				RAISE EXCEPTION '%', error USING ERRCODE = '22023';
			END IF;
			m := eightms.queue_message(acct, x ->> 'to', x ->> 'body', (x ->> 'phone_id')::uuid,
									   x ->> 'idempotency_key', (x ->> 'send_at')::timestamptz);
			message_id := m.message_id;
			status := m.status;
			error_code := NULL;
			error := NULL;
		EXCEPTION WHEN OTHERS THEN
			message_id := NULL;
			status := 'refused';
			GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE, error = MESSAGE_TEXT;
		END;
		RETURN NEXT;
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.claim_messages(max integer DEFAULT 10)
RETURNS TABLE (message_id uuid, to_number text, body text, encoding text, segments integer,
			   attempt integer, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	t_now timestamptz := now();
	lim integer;
	by_segments boolean := false;
	win interval;
	budget integer;
	recent timestamptz[];
	picked uuid[];
	tids tid[];
	segs integer[];
	convs uuid[];
	peers text[];
	created timestamptz[];
	expires timestamptz[];
	statuses text[];
	tries integer[];
	fates text[];
	keep integer;
	n integer;
BEGIN
	-- What a claim usually finds first: whether a phone of the account is
	-- gone, whose work then moves first (expire_messages), and whether
	-- either queue the picks below read has anything due.  With nothing
	-- due, as for an idle phone's every poll, the claim is over without the
	-- pacing lock and the picks.
	PERFORM FROM eightms.phone p
	 WHERE p.account_id = acct
	   AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at,
							  t_now - current_setting('eightms.online_window')::interval, false)
	 LIMIT 1;
	IF FOUND THEN
		PERFORM eightms.expire_messages(acct);
	ELSE
		PERFORM FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= t_now
		   AND (m.status = 'queued' OR m.lease_expires_at < t_now)
		 LIMIT 1;
		IF NOT FOUND THEN
			PERFORM FROM eightms.message m
			 WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= t_now
			 LIMIT 1;
			IF NOT FOUND THEN
				RETURN;
			END IF;
		END IF;
	END IF;
	max := least(greatest(coalesce(max, 10), 0), 100);
	-- Pacing: this phone's claims within its window, kept on its row; the
	-- row lock makes two concurrent claims of one phone count each other.
	-- A phone without a limit (no row here) is neither read twice nor locked.
	SELECT p.rate_limit, p.rate_unit = 'segments', p.rate_window, p.recent_claims
	  INTO lim, by_segments, win, recent
	  FROM eightms.phone p
	 WHERE p.account_id = acct AND p.phone_id = me AND p.rate_limit IS NOT NULL
	   FOR NO KEY UPDATE;
	IF lim IS NOT NULL THEN
		recent := ARRAY(SELECT t FROM unnest(recent) t WHERE t > t_now - win);
		-- One entry in recent per message, or per segment, claimed.
		budget := greatest(lim - cardinality(recent), 0);
		max := least(max, budget);
	END IF;
	IF max = 0 THEN
		RETURN;
	END IF;
	-- This phone's own queue first, then messages no phone was chosen for,
	-- whose conversations are kept (step 4), after a NULL for each of this
	-- phone's own messages.
	SELECT coalesce(array_agg(q.message_id), '{}'), coalesce(array_agg(q.tid), '{}'),
		   coalesce(array_agg(q.segments), '{}'), coalesce(array_agg(q.peer_number), '{}'),
		   coalesce(array_agg(q.created_at), '{}'), coalesce(array_agg(q.expires_at), '{}'),
		   coalesce(array_agg(q.status), '{}'), coalesce(array_agg(q.attempts), '{}')
	  INTO picked, tids, segs, peers, created, expires, statuses, tries
	  FROM eightms.lock_due_messages(acct, me, true, max, t_now) q;
	IF cardinality(picked) < max THEN
		convs := array_fill(NULL::uuid, ARRAY[cardinality(picked)]);
		SELECT picked || coalesce(array_agg(q.message_id), '{}'), tids || coalesce(array_agg(q.tid), '{}'),
			   segs || coalesce(array_agg(q.segments), '{}'), peers || coalesce(array_agg(q.peer_number), '{}'),
			   created || coalesce(array_agg(q.created_at), '{}'), expires || coalesce(array_agg(q.expires_at), '{}'),
			   statuses || coalesce(array_agg(q.status), '{}'), tries || coalesce(array_agg(q.attempts), '{}'),
			   convs || coalesce(array_agg(q.conversation_id), '{}')
		  INTO picked, tids, segs, peers, created, expires, statuses, tries, convs
		  FROM eightms.lock_due_messages(acct, me, false, max - cardinality(picked), t_now) q;
	END IF;
	IF cardinality(picked) = 0 THEN
		RETURN;
	END IF;
	fates := eightms.claim_fates(acct, peers, created, expires, statuses, tries, t_now);
	-- Paced by segments: the messages, in order, whose segments fit what is
	-- left of the window (what expires or fails here costs none).  The rest
	-- stay queued; their row locks go with this transaction.
	IF by_segments THEN
		keep := (SELECT count(*)
				   FROM (SELECT sum(CASE WHEN u.f = 'claimed' THEN u.s ELSE 0 END) OVER (ORDER BY u.i) AS used
						   FROM unnest(segs, fates) WITH ORDINALITY AS u(s, f, i)) x
				  WHERE x.used <= budget);
		-- A message longer than the whole limit would never fit: it goes
		-- out alone, in a window with nothing else in it.
		IF keep = 0 AND cardinality(recent) = 0 THEN
			keep := 1;
		END IF;
		picked := picked[1:keep];
		tids := tids[1:keep];
		fates := fates[1:keep];
		segs := segs[1:keep];
		convs := convs[1:keep];
	END IF;
	IF cardinality(picked) = 0 THEN
		RETURN;
	END IF;
	RETURN QUERY SELECT * FROM eightms.settle_claims(acct, me, picked, tids, fates, t_now);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF convs[cardinality(convs)] IS NOT NULL THEN
		PERFORM eightms.give_conversations_phone(acct, me,
			ARRAY(SELECT u.conv FROM unnest(convs, fates) AS u(conv, fate) WHERE u.fate = 'claimed'));
	END IF;
	IF lim IS NOT NULL AND n > 0 THEN
		IF by_segments THEN
			n := (SELECT sum(u.s) FROM unnest(segs, fates) AS u(s, f) WHERE u.f = 'claimed');
		END IF;
		recent := recent || array_fill(t_now, ARRAY[n]);
		UPDATE eightms.phone p SET recent_claims = recent
		 WHERE p.account_id = acct AND p.phone_id = me;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.report_messages(reports jsonb)
RETURNS TABLE (message_id uuid, status text, accepted boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	t_now timestamptz := now();
	ids uuid[];
	sts text[];
	errs text[];
	ats timestamptz[];
	sent_ids uuid[];
	sent_ats timestamptz[];
	delivered_ids uuid[];
	delivered_ats timestamptz[];
	failed_ids uuid[];
	failed_ats timestamptz[];
	failed_errs text[];
	moved uuid[] := '{}';
	still_ids uuid[];
	still_statuses text[];
	cur_given_up boolean[];
	f record;
	-- The campaign messages moved (sql/campaign_stats.sql).
	camp uuid[];
	c uuid;
BEGIN
	IF jsonb_typeof(reports) IS DISTINCT FROM 'array' OR jsonb_array_length(reports) > 10000 THEN
		RAISE EXCEPTION 'reports must be a JSON array of at most 10000 {id, status, error, at}' USING ERRCODE = '22023';
	END IF;
	IF eightms.ids_are_distinct(reports) THEN
		-- The usual batch names each message once: one write per status.
		-- The reports' ids and statuses in batch order, for the answer, and
		-- each status's reports in id order (apply_reports), read at once.
		SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(r.st), '{}'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'sent'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'sent'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'delivered'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'delivered'),
			   array_agg(r.id ORDER BY r.id) FILTER (WHERE r.st = 'failed'),
			   array_agg(r.at ORDER BY r.id) FILTER (WHERE r.st = 'failed'),
			   array_agg(r.err ORDER BY r.id) FILTER (WHERE r.st = 'failed')
		  INTO ids, sts, sent_ids, sent_ats, delivered_ids, delivered_ats, failed_ids, failed_ats, failed_errs
		  FROM (SELECT eightms.try_uuid(t.x ->> 'id') AS id, t.x ->> 'status' AS st, t.x ->> 'error' AS err,
					   least(coalesce(eightms.json_time(t.x -> 'at'), t_now), t_now) AS at
				  FROM jsonb_array_elements(reports) AS t(x)
				-- Each report read once, not once for each aggregate.
				OFFSET 0) r;
		IF sent_ids IS NOT NULL THEN
			SELECT coalesce(array_agg(a.message_id), '{}'), array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'sent', sent_ids, sent_ats, NULL) a;
		END IF;
		IF delivered_ids IS NOT NULL THEN
			SELECT moved || coalesce(array_agg(a.message_id), '{}'),
				   camp || array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'delivered', delivered_ids, delivered_ats, NULL) a;
		END IF;
		IF failed_ids IS NOT NULL THEN
			SELECT moved || coalesce(array_agg(a.message_id), '{}'),
				   camp || array_agg(a.message_id) FILTER (WHERE a.campaign_id IS NOT NULL)
			  INTO moved, camp
			  FROM eightms.apply_reports(acct, me, 'failed', failed_ids, failed_ats, failed_errs) a;
		END IF;
		IF camp IS NOT NULL THEN
			PERFORM eightms.follow_campaign_messages(acct, camp);
		END IF;
		-- What did not move: late, repeated, malformed or not this phone's
		-- (the ids are distinct: when as many moved, all did).
		IF cardinality(moved) < cardinality(ids) THEN
			still_ids := ARRAY(SELECT u FROM unnest(ids) u EXCEPT SELECT u FROM unnest(moved) u);
		END IF;
		IF cardinality(still_ids) > 0 THEN
			SELECT array_agg(m.message_id), array_agg(m.status) INTO still_ids, still_statuses
			  FROM eightms.message m
			 WHERE m.account_id = acct AND m.direction = 'out' AND m.phone_id = me AND m.message_id = ANY (still_ids);
		ELSE
			still_ids := NULL;
		END IF;
		RETURN QUERY
		SELECT r.id, r.st,
			   (mv.id IS NOT NULL OR still.status IS NOT NULL) AND coalesce(r.st IN ('sent', 'delivered', 'failed'), false),
			   CASE WHEN mv.id IS NOT NULL THEN NULL
					WHEN still.status IS NULL THEN 'no such message for this phone'
					WHEN r.st IS NULL OR r.st NOT IN ('sent', 'delivered', 'failed')
					THEN 'status must be sent, delivered or failed'
					ELSE 'already ' || still.status END
		  FROM unnest(ids, sts) WITH ORDINALITY AS r(id, st, ord)
		  -- Joined, not r.id = ANY (moved): that walks the batch for each report.
		  LEFT JOIN unnest(moved) AS mv(id) ON mv.id = r.id
		  LEFT JOIN unnest(still_ids, still_statuses) AS still(id, status) ON still.id = r.id
		 ORDER BY r.ord;
		RETURN;
	END IF;
	-- The reports, in batch order; a malformed id names no message.
	SELECT coalesce(array_agg(eightms.try_uuid(t.x ->> 'id')), '{}'), coalesce(array_agg(t.x ->> 'status'), '{}'),
		   coalesce(array_agg(t.x ->> 'error'), '{}'),
		   coalesce(array_agg(least(coalesce(eightms.json_time(t.x -> 'at'), t_now), t_now)), '{}')
	  INTO ids, sts, errs, ats
	  FROM jsonb_array_elements(reports) AS t(x);
	-- A message named more than once: the phone's messages named are
	-- locked, then read, and each report is folded in (report_steps).
	PERFORM FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.phone_id = me
	 ORDER BY m.message_id
	   FOR NO KEY UPDATE;
	SELECT array_agg(m.message_id), array_agg(m.status),
		   array_agg(eightms.given_up(m.status, m.claimed_at, m.sent_at, m.error))
	  INTO still_ids, still_statuses, cur_given_up
	  FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.phone_id = me;
	FOR f IN
		SELECT step.id,
			   (array_agg(step.st ORDER BY step.ord DESC))[1] AS st,
			   (array_agg(step.at ORDER BY step.ord) FILTER (WHERE step.st IN ('sent', 'delivered')))[1] AS sent_at,
			   max(step.at) FILTER (WHERE step.st = 'delivered') AS delivered_at,
			   max(step.at) FILTER (WHERE step.st = 'failed') AS failed_at,
			   max(left(coalesce(step.err, 'failed on the phone'), 500)) FILTER (WHERE step.st = 'failed') AS error
		  FROM eightms.report_steps(ids, sts, errs, ats, still_ids, still_statuses, cur_given_up) step
		 WHERE step.moves
		 GROUP BY step.id
	LOOP
		UPDATE eightms.message x SET
			status = f.st,
			pending = NULL,
			lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, f.sent_at),
			delivered_at = coalesce(f.delivered_at, x.delivered_at),
			failed_at = coalesce(f.failed_at, x.failed_at),
			error = CASE WHEN f.error IS NOT NULL THEN f.error
						 WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = f.id
		RETURNING x.campaign_id INTO c;
		IF c IS NOT NULL THEN
			camp := camp || f.id;
		END IF;
	END LOOP;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
	RETURN QUERY
	SELECT step.id, step.st,
		   step.mine AND coalesce(step.st IN ('sent', 'delivered', 'failed'), false),
		   CASE WHEN NOT step.mine THEN 'no such message for this phone'
				WHEN step.st IS NULL OR step.st NOT IN ('sent', 'delivered', 'failed')
				THEN 'status must be sent, delivered or failed'
				WHEN NOT step.moves THEN 'already ' || step.was END
	  FROM eightms.report_steps(ids, sts, errs, ats, still_ids, still_statuses, cur_given_up) step
	 ORDER BY step.ord;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.receive_messages(messages jsonb)
RETURNS TABLE (device_message_id text, message_id uuid, duplicate boolean, consent text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	x jsonb;
	region text;
	-- Messages are recognised per handset: pairing it again keeps them.
	dev text;
	-- The account's option (sql/contacts.sql): the new messages whose
	-- senders become contacts, made in one statement after the batch.
	make_contacts boolean;
	stored uuid[];
	senders text[];
	-- The account has campaigns that reached numbers: the batch's new
	-- messages, and whether each opted its number out, for attribution.
	attribute boolean;
	mids uuid[];
	opted_ids uuid[];
	peers text[];
	ats timestamptz[];
	opts boolean[];
BEGIN
	SELECT a.default_region, a.create_contacts_from_inbound INTO region, make_contacts
	  FROM eightms.account a WHERE a.account_id = acct;
	SELECT p.device_id INTO dev FROM eightms.phone p WHERE p.account_id = acct AND p.phone_id = me;
	IF jsonb_typeof(messages) IS DISTINCT FROM 'array' OR jsonb_array_length(messages) > 1000 THEN
		RAISE EXCEPTION 'messages must be a JSON array of at most 1000 {from, body, received_at, device_message_id}'
			USING ERRCODE = '22023', HINT = 'Send a longer backlog in several calls.';
	END IF;
	IF jsonb_array_length(messages) > 1 THEN
		PERFORM eightms.lock_senders(acct, me, dev, region, messages);
	END IF;
	-- One probe of campaign_recipient_reached_idx.
	PERFORM FROM eightms.campaign_recipient r WHERE r.account_id = acct AND r.reached_at IS NOT NULL LIMIT 1;
	attribute := FOUND;
	FOR x IN SELECT * FROM jsonb_array_elements(messages) LOOP
		device_message_id := x ->> 'device_message_id';
		message_id := NULL;
		duplicate := NULL;
		consent := NULL;
		-- An item that can never be stored is answered, not raised: raised,
		-- it would fail the whole batch, and the phone would send the same
		-- batch again and again while the other messages in it wait.
		error := eightms.inbound_error(x, device_message_id);
		IF error IS NULL THEN
			SELECT r.message_id, r.duplicate, r.consent INTO message_id, duplicate, consent
			  FROM eightms.receive_one(acct, me, dev, region, x) r;
			IF make_contacts AND NOT duplicate THEN
				stored := stored || message_id;
			END IF;
			IF attribute AND NOT duplicate THEN
				mids := mids || receive_messages.message_id;
				IF consent = 'opt_out' THEN
					opted_ids := opted_ids || receive_messages.message_id;
				END IF;
			END IF;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF stored IS NOT NULL THEN
		SELECT array_agg(m.peer_number) INTO senders FROM eightms.message m
		 WHERE m.account_id = acct AND m.message_id = ANY (stored);
		PERFORM eightms.inbound_contacts(acct, senders);
	END IF;
	-- Replies and opt-outs count for the campaign that reached their
	-- number last (sql/campaign_stats.sql), once per batch.
	IF mids IS NOT NULL THEN
		SELECT array_agg(m.peer_number), array_agg(m.received_at), array_agg(coalesce(m.message_id = ANY (opted_ids), false))
		  INTO peers, ats, opts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.message_id = ANY (mids);
		PERFORM eightms.attribute_answers(acct, peers, ats, opts);
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.archive_conversation(conversation_id uuid, archived boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
	-- Read before the statement: Citus cannot send now() inside a CASE
	-- to the shard.
	at timestamptz := CASE WHEN archived THEN now() END;
BEGIN
	IF archived IS NULL THEN
		RAISE EXCEPTION 'archived must be true or false' USING ERRCODE = '22023',
			HINT = 'Pass false to bring a conversation back to the inbox.';
	END IF;
	UPDATE eightms.conversation c SET archived_at = at
	 WHERE c.account_id = acct AND c.conversation_id = archive_conversation.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', archive_conversation.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- Its rows name the contact with their number (0.2.0, "contacts in the
-- inbox"): a new return type, so dropped and created again.
DROP FUNCTION eightms_api.list_conversations(timestamptz, uuid, integer, boolean);
CREATE FUNCTION eightms_api.list_conversations(after_at timestamptz DEFAULT NULL, after_id uuid DEFAULT NULL,
											   page_size integer DEFAULT 50, archived boolean DEFAULT false)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid, last_message_at timestamptz,
			   unread_count integer, archived_at timestamptz, last_body text, last_direction text,
			   contact_id uuid, first_name text, last_name text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	-- The page first, then each row's last message and contact: only the
	-- page's rows look them up (the contact by contact_phone_key).
	RETURN QUERY
	SELECT c.conversation_id, c.peer_number, c.phone_id, c.last_message_at, c.unread_count, c.archived_at,
		   lm.body, lm.direction, ct.contact_id, ct.first_name, ct.last_name
	  FROM (SELECT c.*
			  FROM eightms.conversation c
			 WHERE c.account_id = acct
			   AND (c.archived_at IS NOT NULL) = coalesce(list_conversations.archived, false)
			   AND c.last_message_at IS NOT NULL
			   AND (after_at IS NULL
					OR (c.active_minute <= date_bin('1 minute', after_at, '2000-01-01 00:00:00+00')
						AND (c.last_message_at, c.conversation_id) < (after_at, after_id)))
			 -- The same order as by last_message_at alone: the index gives
			 -- the minutes, and only the rows within a minute are sorted.
			 ORDER BY c.active_minute DESC, c.last_message_at DESC, c.conversation_id DESC
			 LIMIT least(greatest(coalesce(page_size, 50), 1), 200)) c
	  -- The account by its value here too: Citus routes the whole statement
	  -- to one shard only when each table names it.
	  LEFT JOIN LATERAL (SELECT m.body, m.direction FROM eightms.message m
						  WHERE m.account_id = acct AND m.conversation_id = c.conversation_id
						  ORDER BY coalesce(m.received_at, m.created_at) DESC, m.message_id DESC LIMIT 1) lm ON true
	  LEFT JOIN eightms.contact ct ON ct.account_id = acct AND ct.phone = c.peer_number
	 ORDER BY c.last_message_at DESC, c.conversation_id DESC;
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.list_conversations(timestamptz, uuid, integer, boolean) TO eightms_user;
REVOKE ALL ON FUNCTION eightms_api.list_conversations(timestamptz, uuid, integer, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms_api.conversation_messages(conversation_id uuid, after_at timestamptz DEFAULT NULL,
												  after_id uuid DEFAULT NULL, page_size integer DEFAULT 50)
RETURNS SETOF eightms_api.messages
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	-- PL/pgSQL, the account read first, as list_conversations.
	RETURN QUERY
	SELECT v.* FROM eightms_api.messages v
	 WHERE v.account_id = acct AND v.conversation_id = conversation_messages.conversation_id
	   AND (after_at IS NULL OR (coalesce(v.received_at, v.created_at), v.message_id) < (after_at, after_id))
	 ORDER BY coalesce(v.received_at, v.created_at) DESC, v.message_id DESC
	 LIMIT least(greatest(coalesce(page_size, 50), 1), 200);
END
$$;

-- ==== no personal data in errors
-- invite_member's refusals no longer quote the address.
CREATE OR REPLACE FUNCTION eightms_api.invite_member(email text, role text DEFAULT 'agent')
RETURNS TABLE (invitation_id uuid, token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	mine	text := eightms.require_member_role('owner', 'admin');
	addr	text := lower(btrim(invite_member.email));
	tok		text := eightms.random_token(24);
	inv		eightms.invitation;
BEGIN
	IF invite_member.role IS NULL OR invite_member.role NOT IN ('owner', 'admin', 'agent') THEN
		RAISE EXCEPTION 'unknown member role "%"', left(invite_member.role, 32)
			USING ERRCODE = '22023', HINT = 'Roles are owner, admin and agent.';
	END IF;
	IF mine = 'admin' AND invite_member.role <> 'agent' THEN
		RAISE EXCEPTION 'admins can invite agents only'
			USING ERRCODE = '42501', HINT = 'Ask an owner to invite owners and admins.';
	END IF;
	IF addr IS NULL OR addr !~ '^[^@[:space:]]+@[^@[:space:]]+$' OR length(addr) > 320 THEN
		RAISE EXCEPTION 'invalid email address'
			USING ERRCODE = '22023', HINT = 'Pass one address such as name@example.com, at most 320 characters.';
	END IF;
	IF EXISTS (SELECT 1 FROM eightms.member m
				WHERE m.account_id = eightms.current_account_id() AND lower(m.email) = addr) THEN
		RAISE EXCEPTION 'that address is already a member of this account'
			USING ERRCODE = '23505', HINT = 'The members view lists who belongs to the account.';
	END IF;
	INSERT INTO eightms.invitation (account_id, email, role, token_hash, invited_by, expires_at)
	VALUES (eightms.current_account_id(), addr, invite_member.role, eightms.token_hash(tok),
			eightms.current_user_id(),
			now() + current_setting('eightms.invitation_ttl')::interval)
	RETURNING * INTO inv;
	RETURN QUERY SELECT inv.invitation_id, tok, inv.expires_at;
END
$$;

-- ==== gateway request costs
-- Each API request is a transaction of its own, so what PL/pgSQL prepares
-- per transaction, and what the plan cache plans again in every request,
-- is paid by every heartbeat and every poll.  A claim first asks, in one
-- statement, whether there is anything to do: whether a phone of the
-- account is gone (eightms.phone_gone, new: expire_messages's rule, now
-- shared) and whether anything is due.  A heartbeat keeps a generic plan.

CREATE FUNCTION eightms.phone_gone(unpaired_at timestamptz, last_heartbeat_at timestamptz, since timestamptz,
								   any_unpaired boolean)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN unpaired_at IS NULL THEN last_heartbeat_at IS NULL OR last_heartbeat_at < since
				ELSE any_unpaired OR unpaired_at > since END
$$;
GRANT EXECUTE ON FUNCTION eightms.phone_gone(timestamptz, timestamptz, timestamptz, boolean)
TO eightms_user, eightms_phone, eightms_dba;
REVOKE ALL ON FUNCTION eightms.phone_gone(timestamptz, timestamptz, timestamptz, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms.expire_messages(acct uuid DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer := 0;
	a uuid;
BEGIN
	IF acct IS NOT NULL THEN
		RETURN eightms.move_offline_queues(acct, false);
	END IF;
	FOR a IN SELECT x.account_id FROM eightms.account x LOOP
		n := n + eightms.expire_account_messages(a) + eightms.move_offline_queues(a, true);
	END LOOP;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.heartbeat(battery_pct integer, network text DEFAULT 'unknown',
									  charging boolean DEFAULT NULL, app_version text DEFAULT NULL,
									  gateway_password text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	me uuid := eightms.require_phone();
	acct uuid := eightms.current_account_id();
	t_now timestamptz := now();
	sealed bytea;
BEGIN
	IF battery_pct IS NOT NULL AND battery_pct NOT BETWEEN 0 AND 100 THEN
		RAISE EXCEPTION 'battery_pct must be between 0 and 100' USING ERRCODE = '22023';
	END IF;
	IF network IS NOT NULL AND lower(network) NOT IN ('wifi', '5g', '4g', '3g', '2g', 'none', 'unknown') THEN
		RAISE EXCEPTION 'unknown network type "%"', left(network, 20)
			USING ERRCODE = '22023', HINT = 'Use wifi, 5g, 4g, 3g, 2g, none or unknown.';
	END IF;
	IF length(app_version) > 50 THEN
		RAISE EXCEPTION 'app_version must be at most 50 characters' USING ERRCODE = '22023';
	END IF;
	IF length(gateway_password) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'a gateway password must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	-- Sealed before the update, which then writes a value (a VOLATILE
	-- function inside it is refused on Citus's shards).
	IF heartbeat.gateway_password IS NOT NULL THEN
		sealed := eightms.seal(heartbeat.gateway_password, 'phone:' || acct || ':' || me || ':gateway_password');
	END IF;
	UPDATE eightms.phone p SET
		last_heartbeat_at = t_now,
		battery_pct = heartbeat.battery_pct,
		network = coalesce(lower(heartbeat.network), 'unknown'),
		charging = heartbeat.charging,
		gateway_password = coalesce(sealed, p.gateway_password)
	 WHERE p.account_id = acct AND p.phone_id = me;
	RETURN t_now;
END
$$;

-- ==== claims relayed to Citus nodes
-- Binding the verified claims now also relays them, under a MAC, to the
-- Citus nodes a transaction works on (src/auth/claims.c), so the account
-- is no longer re-issued with SET LOCAL here.
CREATE OR REPLACE FUNCTION eightms.act_on_account(acct uuid, member_role text) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	SELECT pg_catalog.set_config('request.jwt.claims', eightms.bind_account(acct, member_role)::text, true);
$$;

-- ==== privacy: registry, retention, purges; no app version
-- The phone's app version is no longer kept (the privacy policy does not
-- list it): pair_phone and heartbeat (above) accept and ignore it, and the
-- phones view answers NULL for it, so old apps and dashboards still work.
CREATE OR REPLACE VIEW eightms_api.phones WITH (security_invoker = true) AS
	SELECT p.account_id, p.phone_id, p.device_id, p.name, p.paired_at, p.unpaired_at,
		   p.last_heartbeat_at, p.battery_pct, p.charging, p.network, NULL::text AS app_version,
		   p.rate_limit, p.rate_window, p.rate_unit,
		   (p.unpaired_at IS NULL AND p.last_heartbeat_at > now()
			- coalesce(current_setting('eightms.online_window', true), '5min')::interval) AS online
	  FROM eightms.phone p;
ALTER TABLE eightms.phone DROP COLUMN app_version;

-- Retention is one job now, eightms-run-purges: each rule in bounded
-- batches, each run logged.
DELETE FROM eightms.scheduled_job
 WHERE job_name IN ('eightms-purge-cron-history', 'eightms-purge-session-revocations', 'eightms-purge-http-requests');
COMMENT ON FUNCTION eightms.purge_cron_history(interval) IS
	'Delete pg_cron run history older than keep, unlogged; eightms.run_purges() (rule cron_history) does it on schedule';
COMMENT ON FUNCTION eightms.purge_session_revocations(interval) IS
	'Delete session and sign-out-everywhere revocations older than keep (30 days), unlogged; eightms.run_purges() does it on schedule';

-- An account's own, shorter, retention of message bodies (NULL: the
-- platform's, eightms.retention_keep('message_body')), and since when it
-- has its status, which the suspended and disabled account rules count
-- from.  Last in the table: an upgrade appends them.
ALTER TABLE eightms.account
	ADD COLUMN message_retention interval
		CONSTRAINT account_message_retention_check CHECK (message_retention >= interval '1 day'),
	ADD COLUMN status_since timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN eightms.account.message_retention IS
	'Message bodies are erased this long after the message was created (set by an owner, at most the platform''s message_body rule); NULL: the platform''s rule';
COMMENT ON COLUMN eightms.account.status_since IS 'When status last changed; the suspended_account and disabled_account rules count from it';

CREATE FUNCTION eightms.account_status_since() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.status IS DISTINCT FROM OLD.status THEN
		NEW.status_since := now();
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER account_status_since BEFORE UPDATE OF status ON eightms.account
	FOR EACH ROW EXECUTE FUNCTION eightms.account_status_since();

-- The rules.  default_keep is the platform's maximum as shipped; NULL
-- means no age limit: the data goes with what owns it (the account, the
-- extension).  A superuser may change a rule's keep with
-- eightms.set_retention(), kept in retention_setting (dumped, so a restore
-- keeps the platform's policy).
CREATE TABLE eightms.retention_rule (
	rule_name		text NOT NULL PRIMARY KEY
		CONSTRAINT retention_rule_name_check CHECK (rule_name ~ '^[a-z_]+$'),
	covers			text NOT NULL,
	default_keep	interval,
	counted_from	text NOT NULL,
	reason			text NOT NULL
);
COMMENT ON TABLE eightms.retention_rule IS
	'global: retention rules (what, how long by default, counted from when, why); filled by CREATE EXTENSION';

INSERT INTO eightms.retention_rule (rule_name, covers, default_keep, counted_from, reason) VALUES
	('account_lifetime', 'accounts, members, phones, conversations, message metadata, opt-outs, consent reviews and templates, contacts and their custom fields',
	 NULL, 'the account''s deletion',
	 'the service itself: delete_account, or the suspended_account and disabled_account rules, remove all of it'),
	('extension', 'the extension''s own registries (jobs, sealed columns, retention rules and settings, this classification)',
	 NULL, 'the extension''s removal', 'definitions, no data about anyone'),
	('invitation', 'invitations accepted, revoked or expired', '30 days',
	 'acceptance, revocation or expiry, whichever came first',
	 'lets an owner see who was invited and whether they joined; the member row records the rest'),
	('pairing_code', 'pairing codes used or expired', '1 day', 'use or expiry, whichever came first',
	 'a spent code proves nothing after the pairing it made'),
	('session', 'sign-in sessions seen acting on an account', '90 days', 'the session''s last request',
	 'members review recent sign-ins; a session idle this long has no live token'),
	('session_revocation', 'signed-out sessions (hash of the session id, user id)', '30 days', 'the sign-out',
	 'must outlive every token it refuses; 30 days covers the usual providers'' longest dashboard JWT'),
	('user_revocation', 'sign-outs everywhere (user id)', '30 days', 'the sign-out',
	 'must outlive every token it refuses, as session_revocation'),
	('phone_telemetry', 'an unpaired phone''s telemetry and sealed gateway password', '30 days', 'the unpairing',
	 'routing needs telemetry only while a phone is paired; the device id and name stay for its messages'' attribution'),
	('http_request', 'finished bridge requests (URL, headers, bodies, response) and their attempts', '7 days',
	 'the request''s outcome', 'delivery evidence for a week of support questions; sealed headers go with them'),
	('cron_history', 'pg_cron''s run history (cron.job_run_details), when pg_cron is installed', '7 days',
	 'the run''s end', 'pg_cron never deletes it; a week shows whether the jobs run'),
	('consent_event', 'consent history: each opt-out and opt-in with its keyword and reply text', '5 years',
	 'the event', 'proof of consent against claims under the TCPA (4-year limitation period) and similar laws, plus a year; the opt-out itself is kept while the account exists'),
	('message_body', 'message bodies (erased; the message''s delivery and billing metadata stay)', NULL,
	 'the message''s creation', 'no platform limit by default; each account''s owner may set one (set_message_retention), and a platform keep caps every account'),
	('suspended_account', 'accounts suspended and not reactivated, with all their data', '365 days', 'the suspension',
	 'a suspension is a reversible hold (billing, abuse review); a year without reactivation ends it'),
	('disabled_account', 'accounts disabled, with all their data', '90 days', 'the account''s disabling',
	 'disabled is closed; 90 days leaves time to undo a mistake or export'),
	('purge_log', 'the purge log (rule, counts, timestamps; no personal data)', '2 years', 'the purge',
	 'evidence that retention ran, for audits covering the last two years');

-- A platform setting of a rule's keep (NULL: no age limit), in place of its
-- default_keep.  Dumped with the accounts' data.
CREATE TABLE eightms.retention_setting (
	rule_name	text NOT NULL PRIMARY KEY REFERENCES eightms.retention_rule (rule_name),
	keep		interval CONSTRAINT retention_setting_keep_check CHECK (keep > interval '0'),
	set_at		timestamptz NOT NULL DEFAULT now(),
	set_by		name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE eightms.retention_setting IS
	'global: the platform''s keep of a retention rule where it differs from the rule''s default (eightms.set_retention)';
SELECT pg_catalog.pg_extension_config_dump('eightms.retention_setting', '');

CREATE FUNCTION eightms.retention_keep(rule text) RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN s.rule_name IS NOT NULL THEN s.keep ELSE r.default_keep END
	  FROM eightms.retention_rule r LEFT JOIN eightms.retention_setting s USING (rule_name)
	 WHERE r.rule_name = rule
$$;
COMMENT ON FUNCTION eightms.retention_keep(text) IS 'A retention rule''s keep now: the platform''s setting, else its default (NULL: no age limit)';

-- Superuser only (no grant): the platform's policy.
CREATE FUNCTION eightms.set_retention(rule text, keep interval) RETURNS interval
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM eightms.retention_rule r WHERE r.rule_name = rule) THEN
		RAISE EXCEPTION 'no retention rule "%"', left(rule, 64)
			USING ERRCODE = '22023', HINT = 'SELECT rule_name FROM eightms.retention_rule lists them.';
	END IF;
	IF keep <= interval '0' THEN
		RAISE EXCEPTION 'a retention must be longer than zero' USING ERRCODE = '22023';
	END IF;
	INSERT INTO eightms.retention_setting AS s (rule_name, keep) VALUES (rule, set_retention.keep)
	ON CONFLICT (rule_name) DO UPDATE SET keep = EXCLUDED.keep, set_at = now(), set_by = current_user;
	RETURN eightms.retention_keep(rule);
END
$$;
COMMENT ON FUNCTION eightms.set_retention(text, interval) IS
	'Set the platform''s keep of a retention rule (NULL: no age limit); superuser only';

-- Every column of every eightms table: what it holds, whose it is, and the
-- rule that says how long it stays.
--   class:   personal (identifies or describes a person), secret (a
--            credential or its hash, sealed or hashed), content (what people
--            wrote), telemetry (what a phone reports about itself),
--            operational (keys, states, timestamps, settings)
--   subject: member (a dashboard user), contact (the number an account
--            texts with), phone (a paired handset), account (the business),
--            none
CREATE TABLE eightms.data_column (
	table_name	name NOT NULL,
	column_name	name NOT NULL,
	class		text NOT NULL
		CONSTRAINT data_column_class_check CHECK (class IN ('personal', 'secret', 'content', 'telemetry', 'operational')),
	subject		text NOT NULL
		CONSTRAINT data_column_subject_check CHECK (subject IN ('member', 'contact', 'phone', 'account', 'none')),
	retention	text NOT NULL REFERENCES eightms.retention_rule (rule_name),
	reason		text NOT NULL,
	PRIMARY KEY (table_name, column_name)
);
COMMENT ON TABLE eightms.data_column IS
	'global: every column of every eightms table classified (class, data subject, retention rule); filled by CREATE EXTENSION';

-- Each purge's evidence: what a rule removed, when, and how long it took.
CREATE TABLE eightms.purge_log (
	purge_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rule_name		text NOT NULL,
	started_at		timestamptz NOT NULL,
	duration		interval NOT NULL,
	rows_removed	bigint NOT NULL,
	oldest			timestamptz,
	newest			timestamptz,
	keep			interval,
	run_by			name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE eightms.purge_log IS
	'global: one row per purge that removed something: rule, rows, oldest and newest timestamps removed, duration';
SELECT pg_catalog.pg_extension_config_dump('eightms.purge_log', '');
SELECT pg_catalog.pg_extension_config_dump('eightms.purge_log_purge_id_seq', '');

-- How far the message-body purge has got in each account: every message
-- whose id is at most position is done (its body erased or empty), or was
-- still pending, held by a writer or not yet old enough when the purge
-- passed it, and is then named in deferred and looked at again by each
-- run until it can go.  Without it each run would walk the account's
-- erased messages from its first (a year of them, at a one-day retention)
-- before it reached one to erase.  Written only by the purge.
CREATE TABLE eightms.body_purge (
	account_id	uuid NOT NULL PRIMARY KEY REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	position	uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
	deferred	uuid[] NOT NULL DEFAULT '{}',
	purged_at	timestamptz
);
COMMENT ON TABLE eightms.body_purge IS
	'tenant: where the message-body purge has got to in the account (messages up to position done, except those deferred)';
SELECT pg_catalog.pg_extension_config_dump('eightms.body_purge', '');
ALTER TABLE eightms.body_purge ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.body_purge FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.body_purge
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('account', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('account', 'company_name', 'personal', 'account', 'account_lifetime', 'the business''s name, a sole trader''s own'),
	('account', 'display_name', 'personal', 'account', 'account_lifetime', 'the name shown to contacts'),
	('account', 'timezone', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'default_region', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'status', 'operational', 'account', 'account_lifetime', 'state'),
	('account', 'created_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('account', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('account', 'fold_lookalikes', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'message_retention', 'operational', 'account', 'account_lifetime', 'setting'),
	('account', 'status_since', 'operational', 'account', 'account_lifetime', 'timestamp'),

	('member', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('member', 'user_id', 'personal', 'member', 'account_lifetime', 'the auth provider''s id of the user'),
	('member', 'email', 'personal', 'member', 'account_lifetime', 'the member''s verified email'),
	('member', 'role', 'operational', 'member', 'account_lifetime', 'what the member may do'),
	('member', 'invited_by', 'personal', 'member', 'account_lifetime', 'user id of the inviter'),
	('member', 'created_at', 'operational', 'member', 'account_lifetime', 'timestamp'),

	('invitation', 'account_id', 'operational', 'account', 'invitation', 'key'),
	('invitation', 'invitation_id', 'operational', 'none', 'invitation', 'key'),
	('invitation', 'email', 'personal', 'member', 'invitation', 'the invitee''s email'),
	('invitation', 'role', 'operational', 'member', 'invitation', 'the role it grants'),
	('invitation', 'token_hash', 'secret', 'member', 'invitation', 'SHA-256 of the invitation token'),
	('invitation', 'invited_by', 'personal', 'member', 'invitation', 'user id of the inviter'),
	('invitation', 'created_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'expires_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'accepted_at', 'operational', 'none', 'invitation', 'timestamp'),
	('invitation', 'accepted_by', 'personal', 'member', 'invitation', 'user id of who accepted'),
	('invitation', 'revoked_at', 'operational', 'none', 'invitation', 'timestamp'),

	('session', 'account_id', 'operational', 'account', 'session', 'key'),
	('session', 'session_hash', 'secret', 'member', 'session', 'SHA-256 of the JWT session id'),
	('session', 'user_id', 'personal', 'member', 'session', 'the signed-in user'),
	('session', 'created_at', 'operational', 'member', 'session', 'first seen'),
	('session', 'last_seen_at', 'operational', 'member', 'session', 'last seen'),

	('session_revocation', 'session_hash', 'secret', 'member', 'session_revocation', 'SHA-256 of the JWT session id'),
	('session_revocation', 'user_id', 'personal', 'member', 'session_revocation', 'the signed-out user'),
	('session_revocation', 'revoked_at', 'operational', 'member', 'session_revocation', 'timestamp'),
	('user_revocation', 'user_id', 'personal', 'member', 'user_revocation', 'the user signed out everywhere'),
	('user_revocation', 'signed_out_at', 'operational', 'member', 'user_revocation', 'timestamp'),

	('scheduled_job', 'job_name', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'schedule', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'command', 'operational', 'none', 'extension', 'definition'),
	('scheduled_job', 'description', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'table_name', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'column_name', 'operational', 'none', 'extension', 'definition'),
	('sealed_column', 'context_sql', 'operational', 'none', 'extension', 'definition'),

	('http_request', 'id', 'operational', 'none', 'http_request', 'key'),
	('http_request', 'method', 'operational', 'none', 'http_request', 'request'),
	('http_request', 'url', 'personal', 'none', 'http_request', 'may carry identifiers in its path or query'),
	('http_request', 'headers', 'personal', 'none', 'http_request', 'may carry identifiers'),
	('http_request', 'secret_headers', 'secret', 'none', 'http_request', 'sealed credentials'),
	('http_request', 'body', 'content', 'none', 'http_request', 'what the caller sends (email text, CRM records)'),
	('http_request', 'timeout_ms', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'max_attempts', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'follow_redirects', 'operational', 'none', 'http_request', 'setting'),
	('http_request', 'idempotency_key', 'operational', 'none', 'http_request', 'key'),
	('http_request', 'callback', 'operational', 'none', 'http_request', 'function name'),
	('http_request', 'callback_context', 'operational', 'none', 'http_request', 'ids for the callback'),
	('http_request', 'enqueued_by', 'operational', 'none', 'http_request', 'database role'),
	('http_request', 'state', 'operational', 'none', 'http_request', 'state'),
	('http_request', 'attempts', 'operational', 'none', 'http_request', 'count'),
	('http_request', 'next_attempt_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'created_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'finished_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_request', 'response_status', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'response_headers', 'personal', 'none', 'http_request', 'may carry identifiers'),
	('http_request', 'response_body', 'content', 'none', 'http_request', 'what the peer answered'),
	('http_request', 'error', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'callback_error', 'operational', 'none', 'http_request', 'outcome'),
	('http_request', 'host', 'operational', 'none', 'http_request', 'the URL''s host'),
	('http_attempt', 'request_id', 'operational', 'none', 'http_request', 'key'),
	('http_attempt', 'attempt', 'operational', 'none', 'http_request', 'key'),
	('http_attempt', 'started_at', 'operational', 'none', 'http_request', 'timestamp'),
	('http_attempt', 'duration_ms', 'operational', 'none', 'http_request', 'timing'),
	('http_attempt', 'status', 'operational', 'none', 'http_request', 'outcome'),
	('http_attempt', 'error', 'operational', 'none', 'http_request', 'outcome'),

	('phone', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('phone', 'phone_id', 'operational', 'phone', 'account_lifetime', 'key'),
	('phone', 'device_id', 'personal', 'phone', 'account_lifetime', 'the device identifier; attributes its messages'),
	('phone', 'name', 'personal', 'phone', 'account_lifetime', 'the name a member gave it'),
	('phone', 'token_version', 'operational', 'phone', 'account_lifetime', 'which device tokens count'),
	('phone', 'paired_at', 'operational', 'phone', 'account_lifetime', 'timestamp'),
	('phone', 'unpaired_at', 'operational', 'phone', 'account_lifetime', 'timestamp'),
	('phone', 'last_heartbeat_at', 'telemetry', 'phone', 'phone_telemetry', 'heartbeat'),
	('phone', 'battery_pct', 'telemetry', 'phone', 'phone_telemetry', 'battery percentage'),
	('phone', 'charging', 'telemetry', 'phone', 'phone_telemetry', 'part of the battery state: routing sends to a low phone on a charger'),
	('phone', 'network', 'telemetry', 'phone', 'phone_telemetry', 'network type'),
	('phone', 'gateway_password', 'secret', 'phone', 'phone_telemetry', 'sealed; the phone''s local gateway password'),
	('phone', 'rate_limit', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'rate_window', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'rate_unit', 'operational', 'phone', 'account_lifetime', 'setting'),
	('phone', 'recent_claims', 'operational', 'phone', 'account_lifetime', 'pacing record'),

	('pairing_code', 'account_id', 'operational', 'account', 'pairing_code', 'key'),
	('pairing_code', 'code_hash', 'secret', 'none', 'pairing_code', 'SHA-256 of the code'),
	('pairing_code', 'created_by', 'personal', 'member', 'pairing_code', 'user id of who made it'),
	('pairing_code', 'created_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'expires_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'used_at', 'operational', 'none', 'pairing_code', 'timestamp'),
	('pairing_code', 'phone_id', 'operational', 'phone', 'pairing_code', 'the phone it paired'),

	('conversation', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('conversation', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('conversation', 'active_minute', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'peer_number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('conversation', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'unread_count', 'operational', 'contact', 'account_lifetime', 'count'),
	('conversation', 'last_message_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('conversation', 'phone_id', 'operational', 'phone', 'account_lifetime', 'the phone it goes through'),
	('conversation', 'archived_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),

	('message', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('message', 'message_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('message', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('message', 'send_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'segments', 'operational', 'contact', 'account_lifetime', 'billing'),
	('message', 'attempts', 'operational', 'contact', 'account_lifetime', 'count'),
	('message', 'phone_id', 'operational', 'phone', 'account_lifetime', 'attribution'),
	('message', 'pending', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'direction', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'status', 'operational', 'contact', 'account_lifetime', 'state'),
	('message', 'encoding', 'operational', 'contact', 'account_lifetime', 'billing'),
	('message', 'idempotency_key', 'operational', 'none', 'account_lifetime', 'the caller''s key'),
	('message', 'device_message_id', 'operational', 'phone', 'account_lifetime', 'the handset''s id'),
	('message', 'peer_number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('message', 'expires_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'lease_expires_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'claimed_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'sent_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'delivered_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'failed_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'canceled_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'received_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('message', 'error', 'operational', 'contact', 'account_lifetime', 'outcome'),
	('message', 'body', 'content', 'contact', 'message_body', 'the text'),
	('message', 'device_id', 'personal', 'phone', 'account_lifetime', 'the handset an inbound message came from'),

	('opt_out', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('opt_out', 'number', 'personal', 'contact', 'account_lifetime', 'the suppressed number: never text it again'),
	('opt_out', 'opted_out_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),

	('consent_event', 'account_id', 'operational', 'account', 'consent_event', 'key'),
	('consent_event', 'event_id', 'operational', 'contact', 'consent_event', 'key'),
	('consent_event', 'number', 'personal', 'contact', 'consent_event', 'the contact''s phone number'),
	('consent_event', 'action', 'operational', 'contact', 'consent_event', 'opt_out or opt_in'),
	('consent_event', 'keyword', 'operational', 'contact', 'consent_event', 'the keyword matched'),
	('consent_event', 'message_id', 'operational', 'contact', 'consent_event', 'the reply'),
	('consent_event', 'at', 'operational', 'contact', 'consent_event', 'timestamp'),
	('consent_event', 'inbound_text', 'content', 'contact', 'consent_event', 'the reply''s text, the proof'),
	('consent_event', 'normalized', 'content', 'contact', 'consent_event', 'the reply as matched'),
	('consent_event', 'rule', 'operational', 'contact', 'consent_event', 'the rule matched'),
	('consent_event', 'confirmation_id', 'operational', 'contact', 'consent_event', 'the confirmation sent'),

	('consent_review', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_review', 'review_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('consent_review', 'conversation_id', 'operational', 'contact', 'account_lifetime', 'key'),
	('consent_review', 'number', 'personal', 'contact', 'account_lifetime', 'the contact''s phone number'),
	('consent_review', 'message_id', 'operational', 'contact', 'account_lifetime', 'the reply'),
	('consent_review', 'normalized', 'content', 'contact', 'account_lifetime', 'the reply as matched'),
	('consent_review', 'rule', 'operational', 'contact', 'account_lifetime', 'the rule matched'),
	('consent_review', 'keyword', 'operational', 'contact', 'account_lifetime', 'the keyword matched'),
	('consent_review', 'created_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'clarification_id', 'operational', 'contact', 'account_lifetime', 'the question sent'),
	('consent_review', 'clarified_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'resolved_at', 'operational', 'contact', 'account_lifetime', 'timestamp'),
	('consent_review', 'resolved_by', 'personal', 'member', 'account_lifetime', 'user id of the reviewer'),
	('consent_review', 'resolution', 'operational', 'contact', 'account_lifetime', 'outcome'),

	('consent_template', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_template', 'kind', 'operational', 'account', 'account_lifetime', 'key'),
	('consent_template', 'template', 'content', 'account', 'account_lifetime', 'the account''s reply text'),
	('consent_template', 'updated_at', 'operational', 'account', 'account_lifetime', 'timestamp'),
	('consent_template', 'updated_by', 'personal', 'member', 'account_lifetime', 'user id of the editor'),

	('retention_rule', 'rule_name', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'covers', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'default_keep', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'counted_from', 'operational', 'none', 'extension', 'definition'),
	('retention_rule', 'reason', 'operational', 'none', 'extension', 'definition'),
	('retention_setting', 'rule_name', 'operational', 'none', 'extension', 'platform setting'),
	('retention_setting', 'keep', 'operational', 'none', 'extension', 'platform setting'),
	('retention_setting', 'set_at', 'operational', 'none', 'extension', 'timestamp'),
	('retention_setting', 'set_by', 'operational', 'none', 'extension', 'database role'),
	('data_column', 'table_name', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'column_name', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'class', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'subject', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'retention', 'operational', 'none', 'extension', 'definition'),
	('data_column', 'reason', 'operational', 'none', 'extension', 'definition'),
	('purge_log', 'purge_id', 'operational', 'none', 'purge_log', 'key'),
	('purge_log', 'rule_name', 'operational', 'none', 'purge_log', 'the rule'),
	('purge_log', 'started_at', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'duration', 'operational', 'none', 'purge_log', 'timing'),
	('purge_log', 'rows_removed', 'operational', 'none', 'purge_log', 'count'),
	('purge_log', 'oldest', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'newest', 'operational', 'none', 'purge_log', 'timestamp'),
	('purge_log', 'keep', 'operational', 'none', 'purge_log', 'the rule''s keep then'),
	('purge_log', 'run_by', 'operational', 'none', 'purge_log', 'database role'),
	('body_purge', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('body_purge', 'position', 'operational', 'none', 'account_lifetime', 'a message id: how far the purge has got'),
	('body_purge', 'deferred', 'operational', 'none', 'account_lifetime', 'message ids the purge looks at again'),
	('body_purge', 'purged_at', 'operational', 'none', 'account_lifetime', 'timestamp');

-- The lower bound of the time-ordered message ids (src/uuid_v7.c: the
-- first 48 bits are the Unix time in milliseconds) made at or after t:
-- the body purge walks an account's messages older than its retention on
-- the primary key.
CREATE FUNCTION eightms.uuid_v7_floor(t timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT (pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.floor(pg_catalog.date_part('epoch', t) * 1000)::bigint), 12, '0')
			|| '00000000000000000000')::uuid
$$;

-- One account's round of the body purge: the messages it deferred, and
-- the next n after its position older than cutoff, in id order (time
-- order: the ids are UUIDv7); of those, the final ones with a body lose it,
-- locked SKIP LOCKED.  What could not go yet (pending, held by a writer,
-- younger than cutoff) is deferred, at most 1,000 messages: past that the
-- position waits at the thousandth.  examined: the messages after the
-- position looked at (n of them: more may follow).  Every statement names
-- the account: one shard on Citus.
CREATE FUNCTION eightms.erase_bodies(acct uuid, cutoff timestamptz, n integer,
									 OUT rows_removed bigint, OUT oldest timestamptz, OUT newest timestamptz,
									 OUT examined bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pos uuid;
	held uuid[];
	upto uuid;
	hi uuid := eightms.uuid_v7_floor(cutoff);
BEGIN
	rows_removed := 0;
	examined := 0;
	SELECT b.position, b.deferred INTO pos, held FROM eightms.body_purge b WHERE b.account_id = acct;
	IF pos IS NULL THEN
		INSERT INTO eightms.body_purge (account_id) VALUES (acct) ON CONFLICT DO NOTHING;
	ELSIF held = '{}' AND NOT EXISTS (SELECT 1 FROM eightms.message t
										WHERE t.account_id = acct AND t.message_id > pos AND t.message_id < hi) THEN
		RETURN;
	END IF;
	-- One purge at a time in an account: a second waits, then starts
	-- where the first ended.
	SELECT b.position, b.deferred INTO pos, held FROM eightms.body_purge b WHERE b.account_id = acct FOR UPDATE;

	EXECUTE $q$
		WITH c AS MATERIALIZED (
			SELECT t.ctid, t.message_id, t.created_at, t.pending IS NULL AND t.body = '' AS done, false AS ahead
			  FROM eightms.message t WHERE t.account_id = $1 AND t.message_id = ANY ($4)
			UNION ALL
			(SELECT t.ctid, t.message_id, t.created_at, t.pending IS NULL AND t.body = '', true
			   FROM eightms.message t WHERE t.account_id = $1 AND t.message_id > $2 AND t.message_id < $5
			  ORDER BY t.message_id LIMIT $6)),
		v AS MATERIALIZED (
			SELECT t.ctid, t.created_at FROM eightms.message t
			 WHERE t.account_id = $1 AND t.ctid = ANY (ARRAY(SELECT c.ctid FROM c WHERE NOT c.done AND c.created_at < $3))
			   AND t.pending IS NULL AND t.body <> '' AND t.created_at < $3
			   FOR UPDATE OF t SKIP LOCKED),
		g AS (UPDATE eightms.message t SET body = ''
			   WHERE t.account_id = $1 AND t.ctid = ANY (ARRAY(SELECT v.ctid FROM v)) RETURNING 1)
		SELECT (SELECT count(*) FROM g), (SELECT min(v.created_at) FROM v), (SELECT max(v.created_at) FROM v),
			   (SELECT c.message_id FROM c WHERE c.ahead ORDER BY 1 DESC LIMIT 1), (SELECT count(*) FROM c WHERE c.ahead),
			   ARRAY(SELECT c.message_id FROM c WHERE NOT c.done AND c.ctid NOT IN (SELECT v.ctid FROM v)
					  ORDER BY c.message_id LIMIT 1001)
	$q$ INTO rows_removed, oldest, newest, upto, examined, held
		USING acct, pos, cutoff, held, hi, n;
	IF cardinality(held) > 1000 THEN
		upto := held[1000];
		held := held[1:1000];
	END IF;
	UPDATE eightms.body_purge b SET position = coalesce(upto, b.position), deferred = held, purged_at = now()
	 WHERE b.account_id = acct;
END
$$;
COMMENT ON FUNCTION eightms.erase_bodies(uuid, timestamptz, integer) IS
	'One account''s round of the message-body purge: from its position, at most n messages examined';

-- One rule's purge: at most batch_size rows (every row lock it takes is
-- released at the caller's commit, and the table is never locked or
-- rewritten), or with dry_run what would go now (all of it, nothing
-- changed).  The candidates of a rule: its table's rows (ctid, or the key
-- of a reference table; acct, the account of a table distributed by it,
-- with /*acct*/ where its statement adds the account) and the timestamp
-- the rule counts from (ts), older than cutoff ($1), with the rule's keep
-- ($2); taken FOR UPDATE SKIP LOCKED, so rows a writer holds wait for the
-- next run.  The action deletes them, or for the telemetry rule erases
-- the columns and keeps the row; the body rule goes its own way, account
-- by account from where each got to (erase_bodies).  more: the batch was
-- full, there may be more to go.
CREATE FUNCTION eightms.purge_rule(rule text, keep interval, batch_size integer, dry_run boolean,
								   OUT rows_removed bigint, OUT oldest timestamptz, OUT newest timestamptz,
								   OUT more boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl text;
	cand text;
	act text := 'DELETE FROM %s t WHERE %s RETURNING t.*';
	also text := '';
	place text;
	acct uuid;
	n bigint;
	o timestamptz;
	w timestamptz;
	seen bigint := 0;
	cut timestamptz;
BEGIN
	rows_removed := 0;
	more := false;
	CASE rule
	WHEN 'invitation' THEN
		tbl := 'eightms.invitation';
		cand := 'SELECT t.ctid, t.account_id AS acct, least(t.accepted_at, t.revoked_at, t.expires_at) AS ts FROM eightms.invitation t
				  WHERE least(t.accepted_at, t.revoked_at, t.expires_at) < $1 /*acct*/';
	WHEN 'pairing_code' THEN
		tbl := 'eightms.pairing_code';
		cand := 'SELECT t.ctid, t.account_id AS acct, least(t.used_at, t.expires_at) AS ts FROM eightms.pairing_code t
				  WHERE least(t.used_at, t.expires_at) < $1 /*acct*/';
	WHEN 'session' THEN
		tbl := 'eightms.session';
		cand := 'SELECT t.ctid, t.last_seen_at AS ts FROM eightms.session t WHERE t.last_seen_at < $1';
	WHEN 'session_revocation' THEN
		tbl := 'eightms.session_revocation';
		cand := 'SELECT t.session_hash AS k, t.revoked_at AS ts FROM eightms.session_revocation t WHERE t.revoked_at < $1';
	WHEN 'user_revocation' THEN
		tbl := 'eightms.user_revocation';
		cand := 'SELECT t.user_id AS k, t.signed_out_at AS ts FROM eightms.user_revocation t WHERE t.signed_out_at < $1';
	WHEN 'phone_telemetry' THEN
		tbl := 'eightms.phone';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.unpaired_at AS ts FROM eightms.phone t WHERE t.unpaired_at < $1 /*acct*/
				  AND (t.last_heartbeat_at, t.battery_pct, t.charging, t.network, t.gateway_password) IS DISTINCT FROM
					  (NULL::timestamptz, NULL::integer, NULL::boolean, NULL::text, NULL::bytea)';
		act := 'UPDATE %s t SET last_heartbeat_at = NULL, battery_pct = NULL, charging = NULL, network = NULL,
				gateway_password = NULL WHERE %s RETURNING t.*';
	WHEN 'http_request' THEN
		tbl := 'eightms.http_request';
		cand := 'SELECT t.ctid, t.finished_at AS ts FROM eightms.http_request t
				  WHERE t.state IN (''done'', ''dead'') AND t.finished_at < $1';
		also := ', a AS (DELETE FROM eightms.http_attempt x USING g WHERE x.request_id = g.id)';
	WHEN 'cron_history' THEN
		IF to_regclass('cron.job_run_details') IS NULL THEN
			RETURN;
		END IF;
		tbl := 'cron.job_run_details';
		cand := 'SELECT t.ctid, t.end_time AS ts FROM cron.job_run_details t WHERE t.end_time < $1';
	WHEN 'consent_event' THEN
		tbl := 'eightms.consent_event';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.at AS ts FROM eightms.consent_event t WHERE t.at < $1 /*acct*/';
	WHEN 'suspended_account', 'disabled_account' THEN
		tbl := 'eightms.account';
		cand := format('SELECT t.ctid, t.account_id AS acct, t.status_since AS ts FROM eightms.account t WHERE t.status = %L
						 AND t.status_since < $1 /*acct*/', split_part(rule, '_', 1));
		-- An account goes with everything it holds: one at a time.
		batch_size := least(batch_size, 1);
	WHEN 'purge_log' THEN
		tbl := 'eightms.purge_log';
		cand := 'SELECT t.ctid, t.started_at AS ts FROM eightms.purge_log t WHERE t.started_at < $1';
	WHEN 'dsar_request' THEN
		-- An open request is never purged (sql/dsar.sql).
		tbl := 'eightms.dsar_request';
		cand := 'SELECT t.ctid, t.completed_at AS ts FROM eightms.dsar_request t WHERE t.completed_at < $1';
	WHEN 'message_body' THEN
		-- Per account: its own retention, capped by the platform's keep.
		tbl := 'eightms.message';
		cand := 'SELECT t.ctid, t.account_id AS acct, t.created_at AS ts
				   FROM eightms.account a
				   JOIN eightms.message t ON t.account_id = a.account_id
					AND t.message_id < eightms.uuid_v7_floor(now() - least(a.message_retention, $2))
				  WHERE coalesce(a.message_retention, $2) IS NOT NULL
					AND t.created_at < now() - least(a.message_retention, $2)
					AND t.pending IS NULL AND t.body <> ''''';
	ELSE
		-- account_lifetime and extension: nothing goes by age.
		RETURN;
	END CASE;
	IF rule <> 'message_body' AND keep IS NULL THEN
		RETURN;
	END IF;

	IF dry_run THEN
		EXECUTE format('SELECT count(*), min(v.ts), max(v.ts) FROM (%s) v', cand)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
		RETURN;
	END IF;

	IF rule = 'message_body' THEN
		-- Account by account from where each got to (erase_bodies), the
		-- least recently purged first, so that one account's backlog does
		-- not keep the others waiting; batch_size: messages examined.
		FOR acct, cut IN EXECUTE
				'SELECT a.account_id, now() - least(a.message_retention, $1)
				   FROM eightms.account a LEFT JOIN eightms.body_purge b ON b.account_id = a.account_id
				  WHERE coalesce(a.message_retention, $1) IS NOT NULL
				  ORDER BY b.purged_at NULLS FIRST, a.account_id' USING keep LOOP
			SELECT e.rows_removed, e.oldest, e.newest, seen + e.examined INTO n, o, w, seen
			  FROM eightms.erase_bodies(acct, cut, (batch_size - seen)::integer) e;
			rows_removed := rows_removed + n;
			oldest := least(oldest, o);
			newest := greatest(newest, w);
			EXIT WHEN seen >= batch_size;
		END LOOP;
		more := seen >= batch_size;
		RETURN;
	END IF;

	-- Where the table lives on Citus decides how its rows are named (the
	-- same statements on one server): a table distributed by account_id
	-- goes an account at a time, each statement on one account's shard,
	-- where a row's ctid means something; a reference table by key, in key
	-- order, so that every copy removes the same rows; a table of the
	-- coordinator's own, and pg_cron's history, by ctid.
	SELECT p.placement INTO place FROM eightms.distribution_plan() p WHERE p.table_name = tbl::regclass;
	IF place = 'distributed' THEN
		-- The accounts of the first batch_size candidates, then each
		-- account's own, locked there; what remains waits for the next call.
		FOR acct IN EXECUTE format('SELECT DISTINCT v.acct FROM (%s LIMIT %s) v', replace(cand, '/*acct*/', ''), batch_size)
				USING now() - keep, keep LOOP
			IF tbl = 'eightms.account' THEN
				-- An account goes as delete_account removes it, with its
				-- bridge requests and its sessions (eightms.purge_account).
				EXECUTE format('SELECT count(*), min(v.ts), max(v.ts) FROM (%s FOR UPDATE OF t SKIP LOCKED) v',
							   replace(cand, '/*acct*/', 'AND t.account_id = $3'))
					INTO n, o, w USING now() - keep, keep, acct;
				IF n > 0 THEN
					PERFORM eightms.purge_account(acct);
				END IF;
			ELSE
				EXECUTE format('WITH v AS MATERIALIZED (%s LIMIT %s FOR UPDATE OF t SKIP LOCKED), g AS (%s)
								SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
							   replace(cand, '/*acct*/', 'AND t.account_id = $3'), batch_size - rows_removed,
							   format(act, tbl, 't.account_id = $3 AND t.ctid = ANY (ARRAY(SELECT v.ctid FROM v))'))
					INTO n, o, w USING now() - keep, keep, acct;
			END IF;
			rows_removed := rows_removed + n;
			oldest := least(oldest, o);
			newest := greatest(newest, w);
			EXIT WHEN rows_removed >= batch_size;
		END LOOP;
	ELSIF place = 'reference' THEN
		EXECUTE format('WITH v AS MATERIALIZED (%s ORDER BY 1 LIMIT %s), g AS (DELETE FROM %s t WHERE %s IN (SELECT v.k FROM v) RETURNING 1)
						SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
					   cand, batch_size, tbl, CASE tbl WHEN 'eightms.session_revocation' THEN 't.session_hash' ELSE 't.user_id' END)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
	ELSE
		EXECUTE format('WITH v AS MATERIALIZED (%s LIMIT %s FOR UPDATE OF t SKIP LOCKED), g AS (%s)%s
						SELECT (SELECT count(*) FROM g), min(v.ts), max(v.ts) FROM v',
					   cand, batch_size, format(act, tbl, 't.ctid = ANY (ARRAY(SELECT v.ctid FROM v))'), also)
			INTO rows_removed, oldest, newest USING now() - keep, keep;
	END IF;
	more := rows_removed >= batch_size;
END
$$;
COMMENT ON FUNCTION eightms.purge_rule(text, interval, integer, boolean) IS
	'One retention rule''s purge: at most batch_size rows, or with dry_run a count of all that would go';

-- Every rule (or those named), at most batch_size rows each; with dry_run,
-- what would go now and nothing changed.  Each rule that removed rows
-- writes a purge_log row.  more: the batch was full, call again (as the
-- job, eightms.purge(), does; by hand, loop while any rule says more).
-- SECURITY DEFINER: eightms_dba runs it without any write privilege of its
-- own on the tables.
CREATE FUNCTION eightms.run_purges(dry_run boolean DEFAULT false, batch_size integer DEFAULT 10000,
								   rules text[] DEFAULT NULL)
RETURNS TABLE (rule_name text, keep interval, rows_removed bigint, oldest timestamptz, newest timestamptz,
			   more boolean, duration interval)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	t0 timestamptz;
BEGIN
	IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 1000000 THEN
		RAISE EXCEPTION 'batch_size must be 1 to 1000000' USING ERRCODE = '22023';
	END IF;
	IF dry_run IS NULL THEN
		RAISE EXCEPTION 'dry_run must be true or false' USING ERRCODE = '22023';
	END IF;
	IF EXISTS (SELECT FROM unnest(rules) u(n) WHERE NOT EXISTS (SELECT FROM eightms.retention_rule x WHERE x.rule_name = u.n)) THEN
		RAISE EXCEPTION 'unknown retention rule in rules'
			USING ERRCODE = '22023', HINT = 'SELECT rule_name FROM eightms.retention_rule lists them.';
	END IF;
	FOR r IN SELECT x.rule_name FROM eightms.retention_rule x
			  WHERE rules IS NULL OR x.rule_name = ANY (rules) ORDER BY x.rule_name LOOP
		rule_name := r.rule_name;
		keep := eightms.retention_keep(r.rule_name);
		t0 := clock_timestamp();
		SELECT p.rows_removed, p.oldest, p.newest, p.more INTO rows_removed, oldest, newest, more
		  FROM eightms.purge_rule(r.rule_name, keep, batch_size, dry_run) p;
		duration := clock_timestamp() - t0;
		IF NOT dry_run AND rows_removed > 0 THEN
			INSERT INTO eightms.purge_log (rule_name, started_at, duration, rows_removed, oldest, newest, keep)
			VALUES (r.rule_name, t0, duration, rows_removed, oldest, newest, keep);
		END IF;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION eightms.run_purges(boolean, integer, text[]) IS
	'Run the retention purges (every rule, or those named), at most batch_size rows each, logging each to purge_log; dry_run: report what would go';
GRANT EXECUTE ON FUNCTION eightms.run_purges(boolean, integer, text[]) TO eightms_dba;

-- The retention job: rounds of run_purges(), each committed, for the
-- rules that still have more, until none has or the time budget is spent.
-- After each round it rests rest times as long as the round took: with
-- the default, twice as long, so a backlog is cleared with about a third
-- of a core, and the sends, claims and reports beside it keep their
-- latency (bench/privacy: resting once as long, their p99 doubled).
-- Each round's row locks last that round only.  A procedure, so that it
-- can commit between rounds; therefore neither SECURITY DEFINER nor SET
-- options (PostgreSQL allows no transaction control in such a procedure):
-- it runs as its caller, pg_cron's job owner or the DBA, and does all its
-- work through run_purges(), which is SECURITY DEFINER and pins its path.
-- Call it on its own, not inside a transaction block.
CREATE PROCEDURE eightms.purge(budget interval DEFAULT '4 minutes', batch_size integer DEFAULT 5000,
							   rest double precision DEFAULT 2)
LANGUAGE plpgsql
AS $$
DECLARE
	deadline timestamptz;
	todo text[];
	t0 timestamptz;
BEGIN
	IF budget IS NULL OR budget OPERATOR(pg_catalog.<=) '0'::interval THEN
		RAISE EXCEPTION 'budget must be a positive interval' USING ERRCODE = '22023';
	END IF;
	IF rest IS NULL OR rest OPERATOR(pg_catalog.<) 0 OR rest OPERATOR(pg_catalog.>) 100 THEN
		RAISE EXCEPTION 'rest must be 0 to 100 (times the round''s own duration)' USING ERRCODE = '22023';
	END IF;
	deadline := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) budget;
	LOOP
		t0 := pg_catalog.clock_timestamp();
		SELECT pg_catalog.array_agg(r.rule_name) FILTER (WHERE r.more) INTO todo
		  FROM eightms.run_purges(false, batch_size, todo) r;
		COMMIT;
		EXIT WHEN todo IS NULL OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) deadline;
		PERFORM pg_catalog.pg_sleep(rest OPERATOR(pg_catalog.*)
									pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) t0));
	END LOOP;
END
$$;
COMMENT ON PROCEDURE eightms.purge(interval, integer, double precision) IS
	'The retention job: committed rounds of run_purges(batch_size) until nothing is left or budget is spent, resting rest times each round''s duration between rounds';
GRANT EXECUTE ON PROCEDURE eightms.purge(interval, integer, double precision) TO eightms_dba;

INSERT INTO eightms.scheduled_job (job_name, schedule, command, description) VALUES
	('eightms-run-purges', '*/5 * * * *', 'CALL eightms.purge()',
	 'retention: every rule of eightms.retention_rule, in rounds of up to 5,000 rows resting twice as long as each, for at most 4 minutes, logged in eightms.purge_log');

-- The account's message-body retention, set by an owner: bodies older
-- than it are erased (the messages' delivery and billing metadata stay).
-- NULL: the platform's rule.  Never longer than the platform's keep.
CREATE FUNCTION eightms_api.set_message_retention(keep interval) RETURNS interval
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	platform interval := eightms.retention_keep('message_body');
BEGIN
	PERFORM eightms.require_member_role('owner');
	IF keep < interval '1 day' THEN
		RAISE EXCEPTION 'a message retention must be at least 1 day' USING ERRCODE = '22023';
	END IF;
	IF keep > platform THEN
		RAISE EXCEPTION 'a message retention may not be longer than the platform''s (%)', platform
			USING ERRCODE = '22023', HINT = 'Pass a shorter interval, or NULL to follow the platform''s retention.';
	END IF;
	UPDATE eightms.account a SET message_retention = keep, updated_at = now()
	 WHERE a.account_id = eightms.current_account_id();
	RETURN least(keep, platform);
END
$$;
COMMENT ON FUNCTION eightms_api.set_message_retention(interval) IS
	'Owner: erase message bodies this long after each message (at least 1 day, at most the platform''s); NULL: the platform''s rule. Returns the retention in force';
GRANT EXECUTE ON FUNCTION eightms_api.set_message_retention(interval) TO eightms_user;

-- What the DBA reads: the rules with their keep now, and the evidence.
GRANT SELECT ON eightms.retention_rule, eightms.retention_setting, eightms.data_column, eightms.purge_log
	TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.retention_keep(text) TO eightms_dba;

REVOKE ALL ON FUNCTION eightms.account_status_since(), eightms.retention_keep(text), eightms.set_retention(text, interval),
	eightms.uuid_v7_floor(timestamptz), eightms.erase_bodies(uuid, timestamptz, integer),
	eightms.purge_rule(text, interval, integer, boolean),
	eightms.run_purges(boolean, integer, text[]), eightms_api.set_message_retention(interval) FROM PUBLIC;
REVOKE ALL ON PROCEDURE eightms.purge(interval, integer, double precision) FROM PUBLIC;
REVOKE ALL ON eightms.retention_rule, eightms.retention_setting, eightms.data_column, eightms.purge_log,
	eightms.body_purge FROM PUBLIC;

-- The retention job calls a procedure that commits between its rounds,
-- written into the job's block (sql/jobs.sql).
-- What pg_cron runs for a job: its command while the extension exists in
-- the job's database, and once it is gone (DROP EXTENSION eightms, which
-- cannot take pg_cron's rows with it), the job's unscheduling of itself, so
-- that it does not fail at every run and fill cron.job_run_details with the
-- purge that would have trimmed it gone too.  A job that calls one of
-- eightms's procedures (CALL eightms.name(...), without a semicolon or a
-- dollar sign) has the call written into the block itself: a procedure
-- called through EXECUTE could not commit between its rounds.
CREATE OR REPLACE FUNCTION eightms.cron_command(job_name text, command text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT format('DO $eightms_job$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = ''eightms'') '
				  'THEN %s; ELSE PERFORM cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L '
				  'AND j.database = pg_catalog.current_database(); END IF; END $eightms_job$',
				  CASE WHEN command ~ '^CALL eightms\.[a-z_]+\([^;$]*\)$' THEN command
					   ELSE format('EXECUTE %L', command) END,
				  job_name)
$$;


-- ==== privacy: data-subject requests, account deletion that purges
-- The bridge's requests and attempts name their account (NULL: the
-- platform's own calls), last as in sql/bridge.sql.
ALTER TABLE eightms.http_request ADD COLUMN account_id uuid;
CREATE INDEX http_request_account_idx ON eightms.http_request (account_id) WHERE account_id IS NOT NULL;
ALTER TABLE eightms.http_attempt ADD COLUMN account_id uuid;

-- eightms_dba no longer reads the tenancy tables (sql/tenancy.sql): a
-- member's data reaches it only through the data-subject functions.
REVOKE SELECT ON eightms.account, eightms.member, eightms.invitation, eightms.session, eightms.session_revocation,
	eightms.user_revocation FROM eightms_dba;

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

CREATE OR REPLACE FUNCTION eightms_api.delete_account(confirm_company_name text) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	name text;
	grace interval;
BEGIN
	PERFORM eightms.require_member_role('owner');
	acct := eightms.current_account_id();
	SELECT a.company_name INTO name FROM eightms.account a WHERE a.account_id = acct FOR UPDATE;
	IF confirm_company_name IS DISTINCT FROM name THEN
		RAISE EXCEPTION 'the confirmation does not match the company name'
			USING ERRCODE = '22023',
				  HINT = 'Pass the account''s company name exactly as get_profile() shows it.';
	END IF;
	-- Logged as a data-subject erasure of the account (sql/dsar.sql).  With
	-- no grace period (rule account_deletion, 0 by default) everything goes
	-- now; with one, the account's pending work is cancelled now, the
	-- account is disabled (the hook refuses it), and
	-- eightms.run_account_deletions() removes it when the grace is over.
	grace := coalesce(eightms.retention_keep('account_deletion'), interval '0');
	IF grace <= interval '0' THEN
		PERFORM eightms.dsar_answer('erase', 'account', NULL, acct, NULL, eightms.current_user_id());
		RETURN;
	END IF;
	PERFORM eightms.cancel_account_work(acct);
	UPDATE eightms.account a SET status = 'disabled', updated_at = now() WHERE a.account_id = acct;
	UPDATE eightms.dsar_request d SET not_before = now() + grace
	 WHERE d.request_id = eightms.dsar_log('erase', 'account', NULL, acct, NULL, eightms.current_user_id());
END
$$;

-- New functions: PUBLIC gets nothing (as sql/privileges.sql).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eightms FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eightms_api FROM PUBLIC;
REVOKE ALL ON eightms.dsar_request, eightms.dsar_log FROM PUBLIC;

-- ==== Citus: eightms.distribute(), and scheduled jobs on the coordinator only
-- (doc/scale-out.md).
CREATE OR REPLACE FUNCTION eightms.distribution_plan()
RETURNS TABLE (table_name regclass, placement text, step integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH RECURSIVE t AS (
		SELECT c.oid AS relid,
			   CASE WHEN c.oid IN ('eightms.session_revocation'::regclass, 'eightms.user_revocation'::regclass)
						THEN 'reference'
					WHEN c.oid IN ('eightms.http_request'::regclass, 'eightms.http_attempt'::regclass,
								   'eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass,
								   'eightms.data_column'::regclass, 'eightms.retention_rule'::regclass,
								   'eightms.retention_setting'::regclass, 'eightms.purge_log'::regclass,
								   'eightms.session'::regclass, 'eightms.dsar_request'::regclass)
						THEN 'local'
					WHEN EXISTS (SELECT FROM pg_attribute a
								  WHERE a.attrelid = c.oid AND a.attname = 'account_id' AND NOT a.attisdropped)
						THEN 'distributed'
			   END AS placement
		  FROM pg_class c
		 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	),
	-- Parents first: account, the colocation group's own, then each table
	-- after every table its foreign keys name.
	depth (relid, d) AS (
		SELECT t.relid, 0 FROM t
		UNION ALL
		SELECT k.conrelid, depth.d + 1
		  FROM depth JOIN pg_constraint k ON k.confrelid = depth.relid AND k.contype = 'f'
		 WHERE k.conrelid <> k.confrelid AND depth.d < 16
	)
	SELECT t.relid::regclass, coalesce(t.placement, 'unclassified'),
		   (row_number() OVER (ORDER BY t.relid <> 'eightms.account'::regclass, max(depth.d),
									  t.relid::regclass::text))::integer
	  FROM t JOIN depth USING (relid)
	 GROUP BY t.relid, t.placement
	 ORDER BY 3
$$;
COMMENT ON FUNCTION eightms.distribution_plan() IS
	'Where eightms.distribute() puts each table of the extension on Citus (distributed by account_id, reference, or local to the coordinator), parents first';

-- Run by a superuser on the coordinator, any number of times: each table not
-- placed yet is placed, the others are left as they are.
CREATE FUNCTION eightms.distribute()
RETURNS TABLE (table_name regclass, placement text, action text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	done boolean;
	moved regclass[] := '{}';
	replication_role text := current_setting('session_replication_role');
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'eightms.distribute() must be run by a superuser'
			USING ERRCODE = '42501';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = '55000',
				  HINT = 'Put citus first in shared_preload_libraries, restart, CREATE EXTENSION citus, add the workers, then call eightms.distribute() again.';
	END IF;
	IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0 THEN
		RAISE EXCEPTION 'this node is a Citus worker'
			USING ERRCODE = '55000',
				  HINT = 'Call eightms.distribute() on the coordinator.';
	END IF;
	IF EXISTS (SELECT FROM eightms.distribution_plan() d WHERE d.placement = 'unclassified') THEN
		RAISE EXCEPTION 'eightms.distribution_plan() has no placement for table %',
			(SELECT d.table_name FROM eightms.distribution_plan() d WHERE d.placement = 'unclassified' LIMIT 1)
			USING ERRCODE = '55000',
				  HINT = 'A table of the extension needs a placement in eightms.distribution_plan(); see doc/scale-out.md.';
	END IF;

	-- The conversation triggers run on the shards (doc/scale-out.md).
	PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
	-- Tables linked by foreign keys, distributed in one transaction: one
	-- connection per node, so each sees the rows the previous one moved.
	PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

	FOR p IN SELECT * FROM eightms.distribution_plan() d ORDER BY d.step LOOP
		table_name := p.table_name;
		placement := p.placement;
		done := EXISTS (SELECT FROM pg_dist_partition dp WHERE dp.logicalrelid = p.table_name);
		IF p.placement = 'local' THEN
			action := CASE WHEN done THEN 'left as Citus placed it' ELSE 'kept on the coordinator' END;
		ELSIF done THEN
			action := 'already ' || p.placement;
		ELSIF p.placement = 'reference' THEN
			PERFORM create_reference_table(p.table_name);
			moved := moved || p.table_name;
			action := 'made a reference table';
		ELSIF p.table_name = 'eightms.account'::regclass THEN
			PERFORM create_distributed_table(p.table_name, 'account_id', colocate_with => 'none');
			moved := moved || p.table_name;
			action := 'distributed by account_id';
		ELSE
			PERFORM create_distributed_table(p.table_name, 'account_id', colocate_with => 'eightms.account');
			moved := moved || p.table_name;
			action := 'distributed by account_id, colocated with eightms.account';
		END IF;
		RETURN NEXT;
	END LOOP;

	-- Citus reaches the workers as the role a statement runs as, so the API
	-- roles must log in there (only there: on the coordinator PostgREST
	-- logs in as its authenticator), on every worker, the ones added since
	-- the last call too; the change stays on each worker.
	IF EXISTS (SELECT FROM pg_dist_node n WHERE n.groupid <> 0 AND n.noderole = 'primary') THEN
		IF NOT (SELECT bool_and(w.success) FROM run_command_on_workers(
					'SET LOCAL citus.enable_alter_role_propagation = off; '
					'ALTER ROLE eightms_anon LOGIN; ALTER ROLE eightms_user LOGIN; ALTER ROLE eightms_phone LOGIN; '
					'ALTER ROLE eightms_dba LOGIN; ALTER ROLE eightms_worker LOGIN') w) THEN
			RAISE EXCEPTION 'could not let the API roles log in on every worker'
				USING ERRCODE = '55000',
					  HINT = 'SELECT * FROM run_command_on_workers(''SELECT 1'') shows which worker is unreachable; call eightms.distribute() again once it is.';
		END IF;
		table_name := NULL;
		placement := NULL;
		action := 'the API roles may log in on the workers';
		RETURN NEXT;
	END IF;

	-- Citus copies the rows a table had into its shards and leaves the
	-- originals behind in the coordinator's table, where nothing reads them.
	-- Without triggers: conversation's TRUNCATE trigger would empty the
	-- distributed message table, every account's messages.
	PERFORM set_config('session_replication_role', 'replica', true);
	FOR p IN SELECT m.rel FROM unnest(moved) WITH ORDINALITY AS m(rel, i) ORDER BY m.i DESC LOOP
		PERFORM truncate_local_data_after_distributing_table(p.rel);
	END LOOP;
	PERFORM set_config('session_replication_role', replication_role, true);
END
$$;
COMMENT ON FUNCTION eightms.distribute() IS
	'On a Citus coordinator, as a superuser: distribute the tenant tables by account_id in one colocation group, make the global ones reference tables, keep the bridge''s and the registries on the coordinator; idempotent';
REVOKE ALL ON FUNCTION eightms.distribution_plan(), eightms.distribute() FROM PUBLIC;

CREATE OR REPLACE FUNCTION eightms.schedule_jobs()
RETURNS TABLE (job_name text, schedule text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cron_db text := current_setting('cron.database_name', true);
	j record;
BEGIN
	-- On Citus the jobs run on the coordinator only: each works on every
	-- account through the distributed tables, so the same job on a worker
	-- node would do its work once more (doc/scale-out.md).
	IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0 THEN
			RAISE EXCEPTION 'this node is a Citus worker: eightms''s jobs run on the coordinator'
				USING ERRCODE = '55000',
					  HINT = 'Call eightms.schedule_jobs() on the coordinator.';
		END IF;
	END IF;

	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		IF cron_db IS NULL THEN
			RAISE EXCEPTION 'pg_cron is not loaded in this server'
				USING ERRCODE = '55000',
					  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name = '''
							 || current_database() || ''', restart, then CREATE EXTENSION pg_cron here.';
		ELSIF cron_db <> current_database() THEN
			RAISE EXCEPTION 'pg_cron lives in database "%", not in "%"', cron_db, current_database()
				USING ERRCODE = '55000',
					  HINT = 'Set cron.database_name = ''' || current_database()
							 || ''' and restart, or in database ' || quote_ident(cron_db)
							 || ' run cron.schedule_in_database() for each row of eightms.scheduled_job with database '''
							 || current_database() || '''.';
		ELSE
			RAISE EXCEPTION 'the pg_cron extension is not created in this database'
				USING ERRCODE = '55000',
					  HINT = 'Run CREATE EXTENSION pg_cron; then call eightms.schedule_jobs() again.';
		END IF;
	END IF;

	-- pg_cron runs a job over a libpq connection to cron.host as the job's
	-- user unless it uses background workers; where that connection needs a
	-- password it has none, and every run fails ("connection failed") with
	-- nothing said at scheduling time.
	IF coalesce(current_setting('cron.use_background_workers', true), 'off') <> 'on' THEN
		RAISE WARNING 'pg_cron will run these jobs over a connection to "%" as "%"',
			coalesce(current_setting('cron.host', true), 'localhost'), current_user
			USING HINT = 'Set cron.use_background_workers = on and restart, or let that connection log in without a '
						 'prompt (pg_hba.conf, ~/.pgpass of the server''s user); eightms.job_status() shows each '
						 'job''s last run.';
	END IF;

	FOR j IN SELECT s.job_name, s.schedule, s.command FROM eightms.scheduled_job s ORDER BY s.job_name LOOP
		job_name := j.job_name;
		schedule := j.schedule;
		EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
			USING j.job_name, j.schedule, eightms.cron_command(j.job_name, j.command);
		RETURN NEXT;
	END LOOP;

	EXECUTE $q$
		SELECT count(cron.unschedule(c.jobid))
		  FROM cron.job c
		 WHERE c.jobname LIKE 'eightms-%'
		   AND c.jobname NOT IN (SELECT s.job_name FROM eightms.scheduled_job s)
	$q$;
END
$$;

-- ==== Citus: sessions, the hook's lookups, rotate_seals
-- The hook records sessions as its owner and the request's role then reads
-- the account's shards: on Citus the session table stays on the
-- coordinator, which allows no foreign key to the distributed member; a
-- member's sessions go with it by a trigger (and forget_sessions()).
ALTER TABLE eightms.session DROP CONSTRAINT session_account_id_user_id_fkey;
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

CREATE FUNCTION eightms.sole_membership(uid text, OUT account_id uuid, OUT role text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
	SELECT min(m.account_id::text)::uuid, min(m.role)
	  INTO sole_membership.account_id, sole_membership.role
	  FROM eightms.member m
	 WHERE m.user_id = uid
	HAVING count(*) = 1;
END
$$;
COMMENT ON FUNCTION eightms.sole_membership(text) IS
	'The pre-request hook''s choice when none is made: the user''s account and role if they belong to exactly one';

CREATE FUNCTION eightms.record_session(acct uuid, shash bytea, uid text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	seen timestamptz;
	t timestamptz := now();
BEGIN
	SELECT s.last_seen_at INTO seen FROM eightms.session s
	 WHERE s.account_id = acct AND s.session_hash = shash;
	IF NOT FOUND THEN
		INSERT INTO eightms.session (account_id, session_hash, user_id, created_at, last_seen_at)
		VALUES (acct, shash, uid, t, t)
		ON CONFLICT DO NOTHING;
	ELSIF seen < t - interval '1 minute' THEN
		UPDATE eightms.session s SET last_seen_at = t
		 WHERE s.account_id = acct AND s.session_hash = shash
		   AND s.last_seen_at < t - interval '1 minute';
	END IF;
END
$$;
COMMENT ON FUNCTION eightms.record_session(uuid, bytea, text) IS
	'The pre-request hook''s record of a session acting on an account: first seen, and last seen at most once a minute';

CREATE FUNCTION eightms.reseal_column(tbl regclass, col name, context_sql text, active_id integer,
									  batch_size integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keys text;
	r record;
	sealed bytea;
	n bigint := 0;
	k bigint;
BEGIN
	SELECT string_agg(format('t.%1$I = ($3).%1$I', a.attname), ' AND ' ORDER BY x.i) INTO keys
	  FROM pg_index ix, unnest(ix.indkey) WITH ORDINALITY x(attnum, i), pg_attribute a
	 WHERE ix.indrelid = tbl AND ix.indisprimary AND a.attrelid = tbl AND a.attnum = x.attnum;
	FOR r IN EXECUTE format('SELECT t AS tup, t.%2$I AS old, %3$s AS context FROM %1$s t'
							' WHERE t.%2$I IS NOT NULL AND eightms.sealed_key_id(t.%2$I) <> $1 LIMIT $2',
							tbl, col, context_sql)
			 USING active_id, batch_size LOOP
		sealed := eightms.reseal(r.old, r.context);
		EXECUTE format('UPDATE %1$s t SET %2$I = $1 WHERE %3$s AND t.%2$I = $2', tbl, col, keys)
			USING sealed, r.old, r.tup;
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION eightms.reseal_column(regclass, name, text, integer, integer) IS
	'rotate_seals()''s step: re-seal at most batch_size values of one column under the active key, row by row by primary key';

CREATE OR REPLACE FUNCTION eightms.rotate_seals(batch_size integer DEFAULT 1000)
RETURNS TABLE (table_name regclass, column_name name, moved bigint, remaining bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c record;
	active_id integer;
BEGIN
	SELECT s.key_id INTO active_id FROM eightms.seal_status() s WHERE s.active;
	IF active_id IS NULL THEN
		-- Raises the key ring error with its hint.
		PERFORM eightms.seal('', 'rotate');
	END IF;
	IF batch_size IS NULL OR batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
	END IF;
	FOR c IN SELECT s.table_name, s.column_name, s.context_sql FROM eightms.sealed_column s ORDER BY 1, 2 LOOP
		table_name := c.table_name;
		column_name := c.column_name;
		moved := eightms.reseal_column(c.table_name, c.column_name, c.context_sql, active_id, batch_size);
		EXECUTE format('SELECT count(*) FROM %1$s WHERE %2$I IS NOT NULL AND eightms.sealed_key_id(%2$I) <> $1',
					   c.table_name, c.column_name)
		INTO remaining USING active_id;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION eightms.rotate_seals(integer) IS
	'Re-seal registered columns under the active key, batch_size values per column per call; returns moved and remaining';
COMMENT ON FUNCTION eightms.rotate_seals(integer) IS
	'Re-seal registered columns under the active key, batch_size values per column per call; returns moved and remaining';
REVOKE ALL ON FUNCTION eightms.forget_sessions(uuid, text), eightms.member_forget_sessions(),
	eightms.sole_membership(text), eightms.record_session(uuid, bytea, text),
	eightms.reseal_column(regclass, name, text, integer, integer) FROM PUBLIC;

-- ==== Citus: the dashboard's send, inbox and consent
-- Issue 20: every statement of the dashboard's send, cancel and inbox is
-- one Citus routes to the account's shards: send_messages in named steps of
-- one table each (no join of two tables under a cached plan), the clock
-- read before the statements that use it, PL/pgSQL instead of SQL
-- functions with parameters, the account read before the statement that
-- filters by it; a conversation's messages and reviews deleted by row
-- triggers (a transition table cannot be read on a Citus shard).

CREATE OR REPLACE FUNCTION eightms.delete_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM eightms.message m
	 WHERE m.account_id = OLD.account_id AND m.conversation_id = OLD.conversation_id;
	RETURN NULL;
END
$$;

DROP TRIGGER conversation_delete_messages ON eightms.conversation;
CREATE TRIGGER conversation_delete_messages AFTER DELETE ON eightms.conversation
	FOR EACH ROW EXECUTE FUNCTION eightms.delete_conversation_messages();

CREATE FUNCTION eightms.outbound_items(messages jsonb, region text, fold boolean, ttl interval)
RETURNS TABLE (ord integer, e164 text, body text, phone uuid, idem text, send_at timestamptz)
LANGUAGE sql STABLE
AS $$
	SELECT n.ord, n.e164, n.body, n.phone, n.idem, n.send_at
	  FROM (SELECT i.*, eightms.try_e164(i.raw_to, region, true) COLLATE "C" AS e164,
				   row_number() OVER (PARTITION BY i.idem ORDER BY i.ord) AS idem_rank
			  FROM (SELECT t.ord::integer AS ord, t.x ->> 'to' AS raw_to,
						   CASE WHEN fold THEN eightms.sms_fold(t.x ->> 'body') ELSE t.x ->> 'body' END AS body,
						   (t.x ->> 'phone_id')::uuid AS phone, t.x ->> 'idempotency_key' AS idem,
						   (t.x ->> 'send_at')::timestamptz AS send_at, eightms.outbound_item_error(t.x) AS item_error
					  FROM jsonb_array_elements(messages) WITH ORDINALITY AS t(x, ord)) i) n
	 WHERE n.item_error IS NULL AND n.e164 IS NOT NULL AND length(n.body) BETWEEN 1 AND 1600
	   AND (n.send_at IS NULL OR eightms.send_at_error(n.send_at, ttl) IS NULL)
	   AND (n.idem IS NULL OR (n.idem_rank = 1 AND length(n.idem) BETWEEN 1 AND 200))
	 ORDER BY n.ord
$$;

CREATE FUNCTION eightms.touch_conversations(acct uuid, numbers text[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	RETURN QUERY
	UPDATE eightms.conversation cv SET last_message_at = at
	 WHERE cv.account_id = acct AND cv.peer_number = ANY (numbers COLLATE "C") AND cv.phone_id IS NOT NULL
	RETURNING cv.conversation_id, cv.peer_number, cv.phone_id;
END
$$;

CREATE FUNCTION eightms.create_conversations(acct uuid, numbers text[], phones uuid[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
	RETURN QUERY
	INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id, last_message_at)
	SELECT acct, u.number, u.phone, at
	  FROM unnest(numbers, phones) AS u(number, phone)
	 ORDER BY u.number COLLATE "C"
	ON CONFLICT ON CONSTRAINT conversation_peer_key DO UPDATE
		SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id), last_message_at = EXCLUDED.last_message_at
	RETURNING cv.conversation_id, cv.peer_number, cv.phone_id;
END
$$;

CREATE FUNCTION eightms.open_conversations(acct uuid, numbers text[], named uuid[], firsts integer[],
										   held text[], at timestamptz)
RETURNS TABLE (conversation_id uuid, peer_number text, phone_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	new_numbers text[];
	new_phones uuid[];
BEGIN
	WITH rest AS (
		SELECT u.number, u.phone, u.first
		  FROM unnest(numbers, named, firsts) AS u(number, phone, first)
		 WHERE u.number <> ALL (held)),
	unrouted AS (
		SELECT r.number, row_number() OVER (ORDER BY r.first) AS k FROM rest r WHERE r.phone IS NULL),
	slots AS (
		SELECT h.phone_id,
			   row_number() OVER (ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id) AS k
		  FROM eightms.healthy_phones(acct, current_setting('eightms.routing_queue_cap')::integer) h,
			   generate_series(1, (SELECT count(*) FROM unrouted)) g
		 -- Counting queues only when some conversation needs a phone.
		 WHERE EXISTS (SELECT FROM unrouted))
	SELECT array_agg(r.number ORDER BY r.number), array_agg(coalesce(r.phone, s.phone_id) ORDER BY r.number)
	  INTO new_numbers, new_phones
	  FROM rest r
	  LEFT JOIN unrouted un ON un.number = r.number
	  LEFT JOIN slots s ON s.k = un.k;
	RETURN QUERY SELECT * FROM eightms.create_conversations(acct, new_numbers, new_phones, at);
END
$$;

CREATE FUNCTION eightms.insert_outbound(acct uuid, ids uuid[], convs uuid[], phones uuid[], numbers text[],
										bodies text[], idems text[], send_ats timestamptz[], at timestamptz,
										ttl interval, campaign uuid DEFAULT NULL,
										expires timestamptz[] DEFAULT NULL, closes timestamptz[] DEFAULT NULL)
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
BEGIN
	-- A campaign's release (sql/campaigns.sql) passes its campaign, each
	-- message's expiry (its window's opening + the campaign's ttl) and its
	-- window's closing; a send passes none of them.
	RETURN QUERY
	INSERT INTO eightms.message AS x (account_id, message_id, conversation_id, direction, phone_id, peer_number,
									  body, encoding, segments, status, pending, idempotency_key, send_at, expires_at,
									  campaign_id, window_closes_at)
	SELECT acct, ids[k], convs[k], 'out', phones[k], numbers[k], bodies[k], i.encoding, i.segments, 'queued', true,
		   idems[k], coalesce(send_ats[k], at), coalesce(expires[k], coalesce(send_ats[k], at) + ttl),
		   campaign, closes[k]
	  FROM generate_subscripts(ids, 1) AS k
	 CROSS JOIN LATERAL eightms.sms_info(bodies[k]) i
	 ORDER BY k
	RETURNING x.message_id;
END
$$;

CREATE FUNCTION eightms.queue_plain_outbound(acct uuid, messages jsonb, region text, fold boolean, ttl interval)
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	at timestamptz := now();
	ords integer[];
	numbers text[];
	bodies text[];
	phones uuid[];
	idems text[];
	send_ats timestamptz[];
	ids uuid[];
	opted text[];
	paired uuid[] := '{}';
	used text[] := '{}';
	peers text[];
	named uuid[];
	firsts integer[];
	held_numbers text[];
	held_ids uuid[];
	held_phones uuid[];
	convs uuid[];
	senders uuid[];
BEGIN
	-- The items that pass every check needing no table, each with the id
	-- its message will have.
	SELECT array_agg(i.ord), array_agg(i.e164), array_agg(i.body), array_agg(i.phone), array_agg(i.idem),
		   array_agg(i.send_at), array_agg(eightms.uuid_v7())
	  INTO ords, numbers, bodies, phones, idems, send_ats, ids
	  FROM eightms.outbound_items(messages, region, fold, ttl) i;
	IF ords IS NULL THEN
		RETURN array_fill(NULL::uuid, ARRAY[jsonb_array_length(messages)]);
	END IF;
	-- Of those, the ones the account's tables let through: the number not
	-- opted out, the phone named (if any) paired, the idempotency key not
	-- used before.  The opt-out list is read again once the conversations
	-- are held.
	opted := eightms.opted_out(acct, numbers);
	IF cardinality(array_remove(phones, NULL)) > 0 THEN
		SELECT coalesce(array_agg(p.phone_id), '{}') INTO paired FROM eightms.phone p
		 WHERE p.account_id = acct AND p.phone_id = ANY (phones) AND p.unpaired_at IS NULL;
	END IF;
	IF cardinality(array_remove(idems, NULL)) > 0 THEN
		SELECT coalesce(array_agg(o.idempotency_key), '{}') INTO used FROM eightms.message o
		 WHERE o.account_id = acct AND o.idempotency_key = ANY (idems);
	END IF;
	IF cardinality(opted) > 0 OR cardinality(array_remove(phones, NULL)) > cardinality(paired)
	   OR cardinality(used) > 0 THEN
		SELECT array_agg(u.ord), array_agg(u.e164), array_agg(u.body), array_agg(u.phone), array_agg(u.idem),
			   array_agg(u.send_at), array_agg(u.id)
		  INTO ords, numbers, bodies, phones, idems, send_ats, ids
		  FROM unnest(ords, numbers, bodies, phones, idems, send_ats, ids)
			   AS u(ord, e164, body, phone, idem, send_at, id)
		 WHERE u.e164 <> ALL (opted)
		   AND (u.phone IS NULL OR u.phone = ANY (paired))
		   AND (u.idem IS NULL OR u.idem <> ALL (used));
		IF ords IS NULL THEN
			RETURN array_fill(NULL::uuid, ARRAY[jsonb_array_length(messages)]);
		END IF;
	END IF;
	-- One row per number, from its first item (in number order as the
	-- subquery reads them; the statements that lock conversations take
	-- them in number order, the order every batch shares, whatever the
	-- order of the array).
	SELECT array_agg(p.e164), array_agg(p.phone), array_agg(p.ord)
	  INTO peers, named, firsts
	  FROM (SELECT DISTINCT ON (u.e164) u.e164, u.phone, u.ord
			  FROM unnest(numbers, phones, ords) AS u(e164, phone, ord) ORDER BY u.e164, u.ord) p;
	-- Hold the conversations (the consent lock): those that exist with a
	-- phone first, then the others, opened.
	SELECT array_agg(t.peer_number), array_agg(t.conversation_id), array_agg(t.phone_id)
	  INTO held_numbers, held_ids, held_phones
	  FROM eightms.touch_conversations(acct, peers, at) t;
	IF coalesce(cardinality(held_numbers), 0) < cardinality(peers) THEN
		SELECT held_numbers || array_agg(h.peer_number), held_ids || array_agg(h.conversation_id),
			   held_phones || array_agg(h.phone_id)
		  INTO held_numbers, held_ids, held_phones
		  FROM eightms.open_conversations(acct, peers, named, firsts, coalesce(held_numbers, '{}'), at) h;
	END IF;
	SELECT array_agg(c.id ORDER BY u.ord), array_agg(coalesce(u.phone, c.phone) ORDER BY u.ord)
	  INTO convs, senders
	  FROM unnest(ords, numbers, phones) AS u(ord, e164, phone)
	  JOIN unnest(held_numbers, held_ids, held_phones) AS c(number, id, phone) ON c.number = u.e164;
	IF (SELECT count(*) FROM eightms.insert_outbound(acct, ids, convs, senders, numbers, bodies, idems, send_ats, at, ttl))
	   IS DISTINCT FROM cardinality(ords) THEN
		-- Cannot happen (every item is inserted or the statement fails);
		-- should it, the slow path settles each item.
		RAISE EXCEPTION USING ERRCODE = 'T8R01';
	END IF;
	-- The opt-out list again, now that the conversations are held: a STOP
	-- that committed while this waited for one of them.
	IF cardinality(eightms.opted_out(acct, peers)) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'T8R01';
	END IF;
	-- Realtime: ids only, never content or numbers; one notification per
	-- phone and hundred messages (a payload holds 8000 bytes).
	PERFORM count(pg_notify('eightms_outbound',
							json_build_object('account_id', acct, 'phone_id', g.phone_id, 'message_ids', g.ids)::text))
	   FROM (SELECT c.phone_id, json_agg(c.message_id) AS ids
			   FROM (SELECT u.phone_id, u.message_id, (row_number() OVER (PARTITION BY u.phone_id) - 1) / 100 AS chunk
					   FROM unnest(ids, senders) AS u(message_id, phone_id)) c
			  GROUP BY c.phone_id, c.chunk) g;
	IF cardinality(ords) = jsonb_array_length(messages) THEN
		RETURN ids;
	END IF;
	RETURN ARRAY(SELECT f.id
				   FROM generate_series(1, jsonb_array_length(messages)) AS it(ord)
				   LEFT JOIN unnest(ords, ids) AS f(ord, id) ON f.ord = it.ord
				  ORDER BY it.ord);
END
$$;

CREATE FUNCTION eightms.cancel_queued(acct uuid, ids uuid[], at timestamptz, why text) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	FOR mid, cid IN
		UPDATE eightms.message m
		   SET status = 'canceled', pending = NULL, canceled_at = at, error = why
		 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.direction = 'out' AND m.status = 'queued'
		RETURNING m.message_id, m.campaign_id
	LOOP
		RETURN NEXT mid;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.cancel_messages(message_ids uuid[])
RETURNS TABLE (message_id uuid, canceled boolean, status text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	gone uuid[];
	known uuid[];
	statuses text[];
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	IF message_ids IS NULL OR cardinality(message_ids) > 10000 THEN
		RAISE EXCEPTION 'message_ids must be an array of at most 10000 message ids' USING ERRCODE = '22023',
			HINT = 'Cancel a larger batch in several calls.';
	END IF;
	SELECT coalesce(array_agg(c.id), '{}') INTO gone
	  FROM eightms.cancel_queued(acct, message_ids, now(), 'canceled by ' || left(eightms.current_user_id(), 255)) c(id);
	-- A statement of its own: what a claim took meanwhile (the update
	-- waited for it and then left it) reads as claimed here.
	SELECT array_agg(m.message_id), array_agg(m.status) INTO known, statuses FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (message_ids) AND m.direction = 'out';
	RETURN QUERY
	SELECT i.id, i.id = ANY (gone), CASE WHEN i.id = ANY (gone) THEN 'canceled' ELSE k.status END
	  FROM (SELECT DISTINCT ON (u.id) u.id, u.ord FROM unnest(message_ids) WITH ORDINALITY AS u(id, ord)
			 WHERE u.id IS NOT NULL ORDER BY u.id, u.ord) i
	  LEFT JOIN unnest(known, statuses) AS k(id, status) ON k.id = i.id
	 ORDER BY i.ord;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.mark_read(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- The account first: a statement keyed by a value, not a call, is the
	-- one Citus routes to the account's shard.
	acct uuid := eightms.require_account();
BEGIN
	UPDATE eightms.conversation c SET unread_count = 0
	 WHERE c.account_id = acct AND c.conversation_id = mark_read.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', mark_read.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION eightms_api.delete_conversation(conversation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin', 'agent');
	acct := eightms.current_account_id();
	-- Its messages and reviews go with it (the row triggers of
	-- gateway_tables.sql and consent.sql).
	DELETE FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.conversation_id = delete_conversation.conversation_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no conversation %', delete_conversation.conversation_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

REVOKE ALL ON FUNCTION eightms.outbound_items(jsonb, text, boolean, interval),
	eightms.touch_conversations(uuid, text[], timestamptz),
	eightms.create_conversations(uuid, text[], uuid[], timestamptz),
	eightms.open_conversations(uuid, text[], uuid[], integer[], text[], timestamptz),
	eightms.insert_outbound(uuid, uuid[], uuid[], uuid[], text[], text[], text[], timestamptz[], timestamptz, interval,
		uuid, timestamptz[], timestamptz[]),
	eightms.queue_plain_outbound(uuid, jsonb, text, boolean, interval),
	eightms.cancel_queued(uuid, uuid[], timestamptz, text) FROM PUBLIC;
-- The steps of send_messages and cancel_messages run as their caller.
GRANT EXECUTE ON FUNCTION eightms.outbound_items(jsonb, text, boolean, interval),
	eightms.touch_conversations(uuid, text[], timestamptz),
	eightms.create_conversations(uuid, text[], uuid[], timestamptz),
	eightms.open_conversations(uuid, text[], uuid[], integer[], text[], timestamptz),
	eightms.insert_outbound(uuid, uuid[], uuid[], uuid[], text[], text[], text[], timestamptz[], timestamptz, interval,
		uuid, timestamptz[], timestamptz[]),
	eightms.queue_plain_outbound(uuid, jsonb, text, boolean, interval),
	eightms.cancel_queued(uuid, uuid[], timestamptz, text)
TO eightms_user;

-- ==== Citus: the phone's side of the gateway
-- Every statement of a phone's calls (claim, report, inbound, heartbeat,
-- pairing) and of the expiry job on one tenant table, with account_id =
-- one value, so that Citus routes it under a generic plan; now() and
-- seal() read before the statement; long functions in named steps.
-- (claim_messages, report_messages, receive_messages, heartbeat,
-- pair_phone, expire_messages, healthy_phones and queue_reply: defined
-- again above, in place.)

-- A scheduled job's step for one account: messages past their expiry are
-- expired, and leases that ran out go back in the queue (attempts + 1), or
-- fail after the last attempt.
CREATE FUNCTION eightms.expire_account_messages(acct uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer;
	k integer;
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	t_now timestamptz := now();
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	-- The campaign messages among those expired or failed: their
	-- recipients follow (sql/campaign_stats.sql).
	n := 0;
	FOR mid, cid IN
		UPDATE eightms.message m SET status = 'expired', pending = NULL, lease_expires_at = NULL,
			error = 'not sent before it expired'
		 WHERE m.account_id = acct AND m.pending AND m.expires_at < t_now
		RETURNING m.message_id, m.campaign_id
	LOOP
		n := n + 1;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	k := 0;
	FOR mid, cid IN
		UPDATE eightms.message m SET status = 'failed', pending = NULL, failed_at = t_now,
			error = 'the phone did not report within its lease ' || (m.attempts + 1)::text || ' times',
			attempts = m.attempts + 1, lease_expires_at = NULL
		 WHERE m.account_id = acct AND m.pending AND m.status = 'claimed' AND m.lease_expires_at < t_now
		   AND m.attempts + 1 >= max_attempts
		RETURNING m.message_id, m.campaign_id
	LOOP
		k := k + 1;
		IF cid IS NOT NULL THEN
			camp := camp || mid;
		END IF;
	END LOOP;
	n := n + k;
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
	UPDATE eightms.message m SET status = 'queued', pending = true, failed_at = NULL, error = NULL,
		attempts = m.attempts + 1, lease_expires_at = NULL
	 WHERE m.account_id = acct AND m.pending AND m.status = 'claimed' AND m.lease_expires_at < t_now;
	GET DIAGNOSTICS k = ROW_COUNT;
	RETURN n + k;
END
$$;

-- Queued work of an account's phones that went offline (or were unpaired:
-- see phone_gone) moves to its healthiest phones online.  Found from the
-- phones, so that a claim does not walk the account's queue.  Spread as
-- send_messages spreads new conversations: the i-th message (in send
-- order) to the i-th free slot, shortest queue first, so that the queues
-- even out; the phones and their queues are read once, not once per
-- message.  With no healthy phone a message is left to any phone
-- (unassigned), as pick_phone would.
CREATE FUNCTION eightms.move_offline_queues(acct uuid, any_unpaired boolean) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer := 0;
	k integer;
	window_start timestamptz := now() - current_setting('eightms.online_window')::interval;
	offline uuid[];
	moving uuid[];
	targets uuid[];
	t record;
BEGIN
	SELECT array_agg(p.phone_id) INTO offline FROM eightms.phone p
	 WHERE p.account_id = acct
	   AND eightms.phone_gone(p.unpaired_at, p.last_heartbeat_at, window_start, any_unpaired);
	IF offline IS NULL THEN
		RETURN 0;
	END IF;
	SELECT array_agg(m.message_id ORDER BY m.send_at, m.message_id) INTO moving FROM eightms.message m
	 WHERE m.account_id = acct AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued';
	IF moving IS NULL THEN
		RETURN 0;
	END IF;
	targets := ARRAY(SELECT h.phone_id
					   FROM eightms.healthy_phones(acct) h, generate_series(1, cardinality(moving)) g
					  ORDER BY h.queue_length + g, h.battery_pct DESC NULLS LAST, h.phone_id
					  LIMIT cardinality(moving));
	-- One write per target phone.  Without targets, unnest pads them with
	-- NULL: unassigned.
	FOR t IN SELECT u.phone, array_agg(u.id) AS ids FROM unnest(moving, targets) AS u(id, phone) GROUP BY u.phone LOOP
		UPDATE eightms.message m SET phone_id = t.phone
		 WHERE m.account_id = acct AND m.message_id = ANY (t.ids)
		   -- Again on the row as updated: a claim may have taken it meanwhile.
		   AND m.phone_id = ANY (offline) AND m.pending AND m.status = 'queued';
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	END LOOP;
	RETURN n;
END
$$;

-- Claiming, step 1: due messages of one queue, locked in send_at order,
-- at most lim, with what their fate is decided from: the phone's own queue
-- (own, with its own claims whose lease ran out: it takes them back), or
-- the messages no phone was chosen for; each straight off its index
-- (message_queue_idx, message_unassigned_idx).  Locked rows others hold
-- are skipped.  Each row's ctid is kept so that the claim's update finds it
-- without the primary key: the rows are locked, so it cannot move meanwhile.
-- A campaign message whose send window has closed is never handed out: the
-- campaigns job moves it to its next window (sql/campaigns.sql).
CREATE FUNCTION eightms.lock_due_messages(acct uuid, me uuid, own boolean, lim integer, t_now timestamptz)
RETURNS TABLE (message_id uuid, tid tid, segments integer, conversation_id uuid, peer_number text,
			   created_at timestamptz, expires_at timestamptz, status text, attempts integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	IF own THEN
		RETURN QUERY
		SELECT m.message_id, m.ctid, m.segments, m.conversation_id, m.peer_number, m.created_at, m.expires_at,
			   m.status, m.attempts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id = me AND m.pending AND m.send_at <= t_now
		   AND (m.status = 'queued' OR m.lease_expires_at < t_now)
		   AND (m.window_closes_at IS NULL OR m.window_closes_at > t_now)
		 ORDER BY m.send_at
		 LIMIT lim
		   FOR UPDATE SKIP LOCKED;
	ELSE
		RETURN QUERY
		SELECT m.message_id, m.ctid, m.segments, m.conversation_id, m.peer_number, m.created_at, m.expires_at,
			   m.status, m.attempts
		  FROM eightms.message m
		 WHERE m.account_id = acct AND m.phone_id IS NULL AND m.pending AND m.send_at <= t_now
		   AND (m.window_closes_at IS NULL OR m.window_closes_at > t_now)
		 ORDER BY m.send_at
		 LIMIT lim
		   FOR UPDATE SKIP LOCKED;
	END IF;
END
$$;

-- Claiming, step 2: what becomes of each message locked (in the order of
-- the arrays): what expired while queued is not sent; what was queued
-- before its number opted out is canceled (a STOP cancels what waits for
-- the number itself: this is for a number the account put on its opt-out
-- list, or a send that did not take the consent lock; the STOP
-- confirmation, queued with the opt-out, and help replies after it go
-- out); a lease that ran out on the last allowed attempt fails the
-- message; the rest is claimed (a run-out lease as a new attempt).  The
-- opt-outs are read after the rows are locked, in a statement of their
-- own: a snapshot no older than the lock's.
CREATE FUNCTION eightms.claim_fates(acct uuid, peers text[], created timestamptz[], expires timestamptz[],
									statuses text[], attempts integer[], t_now timestamptz)
RETURNS text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	max_attempts integer := current_setting('eightms.message_max_attempts')::integer;
	opted text[];
	opted_at timestamptz[];
BEGIN
	SELECT array_agg(o.number), array_agg(o.opted_out_at) INTO opted, opted_at
	  FROM eightms.opt_out o
	 WHERE o.account_id = acct AND o.number = ANY (peers);
	RETURN ARRAY(
		SELECT CASE WHEN u.expires_at < t_now THEN 'expired'
					WHEN opted IS NOT NULL
						 AND EXISTS (SELECT FROM unnest(opted, opted_at) AS o(number, at)
									  WHERE o.number = u.peer AND o.at > u.created_at)
					THEN 'canceled'
					WHEN u.status = 'claimed' AND u.attempts + 1 >= max_attempts THEN 'failed'
					ELSE 'claimed' END
		  FROM unnest(peers, created, expires, statuses, attempts) WITH ORDINALITY
			   AS u(peer, created_at, expires_at, status, attempts, i)
		 ORDER BY u.i);
END
$$;

-- Claiming, step 3: each message locked takes its fate, one write per
-- fate; returns the messages claimed, as claim_messages answers them.
CREATE FUNCTION eightms.settle_claims(acct uuid, me uuid, ids uuid[], tids tid[], fates text[], t_now timestamptz)
RETURNS TABLE (message_id uuid, to_number text, body text, encoding text, segments integer,
			   attempt integer, lease_expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	lease_end timestamptz := t_now + current_setting('eightms.message_lease')::interval;
	f text;
	f_ids uuid[];
	f_tids tid[];
	camp uuid[];
	mid uuid;
	cid uuid;
BEGIN
	FOR f, f_ids, f_tids IN
		SELECT u.fate, array_agg(u.id), array_agg(u.tid) FROM unnest(ids, tids, fates) AS u(id, tid, fate) GROUP BY u.fate
	LOOP
		IF f = 'claimed' THEN
			RETURN QUERY
			UPDATE eightms.message m SET status = 'claimed', pending = true,
				attempts = CASE WHEN m.status = 'claimed' THEN m.attempts + 1 ELSE m.attempts END,
				phone_id = me, claimed_at = t_now, lease_expires_at = lease_end
			 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
			RETURNING m.message_id, m.peer_number, m.body, m.encoding, m.segments, m.attempts + 1, m.lease_expires_at;
		ELSIF f = 'expired' THEN
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'expired', pending = NULL, lease_expires_at = NULL,
					error = 'not sent before it expired'
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		ELSIF f = 'canceled' THEN
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'canceled', pending = NULL, lease_expires_at = NULL,
					error = 'recipient opted out', canceled_at = t_now
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		ELSE
			FOR mid, cid IN
				UPDATE eightms.message m SET status = 'failed', pending = NULL, lease_expires_at = NULL,
					error = 'the phone did not report within its lease ' || (m.attempts + 1)::text || ' times',
					failed_at = t_now, attempts = m.attempts + 1
				 WHERE m.account_id = acct AND m.ctid = ANY (f_tids) AND m.message_id = ANY (f_ids)
				RETURNING m.message_id, m.campaign_id
			LOOP
				IF cid IS NOT NULL THEN
					camp := camp || mid;
				END IF;
			END LOOP;
		END IF;
	END LOOP;
	-- What was not claimed and is a campaign's: its recipient follows
	-- (a claimed one stays queued).
	IF camp IS NOT NULL THEN
		PERFORM eightms.follow_campaign_messages(acct, camp);
	END IF;
END
$$;

-- Claiming, step 4: conversations whose messages no phone was chosen for
-- (none was online) get the phone that sends them, so that their next
-- message and the replies thread on that handset.  A conversation locked
-- meanwhile is left: a send or a reply holding it gives it a phone itself,
-- and waiting for it while the claim holds message rows could deadlock
-- with a STOP, which takes the conversation first.
CREATE FUNCTION eightms.give_conversations_phone(acct uuid, me uuid, convs uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	locked uuid[] := '{}';
	c uuid;
BEGIN
	FOR c IN SELECT c2.conversation_id FROM eightms.conversation c2
			  WHERE c2.account_id = acct AND c2.phone_id IS NULL AND c2.conversation_id = ANY (convs)
			  ORDER BY c2.peer_number
				FOR NO KEY UPDATE SKIP LOCKED LOOP
		locked := locked || c;
	END LOOP;
	UPDATE eightms.conversation x SET phone_id = me
	 WHERE x.account_id = acct AND x.conversation_id = ANY (locked);
END
$$;

-- Reporting, the usual batch's step: the reports of one status (st) move
-- their messages, each checked against the row as the update finds it, with
-- no locking pass first; ids, ats and errs are the reports', in id order
-- (each id once), so that a message's report is found by a binary search
-- (width_bucket) rather than a walk of the batch.  Returns the messages
-- moved.  One statement per status, each written out
-- with its status as a literal: Citus cannot deparse a comparison of the
-- parameter inside the shard's statement.  No column is set to a bare
-- array element either: Citus 13.2.2's deparser takes that for an
-- assignment to an element and crashes the backend; inside coalesce with
-- the column (NULL until this report: the status check says so) it is the
-- same value.
CREATE FUNCTION eightms.apply_reports(acct uuid, me uuid, st text, ids uuid[], ats timestamptz[], errs text[])
RETURNS TABLE (message_id uuid, campaign_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	IF st = 'sent' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'sent', pending = NULL, lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, ats[width_bucket(x.message_id, ids)]),
			error = CASE WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND (x.status IN ('queued', 'claimed') OR eightms.given_up(x.status, x.claimed_at, x.sent_at, x.error))
		RETURNING x.message_id, x.campaign_id;
	ELSIF st = 'delivered' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'delivered', pending = NULL, lease_expires_at = NULL,
			sent_at = coalesce(x.sent_at, ats[width_bucket(x.message_id, ids)]),
			delivered_at = coalesce(ats[width_bucket(x.message_id, ids)], x.delivered_at),
			error = CASE WHEN x.status IN ('expired', 'canceled', 'failed') THEN eightms.sent_regardless(x.status, x.error)
						 ELSE x.error END,
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND (x.status IN ('queued', 'claimed', 'sent')
				OR eightms.given_up(x.status, x.claimed_at, x.sent_at, x.error))
		RETURNING x.message_id, x.campaign_id;
	ELSIF st = 'failed' THEN
		RETURN QUERY
		UPDATE eightms.message x SET status = 'failed', pending = NULL, lease_expires_at = NULL,
			failed_at = coalesce(ats[width_bucket(x.message_id, ids)], x.failed_at),
			error = left(coalesce(errs[width_bucket(x.message_id, ids)], 'failed on the phone'), 500),
			attempts = CASE WHEN x.status = 'claimed' THEN x.attempts + 1 ELSE x.attempts END
		 WHERE x.account_id = acct AND x.message_id = ANY (ids) AND x.direction = 'out' AND x.phone_id = me
		   AND x.status NOT IN ('delivered', 'failed', 'expired', 'canceled')
		RETURNING x.message_id, x.campaign_id;
	END IF;
END
$$;

-- Reporting, a batch that names a message more than once: what each
-- report does, given the reports (in batch order) and the state of the
-- phone's messages they name (cur_*, locked).  The state before each report
-- is what the reports ahead of it in the batch left, so the answer is the
-- same as applying them one by one.
CREATE FUNCTION eightms.report_steps(ids uuid[], sts text[], errs text[], ats timestamptz[],
									 cur_ids uuid[], cur_statuses text[], cur_given_up boolean[])
RETURNS TABLE (ord bigint, id uuid, st text, err text, at timestamptz, was text, mine boolean, moves boolean)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH rep AS (
		SELECT * FROM unnest(ids, sts, errs, ats) WITH ORDINALITY AS r(id, st, err, at, ord)),
	cur AS (
		SELECT * FROM unnest(cur_ids, cur_statuses, cur_given_up) AS c(message_id, status, given_up)),
	-- What the valid reports ahead of each one in the batch did.
	ahead AS (
		SELECT rep.*, cur.status AS s0, cur.message_id IS NOT NULL AS mine, coalesce(cur.given_up, false) AS given_up,
			   coalesce(bool_or(rep.st = 'sent') OVER w, false) AS sent_ahead,
			   coalesce(bool_or(rep.st = 'delivered') OVER w, false) AS delivered_ahead,
			   (array_agg(rep.st) FILTER (WHERE rep.st IN ('delivered', 'failed')) OVER w)[1] AS final_ahead
		  FROM rep LEFT JOIN cur ON cur.message_id = rep.id
		WINDOW w AS (PARTITION BY rep.id ORDER BY rep.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
	before AS (
		SELECT ahead.*,
			   -- A message given up stays so until a sent or delivered
			   -- report of the phone's takes it back.
			   CASE WHEN s0 IN ('delivered', 'failed', 'expired', 'canceled')
						 AND NOT (given_up AND (sent_ahead OR delivered_ahead)) THEN s0
					WHEN final_ahead IS NOT NULL THEN final_ahead
					WHEN sent_ahead THEN 'sent'
					ELSE s0 END AS was
		  FROM ahead)
	SELECT before.ord, before.id, before.st, before.err, before.at, before.was, before.mine,
		   before.mine AND before.st IN ('sent', 'delivered', 'failed')
		   AND ((before.was NOT IN ('delivered', 'failed', 'expired', 'canceled')
				 AND (before.st = 'failed' OR eightms.status_rank(before.st) > eightms.status_rank(before.was)))
				OR (before.given_up AND before.was = before.s0 AND before.st IN ('sent', 'delivered')))
	  FROM before
	 ORDER BY before.ord
$$;

-- Receiving, a batch's first step: the conversations the batch will write
-- are taken first, in the order send_messages takes them: those that exist
-- with a phone, locked in number order, then the rest, created (or locked)
-- in number order.  Taken one by one in the batch's order, a batch from two
-- senders and a send to both, or another phone's messages from both, could
-- each hold one and wait for the other, and the deadlock aborts one.  Only
-- the senders of items receive_messages will store, so that no
-- conversation is left empty by an item in error or a message stored
-- before.  The upsert writes nothing: every conflicting row is locked all
-- the same, and each message is then counted in one write, as for a
-- single one.
CREATE FUNCTION eightms.lock_senders(acct uuid, me uuid, dev text, region text, messages jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	dmids text[] := ARRAY(SELECT m ->> 'device_message_id' FROM jsonb_array_elements(messages) m);
	stored text[];
	peers text[];
	with_phone text[];
	peer text;
BEGIN
	SELECT array_agg(d.device_message_id) INTO stored FROM eightms.message d
	 WHERE d.account_id = acct AND d.device_id = dev
	   AND d.device_message_id = ANY (dmids);
	peers := ARRAY(
		SELECT DISTINCT coalesce(eightms.try_e164(m ->> 'from', region, false), left(btrim(m ->> 'from'), 32)) COLLATE "C"
		  FROM jsonb_array_elements(messages) m
		 WHERE eightms.inbound_error(m, m ->> 'device_message_id') IS NULL
		   AND NOT coalesce(m ->> 'device_message_id' = ANY (stored), false));
	SELECT array_agg(c.peer_number) INTO with_phone FROM eightms.conversation c
	 WHERE c.account_id = acct AND c.peer_number = ANY (peers) AND c.phone_id IS NOT NULL;
	FOR peer IN
		SELECT u.peer FROM unnest(peers) AS u(peer)
		 ORDER BY coalesce(u.peer = ANY (with_phone), false) DESC, u.peer COLLATE "C"
	LOOP
		INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id)
		VALUES (acct, peer, me)
		ON CONFLICT (account_id, peer_number) DO UPDATE SET phone_id = cv.phone_id WHERE false;
	END LOOP;
END
$$;

-- Receiving, one item's step: the message stored (or found stored: a
-- duplicate), its conversation counting it, and what its body does to
-- consent.  x is an item inbound_error passed.
CREATE FUNCTION eightms.receive_one(acct uuid, me uuid, dev text, region text, x jsonb,
									OUT message_id uuid, OUT duplicate boolean, OUT consent text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	dmid text := x ->> 'device_message_id';
	body text := coalesce(x ->> 'body', '');
	sender text;
	heard timestamptz;
	conv uuid;
	mid uuid;
	i record;
BEGIN
	SELECT m.message_id INTO mid FROM eightms.message m
	 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = dmid;
	IF FOUND THEN
		message_id := mid; duplicate := true;
		RETURN;
	END IF;
	-- Short codes and alphanumeric senders are kept as given.
	sender := coalesce(eightms.try_e164(x ->> 'from', region, false), left(btrim(x ->> 'from'), 32));
	-- When the phone received it, never later than its arrival: a message
	-- uploaded late takes its place in the inbox, and a phone whose clock
	-- runs ahead cannot pin one on top.
	heard := least(coalesce(eightms.json_time(x -> 'received_at'), now()), now());
	-- The conversation, found or created, counts the message at once: one
	-- write of its row (and its lock, held until commit) rather than an
	-- upsert and then an update.  A new message brings an archived
	-- conversation back to the inbox.
	INSERT INTO eightms.conversation AS cv (account_id, peer_number, phone_id, unread_count, last_message_at)
	VALUES (acct, sender, me, 1, heard)
	ON CONFLICT (account_id, peer_number) DO UPDATE
		SET phone_id = coalesce(cv.phone_id, EXCLUDED.phone_id), unread_count = cv.unread_count + 1,
			last_message_at = greatest(cv.last_message_at, EXCLUDED.last_message_at), archived_at = NULL
	RETURNING cv.conversation_id INTO conv;
	i := eightms.sms_info(body);
	INSERT INTO eightms.message AS m (account_id, conversation_id, direction, phone_id, peer_number, body,
									  encoding, segments, status, device_message_id, received_at, device_id)
	VALUES (acct, conv, 'in', me, sender, body, i.encoding, i.segments, 'received', dmid, heard, dev)
	ON CONFLICT (account_id, device_id, device_message_id) WHERE device_message_id IS NOT NULL DO NOTHING
	RETURNING m.message_id INTO mid;
	IF mid IS NULL THEN
		-- Stored meanwhile by a concurrent call (the check above missed
		-- it): not counted twice.  The conversation row is locked by the
		-- upsert, so nothing came between.
		UPDATE eightms.conversation c SET unread_count = c.unread_count - 1
		 WHERE c.account_id = acct AND c.conversation_id = conv;
		duplicate := true;
		SELECT m.message_id INTO message_id FROM eightms.message m
		 WHERE m.account_id = acct AND m.device_id = dev AND m.device_message_id = dmid;
		RETURN;
	END IF;
	message_id := mid; duplicate := false;
	-- STOP, START, HELP and unclear replies (sql/consent.sql).
	consent := eightms.apply_consent(acct, conv, me, sender, mid, x ->> 'body');
	PERFORM pg_notify('eightms_inbound', json_build_object('account_id', acct, 'message_id', mid)::text);
END
$$;

-- SECURITY DEFINER: it alone (with pair_phone) revokes device tokens;
-- every statement names the current account.
CREATE OR REPLACE FUNCTION eightms_api.unpair_phone(phone_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	convs uuid[];
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	UPDATE eightms.phone p SET unpaired_at = now(), token_version = p.token_version + 1
	 WHERE p.account_id = eightms.current_account_id() AND p.phone_id = unpair_phone.phone_id
	   AND p.unpaired_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no paired phone %', unpair_phone.phone_id USING ERRCODE = 'P0002';
	END IF;
	-- Its queued work goes back to the account's other phones.
	UPDATE eightms.message m SET phone_id = NULL
	 WHERE m.account_id = eightms.current_account_id() AND m.phone_id = unpair_phone.phone_id
	   AND m.pending AND m.status = 'queued';
	-- Its conversations lose it too: it will not be back (pairing again
	-- makes a new phone), and a conversation without a phone gets the
	-- healthiest one with its next message, instead of queuing it on this
	-- one for the next claim to move.
	convs := ARRAY(SELECT eightms.lock_phone_conversations(eightms.current_account_id(), unpair_phone.phone_id));
	UPDATE eightms.conversation c SET phone_id = NULL
	 WHERE c.account_id = eightms.current_account_id() AND c.conversation_id = ANY (convs);
END
$$;

REVOKE ALL ON FUNCTION eightms.expire_account_messages(uuid), eightms.move_offline_queues(uuid, boolean),
	eightms.lock_due_messages(uuid, uuid, boolean, integer, timestamptz),
	eightms.claim_fates(uuid, text[], timestamptz[], timestamptz[], text[], integer[], timestamptz),
	eightms.settle_claims(uuid, uuid, uuid[], tid[], text[], timestamptz),
	eightms.give_conversations_phone(uuid, uuid, uuid[]),
	eightms.apply_reports(uuid, uuid, text, uuid[], timestamptz[], text[]),
	eightms.report_steps(uuid[], text[], text[], timestamptz[], uuid[], text[], boolean[]),
	eightms.lock_senders(uuid, uuid, text, text, jsonb), eightms.receive_one(uuid, uuid, text, text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eightms.lock_due_messages(uuid, uuid, boolean, integer, timestamptz),
	eightms.claim_fates(uuid, text[], timestamptz[], timestamptz[], text[], integer[], timestamptz),
	eightms.settle_claims(uuid, uuid, uuid[], tid[], text[], timestamptz),
	eightms.give_conversations_phone(uuid, uuid, uuid[]),
	eightms.apply_reports(uuid, uuid, text, uuid[], timestamptz[], text[]),
	eightms.report_steps(uuid[], text[], text[], timestamptz[], uuid[], text[], boolean[]),
	eightms.lock_senders(uuid, uuid, text, text, jsonb), eightms.receive_one(uuid, uuid, text, text, jsonb)
TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.expire_account_messages(uuid), eightms.move_offline_queues(uuid, boolean)
TO eightms_user, eightms_phone, eightms_dba;

-- ==== Citus: consent and the member check name the account by value
-- The clock and the account are read before the statements that use them,
-- so Citus routes each to the account's shard (doc/scale-out.md).
-- Raise unless the caller holds one of the given roles in the current account.
CREATE OR REPLACE FUNCTION eightms.require_member_role(VARIADIC allowed text[]) RETURNS text
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

-- ==== Citus: a removed member's sessions, on the coordinator
CREATE OR REPLACE FUNCTION eightms_api.remove_member(user_id text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me			text := eightms.require_user();
	acct		uuid := eightms.require_account();
	mine		text := eightms.current_member_role();
	their_role	text;
BEGIN
	PERFORM FROM eightms.member m WHERE m.account_id = acct AND m.role = 'owner' FOR UPDATE;
	SELECT m.role INTO their_role FROM eightms.member m
	 WHERE m.account_id = acct AND m.user_id = remove_member.user_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no member % in this account', left(remove_member.user_id, 100)
			USING ERRCODE = 'P0002';
	END IF;
	IF remove_member.user_id <> me AND NOT (mine = 'owner' OR (mine = 'admin' AND their_role = 'agent')) THEN
		RAISE EXCEPTION 'you cannot remove a member with the % role', their_role
			USING ERRCODE = '42501',
				  HINT = 'Owners remove anyone; admins remove agents.';
	END IF;
	IF their_role = 'owner'
	   AND (SELECT count(*) FROM eightms.member m WHERE m.account_id = acct AND m.role = 'owner') = 1 THEN
		RAISE EXCEPTION 'an account must keep at least one owner'
			USING ERRCODE = '23514',
				  HINT = 'Make another member an owner first, or delete the account.';
	END IF;
	DELETE FROM eightms.member m WHERE m.account_id = acct AND m.user_id = remove_member.user_id;
	-- The member's sessions go too: on one server the member trigger does
	-- it, on Citus (where sessions are the coordinator's) this call.
	PERFORM eightms.forget_sessions(acct, remove_member.user_id);
END
$$;

-- ==== Citus: upgrades on a cluster
-- An upgrade script's step on an existing table (doc/developing.md, "An
-- upgrade script section"): ALTER TABLE, CREATE INDEX, a policy, a grant
-- on it, or a data change.  On Citus the update script runs on every node,
-- and a statement written in it directly fails on a cluster already
-- distributed: Citus re-sends a DDL statement's text to the workers, which
-- inside a script is the whole script, and a worker cannot run a
-- distributed query inside the update.  Run through here, the statement is
-- its own text (Citus sends that one statement to the shell tables and
-- shards), and it runs only where the table is this node's own: a single
-- server, the coordinator, or a table Citus has not placed; a worker's copy
-- of a distributed or reference table gets the coordinator's change from
-- Citus instead.  Superuser only, as the update is.
CREATE FUNCTION eightms.upgrade_step(target regclass, statement text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'eightms.upgrade_step() must be run by a superuser'
			USING ERRCODE = '42501',
				  HINT = 'It is for the extension''s upgrade scripts, which ALTER EXTENSION eightms UPDATE runs.';
	END IF;
	IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
		IF (SELECT g.groupid FROM pg_dist_local_group g) <> 0
		   AND EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = target) THEN
			RETURN false;
		END IF;
	END IF;
	EXECUTE statement;
	RETURN true;
END
$$;
COMMENT ON FUNCTION eightms.upgrade_step(regclass, text) IS
	'For upgrade scripts, as a superuser: run one statement on an existing table (schema or data) where the table is this node''s own, skip it on a Citus worker''s copy of a distributed or reference table, which Citus updates from the coordinator; true when run';
REVOKE ALL ON FUNCTION eightms.upgrade_step(regclass, text) FROM PUBLIC;

-- ==== Citus: TRUNCATE of the conversations
-- The trigger that empties the messages with the conversations also fires
-- on each of conversation's shards on Citus; only the table's own truncates
-- the messages (the shards' would deadlock).
CREATE OR REPLACE FUNCTION eightms.truncate_conversation_messages() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- On the conversations only: on Citus the trigger also fires on each
	-- shard, where it would empty every account's messages from each of
	-- them at once, and the shards' truncates deadlock.
	IF TG_RELID = 'eightms.conversation'::regclass THEN
		TRUNCATE eightms.message;
	END IF;
	RETURN NULL;
END
$$;

-- ==== contacts
-- Contacts with custom fields, their API, and the opt-out list managed by
-- members (sql/contacts.sql, doc/contacts.md).  pg_trgm is required from
-- 0.2.0 on: CREATE EXTENSION pg_trgm before ALTER EXTENSION eightms UPDATE.

-- A change of consent made by hand: who and why (sql/gateway_tables.sql).
ALTER TABLE eightms.consent_event
	ADD COLUMN changed_by text,
	ADD COLUMN reason text;
CREATE INDEX consent_event_number_idx ON eightms.consent_event (account_id, number, at);
COMMENT ON COLUMN eightms.consent_event.changed_by IS 'The user id of the member who made the change by hand (add_opt_out, remove_opt_out), else NULL';
COMMENT ON COLUMN eightms.consent_event.reason IS 'Why a member made the change by hand, as they wrote it';
INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('consent_event', 'changed_by', 'personal', 'member', 'consent_event', 'user id of the member who made the change by hand'),
	('consent_event', 'reason', 'content', 'contact', 'consent_event', 'why a member made the change, as written');

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

REVOKE ALL ON FUNCTION eightms.contact_search_text(text, text, text, text, text), eightms.contact_sort_name(text, text), eightms.contact_email_ok(text),
	eightms.custom_value_ok(text, text[], jsonb), eightms.contact_custom(uuid, jsonb, jsonb),
	eightms.contact_text(jsonb, text, integer), eightms.contact_apply(uuid, eightms.contact, jsonb),
	eightms.contact_rows(uuid, text, text, text, integer, text, text, text, text[], text[], text, uuid, boolean),
	eightms.contact_custom_filter(uuid, jsonb), eightms.member_number(uuid, text),
	eightms.member_consent(uuid, text, text, text),
	eightms_api.create_contact(jsonb), eightms_api.update_contact(uuid, jsonb),
	eightms_api.delete_contact(uuid), eightms_api.delete_contacts(uuid[]), eightms_api.delete_all_contacts(bigint),
	eightms_api.contact_count(), eightms_api.get_contact(uuid),
	eightms_api.contacts(text, text[], text[], jsonb, boolean, text, boolean, text, integer),
	eightms_api.set_contact_field(text, text, text[]), eightms_api.drop_contact_field(text),
	eightms_api.contact_fields(),
	eightms_api.add_opt_out(text, text), eightms_api.remove_opt_out(text, text),
	eightms_api.opt_outs(timestamptz, text, integer)
FROM PUBLIC;
REVOKE ALL ON eightms.contact, eightms.contact_field FROM PUBLIC;

-- ==== campaigns: tables (sql/campaigns.sql)

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

ALTER TABLE eightms.message ADD COLUMN campaign_id uuid;
ALTER TABLE eightms.message ADD COLUMN window_closes_at timestamptz;
-- The campaigns job: campaign messages still waiting when their window
-- closed.  Only campaign messages have an entry.
CREATE INDEX message_window_idx ON eightms.message (account_id, window_closes_at)
	WHERE pending AND window_closes_at IS NOT NULL;
INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('message', 'campaign_id', 'operational', 'contact', 'account_lifetime', 'the campaign it was sent for'),
	('message', 'window_closes_at', 'operational', 'contact', 'account_lifetime', 'send window');

-- ==== time zone names read once per backend (src/util/tz_name.c)
-- The check ran pg_timezone_names, which loads every zone file, for each
-- row written: an import of contacts with zones spent minutes in it.
CREATE OR REPLACE FUNCTION eightms.is_timezone_name(tz text) RETURNS boolean
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'eightms_is_timezone_name';
COMMENT ON FUNCTION eightms.is_timezone_name(text) IS
	'Whether a text is exactly a name pg_timezone_names lists (src/util/tz_name.c reads them once per backend)';
-- ==== templates
-- An account's message templates, checked when saved and rendered in C
-- (sql/templates.sql, src/template/, doc/contacts.md "Templates").

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
REVOKE ALL ON FUNCTION eightms.render_template(text, text, text, text, jsonb), eightms.template_fields(text),
	eightms.template_check(uuid, text), eightms.template_preview(text, boolean),
	eightms_api.save_template(text, text), eightms_api.templates(),
	eightms_api.get_template(text), eightms_api.delete_template(text),
	eightms_api.preview_template(text, uuid[], integer)
FROM PUBLIC;
REVOKE ALL ON eightms.message_template FROM PUBLIC;

-- ==== contacts in the inbox
-- Conversations name the account's contact with their number
-- (list_conversations, dropped and created again above, in "gateway
-- fixes"), and an account option makes a contact of an inbound message's
-- unknown sender (receive_messages, above; sql/contacts.sql).

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
REVOKE ALL ON FUNCTION eightms_api.set_contact_options(boolean), eightms.inbound_contacts(uuid, text[]) FROM PUBLIC;

-- ==== contact import and export
-- Importing contacts from CSV or JSON, in one call or as a job of chunks,
-- and exporting them (sql/contacts_import.sql, doc/contacts.md).

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

REVOKE ALL ON FUNCTION eightms.csv_rows(bytea, text), eightms.csv_line_ends(bytea), eightms.csv_line(text[], text),
	eightms.contact_import_apply(uuid, text, eightms.contact_import_row[]),
	eightms.custom_value_from_text(text, text), eightms.contact_import_columns(uuid, text[], jsonb),
	eightms.contact_import_size(bigint),
	eightms.contact_import_csv(uuid, bytea, jsonb, text, text, text[], bigint),
	eightms.contact_import_open(uuid, uuid),
	eightms_api.import_contacts_csv(text, jsonb, text, text), eightms_api.import_contacts(jsonb, text),
	eightms_api.contact_import(uuid), eightms_api.start_contact_import(jsonb, text, text),
	eightms_api.add_contact_import_chunk(uuid, integer, text), eightms_api.finish_contact_import(uuid, boolean),
	eightms_api.export_contacts_json(text, text[], text[], jsonb, boolean),
	eightms_api.export_contacts_csv(text, text[], text[], jsonb, boolean, text, text)
FROM PUBLIC;
REVOKE ALL ON eightms.contact_import, eightms.contact_import_rejection FROM PUBLIC;

-- ==== campaigns
-- Send windows, the campaigns API, the fan-out and the campaigns job
-- (sql/campaigns.sql); the claim skips campaign messages whose window has
-- closed (lock_due_messages, edited in place above) and insert_outbound
-- takes a campaign's values (edited in place above).

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

REVOKE ALL ON ALL ROUTINES IN SCHEMA eightms FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA eightms_api FROM PUBLIC;

-- ==== campaign stats and attribution (sql/campaign_stats.sql)

-- An account option: how long after a campaign's message reached a number
-- a reply or an opt-out from that number counts for the campaign.  Last in
-- the table: an upgrade appends it.
ALTER TABLE eightms.account
	ADD COLUMN attribution_window interval NOT NULL DEFAULT '72 hours'
		CONSTRAINT account_attribution_window_check
			CHECK (attribution_window BETWEEN interval '1 hour' AND interval '30 days');
COMMENT ON COLUMN eightms.account.attribution_window IS
	'A reply or opt-out counts for the campaign whose message reached the number last within this long (1 hour to 30 days)';

CREATE TABLE eightms.campaign_counter (
	account_id	uuid NOT NULL,
	campaign_id	uuid NOT NULL,
	slot		smallint NOT NULL
		CONSTRAINT campaign_counter_slot_check CHECK (slot BETWEEN 0 AND 15),
	-- Recipients by their state now.
	recipients	bigint NOT NULL DEFAULT 0,
	waiting		bigint NOT NULL DEFAULT 0,
	queued		bigint NOT NULL DEFAULT 0,
	sent		bigint NOT NULL DEFAULT 0,
	delivered	bigint NOT NULL DEFAULT 0,
	failed		bigint NOT NULL DEFAULT 0,
	expired		bigint NOT NULL DEFAULT 0,
	canceled	bigint NOT NULL DEFAULT 0,
	-- Recipients whose message went out (reached_at set), replied, opted out.
	reached		bigint NOT NULL DEFAULT 0,
	replied		bigint NOT NULL DEFAULT 0,
	opted_out	bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (account_id, campaign_id, slot),
	FOREIGN KEY (account_id, campaign_id) REFERENCES eightms.campaign (account_id, campaign_id) ON DELETE CASCADE
);
COMMENT ON TABLE eightms.campaign_counter IS
	'A campaign''s recipients counted by state, reached, replied and opted out, in slots summed when read';
SELECT pg_catalog.pg_extension_config_dump('eightms.campaign_counter', '');
ALTER TABLE eightms.campaign_counter ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.campaign_counter FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON eightms.campaign_counter
	USING (account_id = eightms.current_account_id())
	WITH CHECK (account_id = eightms.current_account_id());
-- The gateway's functions run as their caller (a phone, a member): they
-- move recipients and count them under row-level security.
GRANT SELECT ON eightms.campaign_counter TO eightms_user, eightms_phone;
GRANT INSERT, UPDATE ON eightms.campaign_counter TO eightms_user, eightms_phone;
GRANT SELECT ON eightms.campaign_recipient TO eightms_phone;
GRANT UPDATE (state, reached_at, replied_at, opted_out_at) ON eightms.campaign_recipient TO eightms_user, eightms_phone;

INSERT INTO eightms.data_column (table_name, column_name, class, subject, retention, reason) VALUES
	('account', 'attribution_window', 'operational', 'account', 'account_lifetime', 'setting'),
	('campaign_counter', 'account_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'campaign_id', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'slot', 'operational', 'account', 'account_lifetime', 'key'),
	('campaign_counter', 'recipients', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'waiting', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'queued', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'sent', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'delivered', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'failed', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'expired', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'canceled', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'reached', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'replied', 'operational', 'account', 'account_lifetime', 'count'),
	('campaign_counter', 'opted_out', 'operational', 'account', 'account_lifetime', 'count');

-- A recipient's state moves forward only: waiting, queued, sent, then one
-- end.  The one move back is a message the gateway gave up (expired,
-- canceled, failed for want of a report: eightms.given_up) that its phone
-- then reports sent or delivered: it went out, and the recipient follows.
-- A message cannot leave any other end (sql/gateway_claim.sql), so that
-- move is allowed from every end but delivered.  Inlined.
CREATE FUNCTION eightms.recipient_moves(was text, becomes text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN was IN ('failed', 'expired', 'canceled') THEN becomes IN ('sent', 'delivered')
				WHEN was = 'delivered' THEN false
				WHEN was = 'sent' THEN becomes IN ('delivered', 'failed')
				WHEN was = 'queued' THEN becomes IN ('sent', 'delivered', 'failed', 'expired', 'canceled')
				WHEN was = 'waiting' THEN becomes IN ('queued', 'sent', 'delivered', 'failed', 'expired', 'canceled')
				ELSE false END
$$;

-- Count moves of recipients, one element each: its campaign, the state it
-- had (NULL: a new recipient) and has now (NULL: removed), and 1 where it
-- was reached, replied or opted out by this move.  One write per campaign,
-- into this backend's slot, campaigns in id order (two transactions take
-- their rows in the same order).  The fan-out counts its new recipients
-- here (becomes 'waiting'), the release its waiting ones queued.
CREATE FUNCTION eightms.count_recipient_moves(acct uuid, camps uuid[], was text[], becomes text[],
											  reached integer[] DEFAULT NULL, replied integer[] DEFAULT NULL,
											  opted integer[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	my_slot smallint := (pg_backend_pid() % 16)::smallint;
	d record;
BEGIN
	-- One upsert of VALUES per campaign (an INSERT ... SELECT is no
	-- single-shard statement for Citus).
	FOR d IN
		SELECT u.camp,
			   count(*) FILTER (WHERE u.was IS NULL AND u.becomes IS NOT NULL)
				 - count(*) FILTER (WHERE u.was IS NOT NULL AND u.becomes IS NULL) AS recipients,
			   count(*) FILTER (WHERE u.becomes = 'waiting') - count(*) FILTER (WHERE u.was = 'waiting') AS waiting,
			   count(*) FILTER (WHERE u.becomes = 'queued') - count(*) FILTER (WHERE u.was = 'queued') AS queued,
			   count(*) FILTER (WHERE u.becomes = 'sent') - count(*) FILTER (WHERE u.was = 'sent') AS sent,
			   count(*) FILTER (WHERE u.becomes = 'delivered') - count(*) FILTER (WHERE u.was = 'delivered') AS delivered,
			   count(*) FILTER (WHERE u.becomes = 'failed') - count(*) FILTER (WHERE u.was = 'failed') AS failed,
			   count(*) FILTER (WHERE u.becomes = 'expired') - count(*) FILTER (WHERE u.was = 'expired') AS expired,
			   count(*) FILTER (WHERE u.becomes = 'canceled') - count(*) FILTER (WHERE u.was = 'canceled') AS canceled,
			   coalesce(sum(u.reached), 0) AS reached, coalesce(sum(u.replied), 0) AS replied,
			   coalesce(sum(u.opted), 0) AS opted
		  FROM unnest(camps, was, becomes, reached, replied, opted) AS u(camp, was, becomes, reached, replied, opted)
		 WHERE u.camp IS NOT NULL
		 GROUP BY u.camp
		 ORDER BY u.camp
	LOOP
		INSERT INTO eightms.campaign_counter AS c
			(account_id, campaign_id, slot, recipients, waiting, queued, sent, delivered, failed, expired, canceled,
			 reached, replied, opted_out)
		VALUES (acct, d.camp, my_slot, d.recipients, d.waiting, d.queued, d.sent, d.delivered,
				d.failed, d.expired, d.canceled, d.reached, d.replied, d.opted)
		ON CONFLICT (account_id, campaign_id, slot) DO UPDATE
		   SET recipients = c.recipients + EXCLUDED.recipients, waiting = c.waiting + EXCLUDED.waiting,
			   queued = c.queued + EXCLUDED.queued, sent = c.sent + EXCLUDED.sent,
			   delivered = c.delivered + EXCLUDED.delivered, failed = c.failed + EXCLUDED.failed,
			   expired = c.expired + EXCLUDED.expired, canceled = c.canceled + EXCLUDED.canceled,
			   reached = c.reached + EXCLUDED.reached, replied = c.replied + EXCLUDED.replied,
			   opted_out = c.opted_out + EXCLUDED.opted_out;
	END LOOP;
END
$$;

-- The recipients of these messages (those of a campaign; the others are
-- skipped) take their message's state, where that is a move forward
-- (recipient_moves); reached_at is set when it is first sent (its
-- message's sent_at).  Called by
-- the gateway's functions after they moved messages, with the ids of the
-- campaign messages among them only.  The recipients are locked in key
-- order first and read, so that each move is counted from the state it
-- left.  As its caller: row-level security holds.
CREATE FUNCTION eightms.follow_campaign_messages(acct uuid, ids uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	t_now timestamptz := now();
	camps uuid[];
	phones text[];
	mids uuid[];
	sts text[];
	sents timestamptz[];
	was text[];
	becomes text[];
	reached integer[];
	at timestamptz[];
BEGIN
	-- The messages in id order: each recipient finds its own by a binary
	-- search (width_bucket), as apply_reports does, with no join.
	SELECT array_agg(m.campaign_id ORDER BY m.message_id), array_agg(m.peer_number ORDER BY m.message_id),
		   array_agg(m.message_id ORDER BY m.message_id),
		   array_agg(CASE WHEN m.status IN ('queued', 'claimed') THEN 'queued' ELSE m.status END ORDER BY m.message_id),
		   array_agg(m.sent_at ORDER BY m.message_id)
	  INTO camps, phones, mids, sts, sents
	  FROM eightms.message m
	 WHERE m.account_id = acct AND m.message_id = ANY (ids) AND m.campaign_id IS NOT NULL;
	IF camps IS NULL THEN
		RETURN;
	END IF;
	PERFORM FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.phone = ANY (phones) AND r.message_id = ANY (mids)
	 ORDER BY r.campaign_id, r.phone
	   FOR NO KEY UPDATE;
	-- One table, no subquery: Citus plans a generic plan of nothing else.
	SELECT array_agg(r.campaign_id ORDER BY r.message_id), array_agg(r.message_id ORDER BY r.message_id),
		   array_agg(r.state ORDER BY r.message_id),
		   array_agg(sts[width_bucket(r.message_id, mids)] ORDER BY r.message_id),
		   array_agg(CASE WHEN r.reached_at IS NULL
							   AND (sts[width_bucket(r.message_id, mids)] IN ('sent', 'delivered')
									OR sents[width_bucket(r.message_id, mids)] IS NOT NULL)
						  THEN 1 ELSE 0 END ORDER BY r.message_id),
		   -- A message sent and then failed (one batch reported both) was
		   -- sent all the same.
		   array_agg(CASE WHEN sts[width_bucket(r.message_id, mids)] IN ('sent', 'delivered')
						  THEN coalesce(r.reached_at, sents[width_bucket(r.message_id, mids)], t_now)
						  ELSE coalesce(r.reached_at, sents[width_bucket(r.message_id, mids)]) END ORDER BY r.message_id)
	  INTO camps, mids, was, becomes, reached, at
	  FROM eightms.campaign_recipient r
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.phone = ANY (phones) AND r.message_id = ANY (mids)
	   AND eightms.recipient_moves(r.state, sts[width_bucket(r.message_id, mids)]);
	IF camps IS NULL THEN
		RETURN;
	END IF;
	-- The moving ones, in message id order; each set from its own element,
	-- inside coalesce (Citus takes a bare array element for an assignment
	-- to an element: sql/gateway_claim.sql, apply_reports).
	UPDATE eightms.campaign_recipient r
	   SET state = coalesce(becomes[width_bucket(r.message_id, mids)], r.state),
		   reached_at = coalesce(r.reached_at, at[width_bucket(r.message_id, mids)])
	 WHERE r.account_id = acct AND r.campaign_id = ANY (camps) AND r.message_id = ANY (mids);
	PERFORM eightms.count_recipient_moves(acct, camps, was, becomes, reached);
END
$$;

-- Replies and opt-outs from these numbers (peers, each with when it came:
-- ats; opted: an opt-out, else a reply), each attributed to the campaign
-- whose message reached the number last within the account's attribution
-- window before it, by the index campaign_recipient_reached_idx.  A
-- recipient's first reply and first opt-out are kept, and counted once.
CREATE FUNCTION eightms.attribute_answers(acct uuid, peers text[], ats timestamptz[], opted boolean[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	win interval;
	a record;
	camp uuid;
	rep uuid[];
	opt uuid[];
BEGIN
	SELECT x.attribution_window INTO win FROM eightms.account x WHERE x.account_id = acct;
	-- Each number's first reply and first opt-out of the batch, then its
	-- campaign by one probe of the index, then its recipient by key: every
	-- statement on one table, for Citus.
	FOR a IN
		SELECT u.peer, min(u.at) FILTER (WHERE NOT u.opt) AS replied, min(u.at) FILTER (WHERE u.opt) AS opted
		  FROM unnest(peers, ats, opted) AS u(peer, at, opt)
		 WHERE u.peer IS NOT NULL AND u.at IS NOT NULL
		 GROUP BY u.peer
		 ORDER BY u.peer
	LOOP
		SELECT r.campaign_id INTO camp FROM eightms.campaign_recipient r
		 WHERE r.account_id = acct AND r.phone = a.peer AND r.reached_at IS NOT NULL
		   AND r.reached_at <= least(a.replied, a.opted) AND r.reached_at > least(a.replied, a.opted) - win
		 ORDER BY r.reached_at DESC
		 LIMIT 1;
		CONTINUE WHEN NOT FOUND;
		IF a.replied IS NOT NULL THEN
			UPDATE eightms.campaign_recipient r SET replied_at = a.replied
			 WHERE r.account_id = acct AND r.campaign_id = camp AND r.phone = a.peer AND r.replied_at IS NULL;
			IF FOUND THEN
				rep := rep || camp;
			END IF;
		END IF;
		IF a.opted IS NOT NULL THEN
			UPDATE eightms.campaign_recipient r SET opted_out_at = a.opted
			 WHERE r.account_id = acct AND r.campaign_id = camp AND r.phone = a.peer AND r.opted_out_at IS NULL;
			IF FOUND THEN
				opt := opt || camp;
			END IF;
		END IF;
	END LOOP;
	IF rep IS NOT NULL OR opt IS NOT NULL THEN
		PERFORM eightms.count_recipient_moves(acct, coalesce(rep, '{}') || coalesce(opt, '{}'), NULL, NULL, NULL,
			array_fill(1, ARRAY[coalesce(cardinality(rep), 0)]) || array_fill(0, ARRAY[coalesce(cardinality(opt), 0)]),
			array_fill(0, ARRAY[coalesce(cardinality(rep), 0)]) || array_fill(1, ARRAY[coalesce(cardinality(opt), 0)]));
	END IF;
END
$$;

-- ------------------------------------------------------------ API

-- The stats of campaigns of the caller's account: the given ones, or all,
-- newest first.  Sums of the counters (at most 16 rows a campaign), never
-- a scan of the recipients.  sent counts the recipients whose message went
-- out (delivered, or failed after it was sent, included).
CREATE FUNCTION eightms_api.campaigns_stats(campaign_ids uuid[] DEFAULT NULL)
RETURNS TABLE (campaign_id uuid, name text, state text, recipients bigint, waiting bigint, queued bigint,
			   sent bigint, delivered bigint, failed bigint, expired bigint, canceled bigint, replied bigint,
			   opted_out bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid := eightms.require_account();
BEGIN
	IF cardinality(campaign_ids) > 1000 THEN
		RAISE EXCEPTION 'campaign_ids must be at most 1000 ids' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT c.campaign_id, c.name, c.state,
		   coalesce(s.recipients, 0), coalesce(s.waiting, 0), coalesce(s.queued, 0), coalesce(s.reached, 0),
		   coalesce(s.delivered, 0), coalesce(s.failed, 0), coalesce(s.expired, 0), coalesce(s.canceled, 0),
		   coalesce(s.replied, 0), coalesce(s.opted_out, 0)
	  FROM eightms.campaign c
	  LEFT JOIN LATERAL (
		SELECT sum(k.recipients)::bigint AS recipients, sum(k.waiting)::bigint AS waiting,
			   sum(k.queued)::bigint AS queued, sum(k.reached)::bigint AS reached,
			   sum(k.delivered)::bigint AS delivered, sum(k.failed)::bigint AS failed,
			   sum(k.expired)::bigint AS expired, sum(k.canceled)::bigint AS canceled,
			   sum(k.replied)::bigint AS replied, sum(k.opted_out)::bigint AS opted_out
		  FROM eightms.campaign_counter k
		 WHERE k.account_id = acct AND k.campaign_id = c.campaign_id) s ON true
	 WHERE c.account_id = acct AND (campaign_ids IS NULL OR c.campaign_id = ANY (campaign_ids))
	 ORDER BY c.created_at DESC, c.campaign_id DESC;
END
$$;
COMMENT ON FUNCTION eightms_api.campaigns_stats(uuid[]) IS
	'Stats of the account''s campaigns (the given ones, or all): recipients by state, sent, replied, opted out';

CREATE FUNCTION eightms_api.campaign_stats(campaign uuid)
RETURNS TABLE (campaign_id uuid, name text, state text, recipients bigint, waiting bigint, queued bigint,
			   sent bigint, delivered bigint, failed bigint, expired bigint, canceled bigint, replied bigint,
			   opted_out bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY SELECT * FROM eightms_api.campaigns_stats(ARRAY[campaign_stats.campaign]);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such campaign in this account' USING ERRCODE = 'P0002',
			HINT = 'campaigns_stats() lists the account''s campaigns.';
	END IF;
END
$$;
COMMENT ON FUNCTION eightms_api.campaign_stats(uuid) IS
	'One campaign''s stats: recipients by state, sent, replied, opted out, each recipient counted once';

-- The attribution window (owner, admin), as set_message_options sets the
-- account's sending options.
CREATE FUNCTION eightms_api.set_attribution_window(attribution_window interval) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	IF attribution_window IS NULL OR attribution_window NOT BETWEEN interval '1 hour' AND interval '30 days' THEN
		RAISE EXCEPTION 'attribution_window must be 1 hour to 30 days' USING ERRCODE = '22023',
			HINT = 'Replies and opt-outs count for the campaign that reached the number last within this long.';
	END IF;
	UPDATE eightms.account a SET attribution_window = set_attribution_window.attribution_window
	 WHERE a.account_id = eightms.current_account_id();
END
$$;
COMMENT ON FUNCTION eightms_api.set_attribution_window(interval) IS
	'Set how long after a campaign reached a number its replies and opt-outs count for it (owner, admin)';

GRANT EXECUTE ON FUNCTION eightms_api.campaigns_stats(uuid[]), eightms_api.campaign_stats(uuid),
	eightms_api.set_attribution_window(interval)
TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms.recipient_moves(text, text),
	eightms.count_recipient_moves(uuid, uuid[], text[], text[], integer[], integer[], integer[]),
	eightms.follow_campaign_messages(uuid, uuid[]), eightms.attribute_answers(uuid, text[], timestamptz[], boolean[])
TO eightms_user, eightms_phone;
REVOKE ALL ON FUNCTION eightms.recipient_moves(text, text),
	eightms.count_recipient_moves(uuid, uuid[], text[], text[], integer[], integer[], integer[]),
	eightms.follow_campaign_messages(uuid, uuid[]), eightms.attribute_answers(uuid, text[], timestamptz[], boolean[]),
	eightms_api.campaigns_stats(uuid[]), eightms_api.campaign_stats(uuid), eightms_api.set_attribution_window(interval)
FROM PUBLIC;
REVOKE ALL ON eightms.campaign_counter FROM PUBLIC;

-- ==== campaigns: the fan-out, the release and a cancel counted in the stats
REVOKE ALL ON FUNCTION eightms.count_campaign_moves(uuid, uuid, text, text, bigint) FROM PUBLIC;
