#!/usr/bin/env bash
# The documentation points only at what the repository holds: every relative
# link and anchor of README.md, CHANGELOG.md, bench/README.md and doc/*.md
# resolves (tools/doc_links.py), and no source, script or doc cites the
# design document that lives outside the repository.
# Prints "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e
pass=0
fail=0

links() { python3 "$REPO/tools/doc_links.py" "$REPO"; }
check "every relative link and anchor in the docs resolves" links
# ../shared holds data the tests read (phone metadata), never a document to
# cite: a reader of the repository has only the repository.  The released
# 0.1.0 script is frozen as it was, citations and all.
no_outside_docs() {
	! grep -rnE 'DESIGN\.md|shared/citus/README|design card' \
		--include='*.c' --include='*.h' --include='*.sql' --include='*.sh' --include='*.md' \
		--include='*.pl' --include='*.py' --include='*.spec' "$REPO/src" "$REPO/sql" "$REPO/test" \
		"$REPO/bench" "$REPO/doc" "$REPO/README.md" "$REPO/tools" \
		| grep -v -e '^'"$REPO"'/test/extra.d/docs.sh:' -e '^'"$REPO"'/sql/versions/eightms--0\.1\.0\.sql:'
}
check "no file cites a document outside the repository" no_outside_docs

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
