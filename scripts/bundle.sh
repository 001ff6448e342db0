#!/usr/bin/env bash
# Build the MCP Bundle (dist/hardal-mcp-<version>.mcpb) with the pinned @anthropic-ai/mcpb, then prove it as
# Claude Desktop would use it: unpack it into a temporary folder, turn the manifest into the server's launch
# command with mcpb's own host logic (`getMcpConfigForManifest`: ${__dirname} substituted, user_config as
# environment), point it at the sandbox served on loopback, and list tools and call summarize_sessions through
# the MCP Inspector CLI. Any error fails the script; it prints the bundle's size.
#
#   scripts/bundle.sh              check uv.lock, validate, pack, unpack, start, list, call (CI)
#   scripts/bundle.sh --pack-only  validate and pack (`make bundle`)
# Needs npm (as scripts/inspector.sh) and uv (installed into the active Python environment when missing);
# the first start downloads the locked dependencies from PyPI into the unpacked bundle, as a host's does.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/node-tools.sh
. "$ROOT/scripts/node-tools.sh"
PY="${PYTHON:-python3}"
MCPB_VERSION="2.1.2"
UV_VERSION="0.13.9"  # the uv that wrote uv.lock; used only when none is on PATH

started=$SECONDS
ensure_node
MCPB_DIR="$CONFORMANCE_DIR/.node/mcpb"  # git-ignored, and apart from the Node package's own prefix
MCPB_PKG="$MCPB_DIR/node_modules/@anthropic-ai/mcpb"
if [ "$(node -p 'require(process.argv[1]).version' "$MCPB_PKG/package.json" 2>/dev/null)" != "$MCPB_VERSION" ]; then
    echo "bundle: installing @anthropic-ai/mcpb@$MCPB_VERSION" >&2
    mkdir -p "$MCPB_DIR"
    [ -f "$MCPB_DIR/package.json" ] || echo '{"private": true}' > "$MCPB_DIR/package.json"
    npm install --prefix "$MCPB_DIR" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/mcpb@$MCPB_VERSION" >&2
fi
mcpb() { node "$MCPB_PKG/dist/cli/cli.js" "$@"; }

VERSION="$("$PY" -c 'import json; print(json.load(open("manifest.json", encoding="utf-8"))["version"])')"
BUNDLE="$ROOT/dist/hardal-mcp-$VERSION.mcpb"
mcpb validate manifest.json
mkdir -p dist
rm -f "$BUNDLE"
mcpb pack . "$BUNDLE" >/dev/null
size="$(stat -c %s "$BUNDLE")"
echo "bundle: packed $BUNDLE, $size bytes ($((size / 1024)) KiB)"
[ "${1:-}" = "--pack-only" ] && exit 0

command -v uv >/dev/null || "$PY" -m pip install --quiet "uv==$UV_VERSION"
# uv.lock matches pyproject.toml: the bundle's `uv run` installs exactly the locked versions.
uv lock --check || { echo "bundle: uv.lock is out of step with pyproject.toml: run \`uv lock\` and commit uv.lock" >&2; exit 1; }

OUT="$CONFORMANCE_DIR/results/bundle"
rm -rf "$OUT" && mkdir -p "$OUT/home"
UNPACKED="$(mktemp -d)"
SANDBOX_PID=""
cleanup() {
    if [ -n "$SANDBOX_PID" ]; then
        kill "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
    fi
    rm -rf "$UNPACKED"
}
trap cleanup EXIT
mcpb unpack "$BUNDLE" "$UNPACKED" >/dev/null

# The sandbox as the upstream Hardal API, on a free loopback port.
hardal_command
port="$(free_port)"
"${HARDAL_CMD[@]}" sandbox --host 127.0.0.1 --port "$port" >"$OUT/sandbox.log" 2>&1 &
SANDBOX_PID=$!
for _ in $(seq 1 200); do
    kill -0 "$SANDBOX_PID" 2>/dev/null || { echo "bundle: the sandbox exited; its log:" >&2; cat "$OUT/sandbox.log" >&2; exit 1; }
    "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" \
        2>/dev/null && break
    sleep 0.1
done

