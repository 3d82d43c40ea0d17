-- eightms.upgrade_step(): how an upgrade script changes an existing table
-- (doc/developing.md, "An upgrade script section").  On one server, without
-- Citus, it runs the statement; on a cluster test/citus/upgrade_distributed.sh
-- checks it.  The statement names every object by schema: the step runs with
-- search_path = pg_catalog, pg_temp.
CREATE TABLE public.upgrade_step_t (id integer PRIMARY KEY);
INSERT INTO public.upgrade_step_t VALUES (1), (2);
SELECT eightms.upgrade_step('public.upgrade_step_t',
	$$ALTER TABLE public.upgrade_step_t ADD COLUMN note text NOT NULL DEFAULT 'added'$$);
SELECT eightms.upgrade_step('public.upgrade_step_t',
	$$CREATE INDEX upgrade_step_t_note_idx ON public.upgrade_step_t (note)$$);
SELECT eightms.upgrade_step('public.upgrade_step_t',
	$$UPDATE public.upgrade_step_t SET note = 'changed' WHERE id = 2$$);
SELECT * FROM public.upgrade_step_t ORDER BY id;
SELECT indexname FROM pg_indexes WHERE tablename = 'upgrade_step_t' ORDER BY 1;
-- A statement that fails fails the step, and so the update.
SELECT eightms.upgrade_step('public.upgrade_step_t',
	$$ALTER TABLE public.upgrade_step_t ADD COLUMN note text$$);
-- A table that does not exist is refused before anything runs.
SELECT eightms.upgrade_step('public.no_such_table', $$DROP TABLE public.upgrade_step_t$$);
-- For superusers only: PUBLIC has no EXECUTE, and a grant made by mistake
-- still finds the function refusing.
CREATE ROLE upgrade_step_nobody;
GRANT USAGE ON SCHEMA eightms TO upgrade_step_nobody;
SET ROLE upgrade_step_nobody;
SELECT eightms.upgrade_step('public.upgrade_step_t', $$DROP TABLE public.upgrade_step_t$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION eightms.upgrade_step(regclass, text) TO upgrade_step_nobody;
SET ROLE upgrade_step_nobody;
\set VERBOSITY default
SELECT eightms.upgrade_step('public.upgrade_step_t', $$DROP TABLE public.upgrade_step_t$$);
RESET ROLE;
SELECT count(*) AS rows_left FROM public.upgrade_step_t;
REVOKE ALL ON FUNCTION eightms.upgrade_step(regclass, text) FROM upgrade_step_nobody;
REVOKE USAGE ON SCHEMA eightms FROM upgrade_step_nobody;
DROP ROLE upgrade_step_nobody;
DROP TABLE public.upgrade_step_t;
