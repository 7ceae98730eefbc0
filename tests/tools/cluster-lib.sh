# Shell functions shared by the scripts that check a real API server
# (cluster-selftest.sh, chart-rbac-check.sh, journey.sh). Source it after setting:
#   ROOT     the repository root
#   WORK     a scratch directory (check output, kubeconfigs, helm's state)
#   PIDFILE  where the running controller's PID is kept (if a controller is run)
# then call `use_cluster DIR` to load the cluster's env file (KUBECTL, HELM,
# APISERVER_URL, CA_FILE).

PASSED=0
FAILED=0

# use_cluster DIR: the cluster started with `scripts/cluster start DIR`; sets DIR,
# loads its env file, and keeps helm's caches and config in $WORK.
use_cluster() {
    DIR="$(cd "$1" && pwd)"
    [ -f "$DIR/env" ] || { echo "no $DIR/env: start a cluster with scripts/cluster start $DIR" >&2; exit 2; }
    # shellcheck disable=SC1091
    . "$DIR/env"
    export KUBECONFIG KUBECACHEDIR
    export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
}

# jetbridge_bin: the binary under test (JETBRIDGE_BIN, default target/debug/jetbridge).
jetbridge_bin() {
    BIN="${JETBRIDGE_BIN:-$ROOT/target/debug/jetbridge}"
    [ -x "$BIN" ] || { echo "no jetbridge binary at $BIN (cargo build, or set JETBRIDGE_BIN)" >&2; exit 2; }
}

k() { "$KUBECTL" "$@"; }

check() {
    # check NAME FUNCTION...: run it, show its output on failure.
    # In the background, not under `if`: bash ignores set -e inside a function called
    # from a condition, so a failing step in the middle of a check would go unnoticed.
    local name="$1" t0=$SECONDS; shift
    "$@" >"$WORK/out" 2>&1 &
    if wait "$!"; then
        PASSED=$((PASSED + 1))
        printf 'ok    %-62s %3ss\n' "$name" "$((SECONDS - t0))"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      | /' "$WORK/out" | tail -n 40
    fi
}

expect_eq() {
    # expect_eq WHAT EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        echo "$1: expected '$2', got '$3'"
        return 1
    fi
}

free_port() { "$ROOT/scripts/cluster" free-port; }

# sa_kubeconfig NS SA FILE: a kubeconfig holding only the SA's TokenRequest token.
sa_kubeconfig() {
    local token
    token="$(k create token "$2" -n "$1" --duration=1h)"
    rm -f "$3"
    k config --kubeconfig="$3" set-cluster c --server="$APISERVER_URL" \
        --certificate-authority="$CA_FILE" --embed-certs=true >/dev/null
    k config --kubeconfig="$3" set-credentials sa --token="$token" >/dev/null
    k config --kubeconfig="$3" set-context c --cluster=c --user=sa --namespace="$1" >/dev/null
    k config --kubeconfig="$3" use-context c >/dev/null
    # the token names the ServiceAccount, and the API server takes it
    local payload
    payload="$(cut -d. -f2 <<<"$token" | tr '_-' '/+')"
    while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload+="="; done
    grep -q "\"sub\":\"system:serviceaccount:$1:$2\"" <<<"$(base64 -d <<<"$payload")"
    expect_eq "can-i list ingressclasses with the token" yes \
        "$("$KUBECTL" --kubeconfig="$3" auth can-i list ingressclasses.networking.k8s.io)"
}

# wait_ready PID INTERNAL_PORT LOG SECONDS: until /readyz answers 200 (fails if the
# process exits first or SECONDS pass).
wait_ready() {
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$4" ]; do
        kill -0 "$1" 2>/dev/null || { echo "controller exited early"; tail -n 30 "$3"; return 1; }
        if curl -fsS -o /dev/null "http://127.0.0.1:$2/readyz" 2>/dev/null; then
            echo "/readyz 200 after $((SECONDS - t0))s"
            return 0
        fi
        sleep 0.5
    done
    echo "/readyz never answered 200 in $4s"
    tail -n 30 "$3"
    return 1
}

# stop_controller: SIGTERM to the controller this script started, then wait for it
# to be gone (it is not this shell's child: it was started inside a check).
stop_controller() {
    [ -f "$PIDFILE" ] || return 0
    local pid i
    pid="$(cat "$PIDFILE")"
    rm -f "$PIDFILE"
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        { kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; } || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# ------------------------------------------------ pods of the 1.37 tier ---
# (the pod runner, tests/tools/pod_runner.py, runs them as local processes)

# pod_netns NS POD: the pod's network namespace (jb<N>p<first 8 hex digits of its uid>).
pod_netns() {
    local uid
    uid="$(k get pod "$2" -n "$1" -o jsonpath='{.metadata.uid}')"
    uid="${uid//-/}"
    echo "jb${CLUSTER_INDEX}p${uid:0:8}"
}

# pod_pid NS POD [CONTAINER]: the PID of a running container (its containerID).
pod_pid() {
    local id
    if [ -n "${3:-}" ]; then
        id="$(k get pod "$2" -n "$1" -o jsonpath="{.status.containerStatuses[?(@.name==\"$3\")].containerID}")"
    else
        id="$(k get pod "$2" -n "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')"
    fi
    [ -n "$id" ] || { echo "pod $1/$2 has no running container" >&2; return 1; }
    echo "${id#jetbridge-pod-runner://}"
}

# pod_exec NS POD COMMAND...: run COMMAND inside the pod as its container sees the world
# (its network namespace, and its mounts: volumes, /etc/hosts kept from the Services).
pod_exec() {
    local pid
    pid="$(pod_pid "$1" "$2")"
    shift 2
    nsenter -t "$pid" -m -n -u -- "$@"
}

# gateway_api_crds_dir: the Gateway API CRDs (standard channel) of the suite's release,
# from its cached build (tests/tools/gateway-build.sh), else from the Go module itself.
gateway_api_crds_dir() {
    local version="${JETBRIDGE_GATEWAY_VERSION:-1.7.0}" cached dir
    cached="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}/gateway-api-v$version/crd/standard"
    if [ -d "$cached" ]; then echo "$cached"; return 0; fi
    dir="$(GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}" go mod download -json "sigs.k8s.io/gateway-api@v$version" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -d "$dir/config/crd/standard" ] || { echo "no Gateway API CRDs for v$version" >&2; return 1; }
    echo "$dir/config/crd/standard"
}

# install_gateway_api: the Gateway API CRDs in the cluster, Established.
install_gateway_api() {
    local dir
    dir="$(gateway_api_crds_dir)" || return 1
    k apply --server-side -f "$dir" >/dev/null
    k wait --for=condition=Established --timeout=60s crd/gatewayclasses.gateway.networking.k8s.io \
        crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io >/dev/null
}
