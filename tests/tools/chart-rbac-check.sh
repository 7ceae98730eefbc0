#!/usr/bin/env bash
# Proves the chart's RBAC against a real API server: installs charts/jetbridge with
# helm, checks with `kubectl auth can-i --as=system:serviceaccount:...` every verb
# the controller needs (yes) and some it must not have (no), then runs the real
# controller binary with the chart ServiceAccount's token (TokenRequest) and checks
# that it works: no forbidden/403 in its log, the bootstrap Secret created, the
# leader Lease held, Ingress status, Policy status and an Event written, and
# /readyz 200 on its internal port.
#
#   tests/tools/chart-rbac-check.sh CLUSTER_DIR
#
# CLUSTER_DIR is a running cluster (`scripts/cluster start DIR`); its env file gives
# kubectl, helm and the admin kubeconfig. Two releases, both kept for re-runs
# (`helm upgrade --install`):
#   jetbridge in namespace jetbridge       all namespaces (ClusterRole), with an IdP
#   jb-ns in namespace jetbridge-ns        watchNamespaces [shop] (Roles there)
# Namespace shop holds the test Ingress, Service, its upstream and Policy.
#
# What depends on the server's version (KUBE_VERSION in CLUSTER_DIR/env):
#   1.20  the chart's PDB is policy/v1beta1; deploy/jetbridge.yaml's policy/v1 PDB is
#         refused; no pods run, so the upstream is a hand-written EndpointSlice at
#         127.0.0.1 (the controller runs with --allow-loopback-backends)
#   1.21+ (the 1.37 tier) policy/v1 PDB; all of deploy/jetbridge.yaml accepted; the
#         upstream is an echo pod behind a selector Service (slices by the EndpointSlice
#         controller). The releases are installed with replicaCount=0: here the
#         controller is run by this script, out of cluster, with a TokenRequest token of
#         the chart's ServiceAccount, so that what the chart's RBAC grants is all it has
#         and the Secret, Lease and ConfigMaps it must create are its own (the chart's
#         pods themselves run in journey.sh and rollout.sh).
#
# Environment: JETBRIDGE_BIN (default: target/debug/jetbridge), CONTROLLER_SECONDS
# (how long each controller run lasts, default 15). The controller logs are kept in
# CLUSTER_DIR/chart-rbac-<release>.log. Ends with "N passed, M failed"; exits
# non-zero when a check failed.

set -euo pipefail

[ "$#" -eq 1 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
# The running controller's PID is kept in a file: checks run in subshells.
PIDFILE="$WORK/controller.pid"
# shellcheck source=cluster-lib.sh
. "$ROOT/tests/tools/cluster-lib.sh"
cleanup() {
    stop_controller
    rm -rf "$WORK"
}
trap cleanup EXIT
use_cluster "$1"
jetbridge_bin
RUN_SECONDS="${CONTROLLER_SECONDS:-15}"
CHART="$ROOT/charts/jetbridge"
# 1 when the server is 1.20 (no pods, policy/v1beta1), else 0
case "$KUBE_VERSION" in 1.20*) OLD_SERVER=1 ;; *) OLD_SERVER=0 ;; esac
VERSION_VALUES=()
LOOPBACK=()
if [ "$OLD_SERVER" = 1 ]; then LOOPBACK=(--allow-loopback-backends); else VERSION_VALUES=(--set replicaCount=0); fi

ALL_NAMESPACES_VALUES=(
    --set authenticate.host=authenticate.example.test
    --set idp.providerUrl=https://idp.example.test
    --set idp.clientId=jetbridge
    --set idp.clientSecret=rbac-check-client-secret
    "${VERSION_VALUES[@]}"
)

# ---------------------------------------------------------------- install ---

