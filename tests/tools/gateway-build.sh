#!/usr/bin/env bash
# Builds the official Gateway API conformance suite from the Go module proxy.
#
#   tests/tools/gateway-build.sh VERSION DIR
#
#   VERSION  e.g. 1.6.3: sigs.k8s.io/gateway-api/conformance vVERSION, with
#            sigs.k8s.io/gateway-api pinned to the same release
#   DIR      gets (only when everything is built and checked):
#              conformance.test  `go test -c` of sigs.k8s.io/gateway-api/conformance
#                                (holds TestConformance; its manifests are embedded)
#              echo-basic        the suite's echo backend (HTTP on $HTTP_PORT, default
#                                3000; h2c on $H2C_PORT, 3001; HTTPS on $HTTPS_PORT when
#                                TLS_SERVER_CERT/TLS_SERVER_PRIVKEY are set; gRPC with
#                                GRPC_ECHO_SERVER=1)
#              coredns           CoreDNS at the release the base manifests name
#                                (github.com/coredns/coredns; the infra namespace's
#                                DNS backend, which must be Ready for the suite's setup),
#                                with the plugins that namespace's Corefile uses
#              base-manifests.yaml  the suite's conformance/base/manifests.yaml
#              crd/standard/, crd/experimental/   the module's config/crd/
#              BUILD             Go version, build time, module versions
#
# Work folders: $JETBRIDGE_CACHE/build/gateway-api-VERSION and build/coredns-VERSION
# (module, Go build cache, build.log); removed on success, kept on failure so a retry
# reuses the compiled packages.
#
# Environment:
#   JETBRIDGE_CACHE        cache root (default: $HOME/.cache/jetbridge)
#   JETBRIDGE_GOTOOLCHAIN  GOTOOLCHAIN for the build (default: $GOTOOLCHAIN, else go1.27.3,
#                          which the go command takes from the Go module proxy: from 1.7 the
#                          suite's go.mod says go 1.27)
#   JETBRIDGE_BUILD_NICE   niceness of the compile (default 10: the machine is shared)
#
# How and why: tests/tools/CLUSTER.md ("The Gateway API conformance suite").

set -euo pipefail

[ "$#" -eq 2 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
VERSION="$1" DIR="$2"
[[ "$VERSION" =~ ^1\.[0-9]+\.[0-9]+$ ]] || { echo "gateway-build: bad version '$VERSION' (want 1.MINOR.PATCH)" >&2; exit 2; }

CACHE="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}"
BUILD="$CACHE/build/gateway-api-$VERSION"
LOG="$BUILD/build.log"
MOD=sigs.k8s.io/gateway-api
CONF=sigs.k8s.io/gateway-api/conformance
ECHO_PKG=sigs.k8s.io/gateway-api/conformance/echo-basic

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'gateway-build: %s\n' "$*" >&2; exit 1; }

go_env() {
    export GOCACHE="$BUILD/gocache" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" \
        GOTOOLCHAIN="${JETBRIDGE_GOTOOLCHAIN:-${GOTOOLCHAIN:-go1.27.3}}" GOWORK=off
    command -v go >/dev/null 2>&1 || die "no go on PATH (Go 1.26 or newer is needed; GOTOOLCHAIN=$GOTOOLCHAIN)"
}

# module_dir MODULE@VERSION: download it, print its folder in the module cache.
module_dir() {
    local json dir err
    json="$(go mod download -json "$1" 2>>"$LOG" || true)"
    err="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    [ -z "$err" ] || die "$1: $err"
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
    [ -d "$dir" ] || die "$1 is not served by the Go module proxy (log: $LOG)"
    printf '%s' "$dir"
}

