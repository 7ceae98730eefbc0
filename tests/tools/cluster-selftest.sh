#!/usr/bin/env bash
# Checks a running test cluster from outside, with kubectl and helm only: everything the
# controller and the chart rely on, then an API-server restart and the data after it.
#
#   tests/tools/cluster-selftest.sh DIR     DIR as given to `scripts/cluster start DIR`
#   scripts/cluster selftest [DIR]            the same (without DIR: on a fresh cluster)
#
# Checks the version the cluster was started with (KUBE_VERSION in DIR/env). Uses a new
# namespace each run (selftest-<random>). On 1.20 there is no controller-manager, so the
# namespace is left (deleted, it would stay Terminating); on 1.37 the controllers
# (service-account, token, EndpointSlice, namespace, garbage collector) and the
# scheduler are checked too, then the node (pods run by tests/tools/pod_runner.py:
# Ready, EndpointSlices, ClusterIP through kube-proxy, readiness, API access with the
# pod's token, graceful deletion, an unknown image, a second cluster's clean stop), and
# the namespace is deleted at the end. Cluster-scoped
# objects (a CRD, a ClusterRole, an IngressClass, a Node) are applied, so re-runs are
# fine. Ends with "N passed, M failed"; exits non-zero when a check failed.

set -euo pipefail

[ "$#" -eq 1 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=cluster-lib.sh
. "$ROOT/tests/tools/cluster-lib.sh"
use_cluster "$1"
NS="selftest-$(openssl rand -hex 3)"
SA=jetbridge
KUBE_VERSION="${KUBE_VERSION:-1.20.2}"
# the 1.37 tier runs the controllers and the scheduler
WITH_CONTROLLERS="${KUBE_CONTROLLER_MANAGER:+yes}"

now_micro() { date -u +%Y-%m-%dT%H:%M:%S.000000Z; }

expect_fail() {
    # expect_fail PATTERN COMMAND...: the command fails and says PATTERN
    local out
    if out="$("$@" 2>&1)"; then
        echo "expected a failure matching '$1', but it succeeded: $out"
        return 1
    fi
    grep -qiE "$1" <<<"$out" || { echo "failed, but not with '$1': $out"; return 1; }
}

raw_get() {
    curl -fsS --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER_URL$1"
}

apiserver_alive() { kill -0 "$APISERVER_PID" && [ -d "/proc/$APISERVER_PID" ]; }

# ------------------------------------------------------------------ checks ---

t_version() {
    local out
    out="$(k version 2>&1)"
    echo "$out"
    grep -q "^Server Version: v$KUBE_VERSION\$" <<<"$out"
    grep -q "\"gitVersion\": \"v$KUBE_VERSION\"" <<<"$(raw_get /version)"
}

t_helm_version() {
    local v
    v="$("$HELM" version --short)"
    echo "$v"
    [[ "$v" == v4.* ]]
}

t_namespace() {
    k create namespace "$NS"
    expect_eq phase Active "$(k get namespace "$NS" -o jsonpath='{.status.phase}')"
}

# Endpoint addresses are from TEST-NET-1 (192.0.2.0/24): nothing is sent to them, and a
# real EndpointSlice (1.37) refuses loopback addresses, which the 1.20 shim took.
t_service_and_endpointslice() {
    k apply -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: $NS}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: $NS
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["192.0.2.1"]
  conditions: {ready: true}
EOF
    expect_eq "slice via label" "192.0.2.1 true 8080 http" \
        "$(k get endpointslices.v1.discovery.k8s.io -n "$NS" -l kubernetes.io/service-name=echo \
            -o jsonpath='{.items[0].endpoints[0].addresses[0]} {.items[0].endpoints[0].conditions.ready} {.items[0].ports[0].port} {.items[0].ports[0].name}')"
    # (Output is captured before grep -q reads it: with pipefail, grep -q exiting at the
    # first match can fail the writer with SIGPIPE.)
    local slice versions
    slice="$(raw_get "/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices/echo-1")"
    grep -qE '"addressType": ?"IPv4"' <<<"$slice"
    # discovery.k8s.io/v1 is the only version served
    versions="$(k api-versions)"
    grep -qx discovery.k8s.io/v1 <<<"$versions"
    if grep -qx discovery.k8s.io/v1beta1 <<<"$versions"; then echo "v1beta1 is served"; return 1; fi
}

t_endpointslice_schema() {
    expect_fail 'addressType: Required|Required value' k create -f - <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: broken, namespace: $NS}
endpoints: []
EOF
}

# 1.37: the built-in type refuses a loopback endpoint (the 1.20 shim takes one), so a
# test's upstream needs an address of a network namespace of its own.
t_endpointslice_refuses_loopback() {
    expect_fail 'may not be in the loopback range' k create -f - <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: loopback, namespace: $NS}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
EOF
}

t_custom_resource_lifecycle() {
    k apply -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.selftest.jetbridge.dev
spec:
  group: selftest.jetbridge.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 0}
              labels: {type: object, additionalProperties: {type: string}}
          status:
            type: object
            properties:
              observedSize: {type: integer}
