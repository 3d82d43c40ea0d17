#!/usr/bin/env bash
# test/citus/upgrade_distributed.sh: ALTER EXTENSION eightms UPDATE on a
# cluster already distributed by eightms.distribute(), as every release
# after 0.2.0 must allow (doc/scale-out.md, "Upgrade a cluster").
#
# A private copy of PostgreSQL with Citus and this tree's build, and in it,
# only there, a throwaway next version (0.2.1) whose update script is
# written as doc/developing.md tells a release's author to write one: a
# column with a default on a distributed table, an index, a data change of
# a distributed table, each through eightms.upgrade_step(); a new tenant
# table; a replaced function and a new SQL function that reads the new
# column (created on every node, so the workers' copies of the table must
# have it by then).  A coordinator and two workers of its own run 0.2.0,
# distributed by eightms.distribute() and filled through the API, then:
# the same changes written directly in a script (what a release could not
# ship) are refused and leave every node as it was; ALTER EXTENSION eightms
# UPDATE TO '0.2.1' and eightms.distribute(), as the DBA's procedure says.
# Checks: the version on every node, the column, its default and the data
# change on every shard, the index on every shard, the new table
# distributed with account, the replaced function on every node, the rows
# from before, and requests through the API (send, claim, report).
#
# Run by the Citus tier (test/citus.sh) with EIGHTMS_CITUS_DIR and
# EIGHTMS_CITUS_PORT; its own nodes take the coordinator's port + 50 to
# + 52, under $EIGHTMS_CITUS_DIR/upgrade-next.  EIGHTMS_TEST_ROOT is the
# private tree this tree's build is installed in.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e

UT=${EIGHTMS_CITUS_DIR:?}/upgrade-next
NODE_OFFSET=50
DB=eightms_next
acct='' other='' token=''
source "$REPO/test/citus/upgrade-nodes.bash"

# ---- a private tree: PostgreSQL with Citus, this build, and 0.2.1 ---------------
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/eightms.control")
next=0.2.1
ext=$UT/root/usr/share/postgresql/15/extension
citus_stop
rm -rf "$UT"
mkdir -p "$UT"
chmod 755 "$UT"
copy_postgres "$UT/root"
check "this tree's build ($version) goes into a private tree with Citus" bash -c '
	cp -a "$1"/usr/lib/postgresql/15/lib/eightms.so "$2/usr/lib/postgresql/15/lib/" &&
	cp -a "$1"/usr/share/postgresql/15/extension/eightms* "$2/usr/share/postgresql/15/extension/"' \
	_ "$ROOT" "$UT/root"

# The next version's update script, as a release's author writes it
# (doc/developing.md, "An upgrade script section").
cat > "$ext/eightms--$version--$next.sql" <<'SQL'
\echo Use "ALTER EXTENSION eightms UPDATE TO '0.2.1'" to load this file. \quit
-- ==== a test-only release (test/citus/upgrade_distributed.sh)
-- Existing tables change through eightms.upgrade_step(): on a Citus worker
-- the coordinator's change reaches the shell tables and shards instead.
SELECT eightms.upgrade_step('eightms.message',
	$$ALTER TABLE eightms.message ADD COLUMN upgrade_note text NOT NULL DEFAULT 'new in 0.2.1'$$);
SELECT eightms.upgrade_step('eightms.message',
	$$CREATE INDEX message_upgrade_note_idx ON eightms.message (account_id, upgrade_note)$$);
SELECT eightms.upgrade_step('eightms.message',
	$$UPDATE eightms.message SET upgrade_note = 'sent before 0.2.1' WHERE direction = 'out'$$);
COMMENT ON COLUMN eightms.message.upgrade_note IS 'a column of the test-only release 0.2.1';

-- A new tenant table: created on every node (each node's copy a member of
-- the extension); eightms.distribute() after the update places it.
CREATE TABLE eightms.message_label (
	account_id	uuid NOT NULL REFERENCES eightms.account (account_id) ON DELETE CASCADE,
	label_id	uuid NOT NULL DEFAULT gen_random_uuid(),
	label		text NOT NULL,
	PRIMARY KEY (account_id, label_id)
);
ALTER TABLE eightms.message_label ENABLE ROW LEVEL SECURITY;
ALTER TABLE eightms.message_label FORCE ROW LEVEL SECURITY;
CREATE POLICY message_label_tenant ON eightms.message_label
	USING (account_id = eightms.current_account_id()) WITH CHECK (account_id = eightms.current_account_id());
GRANT SELECT ON eightms.message_label TO eightms_user;
REVOKE ALL ON eightms.message_label FROM PUBLIC;

-- Functions, on every node: a replaced one, and a new one that reads the
-- new column (a SQL body is checked at creation, on the workers too).
CREATE OR REPLACE FUNCTION eightms.is_timezone_name(tz text) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
	-- as replaced by 0.2.1
	SELECT tz ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$'
	   AND EXISTS (SELECT FROM pg_catalog.pg_timezone_names n WHERE n.name = tz)
