-- eightms.try_uuid accepts exactly what uuid_in accepts, and gives NULL
-- (never an error) for anything else.
CREATE FUNCTION pg_temp.uuid_in_gives(t text) RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
	RETURN t::uuid;
EXCEPTION WHEN invalid_text_representation THEN
	RETURN NULL;
END
$$;
SELECT t, eightms.try_uuid(t) AS try_uuid,
	   eightms.try_uuid(t) IS NOT DISTINCT FROM pg_temp.uuid_in_gives(t) AS as_uuid_in
  FROM unnest(ARRAY[
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
	'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
	'a0eebc999c0b4ef8bb6d6bb9bd380a11',
	'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11',
	'{a0eebc999c0b4ef8bb6d6bb9bd380a11}',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-',
	'a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11',
	'a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11',
	'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
	'g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	' a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ',
	'not-a-uuid',
	'{}',
	'']) AS t;
SELECT eightms.try_uuid(NULL) IS NULL AS null_in_null_out;
-- Every string uuid_in accepts, over random uuids written with and without
-- hyphens and braces, reads back to the same value.
SELECT count(*) AS agree FROM (
	SELECT u, replace(u::text, '-', '') AS bare FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 2000)) g) s
 WHERE eightms.try_uuid(u::text) = u AND eightms.try_uuid(bare) = u AND eightms.try_uuid('{' || bare || '}') = u
   AND eightms.try_uuid(upper(u::text)) = u;

-- eightms.ids_are_distinct(reports) answers exactly what
-- count(DISTINCT try_uuid(x ->> 'id')) = count(*) over the array's elements
-- does: every element an object with an id try_uuid reads, none twice (the
-- same uuid spelled differently is the same id).  Anything but an array is
-- false.
SELECT r AS reports, eightms.ids_are_distinct(r::jsonb) AS distinct_ids,
	   eightms.ids_are_distinct(r::jsonb) = (SELECT count(DISTINCT eightms.try_uuid(x ->> 'id')) = count(*)
											   FROM jsonb_array_elements(r::jsonb) x) AS as_sql
  FROM unnest(ARRAY[
	'[]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "status": "sent"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"id": "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"id": "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"id": "not-a-uuid"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"status": "sent"}]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"]',
	'[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, null]',
	'[{"id": null}]',
	'[{"id": true}]',
	'[{"id": 12345678901234567890123456789012}]',
	'[{"id": 12345678901234567890123456789012}, {"id": "12345678-9012-3456-7890-123456789012"}]',
	'[{"id": 1234}]',
	'[{"id": {"a": 1}}]',
	'[{"id": []}]',
	'[{"id": "x", "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]',
	'[[{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]]'
  ]) AS r;
-- Not arrays: false (report_messages refuses them before it asks).
SELECT eightms.ids_are_distinct('{"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}') AS object,
	   eightms.ids_are_distinct('"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"') AS scalar,
	   eightms.ids_are_distinct('null') AS json_null;
-- A large batch: 10,000 distinct ids, then the same with one repeated.
SELECT eightms.ids_are_distinct(jsonb_agg(jsonb_build_object('id', md5(i::text)::uuid))) AS ten_thousand,
	   eightms.ids_are_distinct(jsonb_agg(jsonb_build_object('id', md5((i % 9999)::text)::uuid))) AS one_repeated
  FROM generate_series(1, 10000) i;
