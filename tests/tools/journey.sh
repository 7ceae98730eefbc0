#!/usr/bin/env bash
# The user's journey end to end on a cluster whose pods run (1.37 tier: pod runner,
# kube-proxy): the seed tutorial (Pomerium's "Identity Verification with JWTs") done the
# Kubernetes way.
#
#   tests/tools/journey.sh CLUSTER_DIR
#
#  1. `helm install` charts/jetbridge (release journey-jetbridge in namespace journey,
#     image ghcr.io/jetbridge/jetbridge, 2 replicas) with npm `oidc-provider` as the IdP,
#     a process on the host listening on the node network's host address (an IdP outside
#     the cluster). The Policy CRD is established; NOTES.txt names the in-cluster JWKS URL
#     and the redirect URI to register.
#  2. The pod runner starts the jetbridge pods from the rendered Deployment (args, env,
#     projected config volume, ServiceAccount token); both become Ready by their
#     readiness probe, the EndpointSlice controller puts them behind the Services, and
#     exactly one holds the leader Lease.
#  3. Three upstreams run as pods too (`jetbridge verify`, the Verify app, standing in for
#     the tutorial's verify and grafana, plus a dashboard), each a Deployment behind a
#     selector Service, fetching the JWKS from
#     http://journey-jetbridge.journey.svc.cluster.local:80/.well-known/pomerium/jwks.json.
#     The tutorial's two Ingresses use ingress.pomerium.io/ annotations
#     (pass_identity_headers, the `domain is example.com` policy); a third Ingress refers
#     to a `Policy` object (groups has admins).
#  4. Headless Chromium (playwright-core) on the host, the example hosts mapped to the
#     proxy Service's cluster IP (port 443), signs in as alice through a proxy pod and
#     lands on the Verify page showing claims the app pod verified with the JWKS it
#     fetched through the internal Service. The same JWKS is fetched with curl from
#     inside an app pod's network namespace by the svc.cluster.local name; npm `jose` and
#     PyPI `PyJWT` verify the assertions the upstreams received against it. Someone
#     outside example.com gets 403; the Policy object lets admins in and keeps alice out.
#  5. The same through the Gateway API: the Gateway API CRDs are installed before the
#     release, which creates its GatewayClass (gatewayClass.create); a Gateway and an
#     HTTPRoute guarded by a Policy (ExtensionRef filter, passIdentityHeaders) lead to a
#     fourth Verify app pod. Chromium signs alice in through the HTTPRoute; the app pod
#     verifies the assertion with the in-cluster JWKS; someone outside example.com gets
#     403; the HTTPRoute's status says Accepted.
#  6. `helm upgrade` with a changed value (jwtClaimsHeaders) rolls the pods
#     (checksum/config): new pods Ready, the old ones gone, the signing key kept, and
#     upstreams get the new header.
#  7. `helm uninstall` removes the release and its pods and leaves the bootstrap Secret
#     and the CRD; a reinstall serves the same signing key.
#
# CLUSTER_DIR is a running 1.37 cluster (`JETBRIDGE_KUBE_VERSION=1.37.2 scripts/cluster
# start DIR`); its pod runner runs the jetbridge image as its JETBRIDGE_BIN. Environment:
# JETBRIDGE_BIN (default target/debug/jetbridge; for the jose/PyJWT helpers nothing else
# is run from it here), JETBRIDGE_SUPPORT (this directory), JETBRIDGE_NODE_MODULES,
# JETBRIDGE_PYTHON (a python with PyJWT), JETBRIDGE_CHROMIUM.
# Logs (IdP, browser results, copies of the pods' logs) are kept in CLUSTER_DIR/journey/.
# Ends with "N passed, M failed"; exits non-zero when a check failed.

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
SUPPORT="${JETBRIDGE_SUPPORT:-$ROOT/tests/tools}"
PYTHON="${JETBRIDGE_PYTHON:-$ROOT/.cache/venv/bin/python}"
export NODE_PATH="${JETBRIDGE_NODE_MODULES:-$SUPPORT/node_modules}"
CHART="$ROOT/charts/jetbridge"
RELEASE=journey-jetbridge
NS=journey
APPS=journey-apps
CLASS=journey
SELECTOR="app.kubernetes.io/instance=$RELEASE"
IMAGE=ghcr.io/jetbridge/jetbridge:journey
LOGS="$DIR/journey"
mkdir -p "$LOGS"