t_install_all_namespaces() {
    k get namespace shop >/dev/null 2>&1 || k create namespace shop
    "$HELM" upgrade --install jetbridge "$CHART" --namespace jetbridge --create-namespace \
        "${ALL_NAMESPACES_VALUES[@]}"
    expect_eq "release" deployed "$("$HELM" status jetbridge -n jetbridge -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')"
    grep -qx True <<<"$(k get crd policies.jetbridge.dev -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')"
    # the chart picks policy/v1beta1 on 1.20, policy/v1 from 1.21
    if [ "$OLD_SERVER" = 1 ]; then
        k get poddisruptionbudgets.v1beta1.policy jetbridge -n jetbridge -o name
    else
        expect_eq "PDB apiVersion" policy/v1 \
            "$(k get poddisruptionbudgets.v1.policy jetbridge -n jetbridge -o jsonpath='{.apiVersion}')"
    fi
    k get serviceaccount,deployment,service,configmap,secret,role,rolebinding -n jetbridge -o name \
        -l app.kubernetes.io/instance=jetbridge
    k get clusterrole,clusterrolebinding,ingressclass -o name -l app.kubernetes.io/instance=jetbridge
    expect_eq "proxy Service ports" "https:443:TCP http:80:TCP" \
        "$(k get service jetbridge-proxy -n jetbridge -o jsonpath='{range .spec.ports[*]}{.name}:{.port}:{.protocol} {end}' | sed 's/ $//')"
}

t_install_watched_namespaces() {
    "$HELM" upgrade --install jb-ns "$CHART" --namespace jetbridge-ns --create-namespace \
        --set 'watchNamespaces={shop}' \
        --set ingressClass.create=false \
        --set leaderElectionId=jb-ns-leader \
        --set bootstrapSecret.name=jb-ns-bootstrap \
        "${VERSION_VALUES[@]}"
    k get role jb-ns-jetbridge-watch -n shop -o name
    k get role jb-ns-jetbridge -n jetbridge-ns -o name
    expect_eq "ClusterRole rules" "ingressclasses gatewayclasses gatewayclasses/status namespaces" \
        "$(k get clusterrole jb-ns-jetbridge -o jsonpath='{.rules[*].resources[*]}')"
}


t_upgrade_rolls_pods() {
    # a changed config value changes the pod template (checksum/config): the pods roll
    local before after
    before="$(k get deployment jetbridge -n jetbridge -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    "$HELM" upgrade jetbridge "$CHART" --namespace jetbridge "${ALL_NAMESPACES_VALUES[@]}" --set logLevel=debug
    after="$(k get deployment jetbridge -n jetbridge -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    grep -qx 'log_level: "debug"' <<<"$(k get configmap jetbridge-config -n jetbridge -o jsonpath='{.data.config\.yaml}')"
    [ -n "$before" ] && [ "$before" != "$after" ] || { echo "checksum/config: '$before' -> '$after'"; return 1; }
    "$HELM" upgrade jetbridge "$CHART" --namespace jetbridge "${ALL_NAMESPACES_VALUES[@]}"
    expect_eq "checksum/config back" "$before" \
        "$(k get deployment jetbridge -n jetbridge -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
}

t_deploy_dry_run() {
    # every object of deploy/jetbridge.yaml passes the API server's validation (server
    # dry run), except, on 1.20, the policy/v1 PodDisruptionBudget (served from 1.21)
    # and the Deployment (its preStop sleep action is 1.30+; kubectl's own validation
    # refuses it and stops there, so the objects after it are not sent on 1.20)
    local out objects before
    out="$(k apply --dry-run=server -f "$ROOT/deploy/jetbridge.yaml" 2>&1 | grep -v '^Warning: ' || true)"
    echo "$out"
    objects="$(grep -c '^kind: ' "$ROOT/deploy/jetbridge.yaml")"
    before="$(sed -n '1,/^kind: Deployment$/p' "$ROOT/deploy/jetbridge.yaml" | grep -c '^kind: ')"
    if [ "$OLD_SERVER" = 1 ]; then
        # the objects before the Deployment, less the PDB
        expect_eq "objects accepted" "$((before - 2))" "$(grep -c '(server dry run)$' <<<"$out")"
        expect_eq "refused" 'no matches for kind "PodDisruptionBudget" in version "policy/v1"' \
            "$(grep -o 'no matches for kind "[A-Za-z]*" in version "[a-z0-9./]*"' <<<"$out")"
        grep -q 'lifecycle.preStop): unknown field "sleep"' <<<"$out" \
            || { echo "the Deployment's preStop sleep was not the refusal"; return 1; }
    else
        expect_eq "objects accepted" "$objects" "$(grep -c '(server dry run)$' <<<"$out")"
        expect_eq "poddisruptionbudget accepted as policy/v1" 1 \
            "$(grep -c '^poddisruptionbudget.policy/jetbridge .*(server dry run)$' <<<"$out")"
    fi
}

