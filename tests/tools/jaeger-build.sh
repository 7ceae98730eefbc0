#!/usr/bin/env bash
# Builds Jaeger (the all-in-one `jaeger` program: OTLP receiver, in-memory store and
# query API) from the Go module proxy, for the traces tests.
#
#   tests/tools/jaeger-build.sh VERSION DIR
#
#   VERSION  e.g. 1.75.0: github.com/jaegertracing/jaeger vVERSION, program cmd/jaeger
#   DIR      gets `jaeger` and BUILD (Go version, build time), only when the build
#            succeeded; a DIR that has both is left alone
#
# Work folder: $JETBRIDGE_CACHE/build/jaeger-VERSION (module, Go build cache, build.log);
# removed on success, kept on failure so a retry reuses the compiled packages.
#
# Environment:
#   JETBRIDGE_CACHE        cache root (default: $HOME/.cache/jetbridge)
#   JETBRIDGE_GOTOOLCHAIN  GOTOOLCHAIN for the build (default: auto, as the module asks)
#   JETBRIDGE_BUILD_NICE   niceness of the compile (default 10: the machine is shared)

set -euo pipefail

[ "$#" -eq 2 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
VERSION="$1" DIR="$2"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "jaeger-build: bad version '$VERSION'" >&2; exit 2; }
[ -x "$DIR/jaeger" ] && [ -f "$DIR/BUILD" ] && exit 0

CACHE="${JETBRIDGE_CACHE:-$HOME/.cache/jetbridge}"
BUILD="$CACHE/build/jaeger-$VERSION"
LOG="$BUILD/build.log"
command -v go >/dev/null 2>&1 || { echo "jaeger-build: no go on PATH" >&2; exit 1; }

mkdir -p "$BUILD"
cd "$BUILD"
export GOCACHE="$BUILD/gocache" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOWORK=off \
    GOTOOLCHAIN="${JETBRIDGE_GOTOOLCHAIN:-auto}"
printf '==> go build github.com/jaegertracing/jaeger/cmd/jaeger@v%s (log: %s)\n' "$VERSION" "$LOG" >&2
{
    [ -f go.mod ] || go mod init jetbridge.test/jaeger-build
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$VERSION"
    nice -n "${JETBRIDGE_BUILD_NICE:-10}" go build -trimpath -o "$BUILD/jaeger" \
        github.com/jaegertracing/jaeger/cmd/jaeger
} >>"$LOG" 2>&1 || { echo "jaeger-build: failed, see $LOG" >&2; exit 1; }

mkdir -p "$DIR"
mv "$BUILD/jaeger" "$DIR/jaeger"
printf 'jaeger v%s\n%s\nbuilt %s\n' "$VERSION" "$(go version)" "$(date -u +%FT%TZ)" > "$DIR/BUILD"
cd /
rm -rf "$BUILD"
