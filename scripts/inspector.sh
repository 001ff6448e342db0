#!/usr/bin/env bash
# Drive hardal-mcp with the official MCP Inspector CLI (@modelcontextprotocol/inspector 2.12.0, `--cli`), as a
# host would: tools/list (with --strict, the Inspector's tool-schema portability check) and tools/call, over
# stdio (`hardal-mcp --demo`) and over streamable HTTP (`hardal-mcp --transport http --demo`, started here on
# a free loopback port and stopped on exit). Every answer is checked; any error fails the script.
#
#   scripts/inspector.sh
# Needs what scripts/conformance.sh needs (npm; Node 24 is fetched when the one on PATH is older than 22.19).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/node-tools.sh
. "$ROOT/scripts/node-tools.sh"
PY="${PYTHON:-python3}"

started=$SECONDS
ensure_node
hardal_command
OUT="$CONFORMANCE_DIR/results/inspector"
rm -rf "$OUT" && mkdir -p "$OUT/home"
trap stop_http_server EXIT

# inspector NAME ARGS...: run the Inspector CLI, keep its stdout/stderr in $OUT/NAME.{json,err}, fail loudly.
inspector() {
    local name="$1" rc=0
    shift
    # Its own state (catalog, storage) goes to a scratch HOME, not the user's.
    HOME="$OUT/home" MCP_CATALOG_PATH="$OUT/home/catalog.json" \
        timeout 120 node "$INSPECTOR" --cli "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "inspector $name: exit code $rc" >&2
        cat "$OUT/$name.json" "$OUT/$name.err" >&2
        return 1
    fi
}

# check_list NAME: the tools/list answer holds the three core tools, each with an object input schema.
check_list() {
    "$PY" - "$OUT/$1.json" "$OUT/$1.err" "$1" <<'PYEOF'
import json, re, sys
answer = json.load(open(sys.argv[1], encoding="utf-8"))
tools = {tool["name"]: tool for tool in answer["tools"]}
core = {"list_sessions", "summarize_sessions", "get_session_activity"}
assert core <= tools.keys(), f"missing tools: {sorted(core - tools.keys())}"
for name, tool in tools.items():
    assert tool.get("inputSchema", {}).get("type") == "object", f"{name}: input schema is not an object"
    assert tool.get("description"), f"{name}: no description"
warnings = len(re.findall(r"^Warning: tool", open(sys.argv[2], encoding="utf-8").read(), re.MULTILINE))
print(f"inspector {sys.argv[3]}: tools/list OK, {len(tools)} tools ({', '.join(tools)}); "
      f"--strict portability: 0 errors, {warnings} warnings")
PYEOF
}

# check_call NAME MIN_ROWS: a tools/call answer that is not an error and carries text and structured content.
check_call() {
    "$PY" - "$OUT/$1.json" "$1" <<'PYEOF'
import json, sys
answer = json.load(open(sys.argv[1], encoding="utf-8"))
assert answer.get("isError") is False, f"tool error: {answer.get('content')}"
texts = [block["text"] for block in answer.get("content", []) if block.get("type") == "text"]
assert texts and texts[0].strip(), "no text content"
structured = answer.get("structuredContent")
assert isinstance(structured, dict) and structured, "no structured content"
first = texts[0].splitlines()[0]
print(f"inspector {sys.argv[2]}: tools/call OK: {first[:100]}")
PYEOF
}

# ---- stdio: the Inspector spawns the server itself
inspector stdio-tools-list "${HARDAL_CMD[@]}" --demo --method tools/list --strict
check_list stdio-tools-list
inspector stdio-tools-call "${HARDAL_CMD[@]}" --demo --method tools/call --tool-name list_sessions \
    --tool-arg limit=3 timeframe=yesterday
check_call stdio-tools-call
"$PY" -c '
import json, sys
rows = json.load(open(sys.argv[1]))["structuredContent"]["sessions"]
assert len(rows) == 3, f"asked for 3 sessions, got {len(rows)}"
' "$OUT/stdio-tools-call.json"

# ---- streamable HTTP at /mcp
start_http_server "$OUT/server.log"
inspector http-tools-list "$SERVER_URL" --method tools/list --strict
check_list http-tools-list
inspector http-tools-call "$SERVER_URL" --method tools/call --tool-name summarize_sessions \
    --tool-arg timeframe=yesterday top=3
check_call http-tools-call
"$PY" -c '
import json, sys
digest = json.load(open(sys.argv[1]))["structuredContent"]
assert digest["window"]["timeframe"] == "yesterday", digest["window"]
assert digest["totals"]["sessions"] > 0, "the demo digest counted no sessions"
' "$OUT/http-tools-call.json"
stop_http_server

echo "inspector: OK in $((SECONDS - started)) s"
