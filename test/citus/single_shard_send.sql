-- The dashboard's send on a Citus cluster: each request, committed on its
-- own as PostgREST commits it, touches only its account's shards.  Citus's
-- own counters (citus_stat_counters, turned on for this session) tell
-- single-shard executions from multi-shard ones; each step is measured
-- from after the pre-request hook to the end of the call, so that only
-- the function's own statements count.  A second account with messages of
-- its own sits on the cluster meanwhile.
\set ON_ERROR_STOP 1
SET citus.enable_stat_counters = on;
SELECT * FROM no_plan();
SELECT pgrst.share_tap();

CREATE TEMP TABLE mark (single bigint, multi bigint);
GRANT ALL ON mark TO eightms_user;
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
	DELETE FROM mark;
	INSERT INTO mark SELECT c.query_execution_single_shard, c.query_execution_multi_shard
	  FROM citus_stat_counters c WHERE c.name = current_database();
$$;
-- What ran since the mark: (single-shard executions, multi-shard ones).
CREATE FUNCTION pg_temp.since() RETURNS TABLE (single bigint, multi bigint) LANGUAGE sql AS $$
	SELECT c.query_execution_single_shard - m.single, c.query_execution_multi_shard - m.multi
	  FROM citus_stat_counters c, mark m WHERE c.name = current_database();
$$;

-- Setup, committed: two accounts through the API, their phones as the DBA
-- (what a run that died left behind goes first).
DELETE FROM eightms.account WHERE company_name IN ('Shard Sender', 'Shard Other');
BEGIN;
SELECT pgrst.as_user('shard-sender');
SELECT account_id AS acct FROM eightms_api.create_account('Shard Sender') \gset
COMMIT;
BEGIN;
SELECT pgrst.as_user('shard-other');
SELECT account_id AS other FROM eightms_api.create_account('Shard Other') \gset
COMMIT;
INSERT INTO eightms.phone (account_id, phone_id, device_id, last_heartbeat_at, battery_pct)
VALUES (:'acct', '00000000-0000-4000-8000-0000000000c1', 'shard-1', now(), 90),
	   (:'acct', '00000000-0000-4000-8000-0000000000c2', 'shard-2', now(), 80),
	   (:'other', '00000000-0000-4000-8000-0000000000c3', 'shard-3', now(), 90);
INSERT INTO eightms.opt_out (account_id, number) VALUES (:'acct', '+13125550199');
BEGIN;
SELECT pgrst.as_user('shard-other', :'other');
-- (pgTAP's calls stay out of statements on distributed tables: Citus would
-- send them to a worker along with the statement.)
SELECT count(*) AS n FROM eightms_api.send_messages($$[{"to": "+1 312 555 0101", "body": "theirs"}]$$)
 WHERE status = 'queued' \gset
SELECT is(:n::bigint, 1::bigint, 'the other account queues a message of its own');
COMMIT;

-- ------------------------------------------------------------ send_messages

BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
CREATE TEMP TABLE batch AS
SELECT * FROM eightms_api.send_messages((
	SELECT jsonb_agg(jsonb_build_object('to', '+1 312 555 0' || (100 + i), 'body', 'hello ' || i))
	  FROM generate_series(1, 20) i));
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint,
		  'a batch of 20 to new numbers runs no multi-shard statement');
SELECT cmp_ok((SELECT single FROM pg_temp.since()), '<=', 12::bigint,
			  'and a handful of single-shard ones: it went as a batch, not item by item');
COMMIT;
SELECT is((SELECT count(*) FROM batch WHERE status = 'queued'), 20::bigint, 'every item is queued');
SELECT count(DISTINCT m.phone_id) AS n FROM eightms.message m WHERE m.account_id = :'acct' \gset
SELECT is(:n::bigint, 2::bigint, 'the new conversations are spread over both phones');

-- Again to the same numbers (existing conversations), with one opted out
-- and one refused: the slow path for those two, still single-shard.
BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
SELECT results_eq($$SELECT item, status, error_code FROM eightms_api.send_messages($b$[
	{"to": "+1 312 555 0101", "body": "again"},
	{"to": "+1 312 555 0199", "body": "opted out"},
	{"to": "12", "body": "no number"},
	{"to": "+1 312 555 0102", "body": "again", "idempotency_key": "shard-k"}]$b$) ORDER BY item$$,
	$$VALUES (1, 'queued', NULL), (2, 'refused', 'E8O01'), (3, 'refused', '22023'), (4, 'queued', NULL)$$,
	'each item is answered as on one server');
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'a mixed batch runs no multi-shard statement');
COMMIT;

