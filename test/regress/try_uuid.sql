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