HELPERS=()
cleanup() {
    local p
    for p in "${HELPERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The internal Service (JWKS, health) is <fullname>, port 80 (the chart's
# internalService.port); its name inside the cluster:
JWKS_SVC_URL="http://$RELEASE.$NS.svc.cluster.local:80/.well-known/pomerium/jwks.json"
AUTH_URL="https://authenticate.example.test"
CLIENT_SECRET="journey-client-secret-$RANDOM$RANDOM"
HOSTS="authenticate.example.test,verify.example.test,grafana.example.test,dash.example.test,gw.example.test"
GATEWAY_CLASS=journey-gw

# the internal Service's JWKS, as reached from the host through its cluster IP
jwks_local() { echo "http://$(cluster_ip "$NS" "$RELEASE")/.well-known/pomerium/jwks.json"; }
proxy_ip() { cluster_ip "$NS" "$RELEASE-proxy"; }

# ------------------------------------------------------------- real parts ---

# The IdP: on the host, at the node network's host address (outside the cluster, reached
# by the proxy pods and the browser). It must know the redirect URI before the release
# exists (as a real one would).
start_idp() {
    node "$SUPPORT/idp.mjs" --port 0 --host "$HOST_IP" --ignore-stdin --skip-consent \
        --client-id journey --client-secret "$CLIENT_SECRET" \
        --redirect-uri "$AUTH_URL/oauth2/callback" \
        --post-logout-redirect-uri "$AUTH_URL/.pomerium/signed_out" \
        >"$LOGS/idp.out" 2>"$LOGS/idp.log" &
    HELPERS+=("$!")
    local i
    for i in $(seq 1 100); do
        [ -s "$LOGS/idp.out" ] && break
        sleep 0.1
    done
    ISSUER="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["issuer"])' <"$LOGS/idp.out")"
    echo "IdP at $ISSUER"
}

# ------------------------------------------------------------------ steps ---

# slices_are NS SERVICE WANT: the Service's slices hold exactly WANT (slice_endpoints lines)
slices_are() { [ "$(slice_endpoints "$1" "$2")" = "$3" ]; }
lease_held() { [ -n "$(k get lease "$2" -n "$1" -o jsonpath='{.spec.holderIdentity}')" ]; }
# ingress_status_count NS N: N Ingresses of NS have a load balancer address
ingress_status_count() {
    [ "$(k get ingress -n "$1" -o jsonpath='{range .items[*]}{.status.loadBalancer.ingress[0].ip}{" "}{end}' | wc -w)" = "$2" ]
}

t_helm_install() {
    k get namespace "$APPS" >/dev/null 2>&1 || k create namespace "$APPS"
    # The authenticate host's certificate, from a TLS Secret (defaultCertificate).
    k get namespace "$NS" >/dev/null 2>&1 || k create namespace "$NS"
    if [ ! -f "$WORK/auth.crt" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=authenticate.example.test -addext subjectAltName=DNS:authenticate.example.test \
            -keyout "$WORK/auth.key" -out "$WORK/auth.crt" 2>/dev/null
        k create secret tls auth-tls -n "$NS" --cert "$WORK/auth.crt" --key "$WORK/auth.key" \
            --dry-run=client -o yaml | k apply -f -
    fi
    # The Gateway API first: the controller looks for it when it starts.
    install_gateway_api
    "$HELM" install "$RELEASE" "$CHART" --namespace "$NS" --create-namespace \
        --set gatewayClass.create=true \
        --set gatewayClass.name="$GATEWAY_CLASS" \
        --set authenticate.url="$AUTH_URL" \
        --set idp.providerUrl="$ISSUER" \
        --set idp.clientId=journey \
        --set idp.clientSecret="$CLIENT_SECRET" \
        --set 'idp.scopes={openid,email,profile,groups}' \
        --set ingressClass.name="$CLASS" \
        --set ingressClass.controller=jetbridge.dev/journey \
        --set leaderElectionId=journey-leader \
        --set bootstrapSecret.name=journey-bootstrap \
        --set defaultCertificate.secretName=auth-tls \
        --set logFormat=text \
        "$@" >"$WORK/notes"
    cat "$WORK/notes"
    k wait --for=condition=Established crd/policies.jetbridge.dev --timeout=30s
    grep -qF "http://$RELEASE.$NS.svc/.well-known/pomerium/jwks.json" "$WORK/notes" \
        || { echo "NOTES.txt does not name the in-cluster JWKS URL"; return 1; }
    grep -qF "redirect (callback) URI:   $AUTH_URL/oauth2/callback" "$WORK/notes" \
        || { echo "NOTES.txt does not name the redirect URI"; return 1; }
    expect_eq "image" "ghcr.io/jetbridge/jetbridge" \
        "$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].image}' | cut -d: -f1)"
    # the internal Service's port 80 is the JWKS listener (checked below, once running)
    expect_eq "internal Service port" "80:internal" \
        "$(k get service "$RELEASE" -n "$NS" -o jsonpath='{.spec.ports[0].port}:{.spec.ports[0].targetPort}')"
}

# t_pods_ready: the Deployment's two pods run (started by the pod runner) and are Ready;
# the EndpointSlice controller puts exactly them behind both Services.
t_pods_ready() {
    k rollout status deployment "$RELEASE" -n "$NS" --timeout=180s
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    ready_pods "$NS" "$SELECTOR" >"$WORK/pods"
    k get pods -n "$NS" -l "$SELECTOR" -o wide
    local pod ip node ips=()
    while read -r pod; do
        ip="$(k get pod "$pod" -n "$NS" -o jsonpath='{.status.podIP}')"
        node="$(k get pod "$pod" -n "$NS" -o jsonpath='{.spec.nodeName}')"
        in_cidr "$ip" "$POD_CIDR" || { echo "$pod: IP $ip not in $POD_CIDR"; return 1; }
        grep -qw -- "$node" <<<"${NODE_NAMES//,/ }" || { echo "$pod on node '$node', not one of $NODE_NAMES"; return 1; }
        # the process is jetbridge, serving its HTTPS listener at the pod's IP
        grep -q 'HTTPS listener' "$(pod_log "$NS" "$pod" jetbridge)" \
            || { echo "$pod: no 'HTTPS listener' in its log"; tail -n 20 "$(pod_log "$NS" "$pod" jetbridge)"; return 1; }
        expect_eq "$pod /readyz at its pod IP" 200 \
            "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ip:9090/readyz")"
        cp "$(pod_log "$NS" "$pod" jetbridge)" "$LOGS/pod-$pod.log"
        ips+=("$ip")
    done <"$WORK/pods"
    local want
    want="$(printf '%s ready=true\n' "${ips[@]}" | sort)"
    wait_for 30 "proxy Service slices = the two pods" slices_are "$NS" "$RELEASE-proxy" "$want"
    expect_eq "internal Service endpoints" "$want" "$(slice_endpoints "$NS" "$RELEASE")"
    expect_eq "slices made by the EndpointSlice controller" "endpointslice-controller.k8s.io" \
        "$(k get endpointslices -n "$NS" -l "kubernetes.io/service-name=$RELEASE-proxy" -o jsonpath='{.items[0].metadata.labels.endpointslice\.kubernetes\.io/managed-by}')"
    # through the internal Service's cluster IP (kube-proxy)
    expect_eq "/readyz through the internal Service" 200 \
        "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$(cluster_ip "$NS" "$RELEASE")/readyz")"
}

