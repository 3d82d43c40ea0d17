-- test/upgrade/fill-0.1.0.sql: a database as eightms 0.1.0's users left it,
-- made through 0.1.0's API as its PostgREST contract drove it (the
-- test/helpers.sql of that release, whose pgrst.* functions set
-- request.jwt.claims by hand).  0.1.0 is frozen, and so is this script: it
-- runs against 0.1.0 only (test/t/008_upgrade.pl).  What the checks after
-- the upgrade need is kept in public.upgrade_fixture, outside the extension.
-- psql variable: peer, the URL of the stand-in HTTP peer.
\set ON_ERROR_STOP 1
CREATE TABLE public.upgrade_fixture (key text PRIMARY KEY, value text NOT NULL);

BEGIN;
-- Ursula's account: her session, an agent who joined by invitation and
-- then signed out, and an invitation still pending.
SELECT pgrst.as_user('ursula', NULL, NULL, '{"session_id": "ursula-sess-1"}') \g /dev/null
SELECT account_id AS acct FROM eightms_api.create_account('Upgrade Optics', 'America/New_York', 'Optics', 'US') \gset
SELECT pgrst.as_user('ursula', :'acct', NULL, '{"session_id": "ursula-sess-1"}') \g /dev/null
SELECT token AS invite FROM eightms_api.invite_member('victor@example.test', 'agent') \gset
SELECT count(*) FROM eightms_api.invite_member('wendy@example.test', 'admin') \g /dev/null
SELECT code FROM eightms_api.create_pairing_code() \gset
SELECT pgrst.as_user('victor', NULL, 'victor@example.test') \g /dev/null
SELECT count(*) FROM eightms_api.accept_invitation(:'invite') \g /dev/null
SELECT pgrst.as_user('victor', :'acct', 'victor@example.test', '{"session_id": "victor-sess-1"}') \g /dev/null
SELECT eightms_api.sign_out() \g /dev/null

-- A phone pairs with the code, and sends its heartbeat with a gateway
-- password (sealed).
SELECT pgrst.as_anon() \g /dev/null
SELECT phone_id AS phone, token AS phone_token FROM eightms_api.pair_phone(:'code', 'upgrade-pixel', 'Front desk', '1.0.0') \gset
SELECT pgrst.as_token(:'phone_token') \g /dev/null
SELECT eightms_api.heartbeat(77, 'wifi', true, '1.0.0', 'gw-pass-from-0.1.0') \g /dev/null

-- Ursula sends three messages; the phone claims one and reports it.
SELECT pgrst.as_user('ursula', :'acct') \g /dev/null
SELECT message_id AS sent_first FROM eightms_api.send_message('(212) 555-0101', 'Your glasses are ready', idempotency_key => 'up-1') \gset
COMMIT;
-- The other two after the first's transaction, so that the first is the
-- one the phone claims.
BEGIN;
SELECT pgrst.as_user('ursula', :'acct') \g /dev/null
SELECT string_agg(message_id::text, ',' ORDER BY item) AS queued FROM eightms_api.send_messages($$[
	{"to": "(212) 555-0102", "body": "Your lenses are in", "idempotency_key": "up-2"},
	{"to": "(212) 555-0103", "body": "See you tomorrow at 10", "idempotency_key": "up-3"}]$$) \gset
SELECT pgrst.as_token(:'phone_token') \g /dev/null
SELECT string_agg(message_id::text, ',') AS claimed FROM eightms_api.claim_messages(1) \gset
SELECT count(*) FROM eightms_api.report_messages(jsonb_build_array(
	jsonb_build_object('id', :'claimed', 'status', 'delivered'))) \g /dev/null

-- Inbound: a reply from the first recipient, and a STOP from another number.
SELECT count(*) FROM eightms_api.receive_messages($$[
	{"from": "+1 212 555 0101", "body": "Thanks, on my way", "device_message_id": "in-1"},
	{"from": "+1 212 555 0199", "body": "STOP", "device_message_id": "in-2"}]$$) \g /dev/null

-- Another account beside it, which must keep seeing none of this.
SELECT pgrst.as_user('xavier') \g /dev/null
SELECT account_id AS other FROM eightms_api.create_account('Other Co', 'Europe/London', NULL, 'GB') \gset
SELECT pgrst.as_user('xavier', :'other') \g /dev/null
SELECT count(*) FROM eightms_api.send_messages('[{"to": "+44 20 7946 0018", "body": "Hello from Other Co"}]') \g /dev/null
SELECT pgrst.reset() \g /dev/null

-- The bridge: a request with a sealed header left queued for later (its
-- next attempt years away), and one the worker sends now.
SELECT eightms.http_enqueue('POST', :'peer' || '/echo', '{"Content-Type": "application/json"}',
							convert_to('{"upgrade": true}', 'UTF8'),
							secret_headers => '{"Authorization": "Bearer crm-token-from-0.1.0"}',
							idempotency_key => 'upgrade-queued') AS bridge_queued \gset
UPDATE eightms.http_request SET next_attempt_at = now() + interval '10 years' WHERE id = :bridge_queued;
SELECT eightms.http_enqueue('GET', :'peer' || '/echo', idempotency_key => 'upgrade-done') AS bridge_done \gset

INSERT INTO public.upgrade_fixture VALUES
	('acct', :'acct'), ('other', :'other'), ('phone', :'phone'), ('phone_token', :'phone_token'),
	('claimed', :'claimed'), ('queued', :'queued'), ('bridge_queued', :'bridge_queued'), ('bridge_done', :'bridge_done');
COMMIT;
