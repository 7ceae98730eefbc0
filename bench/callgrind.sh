#!/usr/bin/env bash
# Instructions per request on the public route (B1p's request), counted by
# callgrind: deterministic where wall-clock CPU time is not, so two binaries
# can be compared a function at a time.
#
#   bench/callgrind.sh BIN OUT [N]
#
# Serves `GET /` on a public route (the route of bench/run's B1p, nginx as
# the upstream) over one kept-alive HTTP/1.1 TLS connection, as wrk sends
# it: WARM requests (default 200) first, then the counters are zeroed and N
# requests (default 2000) are counted. Writes OUT.1 (the callgrind profile of
# the N requests) and prints the total and per-request instruction counts.
# Read a profile with
#   callgrind_annotate --inclusive=yes OUT.1 | head -80
set -euo pipefail

BIN="$1"
OUT="$2"
N="${3:-2000}"
WARM="${WARM:-200}"
HOST=public.jetbridge.test
NGINX="${JETBRIDGE_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
HERE="$(cd "$(dirname "$0")" && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jetbridge-callgrind.XXXXXX")"
mkdir -p "$WORK/tmp"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT SECONDS
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "callgrind.sh: nothing listens on $1" >&2
    exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

UPSTREAM_PORT="$(free_port)"
JB_PORT="$(free_port)"
user=''
[ "$(id -u)" -eq 0 ] && user='user root;'
sed -e "s|@WORK@|$WORK|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@USER@|$user|g" \
    "$HERE/nginx/upstream.conf.in" > "$WORK/upstream.conf"
"$NGINX" -p "$WORK" -e "$WORK/upstream-error.log" -c "$WORK/upstream.conf" -g 'daemon off;' &
PIDS+=("$!")
wait_port "$UPSTREAM_PORT" 10

cat > "$WORK/jetbridge.yaml" <<YAML
address: 127.0.0.1:$JB_PORT
certificate_file: $WORK/cert.pem
certificate_key_file: $WORK/key.pem
cookie_secret: $(head -c 32 /dev/urandom | base64)
shared_secret: $(head -c 32 /dev/urandom | base64)
log_level: warn
access_log: false
routes:
  - from: https://bench.jetbridge.test
    to: http://127.0.0.1:$UPSTREAM_PORT
    pass_identity_headers: true
    policy:
      allow:
        or:
          - email: {is: bench@example.com}
  - from: https://$HOST
    to: http://127.0.0.1:$UPSTREAM_PORT
    allow_public_unauthenticated_access: true
YAML

valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    "$BIN" standalone --config "$WORK/jetbridge.yaml" > "$WORK/jetbridge.log" 2>&1 &
VG="$!"
PIDS+=("$VG")
wait_port "$JB_PORT" 300

requests() { # COUNT: COUNT requests on one connection; prints how many got 200
    local i
    for i in $(seq 1 "$1"); do
        echo "url = \"https://$HOST:$JB_PORT/\""
        echo 'output = "/dev/null"'
    done > "$WORK/urls"
    curl -sk --http1.1 --resolve "$HOST:$JB_PORT:127.0.0.1" -K "$WORK/urls" -w '%{http_code} %{num_connects}\n' \
        | awk '$1 == 200 { ok++ } $2 > 0 { conns++ } END { print ok + 0, conns + 0 }'
}

read -r ok conns < <(requests "$WARM")
[ "$ok" = "$WARM" ] || { echo "callgrind.sh: warm-up: $ok of $WARM answered 200" >&2; exit 1; }
callgrind_control -z "$VG" > /dev/null 2>&1
read -r ok conns < <(requests "$N")
[ "$ok" = "$N" ] || { echo "callgrind.sh: $ok of $N answered 200" >&2; exit 1; }
callgrind_control -d "$VG" > /dev/null 2>&1
kill "$VG"
wait "$VG" 2>/dev/null || true

# The dump taken after the N requests is OUT.1 (OUT itself holds the rest).
total="$(callgrind_annotate "$OUT.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
echo "requests: $N on $conns connection(s); instructions: $total; per request: $(( total / N ))"
