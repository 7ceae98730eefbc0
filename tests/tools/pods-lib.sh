# Shell functions for the scripts whose workloads run as pods on a 1.37 cluster's node
# network (journey.sh, rollout.sh, chart-rbac-check.sh). Source it after cluster-lib.sh
# and `use_cluster DIR`.
#
# The cluster (scripts/cluster start on 1.37) gives in DIR/env: CLUSTER_INDEX, NODE_NETNS,
# HOST_IP (the host's address on the node network), POD_CIDR, SERVICE_CIDR, NODE_NAMES,
# POD_RUNNER_PID, NODE_DIR. A pod runs in the network namespace jb<index>p<uid8>; its
# container logs are in NODE_DIR/pods/<ns>_<pod>_<uid8>/<container>.log. The host routes
# pod IPs and ClusterIPs into the node network (kube-proxy DNATs the latter).

# require_pod_network: fails unless DIR is a cluster whose pods run.
require_pod_network() {
    case "${KUBE_VERSION:-}" in
        1.20*|"") echo "$DIR is a $KUBE_VERSION cluster: pods do not run there (start one with JETBRIDGE_KUBE_VERSION=1.37.2)" >&2; exit 2 ;;
    esac
    local v
    for v in CLUSTER_INDEX NODE_NETNS HOST_IP POD_CIDR SERVICE_CIDR NODE_NAMES POD_RUNNER_PID NODE_DIR; do
        [ -n "${!v:-}" ] || { echo "$DIR/env has no $v: this cluster has no node network" >&2; exit 2; }
    done
    kill -0 "$POD_RUNNER_PID" 2>/dev/null || { echo "the pod runner ($POD_RUNNER_PID) is not running" >&2; exit 2; }
}

# pod_uid8 NS POD: the first 8 characters of the pod's uid.
pod_uid8() { k get pod "$2" -n "$1" -o jsonpath='{.metadata.uid}' | cut -c1-8; }

# pod_netns NS POD: the pod's network namespace.
pod_netns() { echo "jb${CLUSTER_INDEX}p$(pod_uid8 "$1" "$2")"; }

# pod_dir NS POD: the pod runner's folder of the pod.
pod_dir() { echo "$NODE_DIR/pods/${1}_${2}_$(pod_uid8 "$1" "$2")"; }

# pod_log NS POD CONTAINER: the container's log file.
pod_log() { echo "$(pod_dir "$1" "$2")/$3.log"; }

# in_pod NS POD COMMAND...: runs COMMAND in the pod's network namespace.
in_pod() {
    local ns="$1" pod="$2" netns
    shift 2
    netns="$(pod_netns "$ns" "$pod")"
    ip netns exec "$netns" "$@"
}

# ready_pods NS SELECTOR: names of the pods that are Ready and not being deleted, sorted.
ready_pods() {
    k get pods -n "$1" -l "$2" -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{$n := .metadata.name}}{{range .status.conditions}}{{if and (eq .type "Ready") (eq .status "True")}}{{$n}}{{"\n"}}{{end}}{{end}}{{end}}{{end}}' | sort
}

# all_pods NS SELECTOR: names of every pod of SELECTOR (terminating ones too), sorted.
all_pods() { k get pods -n "$1" -l "$2" -o go-template='{{range .items}}{{.metadata.name}}{{"\n"}}{{end}}' | sort; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND (silent) every 0.5 s until it succeeds.
wait_for() {
    local limit="$1" what="$2" t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge "$limit" ]; then
            echo "timed out after ${limit}s waiting for: $what"
            return 1
        fi
        sleep 0.5
    done
    echo "$what: after $((SECONDS - t0))s"
}

# count_is N COMMAND...: COMMAND prints exactly N non-empty lines.
count_is() { [ "$("${@:2}" | grep -c .)" -eq "$1" ]; }

# cluster_ip NS SERVICE
cluster_ip() { k get service "$2" -n "$1" -o jsonpath='{.spec.clusterIP}'; }

# in_cidr IP CIDR: IP lies in the IPv4 CIDR.
in_cidr() { python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$2"; }

# slice_endpoints NS SERVICE: "ADDRESS ready=BOOL" per endpoint of the Service's EndpointSlices.
slice_endpoints() {
    k get endpointslices -n "$1" -l "kubernetes.io/service-name=$2" \
        -o go-template='{{range .items}}{{range .endpoints}}{{index .addresses 0}} ready={{.conditions.ready}}{{"\n"}}{{end}}{{end}}' | sort
}

# pod_hosts NS: the hosts file the pod runner keeps from the Services for the pods of NS
# (bind-mounted over their /etc/hosts; it stands in for cluster DNS).
pod_hosts() { echo "$NODE_DIR/hosts/$1"; }

# pod_hosts_resolve NS NAME: the address the pods of NS resolve NAME to.
pod_hosts_resolve() {
    awk -v n="$2" '$1 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == n) { print $1; exit } }' "$(pod_hosts "$1")"
}

# pod_curl NS POD CURL_ARGS...: curl run as in the pod: in its network namespace, with
# the namespace's hosts file as /etc/hosts (names resolve through getaddrinfo as there).
pod_curl() {
    local ns="$1" pod="$2" netns hosts
    shift 2
    netns="$(pod_netns "$ns" "$pod")"
    hosts="$(pod_hosts "$ns")"
    [ -f "$hosts" ] || { echo "no hosts file $hosts" >&2; return 1; }
    ip netns exec "$netns" unshare --mount sh -c 'mount --bind "$1" /etc/hosts && shift && exec curl -fsS --max-time 10 "$@"' \
        sh "$hosts" "$@"
}
