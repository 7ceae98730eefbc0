#!/usr/bin/env bash
# Offline checks of the Helm chart (no cluster needed):
#   - `helm lint --strict` with the default values and each tests/fixtures/chart/*.yaml;
#   - values.schema.json rejects an unknown value (`--set bogus=1`) and a bad enum;
#   - each rendering validated with kubernetes-validate (strict, Kubernetes $KUBE_VERSION;
#     ServiceMonitor, a CRD-backed kind it has no schema for, is skipped explicitly);
#   - what each value set must produce (tests/tools/chart_manifests.py expect);
#   - Kubernetes 1.20 without discovery.k8s.io/v1 is refused with a message naming it;
#   - policy/v1beta1 PodDisruptionBudget when rendered for a Kubernetes 1.20 that
#     serves discovery.k8s.io/v1 (as the test API server does);
#   - gatewayClass.create renders a GatewayClass only where the Gateway API is served;
#   - no `*` in any Role/ClusterRole's apiGroups, resources or verbs;
#   - deploy/jetbridge.yaml equals a fresh `scripts/render-deploy --stdout` (drift);
#   - charts/jetbridge/crds/policies.jetbridge.dev.yaml equals crds/policies.jetbridge.dev.yaml.
#
#   tests/tools/chart-check.sh
#
# Installs what is missing: helm (scripts/cluster tools, unless $HELM is set) and
# kubernetes-validate in the venv .cache/chart-venv. Runs every check, prints
# `N passed, M failed`, exits non-zero when any failed.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CHART=charts/jetbridge
KUBE_VERSION=1.29.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
VENV="$ROOT/.cache/chart-venv"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

die() { printf 'chart-check: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ tools ---

if [ -z "${HELM:-}" ]; then
    HELM="$(scripts/cluster tools | sed -n 's/^HELM=//p')"
fi
[ -x "$HELM" ] || die "helm not found (HELM=$HELM)"
export HELM

if ! "$VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    printf '==> installing %s into %s\n' "$KUBERNETES_VALIDATE" "$VENV" >&2
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q "$KUBERNETES_VALIDATE" >&2 \
        || die "pip install $KUBERNETES_VALIDATE failed"
fi
PY="$VENV/bin/python"
MANIFESTS="$ROOT/tests/tools/chart_manifests.py"

# ----------------------------------------------------------------- checks ---

passed=0
failed=0
# check NAME CMD...: runs CMD with its output in $WORK/out; shows it only on failure.
check() {
    local what="$1"
    shift
    if "$@" >"$WORK/out" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$what"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n' "$what"
        sed 's/^/      /' "$WORK/out"
    fi
}

# fails_with PATTERN CMD...: CMD must fail and print PATTERN.
fails_with() {
    local pattern="$1"
    shift
    if "$@" >"$WORK/neg" 2>&1; then
        cat "$WORK/neg"
        echo "expected a failure, but it succeeded"
        return 1
    fi
    grep -q -- "$pattern" "$WORK/neg" || { cat "$WORK/neg"; echo "the failure does not say: $pattern"; return 1; }
}

# render NAME [helm args...]: renders the chart into $WORK/NAME.yaml.
render() {
    local name="$1"
    shift
    "$HELM" template jetbridge "$CHART" --namespace jetbridge "$@" >"$WORK/$name.yaml"
}

# The value sets: the defaults, then each fixture.
cases=(default)
for f in tests/fixtures/chart/*.yaml; do
    cases+=("$(basename "$f" .yaml)")
done
[ "${#cases[@]}" -ge 4 ] || die "expected 3 or more value sets in tests/fixtures/chart/"

for c in "${cases[@]}"; do
    values=()
    [ "$c" = default ] || values=(-f "tests/fixtures/chart/$c.yaml")
    check "helm lint --strict ($c)" "$HELM" lint --strict "$CHART" "${values[@]}"
    check "helm template ($c)" render "$c" "${values[@]}"
    check "kubernetes-validate $KUBE_VERSION strict ($c)" "$PY" "$MANIFESTS" validate "$KUBE_VERSION" "$WORK/$c.yaml"
    check "no wildcard in RBAC ($c)" "$PY" "$MANIFESTS" rbac "$WORK/$c.yaml"
    check "renders as expected ($c)" "$PY" "$MANIFESTS" expect "$c" "$WORK/$c.yaml"
done

check "Kubernetes 1.20 (no discovery.k8s.io/v1) is refused" \
    fails_with "jetbridge needs Kubernetes 1.21 or newer: it reads discovery.k8s.io/v1 EndpointSlices" \
    render kube-1.20-refused --kube-version 1.20.0
check "helm template for Kubernetes 1.20 serving discovery.k8s.io/v1" \
    render kube-1.20 --kube-version 1.20.0 --api-versions discovery.k8s.io/v1/EndpointSlice
check "policy/v1beta1 PodDisruptionBudget on 1.20" "$PY" "$MANIFESTS" expect kube-1.20 "$WORK/kube-1.20.yaml"

GATEWAY_API=(--api-versions gateway.networking.k8s.io/v1/GatewayClass)
check "helm template with gatewayClass.create on a cluster serving the Gateway API" \
    render gateway-class --set gatewayClass.create=true,gatewayClass.name=jetbridge-gateways "${GATEWAY_API[@]}"
check "a GatewayClass naming jetbridge.dev/gateway-controller" "$PY" "$MANIFESTS" expect gateway-class "$WORK/gateway-class.yaml"
check "helm template with gatewayClass.create, Gateway API not served" \
    render gateway-class-unserved --set gatewayClass.create=true
check "no GatewayClass without the Gateway API" "$PY" "$MANIFESTS" expect gateway-class-unserved "$WORK/gateway-class-unserved.yaml"
check "helm template with the Gateway API served, defaults" render gateway-api-served "${GATEWAY_API[@]}"
check "no GatewayClass by default" "$PY" "$MANIFESTS" expect gateway-api-served "$WORK/gateway-api-served.yaml"

check "schema rejects an unknown value (--set bogus=1)" \
    fails_with "additional properties 'bogus' not allowed" "$HELM" lint --strict "$CHART" --set bogus=1
check "schema rejects an unknown nested value (--set image.tga=x)" \
    fails_with "additional properties 'tga' not allowed" "$HELM" lint --strict "$CHART" --set image.tga=x
check "schema rejects a value outside its enum (--set service.type=External)" \
    fails_with "value must be one of" "$HELM" lint --strict "$CHART" --set service.type=External
check "an IdP without an authenticate URL is refused" \
    fails_with "authenticate.host (or authenticate.url) is required" \
    "$HELM" template jetbridge "$CHART" --set idp.providerUrl=https://idp.example.com,idp.clientId=x

check "deploy/jetbridge.yaml is a fresh render (else run scripts/render-deploy)" \
    bash -c 'scripts/render-deploy --stdout | diff -u deploy/jetbridge.yaml -'
check "charts/jetbridge/crds/ equals crds/ (else copy crds/policies.jetbridge.dev.yaml)" \
    diff -u crds/policies.jetbridge.dev.yaml "$CHART/crds/policies.jetbridge.dev.yaml"

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
