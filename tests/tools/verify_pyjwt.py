#!/usr/bin/env python3
"""Verify a Pomerium-style identity assertion with PyPI ``PyJWT``.

    python verify_pyjwt.py (--jwks-url URL | --jwks-file FILE) --token TOKEN \\
        --issuer ISS --audience AUD [--clock-tolerance SECONDS]

Prints one JSON line and exits 0 on success, 1 on a failed verification, 2 on bad usage:
    {"ok":true,"payload":{...},"header":{...}}
    {"ok":false,"error":"..."}
Only ES256 is accepted; iss, aud and exp (required) are checked. The key is
picked by the token's ``kid`` (``jwt.PyJWKClient`` for a URL, ``jwt.PyJWKSet``
for a file).
"""

import argparse
import json
import sys

import jwt


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _out({"ok": False, "error": f"usage: {message}"}, 2)


def _out(obj, code):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def _key_from_file(path, token):
    with open(path, encoding="utf-8") as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    kid = jwt.get_unverified_header(token).get("kid")
    if kid is None:
        if len(jwks.keys) == 1:
            return jwks.keys[0]
        raise jwt.PyJWKClientError("token has no kid and the JWKS holds several keys")
    try:
        return jwks[kid]
    except KeyError:
        raise jwt.PyJWKClientError(f'Unable to find a signing key that matches: "{kid}"') from None


def main():
    p = _Parser(description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jwks-url")
    src.add_argument("--jwks-file")
    p.add_argument("--token", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", required=True)
    p.add_argument("--clock-tolerance", type=float, default=0)
    a = p.parse_args()

    try:
        header = jwt.get_unverified_header(a.token)
        if a.jwks_url:
            client = jwt.PyJWKClient(a.jwks_url, cache_jwk_set=False, timeout=10)
            key = client.get_signing_key_from_jwt(a.token)
        else:
            key = _key_from_file(a.jwks_file, a.token)
        payload = jwt.decode(
            a.token,
            key=key,
            algorithms=["ES256"],
            issuer=a.issuer,
            audience=a.audience,
            leeway=a.clock_tolerance,
            options={"require": ["exp", "iss", "aud"]},
        )
    except Exception as e:  # every failure is reported the same way
        _out({"ok": False, "error": f"{type(e).__name__}: {e}"}, 1)
    _out({"ok": True, "payload": payload, "header": header}, 0)


if __name__ == "__main__":
    main()