EOF
    k wait --for=condition=Established --timeout=60s crd/widgets.selftest.jetbridge.dev
    local i
    for i in $(seq 1 50); do k get widgets -n "$NS" >/dev/null 2>&1 && break; sleep 0.2; done
    # create (POST), replace (PUT), patch (PATCH), status, delete: the old vendored reflect2
    # crashed the API server on the first of these
    k create -f - <<EOF
apiVersion: selftest.jetbridge.dev/v1
kind: Widget
metadata: {name: w1, namespace: $NS}
spec: {size: 1, labels: {a: b}}
EOF
    k get widget w1 -n "$NS" -o json | sed 's/"size": 1/"size": 2/' | k replace -f -
    expect_eq "size after replace" 2 "$(k get widget w1 -n "$NS" -o jsonpath='{.spec.size}')"
    k patch widget w1 -n "$NS" --type=merge -p '{"spec":{"size":3}}'
    expect_eq "size after patch" 3 "$(k get widget w1 -n "$NS" -o jsonpath='{.spec.size}')"
    k patch widget w1 -n "$NS" --subresource=status --type=merge -p '{"status":{"observedSize":3}}'
    expect_eq "status" 3 "$(k get widget w1 -n "$NS" -o jsonpath='{.status.observedSize}')"
    expect_fail 'Invalid value|should be greater than or equal to 0' \
        k patch widget w1 -n "$NS" --type=merge -p '{"spec":{"size":-1}}'
    k delete widget w1 -n "$NS" --wait=true
    expect_fail 'NotFound|not found' k get widget w1 -n "$NS"
    # one that must outlive the API-server restart below
    k create -f - <<EOF
apiVersion: selftest.jetbridge.dev/v1
kind: Widget
metadata: {name: keep, namespace: $NS}
spec: {size: 7}
EOF
    apiserver_alive
}

t_lease() {
    k create -f - <<EOF
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: jetbridge-leader, namespace: $NS}
spec:
  holderIdentity: selftest-a
  leaseDurationSeconds: 15
  acquireTime: "$(now_micro)"
  renewTime: "$(now_micro)"
EOF
    k patch lease jetbridge-leader -n "$NS" --type=merge \
        -p "{\"spec\":{\"holderIdentity\":\"selftest-b\",\"renewTime\":\"$(now_micro)\",\"leaseTransitions\":1}}"
    expect_eq holder "selftest-b 1" \
        "$(k get lease jetbridge-leader -n "$NS" -o jsonpath='{.spec.holderIdentity} {.spec.leaseTransitions}')"
}

t_event() {
    k create -f - <<EOF
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: echo.selftest, namespace: $NS}
eventTime: "$(now_micro)"
reportingController: jetbridge.dev/controller
reportingInstance: selftest
action: Translate
reason: RouteAccepted
note: route accepted by the self-test
type: Normal
regarding: {apiVersion: v1, kind: Service, name: echo, namespace: $NS}
EOF
    expect_eq "events.k8s.io/v1" "RouteAccepted Translate" \
        "$(k get events.v1.events.k8s.io echo.selftest -n "$NS" -o jsonpath='{.reason} {.action}')"
    # the same object through core/v1
    expect_eq "core/v1" "RouteAccepted Service" \
        "$(k get events.v1. echo.selftest -n "$NS" -o jsonpath='{.reason} {.involvedObject.kind}')"
}

t_ingress_v1() {
    k apply -f - <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: jetbridge-selftest}
spec: {controller: jetbridge.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo, namespace: $NS}
spec:
  ingressClassName: jetbridge-selftest
  rules:
  - host: echo.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: echo, port: {name: http}}}
EOF
    expect_eq ingress "jetbridge-selftest echo http" \
        "$(k get ingress echo -n "$NS" -o jsonpath='{.spec.ingressClassName} {.spec.rules[0].http.paths[0].backend.service.name} {.spec.rules[0].http.paths[0].backend.service.port.name}')"
}

t_serviceaccount_rbac() {
    k create serviceaccount "$SA" -n "$NS"
    k apply -f - <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: jetbridge-selftest}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [get, update, patch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
EOF
    k create rolebinding jetbridge-selftest -n "$NS" --clusterrole=jetbridge-selftest \
        --serviceaccount="$NS:$SA"
}

t_token_request() {
    local token payload
    token="$(k create token "$SA" -n "$NS" --duration=1h)"
    [ "$(tr -cd . <<<"$token" | wc -c)" -eq 2 ] || { echo "not a JWT: $token"; return 1; }
    payload="$(cut -d. -f2 <<<"$token" | tr '_-' '/+')"
    while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload+="="; done
    payload="$(base64 -d <<<"$payload")"
    echo "$payload"
    grep -q "\"iss\":\"$SERVICE_ACCOUNT_ISSUER\"" <<<"$payload"
    grep -q "\"sub\":\"system:serviceaccount:$NS:$SA\"" <<<"$payload"
    printf '%s' "$token" > "$WORK/sa.token"
    # a kubeconfig with only the ServiceAccount's token, as a test runs the controller with
    local kc="$DIR/selftest-sa.kubeconfig"
    rm -f "$kc"
    k config --kubeconfig="$kc" set-cluster c --server="$APISERVER_URL" \
        --certificate-authority="$CA_FILE" --embed-certs=true >/dev/null
    k config --kubeconfig="$kc" set-credentials sa --token="$token" >/dev/null
    k config --kubeconfig="$kc" set-context c --cluster=c --user=sa --namespace="$NS" >/dev/null
    k config --kubeconfig="$kc" use-context c >/dev/null
}

