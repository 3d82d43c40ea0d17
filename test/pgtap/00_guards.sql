-- Catalog guards: the tenancy and privilege rules hold for every table,
-- policy and function that exists when the suite runs, so a table or
-- function added later is checked without anyone writing a new test.
BEGIN;
SELECT * FROM no_plan();

-- Tables in the private schema that carry account_id are tenant tables.
CREATE TEMP VIEW tenant_tables AS
	SELECT c.oid AS relid, c.oid::regclass AS rel
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	   AND a.attname = 'account_id' AND NOT a.attisdropped;

SELECT cmp_ok((SELECT count(*) FROM tenant_tables), '>=', 4::bigint,
	'the guards see the tenant tables (account, member, invitation, session at least)');

-- Tables without account_id must say why: a comment starting "global:".
SELECT ok(coalesce(obj_description(c.oid, 'pg_class'), '') LIKE 'global:%',
		  format('%s has no account_id, so it must be a documented global table', c.oid::regclass))
  FROM pg_class c
 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
   AND c.oid NOT IN (SELECT relid FROM tenant_tables);

SELECT ok(c.relrowsecurity AND c.relforcerowsecurity,
		  format('%s has row-level security enabled and forced', t.rel))
  FROM tenant_tables t JOIN pg_class c ON c.oid = t.relid;

-- pg_dump leaves out an extension table's rows unless it is marked: every
-- table is, with its sequences, but the registries CREATE EXTENSION fills.
SELECT ok(c.oid = ANY (e.extconfig),
		  format('%s is marked for pg_dump (pg_extension_config_dump)', c.oid::regclass))
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'eightms' AND c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p', 'S')
   AND c.oid NOT IN ('eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass);
SELECT ok(NOT ('eightms.scheduled_job'::regclass = ANY (e.extconfig) OR 'eightms.sealed_column'::regclass = ANY (e.extconfig)),
		  'the registries CREATE EXTENSION fills are not dumped, so a restore does not double them')
  FROM pg_extension e WHERE e.extname = 'eightms';

-- pg_upgrade refuses a cluster where any table has a column of a reg* type
-- whose OIDs it does not keep (regclass, regrole and regtype it keeps).
SELECT is(count(*), 0::bigint,
		  'no eightms table has a column of a reg* type that pg_upgrade refuses: '
		  || coalesce(string_agg(a.attrelid::regclass || '.' || a.attname, ', '), 'none'))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace IN ('eightms'::regnamespace, 'eightms_api'::regnamespace)
   AND a.attnum > 0 AND NOT a.attisdropped
   AND a.atttypid IN ('regproc'::regtype, 'regprocedure'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
					  'regconfig'::regtype, 'regdictionary'::regtype, 'regnamespace'::regtype, 'regcollation'::regtype);

SELECT ok(EXISTS (SELECT FROM pg_constraint k
				   WHERE k.conrelid = t.relid AND k.contype = 'p'
					 AND k.conkey[1] = (SELECT attnum FROM pg_attribute
										 WHERE attrelid = t.relid AND attname = 'account_id')),
		  format('%s has a primary key that starts with account_id', t.rel))
  FROM tenant_tables t;

SELECT ok(k.conkey[1] = (SELECT attnum FROM pg_attribute WHERE attrelid = t.relid AND attname = 'account_id'),
		  format('unique key %s on %s starts with account_id', k.conname, t.rel))
  FROM tenant_tables t JOIN pg_constraint k ON k.conrelid = t.relid AND k.contype = 'u';

SELECT ok(i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = t.relid AND attname = 'account_id'),
		  format('unique index %s on %s starts with account_id', i.indexrelid::regclass, t.rel))
  FROM tenant_tables t JOIN pg_index i ON i.indrelid = t.relid AND i.indisunique;

