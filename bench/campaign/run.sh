#!/usr/bin/env bash
# bench/campaign: a campaign's fan-out against a plain INSERT ... SELECT.
# One account with 100,000 contacts (names, a custom field, tags, numbers
# of several regions); a campaign to all of them with a text that renders
# a name, a custom field and a fallback.  The fan-out
# (eightms.fan_out_campaign: the audience read through the contacts'
# filters, opt-outs left out, each number's region and zone, the text
# rendered and its segments counted, the window opening per zone, one
# INSERT ... SELECT into campaign_recipient with its keys and indexes)
# alternates with the baseline: an INSERT ... SELECT of the same contacts'
# rows into a plain table of the same columns (no keys, no indexes), with
# the text copied unrendered and no filter, exclusion, region or window.
# Prints each round's milliseconds, the medians and their ratio; the
# target (issue 22) is a ratio of at most 3.
#
#   BENCH_CONTACTS (default 100000), BENCH_ROUNDS (5)
NAME=campaign
PORT=${EIGHTMS_BENCH_PORT:-54347}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
N=${BENCH_CONTACTS:-100000}
ROUNDS=${BENCH_ROUNDS:-5}
bench_cluster
bench_account_with_phones 'Campaign Bench'

psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -v acct="$ACCT" -v n="$N" <<'SQL'
INSERT INTO eightms.contact_field (account_id, name, type) VALUES (:'acct', 'plan', 'text');
-- US, British, French and German numbers (GB and FR: their region's one
-- zone; US and DE, regions of several zones: the account's), a name on
-- most, a plan on half, tags on all; 1% opted out.  No contact has a
-- zone of its own: contact_time_zone_check reads the whole tz database
-- (pg_timezone_names) for each row written with one.
INSERT INTO eightms.contact (account_id, phone, first_name, last_name, company, custom, tags, source)
SELECT :'acct',
	   CASE i % 4 WHEN 0 THEN '+1212' || lpad((5550000 + i)::text, 7, '0')
				  WHEN 1 THEN '+447700' || lpad(i::text, 6, '0')
				  WHEN 2 THEN '+336' || lpad(i::text, 8, '0')
				  ELSE '+49151' || lpad(i::text, 8, '0') END,
	   CASE WHEN i % 10 <> 0 THEN 'First' || i END, 'Last' || i, 'Company ' || (i % 500),
	   CASE WHEN i % 2 = 0 THEN jsonb_build_object('plan', 'gold') ELSE '{}' END,
	   ARRAY['all', 'group' || (i % 7)], 'import'
  FROM generate_series(1, :n) i;
INSERT INTO eightms.opt_out (account_id, number)
SELECT :'acct', c.phone FROM eightms.contact c WHERE c.account_id = :'acct' AND c.contact_id::text LIKE '%00';
INSERT INTO eightms.campaign (account_id, campaign_id, name, body, audience, state, created_by)
VALUES (:'acct', '00000000-0000-4000-8000-00000000c0de', 'Bench', 'Hi {{first_name|there}}, your {{custom.plan|basic}} plan renews soon. Reply STOP to opt out.',
		'{"tags_any": ["all"]}', 'scheduled', 'bench');
CREATE TABLE public.plain_recipient (account_id uuid, campaign_id uuid, phone text, contact_id uuid, time_zone text,
									 segments integer, window_opens_at timestamptz, body text);
VACUUM ANALYZE;
SQL

fan_out="DELETE FROM eightms.campaign_recipient; UPDATE eightms.campaign SET state = 'scheduled';
CHECKPOINT;
SELECT eightms.fan_out_campaign('$ACCT', '00000000-0000-4000-8000-00000000c0de');"
baseline="TRUNCATE public.plain_recipient;
CHECKPOINT;
INSERT INTO public.plain_recipient
SELECT c.account_id, '00000000-0000-4000-8000-00000000c0de', c.phone, c.contact_id, coalesce(c.time_zone, 'UTC'), 1, now(),
	   'Hi {{first_name|there}}, your {{custom.plan|basic}} plan renews soon. Reply STOP to opt out.'
  FROM eightms.contact c WHERE c.account_id = '$ACCT';"

fans=() bases=()
for r in $(seq 1 "$ROUNDS"); do
	f=$(best_ms "$fan_out" 1)
	b=$(best_ms "$baseline" 1)
	fans+=("$f") bases+=("$b")
	printf '==> round %s: fan-out %s ms, INSERT ... SELECT %s ms\n' "$r" "$f" "$b"
done
rows=$(psql -X -At -d "$DB" -c "SELECT count(*) FROM eightms.campaign_recipient")
fig=$(psql -X -At -d "$DB" -c "SELECT audience_count || ' named, ' || excluded_opted_out || ' opted out, ' || excluded_invalid || ' invalid' FROM eightms.campaign")
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mf=$(median "${fans[@]}") mb=$(median "${bases[@]}")
printf '==> %s recipients (%s)\n' "$rows" "$fig"
printf '==> median fan-out %s ms, INSERT ... SELECT %s ms, ratio %.2f (target <= 3)\n' "$mf" "$mb" "$(echo "$mf / $mb" | bc -l)"
