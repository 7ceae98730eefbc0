#!/usr/bin/env bash
# B1: proxy throughput and p99 latency, measured as ratios in one run on one machine.
#
#   bench/proxy.sh
#   JETBRIDGE_CMD='target/release/jetbridge standalone --config "$JETBRIDGE_BENCH_DIR/config.yaml"' bench/proxy.sh
#
# Starts, all on 127.0.0.1:
#   upstream   nginx answering 200 "ok" from memory (bench/nginx/upstream.conf.in), plain HTTP
#   nginx      nginx as a TLS-terminating reverse proxy to the upstream, HTTP/1.1
#              keepalive to it (bench/nginx/proxy.conf.in)
#   jetbridge  the command in JETBRIDGE_CMD (optional; the column is left out without it)
# then runs `wrk --latency` against direct-upstream, nginx and jetbridge in turn, for
# ROUNDS rounds, and prints a Markdown table of median req/s and p99 latency with the
# ratios jetbridge/nginx and jetbridge/direct (and nginx/direct), plus peak RSS.
#
# Settings (env):
#   ROUNDS=3  WRK_THREADS=2  WRK_CONNS=50  WRK_DURATION=10s  WARMUP=2s (per target, per round)
#   NGINX_WORKERS=auto        nginx proxy worker processes
#   BENCH_OUT=FILE            also write the table (and raw results next to it) there
#   BENCH_KEEP=1              keep the temp dir (configs, logs, wrk outputs)
# For the jetbridge command, the script exports before starting it:
#   JETBRIDGE_BENCH_DIR       temp dir (for a config file the command writes or reads)
#   JETBRIDGE_BENCH_PORT      the port it must listen on (HTTPS), chosen free unless set
#   JETBRIDGE_BENCH_UPSTREAM  http://127.0.0.1:PORT of the upstream
#   JETBRIDGE_BENCH_HOST      route host name (bench.jetbridge.test; the cert covers it,
#                             localhost and 127.0.0.1)
#   JETBRIDGE_BENCH_CERT / JETBRIDGE_BENCH_KEY   the self-signed ECDSA P-256 cert nginx uses
# and reads:
#   JETBRIDGE_URL      what wrk requests (default https://127.0.0.1:$JETBRIDGE_BENCH_PORT/)
#   JETBRIDGE_HEADERS  newline-separated request headers sent to jetbridge only (e.g. a
#                      session cookie for the authenticated path)
#   BENCH_HEADERS      newline-separated headers sent to every target (e.g.
#                      "Host: bench.jetbridge.test")
# Each target must answer 200 to one curl request with the same headers before it is
# measured (wrk itself counts 3xx as success, so a redirect to a login page would pass).
# Everything started here is stopped by PID on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${ROUNDS:-3}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-50}"
WRK_DURATION="${WRK_DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
HOST=bench.jetbridge.test
NGINX="${JETBRIDGE_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"

for tool in "$NGINX" wrk openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/proxy.sh: $tool not found (scripts/test installs it)" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jetbridge-bench.XXXXXX")"
mkdir -p "$WORK/tmp" "$WORK/results"
PIDS=()      # processes started here (stopped by PID)
GROUPS_=()   # process groups started here with setsid (the jetbridge command)

cleanup() {
    local p
    for p in "${GROUPS_[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${GROUPS_[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench/proxy.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # PORT PID NAME
    local i
    for i in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "bench/proxy.sh: $3 exited before listening on $1" >&2; return 1; }
        sleep 0.1
    done
    echo "bench/proxy.sh: $3 did not listen on $1 within 30s" >&2
    return 1
}

render() { # TEMPLATE OUT
    local user=''
    [ "$(id -u)" -eq 0 ] && user='user root;'
    sed -e "s|@WORK@|$WORK|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
        -e "s|@NGINX_WORKERS@|$NGINX_WORKERS|g" -e "s|@HOST@|$HOST|g" -e "s|@USER@|$user|g" "$1" > "$2"
}

start_nginx() { # CONF NAME
    "$NGINX" -t -q -p "$WORK" -e "$WORK/$2-error.log" -c "$1" -g 'daemon off;'
    "$NGINX" -p "$WORK" -e "$WORK/$2-error.log" -c "$1" -g 'daemon off;' &
    PIDS+=("$!")
}

# Header lists: newline-separated strings -> arrays of -H arguments.
header_args() {
    local line
    while IFS= read -r line; do
        [ -n "$line" ] && printf '%s\0' -H "$line"
    done <<< "$1"
}

# --- setup -------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

UPSTREAM_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
render "$HERE/nginx/upstream.conf.in" "$WORK/upstream.conf"
render "$HERE/nginx/proxy.conf.in" "$WORK/proxy.conf"
start_nginx "$WORK/upstream.conf" upstream
UPSTREAM_PID="${PIDS[-1]}"
wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" upstream
start_nginx "$WORK/proxy.conf" proxy
NGINX_PID="${PIDS[-1]}"
wait_port "$NGINX_PORT" "$NGINX_PID" nginx

declare -A URL HDRS PID_OF
TARGETS=(direct nginx)
URL[direct]="http://127.0.0.1:$UPSTREAM_PORT/"
URL[nginx]="https://127.0.0.1:$NGINX_PORT/"
HDRS[direct]="${BENCH_HEADERS:-}"
HDRS[nginx]="${BENCH_HEADERS:-}"
PID_OF[direct]="$UPSTREAM_PID"
PID_OF[nginx]="$NGINX_PID"

