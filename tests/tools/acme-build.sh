#!/usr/bin/env bash
# Builds the ACME part of the cert-manager tests from the Go module proxy.
#
#   tests/tools/acme-build.sh acmesolver VERSION DIR   cert-manager's HTTP-01 solver
#       (github.com/cert-manager/cert-manager vVERSION, package
#       pkg/issuer/acme/http/solver, with the flags of its acmesolver image:
#       tests/tools/acmesolver/main.go) -> DIR/acmesolver
#
# DIR gets a BUILD file (Go version, module version) once everything is built; a
# DIR with one is left alone. Work folder: $JETBRIDGE_CACHE/build/<part>-VERSION
# (removed on success).
#
# Environment:
#   JETBRIDGE_CACHE        cache root (default: $HOME/.cache/jetbridge)
#   JETBRIDGE_BUILD_NICE   niceness of the compile (default 10: the machine is shared)

set -euo pipefail

[ "$#" -eq 3 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
PART="$1" VERSION="$2" DIR="$3"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "acme-build: bad version '$VERSION'" >&2; exit 2; }
[ -f "$DIR/BUILD" ] && exit 0

CACHE="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}"
BUILD="$CACHE/build/$PART-$VERSION"
HERE="$(cd "$(dirname "$0")" && pwd)"
NICE="${JETBRIDGE_BUILD_NICE:-10}"
command -v go >/dev/null 2>&1 || { echo "acme-build: no go on PATH" >&2; exit 1; }
export GOCACHE="$BUILD/gocache" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" \
    GOTOOLCHAIN=local GOWORK=off
mkdir -p "$BUILD/out" "$BUILD/src"

case "$PART" in
acmesolver)
    MOD=github.com/cert-manager/cert-manager
    cp "$HERE/acmesolver/main.go" "$BUILD/src/main.go"
    cd "$BUILD/src"
    [ -f go.mod ] || go mod init jetbridge.test/acmesolver >/dev/null 2>&1
    go get "$MOD@v$VERSION" >"$BUILD/build.log" 2>&1
    go mod tidy >>"$BUILD/build.log" 2>&1
    nice -n "$NICE" go build -trimpath -o "$BUILD/out/acmesolver" . >>"$BUILD/build.log" 2>&1 \
        || { cat "$BUILD/build.log" >&2; exit 1; }
    ;;
*) echo "acme-build: unknown part '$PART' (acmesolver)" >&2; exit 2 ;;
esac

printf 'go %s\nmodule %s v%s\nbuilt %s\n' "$(go env GOVERSION)" "$MOD" "$VERSION" \
    "$(date -u +%FT%TZ)" >"$BUILD/out/BUILD"
mkdir -p "$(dirname "$DIR")"
rm -rf "$DIR"
mv "$BUILD/out" "$DIR"
rm -rf "$BUILD"