as_sa() { "$KUBECTL" --kubeconfig="$DIR/selftest-sa.kubeconfig" "$@"; }

t_token_allowed() {
    expect_eq "services as the SA" "service/echo" "$(as_sa get service echo -n "$NS" -o name)"
    expect_eq "slices as the SA" "echo-1" \
        "$(as_sa get endpointslices.v1.discovery.k8s.io -n "$NS" -o jsonpath='{.items[*].metadata.name}')"
    as_sa patch ingress echo -n "$NS" --subresource=status --type=merge \
        -p '{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1"}]}}}'
    expect_eq "ingress status" 127.0.0.1 \
        "$(k get ingress echo -n "$NS" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')"
    # plain HTTP with the bearer token
    local svc
    svc="$(curl -fsS --cacert "$CA_FILE" -H "Authorization: Bearer $(cat "$WORK/sa.token")" \
        "$APISERVER_URL/api/v1/namespaces/$NS/services/echo")"
    grep -q '"name": "echo"' <<<"$svc"
}

t_token_forbidden() {
    expect_fail 'forbidden' as_sa get secrets -n "$NS"
    expect_fail 'forbidden' as_sa get services -n default
    expect_fail 'forbidden' as_sa delete service echo -n "$NS"
    expect_fail 'forbidden' as_sa patch ingress echo -n "$NS" --type=merge -p '{"metadata":{"labels":{"x":"y"}}}'
    local code
    code="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA_FILE" \
        -H "Authorization: Bearer $(cat "$WORK/sa.token")" "$APISERVER_URL/api/v1/namespaces/$NS/secrets")"
    expect_eq "HTTP status for secrets" 403 "$code"
    code="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA_FILE" \
        -H "Authorization: Bearer not-a-token" "$APISERVER_URL/api/v1/namespaces/$NS/services")"
    expect_eq "HTTP status for a bad token" 401 "$code"
}

t_auth_can_i() {
    local as="--as=system:serviceaccount:$NS:$SA"
    expect_eq "list services" yes "$(k auth can-i "$as" list services -n "$NS")"
    expect_eq "watch endpointslices" yes "$(k auth can-i "$as" watch endpointslices.discovery.k8s.io -n "$NS")"
    expect_eq "update ingresses/status" yes "$(k auth can-i "$as" update ingresses.networking.k8s.io --subresource=status -n "$NS")"
    expect_eq "create events" yes "$(k auth can-i "$as" create events.events.k8s.io -n "$NS")"
    expect_eq "get secrets" no "$(k auth can-i "$as" get secrets -n "$NS" || true)"
    expect_eq "update ingresses" no "$(k auth can-i "$as" update ingresses.networking.k8s.io -n "$NS" || true)"
    expect_eq "list services elsewhere" no "$(k auth can-i "$as" list services -n default || true)"
}

t_server_side_apply() {
    cm() {
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied, namespace: %s}\ndata: {key: "%s"}\n' "$NS" "$1"
    }
    cm one | k apply --server-side --field-manager=jetbridge-selftest -f -
    cm two | k apply --server-side --field-manager=jetbridge-selftest -f -
    expect_eq value two "$(k get configmap applied -n "$NS" -o jsonpath='{.data.key}')"
    expect_eq manager "jetbridge-selftest Apply" \
        "$(k get configmap applied -n "$NS" --show-managed-fields -o jsonpath='{.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}')"
    # another manager conflicts on the same field, unless it forces
    cm three > "$WORK/cm3.yaml"
    expect_fail 'conflict' k apply --server-side --field-manager=other -f "$WORK/cm3.yaml"
    k apply --server-side --field-manager=other --force-conflicts -f "$WORK/cm3.yaml"
    expect_eq "value after force" three "$(k get configmap applied -n "$NS" -o jsonpath='{.data.key}')"
    # apply on a custom resource (the EndpointSlice shim) as well
    k apply --server-side --field-manager=jetbridge-selftest -f - <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-2
  namespace: $NS
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 8081, protocol: TCP}]
endpoints: [{addresses: ["192.0.2.2"], conditions: {ready: false}}]
EOF
    expect_eq "applied slice" "192.0.2.2" \
        "$(k get endpointslices.v1.discovery.k8s.io echo-2 -n "$NS" -o jsonpath='{.endpoints[0].addresses[0]}')"
}

t_watch() {
    local rv
    rv="$(raw_get "/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices" | sed -n 's/.*"resourceVersion": *"\([0-9]*\)".*/\1/p' | sed -n 1p)"
    [ -n "$rv" ] || { echo "no list resourceVersion"; return 1; }
    k create -f - <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-3
  namespace: $NS
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
endpoints: [{addresses: ["192.0.2.3"]}]
EOF
    k delete endpointslices.v1.discovery.k8s.io echo-3 -n "$NS"
    local events
    events="$(curl -sS --max-time 20 --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$APISERVER_URL/apis/discovery.k8s.io/v1/namespaces/$NS/endpointslices?watch=1&resourceVersion=$rv&timeoutSeconds=2" \
        | sed -n 's/^{"type":"\([A-Z]*\)".*"name":"\([^"]*\)".*/\1 \2/p' | tr '\n' ' ')"
    expect_eq "watch events" "ADDED echo-3 DELETED echo-3 " "$events"
}

