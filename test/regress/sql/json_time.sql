-- eightms.json_time reads the times phones write and never raises: ISO 8601
-- strings exactly as timestamptz_in reads them, other strings through
-- timestamptz_in, JSON numbers as milliseconds since 1970, NULL otherwise.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
-- What a cast gives, or NULL where the cast raises.
CREATE FUNCTION pg_temp.cast_gives(t text) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	RETURN t::timestamptz;
EXCEPTION WHEN data_exception THEN
	RETURN NULL;
END
$$;
-- ISO 8601 (read without timestamptz_in) and other strings: the same answer
-- as a cast, except that infinite times count as unreadable.
SELECT t, eightms.json_time(to_jsonb(t)) AS json_time,
	   eightms.json_time(to_jsonb(t)) IS NOT DISTINCT FROM
	   CASE WHEN isfinite(pg_temp.cast_gives(t)) THEN pg_temp.cast_gives(t) END AS as_cast
  FROM unnest(ARRAY[
	'2026-11-29T10:11:12Z',
	'2026-11-29T10:11:12z',
	'2026-11-29t10:11:12Z',
	'2026-11-29 10:11:12Z',
	'2026-11-29T10:11:12.5Z',
	'2026-11-29T10:11:12.123456Z',
	'2026-11-29T10:11:12.1234565Z',
	'2026-11-29T10:11:12+02:00',
	'2026-11-29T10:11:12-0530',
	'2026-11-29T10:11:12+05',
	'2026-11-29T10:11:12+15:59',
	'2026-11-29T10:11:12+16:00',
	'2026-11-29T10:11Z',
	'2026-11-29T10:11',
	'2026-11-29',
	'2024-02-29T00:00:00Z',
	'2026-02-29T00:00:00Z',
	'2026-02-30T00:00:00Z',
	'2026-13-01T00:00:00Z',
	'2026-11-29T24:00:00Z',
	'2026-11-29T23:59:60Z',
	'2026-11-29T23:60:00Z',
	'0001-01-01T00:00:00Z',
	'9999-12-31T23:59:59Z',
	'2026-11-29 10:11:12 PST',
	'2026-11-29 10:11:12 America/Chicago',
	'2026-11-29 10:11:12 Mars/Olympus_Mons',
	'Sun Nov 29 10:11:12 2026',
	'epoch',
	'infinity',
	'-infinity',
	'yesterday-ish',
	'2026-11-29T10:11:12Zjunk',
	'2026-11-29T',
	'2026-1-29',
	'',
	' ',
	'20261129T101112Z'
]) AS t;
-- No offset: the session's time zone, a gap and an overlap of daylight
-- saving time included, as timestamptz_in.
SET TimeZone = 'America/New_York';
SELECT t, eightms.json_time(to_jsonb(t)) AS json_time,
	   eightms.json_time(to_jsonb(t)) = t::timestamptz AS as_cast
  FROM unnest(ARRAY['2026-11-29T10:11:12', '2026-03-08T02:30:00', '2026-11-01T01:30:00', '2026-11-29']) AS t;
SET TimeZone = 'UTC';
-- Numbers: milliseconds since 1970-01-01 UTC.
SELECT j, eightms.json_time(j::jsonb) AS json_time
  FROM unnest(ARRAY['0', '1795947072000', '1795947072123.6', '-1', '1e3', '9.2e18', '1e300', '-1e300']) AS j;
-- Anything else, and strings too long to be a time.
SELECT left(j, 32) AS j, eightms.json_time(j::jsonb) IS NULL AS is_null
  FROM unnest(ARRAY['null', 'true', 'false', '{}', '[]', '["2026-11-29T10:11:12Z"]',
				   '{"at": "2026-11-29T10:11:12Z"}', to_jsonb(repeat('1', 129))::text]) AS j;
SELECT eightms.json_time(NULL) IS NULL AS sql_null;
