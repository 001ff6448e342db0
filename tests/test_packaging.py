"""Packaging and ecosystem fit: server.json for the MCP registry, one version everywhere, a wheel that runs on
its own, the tools/list snapshot, and the tool schemas hosts can digest.

Refresh the tools/list snapshot after a deliberate change with
    UPDATE_SNAPSHOTS=1 python -m pytest tests/test_packaging.py
and server.json's environment variables after a Settings change with
    python scripts/sync_server_json.py
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import types
import typing
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema  # type: ignore[import-untyped]
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from pydantic import SecretStr

import hardal_mcp
from hardal_mcp.config import Settings, env_name
from hardal_mcp.sandbox import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig, create_app
from hardal_mcp.server import build_server

ROOT = Path(__file__).resolve().parent.parent
SERVER_JSON = ROOT / "server.json"
REGISTRY_SCHEMA = Path(__file__).parent / "data" / "server.schema.json"
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
SYNC_HINT = "run `python scripts/sync_server_json.py` to bring server.json in step with hardal_mcp.config.Settings"
UPDATE_HINT = (
    "if the change is intended, refresh the snapshot: UPDATE_SNAPSHOTS=1 python -m pytest tests/test_packaging.py"
)
CORE_TOOLS = {"list_sessions", "summarize_sessions", "get_session_activity"}


# --------------------------------------------------------------------------------------------- server.json


@pytest.fixture(scope="module")
def server_json() -> dict[str, Any]:
    return dict(json.loads(SERVER_JSON.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def registry_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(REGISTRY_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def _errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _package(server_json: dict[str, Any]) -> dict[str, Any]:
    packages = [p for p in server_json.get("packages", []) if p.get("registryType") == "pypi"]
    assert len(packages) == 1, "server.json must list exactly one PyPI package"
    return dict(packages[0])


def test_server_json_is_valid_against_the_registry_schema(
    server_json: dict[str, Any], registry_validator: jsonschema.Draft7Validator
) -> None:
    assert server_json["$schema"] == SCHEMA_URL
    errors = _errors(registry_validator, server_json)
    assert not errors, "server.json does not validate against the 2025-12-11 registry schema:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d.pop("description"), "description is required"),
        (lambda d: d.update(description="x" * 101), "description is at most 100 characters"),
        (lambda d: d.update(name="no-slash"), "name is namespace/name"),
        (lambda d: d["packages"][0].update(registryBaseUrl="not a url"), "registryBaseUrl is a URI (format check)"),
        (lambda d: d["packages"][0].update(transport={"type": "carrier-pigeon"}), "transport is stdio/http/sse"),
        (lambda d: d["packages"][0]["environmentVariables"][0].update(format="secret"), "format is an enum"),
    ],
)
def test_the_registry_validator_rejects_broken_documents(
    server_json: dict[str, Any],
    registry_validator: jsonschema.Draft7Validator,
    mutate: Callable[[dict[str, Any]], object],
    why: str,
) -> None:
    """Proves the validation above has teeth, format checks included (they need rfc3986-validator)."""
    broken = copy.deepcopy(server_json)
    mutate(broken)
    assert _errors(registry_validator, broken), f"a document breaking '{why}' was accepted"


def test_server_json_describes_the_pypi_package_run_with_uvx(server_json: dict[str, Any]) -> None:
    assert server_json["name"] == "io.github.hardal-mcp/hardal-mcp"
    assert server_json["title"]
    assert 1 <= len(server_json["description"]) <= 100
    package = _package(server_json)
    assert package["identifier"] == "hardal-mcp"
    assert package["registryBaseUrl"] == "https://pypi.org"
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}


def _leaf_types(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {leaf for arg in typing.get_args(annotation) for leaf in _leaf_types(arg)}
    return {annotation}


def _expected_format(annotation: Any) -> str:
    leaves = _leaf_types(annotation) - {type(None)}
    if leaves == {bool}:
        return "boolean"
    if leaves and leaves <= {int, float}:
        return "number"
    return "string"


def _variables(server_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = _package(server_json).get("environmentVariables", [])
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate environment variables in server.json: {names}"
    return {entry["name"]: entry for entry in entries}


def test_server_json_lists_exactly_the_settings_variables(server_json: dict[str, Any]) -> None:
    expected = {env_name(field) for field in Settings.model_fields}
    listed = set(_variables(server_json))
    missing, unknown = sorted(expected - listed), sorted(listed - expected)
    assert not missing, f"server.json lacks variables the server reads: {missing}; {SYNC_HINT}"
    assert not unknown, f"server.json lists variables the server does not read: {unknown}; {SYNC_HINT}"


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_each_variable_is_described_typed_and_defaulted(server_json: dict[str, Any], field: str) -> None:
    info = Settings.model_fields[field]
    entry = _variables(server_json).get(env_name(field))
    if entry is None:
        pytest.fail(f"{env_name(field)} is missing from server.json; {SYNC_HINT}")
    assert entry.get("description", "").strip(), f"{entry['name']} needs a description"
    assert isinstance(entry.get("isRequired"), bool), f"{entry['name']}: state isRequired"
    secret = SecretStr in _leaf_types(info.annotation)
    assert entry.get("isSecret") is secret, f"{entry['name']}: isSecret must be {secret}"
    assert entry.get("format") == _expected_format(info.annotation), f"{entry['name']}: wrong format; {SYNC_HINT}"
    default = info.get_default(call_default_factory=True)
    if default in (None, (), [], ""):
        assert "default" not in entry, f"{entry['name']} has no default in Settings; {SYNC_HINT}"
    else:
        assert "default" in entry, f"{entry['name']} must state its default; {SYNC_HINT}"
        # The stated default, read back the way the server reads the environment, is the Settings default.
        parsed = Settings.from_env({entry["name"]: entry["default"]})
        assert getattr(parsed, field) == getattr(Settings(), field), f"{entry['name']}: default disagrees; {SYNC_HINT}"


def test_only_the_api_key_is_required(server_json: dict[str, Any]) -> None:
    required = {name for name, entry in _variables(server_json).items() if entry.get("isRequired")}
    assert required == {"HARDAL_API_KEY"}


def test_readme_carries_the_registry_ownership_line(server_json: dict[str, Any]) -> None:
    """The registry matches `mcp-name: <name>` in the PyPI description (the README), followed by a boundary."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = re.findall(r"mcp-name:\s*(\S+?)(?=\s|-->|<|$)", readme)
    assert names == [server_json["name"]], f"README mcp-name lines {names} != server.json name {server_json['name']}"
    assert re.search(rf"mcp-name: {re.escape(server_json['name'])}(\s|-->|<|$)", readme)


