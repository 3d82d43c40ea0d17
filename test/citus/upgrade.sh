#!/usr/bin/env bash
# test/citus/upgrade.sh: ALTER EXTENSION eightms UPDATE on a Citus cluster,
# as doc/scale-out.md ("Upgrade a cluster") tells a DBA to run it.
#
# The last release (the commit named in the first line of its frozen
# script, as test/t/008_upgrade.pl builds it) is built into a private copy
# of PostgreSQL with Citus; a coordinator and two workers of its own run it;
# the database is filled through that release's API while its tables are
# still the coordinator's (a 0.1.0 server about to move to Citus), then
# distributed by hand as 0.1.0 allows (it has no distribute()).  The nodes
# are stopped, this tree's build installed over the old one, started, and
# on the coordinator: ALTER EXTENSION eightms UPDATE, then
# eightms.distribute(), which places the tables the release added.  Checks:
# the version on every node, every table where distribution_plan() says, the
# new columns on the shards, the rows from before, and requests through the
# API (send, claim, report) with this tree's test/helpers.sql.
#
# Run by the Citus tier (test/citus.sh) with EIGHTMS_CITUS_DIR and
# EIGHTMS_CITUS_PORT; its own nodes take the coordinator's port + 40 to
# + 42, under $EIGHTMS_CITUS_DIR/upgrade.  EIGHTMS_TEST_ROOT is the private
# tree this tree's build is installed in.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
set +e

UT=${EIGHTMS_CITUS_DIR:?}/upgrade
NODE_OFFSET=40
DB=eightms_upgrade
PEER=${EIGHTMS_TEST_PEER:-http://127.0.0.1:9}
source "$REPO/test/citus/upgrade-nodes.bash"
fixture() { q 0 -c "SELECT value FROM public.upgrade_fixture WHERE key = '$1'"; }

# ---- the last release, built into a private tree ---------------------------
old_script=$REPO/sql/versions/eightms--0.1.0.sql
old_version=0.1.0
old_commit=$(head -n 1 "$old_script" | sed -n 's/.* at commit \([0-9a-f]*\)).*/\1/p')
new_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO/eightms.control")
citus_stop
rm -rf "$UT"
mkdir -p "$UT/old"
chmod 755 "$UT"
if ! git -C "$REPO" cat-file -e "$old_commit^{commit}" 2>/dev/null; then
	check "commit $old_commit of release $old_version is in this clone (a shallow clone needs 'git fetch --unshallow')" false
	echo "$pass passed, $fail failed"
	exit 1
fi
copy_postgres "$UT/root"
git -C "$REPO" archive "$old_commit" | tar -x -C "$UT/old"
check "$old_version builds from commit $old_commit and installs into a private tree with Citus" \
	make -C "$UT/old" -s -j2 -o eightms-phone with_llvm=no PG_CONFIG="$UT/root$PGBIN/pg_config" install >"$UT/old.log" 2>&1
ensure_secrets "$UT/secrets.env"

# ---- a cluster of the release: three nodes, two databases ----------------------
# The release reads its secrets from the server's environment only.
for i in 0 1 2; do
	citus_init_node "$i"
	start_cluster_with_env "$UT/${CITUS_NODES[$i]}" "$UT/secrets.env" "$UT/${CITUS_NODES[$i]}.log"
done
git -C "$REPO" show "$old_commit:test/helpers.sql" > "$UT/old-helpers.sql"
# Database $1 on every node with Citus and the workers, eightms of the
# release on the coordinator, filled through its API while its tables are
# still the coordinator's own.
release_database() {
	local db=$1
	citus_database "$db"
	citus_psql 0 -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION eightms VERSION '$old_version' CASCADE"
	check "$db: $old_version is filled through its API on the coordinator" \
		citus_psql 0 -d "$db" -f "$UT/old-helpers.sql" -f "$REPO/test/upgrade/fill-$old_version.sql" -v peer="$PEER" -o /dev/null
}
# Rows of the tenant tables, read through the coordinator.
counts() {
	citus_psql 0 -At -d "$1" -c "SELECT string_agg(t || '=' || n, ' ' ORDER BY t) FROM (VALUES
		('account', (SELECT count(*) FROM eightms.account)), ('member', (SELECT count(*) FROM eightms.member)),
		('invitation', (SELECT count(*) FROM eightms.invitation)), ('phone', (SELECT count(*) FROM eightms.phone)),
		('conversation', (SELECT count(*) FROM eightms.conversation)), ('message', (SELECT count(*) FROM eightms.message)),
		('opt_out', (SELECT count(*) FROM eightms.opt_out)), ('consent_event', (SELECT count(*) FROM eightms.consent_event)),
		('delivered', (SELECT count(*) FROM eightms.message WHERE status = 'delivered'))) v(t, n)" 2>&1
}
versions() {
	local i
	for i in 0 1 2; do citus_psql "$i" -At -d "$1" -c "SELECT extversion FROM pg_extension WHERE extname = 'eightms'"; done | sort -u | tr '\n' ' '
}