t_helm_install() {
    local chart="$WORK/chart"
    mkdir -p "$chart/templates"
    cat > "$chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: selftest
version: 0.1.0
EOF
    cat > "$chart/templates/objects.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-config}
data: {kube: {{ .Capabilities.KubeVersion.Version | quote }}}
---
apiVersion: v1
kind: Service
metadata: {name: {{ .Release.Name }}}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
EOF
    "$HELM" install sample "$chart" -n "$NS"
    expect_eq "helm status" deployed "$("$HELM" status sample -n "$NS" -o json | sed -n 's/.*"status":"\([a-z-]*\)".*/\1/p' | sed -n 1p)"
    expect_eq "rendered KubeVersion" "v$KUBE_VERSION" "$(k get configmap sample-config -n "$NS" -o jsonpath='{.data.kube}')"
    "$HELM" uninstall sample -n "$NS"
    expect_fail 'NotFound|not found' k get configmap sample-config -n "$NS"
}

t_restart_apiserver() {
    local before="$APISERVER_PID"
    bash "$ROOT/scripts/cluster" restart-apiserver "$DIR"
    # shellcheck disable=SC1091
    . "$DIR/env"
    [ "$APISERVER_PID" != "$before" ] || { echo "same PID after restart: $before"; return 1; }
    apiserver_alive
}

t_data_after_restart() {
    expect_eq namespace Active "$(k get namespace "$NS" -o jsonpath='{.status.phase}')"
    expect_eq slice 192.0.2.1 \
        "$(k get endpointslices.v1.discovery.k8s.io echo-1 -n "$NS" -o jsonpath='{.endpoints[0].addresses[0]}')"
    expect_eq lease selftest-b "$(k get lease jetbridge-leader -n "$NS" -o jsonpath='{.spec.holderIdentity}')"
    expect_eq widget 7 "$(k get widget keep -n "$NS" -o jsonpath='{.spec.size}')"
    expect_eq configmap three "$(k get configmap applied -n "$NS" -o jsonpath='{.data.key}')"
    # the token minted before the restart still works (same signing key)
    expect_eq "services as the SA" "service/echo" "$(as_sa get service echo -n "$NS" -o name)"
    expect_fail 'forbidden' as_sa get secrets -n "$NS"
    k patch widget keep -n "$NS" --type=merge -p '{"spec":{"size":8}}'
    expect_eq "widget write" 8 "$(k get widget keep -n "$NS" -o jsonpath='{.spec.size}')"
}

# ------------------------------------------- controllers and scheduler (1.37) ---

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds.
wait_for() {
    local limit="$1" what="$2" deadline=$((SECONDS + $1)); shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$what: not within ${limit}s"
            "$@" || true
            return 1
        fi
        sleep 0.5
    done
}

gone() { ! k get "$@" >/dev/null 2>&1; }

t_namespace_objects_by_controllers() {
    # the serviceaccount controller and the root-CA publisher fill every new namespace
    wait_for 60 "ServiceAccount default" k get serviceaccount default -n "$NS"
    wait_for 60 "ConfigMap kube-root-ca.crt" k get configmap kube-root-ca.crt -n "$NS"
    expect_eq "root CA published" "$(cat "$CA_FILE")" \
        "$(k get configmap kube-root-ca.crt -n "$NS" -o jsonpath='{.data.ca\.crt}')"
}

secret_token() { k get secret "$SA-token" -n "$NS" -o jsonpath='{.data.token}'; }
has_secret_token() { [ -n "$(secret_token)" ]; }

t_token_secret() {
    k apply -f - <<EOF
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: $SA-token
  namespace: $NS
  annotations: {kubernetes.io/service-account.name: $SA}
EOF
    wait_for 60 "token in Secret $SA-token" has_secret_token
    local token
    token="$(secret_token | base64 -d)"
    expect_eq "services with the Secret's token" "service/echo" \
        "$("$KUBECTL" --kubeconfig=/dev/null --server="$APISERVER_URL" --certificate-authority="$CA_FILE" \
            --token="$token" get services -n "$NS" -o name)"
}

t_node() {
    local now
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # A Node as a kubelet registers it (status included on create); no kubelet follows,
    # so the node lifecycle controller marks it unreachable after its grace period.
    k create -f - <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  labels: {kubernetes.io/hostname: $NODE, jetbridge.dev/selftest: "true"}
spec:
  # only web-0 tolerates it: no other pod is scheduled to a Node nothing runs
  taints: [{key: jetbridge.dev/selftest, value: "true", effect: NoSchedule}]
status:
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: selftest,
     lastHeartbeatTime: "$now", lastTransitionTime: "$now"}
EOF
}

pod_bound() {
    local node
    node="$(k get pod web-0 -n "$NS" -o jsonpath='{.spec.nodeName}')"
    [ "$node" = "$NODE" ] || { echo "web-0 on node '$node'"; return 1; }
}

