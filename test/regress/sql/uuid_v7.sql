-- eightms.uuid_v7(): RFC 9562 version 7 ids for messages.
-- Version 7 and the RFC variant, on every id.
SELECT count(*) AS ids,
	   count(*) FILTER (WHERE substr(u::text, 15, 1) = '7') AS version_7,
	   count(*) FILTER (WHERE substr(u::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant
  FROM (SELECT eightms.uuid_v7() AS u FROM generate_series(1, 10000)) s;
-- Ids from one backend are all distinct and come out in increasing order,
-- even thousands within one millisecond.
SELECT count(DISTINCT u) AS distinct_ids,
	   bool_and(prev IS NULL OR prev < u) AS increasing
  FROM (SELECT u, lag(u) OVER (ORDER BY n) AS prev
		  FROM (SELECT n, eightms.uuid_v7() AS u FROM generate_series(1, 10000) n) g) s;
-- The first 48 bits are the Unix time in milliseconds: within a second of now.
SELECT abs(('x' || substr(replace(eightms.uuid_v7()::text, '-', ''), 1, 12))::bit(48)::bigint
		   - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 1000 AS time_is_now;
-- The random part differs from id to id (62 bits: no two alike in 10,000).
SELECT count(DISTINCT substr(replace(u::text, '-', ''), 17)) AS distinct_random_parts
  FROM (SELECT eightms.uuid_v7() AS u FROM generate_series(1, 10000)) s;
