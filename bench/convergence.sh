#!/usr/bin/env bash
# Convergence: "config change stored → new route answers 200", p50/p99 over
# CHANGES changes, with N routes already loaded, for
#   - jetbridge controller against the real API server (scripts/cluster):
#     t0 = `kubectl apply` of a new Ingress returned (the object is stored),
#     t1 = the first 200 from the proxy for its host;
#   - nginx (Debian) with N server blocks: t0 = config file written and
#     `nginx -s reload` sent, t1 = the first 200 for the new server name.
# Both are polled the same way (curl every 5 ms), so the probe cost is in
# both numbers. Needs a release build (cargo build --release).
#
#   bench/convergence.sh [N...]      (default: 1000 10000; env CHANGES=50)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${JETBRIDGE_BIN:-$ROOT/target/release/jetbridge}"
[ -x "$BIN" ] || { echo "bench/convergence.sh: $BIN missing; run cargo build --release" >&2; exit 1; }
CHANGES="${CHANGES:-50}"
SIZES=("$@")
[ "${#SIZES[@]}" -gt 0 ] || SIZES=(1000 10000)
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/jetbridge-conv.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/cluster/env" ] && "$ROOT/scripts/cluster" stop "$WORK/cluster" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# Polls https://HOST:PORT/ until 200; prints the milliseconds since $1.
wait_200() {
    local t0="$1" host="$2" port="$3" scheme="${4:-https}"
    while true; do
        code="$(curl -sk -o /dev/null -w '%{http_code}' --resolve "$host:$port:127.0.0.1" "$scheme://$host:$port/" || true)"
        [ "$code" = 200 ] && break
        sleep 0.005
    done
    echo $(( $(now_ms) - t0 ))
}
# p50 and p99 of the numbers on stdin.
percentiles() {
    sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)*0.50)]; i=int(NR*0.99+0.999); if(i>NR)i=NR; printf "p50=%d ms p99=%d ms (n=%d)\n", p50, a[i], NR}'
}
free_port() { "$ROOT/scripts/cluster" free-port; }

# One upstream for everything: nginx answering 200 on a plain port.
UP_PORT="$(free_port)"
mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<EOF
worker_processes 1; pid $WORK/up/nginx.pid; error_log $WORK/up/error.log;
events {}
http { access_log off; server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } } }
EOF
"$NGINX" -c "$WORK/up/nginx.conf" -g 'daemon off;' & PIDS+=($!)

"$ROOT/scripts/cluster" start "$WORK/cluster" >/dev/null
set -a; . "$WORK/cluster/env"; set +a
K() { "$KUBECTL" "$@"; }
K apply -f "$ROOT/crds/policies.jetbridge.dev.yaml" >/dev/null

ingress() { # name host
    printf -- '---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: %s, namespace: '"$NS"', annotations: {jetbridge.dev/allow_public_unauthenticated_access: "true"}}\nspec:\n  ingressClassName: jetbridge\n  rules: [{host: %s, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: up, port: {number: 80}}}}]}}]\n' "$1" "$2"
}

echo "# convergence: change stored -> route answers (curl every 5 ms), $CHANGES changes per size"
for N in "${SIZES[@]}"; do
    # --- jetbridge controller ---
    NS="bench-$N"
    K create namespace "$NS" >/dev/null
    K apply --server-side -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: jetbridge}
spec: {controller: jetbridge.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: up, namespace: $NS}
spec: {ports: [{name: http, port: 80, targetPort: $UP_PORT, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: up-1, namespace: $NS, labels: {kubernetes.io/service-name: up}}
addressType: IPv4
ports: [{name: http, port: $UP_PORT, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
EOF
    t_load=$(now_ms)
    for start in $(seq 0 500 $((N - 1))); do
        end=$(( start + 499 < N - 1 ? start + 499 : N - 1 ))
        for i in $(seq "$start" "$end"); do ingress "load-$i" "load-$i.bench.test"; done > "$WORK/batch.yaml"
        K apply --server-side -f "$WORK/batch.yaml" >/dev/null
    done
    echo "N=$N: $N Ingresses stored in $(( $(now_ms) - t_load )) ms"
    HTTPS="$(free_port)"; INTERNAL="$(free_port)"
    "$BIN" --log-format json controller --kubeconfig "$KUBECONFIG" --namespaces "$NS" \
        --bootstrap-secret "$NS/jetbridge-bootstrap" --address "127.0.0.1:$HTTPS" \
        --internal-address "127.0.0.1:$INTERNAL" > "$WORK/controller-$N.log" 2>&1 & CTL=$!
    PIDS+=($CTL)
    t_start=$(now_ms)
    wait_200 "$t_start" "load-$((N - 1)).bench.test" "$HTTPS" >/dev/null
    echo "N=$N: controller start -> all $N routes served: $(( $(now_ms) - t_start )) ms"
    : > "$WORK/jb-$N.txt"
    for c in $(seq 1 "$CHANGES"); do
        ingress "new-$c" "new-$c.bench.test" > "$WORK/one.yaml"
        K apply --server-side -f "$WORK/one.yaml" >/dev/null
        wait_200 "$(now_ms)" "new-$c.bench.test" "$HTTPS" >> "$WORK/jb-$N.txt"
    done
    echo "N=$N jetbridge: $(percentiles < "$WORK/jb-$N.txt")"
    echo "N=$N jetbridge peak RSS: $(grep VmHWM /proc/$CTL/status | awk '{print $2}') KiB"
    kill "$CTL"; wait "$CTL" 2>/dev/null || true

    # --- nginx with N server blocks, reloaded per change ---
    NP="$(free_port)"
    mkdir -p "$WORK/ng"
    {
        echo "worker_processes 2; pid $WORK/ng/nginx.pid; error_log $WORK/ng/error.log;"
        echo "events {}"
        echo "http { access_log off; server_names_hash_max_size 131072; server_names_hash_bucket_size 128;"
        echo "server { listen 127.0.0.1:$NP default_server; return 404; }"
        echo "include $WORK/ng/servers.conf; }"
    } > "$WORK/ng/nginx.conf"
    for i in $(seq 0 $((N - 1))); do
        echo "server { listen 127.0.0.1:$NP; server_name load-$i.bench.test; location / { proxy_pass http://127.0.0.1:$UP_PORT; } }"
    done > "$WORK/ng/servers.conf"
    "$NGINX" -c "$WORK/ng/nginx.conf" -g 'daemon off;' & NG=$!
    PIDS+=($NG)
    wait_200 "$(now_ms)" "load-0.bench.test" "$NP" http >/dev/null
    : > "$WORK/ng-$N.txt"
    for c in $(seq 1 "$CHANGES"); do
        t0=$(now_ms)
        echo "server { listen 127.0.0.1:$NP; server_name new-$c.bench.test; location / { proxy_pass http://127.0.0.1:$UP_PORT; } }" >> "$WORK/ng/servers.conf"
        "$NGINX" -c "$WORK/ng/nginx.conf" -s reload 2>/dev/null
        wait_200 "$t0" "new-$c.bench.test" "$NP" http >> "$WORK/ng-$N.txt"
    done
    echo "N=$N nginx -s reload: $(percentiles < "$WORK/ng-$N.txt")"
    kill "$NG"; wait "$NG" 2>/dev/null || true
done