# ----------------------------------------------------------------- can-i ---

# can SA EXPECT ARGS...: `kubectl auth can-i ARGS --as SA` must answer EXPECT (yes/no).
can() {
    local sa="$1" want="$2" got
    shift 2
    got="$(k auth can-i "$@" --as="system:serviceaccount:$sa" 2>/dev/null || true)"
    printf '%-4s %-3s can-i %s\n' "$([ "$got" = "$want" ] && echo ok || echo FAIL)" "$got" "$*"
    [ "$got" = "$want" ]
}

# every ARGS...: runs all the can-i lines from stdin ("SA EXPECT ARGS..."), fails if any failed.
every() {
    set -f # `*` is a verb and a resource here, not a glob
    local bad=0 line
    while read -r line; do
        [ -z "$line" ] || [ "${line:0:1}" = "#" ] && continue
        # shellcheck disable=SC2086
        can $line || bad=$((bad + 1))
    done
    [ "$bad" -eq 0 ]
}

t_can_i_all_namespaces_needed() {
    # The Gateway API kinds are asked about by name: kubectl resolves them only when
    # their CRDs are installed (as on a cluster that uses them).
    install_gateway_api
    every <<'EOF'
# cluster-scoped
jetbridge:jetbridge yes get ingressclasses.networking.k8s.io
jetbridge:jetbridge yes list ingressclasses.networking.k8s.io
jetbridge:jetbridge yes watch ingressclasses.networking.k8s.io
# namespaced kinds, in every namespace
jetbridge:jetbridge yes get ingresses.networking.k8s.io --all-namespaces
jetbridge:jetbridge yes list ingresses.networking.k8s.io --all-namespaces
jetbridge:jetbridge yes watch ingresses.networking.k8s.io --all-namespaces
jetbridge:jetbridge yes patch ingresses.networking.k8s.io -n shop
jetbridge:jetbridge yes get ingresses.networking.k8s.io --subresource=status -n shop
jetbridge:jetbridge yes update ingresses.networking.k8s.io --subresource=status -n shop
jetbridge:jetbridge yes patch ingresses.networking.k8s.io --subresource=status -n shop
jetbridge:jetbridge yes get policies.jetbridge.dev --all-namespaces
jetbridge:jetbridge yes list policies.jetbridge.dev --all-namespaces
jetbridge:jetbridge yes watch policies.jetbridge.dev --all-namespaces
jetbridge:jetbridge yes get policies.jetbridge.dev --subresource=status -n shop
jetbridge:jetbridge yes update policies.jetbridge.dev --subresource=status -n shop
jetbridge:jetbridge yes patch policies.jetbridge.dev --subresource=status -n shop
jetbridge:jetbridge yes get services --all-namespaces
jetbridge:jetbridge yes list services --all-namespaces
jetbridge:jetbridge yes watch services --all-namespaces
jetbridge:jetbridge yes get endpointslices.discovery.k8s.io --all-namespaces
jetbridge:jetbridge yes list endpointslices.discovery.k8s.io --all-namespaces
jetbridge:jetbridge yes watch endpointslices.discovery.k8s.io --all-namespaces
jetbridge:jetbridge yes get secrets --all-namespaces
jetbridge:jetbridge yes list secrets --all-namespaces
jetbridge:jetbridge yes list gatewayclasses.gateway.networking.k8s.io
jetbridge:jetbridge yes watch httproutes.gateway.networking.k8s.io --all-namespaces
jetbridge:jetbridge yes patch httproutes.gateway.networking.k8s.io --subresource=status --all-namespaces
jetbridge:jetbridge yes watch grpcroutes.gateway.networking.k8s.io --all-namespaces
jetbridge:jetbridge yes patch grpcroutes.gateway.networking.k8s.io --subresource=status --all-namespaces
jetbridge:jetbridge yes watch secrets --all-namespaces
jetbridge:jetbridge yes create events.events.k8s.io -n shop
jetbridge:jetbridge yes patch events.events.k8s.io -n shop
# the release namespace
jetbridge:jetbridge yes create secrets -n jetbridge
jetbridge:jetbridge yes get secrets/jetbridge-bootstrap -n jetbridge
jetbridge:jetbridge yes create leases.coordination.k8s.io -n jetbridge
jetbridge:jetbridge yes get leases.coordination.k8s.io/jetbridge-leader -n jetbridge
jetbridge:jetbridge yes update leases.coordination.k8s.io/jetbridge-leader -n jetbridge
jetbridge:jetbridge yes create configmaps -n jetbridge
jetbridge:jetbridge yes get configmaps/jetbridge-revocations -n jetbridge
jetbridge:jetbridge yes list configmaps/jetbridge-revocations -n jetbridge
jetbridge:jetbridge yes watch configmaps/jetbridge-revocations -n jetbridge
jetbridge:jetbridge yes patch configmaps/jetbridge-revocations -n jetbridge
jetbridge:jetbridge yes get services/jetbridge-proxy -n jetbridge
jetbridge:jetbridge yes create events.events.k8s.io -n jetbridge
EOF
}

