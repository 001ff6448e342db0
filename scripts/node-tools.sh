# Sourced by scripts/conformance.sh and scripts/inspector.sh (not run directly).
# Puts Node >= 22.19 first on PATH and installs the pinned Node tools from conformance/package-lock.json.
#
# The MCP conformance suite and Inspector 2.x need Node >= 22.19; CI machines have Node 20 only. A newer
# Node comes from the npm registry itself (the `node-linux-<arch>` package ships the official binary), so
# nothing but the registry is reached. Everything lands under conformance/ (git-ignored):
#   conformance/.node/         Node NODE_VERSION
#   conformance/node_modules/  @modelcontextprotocol/conformance (0.1.16 and 0.2.0-alpha.12), inspector 2.12.0
# shellcheck shell=bash

# The checks run the demo exactly as shipped: a HARDAL_* variable of the caller's (a token that turns on HTTP
# auth, a low tool timeout, ...) must not change what is tested.
while read -r _var; do unset "$_var"; done < <(compgen -e | grep '^HARDAL_' || true)

NODE_VERSION="${NODE_VERSION:-24.21.0}"
NODE_MIN="22.19.0"
CONFORMANCE_DIR="$ROOT/conformance"

_node_ok() {  # is `node` on PATH at least NODE_MIN?
    local v
    v="$(node --version 2>/dev/null)" || return 1
    v="${v#v}"
    [ "$(printf '%s\n%s\n' "$NODE_MIN" "$v" | sort -V | head -n1)" = "$NODE_MIN" ]
}

ensure_node() {
    if ! _node_ok; then
        local arch pkg bin
        case "$(uname -m)" in
            x86_64 | amd64) arch=x64 ;;
            aarch64 | arm64) arch=arm64 ;;
            *) echo "node-tools: no node-linux package for $(uname -m)" >&2; return 1 ;;
        esac
        pkg="node-linux-$arch"
        bin="$CONFORMANCE_DIR/.node/node_modules/$pkg/bin"
        if [ ! -x "$bin/node" ] || [ "$("$bin/node" --version)" != "v$NODE_VERSION" ]; then
            command -v npm >/dev/null || { echo "node-tools: npm is needed to fetch Node $NODE_VERSION" >&2; return 1; }
            echo "node-tools: installing Node $NODE_VERSION ($pkg) from the npm registry" >&2
            mkdir -p "$CONFORMANCE_DIR/.node"
            [ -f "$CONFORMANCE_DIR/.node/package.json" ] || echo '{"private": true}' > "$CONFORMANCE_DIR/.node/package.json"
            npm install --prefix "$CONFORMANCE_DIR/.node" --no-save --no-package-lock --no-audit --no-fund \
                --loglevel=error "$pkg@$NODE_VERSION" >&2
        fi
        export PATH="$bin:$PATH"
        _node_ok || { echo "node-tools: Node >= $NODE_MIN still not on PATH" >&2; return 1; }
    fi
    # npm is a Node script (`#!/usr/bin/env node`), so with the new node first on PATH it runs under it.
    local stamp="$CONFORMANCE_DIR/node_modules/.installed-from-lock" want
    want="$(node --version) $(sha256sum "$CONFORMANCE_DIR/package-lock.json" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "node-tools: npm ci in conformance/ (Node $(node --version))" >&2
        (cd "$CONFORMANCE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
        echo "$want" > "$stamp"
    fi
    CONFORMANCE_2025="$CONFORMANCE_DIR/node_modules/conformance-2025/dist/index.js"
    CONFORMANCE_2026="$CONFORMANCE_DIR/node_modules/conformance-2026/dist/index.js"
    INSPECTOR="$CONFORMANCE_DIR/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
    export CONFORMANCE_2025 CONFORMANCE_2026 INSPECTOR
}

# The server command: the installed console script when there is one (CI installs the project into .venv),
# else the package from this checkout. SERVER_COMMAND overrides, e.g. SERVER_COMMAND="/path/to/venv/bin/hardal-mcp".
hardal_command() {
    if [ -n "${SERVER_COMMAND:-}" ]; then
        # shellcheck disable=SC2206
        HARDAL_CMD=($SERVER_COMMAND)
    elif command -v hardal-mcp >/dev/null; then
        HARDAL_CMD=("$(command -v hardal-mcp)")
    else
        HARDAL_CMD=("${PYTHON:-python3}" -m hardal_mcp)
    fi
}

free_port() {
    "${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_http_server LOGFILE: runs the demo server over streamable HTTP on a free loopback port; sets
# SERVER_PID and SERVER_URL and waits until the port accepts connections (or the server dies).
start_http_server() {
    local log="$1" port i
    port="$(free_port)"
    hardal_command
    "${HARDAL_CMD[@]}" --transport http --host 127.0.0.1 --port "$port" --demo --log-level info >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_URL="http://127.0.0.1:$port/mcp"
    for i in $(seq 1 200); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "hardal-mcp exited before listening; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        if "${PYTHON:-python3}" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "hardal-mcp did not listen on 127.0.0.1:$port within 20 s; its log:" >&2
    cat "$log" >&2
    return 1
}

stop_http_server() {
    if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
