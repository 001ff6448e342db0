.PHONY: check lint types test

check: lint types test

lint:
	ruff check .

types:
	mypy hardal_mcp

test:
	python -m pytest
