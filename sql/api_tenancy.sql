-- api_tenancy.sql: the account API PostgREST exposes, and its pre-request hook.
--
-- Functions run as the caller (SECURITY INVOKER) so that row-level security
-- is what keeps tenants apart.  The few that must look across accounts
-- (the pre-request hook, creating an account, accepting an invitation,
-- listing the caller's own accounts, signing out) are SECURITY DEFINER, pin
-- search_path and filter by the caller's identity themselves.

CREATE VIEW eightms_api.profile WITH (security_invoker = true) AS
	SELECT account_id, company_name, display_name, timezone, default_region,
		   status, created_at, updated_at
	  FROM eightms.account;
COMMENT ON VIEW eightms_api.profile IS 'The business profile of the account the request acts on';

CREATE VIEW eightms_api.members WITH (security_invoker = true) AS
	SELECT account_id, user_id, email, role, invited_by, created_at
	  FROM eightms.member;
COMMENT ON VIEW eightms_api.members IS 'Members of the account the request acts on';

CREATE VIEW eightms_api.invitations WITH (security_invoker = true) AS
	SELECT account_id, invitation_id, email, role, invited_by, created_at,
		   expires_at, accepted_at, accepted_by, revoked_at
	  FROM eightms.invitation;
COMMENT ON VIEW eightms_api.invitations IS 'Invitations of the account the request acts on (never their tokens)';

GRANT SELECT ON eightms_api.profile TO eightms_user, eightms_phone;
GRANT SELECT ON eightms_api.members, eightms_api.invitations TO eightms_user;

-- The request acts on an account (the caller must already have been
-- checked as its member): bind it to the verified claims that
-- eightms.current_account_id() reads (binding also relays them to Citus
-- nodes: src/auth/claims.c), and re-issue request.jwt.claims with it for
-- anything that reads the setting.  No SET clause: every caller pins
-- search_path, and every name here is qualified.
CREATE FUNCTION eightms.act_on_account(acct uuid, member_role text) RETURNS void
LANGUAGE sql VOLATILE
AS $$
	SELECT pg_catalog.set_config('request.jwt.claims', eightms.bind_account(acct, member_role)::text, true);
$$;

-- The one refusal of an account that is not active (suspended or
-- disabled): the pre-request hook's for a dashboard user, and that of the
-- calls that reach an account without the hook having chosen it (accepting
-- an invitation, pairing a phone), so that a client sees one error for it.
-- A NULL status (no account) passes.
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

-- For a call that writes into an account the pre-request hook did not
-- check (the invitation or pairing code names it): refuse it unless the
-- account is active.  FOR SHARE holds the status until the call commits, so
-- a suspension either waits for it or is seen by it.
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

-- PostgREST db-pre-request: runs at the start of every request, after the
-- role and headers are set.  It verifies the bearer token of the request's
-- Authorization header itself (request.headers; HS256 with the server's
-- secret, or RS256 / ES256 with eightms.jwt_public_key_file), requires its
-- role to be the role the request runs as (no token: eightms_anon only),
-- and binds the verified claims to the transaction and role; that binding,
-- never request.jwt.claims, is what eightms.current_account_id() and
-- eightms.jwt_claims() read.  Then it decides which account the request
-- acts on, refuses disabled accounts, revoked device tokens and signed-out
-- sessions, and binds the checked account (re-issuing the claims, with SET
-- LOCAL where Citus needs it; see doc/architecture.md).  In C (src/auth/pre_request.c)
-- for a phone's requests, most of them; a dashboard user's and an
-- anonymous caller's go on to the function below.
CREATE FUNCTION eightms_api.pre_request() RETURNS void
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'eightms_pre_request';

-- The account of a user who belongs to exactly one, and their role there;
-- NULLs otherwise.  By user, so on Citus every shard of member is asked
-- (the X-Eightms-Account header, or an account_id claim, makes a request
-- single-shard).  Not under its caller's force_generic_plan: Citus cannot
-- plan a multi-shard statement with parameters generically, and left to
-- choose, the plan cache keeps a generic plan on one server and a custom
-- one on Citus.
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

-- The pre-request hook for dashboard users and anonymous callers.  Only the
-- hook calls it, as its owner and under its pinned search_path: no
-- search_path of its own, and no grant.  Generic plans: its lookups are
-- all by key, and left to choose, the plan cache planned them again in
-- every request.
CREATE FUNCTION eightms.pre_request_member() RETURNS void
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
-- The hook records that a session acts on the account (first and last
-- seen, the latter at most once a minute).  As the hook's owner, and
-- nothing but the hook calls it.  Generic plans: lookups by key.
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

COMMENT ON FUNCTION eightms_api.pre_request() IS
	'PostgREST db-pre-request: verifies the bearer token and binds its claims to the transaction, picks and checks the account (X-Eightms-Account header), refuses disabled accounts, revoked device tokens and signed-out sessions';
GRANT EXECUTE ON FUNCTION eightms_api.pre_request() TO eightms_anon, eightms_user, eightms_phone;

-- The accounts the signed-in user belongs to.
CREATE FUNCTION eightms_api.my_accounts()
RETURNS TABLE (account_id uuid, company_name text, display_name text, role text, status text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT a.account_id, a.company_name, a.display_name, m.role, a.status, m.created_at
	  FROM eightms.member m JOIN eightms.account a ON a.account_id = m.account_id
	 WHERE m.user_id = eightms.require_user()
	 ORDER BY m.created_at, a.account_id
$$;
GRANT EXECUTE ON FUNCTION eightms_api.my_accounts() TO eightms_user;

-- Raise unless the JWT's email may be trusted: only a JSON true in
-- email_verified counts ("true", 1, a missing claim or null do not).
CREATE FUNCTION eightms.require_verified_email() RETURNS text
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

-- The signed-in user creates an account and becomes its owner.
CREATE FUNCTION eightms_api.create_account(
	company_name text,
	timezone text DEFAULT 'UTC',
	display_name text DEFAULT NULL,
	default_region text DEFAULT 'US')
RETURNS eightms_api.profile
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid		text := eightms.require_user();
	email	text := eightms.require_verified_email();
	acct	eightms.account;
	result	eightms_api.profile;
BEGIN
	-- NULL (JSON null) for a field with a default means the default.
	timezone := coalesce(timezone, 'UTC');
	default_region := coalesce(default_region, 'US');
	IF company_name IS NULL THEN
		RAISE EXCEPTION 'company name must be 1 to 200 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM eightms.check_profile(company_name, timezone, display_name, default_region);
	INSERT INTO eightms.account (company_name, display_name, timezone, default_region)
	VALUES (btrim(company_name), nullif(btrim(display_name), ''), timezone, upper(default_region))
	RETURNING * INTO acct;
	INSERT INTO eightms.member (account_id, user_id, email, role)
	VALUES (acct.account_id, uid, email, 'owner');
	-- The rest of this request acts on the new account.
	PERFORM eightms.act_on_account(acct.account_id, 'owner');
	SELECT acct.account_id, acct.company_name, acct.display_name, acct.timezone,
		   acct.default_region, acct.status, acct.created_at, acct.updated_at
	  INTO result;
	RETURN result;
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.create_account(text, text, text, text) TO eightms_user;

-- Explain a bad profile field with its own message rather than a bare
-- check-constraint violation.
CREATE FUNCTION eightms.check_profile(company_name text, timezone text, display_name text, default_region text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF company_name IS NOT NULL AND length(btrim(company_name)) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'company name must be 1 to 200 characters'
			USING ERRCODE = '22023';
	END IF;
	IF display_name IS NOT NULL AND length(display_name) > 200 THEN
		RAISE EXCEPTION 'display name must be at most 200 characters'
			USING ERRCODE = '22023';
	END IF;
	IF timezone IS NOT NULL AND NOT eightms.is_timezone_name(timezone) THEN
		RAISE EXCEPTION 'unknown time zone "%"', left(timezone, 64)
			USING ERRCODE = '22023',
				  HINT = 'Use an IANA time zone name such as "America/New_York" or "Europe/Paris".';
	END IF;
	IF default_region IS NOT NULL AND NOT eightms.is_region_code(upper(default_region)) THEN
		RAISE EXCEPTION 'unknown region "%"', left(default_region, 16)
			USING ERRCODE = '22023',
				  HINT = 'Use an ISO 3166-1 alpha-2 code such as "US", "GB" or "DE".';
	END IF;
END
$$;

-- The profile of the account the request acts on.
CREATE FUNCTION eightms_api.get_profile() RETURNS eightms_api.profile
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result eightms_api.profile;
BEGIN
	SELECT * INTO result FROM eightms_api.profile p WHERE p.account_id = eightms.require_account();
	IF NOT FOUND THEN
		RAISE EXCEPTION 'account not found' USING ERRCODE = 'P0002';
	END IF;
	RETURN result;
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.get_profile() TO eightms_user, eightms_phone;

-- Owners and admins update the business profile; NULL leaves a field as it
-- is, and an empty display name clears it.
CREATE FUNCTION eightms_api.update_profile(
	company_name text DEFAULT NULL,
	display_name text DEFAULT NULL,
	timezone text DEFAULT NULL,
	default_region text DEFAULT NULL)
RETURNS eightms_api.profile
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	acct := eightms.current_account_id();
	PERFORM eightms.check_profile(update_profile.company_name, update_profile.timezone,
								  update_profile.display_name, update_profile.default_region);
	UPDATE eightms.account a SET
		company_name = coalesce(btrim(update_profile.company_name), a.company_name),
		display_name = CASE WHEN update_profile.display_name IS NULL THEN a.display_name
							ELSE nullif(btrim(update_profile.display_name), '') END,
		timezone = coalesce(update_profile.timezone, a.timezone),
		default_region = coalesce(upper(update_profile.default_region), a.default_region),
		updated_at = now()
	 WHERE a.account_id = acct;
	RETURN eightms_api.get_profile();
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.update_profile(text, text, text, text) TO eightms_user;

-- Owners invite any role, admins invite agents.  The token is returned once.
-- SECURITY DEFINER: no API role may insert an invitation (it names the role
-- its acceptor gets); every statement names the current account.
CREATE FUNCTION eightms_api.invite_member(email text, role text DEFAULT 'agent')
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
GRANT EXECUTE ON FUNCTION eightms_api.invite_member(text, text) TO eightms_user;

CREATE FUNCTION eightms_api.revoke_invitation(invitation_id uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	UPDATE eightms.invitation i SET revoked_at = now()
	 WHERE i.account_id = eightms.current_account_id()
	   AND i.invitation_id = revoke_invitation.invitation_id
	   AND i.accepted_at IS NULL AND i.revoked_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no open invitation %', revoke_invitation.invitation_id
			USING ERRCODE = 'P0002';
	END IF;
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.revoke_invitation(uuid) TO eightms_user;

-- The invited user, signed in with the invited email, joins the account.
CREATE FUNCTION eightms_api.accept_invitation(token text) RETURNS eightms_api.profile
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
GRANT EXECUTE ON FUNCTION eightms_api.accept_invitation(text) TO eightms_user;

-- Owners change roles; the account always keeps at least one owner.
-- SECURITY DEFINER: no API role may write a member's role itself; every
-- statement names the current account.
CREATE FUNCTION eightms_api.set_member_role(user_id text, role text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	acct uuid;
	old_role text;
BEGIN
	PERFORM eightms.require_member_role('owner');
	acct := eightms.current_account_id();
	IF set_member_role.role IS NULL OR set_member_role.role NOT IN ('owner', 'admin', 'agent') THEN
		RAISE EXCEPTION 'unknown member role "%"', left(set_member_role.role, 32)
			USING ERRCODE = '22023', HINT = 'Roles are owner, admin and agent.';
	END IF;
	-- Lock the account's owners so two demotions cannot both pass the check.
	PERFORM FROM eightms.member m WHERE m.account_id = acct AND m.role = 'owner' FOR UPDATE;
	SELECT m.role INTO old_role FROM eightms.member m
	 WHERE m.account_id = acct AND m.user_id = set_member_role.user_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no member % in this account', left(set_member_role.user_id, 100)
			USING ERRCODE = 'P0002';
	END IF;
	IF old_role = 'owner' AND set_member_role.role <> 'owner'
	   AND (SELECT count(*) FROM eightms.member m WHERE m.account_id = acct AND m.role = 'owner') = 1 THEN
		RAISE EXCEPTION 'an account must keep at least one owner'
			USING ERRCODE = '23514', HINT = 'Make another member an owner first.';
	END IF;
	UPDATE eightms.member m SET role = set_member_role.role
	 WHERE m.account_id = acct AND m.user_id = set_member_role.user_id;
END
$$;
GRANT EXECUTE ON FUNCTION eightms_api.set_member_role(text, text) TO eightms_user;

-- Owners remove anyone, admins remove agents, and anyone may leave; the last
-- owner cannot go.  SECURITY DEFINER: no API role may delete or lock member
-- rows itself; every statement names the current account.
CREATE FUNCTION eightms_api.remove_member(user_id text) RETURNS void
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
GRANT EXECUTE ON FUNCTION eightms_api.remove_member(text) TO eightms_user;

-- Sign out this session, or everywhere: every session of the user and every
-- token issued to them until now, in every account.  Works with no account
-- selected.  Returns how many sessions it signed out by id: this one, and
-- with everywhere those eightms has seen act on any account (tokens of
-- sessions it never saw are refused by their iat all the same).  SECURITY
-- DEFINER: the revocations are global tables no API role may write.
CREATE FUNCTION eightms_api.sign_out(everywhere boolean DEFAULT false) RETURNS integer
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
GRANT EXECUTE ON FUNCTION eightms_api.sign_out(boolean) TO eightms_user;

-- The owner deletes the account and everything it holds
-- (eightms.purge_account: the bridge's requests and the messages
-- explicitly, every other tenant table by its foreign key to
-- eightms.account, ON DELETE CASCADE).  The company name must be typed
-- back, as a guard against a stray call.
CREATE FUNCTION eightms_api.delete_account(confirm_company_name text) RETURNS void
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
GRANT EXECUTE ON FUNCTION eightms_api.delete_account(text) TO eightms_user;
