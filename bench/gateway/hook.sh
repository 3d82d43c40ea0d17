#!/usr/bin/env bash
# bench/gateway/hook.sh: CPU instructions of the pre-request hook on a
# phone's request, and of a phone's idle claim (a poll that finds nothing:
# an idle fleet's every request), counted by valgrind (callgrind) in a
# single-user backend on bench/gateway's cluster and account.
#
# Each request is its own transaction, as PostgREST runs it: the role,
# request.jwt.claims and request.headers (the device token among them) set
# with set_config, then (by kind) nothing, the hook, or the hook and
# claim_messages(10) of an unpaced phone with nothing queued.  The count of
# N requests less the count of none, over N, is a request's cost; the hook
# is the hook's requests less the bare ones.  A phone sends the same token
# every time, so a backend's first request verifies it and the others find
# it verified.
#
#   BENCH_REQUESTS (default 300)
NAME=gateway-hook
PORT=${EIGHTMS_BENCH_PORT:-54351}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
BATCH=10
SEND_BATCH=1
N=${BENCH_REQUESTS:-300}
ensure_packages valgrind
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

command psql -X -q -d "$DB" -v claims="${PHONE_CLAIMS[0]}" -v headers="${PHONE_HEADERS[0]}" <<'SQL'
CREATE TABLE public.bench_request (claims text, headers text);
INSERT INTO public.bench_request VALUES (:'claims', :'headers');
CREATE PROCEDURE public.phone_requests(n int, kind text)
LANGUAGE plpgsql AS $$
DECLARE
	claims text := (SELECT r.claims FROM public.bench_request r);
	headers text := (SELECT r.headers FROM public.bench_request r);
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM set_config('role', 'eightms_phone', true), set_config('request.jwt.claims', claims, true),
				set_config('request.headers', headers, true), set_config('request.method', 'POST', true),
				set_config('request.path', '/rpc/claim_messages', true);
		IF kind <> 'bare' THEN
			PERFORM eightms_api.pre_request();
		END IF;
		IF kind = 'claim' THEN
			PERFORM count(*) FROM eightms_api.claim_messages(10);
		END IF;
		COMMIT;
	END LOOP;
END
$$;
SQL
# Nothing queued: every claim finds nothing.
command psql -X -q -d "$DB" -c "CALL public.phone_requests(20, 'claim')" -c "CHECKPOINT"
stop_cluster "$T/data"
cp -a "$T/data" "$T/data.base"
count() {
	rm -rf "$T/data" && cp -a "$T/data.base" "$T/data"
	single_user_instructions "$@"
}
for kind in bare hook claim; do
	c0=$(count "$kind-0" "CALL public.phone_requests(1, '$kind')")
	c1=$(count "$kind-1" "CALL public.phone_requests(1, '$kind')" "CALL public.phone_requests($N, '$kind')")
	eval "per_$kind=$(( (c1 - c0) / N ))"
done
printf 'instructions per phone request, role and headers set only: %d\n' "$per_bare"
printf 'the pre-request hook:                                        %d\n' "$(( per_hook - per_bare ))"
printf 'the hook and an idle claim (claim_messages finds nothing):   %d\n' "$(( per_claim - per_bare ))"