# t_one_leader: the leader Lease names one of the two pods, and exactly one pod's log
# says it became the leader.
t_one_leader() {
    local holder n=0 pod
    wait_for 30 "the Lease has a holder" lease_held "$NS" journey-leader
    holder="$(k get lease journey-leader -n "$NS" -o jsonpath='{.spec.holderIdentity}')"
    echo "holder: $holder"
    grep -qx -- "$holder" "$WORK/pods" || { echo "the Lease holder '$holder' is not one of: $(tr '\n' ' ' <"$WORK/pods")"; return 1; }
    while read -r pod; do
        if grep -q 'leader: this replica now writes Events and status' "$(pod_log "$NS" "$pod" jetbridge)"; then
            n=$((n + 1))
            expect_eq "the pod that logged leadership" "$holder" "$pod"
        fi
    done <"$WORK/pods"
    expect_eq "pods that logged leadership" 1 "$n"
}

# app_deployment NAME: the Verify app for NAME.example.test as a Deployment and a
# selector Service (port 80 -> 8080); it verifies against the internal Service's JWKS.
app_deployment() {
    cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $APPS}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      containers:
        - name: verify
          image: $IMAGE
          args: [verify, --listen, "0.0.0.0:8080", --jwks-url, "$JWKS_SVC_URL",
                 --expected-issuer, $1.example.test, --expected-audience, $1.example.test,
                 --log-format, text]
          ports: [{name: http, containerPort: 8080, protocol: TCP}]
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: $APPS}
spec:
  selector: {app: $1}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