-- The fast path itself, as the user: no fallback hides it.
BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT is(cardinality(array_remove(eightms.queue_plain_outbound(:'acct',
			'[{"to": "+13125550103", "body": "direct"}, {"to": "+13125550150", "body": "new"}]', 'US', false, '1 day'),
			NULL)), 2, 'the batch step queues plain items on the cluster');
COMMIT;

-- ------------------------------------------------------------ send_message, cancel

BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
SELECT message_id AS one FROM eightms_api.send_message('+1 312 555 0160', 'single', idempotency_key => 'shard-one') \gset
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'send_message runs no multi-shard statement');
COMMIT;
BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
SELECT results_eq(format('SELECT canceled, status FROM eightms_api.cancel_messages(ARRAY[%L, %L]::uuid[])',
						 :'one', '00000000-0000-4000-8000-0000000000ff'),
				  $$VALUES (true, 'canceled'), (false, NULL)$$, 'cancel_messages answers each id');
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'cancel_messages runs no multi-shard statement');
COMMIT;

-- ------------------------------------------------------------ the inbox

BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
SELECT conversation_id AS conv FROM eightms_api.list_conversations(page_size => 1) \gset
SELECT count(*) AS n FROM eightms_api.list_conversations() \gset
SELECT is(:n::bigint, 22::bigint, 'list_conversations pages the inbox');
SELECT count(*) AS n FROM eightms_api.conversation_messages(:'conv') \gset
SELECT is(:n::bigint, 1::bigint, 'conversation_messages reads a conversation');
SELECT lives_ok(format('SELECT eightms_api.mark_read(%L)', :'conv'), 'mark_read');
SELECT lives_ok(format('SELECT eightms_api.archive_conversation(%L)', :'conv'), 'archive_conversation');
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'the inbox runs no multi-shard statement');
COMMIT;
SELECT peer_number AS conv_number FROM eightms.conversation WHERE account_id = :'acct' AND conversation_id = :'conv' \gset
BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
SELECT lives_ok(format('SELECT eightms_api.delete_conversation(%L)', :'conv'), 'delete_conversation');
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'delete_conversation runs no multi-shard statement');
COMMIT;
SELECT count(*) AS n FROM eightms.message WHERE account_id = :'acct' AND conversation_id = :'conv' \gset
SELECT is(:n::bigint, 0::bigint, 'the conversation''s messages went with it (its row trigger, on the shard)');
SELECT count(*) AS n FROM eightms.message WHERE account_id = :'acct' \gset
SELECT cmp_ok(:n::bigint, '>', 0::bigint, 'the other conversations keep theirs');

-- ------------------------------------------------------------ past five calls

-- Past the plan cache's first five calls in a session: the batch's two
-- INSERT ... SELECT steps (plan_cache_mode = auto) are then offered a
-- generic plan, which Citus prices out of reach; every call still queues
-- its batch, a new conversation and a known one, on the fast path.
BEGIN;
SELECT pgrst.as_user('shard-sender', :'acct');
SELECT pg_temp.mark();
CREATE TEMP TABLE rounds AS
SELECT k, eightms.queue_plain_outbound(:'acct',
		  jsonb_build_array(jsonb_build_object('to', '+13125550' || (200 + k), 'body', 'round ' || k),
							jsonb_build_object('to', '+13125550103', 'body', 'round ' || k)),
		  'US', false, '1 day') AS ids
  FROM generate_series(1, 8) k;
COMMIT;
SELECT is((SELECT count(*) FROM rounds WHERE cardinality(array_remove(ids, NULL)) = 2), 8::bigint,
		  'eight batch steps in one session each queue both items');
SELECT is((SELECT multi FROM pg_temp.since()), 0::bigint, 'and none runs a multi-shard statement');

-- Cleanup: the accounts, and with their conversations every message.
DELETE FROM eightms.account WHERE account_id IN (:'acct', :'other');
SELECT count(*) AS n FROM eightms.message WHERE account_id IN (:'acct', :'other') \gset
SELECT is(:n::bigint, 0::bigint, 'deleting the accounts deletes every message of theirs');

SELECT * FROM finish();
