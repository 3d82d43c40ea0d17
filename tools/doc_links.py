#!/usr/bin/env python3
"""Check that every relative link of README.md, CHANGELOG.md, bench/README.md
and doc/*.md names a file of the repository and, with a #fragment, a heading
of that file (GitHub's anchors).  Usage: python3 tools/doc_links.py [REPO].
Exits 1 and lists each broken link otherwise."""
import re, os, sys, unicodedata
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
files = ['README.md', 'bench/README.md', 'CHANGELOG.md'] + ['doc/' + f for f in sorted(os.listdir(os.path.join(root, 'doc'))) if f.endswith('.md')]
def slug(h):
    h = h.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(' ', '-')
anchors = {}
for f in files:
    text = open(os.path.join(root, f)).read()
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    anchors[f] = {slug(m.group(2)) for m in re.finditer(r'^(#+) (.*)$', text, re.M)}
bad = 0
for f in files:
    text = open(os.path.join(root, f)).read()
    for m in re.finditer(r'\]\(([^)\s]+)\)', text):
        target = m.group(1)
        if re.match(r'[a-z]+:', target):
            continue
        path, _, frag = target.partition('#')
        full = os.path.normpath(os.path.join(os.path.dirname(os.path.join(root, f)), path)) if path else os.path.join(root, f)
        rel = os.path.relpath(full, root)
        if not os.path.exists(full):
            print(f"{f}: missing file {target}"); bad += 1; continue
        if frag and rel in anchors and frag not in anchors[rel]:
            print(f"{f}: missing anchor {target}"); bad += 1
print(f"{bad} broken links in {len(files)} files")
sys.exit(1 if bad else 0)
