#!/usr/bin/env bash
# The user's journey end to end, against a real API server: the seed tutorial
# (Pomerium's "Identity Verification with JWTs") done the Kubernetes way.
#
#   tests/tools/journey.sh CLUSTER_DIR
#
#  1. `helm install` charts/jetbridge (release journey-jetbridge in namespace journey)
#     with npm `oidc-provider` as the IdP; the Policy CRD is established and NOTES.txt
#     names the in-cluster JWKS URL and the redirect URI to register.
#  2. The controller runs out of cluster with exactly the Deployment's arguments, the
#     release's config.yaml and IdP Secret, and a TokenRequest token of the chart's
#     ServiceAccount: what the chart grants is all it has.
#  3. Three upstreams (the Verify app, `jetbridge verify`, standing in for the
#     tutorial's verify and grafana, plus a dashboard), each behind a Service and an
#     EndpointSlice. The tutorial's two Ingresses use ingress.pomerium.io/ annotations
#     (pass_identity_headers, the `domain is example.com` policy); a third Ingress refers
#     to a `Policy` object (groups has admins).
#  4. Headless Chromium (playwright-core) signs in as alice and lands on the Verify page
#     showing verified claims; npm `jose` and PyPI `PyJWT` verify the assertions the
#     upstreams received against the JWKS the internal Service serves (reached through
#     the controller's internal listener: this harness has no cluster DNS). Someone
#     outside example.com gets 403; the Policy object lets admins in and keeps alice out.
#  5. `helm upgrade` with a changed value (jwtClaimsHeaders) rolls the pods
#     (checksum/config) and, once the controller restarts, upstreams get the new header.
#  6. `helm uninstall` removes the release and leaves the bootstrap Secret and the CRD;
#     a reinstall serves the same signing key.
#
# CLUSTER_DIR is a running cluster (`scripts/cluster start DIR`). Environment:
# JETBRIDGE_BIN (default target/debug/jetbridge), JETBRIDGE_SUPPORT (this directory),
# JETBRIDGE_NODE_MODULES, JETBRIDGE_PYTHON (a python with PyJWT), JETBRIDGE_CHROMIUM.
# Logs (controller, IdP, upstreams, browser results) are kept in CLUSTER_DIR/journey/.
# Ends with "N passed, M failed"; exits non-zero when a check failed.

set -euo pipefail