# The throwaway module. The conformance module's go.mod says
# `replace sigs.k8s.io/gateway-api => ../` (its own repository); a replace in a
# dependency is ignored, so the main module pins the API module to the same release.
make_module() {
    rm -rf "$BUILD/mod"
    mkdir -p "$BUILD/mod"
    cd "$BUILD/mod"
    go mod init jetbridge.test/gateway-build >>"$LOG" 2>&1
    API_DIR="$(module_dir "$MOD@v$VERSION")"
    CONF_DIR="$(module_dir "$CONF@v$VERSION")"
    [ -f "$CONF_DIR/conformance_test.go" ] && grep -q 'func TestConformance(' "$CONF_DIR/conformance_test.go" \
        || die "$CONF@v$VERSION has no TestConformance in conformance_test.go"
    go mod edit -replace="$MOD=$MOD@v$VERSION"
    if [ ! -f "$CONF_DIR/echo-basic/echo-basic.go" ]; then
        images_module
    fi
    say "go get -t $CONF@v$VERSION ($MOD pinned to v$VERSION)"
    go get -t "$CONF@v$VERSION" >>"$LOG" 2>&1 \
        || die "go get of the suite failed: $(grep -m1 -iE 'forbidden|not available|requires go|error' "$LOG" || tail -n1 "$LOG") (log: $LOG)"
    if [ -f "$CONF_DIR/echo-basic/echo-basic.go" ]; then
        go get "$ECHO_PKG@v$VERSION" >>"$LOG" 2>&1 \
            || die "go get of echo-basic failed: $(grep -m1 -iE 'forbidden|not available|requires go|error' "$LOG" || tail -n1 "$LOG") (log: $LOG)"
    fi
}

# From 1.7 the echo backend (and the gRPC echo service the suite's GRPCRoute tests
# call) lives in its own module, sigs.k8s.io/gateway-api-conformance-images, which the
# Go module proxy does not serve. Its code is the suite's former
# conformance/echo-basic moved with only its import path changed, so that module is
# made here from the last release that carried it (ECHO_SOURCE_VERSION, from the module
# proxy), with the import path and the gRPC descriptor's go_package rewritten the way
# the move rewrote them, and the throwaway module replaces the one the suite requires
# with it.
ECHO_SOURCE_VERSION=1.6.3
IMAGES_MOD=sigs.k8s.io/gateway-api-conformance-images
images_module() {
    local src want old="$CONF/echo-basic" new="$IMAGES_MOD/echo-basic"
    want="$(sed -n "s|^[[:space:]]*$IMAGES_MOD \(v[^ ]*\).*|\1|p" "$CONF_DIR/go.mod" | head -n1)"
    [ -n "$want" ] || die "$CONF@v$VERSION has no echo-basic/ and does not require $IMAGES_MOD: where is its echo backend?"
    src="$(module_dir "$CONF@v$ECHO_SOURCE_VERSION")/echo-basic"
    [ -f "$src/echo-basic.go" ] || die "$CONF@v$ECHO_SOURCE_VERSION has no echo-basic/echo-basic.go"
    say "$IMAGES_MOD $want (the echo backend, not served by the module proxy): made from $old@v$ECHO_SOURCE_VERSION"
    rm -rf "$BUILD/images"
    mkdir -p "$BUILD/images"
    cp -r "$src" "$BUILD/images/echo-basic"
    chmod -R u+w "$BUILD/images"
    rm -f "$BUILD/images/echo-basic/.go.mod" "$BUILD/images/echo-basic/.go.sum"
    # The descriptor's go_package is length-prefixed: B<len options>Z<len go_package>.
    python3 - "$BUILD/images/echo-basic" "$old" "$new" <<'PY2'
import os, sys
root, old, new = sys.argv[1:4]
go_pkg_old, go_pkg_new = old + "/grpcechoserver", new + "/grpcechoserver"
def prefixed(p):
    return "B%sZ%s%s" % (chr(len(p) + 2), chr(len(p)), p)
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith((".go", ".proto")):
            continue
        path = os.path.join(d, f)
        s = open(path).read()
        s = s.replace(prefixed(go_pkg_old), prefixed(go_pkg_new)).replace(old, new)
        assert old not in s
        open(path, "w").write(s)
PY2
    (cd "$BUILD/images" && go mod init "$IMAGES_MOD" >>"$LOG" 2>&1 && go mod tidy >>"$LOG" 2>&1) \
        || die "could not make the module $IMAGES_MOD (log: $LOG)"
    go mod edit -replace="$IMAGES_MOD=$BUILD/images"
    IMAGES_NOTE="$IMAGES_MOD $want (replaced: made from $old v$ECHO_SOURCE_VERSION, import path rewritten)"
    ECHO_PKG="$IMAGES_MOD/echo-basic"
}

