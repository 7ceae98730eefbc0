#!/usr/bin/env bash
# Runs the official Gateway API conformance suite against jetbridge in a 1.37 test cluster.
#
#   tests/tools/gateway-conformance.sh CLUSTER_DIR [--report FILE]
#
#   CLUSTER_DIR  a cluster started with JETBRIDGE_KUBE_VERSION=1.37.2 scripts/cluster start
#                (the suite's echo backends run as pods through the pod runner)
#   --report     where to copy the suite's ConformanceReport YAML (it is always kept as
#                CLUSTER_DIR/gateway-conformance/report.yaml)
#
# Steps: build the suite if it is not cached (tests/tools/gateway-build.sh); install the
# Gateway API CRDs; GatewayClass `jetbridge` (controllerName
# jetbridge.dev/gateway-controller); the proxy Service jetbridge/jetbridge-proxy, whose
# EndpointSlice points at the host end of the node network where `$JETBRIDGE_BIN
# controller` listens (standing in for the chart's proxy pods: the controller gives
# each Gateway a Service of its own whose EndpointSlice names these endpoints); apply the suite's base manifests and check that every backend pod
# is Ready and answers as echo-basic does; run TestConformance (profile GATEWAY-HTTP);
# print a summary. Exits non-zero on a Core failure not in KNOWN_CORE_FAILURES (below), a
# failure of a claimed Extended feature, a failed setup or a missing report.
#
# Environment:
#   JETBRIDGE_BIN                   jetbridge binary (default: <repo>/target/debug/jetbridge)
#   JETBRIDGE_CACHE                 cache root (default: $HOME/.cache/jetbridge)
#   JETBRIDGE_GATEWAY_VERSION       suite release (default 1.7.0, the newest; see CLUSTER.md)
#   GOTOOLCHAIN                     Go for building the suite (default go1.27.3, which the go
#                                   command takes from the Go module proxy: 1.7 needs Go 1.27)
#   JETBRIDGE_GATEWAY_CHANNEL       CRD channel: standard (default) or experimental
#   JETBRIDGE_GATEWAY_PROFILES      -conformance-profiles (default GATEWAY-HTTP,GATEWAY-GRPC)
#   JETBRIDGE_GATEWAY_FEATURES      -supported-features (default: what jetbridge claims, $CLAIMED
#                                   below: the Core features and the Extended ones that pass)
#   JETBRIDGE_GATEWAY_TIMEOUTS      -timeout-config-overrides (e.g. GWCMustBeAccepted=30s)
#   JETBRIDGE_GATEWAY_ARGS          more flags for the suite (e.g. -run-test=HTTPRouteSimpleSameNamespace)
#   JETBRIDGE_CONFORMANCE_URL, JETBRIDGE_CONFORMANCE_CONTACT   the report's -url and -contact
#
# How and why: tests/tools/CLUSTER.md ("The Gateway API conformance suite").

set -euo pipefail

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
[ "$#" -ge 1 ] || usage
CLUSTER_DIR="$(cd "$1" && pwd)" || { echo "gateway-conformance: no folder $1" >&2; exit 2; }
shift
REPORT_COPY=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --report) [ "$#" -ge 2 ] || usage; REPORT_COPY="$2"; shift 2 ;;
        --report=*) REPORT_COPY="${1#--report=}"; shift ;;
        *) usage ;;
    esac