[ "$#" -eq 1 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
PIDFILE="$WORK/controller.pid"
# shellcheck source=cluster-lib.sh
. "$ROOT/tests/tools/cluster-lib.sh"
use_cluster "$1"
jetbridge_bin
SUPPORT="${JETBRIDGE_SUPPORT:-$ROOT/tests/tools}"
PYTHON="${JETBRIDGE_PYTHON:-$ROOT/.cache/venv/bin/python}"
export NODE_PATH="${JETBRIDGE_NODE_MODULES:-$SUPPORT/node_modules}"
CHART="$ROOT/charts/jetbridge"
RELEASE=journey-jetbridge
NS=journey
APPS=journey-apps
CLASS=journey
LOGS="$DIR/journey"
mkdir -p "$LOGS"

HELPERS=()
cleanup() {
    stop_controller
    local p
    for p in "${HELPERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

HTTPS="$(free_port)"
INTERNAL="$(free_port)"
REDIRECT="$(free_port)"
AUTH_URL="https://authenticate.example.test:$HTTPS"
JWKS_LOCAL="http://127.0.0.1:$INTERNAL/.well-known/pomerium/jwks.json"
CLIENT_SECRET="journey-client-secret-$RANDOM$RANDOM"
HOSTS="authenticate.example.test,verify.example.test,grafana.example.test,dash.example.test"

# ------------------------------------------------------------- real parts ---

# The IdP: it must know the redirect URI before the release exists (as a real one would).
start_idp() {
    node "$SUPPORT/idp.mjs" --port 0 --ignore-stdin --skip-consent \
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

# start_upstream NAME: the Verify app for NAME.example.test; its port in $WORK/port-NAME.
# (Not inside a check: a check runs in a subshell, and HELPERS must see the PID.)
start_upstream() {
    local port
    port="$(free_port)"
    echo "$port" >"$WORK/port-$1"
    "$BIN" verify --listen "127.0.0.1:$port" --jwks-url "$JWKS_LOCAL" \
        --expected-issuer "$1.example.test" --expected-audience "$1.example.test" \
        --log-format text >"$LOGS/upstream-$1.log" 2>&1 &
    HELPERS+=("$!")
}

# ------------------------------------------------------------------ steps ---

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
    "$HELM" install "$RELEASE" "$CHART" --namespace "$NS" --create-namespace \
        --set authenticate.url="$AUTH_URL" \
        --set idp.providerUrl="$ISSUER" \
        --set idp.clientId=journey \
        --set idp.clientSecret="$CLIENT_SECRET" \
        --set 'idp.scopes={openid,email,profile,groups}' \
        --set ingressClass.name="$CLASS" \
        --set leaderElectionId=journey-leader \
        --set bootstrapSecret.name=journey-bootstrap \
        --set defaultCertificate.secretName=auth-tls \
        "$@" >"$WORK/notes"
    cat "$WORK/notes"
    k wait --for=condition=Established crd/policies.jetbridge.dev --timeout=30s
    grep -qF "http://$RELEASE.$NS.svc/.well-known/pomerium/jwks.json" "$WORK/notes" \
        || { echo "NOTES.txt does not name the in-cluster JWKS URL"; return 1; }
    grep -qF "redirect (callback) URI:   $AUTH_URL/oauth2/callback" "$WORK/notes" \
        || { echo "NOTES.txt does not name the redirect URI"; return 1; }
    # the internal Service's port 80 is the JWKS listener (checked below, once running)
    expect_eq "internal Service port" "80:internal" \
        "$(k get service "$RELEASE" -n "$NS" -o jsonpath='{.spec.ports[0].port}:{.spec.ports[0].targetPort}')"
}

t_apps() {
    local name port
    for name in verify grafana dash; do
        port="$(cat "$WORK/port-$name")"
        k apply --server-side --field-manager=journey -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: $APPS}
spec:
  ports: [{name: http, port: 80, targetPort: 8000, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-1
  namespace: $APPS
  labels: {kubernetes.io/service-name: $name}
addressType: IPv4
ports: [{name: http, port: $port, protocol: TCP}]
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {ready: true}
EOF
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

# start_controller: the Deployment's own arguments, with the pod's paths and ports
# mapped to this machine, as the chart's ServiceAccount.
start_controller() {
    local kc="$WORK/controller.kubeconfig" cfg="$WORK/config.yaml" log="$LOGS/controller.log"
    sa_kubeconfig "$NS" "$RELEASE" "$kc"
    k get configmap "$RELEASE-config" -n "$NS" -o jsonpath='{.data.config\.yaml}' >"$cfg"
    k get secret "$RELEASE-idp" -n "$NS" -o jsonpath='{.data.client_secret}' | base64 -d >"$WORK/client_secret"
    sed -i "s#/etc/jetbridge/idp/client_secret#$WORK/client_secret#" "$cfg"
    # the default certificate, as the pod's projected volume holds it
    mkdir -p "$WORK/tls"
    k get secret auth-tls -n "$NS" -o jsonpath='{.data.tls\.crt}' | base64 -d >"$WORK/tls/tls.crt"
    k get secret auth-tls -n "$NS" -o jsonpath='{.data.tls\.key}' | base64 -d >"$WORK/tls/tls.key"
    sed -i "s#/etc/jetbridge/tls/#$WORK/tls/#" "$cfg"
    k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].args}' >"$WORK/args.json"
    local args=()
    mapfile -t args < <(python3 - "$WORK/args.json" "$cfg" "$HTTPS" "$REDIRECT" "$INTERNAL" <<'EOF'
import json, sys
args, cfg, https, redirect, internal = json.load(open(sys.argv[1])), *sys.argv[2:]
mapped = {"/etc/jetbridge/config.yaml": cfg, ":8443": f"127.0.0.1:{https}",
          ":8080": f"127.0.0.1:{redirect}", ":9090": f"127.0.0.1:{internal}"}
for a in args:
    print(mapped.get(a, a))
EOF
    )
    echo "controller ${args[*]}" >"$log"
    # --allow-loopback-backends: the stand-in upstreams listen on this machine's
    # loopback (out of cluster); in a pod, loopback is jetbridge itself.
    POD_NAME="journey-0" "$BIN" "${args[@]}" --kubeconfig "$kc" --allow-loopback-backends >>"$log" 2>&1 &
    echo "$!" >"$PIDFILE"
    wait_ready "$!" "$INTERNAL" "$log" 60
    # every route programmed (three Ingresses)
    local i
    for i in $(seq 1 100); do
        [ "$(k get ingress -n "$APPS" -o jsonpath='{range .items[*]}{.status.loadBalancer.ingress[0].ip}{" "}{end}' | wc -w)" = 3 ] && break
        sleep 0.2
    done
    k get ingress -n "$APPS"
    if grep -inE 'forbidden|\b403\b' "$log"; then
        echo "the controller was refused by the API server"
        return 1
    fi
}

# fingerprint of the certificate served for SNI NAME
served() {
    openssl s_client -connect "127.0.0.1:$HTTPS" -servername "$1" </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256
}

t_authenticate_certificate() {
    expect_eq "certificate served for the authenticate host" \
        "$(openssl x509 -in "$WORK/auth.crt" -noout -fingerprint -sha256)" "$(served authenticate.example.test)"
}

# browser NAME LOGIN START_URL [THEN_URL...]: signs in with Chromium; result in $LOGS/NAME.json
browser() {
    local name="$1" login="$2" start="$3"
    shift 3
    local then=() u
    for u in "$@"; do then+=(--then "$u"); done
    node "$SUPPORT/login_browser.mjs" --start-url "$start" --login "$login" --map "$HOSTS" \
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
    local out
    out="$(node "$SUPPORT/verify_jose.mjs" --jwks-url "$JWKS_LOCAL" --token "$1" --issuer "$2" --audience "$2")" \
        || { echo "jose refused: $out"; return 1; }
    grep -q '"email":"alice@example.com"' <<<"$out" || { echo "jose: $out"; return 1; }
    out="$("$PYTHON" "$SUPPORT/verify_pyjwt.py" --jwks-url "$JWKS_LOCAL" --token "$1" --issuer "$2" --audience "$2")" \
        || { echo "PyJWT refused: $out"; return 1; }
    grep -q '"email": *"alice@example.com"' <<<"$out" || { echo "PyJWT: $out"; return 1; }
}

t_alice_signs_in() {
    browser alice alice "https://verify.example.test:$HTTPS/" \
        "https://verify.example.test:$HTTPS/headers" \
        "https://grafana.example.test:$HTTPS/headers" \
        "https://dash.example.test:$HTTPS/"
    expect_eq ok True "$(field alice "r['ok']")"
    expect_eq "saw the IdP's login form" True "$(field alice "r['logged_in']")"
    expect_eq "landed on" "https://verify.example.test:$HTTPS/" "$(field alice "r['final_url']")"
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

t_verifiers_accept() {
    local verify_token grafana_token
    verify_token="$(assertion_from alice 0)"
    grafana_token="$(assertion_from alice 1)"
    verifiers "$verify_token" verify.example.test
    verifiers "$grafana_token" grafana.example.test
    # an assertion for one route is refused for another (aud)
    if node "$SUPPORT/verify_jose.mjs" --jwks-url "$JWKS_LOCAL" --token "$verify_token" \
        --issuer verify.example.test --audience grafana.example.test; then
        echo "jose accepted verify's assertion for grafana"; return 1
    fi
    if "$PYTHON" "$SUPPORT/verify_pyjwt.py" --jwks-url "$JWKS_LOCAL" --token "$verify_token" \
        --issuer verify.example.test --audience grafana.example.test; then
        echo "PyJWT accepted verify's assertion for grafana"; return 1
    fi
}

t_outsider_denied() {
    browser mallory mallory@evil.test "https://verify.example.test:$HTTPS/" \
        "https://verify.example.test:$HTTPS/" "https://grafana.example.test:$HTTPS/"
    expect_eq ok True "$(field mallory "r['ok']")"
    expect_eq "verify as mallory@evil.test" 403 "$(field mallory "r['then'][0]['status']")"
    expect_eq "grafana as mallory@evil.test" 403 "$(field mallory "r['then'][1]['status']")"
}

t_admin_allowed() {
    browser admin admin.bob "https://dash.example.test:$HTTPS/" "https://dash.example.test:$HTTPS/json"
    expect_eq ok True "$(field admin "r['ok']")"
    expect_eq "dash as admin.bob" 200 "$(field admin "r['then'][0]['status']")"
    expect_eq "dash's Verify app verified the assertion" True \
        "$(field admin "json.loads(r['then'][0]['body_text'])['verified']")"
    expect_eq "groups" "['users', 'admins']" \
        "$(field admin "sorted(json.loads(r['then'][0]['body_text'])['claims']['groups'], reverse=True)")"
    expect_eq "Policy admins Accepted" True \
        "$(k get policies.jetbridge.dev admins -n "$APPS" -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}')"
}

kid() { curl -fsS "$JWKS_LOCAL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["kid"])'; }

t_helm_upgrade() {
    local before after
    before="$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    kid >"$WORK/kid"
    "$HELM" upgrade "$RELEASE" "$CHART" --namespace "$NS" --reuse-values \
        --set 'jwtClaimsHeaders.X-Pomerium-Claim-Email=email' >/dev/null
    after="$(k get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.metadata.annotations.checksum/config}')"
    [ "$before" != "$after" ] || { echo "checksum/config unchanged: the pods would not roll"; return 1; }
    # the rollout: the controller restarts with the new config.yaml
    stop_controller
    start_controller
    expect_eq "signing key kept across the rollout" "$(cat "$WORK/kid")" "$(kid)"
    browser upgraded alice "https://grafana.example.test:$HTTPS/" "https://grafana.example.test:$HTTPS/headers"
    expect_eq ok True "$(field upgraded "r['ok']")"
    expect_eq "X-Pomerium-Claim-Email after the upgrade" alice@example.com \
        "$(field upgraded "json.loads(r['then'][0]['body_text'])['headers'].get('x-pomerium-claim-email')")"
}

t_helm_uninstall() {
    stop_controller
    "$HELM" uninstall "$RELEASE" --namespace "$NS"
    # the release's objects are gone ...
    if k get deployment,configmap,serviceaccount -n "$NS" -l "app.kubernetes.io/instance=$RELEASE" -o name | grep .; then
        echo "objects of the release are left"; return 1
    fi
    if k get ingressclass "$CLASS" -o name 2>/dev/null; then echo "IngressClass left"; return 1; fi
    # ... the keys and the CRD are not
    expect_eq "bootstrap Secret kept" "cookie_secret shared_secret signing_key" \
        "$(k get secret journey-bootstrap -n "$NS" -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}' | sed 's/ $//')"
    k get crd policies.jetbridge.dev -o name
    k get policies.jetbridge.dev admins -n "$APPS" -o name
}

t_reinstall_same_keys() {
    t_helm_install
    start_controller
    expect_eq "signing key after a reinstall" "$(cat "$WORK/kid")" "$(kid)"
}

# ----------------------------------------------------------------- main ---

echo "cluster: $APISERVER_URL; helm: $("$HELM" version --short); binary: $BIN"
start_idp
for app in verify grafana dash; do start_upstream "$app"; done
check "helm install: CRD established, NOTES name the JWKS URL and redirect URI" t_helm_install
check "Verify apps, Services, EndpointSlices, the tutorial's Ingresses, a Policy" t_apps
check "controller with the Deployment's args as the chart's ServiceAccount" start_controller
check "the authenticate host serves defaultCertificate's Secret" t_authenticate_certificate
check "Chromium: alice signs in and lands on 'Identity verified'" t_alice_signs_in
check "jose and PyJWT verify the assertions via the JWKS (aud per route)" t_verifiers_accept
check "someone outside example.com gets 403 on both tutorial routes" t_outsider_denied
check "the Policy object lets admins in (verified by the upstream)" t_admin_allowed
check "helm upgrade (jwtClaimsHeaders) rolls the pods and takes effect" t_helm_upgrade
check "helm uninstall leaves the bootstrap Secret and the CRD" t_helm_uninstall
check "a reinstall serves the same signing key" t_reinstall_same_keys
stop_controller

printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
