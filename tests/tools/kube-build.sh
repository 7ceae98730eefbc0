#!/usr/bin/env bash
# Builds a current Kubernetes control plane and etcd from the Go module proxy, in one
# `go build` so that the packages the programs share compile once.
#
#   tests/tools/kube-build.sh KUBE_VERSION ETCD_VERSION KUBE_DIR ETCD_DIR
#
#   KUBE_VERSION  e.g. 1.37.2: k8s.io/kubernetes vKUBE_VERSION, every k8s.io staging
#                 module pinned with `replace` to v0.MINOR.PATCH
#   ETCD_VERSION  e.g. 3.7.0: go.etcd.io/etcd/server/v3 (its root package is etcd's main)
#   KUBE_DIR      gets kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy
#   ETCD_DIR      gets etcd
#
# Both folders are written only when every program is built and reports its version.
# Work folder: $JETBRIDGE_CACHE/build/kubernetes-KUBE_VERSION (module, Go build cache,
# build.log); removed on success, kept on failure so a retry reuses the compiled packages.
#
# Environment:
#   JETBRIDGE_CACHE        cache root (default: $HOME/.cache/jetbridge)
#   JETBRIDGE_GOTOOLCHAIN  GOTOOLCHAIN for the build (default: local, the machine's Go;
#                          a release needing a newer Go takes e.g. go1.27.3)
#   JETBRIDGE_BUILD_NICE   niceness of the compile (default 5: the machine is shared)
#
# How and why: tests/tools/CLUSTER.md ("The current tier").

set -euo pipefail

[ "$#" -eq 4 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
KUBE_VERSION="$1" ETCD_VERSION="$2" KUBE_DIR="$3" ETCD_DIR="$4"
[[ "$KUBE_VERSION" =~ ^1\.([0-9]+)\.([0-9]+)$ ]] || { echo "kube-build: bad Kubernetes version '$KUBE_VERSION' (want 1.MINOR.PATCH)" >&2; exit 2; }
KUBE_MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
[[ "$ETCD_VERSION" =~ ^3\.[0-9]+\.[0-9]+$ ]] || { echo "kube-build: bad etcd version '$ETCD_VERSION' (want 3.MINOR.PATCH)" >&2; exit 2; }

CACHE="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}"
BUILD="$CACHE/build/kubernetes-$KUBE_VERSION"
LOG="$BUILD/build.log"
COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
ETCD_PKG=go.etcd.io/etcd/server/v3

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'kube-build: %s\n' "$*" >&2; exit 1; }

go_env() {
    export GOCACHE="$BUILD/gocache" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" \
        GOTOOLCHAIN="${JETBRIDGE_GOTOOLCHAIN:-local}" GOWORK=off
    command -v go >/dev/null 2>&1 || die "no go on PATH (Go 1.26 or newer is needed)"
}

# The throwaway module: requires k8s.io/kubernetes and etcd's server, with every
# k8s.io/<staging> module that k8s.io/kubernetes replaces by a local path pinned to the
# matching published v0 release instead.
make_module() {
    rm -rf "$BUILD/mod"
    mkdir -p "$BUILD/mod"
    cd "$BUILD/mod"
    go mod init jetbridge.test/kube-build >>"$LOG" 2>&1
    local gomod staging m
    gomod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" 2>>"$LOG" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [ -f "$gomod" ] || die "k8s.io/kubernetes@v$KUBE_VERSION is not served by the Go module proxy (log: $LOG)"
    staging="$(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*|\1|p' "$gomod")"
    [ -n "$staging" ] || die "k8s.io/kubernetes@v$KUBE_VERSION: no staging replacements in its go.mod"
    for m in $staging; do
        go mod edit -replace="$m=$m@$STAGING_VERSION"
    done
    say "$(wc -w <<<"$staging") k8s.io staging modules pinned to $STAGING_VERSION"
    local pkgs=() c
    for c in "${COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@v$KUBE_VERSION"); done
    pkgs+=("$ETCD_PKG@v$ETCD_VERSION")
    go get "${pkgs[@]}" >>"$LOG" 2>&1 || die "go get failed (log: $LOG)"
}

# -X flags: without them /version says v0.0.0 and helm refuses the cluster.
version_ldflags() {
    local ld="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$KUBE_MINOR"
        ld+=" -X $p.gitTreeState=archive"
    done
    printf '%s' "$ld"
}

compile() {
    local pkgs=() c t0=$SECONDS
    for c in "${COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    pkgs+=("$ETCD_PKG")
    rm -rf "$BUILD/out"
    mkdir -p "$BUILD/out"
    say "go build of ${COMMANDS[*]} and etcd (30-60 minutes on 2 busy cores; log: $LOG)"
    (cd "$BUILD/mod" && nice -n "${JETBRIDGE_BUILD_NICE:-5}" \
        go build -trimpath -o "$BUILD/out/" -ldflags "$(version_ldflags)" "${pkgs[@]}") \
        >>"$LOG" 2>&1 || die "go build failed (log: $LOG)"
    # go names the binary of .../server/v3 after "server"
    mv "$BUILD/out/server" "$BUILD/out/etcd"
    BUILD_SECONDS=$((SECONDS - t0))
    say "go build took ${BUILD_SECONDS}s"
}

check_versions() {
    local c got
    for c in "${COMMANDS[@]}"; do
        got="$("$BUILD/out/$c" --version 2>&1)"
        [ "$got" = "Kubernetes v$KUBE_VERSION" ] || die "built $c says '$got'"
    done
    got="$("$BUILD/out/etcd" --version 2>&1 | sed -n 1p)"
    [ "$got" = "etcd Version: $ETCD_VERSION" ] || die "built etcd says '$got'"
}

# install_into DIR FILE...: fill a fresh DIR.tmp, then swap it in.
install_into() {
    local dir="$1" f; shift
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    for f in "$@"; do mv "$f" "$dir.tmp/"; done
    cp "$LOG" "$dir.tmp/build.log"
    printf 'built %s with %s in %ss (go build %ss)\n' "$(date -u +%FT%TZ)" "$(go version)" \
        "$((SECONDS - T0))" "$BUILD_SECONDS" > "$dir.tmp/BUILD"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
}

main() {
    T0=$SECONDS
    mkdir -p "$BUILD/gocache"
    : > "$LOG"
    go_env
    say "building Kubernetes v$KUBE_VERSION and etcd v$ETCD_VERSION from the Go module proxy in $BUILD"
    make_module
    compile
    check_versions
    local c bins=()
    for c in "${COMMANDS[@]}"; do bins+=("$BUILD/out/$c"); done
    install_into "$KUBE_DIR" "${bins[@]}"
    install_into "$ETCD_DIR" "$BUILD/out/etcd"
    rm -rf "$BUILD"
    rmdir "$CACHE/build" 2>/dev/null || true
    say "Kubernetes v$KUBE_VERSION and etcd v$ETCD_VERSION built in $((SECONDS - T0))s: $KUBE_DIR, $ETCD_DIR"
}

main
