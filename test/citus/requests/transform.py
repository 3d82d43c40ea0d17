#!/usr/bin/env python3
"""test/citus/requests/transform.py: a pgTAP suite as PostgREST drives it.

The suites of test/pgtap each run in one transaction, rolled back at the
end, and play many PostgREST requests in a row inside it.  PostgREST
commits every request on its own, and on Citus that difference matters:
Citus opens one connection per node and role, so what one role (or a
SECURITY DEFINER function, as its owner) wrote in the open transaction
is invisible to, or refused for, another role's connection.  The Citus
tier (test/citus.sh) therefore runs a copy of each suite made by this
script, where every top-level statement is a transaction of its own:

  * before each statement after the suite's BEGIN, the previous one
    commits, whether the hook would now refuse the request is tried in a
    transaction of its own, and the next begins ("SELECT
    pgrst.request_done(); COMMIT; SELECT pgrst.request_check(); BEGIN;"),
    then the suite's own settings so far (SET LOCAL, or set_config(...)
    of anything but the request's identity) are issued
    again, then the request the suite is in (the last pgrst.as_user,
    as_phone, as_anon, as_token, request or request_token, until
    pgrst.reset()) is made again with pgrst.replay(), its pre-request hook
    and all, then the suite's own role statements and set_config(...) of
    the role, request.* and eightms.relayed_claims made since that
    request: one statement, one request, as PostgREST makes it;
  * a statement that makes psql run the statements it generates (\gexec)
    makes each of them a request of its own, in the order they come;
  * an assertion (a SELECT of a pgTAP function) is evaluated on the
    coordinator: pgTAP keeps its plan and counters in the session's
    temporary tables, which a worker does not have, and Citus would send an
    assertion whose subqueries all read one shard ("SELECT is((SELECT
    count(*) FROM eightms.message WHERE account_id = ...), ...)") to that
    shard's worker whole.  A WITH naming a table of the coordinator's own
    (pgrst.coordinator) is put before it, which Citus never sends to a
    worker: it plans the subqueries on their own and the assertion where
    the session is;
  * the suite's final ROLLBACK becomes COMMIT;
  * from the first schema change a suite makes to a permanent object
    (CREATE, ALTER, DROP, COMMENT of anything but a pg_temp one) on, the
    rest of the suite runs in one transaction and is rolled back as the
    suite wrote it: such changes must not outlive the suite;
  * a suite without a request (no pgrst. call) or not in one transaction
    (BEGIN first, ROLLBACK last) is copied as it is;
  * every suite starts with pgrst.clean_slate(): the tables as installed.

The inserted text goes on the statement's own first line, so psql's line
numbers in errors are the original suite's.  pgrst.request_done,
pgrst.request_check, pgrst.replay, pgrst.clean_slate and pgrst.coordinator
are in test/citus/requests/requests.sql.

  transform.py SRC_DIR OUT_DIR    every *.sql of SRC_DIR into OUT_DIR
"""
import os
import re
import sys

# psql meta-commands that end the statement in the query buffer.
SENDING_META = re.compile(r'\\(g|gx|gset|gexec|gdesc|crosstabview)\b')