# The path doc/scale-out.md gives: update, then distribute.
release_database "$DB"
citus_psql 0 -d "$DB" -c "CREATE EXTENSION pg_cron"
before=$(counts "$DB")
echo "# before the update: $before"

# A cluster distributed on the release, by hand (it has no distribute()):
# every table with account_id by it, colocated with account, parents
# first; the session too (its foreign key to member, dropped by 0.2.0,
# allows nothing else); the bridge's and the registries on the coordinator.
DIST=eightms_distributed
release_database "$DIST"
cat > "$UT/distribute-$old_version.sql" <<'SQL'
BEGIN;
SET LOCAL citus.enable_unsafe_triggers = on;
SET LOCAL citus.multi_shard_modify_mode = sequential;
SELECT create_distributed_table('eightms.account', 'account_id', colocate_with => 'none');
SELECT create_distributed_table(t, 'account_id', colocate_with => 'eightms.account')
  FROM unnest('{eightms.member, eightms.invitation, eightms.session, eightms.phone, eightms.pairing_code,
				eightms.conversation, eightms.message, eightms.opt_out, eightms.consent_event}'::regclass[]) t;
COMMIT;
SQL
dist_out=$(citus_psql 0 -d "$DIST" -f "$UT/distribute-$old_version.sql" 2>&1)
check "$DIST: $old_version's tenant tables distribute by hand ($(echo "$dist_out" | grep -m1 ERROR))" \
	[ "$(citus_psql 0 -At -d "$DIST" -c "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'h'")" = 10 ]
dist_before=$(counts "$DIST")

# ---- the new build --------------------------------------------------------------
citus_stop
check "this tree's build installs over $old_version" bash -c '
	rm -rf "$2"/lib/eightms.so "$2"/lib/bitcode/eightms* "$3"/extension/eightms* &&
	cp -a "$1/usr/lib/postgresql/15/lib/eightms.so" "$2/lib/" &&
	{ [ ! -d "$1/usr/lib/postgresql/15/lib/bitcode/eightms" ] || cp -a "$1"/usr/lib/postgresql/15/lib/bitcode/eightms* "$2/lib/bitcode/"; } &&
	cp -a "$1"/usr/share/postgresql/15/extension/eightms* "$3/extension/"' \
	_ "$ROOT" "$UT/root/usr/lib/postgresql/15" "$UT/root/usr/share/postgresql/15"
for i in 0 1 2; do
	start_cluster "$UT/${CITUS_NODES[$i]}" "$UT/secrets.env" "$UT/${CITUS_NODES[$i]}.log"
done

# ---- the cluster distributed on the release: refused, and left as it was --------
# Citus runs the update script on every worker and, for each ALTER TABLE
# of a distributed table in it, again on the workers' tables and shards
# (doc/scale-out.md, "Upgrade a cluster"): the update fails, and rolls back.
update_out=$(citus_psql 0 -d "$DIST" -v VERBOSITY=verbose -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" -c "ALTER EXTENSION eightms UPDATE" 2>&1)
echo "$update_out" | grep -A2 ERROR | sed 's/^/# distributed on the release: /'
check "$DIST: ALTER EXTENSION eightms UPDATE is refused on tables distributed on the release" \
	grep -q ERROR <<<"$update_out"
check "$DIST: and every node stays on $old_version" [ "$(versions "$DIST")" = "$old_version " ]
check "$DIST: with every row" [ "$(counts "$DIST")" = "$dist_before" ]

# ---- the path to take: update, then distribute -------------------------------------
# 0.2.0 requires pg_trgm: created first, as doc/operations.md says.
update_out=$(citus_psql 0 -d "$DB" -v VERBOSITY=verbose -c "CREATE EXTENSION IF NOT EXISTS pg_trgm" -c "ALTER EXTENSION eightms UPDATE" 2>&1)
check "ALTER EXTENSION eightms UPDATE on the coordinator succeeds ($(echo "$update_out" | grep -m2 -A1 ERROR | tr '\n' ' '))" \
	[ -z "$(echo "$update_out" | grep ERROR)" ]
check "every node has eightms $new_version" [ "$(versions "$DB")" = "$new_version " ]
dist_out=$(q 0 -c "SELECT * FROM eightms.distribute()")
check "eightms.distribute() after the update succeeds ($(echo "$dist_out" | grep -m1 ERROR))" [ -z "$(echo "$dist_out" | grep ERROR)" ]

# ---- every table where the plan says, the new columns on the shards -----------
placement() {
	q 0 -c "SELECT coalesce((SELECT CASE p.partmethod WHEN 'h' THEN 'distributed' WHEN 'n' THEN 'reference' END
							   FROM pg_dist_partition p WHERE p.logicalrelid = '$1'::regclass), 'local')"
}
while IFS='|' read -r t want; do
	check "$t is $want after the update" [ "$(placement "$t")" = "$want" ]
