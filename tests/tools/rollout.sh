#!/usr/bin/env bash
# Rollouts, upgrades and evictions under load, on a cluster whose pods run (1.37 tier:
# pod runner, kube-proxy, the real EndpointSlice controller).
#
#   tests/tools/rollout.sh CLUSTER_DIR
#
#  1. `helm install` charts/jetbridge (release rollout-jetbridge in namespace rollout, two
#     replicas, no IdP) and an echo backend Deployment (4 replicas, readiness probe,
#     preStop sleep) behind a selector Service, routed by a public Ingress.
#  2. `wrk` through the proxy Service's cluster IP (port 443) while the backend is
#     restarted (`kubectl rollout restart`): every response must be 2xx, no socket error.
#  3. `wrk` while `helm upgrade` (a changed value) rolls the jetbridge pods themselves
#     (maxSurge 1, maxUnavailable 0: the Deployment's default for two replicas; the
#     chart's preStop sleep keeps a stopping pod serving until kube-proxy has dropped
#     it, and at SIGTERM jetbridge answers each keep-alive connection's next request
#     with `Connection: close` before closing it): every response 2xx, no socket error.
#  4. The PodDisruptionBudget (minAvailable 1): the Eviction API evicts one jetbridge pod
#     and refuses the second while the replacement is not Ready (429), then lets it go
#     once two are Ready again; exactly one pod holds the leader Lease.
#  5. `kubectl drain` of a node holding a jetbridge pod goes through one pod at a time
#     while curl through the Service keeps getting 200 from the survivor.
#
# The figures (requests, rps, non-2xx, socket errors per phase) are printed and written
# to CLUSTER_DIR/journey/rollout.txt. Environment: WRK_SECONDS (per wrk run, default 60),
# WRK_CONNECTIONS (default 16). Ends with "N passed, M failed"; exits non-zero when a
# check failed.

set -euo pipefail

[ "$#" -eq 1 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
PIDFILE="$WORK/controller.pid"
# shellcheck source=cluster-lib.sh
. "$ROOT/tests/tools/cluster-lib.sh"
# shellcheck source=pods-lib.sh
. "$ROOT/tests/tools/pods-lib.sh"
use_cluster "$1"
require_pod_network
command -v wrk >/dev/null || { echo "wrk is not installed (Debian package wrk)" >&2; exit 2; }
CHART="$ROOT/charts/jetbridge"
RELEASE=rollout-jetbridge
NS=rollout
APPS=rollout-apps
SELECTOR="app.kubernetes.io/instance=$RELEASE"
HOST=echo.example.test
WRK_SECONDS="${WRK_SECONDS:-60}"
WRK_CONNECTIONS="${WRK_CONNECTIONS:-16}"
LOGS="$DIR/journey"
FIGURES="$LOGS/rollout.txt"
mkdir -p "$LOGS"
HELPERS=()
cleanup() {
    local p
    for p in "${HELPERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

proxy_ip() { cluster_ip "$NS" "$RELEASE-proxy"; }

# get_echo: one request through the proxy Service; prints the status code
get_echo() {
    curl -ks -o /dev/null -w '%{http_code}' --max-time 5 \
        --resolve "$HOST:443:$(cat "$WORK/proxy-ip")" "https://$HOST/"
}

# ------------------------------------------------------------------ steps ---

t_install() {
    k get namespace "$APPS" >/dev/null 2>&1 || k create namespace "$APPS"
    "$HELM" upgrade --install "$RELEASE" "$CHART" --namespace "$NS" --create-namespace \
        --set ingressClass.name=rollout \
        --set ingressClass.controller=jetbridge.dev/rollout \
        --set leaderElectionId=rollout-leader \
        --set bootstrapSecret.name=rollout-bootstrap \
        --set logFormat=text >/dev/null
    k apply --server-side --field-manager=rollout -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: $APPS}
spec:
  replicas: 4
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
        - name: echo
          image: jetbridge.test/echo
          args: [--port, "8080", --drain-seconds, "2"]
          env:
            - {name: ECHO_NAME, value: echo}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports: [{name: http, containerPort: 8080, protocol: TCP}]
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
            failureThreshold: 1
          lifecycle:
            # the endpoint leaves the slices (and the proxy's rotation) before the
            # process stops accepting
            preStop:
              sleep: {seconds: 5}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: $APPS}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: echo
  namespace: $APPS
  annotations:
    jetbridge.dev/allow_public_unauthenticated_access: "true"
spec:
  ingressClassName: rollout
  rules:
    - host: $HOST
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
EOF
    k rollout status deployment "$RELEASE" -n "$NS" --timeout=180s
    k rollout status deployment echo -n "$APPS" --timeout=180s
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 60 "4 ready echo endpoints" count_is 4 ready_echo_endpoints
    proxy_ip >"$WORK/proxy-ip"
    wait_for 60 "200 from echo through the proxy Service" is_200
    k get pods -n "$NS" -o wide
    k get pods -n "$APPS" -o wide
    expect_eq "the Deployment's strategy" "maxSurge=25% maxUnavailable=25%" \
        "$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='maxSurge={.spec.strategy.rollingUpdate.maxSurge} maxUnavailable={.spec.strategy.rollingUpdate.maxUnavailable}')"
}