$$;
CREATE FUNCTION eightms.upgrade_note(account uuid, message uuid) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.upgrade_note FROM eightms.message m WHERE m.account_id = account AND m.message_id = message
$$;
REVOKE ALL ON FUNCTION eightms.upgrade_note(uuid, uuid) FROM PUBLIC;
SQL

# The same changes written directly in a script, which Citus cannot run on
# a distributed cluster: a path of its own (0.2.0 -> 0.2.2) to try first.
cat > "$ext/eightms--$version--0.2.2.sql" <<'SQL'
\echo Use "ALTER EXTENSION eightms UPDATE TO '0.2.2'" to load this file. \quit
ALTER TABLE eightms.message ADD COLUMN upgrade_note text NOT NULL DEFAULT 'new in 0.2.2';
CREATE INDEX message_upgrade_note_idx ON eightms.message (account_id, upgrade_note);
SQL
for f in "$ext"/eightms--"$version"--0.2.*.sql; do chmod 644 "$f"; done

# ---- a 0.2.0 cluster, distributed, filled through the API ---------------------
ensure_secrets "$UT/secrets.env"
for i in 0 1 2; do
	citus_init_node "$i"
	start_cluster "$UT/${CITUS_NODES[$i]}" "$UT/secrets.env" "$UT/${CITUS_NODES[$i]}.log"
done
citus_database "$DB"
citus_psql 0 -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms VERSION '$version' CASCADE" \
	-f "$REPO/test/helpers.sql" >/dev/null
dist_out=$(q 0 -c "SELECT * FROM eightms.distribute()")
check "$version is distributed by eightms.distribute() ($(echo "$dist_out" | grep -m1 ERROR))" \
	[ -z "$(echo "$dist_out" | grep ERROR)" ]

