#!/usr/bin/env bash
# Run the official MCP conformance suite (server mode) against hardal-mcp, once per protocol era:
#
#   2025-11-25  @modelcontextprotocol/conformance 0.1.16 (the `latest` release), default active suite
#   2026-07-28  @modelcontextprotocol/conformance 0.2.0-alpha.12 --requirements 2026-07-28 (frozen set)
#
# Each run is checked against conformance/expected-failures-<era>.yml: the suite itself exits non-zero on a
# failure that is not in the baseline AND on a baselined entry that now passes. The server is
# `hardal-mcp --transport http --demo` on a free loopback port, started here and stopped on exit.
# Results (checks.json per scenario, the suite's full output) go to conformance/results/<era>/ (git-ignored).
#
#   scripts/conformance.sh            # both eras
#   scripts/conformance.sh 2026-07-28 # one era
# Needs: npm (any Node; Node 24 is fetched from the npm registry when the one on PATH is older than 22.19)
# and a Python that can run hardal-mcp (the `hardal-mcp` script on PATH, or PYTHON=... / SERVER_COMMAND=...).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/node-tools.sh
. "$ROOT/scripts/node-tools.sh"

ERAS=("$@")
[ ${#ERAS[@]} -gt 0 ] || ERAS=(2025-11-25 2026-07-28)

started=$SECONDS
ensure_node
RESULTS="$CONFORMANCE_DIR/results"
mkdir -p "$RESULTS"
trap stop_http_server EXIT
start_http_server "$RESULTS/server.log"
echo "conformance: hardal-mcp --demo at $SERVER_URL, Node $(node --version)"

status=0
for era in "${ERAS[@]}"; do
    case "$era" in
        2025-11-25) suite=("$CONFORMANCE_2025" server --url "$SERVER_URL") ;;
        2026-07-28) suite=("$CONFORMANCE_2026" server --url "$SERVER_URL" --requirements 2026-07-28) ;;
        *) echo "conformance: unknown era $era (2025-11-25 or 2026-07-28)" >&2; exit 2 ;;
    esac
    baseline="$CONFORMANCE_DIR/expected-failures-$era.yml"
    out="$RESULTS/$era"
    rm -rf "$out" && mkdir -p "$out"
    rc=0
    # The suite's own output goes to a file: its "Total: N passed, N failed" line counts fixture failures
    # that the baseline expects, and is not this run's verdict.
    timeout 600 node "${suite[@]}" --expected-failures "$baseline" -o "$out" >"$out/output.log" 2>&1 || rc=$?
    "${PYTHON:-python3}" "$ROOT/scripts/conformance_report.py" "$era" "$out" "$rc" || rc=$?
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "---- conformance $era: the suite's summary (full output: $out/output.log) ----"
        sed -n '/=== SUMMARY ===/,$p' "$out/output.log" | sed 's/\x1b\[[0-9;]*m//g'
        echo "---- end of conformance $era summary ----"
    fi
done

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "conformance: hardal-mcp died during the run; its log:" >&2
    cat "$RESULTS/server.log" >&2
    status=1
fi
stop_http_server
echo "conformance: $([ $status -eq 0 ] && echo OK || echo FAILED) in $((SECONDS - started)) s"
exit $status
