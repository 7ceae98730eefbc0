#!/usr/bin/env python3
"""The echo backend the test pods run (image `jetbridge.test/echo` in pod-images.json).

    echo_pod.py [--port 8080] [--drain-seconds 0]

Listens on 0.0.0.0:PORT, HTTP/1.1 with keep-alive, one thread per connection.

- any GET or POST: 200, body the value of ECHO_NAME (default: POD_NAME, else the host
  name), headers `X-Echo-Pod: $POD_NAME` and `X-Echo-Ip: $POD_IP`
- GET /_echo/headers: the request headers as a JSON object (repeated names comma-joined)
- GET /healthz: 200 "ok", or 503 after `POST /_echo/ready?value=false` (and 200 again
  after `value=true`), so that a test can make the pod fail its readiness probe
- SIGTERM: keep serving for --drain-seconds, then stop accepting and exit 0
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATE = {"ready": True}


def echo_name():
    """The body every request gets: ECHO_NAME, else POD_NAME, else the host name."""
    return os.environ.get("ECHO_NAME") or os.environ.get("POD_NAME") or socket.gethostname()


def joined_headers(headers):
    """The request headers as a dict; a name sent on several lines has its
    values comma-joined in order (RFC 9110), so none is lost."""
    out = {}
    for k, v in headers.items():
        out[k] = out[k] + ", " + v if k in out else v
    return out


class Handler(BaseHTTPRequestHandler):
    """Answers every path; see the module docstring."""

    protocol_version = "HTTP/1.1"
    server_version = "jetbridge-echo/1"

    def log_message(self, fmt, *args):
        """One line per request on stderr (the container log)."""
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, body, content_type="text/plain; charset=utf-8"):
        """Send STATUS with BODY and the echo headers."""
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Echo-Pod", os.environ.get("POD_NAME", ""))
        self.send_header("X-Echo-Ip", os.environ.get("POD_IP", ""))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self):
        """Consume the request body (keep-alive needs it read)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def route(self):
        """Dispatch on the path."""
        self.read_body()
        url = urlsplit(self.path)
        if url.path == "/healthz":
            if STATE["ready"]:
                self.reply(200, "ok")
            else:
                self.reply(503, "not ready")
        elif url.path == "/_echo/headers":
            self.reply(200, json.dumps(joined_headers(self.headers)), "application/json")
        elif url.path == "/_echo/ready" and self.command == "POST":
            value = parse_qs(url.query).get("value", ["true"])[0]
            STATE["ready"] = value.lower() not in ("false", "0", "no")
            self.reply(200, "ready=%s" % str(STATE["ready"]).lower())
        else:
            self.reply(200, echo_name())

    do_GET = route
    do_POST = route
    do_HEAD = route
    do_PUT = route
    do_DELETE = route


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer without the reverse lookup of the listen address in
    server_bind (socket.getfqdn), which waits for a DNS answer that never comes."""

    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        """Bind; the server name is the host name, no lookup."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = socket.gethostname()
        self.server_port = self.server_address[1]


def main():
    """Serve until SIGTERM (then drain) or SIGINT."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--drain-seconds", type=float, default=0.0)
    args = ap.parse_args()
    server = Server(("0.0.0.0", args.port), Handler)

    def on_term(signum, frame):
        """SIGTERM: stop after the drain time, in a thread (shutdown() blocks)."""
        def drain():
            """Wait, then stop serving."""
            time.sleep(args.drain_seconds)
            server.shutdown()
        sys.stderr.write("SIGTERM: draining %.1fs\n" % args.drain_seconds)
        threading.Thread(target=drain, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    sys.stderr.write("echo %s listening on 0.0.0.0:%d\n" % (echo_name(), args.port))
    sys.stderr.flush()
    server.serve_forever()
    server.server_close()
    sys.stderr.write("stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