EOF
}

t_apps() {
    local name pod
    for name in verify grafana dash; do
        app_deployment "$name" | k apply --server-side --field-manager=journey -f -
    done
    # The tutorial's Ingresses, with Pomerium's annotation prefix (the Service
    # port numbered for verify, named for grafana), and a third one referring
    # to a Policy object.
    tutorial_ingress verify "{number: 80}" | k apply -f -
    tutorial_ingress grafana "{name: http}" | k apply -f -
    k apply -f - <<EOF
apiVersion: jetbridge.dev/v1
kind: Policy
metadata: {name: admins, namespace: $APPS}
spec:
  allow:
    and:
      - domain: {is: example.com}
      - groups: {has: admins}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: dash
  namespace: $APPS
  annotations:
    jetbridge.dev/policy_ref: admins
    jetbridge.dev/pass_identity_headers: "true"
spec:
  ingressClassName: $CLASS
  rules:
    - host: dash.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: dash, port: {number: 80}}}}
EOF
    for name in verify grafana dash; do
        k rollout status deployment "$name" -n "$APPS" --timeout=120s
        pod="$(ready_pods "$APPS" "app=$name" | head -n 1)"
        [ -n "$pod" ] || { echo "no Ready $name pod"; return 1; }
        echo "$pod" >"$WORK/pod-$name"
        # the slice the EndpointSlice controller made holds the pod's IP, ready
        wait_for 30 "$name's slice holds its pod, ready" slices_are "$APPS" "$name" \
            "$(k get pod "$pod" -n "$APPS" -o jsonpath='{.status.podIP}') ready=true"
    done
    # every route programmed (three Ingresses, status written by the leader)
    wait_for 60 "status of the three Ingresses" ingress_status_count "$APPS" 3
    k get ingress -n "$APPS"
    while read -r pod; do
        if grep -inE 'forbidden|\b403\b' "$(pod_log "$NS" "$pod" jetbridge)"; then
            echo "$pod was refused by the API server"; return 1
        fi
    done < <(ready_pods "$NS" "$SELECTOR")
}

# tutorial_ingress NAME PORT: the seed tutorial's Ingress for NAME.example.test.
tutorial_ingress() {
    cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: $1
  namespace: $APPS
  annotations:
    ingress.pomerium.io/pass_identity_headers: "true"
    ingress.pomerium.io/policy: |
      - allow:
          or:
            - domain:
                is: example.com
spec:
  ingressClassName: $CLASS
  rules:
    - host: $1.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: $1, port: $2}}}
EOF
}