t_can_i_all_namespaces_denied() {
    every <<'EOF'
jetbridge:jetbridge no * * --all-namespaces
jetbridge:jetbridge no * * -n jetbridge
jetbridge:jetbridge no delete secrets -n jetbridge
jetbridge:jetbridge no delete secrets/jetbridge-bootstrap -n jetbridge
jetbridge:jetbridge no update secrets/jetbridge-bootstrap -n jetbridge
jetbridge:jetbridge no patch secrets/jetbridge-bootstrap -n jetbridge
jetbridge:jetbridge no delete secrets -n shop
jetbridge:jetbridge no update secrets -n shop
jetbridge:jetbridge no patch secrets -n shop
jetbridge:jetbridge no create secrets -n shop
jetbridge:jetbridge no create pods -n jetbridge
jetbridge:jetbridge no create pods/exec -n jetbridge
jetbridge:jetbridge no get nodes
jetbridge:jetbridge no update ingresses.networking.k8s.io -n shop
jetbridge:jetbridge no delete ingresses.networking.k8s.io -n shop
jetbridge:jetbridge no update policies.jetbridge.dev -n shop
jetbridge:jetbridge no create ingressclasses.networking.k8s.io
jetbridge:jetbridge no update services -n shop
jetbridge:jetbridge no delete events.events.k8s.io -n shop
jetbridge:jetbridge no get configmaps -n shop
jetbridge:jetbridge no list configmaps -n jetbridge
jetbridge:jetbridge no get configmaps/other -n jetbridge
jetbridge:jetbridge no patch configmaps/other -n jetbridge
jetbridge:jetbridge no delete configmaps/jetbridge-revocations -n jetbridge
jetbridge:jetbridge no get leases.coordination.k8s.io/other -n jetbridge
jetbridge:jetbridge no update leases.coordination.k8s.io/other -n jetbridge
jetbridge:jetbridge no delete leases.coordination.k8s.io/jetbridge-leader -n jetbridge
jetbridge:jetbridge no create leases.coordination.k8s.io -n shop
jetbridge:jetbridge no create serviceaccounts/token -n jetbridge
jetbridge:jetbridge no bind clusterroles.rbac.authorization.k8s.io
jetbridge:jetbridge no escalate roles.rbac.authorization.k8s.io -n jetbridge
jetbridge:jetbridge no impersonate serviceaccounts -n jetbridge
EOF
}