done

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}"
GW_VERSION="${JETBRIDGE_GATEWAY_VERSION:-1.7.0}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
SUITE="$CACHE/gateway-api-v$GW_VERSION"
CHANNEL="${JETBRIDGE_GATEWAY_CHANNEL:-standard}"
PROFILES="${JETBRIDGE_GATEWAY_PROFILES:-GATEWAY-HTTP,GATEWAY-GRPC}"
# What jetbridge claims: the Core features of both profiles and the Extended
# features that pass (docs/gateway-api.md, "Conformance").
CLAIMED=Gateway,HTTPRoute,ReferenceGrant,GRPCRoute,GRPCRouteNamedRouteRule
CLAIMED+=,HTTPRouteQueryParamMatching,HTTPRouteMethodMatching,HTTPRouteResponseHeaderModification
CLAIMED+=,HTTPRoutePortRedirect,HTTPRouteSchemeRedirect,HTTPRoutePathRedirect
CLAIMED+=,HTTPRoute303RedirectStatusCode,HTTPRoute307RedirectStatusCode,HTTPRoute308RedirectStatusCode
CLAIMED+=,HTTPRouteHostRewrite,HTTPRoutePathRewrite,HTTPRouteRequestMirror
CLAIMED+=,HTTPRouteRequestTimeout,HTTPRouteBackendTimeout,HTTPRouteNamedRouteRule
CLAIMED+=,HTTPRouteBackendProtocolH2C,HTTPRouteBackendProtocolWebSocket
CLAIMED+=,GatewayPort8080,GatewayHTTPListenerIsolation
CLAIMED+=,GRPCRouteRequestHeaderModifier
FEATURES="${JETBRIDGE_GATEWAY_FEATURES:-$CLAIMED}"
# Core tests known to fail (comma-separated), each with its reason in
# docs/gateway-api.md ("Not yet"); none today. The run fails on any other Core
# failure, on any failure of a claimed Extended feature, and when a test listed
# here passes (so the list stays true).
KNOWN_CORE_FAILURES="${JETBRIDGE_GATEWAY_KNOWN_FAILURES-}"
JETBRIDGE_BIN="${JETBRIDGE_BIN:-$REPO/target/debug/jetbridge}"
CLASS=jetbridge
CONTROLLER_NAME=jetbridge.dev/gateway-controller
PROXY_NS=jetbridge PROXY_SVC=jetbridge-proxy
BACKEND_NAMESPACES=(gateway-conformance-infra gateway-conformance-app-backend gateway-conformance-web-backend)
OUT="$CLUSTER_DIR/gateway-conformance"
REPORT="$OUT/report.yaml"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'gateway-conformance: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ preconditions
[ -f "$CLUSTER_DIR/env" ] || die "$CLUSTER_DIR/env not found: start a cluster with JETBRIDGE_KUBE_VERSION=1.37.2 scripts/cluster start DIR"
# shellcheck disable=SC1091
. "$CLUSTER_DIR/env"
export KUBECONFIG KUBECACHEDIR
[[ "${KUBE_VERSION:-}" == 1.3[7-9].* ]] || die "the cluster in $CLUSTER_DIR runs Kubernetes ${KUBE_VERSION:-?}: the suite needs 1.37 (CEL validation, pods that run)"
[ -n "${POD_RUNNER_PID:-}" ] && kill -0 "$POD_RUNNER_PID" 2>/dev/null || die "the pod runner of $CLUSTER_DIR is not running (pid ${POD_RUNNER_PID:-none})"
[ -n "${HOST_IP:-}" ] || die "$CLUSTER_DIR/env has no HOST_IP (no node network)"
[ -x "$JETBRIDGE_BIN" ] || die "no jetbridge binary at $JETBRIDGE_BIN (cargo build --bin jetbridge, or set JETBRIDGE_BIN)"
k() { "$KUBECTL" "$@"; }
k get --raw /readyz >/dev/null || die "the API server of $CLUSTER_DIR does not answer"

# (CoreDNS only for a release whose base manifests run it: 1.6 did, 1.7 does not)
if [ ! -x "$SUITE/conformance.test" ] || [ ! -x "$SUITE/echo-basic" ] \
    || { grep -q 'image: registry.k8s.io/coredns/' "$SUITE/base-manifests.yaml" 2>/dev/null && [ ! -x "$SUITE/coredns" ]; }; then
    say "the suite v$GW_VERSION is not in $SUITE: building it"
    "$HERE/gateway-build.sh" "$GW_VERSION" "$SUITE"
fi
[ -d "$SUITE/crd/$CHANNEL" ] || die "no CRDs for channel '$CHANNEL' in $SUITE/crd"
# The pod runner resolves the suite's images to the binaries of this release.
grep -q "gateway-api-v$GW_VERSION/" "$REPO/tests/tools/pod-images.json" \
    || die "tests/tools/pod-images.json does not point the suite's images at gateway-api-v$GW_VERSION"

rm -rf "$OUT"
mkdir -p "$OUT"
T_START=$SECONDS

# ------------------------------------------------------------------ CRDs, class
say "installing the Gateway API CRDs v$GW_VERSION ($CHANNEL channel)"
k apply --server-side --force-conflicts -f "$SUITE/crd/$CHANNEL/" >"$OUT/crds.log" 2>&1 \
    || die "applying the CRDs failed: $(tail -n3 "$OUT/crds.log")"