# fingerprint of the certificate served for SNI NAME through the proxy Service
served() {
    openssl s_client -connect "$(proxy_ip):443" -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256
}

t_authenticate_certificate() {
    expect_eq "certificate served for the authenticate host" \
        "$(openssl x509 -in "$WORK/auth.crt" -noout -fingerprint -sha256)" "$(served authenticate.example.test)"
}

# browser NAME LOGIN START_URL [THEN_URL...]: signs in with Chromium, the example hosts
# resolved to the proxy Service's cluster IP; result in $LOGS/NAME.json
browser() {
    local name="$1" login="$2" start="$3"
    shift 3
    local then=() u
    for u in "$@"; do then+=(--then "$u"); done
    node "$SUPPORT/login_browser.mjs" --start-url "$start" --login "$login" --map "$HOSTS" \
        --map-to "$(proxy_ip)" --allow-host "$HOST_IP" \
        --timeout 60000 "${then[@]}" >"$LOGS/$name.json" 2>"$LOGS/$name.err" || true
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("browser:", "ok" if r["ok"] else r)' <"$LOGS/$name.json"
}

# field NAME PYTHON_EXPR: a value from a browser result (r is the result)
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$LOGS/$1.json"; }

# assertion_from NAME INDEX: the X-Pomerium-Jwt-Assertion a Verify app's /headers showed
assertion_from() {
    field "$1" "json.loads(r['then'][$2]['body_text'])['headers']['x-pomerium-jwt-assertion']"
}

# verifiers TOKEN AUD: jose and PyJWT both accept TOKEN for AUD against the JWKS
verifiers() {
    local out url
    url="$(jwks_local)"
    out="$(node "$SUPPORT/verify_jose.mjs" --jwks-url "$url" --token "$1" --issuer "$2" --audience "$2")" \
        || { echo "jose refused: $out"; return 1; }
    grep -q '"email":"alice@example.com"' <<<"$out" || { echo "jose: $out"; return 1; }
    out="$("$PYTHON" "$SUPPORT/verify_pyjwt.py" --jwks-url "$url" --token "$1" --issuer "$2" --audience "$2")" \
        || { echo "PyJWT refused: $out"; return 1; }
    grep -q '"email": *"alice@example.com"' <<<"$out" || { echo "PyJWT: $out"; return 1; }
}

t_alice_signs_in() {
    browser alice alice "https://verify.example.test/" \
        "https://verify.example.test/headers" \
        "https://grafana.example.test/headers" \
        "https://dash.example.test/"
    expect_eq ok True "$(field alice "r['ok']")"
    expect_eq "saw the IdP's login form" True "$(field alice "r['logged_in']")"
    expect_eq "landed on" "https://verify.example.test/" "$(field alice "r['final_url']")"
    local text
    text="$(field alice "r['body_text']")"
    grep -q "Identity verified" <<<"$text" || { echo "$text"; return 1; }
    grep -q "alice@example.com" <<<"$text" || { echo "$text"; return 1; }
    if grep -q "UNVERIFIED" <<<"$text"; then echo "$text"; return 1; fi
    expect_eq "grafana (single sign-on through the authenticate host)" 200 "$(field alice "r['then'][1]['status']")"
    expect_eq "dash, Policy admins, as alice" 403 "$(field alice "r['then'][2]['status']")"
    # before the upgrade, no claim header is configured
    expect_eq "X-Pomerium-Claim-Email before the upgrade" None \
        "$(field alice "json.loads(r['then'][1]['body_text'])['headers'].get('x-pomerium-claim-email')")"
}