if [ -n "${JETBRIDGE_CMD:-}" ]; then
    export JETBRIDGE_BENCH_DIR="$WORK"
    export JETBRIDGE_BENCH_PORT="${JETBRIDGE_BENCH_PORT:-$(free_port)}"
    export JETBRIDGE_BENCH_UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
    export JETBRIDGE_BENCH_HOST="$HOST"
    export JETBRIDGE_BENCH_CERT="$WORK/cert.pem"
    export JETBRIDGE_BENCH_KEY="$WORK/key.pem"
    setsid bash -c "$JETBRIDGE_CMD" > "$WORK/jetbridge.log" 2>&1 &
    GROUPS_+=("$!")
    JB_PID="$!"
    wait_port "$JETBRIDGE_BENCH_PORT" "$JB_PID" jetbridge || { tail -20 "$WORK/jetbridge.log" >&2; exit 1; }
    TARGETS+=(jetbridge)
    URL[jetbridge]="${JETBRIDGE_URL:-https://127.0.0.1:$JETBRIDGE_BENCH_PORT/}"
    HDRS[jetbridge]="$(printf '%s\n%s' "${BENCH_HEADERS:-}" "${JETBRIDGE_HEADERS:-}")"
    PID_OF[jetbridge]="$JB_PID"
fi

for t in "${TARGETS[@]}"; do
    mapfile -d '' h < <(header_args "${HDRS[$t]}")
    code="$(curl -sk -o "$WORK/results/$t.probe" -w '%{http_code}' "${h[@]}" "${URL[$t]}" || true)"
    if [ "$code" != 200 ]; then
        echo "bench/proxy.sh: $t (${URL[$t]}) answered $code, not 200:" >&2
        head -c 500 "$WORK/results/$t.probe" >&2 || true
        exit 1
    fi
done

# --- measure -----------------------------------------------------------------
# wrk prints latency as 850.00us / 1.23ms / 1.02s; this turns it into milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

run_wrk() { # TARGET ROUND
    local t="$1" r="$2" out="$WORK/results/$1.round$2.txt" rps p99 errs non2xx
    local h
    mapfile -d '' h < <(header_args "${HDRS[$t]}")
    if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
        wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WARMUP" "${h[@]}" "${URL[$t]}" > /dev/null
    fi
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "${h[@]}" "${URL[$t]}" > "$out"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    errs="$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")"
    [ -n "$rps" ] && [ -n "$p99" ] || { echo "bench/proxy.sh: cannot parse wrk output for $t:" >&2; cat "$out" >&2; exit 1; }
    echo "$t $r $rps $(to_ms "$p99") ${errs:-0} ${non2xx:-0}" >> "$WORK/results/all.txt"
    printf '  round %s %-9s %10s req/s  p99 %8s ms  errors %s  non-2xx/3xx %s\n' \
        "$r" "$t" "$rps" "$(to_ms "$p99")" "${errs:-0}" "${non2xx:-0}" >&2
}

echo "B1: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency, $ROUNDS rounds, targets: ${TARGETS[*]}" >&2
for r in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do run_wrk "$t" "$r"; done
done

# --- report ------------------------------------------------------------------
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { awk -v t="$1" -v c="$2" '$1 == t {print $c}' "$WORK/results/all.txt"; }

declare -A RPS P99 ERR RSS
for t in "${TARGETS[@]}"; do
    RPS[$t]="$(col "$t" 3 | median)"
    P99[$t]="$(col "$t" 4 | median)"
    ERR[$t]="$(col "$t" 5 | awk '{s += $1} END {print s + 0}')"
    RSS[$t]="$("$HERE/memory.sh" --tree --total "${PID_OF[$t]}" 2>/dev/null || echo 0)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

report() {
    echo "### B1: proxy throughput and p99 latency"
    echo
    echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency; median of $ROUNDS alternating rounds; $(nproc) cores; all on 127.0.0.1."
    echo "direct = plain HTTP to the upstream; nginx and jetbridge terminate TLS (ECDSA P-256) and proxy over HTTP/1.1 keepalive."
    echo
    echo "| target | req/s | p99 latency (ms) | socket errors | peak RSS (MiB) |"
    echo "|---|---:|---:|---:|---:|"
    for t in "${TARGETS[@]}"; do
        printf '| %s | %.0f | %.2f | %s | %s |\n' "$t" "${RPS[$t]}" "${P99[$t]}" "${ERR[$t]}" \
            "$(awk -v k="${RSS[$t]}" 'BEGIN {printf "%.1f", k / 1024}')"
    done
    echo
    echo "| ratio | req/s | p99 latency |"
    echo "|---|---:|---:|"
    if [ -n "${RPS[jetbridge]:-}" ]; then
        echo "| jetbridge / nginx | $(ratio "${RPS[jetbridge]}" "${RPS[nginx]}") | $(ratio "${P99[jetbridge]}" "${P99[nginx]}") |"
        echo "| jetbridge / direct | $(ratio "${RPS[jetbridge]}" "${RPS[direct]}") | $(ratio "${P99[jetbridge]}" "${P99[direct]}") |"
    fi
    echo "| nginx / direct | $(ratio "${RPS[nginx]}" "${RPS[direct]}") | $(ratio "${P99[nginx]}" "${P99[direct]}") |"
    [ -n "${RPS[jetbridge]:-}" ] || { echo; echo "(jetbridge not measured: JETBRIDGE_CMD is not set)"; }
}

report
if [ -n "${BENCH_OUT:-}" ]; then
    report > "$BENCH_OUT"
    cp "$WORK/results/all.txt" "$BENCH_OUT.raw"
fi
