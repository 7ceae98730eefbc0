#!/usr/bin/env bash
# B1, B1p and B7 only: bench/run with CASES="B1 B7" (see bench/run for the settings).
#
#   bench/b1.sh [--quick]
set -euo pipefail
CASES="${CASES:-B1 B7}" exec "$(dirname "${BASH_SOURCE[0]}")/run" "$@"
