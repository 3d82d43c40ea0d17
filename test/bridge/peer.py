#!/usr/bin/env python3
"""A local stand-in for the services the bridge calls, for the tests.

It listens on 127.0.0.1 (and, when asked, on a second port there and on
[::1], so that tests have other origins to redirect to) and records every
request it receives (one JSON line per request: the address and port it came
in on, method, path, Idempotency-Key, Authorization, every header, time) so
tests can count deliveries and check what each origin was sent.  Endpoints:

  /echo                     200 with the request (method, path, headers, body) as JSON
  /status/<code>            answers <code>
  /slow/<ms>                waits, then 200
  /flaky/<n>                503 for the first <n> attempts of each Idempotency-Key, then 200
  /retry-after/<s>/<n>      429 with Retry-After: <s> for the first <n> attempts, then 200
  /drop                     closes the connection without answering
  /big/<bytes>              200 with a body of that size
  /redirect?to=<url>&code=  a redirect (302 unless code given)

It stops by itself after --lifetime seconds.
"""
import argparse
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

attempts = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_file = None

    def log_message(self, *args):
        pass

    def record(self, body):
        entry = {
            "method": self.command,
            "path": self.path,
            "key": self.headers.get("Idempotency-Key"),
            "auth": self.headers.get("Authorization"),
            "server": "%s:%d" % self.server.server_address[:2],
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "time": time.time(),
            "bytes": len(body),
        }
        with lock:
            with open(self.log_file, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def count(self, tag):
        key = (tag, self.headers.get("Idempotency-Key"))
        with lock:
            attempts[key] = attempts.get(key, 0) + 1
            return attempts[key]

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.record(body)
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        if not parts:
            return self.reply(404)
        head = parts[0]
        if head == "echo":
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            return self.reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json", "X-Peer": "eightms-test"})
        if head == "status":
            return self.reply(int(parts[1]), b"status " + parts[1].encode())
        if head == "slow":
            time.sleep(int(parts[1]) / 1000.0)
            return self.reply(200, b"slow")
        if head == "flaky":
            if self.count("flaky") <= int(parts[1]):
                return self.reply(503, b"try again")
            return self.reply(200, b"recovered")
        if head == "retry-after":
            if self.count("retry-after") <= int(parts[2]):
                return self.reply(429, b"slow down", {"Retry-After": parts[1]})
            return self.reply(200, b"thanks for waiting")
        if head == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if head == "big":
            return self.reply(200, b"x" * int(parts[1]))
        if head == "redirect":
            q = parse_qs(url.query)
            return self.reply(int(q.get("code", ["302"])[0]), b"", {"Location": q["to"][0]})
        return self.reply(404, b"no such endpoint")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--lifetime", type=int, default=1800)
    ap.add_argument("--second-port", type=int, help="also listen on this port of 127.0.0.1")
    ap.add_argument("--ipv6-port", type=int, help="also listen on this port of ::1")
    args = ap.parse_args()
    Handler.log_file = args.log
    open(args.log, "a").close()
    os.chmod(args.log, 0o644)
    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # Clients that go away mid-answer (timeouts, crash tests) are expected.
            pass

    class Server6(Server):
        address_family = socket.AF_INET6

    servers = [Server(("127.0.0.1", args.port), Handler)]
    if args.second_port:
        servers.append(Server(("127.0.0.1", args.second_port), Handler))
    if args.ipv6_port:
        servers.append(Server6(("::1", args.ipv6_port), Handler))
    for server in servers:
        server.daemon_threads = True
        threading.Timer(args.lifetime, server.shutdown).start()
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