compile() {
    local t0=$SECONDS
    rm -rf "$BUILD/out"
    mkdir -p "$BUILD/out"
    say "go test -c $CONF and go build $ECHO_PKG (10-30 minutes on 2 busy cores; log: $LOG)"
    (cd "$BUILD/mod" && nice -n "${JETBRIDGE_BUILD_NICE:-10}" \
        go build -trimpath -ldflags "-s -w" -o "$BUILD/out/echo-basic" "$ECHO_PKG") \
        >>"$LOG" 2>&1 || die "go build of echo-basic failed (log: $LOG)"
    (cd "$BUILD/mod" && nice -n "${JETBRIDGE_BUILD_NICE:-10}" \
        go test -c -trimpath -ldflags "-s -w" -o "$BUILD/out/conformance.test" "$CONF") \
        >>"$LOG" 2>&1 || die "go test -c of the conformance suite failed (log: $LOG)"
    BUILD_SECONDS=$((SECONDS - t0))
    say "compile took ${BUILD_SECONDS}s"
}

# CoreDNS: its own module (its dependencies differ from the suite's), the release the
# suite's base manifests run (registry.k8s.io/coredns/coredns:vX.Y.Z), built with only the
# plugins their Corefile uses. CoreDNS chooses its plugins at build time (plugin.cfg); a
# main package importing coremain and those plugins is its documented way to build a
# smaller server, and it leaves out the cloud and Kubernetes plugins whose dependencies
# are most of a full build's compile time. The plugins run in plugin.cfg's order.
corefile_plugins() {
    # the first word of each line inside a server block of the Corefile ConfigMap
    awk '/^  Corefile: \|/ {on=1; next} on && /^[^ ]/ {on=0} on' "$CONF_DIR/base/manifests.yaml" |
        awk '/\{[[:space:]]*$/ && !/^[[:space:]]*[a-z_]+[[:space:]]*\{/ {next} {print $1}' |
        grep -E '^[a-z_0-9]+$' | sort -u
}

