-- A phone's hot paths touch one account's shards only (issue 20): a claim,
-- a report and an inbound batch, each as the phone through the PostgREST
-- contract, then the shards the transaction holds locks on, across the
-- cluster (citus_locks, by this session's global pid).  Every worker
-- transaction holds a lock on each shard (and shard index) it read or
-- wrote until the distributed transaction ends, so the locks name every
-- shard touched.  Each must be in the account's shard group (the shard
-- get_shard_id_for_distribution_column gives for its table); reference
-- tables' shards are every node's and not counted.
--
-- Setup is committed as the superuser first: the checks then run as the
-- phone, which in one transaction could not read placements the superuser
-- wrote (PostgREST never mixes the two either).

INSERT INTO eightms.account (account_id, company_name) VALUES
	('5a5a5a5a-0000-4000-8000-000000000001', 'Single Shard Ltd'),
	('5a5a5a5a-0000-4000-8000-000000000002', 'Other Shard Ltd');
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct, charging, rate_limit)
VALUES ('5a5a5a5a-0000-4000-8000-000000000001', '5a5a5a5a-0000-4000-8000-0000000000a1', 'ss-a', now() + interval '1 hour',
		90, false, NULL),
	   ('5a5a5a5a-0000-4000-8000-000000000002', '5a5a5a5a-0000-4000-8000-0000000000b1', 'ss-b', now() + interval '1 hour',
		90, false, NULL);
INSERT INTO eightms.message (account_id, conversation_id, direction, phone_id, peer_number, body, encoding, segments,
							 status, pending, expires_at)
SELECT a, gen_random_uuid(), 'out', p, '+12125550' || lpad(i::text, 3, '0'), 'hello ' || i, 'GSM-7', 1, 'queued', true,
	   now() + interval '1 day'
  FROM (VALUES ('5a5a5a5a-0000-4000-8000-000000000001'::uuid, '5a5a5a5a-0000-4000-8000-0000000000a1'::uuid),
			   ('5a5a5a5a-0000-4000-8000-000000000002'::uuid, '5a5a5a5a-0000-4000-8000-0000000000b1'::uuid)) v(a, p),
	   generate_series(1, 5) i;

-- Shards of hash-distributed tables this transaction holds locks on, on
-- any node, that are not in the account's shard group; and how many of the
-- account's it holds (so that the check is not vacuous).
CREATE FUNCTION pg_temp.shards_locked(acct uuid, OUT foreign_shards text[], OUT own_shards integer)
LANGUAGE sql
AS $$
	SELECT coalesce(array_agg(DISTINCT l.relation_name) FILTER (WHERE s.shardid <> own.shardid), '{}'),
		   count(DISTINCT s.shardid) FILTER (WHERE s.shardid = own.shardid)::integer
	  FROM citus_locks l
	  JOIN pg_dist_shard s ON s.shardid = substring(l.relation_name FROM '_([0-9]+)$')::bigint
	  JOIN pg_dist_partition d ON d.logicalrelid = s.logicalrelid AND d.partmethod = 'h'
	 CROSS JOIN LATERAL (SELECT get_shard_id_for_distribution_column(s.logicalrelid, acct) AS shardid) own
	 WHERE l.global_pid = citus_backend_gpid() AND l.locktype = 'relation'
$$;

SELECT plan(9);
SELECT pgrst.share_tap();

BEGIN;
SELECT pgrst.as_phone('5a5a5a5a-0000-4000-8000-000000000001', '5a5a5a5a-0000-4000-8000-0000000000a1');
CREATE TEMP TABLE claimed AS SELECT message_id FROM eightms_api.claim_messages(10);
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM claimed), 5::bigint, 'the phone claims its five messages');
SELECT * FROM pg_temp.shards_locked('5a5a5a5a-0000-4000-8000-000000000001') \gset claim_
SELECT is(:'claim_foreign_shards'::text[], '{}', 'a claim touches no shard of another account''s group');
SELECT cmp_ok(:claim_own_shards, '>', 0, 'a claim touches the account''s own shards');
COMMIT;

BEGIN;
SELECT pgrst.as_phone('5a5a5a5a-0000-4000-8000-000000000001', '5a5a5a5a-0000-4000-8000-0000000000a1');
CREATE TEMP TABLE reported AS
SELECT r.* FROM eightms_api.report_messages((SELECT jsonb_agg(jsonb_build_object('id', message_id, 'status', 'sent'))
											  FROM claimed)) r;
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM reported WHERE accepted), 5::bigint, 'the five reports are accepted');
SELECT * FROM pg_temp.shards_locked('5a5a5a5a-0000-4000-8000-000000000001') \gset report_
SELECT is(:'report_foreign_shards'::text[], '{}', 'a report batch touches no shard of another account''s group');
SELECT cmp_ok(:report_own_shards, '>', 0, 'a report batch touches the account''s own shards');
COMMIT;

BEGIN;
SELECT pgrst.as_phone('5a5a5a5a-0000-4000-8000-000000000001', '5a5a5a5a-0000-4000-8000-0000000000a1');
CREATE TEMP TABLE received AS
SELECT r.* FROM eightms_api.receive_messages(
	'[{"from": "+12125550001", "body": "thanks", "device_message_id": "ss-1"},
	  {"from": "+12125550002", "body": "see you then", "device_message_id": "ss-2"},
	  {"from": "+12125550003", "body": "hello", "device_message_id": "ss-3"}]') r;
SELECT pgrst.reset();
SELECT is((SELECT count(*) FROM received WHERE message_id IS NOT NULL AND error IS NULL), 3::bigint,
		  'the inbound batch of three is stored');
SELECT * FROM pg_temp.shards_locked('5a5a5a5a-0000-4000-8000-000000000001') \gset inbound_
SELECT is(:'inbound_foreign_shards'::text[], '{}', 'an inbound batch touches no shard of another account''s group');
SELECT cmp_ok(:inbound_own_shards, '>', 0, 'an inbound batch touches the account''s own shards');
COMMIT;

SELECT * FROM finish();
