# Sourced by test/run.sh: start the local HTTP peer the bridge tests call,
# and tell the test database where it is.
# A second origin for redirects at PORT+201, and [::1] at PORT+202.
PEER_PORT=$((PORT + 200))
PEER_DIR=$T/peer
mkdir -p "$PEER_DIR"; chmod 755 "$PEER_DIR"
/usr/bin/python3 "$REPO/test/bridge/peer.py" --port "$PEER_PORT" --log "$PEER_DIR/requests.jsonl" --lifetime 1800 \
	--second-port $((PORT + 201)) --ipv6-port $((PORT + 202)) 2>>"$PEER_DIR/peer.err" &
CLEANUP_PIDS+=($!)
for _ in $(seq 1 50); do
	(exec 3<>/dev/tcp/127.0.0.1/$PEER_PORT) 2>/dev/null && break
	sleep 0.1
done
psql -d "$DB" -c "ALTER DATABASE $DB SET test.peer = 'http://127.0.0.1:$PEER_PORT'" \
	-c "ALTER DATABASE $DB SET test.peer2 = 'http://127.0.0.1:$((PORT + 201))'" \
	-c "ALTER DATABASE $DB SET test.peer6 = 'http://[::1]:$((PORT + 202))'" \
	-c "ALTER DATABASE $DB SET test.peer_log = '$PEER_DIR/requests.jsonl'"
export EIGHTMS_TEST_PEER=http://127.0.0.1:$PEER_PORT EIGHTMS_TEST_PEER_LOG=$PEER_DIR/requests.jsonl
