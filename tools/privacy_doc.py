#!/usr/bin/env python3
"""Render doc/privacy.md's tables from the registry, or check them.

The tables of personal data and of retention rules in doc/privacy.md sit
between marker comments and are generated from eightms.data_column and
eightms.retention_rule of a database where the tree's eightms is installed
(psql, with the usual libpq environment: PGHOST, PGPORT, PGUSER,
PGDATABASE).

    tools/privacy_doc.py --write doc/privacy.md   # regenerate the tables
    tools/privacy_doc.py --check doc/privacy.md   # exit 1 when they differ
"""
import subprocess
import sys

PERSONAL = """
SELECT format('| `%s.%s` | %s | %s | %s | %s |', table_name, column_name, class, subject, retention, reason)
  FROM eightms.data_column
 WHERE class <> 'operational'
 ORDER BY table_name, column_name
"""

RETENTION = """
SELECT format('| `%s` | %s | %s | %s | %s |', rule_name, covers, coalesce(default_keep::text, 'no age limit'),
              counted_from, reason)
  FROM eightms.retention_rule
 ORDER BY rule_name
"""

TABLES = {
    "personal-data": ("| column | class | subject | retention rule | what |\n|---|---|---|---|---|", PERSONAL),
    "retention": ("| rule | covers | kept (default) | counted from | why |\n|---|---|---|---|---|", RETENTION),
}


def query(sql):
    out = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return out.rstrip("\n")


def render(text):
    for name, (head, sql) in TABLES.items():
        start = "<!-- registry:%s -->" % name
        end = "<!-- /registry:%s -->" % name
        i = text.find(start)
        j = text.find(end)
        if i < 0 or j < i:
            sys.exit("privacy_doc: markers %s ... %s not found" % (start, end))
        text = text[:i + len(start)] + "\n" + head + "\n" + query(sql) + "\n" + text[j:]
    return text


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--write", "--check"):
        sys.exit(__doc__)
    path = sys.argv[2]
    with open(path, encoding="utf-8") as f:
        old = f.read()
    new = render(old)
    if sys.argv[1] == "--write":
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        return 0
    if new != old:
        import difflib
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   path, "from the registry"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