ready_echo_endpoints() { slice_endpoints "$APPS" echo | grep ' ready=true$'; }
is_200() { [ "$(get_echo)" = 200 ]; }

# under_load NAME ACTION...: wrk through the proxy Service for WRK_SECONDS while ACTION
# runs (started 3 s in); ACTION must finish before wrk does. Figures in $WORK/NAME.wrk.
under_load() {
    local name="$1" t0 t_action t_done wrk_pid
    shift
    t0=$SECONDS
    wrk -t2 -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" --timeout 10s \
        -s "$ROOT/tests/tools/wrk-status.lua" -H "Host: $HOST" \
        "https://$(cat "$WORK/proxy-ip")/" >"$WORK/$name.wrk" 2>&1 &
    wrk_pid=$!
    sleep 3 # wrk warms up with the old pods before the action (not an assertion)
    t_action=$((SECONDS - t0))
    "$@"
    t_done=$((SECONDS - t0))
    echo "$name: action from ${t_action}s to ${t_done}s of ${WRK_SECONDS}s under load"
    kill -0 "$wrk_pid" 2>/dev/null || { echo "wrk ended before the action did: the load did not cover it"; cat "$WORK/$name.wrk"; return 1; }
    wait "$wrk_pid" || { echo "wrk failed"; cat "$WORK/$name.wrk"; return 1; }
    cat "$WORK/$name.wrk"
    local line
    line="$(grep '^WRK ' "$WORK/$name.wrk")"
    printf '%-34s %s\n' "$name" "${line#WRK }" >>"$FIGURES"
}

# wrk_field NAME KEY: a figure of a wrk run
wrk_field() { grep '^WRK ' "$WORK/$1.wrk" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

expect_clean() {
    local n total=0
    for key in non2xx connect read write timeout; do
        n="$(wrk_field "$1" "$key")"
        echo "$key=$n"
        total=$((total + n))
    done
    [ "$(wrk_field "$1" requests)" -gt 0 ] || { echo "no requests"; return 1; }
    expect_eq "non-2xx responses and socket errors during $1" 0 "$total"
}

restart_backend() {
    all_pods "$APPS" app=echo >"$WORK/echo-old"
    k rollout restart deployment echo -n "$APPS"
    k rollout status deployment echo -n "$APPS" --timeout=120s
    wait_for 60 "the old echo pods gone" none_left "$APPS" "$WORK/echo-old"
}

none_left() {
    local pod
    while read -r pod; do
        if k get pod "$pod" -n "$1" -o name >/dev/null 2>&1; then return 1; fi
    done <"$2"
}

t_backend_rollout() {
    under_load "backend rollout restart" restart_backend
    expect_clean "backend rollout restart"
}

# upgrade_proxy LOG_LEVEL: helm upgrade with a changed logLevel (rolls the pods)
upgrade_proxy() {
    all_pods "$NS" "$SELECTOR" >"$WORK/proxy-old"
    "$HELM" upgrade "$RELEASE" "$CHART" --namespace "$NS" --reuse-values --set "logLevel=$1" >/dev/null
    k rollout status deployment "$RELEASE" -n "$NS" --timeout=180s
    wait_for 90 "the old jetbridge pods gone" none_left "$NS" "$WORK/proxy-old"
}

new_pods_ready() {
    ready_pods "$NS" "$SELECTOR" >"$WORK/proxy-new"
    if grep -qxFf "$WORK/proxy-old" "$WORK/proxy-new"; then echo "an old pod is still Ready"; return 1; fi
    expect_eq "Ready jetbridge pods after the upgrade" 2 "$(grep -c . "$WORK/proxy-new")"
}

t_proxy_upgrade() {
    expect_eq "preStop of the jetbridge pods" '{"preStop":{"sleep":{"seconds":5}}}' \
        "$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].lifecycle}')"
    under_load "helm upgrade (jetbridge pods)" upgrade_proxy debug
    new_pods_ready
    expect_clean "helm upgrade (jetbridge pods)"
}

# evict NS POD: the Eviction API (what kubectl drain uses); prints the answer
evict() {
    k create --raw "/api/v1/namespaces/$1/pods/$2/eviction" -f - <<EOF 2>&1
{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "$2", "namespace": "$1"}}
EOF
}

lease_holder() { k get lease rollout-leader -n "$NS" -o jsonpath='{.spec.holderIdentity}'; }
holder_is_ready() { ready_pods "$NS" "$SELECTOR" | grep -qx -- "$(lease_holder)"; }

