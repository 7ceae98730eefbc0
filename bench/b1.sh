#!/usr/bin/env bash
# B1 for jetbridge: runs bench/proxy.sh twice with jetbridge in the measured set.
#   1. public route: plain reverse proxying (no session, no signing)
#   2. authenticated route: session cookie opened, policy evaluated, an ES256
#      assertion minted and forwarded on every request
# Both compare against nginx proxying the same upstream and against the upstream
# directly, in one run on one machine. Needs a release build (cargo build --release).
#
#   bench/b1.sh            (env: ROUNDS, WRK_DURATION, WRK_CONNS, BENCH_OUT_DIR)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${JETBRIDGE_BIN:-$ROOT/target/release/jetbridge}"
[ -x "$BIN" ] || { echo "bench/b1.sh: $BIN missing; run cargo build --release" >&2; exit 1; }
COOKIE_SECRET="$(head -c 32 /dev/urandom | base64)"
OUT_DIR="${BENCH_OUT_DIR:-$ROOT/bench/results}"
mkdir -p "$OUT_DIR"

# The session cookie for the authenticated route, minted from the same cookie_secret.
TMPCFG="$(mktemp)"
trap 'rm -f "$TMPCFG"' EXIT
printf 'cookie_secret: %s\n' "$COOKIE_SECRET" > "$TMPCFG"
COOKIE="$("$BIN" mint-session --config "$TMPCFG" --host bench.jetbridge.test --sub bench-user --email bench@example.com --groups users,bench)"

export JETBRIDGE_BIN="$BIN" COOKIE_SECRET
# Written and started by proxy.sh after it exports JETBRIDGE_BENCH_* (see there).
export JETBRIDGE_CMD='cat > "$JETBRIDGE_BENCH_DIR/config.yaml" <<YAML
address: 127.0.0.1:$JETBRIDGE_BENCH_PORT
certificate_file: $JETBRIDGE_BENCH_CERT
certificate_key_file: $JETBRIDGE_BENCH_KEY
cookie_secret: $COOKIE_SECRET
shared_secret: $COOKIE_SECRET
log_level: warn
routes:
  - from: https://bench.jetbridge.test
    to: $JETBRIDGE_BENCH_UPSTREAM
    pass_identity_headers: true
    policy:
      allow:
        or:
          - email: {is: bench@example.com}
  - from: https://public.jetbridge.test
    to: $JETBRIDGE_BENCH_UPSTREAM
    allow_public_unauthenticated_access: true
YAML
exec "$JETBRIDGE_BIN" standalone --config "$JETBRIDGE_BENCH_DIR/config.yaml"'

echo "## B1a: public route (plain proxying)"
JETBRIDGE_HEADERS="Host: public.jetbridge.test" \
    BENCH_OUT="$OUT_DIR/b1-public.md" "$HERE/proxy.sh"
echo
echo "## B1b: authenticated route (session + policy + ES256 assertion per request)"
JETBRIDGE_HEADERS="$(printf 'Host: bench.jetbridge.test\nCookie: _jetbridge=%s' "$COOKIE")" \
    BENCH_OUT="$OUT_DIR/b1-authenticated.md" "$HERE/proxy.sh"
echo
echo "## B7: JWKS endpoint throughput (jetbridge serving its JWKS; nginx/direct serve a static body)"
export JETBRIDGE_BENCH_PORT="${JETBRIDGE_BENCH_PORT:-$((20000 + RANDOM % 20000))}"
JETBRIDGE_URL="https://127.0.0.1:$JETBRIDGE_BENCH_PORT/.well-known/pomerium/jwks.json" \
    JETBRIDGE_HEADERS="Host: public.jetbridge.test" \
    BENCH_OUT="$OUT_DIR/b7-jwks.md" "$HERE/proxy.sh"
