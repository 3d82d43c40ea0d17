-- The message-body purge walks each account from where it got to
-- (eightms.body_purge): bounded rounds, the least recently purged account
-- first, nothing examined twice once done, pending messages left with
-- their bodies and erased once they are final, at most 1,000 of them
-- remembered, and a dry run that still counts everything.
BEGIN;
SELECT plan(16);
SELECT pgrst.share_tap();

-- Two accounts keeping bodies a day; A holds 30 delivered messages from
-- three days ago, one still queued from then (scheduled far ahead), and
-- two of today; B holds 10 old ones.
CREATE TEMP TABLE acct (name text PRIMARY KEY, id uuid);
INSERT INTO eightms.account (company_name, message_retention) VALUES ('Body A', '1 day'), ('Body B', '1 day');
INSERT INTO acct SELECT right(company_name, 1), account_id FROM eightms.account WHERE company_name IN ('Body A', 'Body B');
SELECT id AS a FROM acct WHERE name = 'A' \gset
SELECT id AS b FROM acct WHERE name = 'B' \gset
INSERT INTO eightms.conversation (account_id, peer_number) SELECT id, '+12125550150' FROM acct;
-- (The statement is built with its values: on Citus a parameter of a
-- join's INSERT ... SELECT cannot be planned.)
CREATE FUNCTION pg_temp.msgs(acct uuid, n integer, age interval, first integer, pending boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format($q$
		INSERT INTO eightms.message (account_id, message_id, conversation_id, direction, peer_number, body, encoding, segments,
									 status, pending, attempts, send_at, created_at, expires_at)
		SELECT c.account_id, eightms.uuid_v7_floor(now() - %2$L::interval + (%3$s + g) * interval '1 second'), c.conversation_id,
			   'out', c.peer_number, 'body ' || (%3$s + g), 'gsm7', 1, %4$L, %5$L::boolean, 1,
			   now() - %2$L::interval, now() - %2$L::interval + (%3$s + g) * interval '1 second', now() + interval '30 days'
		  FROM generate_series(1, %6$s) g JOIN eightms.conversation c ON c.account_id = %1$L$q$,
		acct, age, first, CASE WHEN pending THEN 'queued' ELSE 'delivered' END, CASE WHEN pending THEN true END, n);
END
$$;
SELECT pg_temp.msgs(:'a', 10, '3 days', 0);
SELECT pg_temp.msgs(:'a', 1, '3 days', 10, true);
SELECT pg_temp.msgs(:'a', 20, '3 days', 11);
SELECT pg_temp.msgs(:'a', 2, '1 hour', 0);
SELECT pg_temp.msgs(:'b', 10, '3 days', 0);
CREATE FUNCTION pg_temp.bodies(acct uuid) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM eightms.message m WHERE m.account_id = acct AND m.created_at < now() - interval '2 days' AND m.body <> ''
$$;

SELECT is((SELECT rows_removed FROM eightms.run_purges(dry_run => true, rules => '{message_body}')), 40::bigint,
		  'the dry run counts every final old body in both accounts');

-- Rounds of 8: the first goes to one account, the next to the other,
-- which was never purged; each says there is more.
CREATE TEMP TABLE rounds AS SELECT 1 AS round, * FROM eightms.run_purges(batch_size => 8, rules => '{message_body}');
SELECT is((SELECT ROW(rows_removed, more)::text FROM rounds), '(8,t)', 'a round erases 8 bodies and says there is more');
SELECT is((SELECT count(*) FROM acct WHERE pg_temp.bodies(id) < (CASE name WHEN 'A' THEN 30 ELSE 10 END)), 1::bigint,
		  'all in one account');
INSERT INTO rounds SELECT 2, * FROM eightms.run_purges(batch_size => 8, rules => '{message_body}');
SELECT is((SELECT count(*) FROM acct WHERE pg_temp.bodies(id) < (CASE name WHEN 'A' THEN 30 ELSE 10 END)), 2::bigint,
		  'the next round goes to the account not purged yet');
SELECT is((SELECT sum(pg_temp.bodies(id)) FROM acct)::bigint, 25::bigint, 'sixteen of the 41 old bodies erased in two rounds');
DO $$
BEGIN
	FOR i IN 3..20 LOOP
		INSERT INTO rounds SELECT i, * FROM eightms.run_purges(batch_size => 8, rules => '{message_body}');
		EXIT WHEN NOT (SELECT more FROM rounds WHERE round = i);
	END LOOP;
END
$$;
SELECT is((SELECT sum(rows_removed) FROM rounds)::bigint, 40::bigint, 'the rounds erase exactly the 40 final old bodies');
SELECT is((SELECT array_agg(pg_temp.bodies(id) ORDER BY name) FROM acct), '{1,0}'::bigint[],
		  'only the queued message keeps its body');
SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = :'a' AND created_at > now() - interval '2 hours' AND body <> ''),
		  2::bigint, 'today''s messages keep theirs');
SELECT is((SELECT array_agg(m.body) FROM eightms.body_purge b JOIN eightms.message m
			 ON m.account_id = b.account_id AND m.message_id = ANY (b.deferred) WHERE b.account_id = :'a'),
		  '{"body 11"}', 'the purge remembers the queued message it went past');
SELECT ok((SELECT b.position >= (SELECT m.message_id FROM eightms.message m
									WHERE m.account_id = :'a' AND m.created_at < now() - interval '2 days'
									ORDER BY 1 DESC LIMIT 1)
			 FROM eightms.body_purge b WHERE b.account_id = :'a'), 'and its position is past every old message');
SELECT is((SELECT ROW(rows_removed, more)::text FROM eightms.run_purges(batch_size => 8, rules => '{message_body}')),
		  '(0,f)', 'a further round finds nothing and examines nothing past the position');

-- The queued message goes out; the next round erases its body.
UPDATE eightms.message SET status = 'sent', pending = NULL, sent_at = now() WHERE account_id = :'a' AND body = 'body 11';
SELECT is((SELECT rows_removed FROM eightms.run_purges(batch_size => 8, rules => '{message_body}')), 1::bigint,
		  'once final, the message it went past loses its body');
SELECT is((SELECT cardinality(deferred) FROM eightms.body_purge WHERE account_id = :'a'), 0, 'and is forgotten');

-- More than 1,000 messages still pending: the position waits at the
-- thousandth, the final ones after them are erased all the same.
UPDATE eightms.account SET message_retention = NULL WHERE account_id = :'a';
SELECT pg_temp.msgs(:'b', 1005, '3 days', 100, true);
SELECT pg_temp.msgs(:'b', 5, '3 days', 2000);
SELECT is((SELECT rows_removed FROM eightms.run_purges(batch_size => 2000, rules => '{message_body}')), 5::bigint,
		  'the final messages after 1,005 pending ones are erased');
SELECT is((SELECT cardinality(b.deferred) || ' ' || (b.position = b.deferred[1000])
			 FROM eightms.body_purge b WHERE b.account_id = :'b'), '1000 true',
		  'a thousand are remembered and the position waits at the thousandth');
SELECT is((SELECT count(*) FROM eightms.message m, eightms.body_purge b
			WHERE b.account_id = :'b' AND m.account_id = :'b' AND m.pending AND m.message_id > b.position), 5::bigint,
		  'the five pending past it are found again from there');

SELECT * FROM finish();
ROLLBACK;