t_scheduler_binds() {
    k create -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: $NS, labels: {app: selftest-web}}
spec:
  nodeSelector: {kubernetes.io/hostname: $NODE}
  tolerations: [{key: jetbridge.dev/selftest, operator: Exists, effect: NoSchedule}]
  containers: [{name: web, image: selftest.invalid/web:1, ports: [{name: http, containerPort: 8080}]}]
EOF
    wait_for 60 "pod web-0 bound by the scheduler" pod_bound
    expect_eq "PodScheduled" True \
        "$(k get pod web-0 -n "$NS" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].status}')"
}

# pod_status READY: the status a kubelet would write for web-0 (IP 10.244.0.10).
pod_status() {
    k patch pod web-0 -n "$NS" --subresource=status --type=merge -p "{\"status\":{
        \"phase\":\"Running\",\"podIP\":\"10.244.0.10\",\"podIPs\":[{\"ip\":\"10.244.0.10\"}],
        \"conditions\":[{\"type\":\"Ready\",\"status\":\"$1\"},{\"type\":\"ContainersReady\",\"status\":\"$1\"},
                      {\"type\":\"PodScheduled\",\"status\":\"True\"}]}}"
}

# managed_slice: "address ready node port;" for each endpoint of the EndpointSlice
# controller's slices of web.
managed_slice() {
    k get endpointslices.v1.discovery.k8s.io -n "$NS" \
        -l kubernetes.io/service-name=web,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io \
        -o jsonpath='{range .items[*]}{range .endpoints[*]}{.addresses[0]} {.conditions.ready} {.nodeName} {end}{.ports[*].port};{end}'
}

# no endpoint left (the controller keeps an empty placeholder slice)
slice_is_empty() {
    local got
    got="$(managed_slice)"
    [[ "$got" =~ ^([0-9]*\;)*$ ]] || { echo "slice: '$got', want no endpoint"; return 1; }
}

slice_is() {
    local got
    got="$(managed_slice)"
    [ "$got" = "$1" ] || { echo "slice: '$got', want '$1'"; return 1; }
}

t_endpointslice_controller() {
    k apply -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  selector: {app: selftest-web}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
EOF
    pod_status True
    wait_for 60 "slice with the ready pod" slice_is "10.244.0.10 true $NODE 8080;"
    # the pod fails its readiness: the controller keeps it in the slice, not ready
    pod_status False
    wait_for 60 "slice with the unready pod" slice_is "10.244.0.10 false $NODE 8080;"
    # no kubelet confirms a graceful delete: force it, as the pod GC would
    k delete pod web-0 -n "$NS" --grace-period=0 --force
    wait_for 60 "pod gone from the slice" slice_is_empty
}

t_garbage_collector() {
    k create configmap gc-owner -n "$NS" --from-literal=a=b
    local uid
    uid="$(k get configmap gc-owner -n "$NS" -o jsonpath='{.metadata.uid}')"
    k create -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: gc-dependent
  namespace: $NS
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: gc-owner, uid: "$uid"}]
data: {a: b}
EOF
    k delete configmap gc-owner -n "$NS"
    wait_for 60 "dependent ConfigMap collected" gone configmap gc-dependent -n "$NS"
}

t_namespace_deleted() {
    local ns="$NS-gone"
    k create namespace "$ns"
    k create configmap inside -n "$ns" --from-literal=a=b
    k delete namespace "$ns" --wait=false
    wait_for 90 "namespace $ns removed by the namespace controller" gone namespace "$ns"
}

# ------------------------------------------------ pods, Services, kube-proxy (1.37) ---
# The pod runner (a kubelet stand-in) runs the pods as local processes, each in a
# network namespace of its own; kube-proxy (nftables) in the node namespace serves
# ClusterIPs; /etc/hosts, kept from the Services, stands in for DNS.

# in_pod_range IP: the address is in the cluster's pod range (10.(160+N).0.0/16)
in_pod_range() { [[ "$1" == "${POD_CIDR%.0.0/16}".* ]]; }

echo_pods() { k get pods -n "$NS" -l app=echo -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} {.spec.nodeName}{"\n"}{end}'; }

# pods_ready N SELECTOR: N pods with SELECTOR, all Ready
pods_ready() {
    local got
    got="$(k get pods -n "$NS" -l "$2" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)"
    [ "$got" = "$1" ] || { echo "$got of $1 pods with $2 Ready"; return 1; }
}

t_pods_deployment() {
    local t0=$SECONDS
    k apply -f - <<EOT
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: $NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: $NS}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: $NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: $NS}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: echo
        image: jetbridge.test/echo:1
        args: ["--port", "8080", "--drain-seconds", "2"]
        ports: [{name: http, containerPort: 8080}]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 1
        lifecycle:
          preStop: {exec: {command: ["sleep", "2"]}}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: $NS}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $NS, labels: {app: client}}
