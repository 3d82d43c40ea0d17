#!/usr/bin/env python3
"""Differential check of the CSV reader against Python's csv module.

Generates COUNT inputs (seed SEED) from the pieces CSV files are made of
(fields plain and quoted, doubled quotes, the three delimiters, CR, LF and
CRLF, empty lines, non-ASCII text, a BOM, stray quotes), runs them through
test/csv/csv_cli (path given), and compares each record with what
csv.reader(io.StringIO(text, newline='')) reads, Python being told the
delimiter the reader used:

- the records start on the same lines (Python's empty rows for empty lines
  are the lines the reader skips);
- every record the reader accepts has Python's fields, byte for byte;
- the reader rejects a record only for text after a closing quote or an
  unterminated quote (where Python, not strict, goes on and joins the text),
  and then Python's record either has such text or runs to the end;
- detection picks the header's delimiter when it has two columns or more.

Prints one line per disagreement (at most 10) and "N passed, N failed".
"""
import csv
import io
import random
import re
import subprocess
import sys

PIECES = ['a', 'b', 'xyz', ' ', '1', 'é', '€', '😀', ',', ';', '\t', '"', '""',
          '\n', '\r\n', '\r', "'"]
DELIMS = [',', ';', '\t']


def gen_field(r):
    k = r.random()
    if k < 0.4:
        return ''.join(r.choice(['a', 'b', ' ', '1', 'é', '😀', "'"]) for _ in range(r.randint(0, 4)))
    if k < 0.8:
        inner = ''.join(r.choice(['a', ',', ';', '\t', '""', '\n', '\r\n', '\r', 'é', ' '])
                        for _ in range(r.randint(0, 5)))
        return '"' + inner + '"'
    return ''.join(r.choice(PIECES) for _ in range(r.randint(0, 4)))


def gen(r):
    d = r.choice(DELIMS)
    eol = r.choice(['\n', '\r\n', '\r'])
    ncols = r.randint(1, 4)
    lines = []
    for i in range(r.randint(1, 6)):
        if i > 0 and r.random() < 0.1:
            lines.append('')
            continue
        n = ncols if r.random() < 0.8 else r.randint(1, 5)
        if i == 0:
            # a header the detection can read: plain names
            lines.append(d.join('h%d' % j for j in range(ncols)))
        else:
            lines.append(d.join(gen_field(r) for _ in range(n)))
    text = (eol if r.random() < 0.9 else r.choice(['\n', '\r'])).join(lines)
    if r.random() < 0.7:
        text += eol
    data = text.encode('utf-8')
    if r.random() < 0.2:
        data = b'\xef\xbb\xbf' + data
    given = 0 if r.random() < 0.5 else ord(d)
    return d, given, data


def python_records(text, d):
    """(start line, fields) for each non-empty row, and the last line."""
    out = []
    rd = csv.reader(io.StringIO(text, newline=''), delimiter=d)
    prev = 0
    for row in rd:
        if row:
            out.append((prev + 1, row))
        prev = rd.line_num
    return out


def parse_dump(dump):
    recs = []
    for line in dump.split('\n'):
        if not line:
            continue
        if line.startswith('!'):
            recs.append(('fail', line))
            continue
        num, _, rest = line.partition(':')
        rest = rest[1:] if rest.startswith(' ') else rest
        if rest.startswith('! '):
            recs.append((int(num), ('error', rest.split()[1])))
            continue
        fields = []
        i = 0
        while i < len(rest):
            assert rest[i] == '[', rest
            j = i + 1
            buf = bytearray()
            while rest[j] != ']':
                if rest[j] == '\\':
                    buf.append(int(rest[j + 2:j + 4], 16))
                    j += 4
                else:
                    buf.append(ord(rest[j]))
                    j += 1
            fields.append(buf.decode('utf-8'))
            i = j + 2
        recs.append((int(num), fields))
    return recs


def main():
    cli, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    r = random.Random(seed)
    inputs = [gen(r) for _ in range(count)]
    stdin = b''.join(b'%d %d\n' % (given, len(data)) + data for _, given, data in inputs)
    out = subprocess.run([cli], input=stdin, stdout=subprocess.PIPE, check=True).stdout.decode('ascii')
    parts = re.split(r'^= (\d+)\n', out, flags=re.M)
    dumps, used = parts[0:-1:2], [chr(int(x)) for x in parts[1::2]]
    assert len(dumps) == count, (len(dumps), count)
    passed = failed = 0
    for (d, given, data), dump, u in zip(inputs, dumps, used):
        text = data.decode('utf-8-sig')
        ours = parse_dump(dump)
        problem = None
        header = text.replace('\r', '\n').split('\n')[0]
        if header.count(d) >= 1 and u != d:
            problem = 'used delimiter %r' % u
        d = u
        if problem:
            pass
        elif ours and ours[-1][0] == 'fail':
            # a header with a tie: only when detecting, and then Python has it too
            if given or ours[-1][1].split()[1] != 'ambiguous_delimiter':
                problem = 'failed: ' + ours[-1][1]
        else:
            theirs = python_records(text, d)
            if [n for n, _ in ours] != [n for n, _ in theirs]:
                problem = 'record lines %s, Python %s' % ([n for n, _ in ours], [n for n, _ in theirs])
            else:
                for (n, f), (_, pf) in zip(ours, theirs):
                    if isinstance(f, tuple):
                        if f[1] not in ('text_after_quote', 'unterminated_quote'):
                            problem = 'line %d rejected: %s' % (n, f[1])
                    elif f != pf:
                        problem = 'line %d: %r, Python %r' % (n, f, pf)
                    if problem:
                        break
        if problem:
            failed += 1
            if failed <= 10:
                print('# %r (delimiter %r, given %d): %s' % (data, d, given, problem))
        else:
            passed += 1
    print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