t_can_i_watched_namespaces() {
    every <<'EOF'
# needed
jetbridge-ns:jb-ns-jetbridge yes list ingressclasses.networking.k8s.io
jetbridge-ns:jb-ns-jetbridge yes watch ingresses.networking.k8s.io -n shop
jetbridge-ns:jb-ns-jetbridge yes patch ingresses.networking.k8s.io -n shop
jetbridge-ns:jb-ns-jetbridge yes patch ingresses.networking.k8s.io --subresource=status -n shop
jetbridge-ns:jb-ns-jetbridge yes watch policies.jetbridge.dev -n shop
jetbridge-ns:jb-ns-jetbridge yes patch policies.jetbridge.dev --subresource=status -n shop
jetbridge-ns:jb-ns-jetbridge yes watch services -n shop
jetbridge-ns:jb-ns-jetbridge yes watch endpointslices.discovery.k8s.io -n shop
jetbridge-ns:jb-ns-jetbridge yes watch secrets -n shop
jetbridge-ns:jb-ns-jetbridge yes create events.events.k8s.io -n shop
jetbridge-ns:jb-ns-jetbridge yes create secrets -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes get secrets/jb-ns-bootstrap -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes list secrets/jb-ns-bootstrap -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes watch secrets/jb-ns-bootstrap -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes update leases.coordination.k8s.io/jb-ns-leader -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes watch configmaps/jb-ns-revocations -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge yes get services/jb-ns-jetbridge-proxy -n jetbridge-ns
# not outside the watched namespaces
jetbridge-ns:jb-ns-jetbridge no list ingresses.networking.k8s.io --all-namespaces
jetbridge-ns:jb-ns-jetbridge no list ingresses.networking.k8s.io -n jetbridge
jetbridge-ns:jb-ns-jetbridge no patch ingresses.networking.k8s.io -n jetbridge
jetbridge-ns:jb-ns-jetbridge no list secrets --all-namespaces
jetbridge-ns:jb-ns-jetbridge no list secrets -n jetbridge
jetbridge-ns:jb-ns-jetbridge no list secrets -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge no get secrets/other -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge no list services -n jetbridge-ns
jetbridge-ns:jb-ns-jetbridge no create events.events.k8s.io -n default
jetbridge-ns:jb-ns-jetbridge no * * --all-namespaces
EOF
}

# ------------------------------------------------------- the controller ---

# the upstream of shop/web: on 1.20 a hand-written slice at loopback (no pods run); from
# 1.21 (the 1.37 tier) an echo pod behind a selector Service, sliced by the controller
shop_upstream() {
    if [ "$OLD_SERVER" = 1 ]; then
        k apply -f - <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {ready: true}
EOF
        return
    fi
    k apply -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: echo
          image: jetbridge.test/echo
          args: [--port, "8080"]
          ports: [{name: http, containerPort: 8080, protocol: TCP}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
EOF
    k rollout status deployment web -n shop --timeout=120s
    local i
    for i in $(seq 1 60); do
        [ "$(web_ready_addresses | wc -w)" = 1 ] && break
        sleep 0.5
    done
    expect_eq "shop/web's slice: its pod, ready" \
        "$(k get pods -n shop -l app=web -o jsonpath='{.items[0].status.podIP}')" "$(web_ready_addresses)"
}

web_ready_addresses() {
    k get endpointslices -n shop -l kubernetes.io/service-name=web \
        -o jsonpath='{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}'
}

t_shop_objects() {
    shop_upstream
    k apply -f - <<'EOF'
apiVersion: jetbridge.dev/v1
kind: Policy
metadata: {name: staff, namespace: shop}
spec:
  allow:
    or:
      - domain: {is: example.com}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
  annotations:
    jetbridge.dev/policy_ref: staff
    jetbridge.dev/pass_identity_headers: "true"
spec:
  ingressClassName: jetbridge
  rules:
    - host: web.shop.example.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80}}}