def split(text):
    """The script as items: ('sql', lead, body) for each statement (lead:
    the whitespace and comments before it, body: the statement and its
    terminator, ';' or a sending meta-command line), ('meta', lead, line)
    for other meta-commands and ('tail', text, '') for what follows the last
    statement."""
    items = []
    i = 0
    n = len(text)
    start = 0          # where the current item's lead begins
    body = None        # where the statement's first token is, if begun

    def flush(kind, end):
        nonlocal start, body
        b = body if body is not None else end
        items.append((kind, text[start:b], text[b:end]))
        start = end
        body = None

    while i < n:
        c = text[i]
        if text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j + 1
        elif text.startswith('/*', i):
            depth = 0
            while i < n:
                if text.startswith('/*', i):
                    depth += 1
                    i += 2
                elif text.startswith('*/', i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    i += 1
        elif c.isspace():
            i += 1
        elif c == '\\':
            j = text.find('\n', i)
            j = n if j < 0 else j + 1
            if body is not None and SENDING_META.match(text, i):
                i = j
                flush('sql', i)
            elif body is None:
                body = i
                i = j
                flush('meta', i)
            else:
                i = j
        else:
            if body is None:
                body = i
            if c == "'" or c == '"':
                j = i + 1
                while j < n:
                    if text[j] == c:
                        if j + 1 < n and text[j + 1] == c:
                            j += 2
                            continue
                        break
                    # E'...' strings: a backslash escapes the next character.
                    if c == "'" and text[j] == '\\' and i > 0 and text[i - 1] in 'eE':
                        j += 1
                    j += 1
                i = j + 1
            elif c == '$':
                m = re.match(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$', text[i:])
                if m and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == '_')):
                    close = text.find(m.group(0), i + len(m.group(0)))
                    i = n if close < 0 else close + len(m.group(0))
                else:
                    i += 1
            elif c == ';':
                i += 1
                flush('sql', i)
            else:
                i += 1
    items.append(('tail', text[start:], ''))
    return items


def words(body):
    """The statement's text in upper case with runs of blanks as one."""
    return ' '.join(body.split()).upper()


HELPER = re.compile(r'^SELECT (\* FROM )?PGRST\.(AS_USER|AS_PHONE|AS_ANON|AS_TOKEN|RESET|REQUEST|REQUEST_TOKEN)\(')
# A statement that prints TAP: a SELECT of a pgTAP function.
ASSERTION = re.compile(r'^SELECT (\* FROM )?(PLAN|NO_PLAN|FINISH|DIAG|OK|IS|ISNT|LIKE|UNLIKE|ALIKE|UNALIKE|'
                       r'MATCHES|DOESNT_MATCH|IMATCHES|DOESNT_IMATCH|CMP_OK|PASS|FAIL|IS_EMPTY|ISNT_EMPTY|'
                       r'RESULTS_EQ|RESULTS_NE|SET_EQ|SET_NE|SET_HAS|SET_HASNT|BAG_EQ|BAG_NE|BAG_HAS|BAG_HASNT|'
                       r'ROW_EQ|THROWS_OK|THROWS_LIKE|THROWS_ILIKE|THROWS_MATCHING|THROWS_IMATCHING|LIVES_OK|'
                       r'PERFORMS_OK|HAS_[A-Z_]+|HASNT_[A-Z_]+|COL_[A-Z_]+|FK_OK|IS_[A-Z_]+|ISNT_[A-Z_]+)\s*\(')
# set_config of a setting, by name; the request's identity (its role, its
# claims and headers, the claims relayed to the workers) is context, any
# other setting the suite's own configuration, as SET LOCAL.
SET_CONFIG = re.compile(r"^SELECT SET_CONFIG\('([A-Z0-9_.]+)'")
IDENTITY = re.compile(r'^(ROLE|REQUEST\..*|EIGHTMS\.RELAYED_CLAIMS)$')
COORDINATOR = 'WITH pgrst_coordinator AS (SELECT FROM pgrst.coordinator) '
PERMANENT_DDL = re.compile(r'^(CREATE|ALTER|DROP|COMMENT ON) ')
TEMP_DDL = re.compile(r'^(CREATE (OR REPLACE )?(TEMP|TEMPORARY) |CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|VIEW) PG_TEMP\.)')


def kind(body):
    """What a top-level statement is to the transformation."""
    w = words(body)
    if w in ('BEGIN;', 'START TRANSACTION;'):
        return 'begin'
    if w in ('ROLLBACK;', 'ABORT;'):
        return 'rollback'
    if HELPER.match(w):
        return 'request'
    if ASSERTION.match(w):
        return 'assertion'
    if re.match(r'^RESET ROLE;', w):
        return 'reset-role'
    if re.match(r'^SET (LOCAL )?ROLE ', w):
        return 'context'
    m = SET_CONFIG.match(w)
    if m:
        return 'context' if IDENTITY.match(m.group(1)) else 'setting'
    if re.match(r'^SET LOCAL ', w):
        return 'setting'
    if re.match(r'^RESET ', w):
        return 'reset-setting'
    if PERMANENT_DDL.match(w) and not TEMP_DDL.match(w):
        return 'ddl'
    return 'statement'