# t_app_pod_jwks: the verify pod reaches the JWKS by the internal Service's cluster
# name from its own network namespace, and it is the JWKS the proxy pods serve.
t_app_pod_jwks() {
    local pod log inside outside
    pod="$(cat "$WORK/pod-verify")"
    log="$(pod_log "$APPS" "$pod" verify)"
    cp "$log" "$LOGS/pod-$pod.log"
    grep -qF "jwks_url=$JWKS_SVC_URL" "$log" || grep -qF "$JWKS_SVC_URL" "$log" \
        || { echo "the verify pod's log does not name $JWKS_SVC_URL"; tail -n 5 "$log"; return 1; }
    echo "the pod resolves $RELEASE.$NS.svc.cluster.local to $(pod_hosts_resolve "$APPS" "$RELEASE.$NS.svc.cluster.local" || true); the Service's cluster IP is $(cluster_ip "$NS" "$RELEASE")"
    inside="$(pod_curl "$APPS" "$pod" "$JWKS_SVC_URL")"
    echo "from the pod's netns: $inside"
    outside="$(curl -fsS "$(jwks_local)")"
    grep -q '"kty":"EC"' <<<"$inside" || { echo "no EC key in the JWKS fetched in the pod"; return 1; }
    expect_eq "JWKS in the pod = JWKS through the cluster IP" "$outside" "$inside"
}

t_verifiers_accept() {
    local verify_token grafana_token url
    url="$(jwks_local)"
    verify_token="$(assertion_from alice 0)"
    grafana_token="$(assertion_from alice 1)"
    verifiers "$verify_token" verify.example.test
    verifiers "$grafana_token" grafana.example.test
    # an assertion for one route is refused for another (aud)
    if node "$SUPPORT/verify_jose.mjs" --jwks-url "$url" --token "$verify_token" \
        --issuer verify.example.test --audience grafana.example.test; then
        echo "jose accepted verify's assertion for grafana"; return 1
    fi
    if "$PYTHON" "$SUPPORT/verify_pyjwt.py" --jwks-url "$url" --token "$verify_token" \
        --issuer verify.example.test --audience grafana.example.test; then
        echo "PyJWT accepted verify's assertion for grafana"; return 1
    fi
}

t_outsider_denied() {
    browser mallory mallory@evil.test "https://verify.example.test/" \
        "https://verify.example.test/" "https://grafana.example.test/"
    expect_eq ok True "$(field mallory "r['ok']")"
    expect_eq "verify as mallory@evil.test" 403 "$(field mallory "r['then'][0]['status']")"
    expect_eq "grafana as mallory@evil.test" 403 "$(field mallory "r['then'][1]['status']")"
}

t_admin_allowed() {
    browser admin admin.bob "https://dash.example.test/" "https://dash.example.test/json"
    expect_eq ok True "$(field admin "r['ok']")"
    expect_eq "dash as admin.bob" 200 "$(field admin "r['then'][0]['status']")"
    expect_eq "dash's Verify app (a pod) verified the assertion" True \
        "$(field admin "json.loads(r['then'][0]['body_text'])['verified']")"
    expect_eq "groups" "['users', 'admins']" \
        "$(field admin "sorted(json.loads(r['then'][0]['body_text'])['claims']['groups'], reverse=True)")"
    expect_eq "Policy admins Accepted" True \
        "$(k get policies.jetbridge.dev admins -n "$APPS" -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}')"
}

route_accepted() {
    [ "$(k get httproute gw -n "$APPS" -o jsonpath='{.status.parents[0].conditions[?(@.type=="Accepted")].status}')" = True ]
}

