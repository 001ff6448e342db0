"""The MCP Bundle (`manifest.json`, packed by `make bundle`) says what the server does: its tools and prompts are
the server's own, its version is the package's, and every user_config value reaches the server as the
`HARDAL_*` variable it reads. `scripts/bundle.sh` proves the packed bundle end to end (CI); this holds the
manifest to the code without Node."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

import hardal_mcp
from hardal_mcp.config import Settings, env_name
from hardal_mcp.server import build_server

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return dict(json.loads((ROOT / "manifest.json").read_text(encoding="utf-8")))


@pytest.fixture
async def server_lists() -> tuple[list[Any], list[Any]]:
    async with Client(build_server(Settings(store="off"))) as client:
        return (await client.list_tools()).tools, (await client.list_prompts()).prompts


async def test_tools_are_the_servers_own(manifest: dict[str, Any], server_lists: tuple[list[Any], list[Any]]) -> None:
    tools, _ = server_lists
    assert [tool["name"] for tool in manifest["tools"]] == [tool.name for tool in tools]
    served = {tool.name: tool.description or "" for tool in tools}
    for tool in manifest["tools"]:
        assert tool["description"], f"{tool['name']}: no description"
        assert served[tool["name"]].startswith(tool["description"]), (
            f"{tool['name']}: the manifest's description is not the start of the server's: {served[tool['name']]!r}"
        )


async def test_prompts_are_the_servers_own(manifest: dict[str, Any], server_lists: tuple[list[Any], list[Any]]) -> None:
    _, prompts = server_lists
    assert [prompt["name"] for prompt in manifest["prompts"]] == [prompt.name for prompt in prompts]
    served = {prompt.name: prompt for prompt in prompts}
    for prompt in manifest["prompts"]:
        own = served[prompt["name"]]
        assert prompt["description"] == own.description
        assert prompt["arguments"] == [argument.name for argument in own.arguments or []]
        used = {name.removeprefix("arguments.") for name in PLACEHOLDER.findall(prompt["text"])}
        undeclared = used - set(prompt["arguments"])
        assert not undeclared, f"{prompt['name']}: text uses undeclared {undeclared}"
        required = {argument.name for argument in own.arguments or [] if argument.required}
        assert required <= used, f"{prompt['name']}: text leaves out required {required - used}"


def test_version_is_the_packages(manifest: dict[str, Any]) -> None:
    server_json = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    assert manifest["version"] == hardal_mcp.__version__ == server_json["version"]


def test_python_range_is_pyprojects(manifest: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert manifest["compatibility"]["runtimes"]["python"] == pyproject["project"]["requires-python"]


def test_user_config_reaches_the_server_as_its_variables(manifest: dict[str, Any]) -> None:
    """Each user_config key is a Settings field, passed as its HARDAL_* variable; nothing else is passed."""
    user_config = manifest["user_config"]
    assert set(user_config) <= set(Settings.model_fields)
    env = manifest["server"]["mcp_config"]["env"]
    assert env == {env_name(key): f"${{user_config.{key}}}" for key in user_config}
    assert {"api_key", "website_id", "base_url", "store"} <= set(user_config)
    assert user_config["api_key"]["sensitive"] is True and user_config["api_key"]["required"] is True


def test_optional_user_config_has_defaults_the_server_accepts(manifest: dict[str, Any]) -> None:
    """A host substitutes an unset value with its default; with none, `${user_config.x}` itself would reach the
    server. Every optional value's default, given as the host gives it (booleans as "true"/"false"), must
    configure what Settings configures when the variable is absent."""
    defaults = Settings()
    for key, option in manifest["user_config"].items():
        if option.get("required"):
            continue
        assert "default" in option, f"user_config.{key}: optional without a default"
        value = option["default"]
        as_host_gives = ("true" if value else "false") if isinstance(value, bool) else str(value)
        configured = Settings.from_env({env_name(key): as_host_gives})
        assert getattr(configured, key) == getattr(defaults, key), f"user_config.{key}: default {value!r}"


@pytest.mark.parametrize(("given", "store"), [("true", "auto"), ("false", "off"), ("True", "auto"), ("FALSE", "off")])
def test_a_boolean_store_means_auto_or_off(given: str, store: str) -> None:
    """The bundle's "Keep the day store" switch arrives as HARDAL_STORE=true/false, not as a file named "true"."""
    assert Settings.from_env({"HARDAL_STORE": given}).store == store


def test_launch_is_uv_run_in_the_bundle(manifest: dict[str, Any]) -> None:
    server = manifest["server"]
    assert server["type"] == "uv"
    assert server["mcp_config"]["command"] == "uv"
    assert server["mcp_config"]["args"] == ["run", "--directory", "${__dirname}", "hardal-mcp"]
    assert (ROOT / server["entry_point"]).is_file()
    assert (ROOT / manifest["icon"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