# The launch command a host derives from the unpacked manifest and the user's settings (the demo key and site;
# "Keep the day store" left at its default), as an Inspector session config. The Inspector passes a server
# only a minimal environment, where a host's child inherits the user's: so the machine's TLS, proxy and uv
# settings (a private CA, the uv cache) are added to the manifest's variables, never in place of them.
export UV_CACHE_DIR="${UV_CACHE_DIR:-$(uv cache dir)}"
"$PY" -c 'import json; from hardal_mcp.sandbox import DEMO_API_KEY as k, DEMO_WEBSITE_ID as w
print(json.dumps({"api_key": k, "website_id": w}))' >"$OUT/user-config.json"
USER_CONFIG="$OUT/user-config.json" BASE_URL="http://127.0.0.1:$port" node --input-type=module - \
    "$MCPB_PKG/dist/index.js" "$UNPACKED" >"$OUT/host-config.json" <<'JSEOF'
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [mcpbIndex, extensionPath] = process.argv.slice(2);
const { getMcpConfigForManifest } = await import(pathToFileURL(mcpbIndex).href);
const manifest = JSON.parse(readFileSync(`${extensionPath}/manifest.json`, "utf-8"));
const userConfig = { ...JSON.parse(readFileSync(process.env.USER_CONFIG, "utf-8")), base_url: process.env.BASE_URL };
const config = await getMcpConfigForManifest({ manifest, extensionPath, systemDirs: {}, userConfig, pathSeparator: "/" });
if (!config) throw new Error("mcpb produced no launch command (required user_config missing?)");
if (JSON.stringify(config).includes("${")) throw new Error(`a placeholder was left unsubstituted: ${JSON.stringify(config.args)}`);
const machine = Object.entries(process.env).filter(([name]) => /^(SSL_CERT_(FILE|DIR)|UV_\w+|(HTTPS?|ALL|NO)_PROXY)$/i.test(name));
const { command, args, env } = config;
console.log(JSON.stringify({ mcpServers: { hardal: { command, args, env: { ...Object.fromEntries(machine), ...env } } } }, null, 2));
JSEOF
echo "bundle: host launch command: $("$PY" -c 'import json, sys; c = json.load(open(sys.argv[1]))["mcpServers"]["hardal"]
print(" ".join([c["command"], *c["args"]]), "with", ", ".join(sorted(n for n in c["env"] if n.startswith("HARDAL_"))))' \
    "$OUT/host-config.json")"

# inspector NAME ARGS...: the Inspector CLI on the host's config; output in $OUT/NAME.{json,err}.
inspector() {
    local name="$1" rc=0
    shift
    HOME="$OUT/home" timeout 600 node "$INSPECTOR" --cli \
        --config "$OUT/host-config.json" --server hardal "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bundle: inspector $name: exit code $rc" >&2
        cat "$OUT/$name.json" "$OUT/$name.err" >&2
        return 1
    fi
}

inspector tools-list --method tools/list --strict  # the first start: uv builds the bundle's environment
"$PY" - "$OUT/tools-list.json" "$UNPACKED/manifest.json" <<'PYEOF'
import json, sys
served = [tool["name"] for tool in json.load(open(sys.argv[1], encoding="utf-8"))["tools"]]
declared = [tool["name"] for tool in json.load(open(sys.argv[2], encoding="utf-8"))["tools"]]
assert served == declared, f"the bundled server lists {served}, its manifest declares {declared}"
print(f"bundle: tools/list OK, {len(served)} tools, as the manifest declares")
PYEOF
inspector summarize --method tools/call --tool-name summarize_sessions --tool-arg timeframe=yesterday top=3
"$PY" - "$OUT/summarize.json" <<'PYEOF'
import json, sys
answer = json.load(open(sys.argv[1], encoding="utf-8"))
assert answer.get("isError") is False, f"tool error: {answer.get('content')}"
sessions = answer["structuredContent"]["totals"]["sessions"]
assert sessions > 0, "the digest counted no sessions: did the server reach the sandbox?"
print(f"bundle: summarize_sessions OK, {sessions} sessions yesterday, read from the sandbox")
PYEOF

# "Keep the day store" on (HARDAL_STORE=true) means the store in the user's cache folder, not a file named "true".
store="$(find "$OUT/home" -name store.sqlite3 -print -quit)"
[ -n "$store" ] && [ ! -e "$UNPACKED/true" ] || { echo "bundle: no day store under the host's HOME" >&2; exit 1; }
echo "bundle: day store kept at ${store#"$OUT/"}"

echo "bundle: OK in $((SECONDS - started)) s; $(basename "$BUNDLE") is $size bytes ($((size / 1024)) KiB)"