# t_gateway_app: the chart's GatewayClass, a Gateway, and an HTTPRoute to a fourth
# Verify app guarded by a Policy that also asks for the identity headers.
t_gateway_app() {
    expect_eq "GatewayClass controller" jetbridge.dev/gateway-controller \
        "$(k get gatewayclass "$GATEWAY_CLASS" -o jsonpath='{.spec.controllerName}')"
    app_deployment gw | k apply --server-side --field-manager=journey -f -
    # A route that needs sign-in is served on an HTTPS listener (over plain
    # HTTP it is redirected): its certificate from a TLS Secret beside it.
    if [ ! -f "$WORK/gw.crt" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=gw.example.test -addext subjectAltName=DNS:*.example.test \
            -keyout "$WORK/gw.key" -out "$WORK/gw.crt" 2>/dev/null
    fi
    k create secret tls gw-tls -n "$APPS" --cert "$WORK/gw.crt" --key "$WORK/gw.key" \
        --dry-run=client -o yaml | k apply -f -
    k apply -f - <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: $APPS}
spec:
  gatewayClassName: $GATEWAY_CLASS
  listeners:
    - name: websecure
      port: 443
      protocol: HTTPS
      hostname: "*.example.test"
      tls: {certificateRefs: [{name: gw-tls}]}
---
apiVersion: jetbridge.dev/v1
kind: Policy
metadata: {name: members, namespace: $APPS}
spec:
  passIdentityHeaders: true
  allow:
    or:
      - domain: {is: example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: $APPS}
spec:
  parentRefs: [{name: edge}]
  hostnames: [gw.example.test]
  rules:
    - filters:
        - type: ExtensionRef
          extensionRef: {group: jetbridge.dev, kind: Policy, name: members}
      backendRefs: [{name: gw, port: 80}]
EOF
    k rollout status deployment gw -n "$APPS" --timeout=120s
    wait_for 60 "the HTTPRoute is Accepted" route_accepted
    expect_eq "GatewayClass Accepted" True \
        "$(k get gatewayclass "$GATEWAY_CLASS" -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}')"
}

t_gateway_sign_in() {
    browser gw-alice alice "https://gw.example.test/" "https://gw.example.test/headers"
    expect_eq ok True "$(field gw-alice "r['ok']")"
    expect_eq "saw the IdP's login form" True "$(field gw-alice "r['logged_in']")"
    expect_eq "landed on" "https://gw.example.test/" "$(field gw-alice "r['final_url']")"
    local text
    text="$(field gw-alice "r['body_text']")"
    grep -q "Identity verified" <<<"$text" || { echo "$text"; return 1; }
    grep -q "alice@example.com" <<<"$text" || { echo "$text"; return 1; }
    if grep -q "UNVERIFIED" <<<"$text"; then echo "$text"; return 1; fi
    verifiers "$(assertion_from gw-alice 0)" gw.example.test
    browser gw-mallory mallory@evil.test "https://gw.example.test/" "https://gw.example.test/"
    expect_eq "gw as mallory@evil.test" 403 "$(field gw-mallory "r['then'][0]['status']")"
}