spec:
  serviceAccountName: reader
  containers:
  - name: client
    image: jetbridge.test/echo:1
    env: [{name: ECHO_NAME, value: client}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
EOT
    wait_for 90 "2 echo pods Ready" pods_ready 2 app=echo
    echo "Deployment Ready after $((SECONDS - t0))s"
    local name phase ip node n=0
    while read -r name phase ip node; do
        [ -n "$name" ] || continue
        n=$((n + 1))
        expect_eq "$name phase" Running "$phase"
        in_pod_range "$ip" || { echo "$name: IP '$ip' not in $POD_CIDR"; return 1; }
        [[ " $NODE_NAMES " == *" $node "* ]] || { echo "$name on node '$node', not one of $NODE_NAMES"; return 1; }
    done <<<"$(echo_pods)"
    expect_eq "echo pods" 2 "$n"
    wait_for 60 "client pod Ready" pods_ready 1 app=client
}

# echo_slice: "ip ready serving terminating" per endpoint of the controller's slice, sorted
echo_slice() {
    k get endpointslices.v1.discovery.k8s.io -n "$NS" \
        -l kubernetes.io/service-name=backend,endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io \
        -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready} {.conditions.serving} {.conditions.terminating}{"\n"}{end}' | sort
}

echo_ips() { k get pods -n "$NS" -l app=echo -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' | sort; }

slice_lists() {
    local want got
    want="$(echo_ips | sed 's/$/ true true false/')"
    got="$(echo_slice)"
    [ "$got" = "$want" ] || { printf 'slice:\n%s\nwant:\n%s\n' "$got" "$want"; return 1; }
}

t_pods_endpointslice() {
    wait_for 30 "the slice lists both echo pods, ready" slice_lists
    echo_slice
}

t_pods_clusterip() {
    local svc_ip out names
    svc_ip="$(k get service backend -n "$NS" -o jsonpath='{.spec.clusterIP}')"
    [[ "$svc_ip" == "${SERVICE_CIDR%.0.0/16}".* ]] || { echo "ClusterIP $svc_ip not in $SERVICE_CIDR"; return 1; }
    # the pod's /etc/hosts names the Service; kube-proxy's rules in the node netns DNAT it
    pod_exec "$NS" client grep -q "^${svc_ip}[[:space:]].*backend.$NS.svc.cluster.local" /etc/hosts
    # kube-proxy syncs its rules at most once a second after the slice changes
    wait_for 20 "the Service answers" pod_exec "$NS" client curl -fsS -m 5 -o /dev/null "http://backend.$NS.svc.cluster.local/"
    sleep 1
    out="$(for _ in $(seq 1 20); do
        pod_exec "$NS" client curl -fsS -m 5 "http://backend.$NS.svc.cluster.local/"; echo
    done)"
    names="$(sort -u <<<"$out" | paste -sd' ')"
    expect_eq "names answering through $svc_ip" "$(k get pods -n "$NS" -l app=echo -o jsonpath='{.items[*].metadata.name}' | tr ' ' '\n' | sort | paste -sd' ')" "$names"
    # from the pod's own namespace, the short name works too; the netns is the pod runner's
    expect_eq "short name" 200 "$(pod_exec "$NS" client curl -sS -m 5 -o /dev/null -w '%{http_code}' http://backend/)"
    ip netns exec "$(pod_netns "$NS" client)" curl -fsS -m 5 -o /dev/null "http://$svc_ip/"
}

slice_has() { local got; got="$(echo_slice)"; grep -qx "$1" <<<"$got" || { echo "slice: $got; want a line '$1'"; return 1; }; }

t_pods_readiness() {
    local pod ip
    read -r pod _ ip _ <<<"$(echo_pods | sed -n 1p)"
    curl -fsS -m 5 -X POST "http://$ip:8080/_echo/ready?value=false"; echo
    wait_for 30 "$pod not ready in the slice" slice_has "$ip false false false"
    expect_eq "$pod Ready" False "$(k get pod "$pod" -n "$NS" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')"
    curl -fsS -m 5 -X POST "http://$ip:8080/_echo/ready?value=true"; echo
    wait_for 30 "$pod ready again" slice_has "$ip true true false"
}

t_pods_api_access() {
    local sa=/var/run/secrets/kubernetes.io/serviceaccount code
    # the admission-added kube-api-access volume: a TokenRequest token bound to the pod
    pod_exec "$NS" client test -s "$sa/token"
    expect_eq "namespace file" "$NS" "$(pod_exec "$NS" client cat "$sa/namespace")"
    local own
    own="$(pod_exec "$NS" client sh -c "curl -fsS -m 5 --cacert $sa/ca.crt -H \"Authorization: Bearer \$(cat $sa/token)\" \
        https://kubernetes.default.svc/api/v1/namespaces/$NS/pods/client")"
    grep -q '"name": "client"' <<<"$own"
    code="$(pod_exec "$NS" client sh -c "curl -sS -m 5 -o /dev/null -w '%{http_code}' --cacert $sa/ca.crt \
        -H \"Authorization: Bearer \$(cat $sa/token)\" https://kubernetes.default.svc/api/v1/namespaces/$NS/secrets")"
    expect_eq "secrets with the pod's token (RBAC allows pods only)" 403 "$code"
    # the token is bound to the pod
    local payload
    payload="$(pod_exec "$NS" client cat "$sa/token" | cut -d. -f2 | tr '_-' '/+')"
    while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload+="="; done
    grep -q '"pod":{"name":"client"' <<<"$(base64 -d <<<"$payload")"
}

netns_gone() { ! ip netns list | grep -q "^$1\\b"; }