-- A foreign key between tenant tables carries account_id, so a row can
-- never point into another account.
SELECT ok((SELECT attnum FROM pg_attribute WHERE attrelid = t.relid AND attname = 'account_id') = ANY (k.conkey),
		  format('foreign key %s on %s includes account_id', k.conname, t.rel))
  FROM tenant_tables t JOIN pg_constraint k ON k.conrelid = t.relid AND k.contype = 'f'
 WHERE k.confrelid IN (SELECT relid FROM tenant_tables);

SELECT ok(EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.relid),
		  format('%s has a row-level security policy', t.rel))
  FROM tenant_tables t;

-- Every policy compares account_id to the caller's account and nothing
-- else: no subqueries (Citus refuses them), no other conditions.
SELECT ok(pg_get_expr(p.polqual, p.polrelid) = '(account_id = eightms.current_account_id())'
		  AND (p.polwithcheck IS NULL
			   OR pg_get_expr(p.polwithcheck, p.polrelid) = '(account_id = eightms.current_account_id())'),
		  format('policy %s on %s is exactly account_id = eightms.current_account_id()', p.polname, t.rel))
  FROM tenant_tables t JOIN pg_policy p ON p.polrelid = t.relid;

SELECT is(p.provolatile::text || p.proparallel::text, 'ss',
		  'eightms.current_account_id() is STABLE and PARALLEL SAFE')
  FROM pg_proc p WHERE p.oid = 'eightms.current_account_id()'::regprocedure;

-- PUBLIC gets nothing.  A NULL ACL means the built-in default, which for
-- functions includes EXECUTE to PUBLIC.
SELECT ok(p.proacl IS NOT NULL
		  AND NOT EXISTS (SELECT FROM aclexplode(p.proacl) x WHERE x.grantee = 0),
		  format('function %s grants nothing to PUBLIC', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.pronamespace IN ('eightms'::regnamespace, 'eightms_api'::regnamespace);

SELECT ok(NOT EXISTS (SELECT FROM aclexplode(c.relacl) x WHERE x.grantee = 0),
		  format('relation %s grants nothing to PUBLIC', c.oid::regclass))
  FROM pg_class c
 WHERE c.relnamespace IN ('eightms'::regnamespace, 'eightms_api'::regnamespace)
   AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f');

SELECT ok(n.nspacl IS NOT NULL AND NOT EXISTS (SELECT FROM aclexplode(n.nspacl) x WHERE x.grantee = 0),
		  format('schema %s grants nothing to PUBLIC', n.nspname))
  FROM pg_namespace n WHERE n.nspname IN ('eightms', 'eightms_api');

-- SECURITY DEFINER functions pin search_path to pg_catalog, pg_temp.
SELECT ok(p.proconfig IS NOT NULL
		  AND 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig),
		  format('SECURITY DEFINER function %s pins search_path', p.oid::regprocedure))
  FROM pg_proc p
 WHERE p.pronamespace IN ('eightms'::regnamespace, 'eightms_api'::regnamespace)
   AND p.prosecdef;

-- The API schema holds functions and views only (what PostgREST exposes).
SELECT ok(c.relkind = 'v', format('%s in eightms_api is a view', c.oid::regclass))
  FROM pg_class c
 WHERE c.relnamespace = 'eightms_api'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f');

-- Views over tenant tables run with the caller's rights, so RLS applies.
SELECT ok(coalesce('security_invoker=true' = ANY (c.reloptions), false),
		  format('view %s is security_invoker', c.oid::regclass))
  FROM pg_class c
 WHERE c.relnamespace = 'eightms_api'::regnamespace AND c.relkind = 'v';

-- The API roles cannot log in and only the internal ones bypass RLS.
SELECT ok(NOT r.rolcanlogin AND NOT r.rolsuper AND r.rolbypassrls = (r.rolname IN ('eightms_dba', 'eightms_worker')),
		  format('role %s: no login, no superuser, bypasses RLS only if internal', r.rolname))
  FROM pg_roles r
 WHERE r.rolname IN ('eightms_anon', 'eightms_user', 'eightms_phone', 'eightms_dba', 'eightms_worker');

SELECT * FROM finish();
ROLLBACK;
