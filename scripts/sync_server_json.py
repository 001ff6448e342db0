#!/usr/bin/env python3
"""Keep server.json's environment variables in step with `hardal_mcp.config.Settings`.

Every Settings field is one `HARDAL_<FIELD>` variable. This script adds entries for new fields (the
description comes from the Field's description), drops entries for fields that no longer exist, and
rewrites the derived attributes (format, default, isSecret, isRequired for the key) of every entry. A
description already in server.json is kept, so it can be richer than the Field's.
It also copies `hardal_mcp.__version__` into the top-level and package versions.

    python scripts/sync_server_json.py          # rewrite server.json
    python scripts/sync_server_json.py --check  # exit 1 if it would change anything
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
SERVER_JSON = ROOT / "server.json"
REQUIRED = {"api_key"}  # the server answers every tool call with an error until the key is set


def _leaf_types(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {t for arg in typing.get_args(annotation) for t in _leaf_types(arg)}
    return {annotation}


def env_format(field: FieldInfo) -> str:
    leaves = _leaf_types(field.annotation) - {type(None)}
    if leaves == {bool}:
        return "boolean"
    if leaves and leaves <= {int, float}:
        return "number"
    return "string"


def is_secret(field: FieldInfo) -> bool:
    return SecretStr in _leaf_types(field.annotation)


def env_default(field: FieldInfo) -> str | None:
    """The registry wants defaults as strings: booleans as true/false, numbers as decimals."""
    value = field.get_default(call_default_factory=True)
    if value is None or value in ((), [], ""):
        return None
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)  # list settings are comma-separated variables
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value == int(value) else repr(value)
    return str(value)


def expected_variables() -> list[dict[str, Any]]:
    """One entry per Settings field, in field order, with the attributes derived from the field."""
    from hardal_mcp.config import Settings, env_name

    entries = []
    for name, field in Settings.model_fields.items():
        entry: dict[str, Any] = {
            "name": env_name(name),
            "description": field.description or "",
            "isRequired": name in REQUIRED,
            "isSecret": is_secret(field),
            "format": env_format(field),
        }
        default = env_default(field)
        if default is not None:
            entry["default"] = default
        entries.append(entry)
    return entries


def synced(document: dict[str, Any]) -> dict[str, Any]:
    from hardal_mcp import __version__

    document = json.loads(json.dumps(document))
    document["version"] = __version__
    for package in document.get("packages", []):
        package["version"] = __version__
        current = {v["name"]: v for v in package.get("environmentVariables", [])}
        merged = []
        for entry in expected_variables():
            old = current.get(entry["name"], {})
            if old.get("description"):
                entry["description"] = old["description"]
            extra = {k: v for k, v in old.items() if k not in entry and k != "default"}
            merged.append({**entry, **extra})
        package["environmentVariables"] = merged
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether server.json is in sync")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    current = json.loads(SERVER_JSON.read_text(encoding="utf-8"))
    wanted = synced(current)
    if wanted == current:
        print("server.json is in sync with hardal_mcp.config.Settings")
        return 0
    if args.check:
        print("server.json is out of sync; run: python scripts/sync_server_json.py", file=sys.stderr)
        return 1
    SERVER_JSON.write_text(json.dumps(wanted, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("server.json updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