mapfile -t CRDS < <(k get crd -o name | grep 'gateway\.networking\.')
[ "${#CRDS[@]}" -gt 0 ] || die "no gateway.networking.k8s.io CRD after applying them"
k wait --for=condition=Established --timeout=60s "${CRDS[@]}" >/dev/null \
    || die "the Gateway API CRDs did not become Established"
for r in gatewayclasses gateways httproutes grpcroutes referencegrants; do
    k get "$r.gateway.networking.k8s.io" -A >/dev/null 2>&1 || die "$r.gateway.networking.k8s.io is not served"
done

say "jetbridge's own CRDs (jetbridge crds)"
"$JETBRIDGE_BIN" crds >"$OUT/jetbridge-crds.yaml" || die "$JETBRIDGE_BIN crds failed"
k apply --server-side --force-conflicts -f "$OUT/jetbridge-crds.yaml" >"$OUT/jetbridge-crds.log" 2>&1 \
    || die "applying jetbridge's CRDs failed: $(tail -n3 "$OUT/jetbridge-crds.log")"
k wait --for=condition=Established --timeout=60s crd/policies.jetbridge.dev >/dev/null \
    || die "policies.jetbridge.dev did not become Established"

say "GatewayClass $CLASS (controllerName $CONTROLLER_NAME)"
k apply --server-side --force-conflicts -f - >"$OUT/gatewayclass.log" 2>&1 <<EOF || die "creating the GatewayClass failed: $(cat "$OUT/gatewayclass.log")"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: $CLASS
  # The suite's routes carry no Policy: the class's Gateways serve them publicly.
  annotations:
    jetbridge.dev/allow_public_unauthenticated_access: "true"
spec:
  controllerName: $CONTROLLER_NAME
  description: jetbridge, the identity-aware proxy (Gateway API conformance)
EOF

# ------------------------------------------------------------------ jetbridge
free_port() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}
HTTP_PORT="$(free_port "$HOST_IP")"
HTTPS_PORT="$(free_port "$HOST_IP")"
INTERNAL_PORT="$(free_port 127.0.0.1)"

# The proxy Service: no selector; its EndpointSlice names the host end of the node
# network, so its ClusterIP (routed from the host into the node namespace, where
# kube-proxy translates it) reaches the controller's listeners on the host.
say "proxy Service $PROXY_NS/$PROXY_SVC -> $HOST_IP:$HTTP_PORT (http), $HOST_IP:$HTTPS_PORT (https)"
k apply --server-side --force-conflicts -f - >"$OUT/proxy-service.log" 2>&1 <<EOF || die "creating the proxy Service failed: $(cat "$OUT/proxy-service.log")"
apiVersion: v1
kind: Namespace
metadata:
  name: $PROXY_NS
---
apiVersion: v1
kind: Service
metadata:
  name: $PROXY_SVC
  namespace: $PROXY_NS
