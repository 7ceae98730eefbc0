#!/usr/bin/env python3
"""Case M: jetbridge's resident memory for many routes, many sessions, and
after many configuration swaps.

    bench/m.py                      build the release binary, measure, print a table
    bench/m.py --bin PATH           measure that binary (no build)
    bench/m.py --routes N --sessions N --swaps N    (defaults 10000, 10000, 100)

Starts, all on 127.0.0.1: nginx (Debian) as the upstream, answering 200 from memory,
and `jetbridge standalone` with a wildcard certificate for *.m.test. Measures VmRSS
from /proc/PID/status:

  R1  a process with 1 route (public) and an authenticated route, each touched once
  RN  a fresh process with N more public routes: once loaded (the authenticated route
      touched once), then with each route touched once (one TLS connection per host,
      so every route's upstream pool and metric series exist)
  S   RN's process after one request from each of N sessions (distinct cookies minted
      with `jetbridge mint-session --count`) on the authenticated route, which
      mints and caches an assertion per session
  W   the same process after SWAPS configuration swaps (the file rewritten, adding and
      dropping a route, each waited for until it is served or gone) and the N sessions
      once more

Per route = (RN - R1) / N, loaded and touched; per session = (S - RN) / N; growth = (W - S) / S.
The report goes to stdout and bench/results/m-<UTC date>.md.
"""