t_pods_delete() {
    local pod ip netns
    read -r pod _ ip _ <<<"$(echo_pods | sed -n 1p)"
    netns="$(pod_netns "$NS" "$pod")"
    k delete pod "$pod" -n "$NS" --wait=false
    # preStop (2 s) and the drain (2 s) keep it terminating, still serving
    wait_for 20 "$pod terminating in the slice" slice_has "$ip false true true"
    wait_for 60 "$pod gone" gone pod "$pod" -n "$NS"
    wait_for 20 "netns $netns removed" netns_gone "$netns"
    wait_for 90 "the replacement Ready" pods_ready 2 app=echo
}

waiting_reason() { k get pod "$1" -n "$NS" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}'; }
is_err_image_pull() { [ "$(waiting_reason nope)" = ErrImagePull ]; }

t_pods_unknown_image() {
    k run nope -n "$NS" --image=registry.invalid/nope:1 --restart=Never
    wait_for 30 "nope waiting with ErrImagePull" is_err_image_pull
    k get pod nope -n "$NS" -o jsonpath='{.status.containerStatuses[0].state.waiting.message}' | grep -q 'registry.invalid/nope:1'
    local events
    events="$(k get events -n "$NS" --field-selector involvedObject.name=nope,type=Warning -o jsonpath='{.items[*].message}')"
    grep -q 'registry.invalid/nope:1' <<<"$events" || { echo "no Warning event naming the image: $events"; return 1; }
    k delete pod nope -n "$NS" --wait=false
    wait_for 30 "nope deleted" gone pod nope -n "$NS"
}

# runner_jetbridge_bin: the binary the pod runner runs for ghcr.io/jetbridge/jetbridge
# (JETBRIDGE_BIN in its environment, else the repository's debug build)
runner_jetbridge_bin() {
    local bin
    bin="$(tr '\0' '\n' < "/proc/$POD_RUNNER_PID/environ" 2>/dev/null | sed -n 's/^JETBRIDGE_BIN=//p')"
    echo "${bin:-$ROOT/target/debug/jetbridge}"
}

pod_phase() { k get pod "$1" -n "$NS" -o jsonpath='{.status.phase}'; }
is_succeeded() { [ "$(pod_phase "$1")" = Succeeded ]; }

t_pods_jetbridge_image() {
    k apply -f - <<EOT
apiVersion: v1
kind: Pod
metadata: {name: jetbridge-version, namespace: $NS}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532, runAsGroup: 65532}
  containers: [{name: jetbridge, image: "ghcr.io/jetbridge/jetbridge:0.1.0", args: ["--version"]}]
EOT
    wait_for 60 "jetbridge-version Succeeded" is_succeeded jetbridge-version
    local log
    log="$(cat "$NODE_DIR"/pods/"$NS"_jetbridge-version_*/jetbridge.log)"
    grep -q '^jetbridge ' <<<"$log" || { echo "log: $log"; return 1; }
    expect_eq "exit code" 0 "$(k get pod jetbridge-version -n "$NS" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')"
}

# after restart-apiserver: kube-proxy and the pod runner carry on
t_pods_after_restart() {
    expect_eq "backend from the client pod" 200 \
        "$(pod_exec "$NS" client curl -sS -m 5 -o /dev/null -w '%{http_code}' "http://backend.$NS.svc.cluster.local/")"
    local sa=/var/run/secrets/kubernetes.io/serviceaccount
    # (kube-proxy follows the kubernetes Service's slice within about a second)
    wait_for 20 "the API through the kubernetes Service" pod_exec "$NS" client sh -c \
        "curl -fsS -m 5 -o /dev/null --cacert $sa/ca.crt -H \"Authorization: Bearer \$(cat $sa/token)\" \
            https://kubernetes.default.svc/api/v1/namespaces/$NS/pods"
    # the runner still reacts: a new pod becomes Ready
    k run after-restart -n "$NS" --image=jetbridge.test/echo:1 --labels=app=after-restart
    wait_for 60 "after-restart Ready" pods_ready 1 app=after-restart
}

t_pods_nodeport() {
    k expose deployment echo -n "$NS" --name=backend-np --type=NodePort --port=80 --target-port=8080
    local port
    port="$(k get service backend-np -n "$NS" -o jsonpath='{.spec.ports[0].nodePort}')"
    # kube-proxy answers on the node's address; the host routes to it
    wait_for 20 "NodePort $port on $NODE_IP" curl -fsS -m 5 -o /dev/null "http://$NODE_IP:$port/"
}

t_pods_logs() {
    local out
    out="$(k logs -n "$NS" client --tail=5)"
    grep -q 'listening on 0.0.0.0:8080' <<<"$out" || { echo "kubectl logs: $out"; return 1; }
}

# restart-pod-runner: the runner stops its pods, starts again, cleans up and runs the
# pods bound to its Nodes again, with the IPs their status had
t_pods_runner_restart() {
    local before after
    before="$(echo_ips)"
    "$ROOT/scripts/cluster" restart-pod-runner "$DIR"
    # shellcheck disable=SC1091
    . "$DIR/env"
    wait_for 60 "echo pods Ready again" pods_ready 2 app=echo
    after="$(echo_ips)"
    expect_eq "echo pod IPs" "$before" "$after"
    wait_for 30 "the slice lists both again, ready" slice_lists
}