write_coredns_main() {
    local cfg="$1" name pkg imports="" keep=""
    for name in $(corefile_plugins); do
        pkg="$(sed -n "s/^$name:\(.*\)$/\1/p" "$cfg")"
        [ -n "$pkg" ] || die "the suite's Corefile uses '$name', which CoreDNS's plugin.cfg does not list"
        case "$pkg" in */*) ;; *) pkg="github.com/coredns/coredns/plugin/$pkg" ;; esac
        imports+="	_ \"$pkg\"
"
        keep+="\"$name\": true, "
    done
    [ -n "$keep" ] || die "found no plugin in the suite's Corefile"
    cat > main.go <<GO
// CoreDNS with the plugins the Gateway API conformance suite's Corefile uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
$imports)

func init() {
	keep := map[string]bool{$keep}
	var order []string
	for _, d := range dnsserver.Directives {
		if keep[d] {
			order = append(order, d)
		}
	}
	dnsserver.Directives = order
}

func main() { coremain.Run() }
GO
}

build_coredns() {
    local v cb dir name t0=$SECONDS
    v="$(sed -n 's|^[[:space:]]*image: registry.k8s.io/coredns/coredns:v\([0-9.]*\)$|\1|p' "$CONF_DIR/base/manifests.yaml" | head -n1)"
    [ -n "$v" ] || { say "the base manifests run no CoreDNS: not built"; return 0; }
    cb="$CACHE/build/coredns-$v"
    rm -rf "$cb/mod"
    mkdir -p "$cb/mod" "$cb/gocache"
    say "go build of CoreDNS v$v with the plugins of the suite's Corefile: $(corefile_plugins | tr '\n' ' ')(log: $cb/build.log)"
    (
        export GOCACHE="$cb/gocache"
        cd "$cb/mod"
        go mod init jetbridge.test/coredns-build
        go get "github.com/coredns/coredns@v$v"
        dir="$(go list -m -f '{{.Dir}}' github.com/coredns/coredns)"
        write_coredns_main "$dir/plugin.cfg"
        go mod tidy
        nice -n "${JETBRIDGE_BUILD_NICE:-10}" go build -trimpath -ldflags "-s -w" -o "$BUILD/out/coredns" .
    ) >>"$cb/build.log" 2>&1 || die "go build of CoreDNS v$v failed (log: $cb/build.log)"
    "$BUILD/out/coredns" -version 2>&1 | grep -q "CoreDNS-$v" || die "the built coredns does not say CoreDNS-$v"
    local plugins
    plugins="$("$BUILD/out/coredns" -plugins 2>&1 || true)"
    for name in $(corefile_plugins); do
        grep -qx "[[:space:]]*$name" <<<"$plugins" || die "the built coredns lacks the plugin '$name'"
    done
    cat "$cb/build.log" >>"$LOG"
    COREDNS_BUILD="$cb"
    COREDNS_SECONDS=$((SECONDS - t0))
    say "CoreDNS v$v took ${COREDNS_SECONDS}s"
}

check() {
    # (outputs captured first: grep -q closing the pipe early would fail it under pipefail)
    local listed usage
    listed="$("$BUILD/out/conformance.test" -test.list 'TestConformance$' 2>>"$LOG" || true)"
    grep -qx TestConformance <<<"$listed" || die "the built conformance.test does not list TestConformance"
    usage="$("$BUILD/out/conformance.test" -help 2>&1 || true)"
    grep -q -- '-gateway-class' <<<"$usage" || die "the built conformance.test has no -gateway-class flag"
    # echo-basic answers with the request as JSON
    local port port2 pid out=""
    read -r port port2 < <(python3 -c 'import socket
a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0))
print(a.getsockname()[1], b.getsockname()[1])')
    HTTP_PORT=$port H2C_PORT=$port2 POD_NAME=check NAMESPACE=build "$BUILD/out/echo-basic" >>"$LOG" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        out="$(curl -sf "http://127.0.0.1:$port/check" 2>/dev/null)" && break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    grep -q '"path": *"/check"' <<<"$out" && grep -q '"pod": *"check"' <<<"$out" \
        || die "echo-basic did not answer as expected: '$out'"
}

install_into() {
    rm -rf "$DIR.tmp"
    mkdir -p "$DIR.tmp/crd"
    mv "$BUILD/out/conformance.test" "$BUILD/out/echo-basic" "$DIR.tmp/"
    [ ! -f "$BUILD/out/coredns" ] || mv "$BUILD/out/coredns" "$DIR.tmp/"
    cp "$CONF_DIR/base/manifests.yaml" "$DIR.tmp/base-manifests.yaml"
    chmod u+w "$DIR.tmp/base-manifests.yaml"
    cp -r "$API_DIR/config/crd/standard" "$API_DIR/config/crd/experimental" "$DIR.tmp/crd/"
    chmod -R u+w "$DIR.tmp/crd"
    cp "$LOG" "$DIR.tmp/build.log"
    printf 'built %s with %s in %ss (suite compile %ss, coredns %ss)\n%s %s\n%s %s\n' "$(date -u +%FT%TZ)" \
        "$(cd "$BUILD/mod" && go version)" "$((SECONDS - T0))" "$BUILD_SECONDS" "${COREDNS_SECONDS:-0}" \
        "$CONF" "v$VERSION" "$MOD" "v$VERSION" > "$DIR.tmp/BUILD"
    [ -z "${IMAGES_NOTE:-}" ] || echo "$IMAGES_NOTE" >> "$DIR.tmp/BUILD"
    rm -rf "$DIR"
    mv "$DIR.tmp" "$DIR"
}

main() {
    T0=$SECONDS
    mkdir -p "$BUILD/gocache"
    : > "$LOG"
    go_env
    say "building the Gateway API conformance suite v$VERSION from the Go module proxy in $BUILD"
    make_module
    compile
    build_coredns
    check
    install_into
    # the work folders go only now, when everything is in place
    rm -rf "$BUILD" ${COREDNS_BUILD:+"$COREDNS_BUILD"} || say "could not remove all of the work folders in $CACHE/build"
    rmdir "$CACHE/build" 2>/dev/null || true
    say "Gateway API conformance suite v$VERSION built in $((SECONDS - T0))s: $DIR"
}

main