# ------------------------------------------------------------------------------------------------ version


def test_version_lives_in_one_place() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "pyproject.toml must not pin a version; it is read from __init__"
    assert "version" in pyproject["project"].get("dynamic", [])
    assert pyproject["tool"]["hatch"]["version"]["path"] == "hardal_mcp/__init__.py"


def test_versions_agree(server_json: dict[str, Any]) -> None:
    version = hardal_mcp.__version__
    assert server_json["version"] == version, f"server.json version; {SYNC_HINT}"
    assert _package(server_json)["version"] == version, f"server.json package version; {SYNC_HINT}"
    try:
        installed = importlib.metadata.version("hardal-mcp")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("hardal-mcp is not installed in this environment (pip install -e .); the wheel test still checks")
    assert installed == version, f"installed metadata says {installed}, __version__ says {version}: reinstall"


# --------------------------------------------------------------------------------------- a wheel that runs


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(out), ROOT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, f"building the wheel failed:\n{build.stdout}\n{build.stderr}"
    wheels = list(out.glob("hardal_mcp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def test_wheel_metadata_has_the_version_and_ownership_line(wheel: Path, server_json: dict[str, Any]) -> None:
    metadata = _metadata(wheel)
    version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
    assert version, "no Version in the wheel's METADATA"
    assert version.group(1) == hardal_mcp.__version__ == server_json["version"]
    assert wheel.name.startswith(f"hardal_mcp-{hardal_mcp.__version__}-")
    # The long description is what PyPI shows and what the registry searches for the ownership line.
    assert re.search(rf"mcp-name: {re.escape(server_json['name'])}(\s|-->|<|$)", metadata)


def test_wheel_and_server_json_name_the_same_repository(wheel: Path, server_json: dict[str, Any]) -> None:
    urls = dict(
        line.removeprefix("Project-URL: ").split(", ", 1)
        for line in _metadata(wheel).splitlines()
        if line.startswith("Project-URL: ")
    )
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= urls.keys(), urls
    assert server_json["repository"] == {"url": urls["Repository"], "source": "github"}
    assert server_json["websiteUrl"] == urls["Homepage"]
    # The registry's name for a GitHub-owned server is io.github.<owner>/<name>: the same repository.
    owner_and_name = server_json["name"].removeprefix("io.github.")
    assert urls["Repository"] == f"https://github.com/{owner_and_name}"


def test_the_release_workflow_releases_the_tagged_version() -> None:
    """A tag that is not the package's version is refused before anything is published."""
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert 'tags: ["v*"]' in workflow
    assert 'test "v$version" = "$TAG"' in workflow
    for step in ("pypa/gh-action-pypi-publish", "gh release create", "mcp-publisher publish", "make bundle"):
        assert step in workflow, step


def test_wheel_ships_every_module_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    sources = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "hardal_mcp").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources - names == set(), f"modules missing from the wheel: {sorted(sources - names)}"
    assert not any(n.startswith("tests/") for n in names), "the wheel must not ship the tests"
    assert re.search(r"^hardal-mcp\s*=\s*hardal_mcp\.cli:main$", entry_points, re.MULTILINE), entry_points


@pytest.fixture(scope="session")
def installed_wheel(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel and its dependencies from PyPI, nothing from this checkout."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
            "--disable-pip-version-check", "--no-input", str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=venv,
    )  # fmt: skip
    assert install.returncode == 0, f"installing the wheel failed:\n{install.stdout}\n{install.stderr}"
    return venv


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HARDAL_"))}


def test_installed_wheel_imports_from_its_own_environment(installed_wheel: Path) -> None:
    probe = subprocess.run(
        [str(installed_wheel / "bin" / "python"), "-c", "import hardal_mcp; print(hardal_mcp.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed_wheel,
        env=_clean_env(),
        timeout=60,
        check=True,
    )
    location = Path(probe.stdout.strip()).resolve()
    assert location.is_relative_to(installed_wheel.resolve()), f"imported from {location}, not from the fresh venv"
    assert not location.is_relative_to(ROOT), location
    version = subprocess.run(
        [str(installed_wheel / "bin" / "hardal-mcp"), "--version"],
        capture_output=True,
        text=True,
        cwd=installed_wheel,
        env=_clean_env(),
        timeout=60,
        check=True,
    )
    assert version.stdout.strip() == f"hardal-mcp {hardal_mcp.__version__}"


async def test_installed_wheel_serves_the_demo_over_stdio(installed_wheel: Path) -> None:
    params = StdioServerParameters(
        command=str(installed_wheel / "bin" / "hardal-mcp"), args=["--demo"], cwd=str(installed_wheel)
    )
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools >= CORE_TOOLS, tools
        page = await client.call_tool("list_sessions", {"limit": 2})
        assert not page.is_error, page.content
        assert isinstance(page.structured_content, dict)
        sessions = page.structured_content["sessions"]
        assert len(sessions) == 2
        activity = await client.call_tool("get_session_activity", {"session_id": sessions[0]["id"], "limit": 5})
        assert not activity.is_error, activity.content


# ------------------------------------------------------------------------------------ tools/list snapshot


def _tool_view(tool: Any) -> dict[str, Any]:
    wire = tool.model_dump(by_alias=True, exclude_none=True, mode="json")
    keys = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
    return {key: wire[key] for key in keys if key in wire}


async def _list_tools() -> dict[str, dict[str, Any]]:
    """tools/list through an in-memory client; listing never reaches the (in-process) sandbox."""
    settings = Settings(api_key=SecretStr(DEMO_API_KEY), website_id=DEMO_WEBSITE_ID, base_url="http://sandbox.test")
    transport = httpx2.ASGITransport(app=create_app(SandboxConfig(sessions_per_day=10)))
    async with Client(build_server(settings, transport=transport)) as client:
        return {tool.name: _tool_view(tool) for tool in (await client.list_tools()).tools}


@pytest.fixture(scope="module")
def listed_tools() -> dict[str, dict[str, Any]]:
    return asyncio.run(_list_tools())


def test_tools_list_matches_the_snapshot(listed_tools: dict[str, dict[str, Any]]) -> None:
    current = list(listed_tools.values())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT.relative_to(ROOT)}; {UPDATE_HINT}"
    recorded = {tool["name"]: tool for tool in json.loads(SNAPSHOT.read_text(encoding="utf-8"))}
    if recorded == listed_tools:
        return
    report = []
    for name in sorted(recorded.keys() - listed_tools.keys()):
        report.append(f"tool {name} is no longer served")
    for name in sorted(listed_tools.keys() - recorded.keys()):
        report.append(f"tool {name} is new")
    for name in [n for n in listed_tools if n in recorded and recorded[n] != listed_tools[n]]:
        report.extend(
            difflib.unified_diff(
                json.dumps(recorded[name], indent=2, ensure_ascii=False, sort_keys=True).splitlines(),
                json.dumps(listed_tools[name], indent=2, ensure_ascii=False, sort_keys=True).splitlines(),
                fromfile=f"{name} in {SNAPSHOT.relative_to(ROOT)}",
                tofile=f"{name} served now",
                lineterm="",
            )
        )
    changes = "\n".join(report)
    pytest.fail(f"tools/list changed (names, descriptions, schemas or annotations):\n{changes}\n{UPDATE_HINT}")


# ----------------------------------------------------------------------------------- host compatibility
# Rules most MCP hosts (and the model APIs behind them) need of a tool's input schema. The parametrisation
# uses the committed snapshot's tool names; test_tools_list_matches_the_snapshot keeps those current.


def _walk(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _walk(item)


def _is_integer(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _rule_no_top_level_combinators(tool: dict[str, Any]) -> list[str]:
    return [f"top-level {k}" for k in ("anyOf", "oneOf", "allOf", "not", "if") if k in tool["inputSchema"]]


def _rule_object_type(tool: dict[str, Any]) -> list[str]:
    schema = tool["inputSchema"]
    problems = [] if schema.get("type") == "object" else [f"type is {schema.get('type')!r}, not 'object'"]
    if not isinstance(schema.get("properties", {}), dict):
        problems.append("properties is not an object")
    return problems


def _rule_additional_properties(tool: dict[str, Any]) -> list[str]:
    value = tool["inputSchema"].get("additionalProperties", False)
    return [] if isinstance(value, bool) else [f"additionalProperties is a schema ({value!r}), not a boolean"]


def _rule_described_properties(tool: dict[str, Any]) -> list[str]:
    properties = tool["inputSchema"].get("properties", {})
    return [f"{name}: no description" for name, s in properties.items() if not str(s.get("description", "")).strip()]


def _rule_bounded_integers(tool: dict[str, Any]) -> list[str]:
    problems = []
    for name, prop in tool["inputSchema"].get("properties", {}).items():
        for node in _walk(prop):
            if _is_integer(node) and not (
                {"minimum", "exclusiveMinimum"} & node.keys() and {"maximum", "exclusiveMaximum"} & node.keys()
            ):
                problems.append(f"{name}: integer without minimum and maximum")
    return problems


STATES_OMISSION = re.compile(r"\bdefault\b|\bomit", re.IGNORECASE)


def _rule_optional_defaults(tool: dict[str, Any]) -> list[str]:
    """An optional property states its default: a JSON `default`, or (for a value with no JSON default, where
    leaving it out means 'not applied') a description that says what leaving it out does."""
    schema = tool["inputSchema"]
    required = set(schema.get("required", []))
    return [
        f"{name}: optional, no default and no word on omitting it"
        for name, prop in schema.get("properties", {}).items()
        if name not in required and "default" not in prop and not STATES_OMISSION.search(prop.get("description", ""))
    ]


def _rule_valid_2020_12(tool: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("inputSchema", "outputSchema"):
        if key in tool:
            try:
                jsonschema.Draft202012Validator.check_schema(tool[key])
            except jsonschema.SchemaError as exc:
                problems.append(f"{key}: {exc.message}")
    if "outputSchema" in tool and tool["outputSchema"].get("type") != "object":
        problems.append("outputSchema is not an object schema")
    return problems


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "no-top-level-anyOf-oneOf-allOf": _rule_no_top_level_combinators,
    "type-object": _rule_object_type,
    "additionalProperties-boolean-or-absent": _rule_additional_properties,
    "every-property-described": _rule_described_properties,
    "integers-bounded": _rule_bounded_integers,
    "optional-properties-state-defaults": _rule_optional_defaults,
    "valid-json-schema-2020-12": _rule_valid_2020_12,
}

# Known violations, reported rather than fixed here (the tool code belongs to others): {(rule, tool): reason}.
# strict=True makes a fixed one fail as XPASS, so its entry gets deleted.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def _snapshot_tool_names() -> list[str]:
    try:
        return [tool["name"] for tool in json.loads(SNAPSHOT.read_text(encoding="utf-8"))]
    except (OSError, ValueError, KeyError):
        return []


def _compat_cases() -> list[Any]:
    cases = []
    for rule in RULES:
        for tool in _snapshot_tool_names():
            reason = KNOWN_VIOLATIONS.get((rule, tool))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(rule, tool, marks=marks, id=f"{rule}[{tool}]"))
    return cases


@pytest.mark.parametrize(("rule", "tool_name"), _compat_cases())
def test_tool_schema_suits_hosts(listed_tools: dict[str, dict[str, Any]], rule: str, tool_name: str) -> None:
    if tool_name not in listed_tools:
        pytest.fail(f"{tool_name} is in the snapshot but not served; {UPDATE_HINT}")
    problems = RULES[rule](listed_tools[tool_name])
    assert not problems, f"{tool_name} breaks {rule}: " + "; ".join(problems)


def test_host_rules_cover_every_served_tool(listed_tools: dict[str, dict[str, Any]]) -> None:
    """A tool served but missing from the snapshot would escape the rule tests above."""
    unchecked = sorted(set(listed_tools) - set(_snapshot_tool_names()))
    assert not unchecked, f"tools not in the snapshot, so not checked against host rules: {unchecked}; {UPDATE_HINT}"
    stale = sorted(tool for _, tool in KNOWN_VIOLATIONS if tool not in listed_tools)
    assert not stale, f"KNOWN_VIOLATIONS names tools that no longer exist: {stale}"
