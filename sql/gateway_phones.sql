-- gateway_phones.sql: the calling phone, pairing, the heartbeat,
-- unpairing, pacing, and the phones view.

-- The calling phone (device token), or an error.
CREATE FUNCTION eightms.current_phone_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(eightms.jwt_claims() ->> 'phone_id', '')::uuid $$;

-- The calling phone, or an error ('this call is for paired phones'): the
-- phone_id claim as current_phone_id() reads it, with an account in the
-- claims too.  In C (src/auth/claims.c), from the claims current_account_id()
-- keeps parsed: every API call of a phone starts with it.
CREATE FUNCTION eightms.require_phone() RETURNS uuid
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'eightms_require_phone';

-- ------------------------------------------------------------ pairing

-- SECURITY DEFINER: no API role may insert a pairing code itself; the code
-- is for the current account, after the role check.
CREATE FUNCTION eightms_api.create_pairing_code(valid_for interval DEFAULT '10 minutes')
RETURNS TABLE (code text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c text;
	e timestamptz := now() + least(greatest(valid_for, interval '1 minute'), interval '1 hour');
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	-- 10 characters of an unambiguous alphabet: about 50 bits.
	SELECT string_agg(substr('ABCDEFGHJKMNPQRSTUVWXYZ23456789', 1 + get_byte(b, i) % 31, 1), '')
	  INTO c FROM (SELECT eightms.random_bytes(10) AS b) r, generate_series(0, 9) i;
	INSERT INTO eightms.pairing_code (account_id, code_hash, created_by, expires_at)
	VALUES (eightms.current_account_id(), eightms.token_hash(c), eightms.current_user_id(), e);
	RETURN QUERY SELECT c, e;
END
$$;

-- The phone pairs anonymously with the code; it gets its device JWT.
CREATE FUNCTION eightms_api.pair_phone(code text, device_id text, name text DEFAULT NULL,
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

CREATE FUNCTION eightms_api.heartbeat(battery_pct integer, network text DEFAULT 'unknown',
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

-- SECURITY DEFINER: it alone (with pair_phone) revokes device tokens;
-- every statement names the current account.
CREATE FUNCTION eightms_api.unpair_phone(phone_id uuid) RETURNS void
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

-- Pacing per phone: at most rate_limit messages per rate_window, or none
-- (NULL) for a phone whose Android limit was lifted.
CREATE FUNCTION eightms_api.set_phone_pacing(phone_id uuid, rate_limit integer,
											 rate_window interval DEFAULT '30 minutes',
											 unit text DEFAULT 'messages')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM eightms.require_member_role('owner', 'admin');
	IF rate_limit NOT BETWEEN 1 AND 10000 OR rate_window IS NULL
	   OR rate_window NOT BETWEEN interval '1 minute' AND interval '1 day' THEN
		RAISE EXCEPTION 'pacing must be 1 to 10000 messages per 1 minute to 1 day'
			USING ERRCODE = '22023',
				  HINT = 'Pass a NULL rate_limit to turn pacing off for a phone whose own limit was lifted.';
	END IF;
	IF unit IS NULL OR unit NOT IN ('messages', 'segments') THEN
		RAISE EXCEPTION 'pacing counts messages or segments' USING ERRCODE = '22023',
			HINT = 'Android counts each part of a long SMS: segments matches its own limit.';
	END IF;
	UPDATE eightms.phone p SET rate_limit = set_phone_pacing.rate_limit, rate_window = set_phone_pacing.rate_window,
		   rate_unit = unit
	 WHERE p.account_id = eightms.current_account_id() AND p.phone_id = set_phone_pacing.phone_id
	   AND p.unpaired_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no paired phone %', set_phone_pacing.phone_id USING ERRCODE = 'P0002';
	END IF;
END
$$;

-- Phones with their online status (last heartbeat within eightms.online_window).
CREATE VIEW eightms_api.phones WITH (security_invoker = true) AS
	SELECT p.account_id, p.phone_id, p.device_id, p.name, p.paired_at, p.unpaired_at,
		   p.last_heartbeat_at, p.battery_pct, p.charging, p.network, NULL::text AS app_version,
		   p.rate_limit, p.rate_window, p.rate_unit,
		   (p.unpaired_at IS NULL AND p.last_heartbeat_at > now()
			- coalesce(current_setting('eightms.online_window', true), '5min')::interval) AS online
	  FROM eightms.phone p;
GRANT SELECT ON eightms_api.phones TO eightms_user;

GRANT EXECUTE ON FUNCTION eightms_api.create_pairing_code(interval), eightms_api.unpair_phone(uuid),
	eightms_api.set_phone_pacing(uuid, integer, interval, text) TO eightms_user;
GRANT EXECUTE ON FUNCTION eightms_api.pair_phone(text, text, text, text) TO eightms_anon;
GRANT EXECUTE ON FUNCTION eightms_api.heartbeat(integer, text, boolean, text, text) TO eightms_phone;
GRANT EXECUTE ON FUNCTION eightms.current_phone_id(), eightms.require_phone()
	TO eightms_user, eightms_phone, eightms_dba, eightms_worker;
