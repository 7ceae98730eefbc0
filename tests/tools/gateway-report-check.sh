#!/usr/bin/env bash
# Compares the results of two Gateway API ConformanceReports: the one kept in the repo
# and the one a run of tests/tools/gateway-conformance.sh just produced.
#
#   tests/tools/gateway-report-check.sh KEPT NEW
#
# Compared: the suite version, channel and mode, and per profile the Core and Extended
# results (result, statistics, failed and skipped tests, supported and unsupported
# features). Not compared: the date and the implementation's version (a commit).
# Exits non-zero on a difference, printing it. JETBRIDGE_BLESS=1 copies NEW over KEPT
# instead (after a change that alters the results on purpose).

set -euo pipefail
[ "$#" -eq 2 ] || { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
KEPT="$1" NEW="$2"
[ -f "$NEW" ] || { echo "gateway-report-check: no report at $NEW" >&2; exit 1; }
if [ "${JETBRIDGE_BLESS:-0}" = 1 ]; then
    mkdir -p "$(dirname "$KEPT")"
    cp "$NEW" "$KEPT"
    echo "gateway-report-check: wrote $KEPT"
    exit 0
fi
[ -f "$KEPT" ] || { echo "gateway-report-check: no kept report at $KEPT (JETBRIDGE_BLESS=1 writes it)" >&2; exit 1; }
python3 - "$KEPT" "$NEW" <<'PY'
import difflib, sys, yaml

def results(path):
    rep = yaml.safe_load(open(path)) or {}
    out = {k: rep.get(k) for k in ("gatewayAPIVersion", "gatewayAPIChannel", "mode")}
    profiles = {}
    for p in rep.get("profiles") or []:
        parts = {}
        for part in ("core", "extended"):
            r = p.get(part)
            if not r:
                continue
            parts[part] = {
                "result": r.get("result"),
                "statistics": r.get("statistics"),
                "failedTests": sorted(r.get("failedTests") or []),
                "skippedTests": sorted(r.get("skippedTests") or []),
                "supportedFeatures": sorted(r.get("supportedFeatures") or []),
                "unsupportedFeatures": sorted(r.get("unsupportedFeatures") or []),
            }
        profiles[p.get("name")] = parts
    out["profiles"] = profiles
    return yaml.safe_dump(out, sort_keys=True).splitlines()

kept, new = results(sys.argv[1]), results(sys.argv[2])
if kept != new:
    print("gateway-report-check: the run's results differ from %s:" % sys.argv[1])
    for line in difflib.unified_diff(kept, new, "kept", "this run", lineterm=""):
        print("  " + line)
    print("(JETBRIDGE_BLESS=1 tests/tools/gateway-report-check.sh %s %s keeps this run's)" % (sys.argv[1], sys.argv[2]))
    sys.exit(1)
print("gateway-report-check: results match %s" % sys.argv[1])
PY
