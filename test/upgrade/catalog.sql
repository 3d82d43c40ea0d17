-- test/upgrade/catalog.sql: everything of eightms's in the current
-- database's catalog that an upgraded database must have exactly as a
-- fresh install has it, one line per fact, "category<TAB>fact", sorted.
-- test/t/008_upgrade.pl runs it in both and compares them category by
-- category.  Nothing here depends on OIDs, data or the order objects were
-- made in: a column's position is its rank among the table's live columns
-- (an upgrade that drops a column leaves a hole in attnum).  Run with
-- psql -X -At.
--
-- The schemas are the extension's own (eightms.control) and those it made.
CREATE TEMP VIEW ext AS
	SELECT e.oid, e.extname, e.extversion, e.extrelocatable, e.extnamespace, e.extconfig, e.extcondition
	  FROM pg_extension e WHERE e.extname = 'eightms';
CREATE TEMP VIEW ns AS
	SELECT n.oid, n.nspname FROM pg_namespace n
	 WHERE n.oid = (SELECT extnamespace FROM ext)
		OR EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
					AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = (SELECT oid FROM ext)
					AND d.deptype = 'e');
CREATE TEMP VIEW rel AS
	SELECT c.*, c.oid AS reloid, c.oid::regclass::text AS name FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns);
CREATE TEMP VIEW fn AS
	SELECT p.*, p.oid AS fnoid, p.oid::regprocedure::text AS name FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns);
-- The roles the extension creates (sql/schema.sql): cluster-wide, so the
-- harness reads them from the upgraded database before the fresh install
-- is made beside it.
CREATE TEMP VIEW role AS
	SELECT r.* FROM pg_roles r WHERE r.rolname LIKE 'eightms\_%' AND r.rolname <> 'eightms_authenticator';
-- Who a privilege goes to, by name: 0 is PUBLIC.
CREATE FUNCTION pg_temp.who(r oid) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(r)::text END $$;
-- An ACL as sorted "grantee:privilege[*] from grantor" items; a NULL ACL is
-- the default one for its kind of object (functions: EXECUTE to PUBLIC).
CREATE FUNCTION pg_temp.acl(a aclitem[]) RETURNS text LANGUAGE sql STABLE
	AS $$
	SELECT coalesce(string_agg(i, ' ' ORDER BY i COLLATE "C"), '(none)')
	  FROM (SELECT pg_temp.who(x.grantee) || ':' || x.privilege_type
				   || CASE WHEN x.is_grantable THEN '*' ELSE '' END || ' from ' || pg_temp.who(x.grantor) AS i
			  FROM aclexplode(a) x) s
	$$;
-- Whitespace runs as one space, so a definition stays on one line.
CREATE FUNCTION pg_temp.flat(t text) RETURNS text LANGUAGE sql IMMUTABLE
	AS $$ SELECT regexp_replace(btrim(t), '\s+', ' ', 'g') $$;

