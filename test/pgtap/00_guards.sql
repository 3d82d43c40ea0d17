-- Catalog guards: the tenancy and privilege rules hold for every table,
-- policy and function that exists when the suite runs, so a table or
-- function added later is checked without anyone writing a new test.
BEGIN;
SELECT * FROM no_plan();

-- Tables in the private schema that carry account_id are tenant tables,
-- but for the documented global ones (comment "global:") that name the
-- account a row belongs to without being the account's to read: the
-- bridge's queue, the request log.  Those grant nothing to the API roles.
CREATE TEMP VIEW tenant_tables AS
	SELECT c.oid AS relid, c.oid::regclass AS rel
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
	 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
	   AND a.attname = 'account_id' AND NOT a.attisdropped
	   AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'global:%';

SELECT ok(NOT has_table_privilege(r.rolname, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
		  AND NOT has_any_column_privilege(r.rolname, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'),
		  format('%s is global with an account_id: %s has no privilege on it', c.oid::regclass, r.rolname))
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'account_id' AND NOT a.attisdropped
 CROSS JOIN (VALUES ('eightms_anon'), ('eightms_user'), ('eightms_phone')) r(rolname)
 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
   AND coalesce(obj_description(c.oid, 'pg_class'), '') LIKE 'global:%';

SELECT cmp_ok((SELECT count(*) FROM tenant_tables), '>=', 4::bigint,
	'the guards see the tenant tables (account, member, invitation, session at least)');

-- Tables without account_id must say why: a comment starting "global:".
SELECT ok(coalesce(obj_description(c.oid, 'pg_class'), '') LIKE 'global:%',
		  format('%s has no account_id, so it must be a documented global table', c.oid::regclass))
  FROM pg_class c
 WHERE c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p')
   AND c.oid NOT IN (SELECT relid FROM tenant_tables);

-- Every table has a place on Citus (sql/distribute.sql): a table added
-- later must be given one, or eightms.distribute() refuses.
SELECT ok(d.placement IN ('distributed', 'reference', 'local'),
		  format('%s has a placement in eightms.distribution_plan()', d.table_name))
  FROM eightms.distribution_plan() d;
SELECT is((SELECT d.table_name FROM eightms.distribution_plan() d ORDER BY d.step LIMIT 1),
		  'eightms.account'::regclass, 'eightms.account is distributed first: every tenant table refers to it');
SELECT CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
			THEN skip('Citus is installed: test/citus/bridge_once.sh checks eightms.distribute() on a cluster')
			ELSE throws_ok('SELECT * FROM eightms.distribute()', '55000', 'Citus is not installed in this database',
						   'eightms.distribute() without Citus refuses with 55000') END;

SELECT ok(c.relrowsecurity AND c.relforcerowsecurity,
		  format('%s has row-level security enabled and forced', t.rel))
  FROM tenant_tables t JOIN pg_class c ON c.oid = t.relid;

-- pg_dump leaves out an extension table's rows unless it is marked: every
-- table is, with its sequences, but the registries CREATE EXTENSION fills.
SELECT ok(c.oid = ANY (e.extconfig),
		  format('%s is marked for pg_dump (pg_extension_config_dump)', c.oid::regclass))
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'eightms' AND c.relnamespace = 'eightms'::regnamespace AND c.relkind IN ('r', 'p', 'S')
   AND c.oid NOT IN ('eightms.scheduled_job'::regclass, 'eightms.sealed_column'::regclass,
					 'eightms.retention_rule'::regclass, 'eightms.data_column'::regclass);
SELECT ok(NOT ('eightms.scheduled_job'::regclass = ANY (e.extconfig) OR 'eightms.sealed_column'::regclass = ANY (e.extconfig)
			   OR 'eightms.retention_rule'::regclass = ANY (e.extconfig) OR 'eightms.data_column'::regclass = ANY (e.extconfig)),
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

-- No role but a superuser or a table's owner (and roles that can become
-- it) may INSERT or UPDATE a column that names a role, a function, a
-- relation or a privilege, or holds SQL that a more privileged process
-- later runs: whoever could write it could have that process act for them
-- (issue 17, finding 1: a callback and enqueued_by written by eightms_dba
-- made it superuser).  By type, any column of an OID or reg* type or an
-- ACL, or an array or domain of one; by name, the columns below, whose type
-- (text, text[], a role as text) says nothing.  has_column_privilege
-- answers for table- and column-level grants alike, and through role
-- membership.  PostgreSQL's predefined roles (pg_write_all_data) are left
-- out: granting one is the cluster administrator's own choice, and a role
-- holding one is still checked.  Every relation in eightms and
-- eightms_api, and any other the extension owns, is checked, so a table
-- added later is covered too.
CREATE TEMP TABLE names_code (rel text, col name, why text);
INSERT INTO names_code VALUES
	('eightms.http_request', 'callback', 'the function the bridge''s recorder calls with the outcome'),
	('eightms.http_request', 'enqueued_by', 'the role that callback runs as'),
	('eightms.scheduled_job', 'command', 'SQL that schedule_jobs() gives pg_cron, run as the superuser who scheduled it'),
	('eightms.sealed_column', 'context_sql', 'an SQL expression rotate_seals() (SECURITY DEFINER) evaluates'),
	('eightms.sealed_column', 'table_name', 'the table rotate_seals() rewrites'),
	('eightms.sealed_column', 'column_name', 'the column rotate_seals() rewrites'),
	('eightms.member', 'role', 'what the member may do in the account (owner, admin, agent)'),
	('eightms.invitation', 'role', 'the member role accepting the invitation grants'),
	('eightms.pairing_code', 'code_hash', 'a credential: its code mints a device token for the account'),
	('eightms.pairing_code', 'used_at', 'whether that credential is spent'),
	('eightms.phone', 'token_version', 'which of the phone''s device tokens the pre-request hook honours'),
	('eightms.phone', 'unpaired_at', 'whether the phone''s device token is honoured at all');

SELECT is((SELECT string_agg(format('%s.%s', n.rel, n.col), ', ') FROM names_code n
			WHERE NOT EXISTS (SELECT FROM pg_attribute a
							   WHERE a.attrelid = to_regclass(n.rel) AND a.attname = n.col AND NOT a.attisdropped)),
		  NULL, 'every column the list of names-code columns names exists (the list has not gone stale)');

CREATE TEMP VIEW guarded_columns AS
	SELECT c.oid AS relid, c.relowner, a.attnum, a.attname
	  FROM pg_class c
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	  JOIN pg_type t ON t.oid = a.atttypid
	  -- A domain's base type, then an array's element type.
	  JOIN pg_type b ON b.oid = CASE WHEN t.typbasetype <> 0 THEN t.typbasetype ELSE t.oid END
	  JOIN pg_type e ON e.oid = CASE WHEN b.typelem <> 0 AND b.typlen = -1 THEN b.typelem ELSE b.oid END
	 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
	   AND (c.relnamespace IN ('eightms'::regnamespace, 'eightms_api'::regnamespace)
			OR EXISTS (SELECT FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
						WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
						  AND d.refclassid = 'pg_extension'::regclass AND x.extname = 'eightms'
						  AND d.deptype = 'e'))
	   AND (e.oid IN ('oid'::regtype, 'regrole'::regtype, 'regproc'::regtype, 'regprocedure'::regtype,
					  'regclass'::regtype, 'regnamespace'::regtype, 'regoper'::regtype, 'regoperator'::regtype,
					  'regtype'::regtype, 'regconfig'::regtype, 'regdictionary'::regtype,
					  'regcollation'::regtype, 'aclitem'::regtype)
			OR (c.oid, a.attname) IN (SELECT to_regclass(n.rel), n.col FROM names_code n));

SELECT cmp_ok((SELECT count(*) FROM guarded_columns), '>=', (SELECT count(*) FROM names_code),
			  'the writable-column guard sees every listed column, and those of OID, reg* or ACL type');

SELECT is((SELECT string_agg(format('%s may %s %s.%s', r.rolname, p.priv, g.relid::regclass, g.attname),
							 '; ' ORDER BY r.rolname, g.relid::regclass::text, g.attname, p.priv)
			 FROM guarded_columns g
			CROSS JOIN pg_roles r
			CROSS JOIN (VALUES ('INSERT'), ('UPDATE')) p(priv)
			WHERE NOT r.rolsuper
			  AND r.rolname NOT LIKE 'pg\_%'
			  AND NOT pg_has_role(r.oid, g.relowner, 'MEMBER')
			  AND has_column_privilege(r.oid, g.relid, g.attnum, p.priv)),
		  NULL,
		  'no role but a superuser or the owner may write a column that names a role, a function, a relation or a privilege, or holds SQL run later');

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
