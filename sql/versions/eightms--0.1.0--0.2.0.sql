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
