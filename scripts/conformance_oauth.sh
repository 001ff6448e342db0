#!/usr/bin/env bash
# The official conformance suite's authorization-server scenarios (@modelcontextprotocol/conformance
# 0.2.0-alpha.12 `authorization`: authorization-server-metadata-endpoint, authorization-code-grant) against
# `hardal-mcp --demo --transport http --auth oauth` on a free loopback port. The suite needs a registered
# client (made here through /register) and a person at the consent page: scripts/conformance_consent.py
# posts the form with the sandbox's demo key, as a browser would. The MCP spec's own requirement sets hold no
# authorization-server scenarios; these are the suite's, for people deploying one.
#
#   scripts/conformance_oauth.sh
# Needs what scripts/conformance.sh needs (npm; Node 24 is fetched when the one on PATH is older than 22.19).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/node-tools.sh
. "$ROOT/scripts/node-tools.sh"

ensure_node
OUT="$CONFORMANCE_DIR/results/oauth"
rm -rf "$OUT" && mkdir -p "$OUT"
STATE="$(mktemp -d)"
port="$(free_port)"
callback="$(free_port)"
ISSUER="http://127.0.0.1:$port"
hardal_command
HARDAL_STORE="$STATE/" HARDAL_OAUTH_SECRET="conformance-only-secret-$(free_port)-0123456789abcdef" \
    "${HARDAL_CMD[@]}" --transport http --host 127.0.0.1 --port "$port" --demo --auth oauth --log-level info \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'stop_http_server; rm -rf "$STATE"' EXIT
for _ in $(seq 1 200); do
    "${PYTHON:-python3}" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' \
        "$port" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
client_id="$("${PYTHON:-python3}" - "$ISSUER" "$callback" <<'PY'
import sys, httpx2
issuer, port = sys.argv[1], sys.argv[2]
answer = httpx2.post(f"{issuer}/register", json={"redirect_uris": [f"http://127.0.0.1:{port}/callback"],
                     "token_endpoint_auth_method": "none", "client_name": "MCP conformance suite"})
answer.raise_for_status()
print(answer.json()["client_id"])
PY
)"
echo "conformance (authorization server): hardal-mcp --auth oauth at $ISSUER, Node $(node --version)"
rc=0
timeout 300 node "$CONFORMANCE_2026" authorization --url "$ISSUER" --client-id "$client_id" \
    --resource "$ISSUER/mcp" -p "$callback" -o "$OUT" >"$OUT/output.log" 2>&1 &
suite=$!
"${PYTHON:-python3}" "$ROOT/scripts/conformance_consent.py" "$OUT/output.log" "$ISSUER" || rc=$?
wait "$suite" || rc=$?
sed -n '/=== SUMMARY ===/,$p' "$OUT/output.log" | sed 's/\x1b\[[0-9;]*m//g'
exit "$rc"