def setting_name(body):
    w = words(body)
    m = re.match(r'^(SET LOCAL|RESET) ([A-Z0-9_.]+)', w) or SET_CONFIG.match(w)
    return m.group(m.lastindex) if m else None


def on_coordinator(what, body):
    """The statement, evaluated where the session is if it is an assertion."""
    return COORDINATOR + body if what == 'assertion' else body


def each_request(prefix, body):
    """The statement after the request's prefix; for one whose statements
    psql runs (\\gexec), each of those after a prefix of its own instead, in
    the order psql would run them: row by row as the query returns them
    (numbered as they come out of its ORDER BY, which the subquery keeps as
    it is planned on its own), then column by column."""
    gexec = re.search(r'\\gexec\s*$', body)
    if not gexec:
        return prefix + ' ' + body
    query = body[:gexec.start()].rstrip().rstrip(';')
    quoted = "'" + (prefix + ' ').replace("'", "''") + "'"
    return ('SELECT ' + quoted + ' || g.value FROM (SELECT row_number() OVER () AS n, q FROM (' + query + ') AS q) AS r,'
            ' LATERAL json_each_text(row_to_json(r.q)) WITH ORDINALITY AS g(key, value, col) ORDER BY r.n, g.col\n'
            + body[gexec.start():])


def one_line(body):
    return ' '.join(body.split())


def transformable(items):
    sql = [body for k, _, body in items if k == 'sql']
    return (bool(sql) and kind(sql[0]) == 'begin' and kind(sql[-1]) == 'rollback'
            and any('pgrst.' in body for body in sql))


def transform(text):
    items = split(text)
    out = ['SELECT pgrst.clean_slate();\n']
    if not transformable(items):
        out.append(text)
        return ''.join(out)
    sql_count = sum(1 for k, _, _ in items if k == 'sql')
    seen = 0
    began = False
    tail = False
    settings = []      # (name, SET LOCAL statement): issued again in every transaction
    context = []       # role and set_config statements since the last request
    for k, lead, body in items:
        if k != 'sql':
            out.append(lead + body)
            continue
        seen += 1
        what = kind(body)
        last = seen == sql_count
        if not began:
            began = what == 'begin'
            out.append(lead + body)
            continue
        if last and what == 'rollback':
            out.append(lead + (body if tail else body.replace(body.strip().rstrip(';'), 'COMMIT', 1)))
            continue
        if not tail:
            if what == 'ddl':
                tail = True
            prefix = ['SELECT pgrst.request_done();', 'COMMIT;', 'SELECT pgrst.request_check();', 'BEGIN;']
            prefix += [s for _, s in settings]
            prefix.append('SELECT pgrst.replay();')
            prefix += context
            out.append(lead + each_request(' '.join(prefix), on_coordinator(what, body)))
        else:
            out.append(lead + on_coordinator(what, body))
        if what == 'request':
            context = []
        elif what == 'reset-role':
            context = [c for c in context if not re.match(r'^SET (LOCAL )?ROLE |^SELECT SET_CONFIG\(\'ROLE\'', words(c))]
        elif what == 'context':
            context.append(one_line(body))
        elif what == 'setting':
            settings.append((setting_name(body), one_line(body)))
        elif what == 'reset-setting':
            name = setting_name(body)
            settings = [(n, s) for n, s in settings if n != name]
    return ''.join(out)


def main(argv):
    if len(argv) != 3:
        sys.exit('usage: transform.py SRC_DIR OUT_DIR')
    src, dst = argv[1:]
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if name.endswith('.sql'):
            with open(os.path.join(src, name)) as f:
                text = f.read()
            with open(os.path.join(dst, name), 'w') as f:
                f.write(transform(text))


if __name__ == '__main__':
    main(sys.argv)
