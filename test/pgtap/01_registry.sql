-- The personal-data registry (eightms.data_column) classifies every column
-- of every eightms table, and names only columns that exist: a capability
-- that adds a table or a column (a phone's telemetry included) fails here
-- until it says what the column holds, whose it is and how long it stays.
BEGIN;
SELECT plan(6);

CREATE TEMP VIEW live_columns AS
	SELECT c.relname AS table_name, a.attname AS column_name
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	   AND a.attnum > 0 AND NOT a.attisdropped;

SELECT is((SELECT string_agg(format('%s.%s', l.table_name, l.column_name), ', ' ORDER BY 1)
			 FROM live_columns l
			WHERE NOT EXISTS (SELECT FROM eightms.data_column d
							   WHERE d.table_name = l.table_name AND d.column_name = l.column_name)),
		  NULL, 'every column of every eightms table is classified in eightms.data_column');
SELECT is((SELECT string_agg(format('%s.%s', d.table_name, d.column_name), ', ' ORDER BY 1)
			 FROM eightms.data_column d
			WHERE NOT EXISTS (SELECT FROM live_columns l
							   WHERE l.table_name = d.table_name AND l.column_name = d.column_name)),
		  NULL, 'every classification names a column that exists');
SELECT cmp_ok((SELECT count(*) FROM eightms.data_column WHERE table_name = 'phone' AND class = 'telemetry'), '=', 4::bigint,
			  'a phone''s telemetry is the heartbeat, battery (percentage, charging) and network type');
SELECT hasnt_column('eightms', 'phone', 'app_version', 'the app version is not stored (the privacy policy does not list it)');
SELECT is((SELECT string_agg(r.rule_name, ', ') FROM eightms.retention_rule r
			WHERE r.rule_name <> 'extension' AND NOT EXISTS (SELECT FROM eightms.data_column d WHERE d.retention = r.rule_name)
			  AND r.rule_name NOT IN ('cron_history', 'suspended_account', 'disabled_account', 'account_deletion')),
		  NULL, 'every retention rule of eightms data covers some column (cron history and accounts'' ends aside)');

-- A new column without a classification fails the first check.
ALTER TABLE eightms.phone ADD COLUMN probe text;
SELECT is((SELECT string_agg(format('%s.%s', l.table_name, l.column_name), ', ')
			 FROM live_columns l
			WHERE NOT EXISTS (SELECT FROM eightms.data_column d
							   WHERE d.table_name = l.table_name AND d.column_name = l.column_name)),
		  'phone.probe', 'a phone column added without a classification is caught');

SELECT * FROM finish();
ROLLBACK;