spec:
  ports:
    - {name: http, port: 80, targetPort: $HTTP_PORT, protocol: TCP}
    - {name: https, port: 443, targetPort: $HTTPS_PORT, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $PROXY_SVC-host
  namespace: $PROXY_NS
  labels:
    kubernetes.io/service-name: $PROXY_SVC
    endpointslice.kubernetes.io/managed-by: gateway-conformance.jetbridge.dev
addressType: IPv4
endpoints:
  - addresses: ["$HOST_IP"]
    conditions: {ready: true}
ports:
  - {name: http, port: $HTTP_PORT, protocol: TCP}
  - {name: https, port: $HTTPS_PORT, protocol: TCP}
EOF
PROXY_IP="$(k get svc -n "$PROXY_NS" "$PROXY_SVC" -o jsonpath='{.spec.clusterIP}')"
[ -n "$PROXY_IP" ] || die "the proxy Service has no ClusterIP"

JB_PID=""
cleanup() {
    if [ -n "$JB_PID" ] && kill -0 "$JB_PID" 2>/dev/null; then
        kill -TERM "$JB_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$JB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$JB_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

JB_VERSION="$("$JETBRIDGE_BIN" --version 2>/dev/null | awk '{print $NF}')"
JB_VERSION="v${JB_VERSION:-0.0.0}"
if SHA="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null)"; then JB_VERSION+="+$SHA"; fi
say "jetbridge $JB_VERSION controller on the host (log: $OUT/jetbridge.log)"
"$JETBRIDGE_BIN" controller --kubeconfig "$KUBECONFIG" \
    --address "$HOST_IP:$HTTPS_PORT" --http-redirect-address "$HOST_IP:$HTTP_PORT" \
    --internal-address "127.0.0.1:$INTERNAL_PORT" --public-https-port 443 \
    --publish-service "$PROXY_NS/$PROXY_SVC" </dev/null >"$OUT/jetbridge.log" 2>&1 &
JB_PID=$!
ready=""
for _ in $(seq 300); do
    kill -0 "$JB_PID" 2>/dev/null || die "jetbridge exited: $(tail -n5 "$OUT/jetbridge.log")"
    if curl -sf "http://127.0.0.1:$INTERNAL_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.2
done
[ -n "$ready" ] || die "jetbridge not ready after 60 s: $(tail -n5 "$OUT/jetbridge.log")"
# The Gateway address the host will use: the proxy ClusterIP, through kube-proxy.
# kube-proxy programs a new Service within a few seconds: retry for up to 30 s.
code=000
for _ in $(seq 30); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$PROXY_IP/" || true)"
    [ -z "$code" ] || [ "$code" = 000 ] || break
    sleep 1
done
[ -n "$code" ] && [ "$code" != 000 ] \
    || die "the proxy Service's ClusterIP $PROXY_IP:80 does not reach jetbridge on $HOST_IP:$HTTP_PORT after 30 s (kube-proxy log: $CLUSTER_DIR/kube-proxy.log)"
say "jetbridge answers on the proxy ClusterIP http://$PROXY_IP/ (HTTP $code)"

# ------------------------------------------------------------------ backends
# The base manifests the suite applies in its setup, applied here first so that the
# backends are checked even when the setup stops early (e.g. GatewayClass not Accepted);
# the suite then updates the same objects.
say "applying the suite's base manifests and waiting for their pods"
sed "s/{GATEWAY_CLASS_NAME}/$CLASS/g" "$SUITE/base-manifests.yaml" >"$OUT/base-manifests.yaml"
k apply --server-side --force-conflicts -f "$OUT/base-manifests.yaml" >"$OUT/base-manifests.log" 2>&1 \
    || die "applying the base manifests failed: $(grep -v -e ' serverside-applied$' -e ' unchanged$' "$OUT/base-manifests.log" | head -n5)"
# Some backends mount Secrets that the suite creates in its setup, after the GatewayClass
# is Accepted (its TLS test certificates). Until then those pods could not start: give
# each missing one a self-signed placeholder, which the suite's setup replaces.
python3 - "$OUT/base-manifests.yaml" >"$OUT/backend-secrets.txt" <<'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d or d.get("kind") != "Deployment":
        continue
    for v in d["spec"]["template"]["spec"].get("volumes") or []:
        if "secret" in v:
            keys = [i["key"] for i in v["secret"].get("items") or []] or ["tls.crt", "tls.key"]
            print(d["metadata"]["namespace"], v["secret"]["secretName"], ",".join(keys))
PY
sort -u -o "$OUT/backend-secrets.txt" "$OUT/backend-secrets.txt"
while read -r ns secret keys; do
    k get secret -n "$ns" "$secret" >/dev/null 2>&1 && continue
    [ "$keys" = "tls.crt,tls.key" ] || [ "$keys" = "tls.key,tls.crt" ] \
        || die "backend Secret $ns/$secret needs keys $keys: no placeholder for that"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$secret" \
        -keyout "$OUT/$ns-$secret.key" -out "$OUT/$ns-$secret.crt" >/dev/null 2>&1 \
        || die "openssl could not make a placeholder certificate for $ns/$secret"
    k create secret tls -n "$ns" "$secret" --cert "$OUT/$ns-$secret.crt" --key "$OUT/$ns-$secret.key" >/dev/null \
        || die "creating the placeholder Secret $ns/$secret failed"
    say "placeholder Secret $ns/$secret (the suite's setup replaces it)"
done <"$OUT/backend-secrets.txt"

check_backends() {
    local ns deadline=$((SECONDS + 180)) notready
    while :; do
        notready=""
        for ns in "${BACKEND_NAMESPACES[@]}"; do
            notready+="$(k get pods -n "$ns" -o go-template='{{range .items}}{{$r := "False"}}{{range .status.conditions}}{{if eq .type "Ready"}}{{$r = .status}}{{end}}{{end}}{{if ne $r "True"}}{{.metadata.namespace}}/{{.metadata.name}} {{end}}{{end}}')"
        done
        expected=$(grep -c '^kind: Deployment' "$OUT/base-manifests.yaml")
        have=$(k get deploy -A --no-headers 2>/dev/null | grep -c '^gateway-conformance-' || true)
        [ -z "$notready" ] && [ "$have" -ge "$expected" ] \
            && [ "$(k get pods -A --no-headers | grep -c '^gateway-conformance-')" -gt 0 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$notready"
            return 1
        fi
        sleep 1
    done
}
# A backend that is not Ready fails the run, but the suite still runs (its report says
# how far it got).
BACKEND_PROBLEMS=""
if ! notready="$(check_backends)"; then
    for p in $notready; do
        say "NOT Ready: $p: $(k get pod -n "${p%%/*}" "${p#*/}" -o jsonpath='{range .status.containerStatuses[*]}{.state}{end}')"
    done
    BACKEND_PROBLEMS+="not Ready after 180 s: $notready; "
fi
# Every pod: Ready; the HTTP echo ones (not gRPC/TCP/UDP mode, not DNS) answer JSON with
# their pod name and namespace, from the host, at the pod IP.
pods_ready=0 pods_http=0
while read -r ns name ip image modes; do
    if [[ " $notready " == *" $ns/$name "* ]]; then
        printf '    %-32s %-44s %-15s NOT Ready (%s)\n' "$ns" "$name" "${ip:-no IP}" "$image" >&2
        continue
    fi
    pods_ready=$((pods_ready + 1))
    case "$image" in */echo-basic:*) ;; *) printf '    %-32s %-44s %-15s Ready (%s)\n' "$ns" "$name" "$ip" "$image" >&2; continue ;; esac
    if [ "$modes" != "-" ]; then
        printf '    %-32s %-44s %-15s Ready (echo-basic, %s)\n' "$ns" "$name" "$ip" "$modes" >&2
        continue
    fi
    body="$(curl -sf --max-time 5 "http://$ip:3000/conformance-check" || true)"
    if ! python3 - "$ns" "$name" "$body" <<'PY'; then
import json, sys
ns, name, body = sys.argv[1:4]
d = json.loads(body)
assert d["path"] == "/conformance-check" and d["namespace"] == ns and d["pod"] == name, d
PY
        printf '    %-32s %-44s %-15s Ready, but no echo JSON: %s\n' "$ns" "$name" "$ip" "${body:0:120}" >&2
        BACKEND_PROBLEMS+="$ns/$name at $ip:3000 did not answer as echo-basic; "
        continue
    fi
    pods_http=$((pods_http + 1))
    printf '    %-32s %-44s %-15s Ready, answers echo JSON\n' "$ns" "$name" "$ip" >&2
done < <(for ns in "${BACKEND_NAMESPACES[@]}"; do
    k get pods -n "$ns" -o go-template='{{range .items}}{{.metadata.namespace}} {{.metadata.name}} {{.status.podIP}} {{(index .spec.containers 0).image}} {{$m := ""}}{{range (index .spec.containers 0).env}}{{if or (eq .name "GRPC_ECHO_SERVER") (eq .name "TCP_ECHO_SERVER") (eq .name "UDP_ECHO_SERVER")}}{{$m = .name}}{{end}}{{end}}{{if $m}}{{$m}}{{else}}-{{end}}
{{end}}'
done)
say "backends: $pods_ready pods Ready in ${BACKEND_NAMESPACES[*]}; $pods_http HTTP echo pods answered from the host"

# ------------------------------------------------------------------ the suite
ARGS=(
    -test.run '^TestConformance$' -test.v -test.timeout 90m
    -gateway-class="$CLASS"
    -supported-features="$FEATURES"
    -conformance-profiles="$PROFILES"
    -report-output="$REPORT"
    -organization=jetbridge -project=jetbridge
    -url="${JETBRIDGE_CONFORMANCE_URL:-https://jetbridge.dev}"
    -version="$JB_VERSION"
    -contact="${JETBRIDGE_CONFORMANCE_CONTACT:-https://jetbridge.dev}"
)
[ -z "${JETBRIDGE_GATEWAY_TIMEOUTS:-}" ] || ARGS+=(-timeout-config-overrides="$JETBRIDGE_GATEWAY_TIMEOUTS")
# shellcheck disable=SC2206
[ -z "${JETBRIDGE_GATEWAY_ARGS:-}" ] || ARGS+=($JETBRIDGE_GATEWAY_ARGS)
say "running TestConformance v$GW_VERSION ($PROFILES; features $FEATURES; log: $OUT/suite.log)"
T_SUITE=$SECONDS
set +e
(cd "$OUT" && "$SUITE/conformance.test" "${ARGS[@]}") >"$OUT/suite.log" 2>&1
SUITE_RC=$?
set -e
SUITE_SECONDS=$((SECONDS - T_SUITE))

# ------------------------------------------------------------------ summary
if [ -n "$REPORT_COPY" ] && [ -f "$REPORT" ]; then cp "$REPORT" "$REPORT_COPY"; fi
if python3 - "$REPORT" "$OUT/suite.log" "$SUITE_RC" "$SUITE_SECONDS" "$((SECONDS - T_START))" "$KNOWN_CORE_FAILURES" <<'PY'
import os, re, sys
report_path, log_path, rc, suite_s, total_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
known = {t for t in sys.argv[6].split(",") if t}
log = open(log_path, errors="replace").read().splitlines()

# go test -v: the subtests' results, and the first error lines of each failure
results = {}
for line in log:
    m = re.match(r"\s*--- (PASS|FAIL|SKIP): TestConformance/([^\s/]+) ", line)
    if m:
        results[m.group(2)] = m.group(1)
def reasons(name=None, n=3):
    out, inside = [], name is None
    for line in log:
        if name and re.match(r"=== (RUN|CONT|NAME)\s+TestConformance/" + re.escape(name) + r"(/|$)", line.strip()):
            inside = True
        if inside and re.search(r"Error Trace:|Error:\s|FAIL|timed out|error waiting", line):
            s = line.strip()
            if s.startswith("Error:") or "error waiting" in s or "timed out" in s:
                out.append(s[:220])
        if len(out) >= n:
            break
    return out

print("== Gateway API conformance summary")
print("suite exit code %d after %ss (whole run %ss)" % (rc, suite_s, total_s))
failing = False
if os.path.exists(report_path):
    import yaml
    rep = yaml.safe_load(open(report_path))
    print("report: %s (gatewayAPIVersion %s, channel %s, mode %s)" % (
        report_path, rep.get("gatewayAPIVersion"), rep.get("gatewayAPIChannel"), rep.get("mode")))
    if not rep.get("profiles"):
        print("report: no profile results (profiles: null): no test ran")
    for prof in rep.get("profiles") or []:
        for part in ("core", "extended"):
            p = prof.get(part)
            if not p:
                continue
            st = p.get("statistics") or {}
            passed, failed, skipped = st.get("Passed", 0), st.get("Failed", 0), st.get("Skipped", 0)
            print("%s %s: %s: %d tests: %d passed, %d failed, %d skipped%s" % (
                prof.get("name"), part, p.get("result"), passed + failed + skipped, passed, failed, skipped,
                (" (features: %s)" % ",".join(p.get("supportedFeatures") or [])) if part == "extended" else ""))
            failed_tests = p.get("failedTests") or []
            for t in failed_tests:
                note = " (known failure, see docs/gateway-api.md)" if part == "core" and t in known else ""
                print("  failed: %s%s%s" % (t, note, "".join("\n    " + r for r in reasons(t, 2))))
            for t in p.get("skippedTests") or []:
                print("  skipped: %s" % t)
            unknown = [t for t in failed_tests if part != "core" or t not in known]
            if unknown or (failed and not failed_tests):
                failing = True
            if part == "core" and p.get("result") not in ("success", "partial", "failure"):
                failing = True
        if not prof.get("core"):
            failing = True
else:
    print("no report written at %s" % report_path)
    failing = True
for t in sorted(known):
    if results.get(t) == "PASS":
        print("known failure %s passed: remove it from KNOWN_CORE_FAILURES" % t)
        failing = True
if results:
    c = {k: sum(1 for v in results.values() if v == k) for k in ("PASS", "FAIL", "SKIP")}
    print("go test: %d subtests: %d passed, %d failed, %d skipped" % (len(results), c["PASS"], c["FAIL"], c["SKIP"]))
else:
    print("go test: no subtest ran (the suite's setup stopped first)")
    failing = True
    for r in reasons(None, 4):
        print("  " + r)
if rc != 0 and not results:
    failing = True
sys.exit(1 if failing else 0)
PY
then SUMMARY_RC=0; else SUMMARY_RC=$?; fi
if [ -n "$BACKEND_PROBLEMS" ]; then
    say "backends: $BACKEND_PROBLEMS"
    SUMMARY_RC=1
fi
exit "$SUMMARY_RC"