t_pdb_eviction() {
    expect_eq "PDB" "policy/v1 minAvailable=1" \
        "$(k get pdb "$RELEASE" -n "$NS" -o jsonpath='{.apiVersion} minAvailable={.spec.minAvailable}')"
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 30 "the PDB allows one disruption" pdb_allows 1
    wait_for 60 "the Lease held by a Ready pod" holder_is_ready
    echo "Lease holder: $(lease_holder)"
    local first second out
    first="$(ready_pods "$NS" "$SELECTOR" | sed -n 1p)"
    second="$(ready_pods "$NS" "$SELECTOR" | sed -n 2p)"
    out="$(evict "$NS" "$first")" || { echo "eviction of $first refused: $out"; return 1; }
    echo "evicted $first"
    # the second is refused while only one pod is available
    if out="$(evict "$NS" "$second")"; then
        echo "eviction of $second allowed with $first gone: $out"; return 1
    fi
    echo "refused: $out"
    grep -q 'disruption budget' <<<"$out" || { echo "refused for another reason"; return 1; }
    expect_eq "serving while one pod is gone" 200 "$(get_echo)"
    # once the replacement is Ready, the second may go
    wait_for 90 "2 Ready jetbridge pods again" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 30 "the PDB allows one disruption" pdb_allows 1
    out="$(evict "$NS" "$second")" || { echo "eviction of $second refused: $out"; return 1; }
    echo "evicted $second"
    wait_for 90 "2 Ready jetbridge pods again" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 60 "the Lease held by a Ready pod" holder_is_ready
    echo "Lease holder: $(lease_holder)"
}

pdb_allows() { [ "$(k get pdb "$RELEASE" -n "$NS" -o jsonpath='{.status.disruptionsAllowed}')" = "$1" ]; }

# poll_serving FILE: one request through the Service every 0.2 s, a status per line,
# until FILE.stop exists
poll_serving() {
    while [ ! -e "$1.stop" ]; do
        get_echo >>"$1" || true
        echo >>"$1"
        sleep 0.2
    done
}

t_drain() {
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 30 "the PDB allows one disruption" pdb_allows 1
    local node
    node="$(k get pods -n "$NS" -l "$SELECTOR" -o jsonpath='{.items[0].spec.nodeName}')"
    echo "draining $node (jetbridge pods there: $(k get pods -n "$NS" -l "$SELECTOR" --field-selector "spec.nodeName=$node" -o name | tr '\n' ' '))"
    : >"$WORK/serving"
    poll_serving "$WORK/serving" &
    local poller=$!
    local rc=0
    k drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=180s 2>&1 | tee "$WORK/drain" || rc=1
    touch "$WORK/serving.stop"
    wait "$poller" || true
    k uncordon "$node"
    [ "$rc" -eq 0 ] || { echo "drain failed"; return 1; }
    grep -q "evicted" "$WORK/drain" || { echo "nothing evicted"; return 1; }
    if [ "$(k get pods -n "$NS" -l "$SELECTOR" --field-selector "spec.nodeName=$node" -o name | grep -c .)" -ne 0 ]; then
        echo "jetbridge pods left on $node"; return 1
    fi
    local total bad
    total="$(grep -c . "$WORK/serving")"
    bad="$(grep -vc '^200$' "$WORK/serving" || true)"
    echo "during the drain: $total requests, $bad not 200 ($(sort "$WORK/serving" | uniq -c | tr '\n' ' '))"
    printf '%-34s requests=%d not200=%d\n' "kubectl drain $node (curl)" "$total" "$bad" >>"$FIGURES"
    [ "$total" -gt 0 ] || { echo "no request made"; return 1; }
    expect_eq "requests not answered 200 during the drain" 0 "$bad"
    wait_for 90 "2 Ready jetbridge pods after the drain" count_is 2 ready_pods "$NS" "$SELECTOR"
}

# ----------------------------------------------------------------- main ---

echo "cluster: $APISERVER_URL (Kubernetes $KUBE_VERSION, nodes $NODE_NAMES); $(wrk --version 2>&1 | head -n 1)"
printf '# wrk -t2 -c%s -d%ss through the proxy Service (HTTPS, cluster IP, kube-proxy) to a 4-replica echo Deployment; %s\n' \
    "$WRK_CONNECTIONS" "$WRK_SECONDS" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$FIGURES"
check "helm install (2 replicas) and an echo backend behind a public Ingress" t_install
check "kubectl rollout restart of the backend under wrk: all 2xx" t_backend_rollout
check "helm upgrade rolls the jetbridge pods under wrk: all 2xx" t_proxy_upgrade
check "PDB: one eviction at a time, the Lease follows the pods" t_pdb_eviction
check "kubectl drain: one pod at a time, the survivor serves" t_drain

cat >>"$FIGURES" <<'EOF'
# non2xx: responses other than 2xx; connect/read/write/timeout: wrk's socket errors.
EOF
echo
cat "$FIGURES"
printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