# Two accounts, a phone paired with a code, messages sent, one claimed and
# reported: each request its own transaction.
acct=$(request "SELECT pgrst.as_user('ursula') \\g /dev/null
SELECT account_id FROM eightms_api.create_account('Next Optics', 'America/New_York', 'Optics', 'US');")
other=$(request "SELECT pgrst.as_user('xavier') \\g /dev/null
SELECT account_id FROM eightms_api.create_account('Other Co', 'Europe/London', NULL, 'GB');")
code=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT code FROM eightms_api.create_pairing_code();")
token=$(request "SELECT pgrst.as_anon() \\g /dev/null
SELECT token FROM eightms_api.pair_phone('$code', 'next-pixel', 'Front desk', '1.0.0');")
queued=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY item) FROM eightms_api.send_messages('[
	{\"to\": \"+1 212 555 0101\", \"body\": \"Your glasses are ready\"},
	{\"to\": \"+1 212 555 0102\", \"body\": \"Your lenses are in\"},
	{\"to\": \"+1 212 555 0103\", \"body\": \"See you tomorrow at 10\"}]');")
first=${queued%%,*}
claimed=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(message_id::text, ',') FROM eightms_api.claim_messages(1);")
reported=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT count(*) FILTER (WHERE accepted) FROM eightms_api.report_messages(jsonb_build_array(
	jsonb_build_object('id', '$claimed', 'status', 'delivered')));")
request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT count(*) FROM eightms_api.receive_messages('[{\"from\": \"+1 212 555 0101\", \"body\": \"Thanks\", \"device_message_id\": \"in-1\"}]');" >/dev/null
request "SELECT pgrst.as_user('xavier', :'other') \\g /dev/null
SELECT count(*) FROM eightms_api.send_messages('[{\"to\": \"+44 20 7946 0018\", \"body\": \"Hello from Other Co\"}]');" >/dev/null
check "$version is filled through its API on the cluster (3 sent, 1 claimed: $claimed, reported: $reported)" \
	[ "$(tr ',' '\n' <<<"$queued" | grep -c .)" = 3 ] && [ "$reported" = 1 ]

counts() {
	q 0 -c "SELECT string_agg(t || '=' || n, ' ' ORDER BY t) FROM (VALUES
		('account', (SELECT count(*) FROM eightms.account)), ('member', (SELECT count(*) FROM eightms.member)),
		('phone', (SELECT count(*) FROM eightms.phone)), ('conversation', (SELECT count(*) FROM eightms.conversation)),
		('message', (SELECT count(*) FROM eightms.message)),
		('delivered', (SELECT count(*) FROM eightms.message WHERE status = 'delivered'))) v(t, n)"
}
versions() {
	local i
	for i in 0 1 2; do q "$i" -c "SELECT extversion FROM pg_extension WHERE extname = 'eightms'"; done | sort -u | tr '\n' ' '
}
before=$(counts)
echo "# before the update: $before"

# ---- the changes written directly: refused, and nothing changed -------------------
out=$(q 0 -c "ALTER EXTENSION eightms UPDATE TO '0.2.2'")
echo "$out" | grep -A1 ERROR | sed 's/^/# written directly: /'
check "an update script that alters a distributed table directly is refused" grep -q ERROR <<<"$out"
check "and every node stays on $version" [ "$(versions)" = "$version " ]

# ---- the DBA's procedure ----------------------------------------------------------
out=$(q 0 -v ON_ERROR_STOP=1 -c "ALTER EXTENSION eightms UPDATE TO '$next'" -c "SELECT * FROM eightms.distribute()")
check "ALTER EXTENSION eightms UPDATE TO '$next', then eightms.distribute(), succeed ($(echo "$out" | grep -m1 -A1 ERROR | tr '\n' ' '))" \
	[ -z "$(echo "$out" | grep ERROR)" ]
check "every node has eightms $next" [ "$(versions)" = "$next " ]

# ---- the column, its default, the data change and the index on every shard -------
on_shards() {
	q 0 -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_shards('$1', \$\$$2\$\$)"
}
check "message.upgrade_note is on every shard of message" \
	[ "$(on_shards eightms.message "SELECT count(*) FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname = 'upgrade_note' AND NOT attisdropped")" = 1 ]
check "and on every worker's copy of the table" \
	[ "$(q 0 -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_workers(\$\$SELECT count(*) FROM pg_attribute
			WHERE attrelid = 'eightms.message'::regclass AND attname = 'upgrade_note' AND NOT attisdropped\$\$)")" = 1 ]
check "the index on message is on every shard" \
	[ "$(on_shards eightms.message "SELECT count(*) FROM pg_index i WHERE i.indrelid = '%s'::regclass AND position('upgrade_note' IN pg_get_indexdef(i.indexrelid)) > 0")" = 1 ]
notes=$(q 0 -c "SELECT string_agg(n || ':' || c, ' ' ORDER BY n) FROM (SELECT upgrade_note n, count(*) c FROM eightms.message GROUP BY 1) s")
check "the outbound messages carry the data change, the inbound one the default ($notes)" \
	[ "$notes" = "new in 0.2.1:1 sent before 0.2.1:4" ]
check "the new SQL function reads the column on the coordinator" \
	[ "$(q 0 -c "SELECT eightms.upgrade_note('$acct', '$first')")" = "sent before 0.2.1" ]

# ---- the new table, the functions ---------------------------------------------------
check "the new tenant table is distributed by account_id, colocated with account" \
	[ "$(q 0 -c "SELECT p.partmethod::text || (p.colocationid = a.colocationid)::text FROM pg_dist_partition p, pg_dist_partition a
				  WHERE p.logicalrelid = 'eightms.message_label'::regclass AND a.logicalrelid = 'eightms.account'::regclass")" = htrue ]
check "the new table is a member of the extension on every node" \
	[ "$(for i in 0 1 2; do q "$i" -c "SELECT count(*) FROM pg_depend WHERE classid = 'pg_class'::regclass
		AND objid = 'eightms.message_label'::regclass AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eightms') AND deptype = 'e'"; done | sort -u)" = 1 ]
q 0 -c "INSERT INTO eightms.message_label (account_id, label) VALUES ('$acct', 'vip')" >/dev/null
labels=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT count(*) FROM eightms.message_label;")
check "its rows go to the shards, and its policy holds there ($labels for the account)" [ "$labels" = 1 ]
check "the replaced function is replaced on every node" \
	[ "$(for i in 0 1 2; do q "$i" -c "SELECT position('replaced by 0.2.1' IN prosrc) > 0 FROM pg_proc WHERE oid = 'eightms.is_timezone_name(text)'::regprocedure"; done | sort -u)" = t ]
check "eightms.upgrade_step() is refused to other roles" \
	grep -q "permission denied" <<<"$(q 0 -c "SET ROLE eightms_dba" -c "SELECT eightms.upgrade_step('eightms.account', 'SELECT 1')")"

# ---- the rows from before, and the API ----------------------------------------------
after=$(counts)
check "every tenant table has the rows it had before the update ($after)" [ "$after" = "$before" ]
sent=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT status FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 0104\", \"body\": \"Sent after the update\"}]');")
check "the account sends after the update ($sent)" [ "$sent" = queued ]
claimed=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM eightms_api.claim_messages(10);")
n_claimed=$(tr ',' '\n' <<<"$claimed" | grep -c .)
check "the phone's token from before claims the two queued before the update and the new one ($n_claimed)" [ "$n_claimed" = 3 ]
reported=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT count(*) FILTER (WHERE accepted) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', 'sent')) FROM unnest(string_to_array('$claimed', ',')) id));")
check "and reports them sent ($reported accepted)" [ "$reported" = 3 ]
seen=$(request "SELECT pgrst.as_user('xavier', :'other') \\g /dev/null
SELECT count(*) FROM eightms_api.messages WHERE account_id = :'acct';")
check "the other account still sees none of them ($seen)" [ "$seen" = 0 ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