# A second cluster, started and stopped alongside: another index, and nothing left.
t_second_cluster() {
    local dir n
    dir="$(mktemp -d "${TMPDIR:-/tmp}/jetbridge-cluster2.XXXXXX")"
    JETBRIDGE_KUBE_VERSION=1.37.2 "$ROOT/scripts/cluster" start "$dir" >/dev/null
    n="$(sed -n 's/^CLUSTER_INDEX=//p' "$dir/env")"
    [ "$n" != "$CLUSTER_INDEX" ] || { echo "second cluster got index $n too"; return 1; }
    ip netns list | grep -q "^jb${n}n" || { echo "no netns jb${n}n"; return 1; }
    "$ROOT/scripts/cluster" stop "$dir"
    local left
    left="$(ip netns list | grep -E "^jb${n}(n|p)" || true; ip -o link | grep -E " jb${n}h[@:]" || true;
            ip route | grep -E "^10\.($((160 + n))|$((128 + n)))\.0\.0/16" || true)"
    rm -rf "$dir"
    [ -z "$left" ] || { echo "left after stop: $left"; return 1; }
}

# -------------------------------------------------------------------- run ---

echo "cluster $APISERVER_URL (dir $DIR), namespace $NS"
check "server version is v$KUBE_VERSION" t_version
check "helm is v4" t_helm_version
check "namespace" t_namespace
check "Service and discovery.k8s.io/v1 EndpointSlice" t_service_and_endpointslice
check "EndpointSlice without addressType is rejected" t_endpointslice_schema
if [ -n "$WITH_CONTROLLERS" ]; then
    check "EndpointSlice with a loopback address is rejected" t_endpointslice_refuses_loopback
fi
check "CRD and custom resource create/replace/patch/status/delete" t_custom_resource_lifecycle
check "Lease coordination.k8s.io/v1" t_lease
check "Event events.k8s.io/v1" t_event
check "IngressClass and Ingress networking.k8s.io/v1" t_ingress_v1
check "ServiceAccount, ClusterRole, RoleBinding" t_serviceaccount_rbac
check "TokenRequest (kubectl create token)" t_token_request
check "SA token: allowed requests" t_token_allowed
check "SA token: forbidden requests" t_token_forbidden
check "kubectl auth can-i --as=system:serviceaccount:..." t_auth_can_i
check "server-side apply (field manager, conflict, force)" t_server_side_apply
check "watch from a resourceVersion sees ADDED and DELETED" t_watch
if [ -n "$WITH_CONTROLLERS" ]; then
    NODE="$NS-node"
    check "controllers: default ServiceAccount and kube-root-ca.crt" t_namespace_objects_by_controllers
    check "controllers: ServiceAccount token Secret filled" t_token_secret
    check "a Node registered as a kubelet would" t_node
    check "scheduler binds a pod" t_scheduler_binds
    check "controllers: EndpointSlice from Service + pod readiness" t_endpointslice_controller
    check "controllers: garbage collector follows ownerReferences" t_garbage_collector
    check "controllers: namespace deletion completes" t_namespace_deleted
fi
if [ -n "${CLUSTER_INDEX:-}" ]; then
    check "pods: a Deployment of 2 echo pods Ready, IPs in the pod range" t_pods_deployment
    check "pods: the EndpointSlice controller lists both" t_pods_endpointslice
    check "pods: svc.cluster.local name -> ClusterIP (kube-proxy) -> both" t_pods_clusterip
    check "pods: failing readiness leaves the slice, then returns" t_pods_readiness
    check "pods: kube-api-access token reads the API, RBAC forbids" t_pods_api_access
    check "pods: delete -> terminating endpoint -> gone, netns gone" t_pods_delete
    check "pods: an unknown image stays ErrImagePull" t_pods_unknown_image
    check "pods: kubectl logs (the pod runner's log endpoint)" t_pods_logs
    check "pods: a NodePort Service answers on the node IP from the host" t_pods_nodeport
    if [ -x "$(runner_jetbridge_bin)" ]; then
        check "pods: ghcr.io/jetbridge/jetbridge runs $(runner_jetbridge_bin)" t_pods_jetbridge_image
    else
        echo "skip  pods: ghcr.io/jetbridge/jetbridge (no binary at $(runner_jetbridge_bin); set JETBRIDGE_BIN for scripts/cluster start)"
    fi
    check "node network: a second cluster starts and stops clean" t_second_cluster
fi
check "helm install and uninstall a chart" t_helm_install
check "restart-apiserver" t_restart_apiserver
# shellcheck disable=SC1091
. "$DIR/env"
check "data and token survive the restart" t_data_after_restart
if [ -n "${CLUSTER_INDEX:-}" ]; then
    check "pods: Services, the API and the runner work after the restart" t_pods_after_restart
    check "pods: restart-pod-runner runs the pods again, same IPs" t_pods_runner_restart
fi
if [ -n "$WITH_CONTROLLERS" ]; then
    # with a namespace controller, a run cleans up after itself
    k delete node "$NODE" --wait=false >/dev/null 2>&1 || true
    k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
