#!/usr/bin/env python3
"""Drive PyPI `pomerium-http-adapter` (Pomerium's requests adapter, unchanged)
against a route, with the browser step done by headless Chromium through
login_browser.mjs.

    pomerium_adapter.py --url URL --login ID --listen-port N --cache DIR
                        [--map HOST ...] [--requests N]

Env: REQUESTS_CA_BUNDLE names the proxy's certificate; JETBRIDGE_SUPPORT the
folder holding login_browser.mjs. Every --map host resolves to 127.0.0.1 (the
test's stand-in for DNS). The adapter's own code does the rest: its request
without a token gets the sign-in redirect, it asks /.pomerium/api/v1/login for
the URL, "opens" it in a browser, reads pomerium_jwt on its loopback listener,
parses exp from it to cache it, and repeats the request with the token.

Prints one JSON line: {"statuses": [...], "bodies": [...], "jwt": "...",
"expiry": N, "browser_runs": N, "browser": {...login_browser.mjs output...}}.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import webbrowser

from pomerium_http_adapter import PomeriumHTTPAdapter
import requests


def map_hosts(hosts):
    """Resolve the test hosts to loopback, as Chromium's --host-resolver-rules does."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.lower() in hosts:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


class ChromiumLogin(webbrowser.BaseBrowser):
    """The user's browser: signs in as --login and lands on the adapter's listener."""

    def __init__(self, login, hosts, until):
        super().__init__("jetbridge-test-chromium")
        self.login, self.hosts, self.until = login, hosts, until
        self.runs = []

    def open(self, url, new=0, autoraise=True):
        script = os.path.join(os.environ["JETBRIDGE_SUPPORT"], "login_browser.mjs")
        cmd = ["node", script, "--start-url", url, "--login", self.login,
               "--until", self.until, "--map", ",".join(self.hosts)]
        self.runs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--login", required=True)
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--map", action="append", default=[])
    p.add_argument("--requests", type=int, default=1)
    a = p.parse_args()
    hosts = {h.lower() for h in a.map}
    map_hosts(hosts)
    browser = ChromiumLogin(a.login, sorted(hosts), f"http://127.0.0.1:{a.listen_port}/")
    webbrowser.register(browser.name, None, browser, preferred=True)

    adapter = PomeriumHTTPAdapter(cache_path=a.cache, listen_port=a.listen_port)
    session = requests.Session()
    session.mount("https://", adapter)
    statuses, bodies = [], []
    for _ in range(a.requests):
        r = session.get(a.url, timeout=60)
        statuses.append(r.status_code)
        bodies.append(r.text[:4000])
    outputs = []
    for run in browser.runs:
        out, _ = run.communicate(timeout=60)
        outputs.append(json.loads(out.strip().splitlines()[-1]) if out.strip() else {})
    print(json.dumps({
        "statuses": statuses,
        "bodies": bodies,
        "jwt": adapter.pomerium.jwt,
        "expiry": adapter.pomerium._expiry,
        "browser_runs": len(browser.runs),
        "browser": outputs[-1] if outputs else None,
    }))


if __name__ == "__main__":
    sys.exit(main())