EOF
    # start from nothing the controller writes
    k patch ingress web -n shop --subresource=status --type=merge -p '{"status":{"loadBalancer":{"ingress":null}}}'
    k annotate ingress web -n shop jetbridge.dev/status- >/dev/null
    k patch policies.jetbridge.dev staff -n shop --subresource=status --type=merge -p '{"status":null}'
    k delete events.events.k8s.io -n shop --all >/dev/null
}

# run_controller RELEASE NAMESPACE SA FLAGS...: runs the controller as the release's
# ServiceAccount with the release's config.yaml for RUN_SECONDS; leaves its log in
# $DIR/chart-rbac-RELEASE.log and its internal port in $WORK/RELEASE.internal.
run_controller() {
    local release="$1" ns="$2" sa="$3" fullname="$4"
    shift 4
    local kc="$WORK/$release.kubeconfig" log="$DIR/chart-rbac-$release.log" cfg="$WORK/$release.config.yaml"
    local https internal redirect
    https="$(free_port)"; internal="$(free_port)"; redirect="$(free_port)"
    echo "$internal" >"$WORK/$release.internal"
    echo "$https" >"$WORK/$release.https"
    sa_kubeconfig "$ns" "$sa" "$kc"
    # the release's own config.yaml; the IdP client secret file from the release's Secret
    k get configmap "$fullname-config" -n "$ns" -o jsonpath='{.data.config\.yaml}' >"$cfg"
    if k get secret "$fullname-idp" -n "$ns" >/dev/null 2>&1; then
        k get secret "$fullname-idp" -n "$ns" -o jsonpath='{.data.client_secret}' | base64 -d >"$WORK/$release.client_secret"
        sed -i "s#/etc/jetbridge/idp/client_secret#$WORK/$release.client_secret#" "$cfg"
    fi
    echo "--- config.yaml"; cat "$cfg"
    # nothing left from an earlier run: the controller must create these itself
    k delete secret "$(bootstrap_name "$release")" -n "$ns" --ignore-not-found
    k delete lease "$(lease_name "$release")" -n "$ns" --ignore-not-found
    k delete configmap "$(revocations_name "$release")" -n "$ns" --ignore-not-found
    POD_NAME="chart-rbac-$release" "$BIN" controller --kubeconfig "$kc" --config "$cfg" \
        --log-format text \
        --address "127.0.0.1:$https" --internal-address "127.0.0.1:$internal" \
        --http-redirect-address "127.0.0.1:$redirect" "${LOOPBACK[@]}" \
        "$@" >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    echo "controller PID $pid, log $log"
    local t0=$SECONDS ready=
    while [ $((SECONDS - t0)) -lt "$RUN_SECONDS" ]; do
        kill -0 "$pid" 2>/dev/null || { echo "controller exited early"; tail -n 30 "$log"; return 1; }
        if [ -z "$ready" ] && curl -fsS -o /dev/null "http://127.0.0.1:$internal/readyz" 2>/dev/null; then
            ready=$((SECONDS - t0))
            echo "/readyz 200 after ${ready}s"
        fi
        sleep 1
    done
    [ -n "$ready" ] || { echo "/readyz never answered 200 in ${RUN_SECONDS}s"; tail -n 30 "$log"; return 1; }
}

