#!/usr/bin/env python3
"""The transformer of test/citus/requests/transform.py: how it splits a
suite into statements and where it makes each one a request.  Prints
"N passed, N failed" (test/citus/transform.sh runs it in the Citus tier)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transform  # noqa: E402

BOUNDARY = 'SELECT pgrst.request_done(); COMMIT; SELECT pgrst.request_check(); BEGIN;'


class Split(unittest.TestCase):
    def bodies(self, text):
        return [b for k, _, b in transform.split(text) if k == 'sql']

    def test_dollar_quotes_and_strings_hold_semicolons(self):
        text = ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
                "SELECT 'a;b', $x$ ; $x$;\n")
        self.assertEqual(len(self.bodies(text)), 2)

    def test_gset_ends_a_statement(self):
        text = "SELECT 1 AS one \\gset\nSELECT :one;\n"
        self.assertEqual(self.bodies(text), ["SELECT 1 AS one \\gset\n", "SELECT :one;"])

    def test_comments_are_lead(self):
        items = transform.split("-- a; comment\nSELECT 1;\n")
        self.assertEqual(items[0], ('sql', '-- a; comment\n', 'SELECT 1;'))

    def test_parameters_are_no_dollar_quotes(self):
        self.assertEqual(len(self.bodies("PREPARE p AS SELECT $1;\nSELECT 2;\n")), 2)


class Transform(unittest.TestCase):
    SUITE = ("BEGIN;\nSELECT plan(1);\nSET LOCAL eightms.x = 1;\n"
             "SELECT pgrst.as_user('a');\nSELECT set_config('role', 'eightms_user', true);\n"
             "SELECT ok(true);\nSELECT pgrst.reset();\nSELECT 2;\nROLLBACK;\n")

    def test_lines_are_kept(self):
        out = transform.transform(self.SUITE)
        self.assertEqual(out.count('\n'), self.SUITE.count('\n') + 1)

    def test_every_statement_is_a_request(self):
        lines = transform.transform(self.SUITE).splitlines()
        self.assertEqual(lines[0], 'SELECT pgrst.clean_slate();')
        self.assertEqual(lines[1], 'BEGIN;')
        self.assertTrue(all(line.startswith(BOUNDARY) for line in lines[2:-1]), lines)
        self.assertEqual(lines[-1], 'COMMIT;')

    def test_settings_and_context_are_carried(self):
        lines = transform.transform(self.SUITE).splitlines()
        ok_line = [line for line in lines if 'ok(true)' in line][0]
        self.assertIn('SET LOCAL eightms.x = 1; SELECT pgrst.replay(); '
                      "SELECT set_config('role', 'eightms_user', true); " + transform.COORDINATOR + 'SELECT ok(true);',
                      ok_line)
        # A request (reset) ends the suite's own context, not its settings.
        last = [line for line in lines if line.endswith('SELECT 2;')][0]
        self.assertIn('SET LOCAL eightms.x = 1; SELECT pgrst.replay(); SELECT 2;', last)

    def test_schema_changes_end_in_one_rolled_back_transaction(self):
        suite = ("BEGIN;\nSELECT pgrst.as_user('a');\nALTER TABLE eightms.phone ADD COLUMN p text;\n"
                 "SELECT 1;\nROLLBACK;\n")
        lines = transform.transform(suite).splitlines()
        self.assertTrue(lines[3].startswith(BOUNDARY))
        self.assertEqual(lines[4:], ['SELECT 1;', 'ROLLBACK;'])

    def test_temporary_objects_are_no_schema_change(self):
        self.assertEqual(transform.kind('CREATE FUNCTION pg_temp.f() RETURNS int AS $$ $$;'), 'statement')
        self.assertEqual(transform.kind('CREATE TEMP TABLE t AS SELECT 1;'), 'statement')
        self.assertEqual(transform.kind('CREATE TABLE public.t (a int);'), 'ddl')

    def test_each_statement_gexec_makes_is_a_request(self):
        suite = ("BEGIN;\nSELECT pgrst.as_user('a');\n"
                 "SELECT format('SELECT ok(%s)', n), 'SELECT ''it''''s'''\n  FROM generate_series(1, 2) n ORDER BY n DESC\n\\gexec\n"
                 "ROLLBACK;\n")
        out = transform.transform(suite)
        self.assertEqual(out.count('\n'), suite.count('\n') + 1)
        lines = out.splitlines()
        self.assertEqual(lines[-2], '\\gexec')
        query = '\n'.join(lines[3:-2])
        # psql runs what the query returns, row by row, column by column:
        # the query generates each statement with the request's prefix.
        self.assertTrue(query.startswith("SELECT '" + BOUNDARY + " SELECT pgrst.replay(); ' || g.value FROM"), query)
        self.assertIn("FROM (SELECT format('SELECT ok(%s)', n)", query)
        self.assertIn("ORDER BY n DESC) AS q) AS r", query)
        self.assertTrue(query.endswith('ORDER BY r.n, g.col'), query)
        # A quote in the prefix is doubled in the literal.
        quoted = transform.each_request("SET LOCAL x = 'y';", 'SELECT 1\n\\gexec\n')
        self.assertTrue(quoted.startswith("SELECT 'SET LOCAL x = ''y''; ' || g.value"), quoted)

    def test_set_config_of_a_setting_is_carried_until_reset(self):
        suite = ("BEGIN;\nSELECT set_config('eightms.cap', '3', true);\nSELECT pgrst.as_user('a');\n"
                 "SELECT 1;\nRESET eightms.cap;\nSELECT 2;\n"
                 "SELECT set_config('request.headers', '{}', true);\nSELECT 3;\nROLLBACK;\n")
        lines = transform.transform(suite).splitlines()
        self.assertIn("BEGIN; SELECT set_config('eightms.cap', '3', true); SELECT pgrst.replay(); SELECT 1;", lines[4])
        self.assertIn('BEGIN; SELECT pgrst.replay(); SELECT 2;', lines[6])
        # The request's identity is context: after the request, not before.
        self.assertIn("SELECT pgrst.replay(); SELECT set_config('request.headers', '{}', true); SELECT 3;", lines[8])

    def test_assertions_are_evaluated_on_the_coordinator(self):
        suite = ("BEGIN;\nSELECT plan(2);\nSELECT pgrst.as_user('a');\n"
                 "SELECT is((SELECT count(*) FROM eightms.message WHERE account_id = 'x'), 0::bigint);\n"
                 "SELECT count(*) FROM eightms.message;\nALTER TABLE eightms.phone ADD COLUMN p text;\n"
                 "SELECT * FROM finish();\nROLLBACK;\n")
        lines = transform.transform(suite).splitlines()
        self.assertIn('SELECT pgrst.replay(); ' + transform.COORDINATOR + 'SELECT is((SELECT', lines[4])
        self.assertIn('SELECT pgrst.replay(); ' + transform.COORDINATOR + 'SELECT plan(2);', lines[2])
        # Not a request, nor what prints no TAP; after a schema change too.
        self.assertNotIn(transform.COORDINATOR, lines[3])
        self.assertNotIn(transform.COORDINATOR, lines[5])
        self.assertEqual(lines[7], transform.COORDINATOR + 'SELECT * FROM finish();')

    def test_the_hook_is_tried_between_transactions(self):
        # Neither in the statement's transaction (what it wrote there, the
        # hook may not read on Citus) nor in the next (a subtransaction's
        # SET LOCAL reaches no connection opened after it).
        line = transform.transform(self.SUITE).splitlines()[3]
        done, check, replay = (line.index(s) for s in ('request_done()', 'request_check()', 'replay()'))
        self.assertLess(line.index('COMMIT;'), check)
        self.assertLess(done, line.index('COMMIT;'))
        self.assertLess(check, line.index('BEGIN;'))
        self.assertLess(line.index('BEGIN;'), replay)

    def test_suites_without_requests_are_copied(self):
        suite = "BEGIN;\nSELECT 1;\nROLLBACK;\n"
        self.assertEqual(transform.transform(suite), 'SELECT pgrst.clean_slate();\n' + suite)


if __name__ == '__main__':
    result = unittest.main(exit=False, verbosity=0).result
    failed = len(result.failures) + len(result.errors)
    print(f'{result.testsRun - failed} passed, {failed} failed')
    sys.exit(1 if failed else 0)