WITH facts(category, fact) AS (
	-- The extension itself and its configuration tables (what pg_dump keeps).
	SELECT 'extension', format('%s %s relocatable=%s schema=%s', extname, extversion, extrelocatable,
							   extnamespace::regnamespace)
	  FROM ext
	UNION ALL
	SELECT 'extension', format('config %s condition %L', c::regclass, coalesce(w, ''))
	  FROM ext, unnest(extconfig, extcondition) AS u(c, w)
	UNION ALL
	SELECT 'extension', format('requires %s', r.extname)
	  FROM ext JOIN pg_depend d ON d.classid = 'pg_extension'::regclass AND d.objid = ext.oid
							  AND d.refclassid = 'pg_extension'::regclass
	  JOIN pg_extension r ON r.oid = d.refobjid

	-- Every member object.
	UNION ALL
	SELECT 'members', pg_describe_object(d.classid, d.objid, d.objsubid)
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'

	UNION ALL
	SELECT 'schemas', format('%s owner=%s acl=%s', nspname, pg_get_userbyid(n.nspowner),
							 pg_temp.acl(coalesce(n.nspacl, acldefault('n', n.nspowner))))
	  FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)

	-- Tables, views, sequences, indexes, composite types: their kind and
	-- options, row-level security, owner; views' definitions.
	UNION ALL
	SELECT 'relations', format('%s kind=%s persistence=%s am=%s options=%s rls=%s forced=%s replident=%s owner=%s',
							   r.name, r.relkind, r.relpersistence, coalesce(am.amname, '-'),
							   coalesce((SELECT string_agg(o, ',' ORDER BY o) FROM unnest(r.reloptions) o), '-'),
							   r.relrowsecurity, r.relforcerowsecurity, r.relreplident, pg_get_userbyid(r.relowner))
	  FROM rel r LEFT JOIN pg_am am ON am.oid = r.relam
	 WHERE r.relkind <> 'i' AND r.relkind <> 'I'
	UNION ALL
	SELECT 'relations', format('%s view %s', r.name, pg_temp.flat(pg_get_viewdef(r.reloid)))
	  FROM rel r WHERE r.relkind IN ('v', 'm')

	-- Columns, in their order.
	UNION ALL
	SELECT 'columns', format('%s #%s %s %s notnull=%s default=%s generated=%s identity=%s collation=%s storage=%s stats=%s',
							 r.name, row_number() OVER (PARTITION BY r.reloid ORDER BY a.attnum),
							 a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
							 CASE WHEN a.attgenerated = '' THEN coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-') ELSE '-' END,
							 CASE WHEN a.attgenerated = '' THEN '-'
								  ELSE a.attgenerated::text || ' ' || pg_get_expr(ad.adbin, ad.adrelid) END,
							 coalesce(nullif(a.attidentity, ''), '-'),
							 coalesce(co.collname, '-'), a.attstorage, a.attstattarget)
	  FROM rel r
	  JOIN pg_attribute a ON a.attrelid = r.reloid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	  LEFT JOIN pg_collation co ON co.oid = a.attcollation
	 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')

	UNION ALL
	SELECT 'constraints', format('%s %s %s', coalesce(c.conrelid::regclass::text, c.contypid::regtype::text),
								 c.conname, pg_get_constraintdef(c.oid))
	  FROM pg_constraint c WHERE c.connamespace IN (SELECT oid FROM ns)

	UNION ALL
	SELECT 'indexes', format('%s clustered=%s', pg_get_indexdef(i.indexrelid), i.indisclustered)
	  FROM pg_index i JOIN rel r ON r.reloid = i.indrelid

	UNION ALL
	SELECT 'policies', format('%s.%s %s %s roles=%s cmd=%s using=%s check=%s', p.schemaname, p.tablename,
							  p.policyname, p.permissive, (SELECT string_agg(o, ',' ORDER BY o) FROM unnest(p.roles) o), p.cmd,
							  coalesce(pg_temp.flat(p.qual), '-'), coalesce(pg_temp.flat(p.with_check), '-'))
	  FROM pg_policies p WHERE p.schemaname IN (SELECT nspname FROM ns)

	UNION ALL
	SELECT 'triggers', format('%s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
	  FROM pg_trigger t JOIN rel r ON r.reloid = t.tgrelid WHERE NOT t.tgisinternal
	UNION ALL
	SELECT 'triggers', format('rule %s on %s: %s', ru.rulename, r.name, pg_temp.flat(pg_get_ruledef(ru.oid)))
	  FROM pg_rewrite ru JOIN rel r ON r.reloid = ru.ev_class WHERE ru.rulename <> '_RETURN'

	-- Functions: signature with names and defaults, result, and how they
	-- run; the body as its md5 (a C function's is its symbol).
	UNION ALL
	SELECT 'functions', format('%s kind=%s args=(%s) returns=%s language=%s volatility=%s strict=%s secdef=%s '
							   'leakproof=%s parallel=%s cost=%s rows=%s config=%s support=%s bin=%s owner=%s body=%s',
							   f.name, f.prokind, pg_get_function_arguments(f.fnoid),
							   coalesce(pg_get_function_result(f.fnoid), '-'), l.lanname, f.provolatile,
							   f.proisstrict, f.prosecdef, f.proleakproof, f.proparallel, f.procost, f.prorows,
							   coalesce(array_to_string(f.proconfig, ','), '-'), f.prosupport,
							   coalesce(f.probin, '-'), pg_get_userbyid(f.proowner), md5(f.prosrc))
	  FROM fn f JOIN pg_language l ON l.oid = f.prolang

	UNION ALL
	SELECT 'sequences', format('%s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
							   s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
							   s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
							   coalesce((SELECT d.refobjid::regclass || '.' || a.attname
										   FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
										  WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
											AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '-'))
	  FROM pg_sequence s JOIN rel r ON r.reloid = s.seqrelid

	UNION ALL
	SELECT 'types', format('%s type=%s %s', t.oid::regtype, t.typtype,
						   CASE t.typtype
							   WHEN 'e' THEN (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
							   WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod) || ' notnull=' || t.typnotnull
											 || ' default=' || coalesce(t.typdefault, '-')
							   ELSE '' END)
	  FROM pg_type t
	 WHERE t.typnamespace IN (SELECT oid FROM ns)
	   -- Row types and arrays come with their table or type.
	   AND t.typtype IN ('e', 'd', 'b', 'r', 'm') AND t.typelem = 0

	-- Privileges on every object, column privileges too.
	UNION ALL
	SELECT 'grants', format('%s %s', r.name, pg_temp.acl(coalesce(r.relacl,
							acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner))))
	  FROM rel r WHERE r.relkind NOT IN ('i', 'I', 'c', 't')
	UNION ALL
	SELECT 'grants', format('%s.%s %s', r.name, a.attname, pg_temp.acl(a.attacl))
	  FROM rel r JOIN pg_attribute a ON a.attrelid = r.reloid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE a.attacl IS NOT NULL
	UNION ALL
	SELECT 'grants', format('function %s %s', f.name, pg_temp.acl(coalesce(f.proacl, acldefault('f', f.proowner))))
	  FROM fn f
	UNION ALL
	SELECT 'grants', format('type %s %s', t.oid::regtype, pg_temp.acl(coalesce(t.typacl, acldefault('T', t.typowner))))
	  FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM ns) AND t.typacl IS NOT NULL
	UNION ALL
	SELECT 'grants', format('default privileges of %s in %s on %s: %s', pg_get_userbyid(d.defaclrole),
							coalesce(d.defaclnamespace::regnamespace::text, '(all schemas)'), d.defaclobjtype,
							pg_temp.acl(d.defaclacl))
	  FROM pg_default_acl d WHERE d.defaclnamespace IN (SELECT oid FROM ns)

	-- Comments on anything of the extension's, and on its roles.
	UNION ALL
	SELECT 'comments', format('%s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
	  FROM pg_description d
	 WHERE (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT reloid FROM rel))
		OR (d.classoid = 'pg_proc'::regclass AND d.objoid IN (SELECT fnoid FROM fn))
		OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM ns))
		OR (d.classoid = 'pg_type'::regclass AND d.objoid IN (SELECT oid FROM pg_type WHERE typnamespace IN (SELECT oid FROM ns)))
		OR (d.classoid = 'pg_constraint'::regclass AND d.objoid IN (SELECT oid FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)))
		OR (d.classoid = 'pg_trigger'::regclass AND d.objoid IN (SELECT t.oid FROM pg_trigger t JOIN rel r ON r.reloid = t.tgrelid))
		OR (d.classoid = 'pg_policy'::regclass AND d.objoid IN (SELECT p.oid FROM pg_policy p JOIN rel r ON r.reloid = p.polrelid))
		OR (d.classoid = 'pg_extension'::regclass AND d.objoid IN (SELECT oid FROM ext))
	UNION ALL
	SELECT 'comments', format('role %s: %s', r.rolname, shobj_description(r.oid, 'pg_authid'))
	  FROM role r WHERE shobj_description(r.oid, 'pg_authid') IS NOT NULL

	UNION ALL
	SELECT 'roles', format('%s super=%s inherit=%s createrole=%s createdb=%s login=%s replication=%s bypassrls=%s '
						   'connlimit=%s config=%s', r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
						   r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
						   coalesce(array_to_string(r.rolconfig, ','), '-'))
	  FROM role r
	UNION ALL
	SELECT 'roles', format('%s member of %s admin=%s', pg_get_userbyid(m.member), pg_get_userbyid(m.roleid), m.admin_option)
	  FROM pg_auth_members m WHERE m.roleid IN (SELECT oid FROM role) AND m.member IN (SELECT oid FROM role)
)
SELECT category || E'\t' || fact FROM facts ORDER BY category COLLATE "C", fact COLLATE "C";

-- The rows the install script writes: every member table that is not a
-- configuration table holds only what the script put there (pg_dump leaves
-- such rows out, CREATE EXTENSION writes them again), e.g. the job and
-- sealed-column registries.  Rows naming tables outside the extension are
-- a user's own registrations (a sealed column of theirs), not the script's.
SELECT format($q$SELECT 'registry' || E'\t' || %L || ' ' || j FROM (SELECT to_jsonb(t)::text AS j FROM %s t %s) s ORDER BY s.j COLLATE "C"$q$,
			  r.name, r.name,
			  CASE WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = r.reloid AND a.attname = 'table_name'
								   AND a.atttypid = 'regclass'::regtype)
				   THEN 'WHERE t.table_name::oid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns))'
				   ELSE '' END)
  FROM rel r, ext
 WHERE r.relkind = 'r' AND NOT (r.reloid = ANY (coalesce(ext.extconfig, '{}')))
   AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = r.reloid
				AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
 ORDER BY r.name COLLATE "C"
\gexec