bootstrap_name() { case "$1" in jetbridge) echo jetbridge-bootstrap ;; jb-ns) echo jb-ns-bootstrap ;; esac; }
lease_name() { case "$1" in jetbridge) echo jetbridge-leader ;; jb-ns) echo jb-ns-leader ;; esac; }
revocations_name() { case "$1" in jetbridge) echo jetbridge-revocations ;; jb-ns) echo jb-ns-revocations ;; esac; }

# the checks on a controller run (RELEASE NAMESPACE), while it still runs
t_no_forbidden() {
    local log="$DIR/chart-rbac-$1.log"
    if grep -inE 'forbidden|\b403\b' "$log"; then
        echo "the controller was refused by the API server (see above, $log)"
        return 1
    fi
    grep -q 'initial sync complete' "$log" || { echo "no 'initial sync complete' in $log"; tail -n 20 "$log"; return 1; }
}

t_readyz() {
    expect_eq "/readyz" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$WORK/$1.internal")/readyz")"
    expect_eq "/healthz" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$WORK/$1.internal")/healthz")"
    grep -q '"kty":"EC"' <<<"$(curl -fsS "http://127.0.0.1:$(cat "$WORK/$1.internal")/.well-known/pomerium/jwks.json")"
}

t_bootstrap_created() {
    local name
    name="$(bootstrap_name "$1")"
    grep -q 'created the bootstrap Secret' "$DIR/chart-rbac-$1.log"
    expect_eq "keys of $2/$name" "cookie_secret shared_secret signing_key" \
        "$(k get secret "$name" -n "$2" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}' | sed 's/ $//')"
}

t_lease_held() {
    expect_eq "holder of $2/$(lease_name "$1")" "chart-rbac-$1" \
        "$(k get lease "$(lease_name "$1")" -n "$2" -o jsonpath='{.spec.holderIdentity}')"
}

t_status_and_events() {
    local want
    want="$(k get service "$2" -n "$1" -o jsonpath='{.spec.clusterIP}')"
    expect_eq "Ingress shop/web status (the publish Service's cluster IP)" "$want" \
        "$(k get ingress web -n shop -o jsonpath='{.status.loadBalancer.ingress[0].ip}')"
    expect_eq "Policy shop/staff Accepted" True \
        "$(k get policies.jetbridge.dev staff -n shop -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}')"
    k get events.events.k8s.io -n shop -o jsonpath='{range .items[*]}{.reason} {.regarding.kind}/{.regarding.name}{"\n"}{end}' \
        >"$WORK/events"
    cat "$WORK/events"
    grep -q '^Programmed Ingress/web$' "$WORK/events" || { echo "no Normal Programmed Event regarding Ingress shop/web"; return 1; }
    expect_eq "Ingress shop/web jetbridge.dev/status" Programmed \
        "$(k get ingress web -n shop -o jsonpath='{.metadata.annotations.jetbridge\.dev/status}')"
}

# sign_out RELEASE NAMESPACE SUB: a session for web.shop.example.test minted with the
# bootstrap Secret's cookie secret, signed out at the proxy (the session is revoked).
sign_out() {
    local cookie_secret cookie
    cookie_secret="$(k get secret "$(bootstrap_name "$1")" -n "$2" -o jsonpath='{.data.cookie_secret}' | base64 -d)"
    printf 'cookie_secret: %s\n' "$cookie_secret" >"$WORK/mint.yaml"
    cookie="$("$BIN" mint-session --config "$WORK/mint.yaml" --host web.shop.example.test --sub "$3" --email "$3@example.com")"
    rm -f "$WORK/mint.yaml"
    curl -ksS -o /dev/null -w '%{http_code}\n' \
        --resolve "web.shop.example.test:$(cat "$WORK/$1.https"):127.0.0.1" \
        -H "Cookie: _jetbridge=$cookie" \
        "https://web.shop.example.test:$(cat "$WORK/$1.https")/.pomerium/sign_out"
}

# revocation list entries: the ConfigMap's data keys, counted
revocations() { k get configmap "$3" -n "$2" -o go-template='{{len .data}}' 2>/dev/null || echo 0; }