kid() { curl -fsS --max-time 5 "$(jwks_local)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["kid"])'; }

# none_left NS NAMES_FILE: none of the pods named in the file exists any more
none_left() {
    local pod
    while read -r pod; do
        if k get pod "$pod" -n "$1" -o name >/dev/null 2>&1; then return 1; fi
    done <"$2"
}

t_helm_upgrade() {
    local before after
    before="$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    kid >"$WORK/kid"
    all_pods "$NS" "$SELECTOR" >"$WORK/old-pods"
    "$HELM" upgrade "$RELEASE" "$CHART" --namespace "$NS" --reuse-values \
        --set 'jwtClaimsHeaders.X-Pomerium-Claim-Email=email' >/dev/null
    after="$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    [ "$before" != "$after" ] || { echo "checksum/config unchanged: the pods would not roll"; return 1; }
    # the rollout, for real: two new pods Ready, the old ones gone
    k rollout status deployment "$RELEASE" -n "$NS" --timeout=180s
    wait_for 90 "the old pods gone" none_left "$NS" "$WORK/old-pods"
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    ready_pods "$NS" "$SELECTOR" >"$WORK/pods"
    echo "old: $(tr '\n' ' ' <"$WORK/old-pods")  new: $(tr '\n' ' ' <"$WORK/pods")"
    if grep -qxFf "$WORK/old-pods" "$WORK/pods"; then echo "an old pod is still among the Ready ones"; return 1; fi
    local pod
    while read -r pod; do
        expect_eq "$pod's checksum/config" "$after" \
            "$(k get pod "$pod" -n "$NS" -o jsonpath='{.metadata.annotations.checksum/config}')"
    done <"$WORK/pods"
    expect_eq "signing key kept across the rollout" "$(cat "$WORK/kid")" "$(kid)"
    browser upgraded alice "https://grafana.example.test/" "https://grafana.example.test/headers"
    expect_eq ok True "$(field upgraded "r['ok']")"
    expect_eq "X-Pomerium-Claim-Email after the upgrade" alice@example.com \
        "$(field upgraded "json.loads(r['then'][0]['body_text'])['headers'].get('x-pomerium-claim-email')")"
}

t_helm_uninstall() {
    "$HELM" uninstall "$RELEASE" --namespace "$NS" --wait --timeout 120s
    # the release's objects and its pods are gone ...
    if k get deployment,configmap,serviceaccount,service -n "$NS" -l "$SELECTOR" -o name | grep .; then
        echo "objects of the release are left"; return 1
    fi
    wait_for 90 "the jetbridge pods gone" count_is 0 all_pods "$NS" "$SELECTOR"
    if k get ingressclass "$CLASS" -o name 2>/dev/null; then echo "IngressClass left"; return 1; fi
    # ... the keys and the CRD are not
    expect_eq "bootstrap Secret kept" "cookie_secret shared_secret signing_key" \
        "$(k get secret journey-bootstrap -n "$NS" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}' | sed 's/ $//')"
    k get crd policies.jetbridge.dev -o name
    k get policies.jetbridge.dev admins -n "$APPS" -o name
}

t_reinstall_same_keys() {
    t_helm_install
    k rollout status deployment "$RELEASE" -n "$NS" --timeout=180s
    wait_for 60 "2 Ready jetbridge pods" count_is 2 ready_pods "$NS" "$SELECTOR"
    wait_for 30 "the JWKS through the new internal Service" kid
    expect_eq "signing key after a reinstall" "$(cat "$WORK/kid")" "$(kid)"
}

# ----------------------------------------------------------------- main ---

echo "cluster: $APISERVER_URL (Kubernetes $KUBE_VERSION, cluster $CLUSTER_INDEX, nodes $NODE_NAMES); helm: $("$HELM" version --short)"
# a release left by an earlier run on this cluster would keep its IdP and certificate
if "$HELM" status "$RELEASE" -n "$NS" >/dev/null 2>&1; then
    echo "removing the release left by an earlier run"
    "$HELM" uninstall "$RELEASE" -n "$NS" --wait --timeout 120s >/dev/null
fi
start_idp
check "helm install: CRD established, NOTES name the JWKS URL and redirect URI" t_helm_install
check "the chart's 2 jetbridge pods run from the Deployment and are Ready" t_pods_ready
check "exactly one pod holds the leader Lease" t_one_leader
check "Verify apps as pods behind Services, the tutorial's Ingresses, a Policy" t_apps
check "the authenticate host serves defaultCertificate's Secret" t_authenticate_certificate
check "Chromium: alice signs in through a proxy pod, 'Identity verified'" t_alice_signs_in
check "an app pod fetches the JWKS by the svc.cluster.local name" t_app_pod_jwks
check "jose and PyJWT verify the assertions via the JWKS (aud per route)" t_verifiers_accept
check "someone outside example.com gets 403 on both tutorial routes" t_outsider_denied
check "the Policy object lets admins in (verified by the app pod)" t_admin_allowed
check "the chart's GatewayClass, a Gateway and an HTTPRoute guarded by a Policy" t_gateway_app
check "Chromium: alice signs in through the HTTPRoute, the app pod verifies; 403 outside" t_gateway_sign_in
check "helm upgrade (jwtClaimsHeaders) rolls the pods and takes effect" t_helm_upgrade
check "helm uninstall removes the pods, leaves the bootstrap Secret and CRD" t_helm_uninstall
check "a reinstall serves the same signing key" t_reinstall_same_keys

for pod in $(all_pods "$NS" "$SELECTOR"); do cp "$(pod_log "$NS" "$pod" jetbridge)" "$LOGS/pod-$pod.log" 2>/dev/null || true; done
printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
