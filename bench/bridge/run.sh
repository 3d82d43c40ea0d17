#!/usr/bin/env bash
# bench/bridge: N requests to nginx on 127.0.0.1 through the bridge, against
# a plain libcurl multi client sending the same requests with the same
# concurrency, in one run.  Prints requests per second for both, the ratio
# and failures.  Targets (issue 6): at least 5,000 requests/s through the
# bridge, at least half the plain libcurl rate, zero failures.
#
#   BENCH_REQUESTS (default 20000), BENCH_CONCURRENCY (default 64)
NAME=bridge
PORT=${EIGHTMS_BENCH_PORT:-54343}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
N=${BENCH_REQUESTS:-20000}
C=${BENCH_CONCURRENCY:-64}
NGINX_PORT=$((PORT + 1))

bench_cluster
cat >> "$T/data/eightms.conf" <<CONF
eightms.bridge_database = '$DB'
eightms.bridge_allow_private_addresses = on
eightms.bridge_max_concurrency = $C
eightms.bridge_per_host_concurrency = $C
CONF
start_cluster "$T/data" "$T/secrets.env" "$T/server.log"

# nginx, one worker, answering every request with a small 200.
mkdir -p "$T/nginx/logs"
cat > "$T/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		location / { return 200 "ok\n"; }
	}
}
NGX
/usr/sbin/nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"
trap '/usr/sbin/nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -s stop 2>/dev/null; stop_cluster "$T/data"' EXIT
URL=http://127.0.0.1:$NGINX_PORT/hook

q() { command psql -X -At -d "$DB" -c "$1"; }
cc -O2 -o "$T/curl_multi" "$REPO/bench/bridge/curl_multi.c" -lcurl
# Warm up both paths once.
"$T/curl_multi" "$URL" 1000 "$C" >/dev/null

read -r plain_s plain_fail < <("$T/curl_multi" "$URL" "$N" "$C")
[ -n "${BENCH_PERF:-}" ] && { (sleep 1.5; perf record -F 999 -g -o "$T/perf.data" -p "$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eightms bridge'")" -- sleep 2 >/dev/null 2>&1) & }

for _ in $(seq 1 100); do
	[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eightms bridge' AND state IS NOT NULL")" -ge 1 ] && break
	sleep 0.1
done
enq_start=$(date +%s.%N)
q "SELECT count(eightms.http_enqueue('GET', '$URL', max_attempts => 1)) FROM generate_series(1, $N)" >/dev/null
start=$(date +%s.%N)
# Wait until no request is queued (with max_attempts 1, each is then done or
# dead), from one session, looking every 10 ms with an EXISTS on the claim's
# partial index: a new psql and a count over the whole table every 20 ms
# took about a quarter of this 2-core machine while the bridge ran.
PGOPTIONS='-c enable_seqscan=off' q "DO \$\$ BEGIN
	WHILE EXISTS (SELECT FROM eightms.http_request WHERE state = 'queued') LOOP
		COMMIT;
		PERFORM pg_sleep(0.01);
	END LOOP;
END \$\$" >/dev/null
end=$(date +%s.%N)
finished=$(q "SELECT count(*) FROM eightms.http_request WHERE state IN ('done', 'dead')")
[ "$finished" = "$N" ] || { echo "only $finished of $N requests finished" >&2; exit 1; }
bridge_fail=$(q "SELECT count(*) FROM eightms.http_request WHERE state <> 'done' OR response_status <> 200")

bridge_s=$(echo "$end - $start" | bc -l)
printf 'requests: %d, concurrency: %d, nginx on 127.0.0.1\n' "$N" "$C"
printf 'enqueue (one transaction):  %.2f s\n' "$(echo "$start - $enq_start" | bc -l)"
printf 'bridge:      %8.0f requests/s  (%d failed)\n' "$(echo "$N / $bridge_s" | bc -l)" "$bridge_fail"
printf 'plain curl:  %8.0f requests/s  (%d failed)\n' "$(echo "$N / $plain_s" | bc -l)" "$plain_fail"
printf 'ratio bridge/plain: %.2f  (target >= 0.5; bridge target >= 5000/s)\n' "$(echo "$plain_s / $bridge_s" | bc -l)"