t_revocations_shared() {
    # RELEASE NAMESPACE CONFIGMAP: the first sign-out creates the ConfigMap (absent since
    # the controller started), the second patches it
    expect_eq "entries in $2/$3 before" 0 "$(revocations "$@")"
    local i n want
    for user in alice bob; do
        sign_out "$1" "$2" "$user"
        grep -q "signed out; session revoked sub=$user" "$DIR/chart-rbac-$1.log" \
            || { echo "no revocation of $user in the log"; tail -n 5 "$DIR/chart-rbac-$1.log"; return 1; }
        n=0
        [ "$user" = alice ] && want=1 || want=2
        for i in $(seq 1 50); do
            n="$(revocations "$@")"
            [ "$n" = "$want" ] && break
            sleep 0.2
        done
        expect_eq "entries in $2/$3 after $user signed out" "$want" "$n"
    done
    t_no_forbidden "$1"
}

# ----------------------------------------------------------------- main ---

echo "cluster: $APISERVER_URL; helm: $("$HELM" version --short); binary: $BIN"
check "helm install (all namespaces, with an IdP)" t_install_all_namespaces
check "helm install (watchNamespaces: [shop])" t_install_watched_namespaces
check "helm upgrade with a changed value changes checksum/config" t_upgrade_rolls_pods
check "deploy/jetbridge.yaml: server dry run (1.21+: PDB; 1.30+: preStop sleep)" t_deploy_dry_run
check "can-i: every verb the controller needs (all namespaces)" t_can_i_all_namespaces_needed
check "can-i: what it must not do (all namespaces)" t_can_i_all_namespaces_denied
check "can-i: watchNamespaces release, inside and outside" t_can_i_watched_namespaces
check "Service and its upstream, Policy, Ingress in shop" t_shop_objects

check "controller as jetbridge:jetbridge for ${RUN_SECONDS}s" run_controller jetbridge jetbridge jetbridge jetbridge \
    --bootstrap-secret jetbridge/jetbridge-bootstrap --publish-service jetbridge/jetbridge-proxy
check "  no forbidden/403 in its log, initial sync complete" t_no_forbidden jetbridge
check "  /readyz, /healthz 200, JWKS served on the internal port" t_readyz jetbridge
check "  it created the bootstrap Secret" t_bootstrap_created jetbridge jetbridge
check "  it holds the leader Lease" t_lease_held jetbridge jetbridge
check "  Ingress status, Policy status, Programmed Event written" t_status_and_events jetbridge jetbridge-proxy
check "  sign-outs shared: revocation ConfigMap created, then patched" t_revocations_shared jetbridge jetbridge jetbridge-revocations
stop_controller

check "Service and its upstream, Policy, Ingress in shop (reset)" t_shop_objects
check "controller as jetbridge-ns:jb-ns-jetbridge for ${RUN_SECONDS}s" run_controller jb-ns jetbridge-ns jb-ns-jetbridge jb-ns-jetbridge \
    --namespaces shop --leader-election-id jb-ns-leader \
    --bootstrap-secret jetbridge-ns/jb-ns-bootstrap --publish-service jetbridge-ns/jb-ns-jetbridge-proxy
check "  no forbidden/403 in its log, initial sync complete" t_no_forbidden jb-ns
check "  /readyz, /healthz 200, JWKS served on the internal port" t_readyz jb-ns
check "  it created the bootstrap Secret" t_bootstrap_created jb-ns jetbridge-ns
check "  it holds the leader Lease" t_lease_held jb-ns jetbridge-ns
check "  Ingress status, Policy status, Programmed Event written" t_status_and_events jetbridge-ns jb-ns-jetbridge-proxy
check "  sign-outs shared: revocation ConfigMap created, then patched" t_revocations_shared jb-ns jetbridge-ns jb-ns-revocations
stop_controller

printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
