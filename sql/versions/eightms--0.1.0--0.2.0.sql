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
