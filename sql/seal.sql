-- seal.sql: AES-256-GCM sealing of secrets at rest, key rotation, JWTs and
-- webhook signatures.  The C side is src/secrets/seal.c, src/auth/jwt.c and
-- src/secrets/webhook_signature.c; keys and the JWT secret come only from the
-- server's environment.

CREATE FUNCTION eightms.seal(plaintext text, context text) RETURNS bytea
AS 'MODULE_PATHNAME', 'eightms_seal'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.seal(text, text) IS
	'AES-256-GCM seal under the active key; context (e.g. "integration:<account>:access_token") is bound as associated data';

CREATE FUNCTION eightms.seal_bytes(plaintext bytea, context text) RETURNS bytea
AS 'MODULE_PATHNAME', 'eightms_seal_bytes'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE FUNCTION eightms.unseal(sealed bytea, context text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_unseal'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.unseal(bytea, text) IS
	'Open a value sealed by eightms.seal with the same context; SQLSTATE E8S01 when it cannot be opened';

CREATE FUNCTION eightms.unseal_bytes(sealed bytea, context text) RETURNS bytea
AS 'MODULE_PATHNAME', 'eightms_unseal_bytes'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION eightms.sealed_key_id(sealed bytea) RETURNS integer
AS 'MODULE_PATHNAME', 'eightms_sealed_key_id'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.sealed_key_id(bytea) IS 'The id of the key a sealed value was sealed under';

CREATE FUNCTION eightms.reseal(sealed bytea, context text) RETURNS bytea
AS 'MODULE_PATHNAME', 'eightms_reseal'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.reseal(bytea, text) IS
	'Re-seal under the active key (unchanged when already under it)';

CREATE FUNCTION eightms.seal_status(OUT key_id integer, OUT active boolean, OUT problem text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'eightms_seal_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.seal_status() IS
	'The loaded seal key ids and which is active, or why no key ring is loaded; never key material';

-- Every sealed column, registered by the domain that owns it, so rotation
-- can find them all.  context_sql is an SQL expression over the row that
-- yields the context the value was sealed with.
CREATE TABLE eightms.sealed_column (
	table_name	regclass NOT NULL,
	column_name	name NOT NULL,
	context_sql	text NOT NULL,
	PRIMARY KEY (table_name, column_name)
);
COMMENT ON TABLE eightms.sealed_column IS
	'global: sealed bytea columns and how to rebuild each value''s context; read by eightms.rotate_seals()';

-- Re-seal under the active key, at most batch_size values per column per
-- call; call again until remaining is 0.  Each call commits with the
-- caller's transaction, so a run can stop and resume at any point, and rows
-- locked by others are skipped and picked up by a later call.
-- Re-seal one column of one table: at most batch_size values sealed under
-- another key than active_id.  In named steps, each a statement of one
-- table, so that it runs the same on one server and on Citus (where a
-- lock taken without the distribution column, a join by ctid or a
-- VOLATILE function inside an UPDATE are refused): the candidates are read
-- without a lock, each value is sealed again here, and written back by the
-- row's primary key only if it is still the value read, so a row written
-- meanwhile is left for the next call.  Returns how many moved.
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

CREATE FUNCTION eightms.rotate_seals(batch_size integer DEFAULT 1000)
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

-- JWTs (HS256) with the secret PostgREST shares.
CREATE FUNCTION eightms.jwt_encode(payload text) RETURNS text
AS 'MODULE_PATHNAME', 'eightms_jwt_encode'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION eightms.jwt_decode(token text) RETURNS jsonb
AS 'MODULE_PATHNAME', 'eightms_jwt_decode'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION eightms.jwt_sign(claims jsonb, ttl interval DEFAULT NULL) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	now_s bigint := floor(extract(epoch FROM now()))::bigint;
	body jsonb;
BEGIN
	IF claims IS NULL OR jsonb_typeof(claims) <> 'object' THEN
		RAISE EXCEPTION 'JWT claims must be a JSON object' USING ERRCODE = '22023';
	END IF;
	IF ttl IS NOT NULL AND ttl <= interval '0' THEN
		RAISE EXCEPTION 'JWT lifetime must be positive' USING ERRCODE = '22023';
	END IF;
	body := jsonb_build_object('iat', now_s) || claims;
	IF ttl IS NOT NULL THEN
		body := body || jsonb_build_object('exp', now_s + floor(extract(epoch FROM ttl))::bigint);
	END IF;
	RETURN eightms.jwt_encode(body::text);
END
$$;
COMMENT ON FUNCTION eightms.jwt_sign(jsonb, interval) IS
	'An HS256 JWT of claims plus iat (and exp = iat + ttl), signed with EIGHTMS_JWT_SECRET';

CREATE FUNCTION eightms.jwt_verify(token text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims jsonb := eightms.jwt_decode(token);
	now_s numeric := extract(epoch FROM now());
BEGIN
	IF jsonb_typeof(claims) <> 'object' THEN
		RAISE EXCEPTION 'invalid JWT: claims are not a JSON object' USING ERRCODE = '28000';
	END IF;
	IF claims ? 'exp' AND (jsonb_typeof(claims -> 'exp') <> 'number' OR (claims ->> 'exp')::numeric <= now_s) THEN
		RAISE EXCEPTION 'invalid JWT: expired'
			USING ERRCODE = '28000', HINT = 'Get a new token.';
	END IF;
	IF claims ? 'nbf' AND (jsonb_typeof(claims -> 'nbf') <> 'number' OR (claims ->> 'nbf')::numeric > now_s) THEN
		RAISE EXCEPTION 'invalid JWT: not valid yet' USING ERRCODE = '28000';
	END IF;
	RETURN claims;
END
$$;
COMMENT ON FUNCTION eightms.jwt_verify(text) IS
	'The claims of an HS256 JWT signed with EIGHTMS_JWT_SECRET, after checking signature, exp and nbf';

-- Webhook signatures over the raw body.
CREATE FUNCTION eightms.stripe_signature_valid(payload text, signature_header text, secret text,
											   tolerance integer DEFAULT 300)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eightms_stripe_signature_valid'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.stripe_signature_valid(text, text, text, integer) IS
	'Stripe-Signature check: some v1 = HMAC-SHA256(secret, t.payload), constant-time, t within tolerance seconds';

CREATE FUNCTION eightms.ed25519_verify(message bytea, signature text, public_key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eightms_ed25519_verify'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eightms.ed25519_verify(bytea, text, text) IS
	'Ed25519 signature (base64) over message with a PEM or base64 public key, e.g. GoHighLevel''s X-GHL-Signature';

-- Sealing is for the roles whose API calls store secrets; opening them only
-- for the bridge worker, which sends them on.
GRANT EXECUTE ON FUNCTION eightms.seal(text, text), eightms.seal_bytes(bytea, text),
	eightms.sealed_key_id(bytea)
TO eightms_user, eightms_phone, eightms_worker, eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.unseal(bytea, text), eightms.unseal_bytes(bytea, text),
	eightms.reseal(bytea, text)
TO eightms_worker;
GRANT EXECUTE ON FUNCTION eightms.seal_status(), eightms.rotate_seals(integer) TO eightms_dba;
GRANT EXECUTE ON FUNCTION eightms.stripe_signature_valid(text, text, text, integer),
	eightms.ed25519_verify(bytea, text, text)
TO eightms_anon, eightms_worker;