import argparse
import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOMAIN = "m.test"
AUTH_HOST = f"auth.{DOMAIN}"
SWAP_HOST = f"swap.{DOMAIN}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, name, log):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"bench/m.py: {name} exited before listening:\n{open(log).read()[-2000:]}")
            time.sleep(0.1)
    sys.exit(f"bench/m.py: {name} did not listen on {port} within 60s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Client:
    """One keep-alive HTTPS connection to one host (SNI and Host alike)."""

    def __init__(self, port, host):
        self.port, self.host = port, host
        self.conn = None

    def get(self, path="/", cookie=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=CTX, timeout=10
                )
                # SNI names the route host, as a browser's would.
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                self.conn.sock = CTX.wrap_socket(sock, server_hostname=self.host)
            headers = {"Host": self.host}
            if cookie:
                headers["Cookie"] = f"_jetbridge={cookie}"
            try:
                self.conn.request("GET", path, headers=headers)
                r = self.conn.getresponse()
                r.read()
                return r.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        return 0

    def close(self):
        if self.conn:
            self.conn.close()


def touch(port, hosts):
    """One request to each host over its own connection; returns the statuses seen."""
    seen = {}
    for h in hosts:
        c = Client(port, h)
        s = c.get()
        c.close()
        seen[s] = seen.get(s, 0) + 1
    return seen


def config(work, port, upstream, cookie_secret, shared_secret, routes, swap):
    lines = [
        f"address: 127.0.0.1:{port}",
        f"certificate_file: {work}/cert.pem",
        f"certificate_key_file: {work}/key.pem",
        f"cookie_secret: {cookie_secret}",
        f"shared_secret: {shared_secret}",
        "log_level: warn",
        "access_log: false",
        "routes:",
        f"  - from: https://{AUTH_HOST}",
        f"    to: http://127.0.0.1:{upstream}",
        "    pass_identity_headers: true",
        "    allow_any_authenticated_user: true",
    ]
    hosts = [f"r{i}.{DOMAIN}" for i in range(routes)] or [f"one.{DOMAIN}"]
    if swap:
        hosts.append(SWAP_HOST)
    for h in hosts:
        lines += [
            f"  - from: https://{h}",
            f"    to: http://127.0.0.1:{upstream}",
            "    allow_public_unauthenticated_access: true",
        ]
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin")
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--swaps", type=int, default=100)
    ap.add_argument("--out")
    a = ap.parse_args()

    binary = a.bin
    if not binary:
        print("bench/m.py: cargo build --release", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "jetbridge")
    nginx = os.environ.get("JETBRIDGE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"

    work = tempfile.mkdtemp(prefix="jetbridge-m.")
    os.makedirs(f"{work}/tmp")
    procs = []
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN={DOMAIN}",
             "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:*.{DOMAIN}",
             "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem"],
            check=True, capture_output=True,
        )
        upstream = free_port()
        user = "user root;" if os.getuid() == 0 else ""
        with open(f"{HERE}/nginx/upstream.conf.in") as f:
            conf = f.read().replace("@WORK@", work).replace("@UPSTREAM_PORT@", str(upstream)).replace("@USER@", user)
        with open(f"{work}/upstream.conf", "w") as f:
            f.write(conf)
        up = subprocess.Popen(
            [nginx, "-p", work, "-e", f"{work}/upstream-error.log", "-c", f"{work}/upstream.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(up)
        wait_port(upstream, up, "nginx upstream", f"{work}/upstream-error.log")

        cookie_secret = base64.b64encode(os.urandom(32)).decode()
        shared_secret = base64.b64encode(os.urandom(32)).decode()

        def start(routes, swap=False):
            port = free_port()
            path = f"{work}/config-{routes}.yaml"
            write_atomically(path, config(work, port, upstream, cookie_secret, shared_secret, routes, swap))
            log = f"{work}/jetbridge-{routes}.log"
            p = subprocess.Popen([binary, "standalone", "--config", path], stdout=open(log, "w"), stderr=subprocess.STDOUT)
            procs.append(p)
            wait_port(port, p, "jetbridge", log)
            return p, port, path

        # R1
        p1, port1, path1 = start(0)
        assert touch(port1, [f"one.{DOMAIN}"]) == {200: 1}
        cookies = subprocess.run(
            [binary, "mint-session", "--config", path1, "--host", AUTH_HOST, "--sub", "m-user",
             "--email", "m@example.com", "--groups", "users", "--count", str(a.sessions)],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        assert len(cookies) == a.sessions, len(cookies)
        assert Client(port1, AUTH_HOST).get("/", cookies[0]) == 200
        time.sleep(0.5)
        r1 = rss_kib(p1.pid)
        p1.terminate()
        p1.wait()

        # RN
        t0 = time.time()
        pn, port, path = start(a.routes)
        started = time.time() - t0
        assert Client(port, AUTH_HOST).get("/", cookies[0]) == 200
        time.sleep(0.5)
        rn_idle = rss_kib(pn.pid)
        hosts = [f"r{i}.{DOMAIN}" for i in range(a.routes)]
        seen = touch(port, hosts)
        assert seen == {200: a.routes}, seen
        assert Client(port, AUTH_HOST).get("/", cookies[0]) == 200
        time.sleep(0.5)
        rn = rss_kib(pn.pid)

        # S
        def sessions():
            c = Client(port, AUTH_HOST)
            bad = sum(1 for k in cookies if c.get("/", k) != 200)
            c.close()
            assert bad == 0, f"{bad} session requests failed"

        t0 = time.time()
        sessions()
        session_secs = time.time() - t0
        time.sleep(0.5)
        s = rss_kib(pn.pid)

        # W
        text = {
            False: config(work, port, upstream, cookie_secret, shared_secret, a.routes, False),
            True: config(work, port, upstream, cookie_secret, shared_secret, a.routes, True),
        }
        t0 = time.time()
        during = []  # (swaps done, RSS): growth that stops is kept memory, not a leak
        marks = {max(1, a.swaps // 10), max(1, a.swaps // 2)}
        for i in range(a.swaps):
            if i in marks:
                during.append((i, rss_kib(pn.pid)))
            present = i % 2 == 0
            write_atomically(path, text[present])
            want = 200 if present else 404
            deadline = time.time() + 30
            while True:
                c = Client(port, SWAP_HOST)
                got = c.get()
                c.close()
                if got == want:
                    break
                if time.time() > deadline:
                    sys.exit(f"bench/m.py: swap {i} not served within 30s (got {got})")
                time.sleep(0.05)
        swap_secs = time.time() - t0
        sessions()
        time.sleep(0.5)
        w = rss_kib(pn.pid)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    per_route_idle = (rn_idle - r1) * 1024 / a.routes
    per_route = (rn - r1) * 1024 / a.routes
    per_session = (s - rn) * 1024 / a.sessions
    growth = (w - s) * 100 / s
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    report = "\n".join([
        f"## bench/m.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- {binary}; routes={a.routes} sessions={a.sessions} swaps={a.swaps}; {os.cpu_count()} cores",
        f"- start with {a.routes} routes until listening: {started:.2f} s; {a.sessions} session requests: {session_secs:.1f} s; {a.swaps} swaps: {swap_secs:.1f} s",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| RSS, 1 route | {r1 / 1024:.1f} MiB | |",
        f"| RSS, {a.routes} routes, loaded | {rn_idle / 1024:.1f} MiB | |",
        f"| per route, loaded | {per_route_idle / 1024:.2f} KiB | ≤ 2 KB |",
        f"| RSS, {a.routes} routes, each requested once | {rn / 1024:.1f} MiB | |",
        f"| per route, each requested once | {per_route / 1024:.2f} KiB | |",
        f"| RSS after {a.sessions} sessions | {s / 1024:.1f} MiB | |",
        f"| per session | {per_session:.0f} B | |",
        f"| RSS after {a.swaps} swaps and the sessions again | {w / 1024:.1f} MiB | |",
        f"| growth over the swaps | {growth:+.1f} % | < 5 % |",
        "",
        "RSS during the swaps: " + ", ".join(f"after {n}: {k / 1024:.1f} MiB" for n, k in during)
        + f", after {a.swaps} and the sessions: {w / 1024:.1f} MiB.",
        "",
    ])
    print(report)
    out = a.out or os.path.join(HERE, "results", f"m-{stamp}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(report)
    print(f"bench/m.py: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