done < <(q 0 -c "SELECT table_name, placement FROM eightms.distribution_plan() ORDER BY step")
check "http_request.account_id (new in $new_version) is on the coordinator's local table" \
	[ "$(q 0 -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'eightms.http_request'::regclass AND attname = 'account_id'")" = 1 ]
# The shards on the workers, each read there.
on_shards() {
	q 0 -c "SELECT string_agg(DISTINCT result, ',') FROM run_command_on_shards('$1', \$\$SELECT count(*) FROM pg_attribute
			 WHERE attrelid = '%s'::regclass AND attname = '$2' AND NOT attisdropped\$\$)"
}
check "account.message_retention (new in $new_version) is on every shard of account" [ "$(on_shards eightms.account message_retention)" = 1 ]
check "message.device_id (new in $new_version) is on every shard of message" [ "$(on_shards eightms.message device_id)" = 1 ]
check "consent_event.normalized (new in $new_version) is on every shard of consent_event" [ "$(on_shards eightms.consent_event normalized)" = 1 ]

# ---- the rows from before, and the API ------------------------------------------
after=$(counts "$DB")
check "every tenant table has the rows it had before the update ($after)" [ "$after" = "$before" ]
check "the signed-out session of $old_version is a sign-out of $new_version" \
	[ "$(q 0 -c "SELECT count(*) FROM eightms.session_revocation")" -ge 1 ]
citus_psql 0 -d "$DB" -c "DROP SCHEMA pgrst CASCADE" -f "$REPO/test/helpers.sql" >/dev/null 2>&1
acct=$(fixture acct) other=$(fixture other) token=$(fixture phone_token) queued=$(fixture queued)
sent=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT status FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 0104\", \"body\": \"Sent after the update\"}]');")
check "the account sends after the update ($sent)" [ "$sent" = queued ]
claimed=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY message_id) FROM eightms_api.claim_messages(10);")
n_claimed=$(tr ',' '\n' <<<"$claimed" | grep -c .)
check "the phone's token from before claims what was queued, before the update and after ($n_claimed)" \
	[ "$n_claimed" -ge 3 ]
check "among them both messages queued before the update" \
	[ "$(tr ',' '\n' <<<"$queued" | grep -cxF -f <(tr ',' '\n' <<<"$claimed"))" = 2 ]
reported=$(request "SELECT pgrst.as_token(:'token') \\g /dev/null
SELECT count(*) FILTER (WHERE accepted) FROM eightms_api.report_messages(
	(SELECT jsonb_agg(jsonb_build_object('id', id, 'status', 'sent')) FROM unnest(string_to_array('$claimed', ',')) id));")
check "and reports them sent ($reported accepted)" [ "$reported" = "$n_claimed" ]
check "they are sent" [ "$(q 0 -c "SELECT count(*) FROM eightms.message WHERE account_id = '$acct' AND status = 'sent'
								  AND message_id::text = ANY (string_to_array('$claimed', ','))")" = "$n_claimed" ]
# The conversation's id, then its messages: two requests, as a dashboard makes them.
conv=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT conversation_id FROM eightms_api.conversations WHERE peer_number = '+12125550101';")
read_back=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT count(*) FROM eightms_api.conversation_messages('$conv');")
check "the account reads a conversation's messages from before the update ($read_back)" [ "$read_back" = 2 ]
refused=$(request "SELECT pgrst.as_user('ursula', :'acct') \\g /dev/null
SELECT status || ' ' || error_code FROM eightms_api.send_messages('[{\"to\": \"+1 212 555 0199\", \"body\": \"Back?\"}]');")
check "the number that texted STOP before is still refused ($refused)" [ "$refused" = "refused E8O01" ]
seen=$(request "SELECT pgrst.as_user('xavier', :'other') \\g /dev/null
SELECT count(*) FROM eightms_api.messages WHERE account_id = :'acct';")
check "the other account still sees none of them ($seen)" [ "$seen" = 0 ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
