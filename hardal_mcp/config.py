"""Settings: read once from the environment by the CLI, then passed down. Nothing here runs at import."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .errors import ConfigError

DEFAULT_BASE_URL = "https://app.usehardal.com"
DEFAULT_TIMEZONE = "Europe/Istanbul"  # the Sessions API's own default
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py's from_url reads


class Settings(BaseModel):
    """Everything the server is configured with. Field names map to `HARDAL_<NAME>` variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = Field(default=None, description="Bearer key for the Hardal API")
    website_id: str | None = Field(default=None, description="Default website (signal) id")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API origin")
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="IANA zone sent when a call gives none")
    timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds for one upstream request")
    rate_limit: int = Field(default=100, ge=1, le=100_000, description="Upstream requests per minute")
    page_size: int = Field(default=1000, ge=1, le=1000, description="Sessions per upstream request when scanning")
    tool_timeout: float = Field(default=50.0, gt=0, le=3600, description="Overall seconds for one tool call")
    redact_pii: bool = Field(default=True, description="Mask e-mails, phones, IPs and secrets in visitor data")
    store: str = Field(
        default="auto", description="Day store and shared rate budget: auto (user cache dir), off, or a file path"
    )
    store_max_mb: int = Field(default=512, ge=1, le=1_048_576, description="Size cap of the day store in MiB")
    mcp_token: SecretStr | None = Field(default=None, description="Bearer token the HTTP transport requires")
    redis_url: SecretStr | None = Field(
        default=None, description="Redis shared by replicas for the rate budget and holds (off when unset)"
    )
    redis_days_mb: int = Field(
        default=256, ge=0, le=1_048_576, description="Cap on the closed days replicas share in Redis, MiB (0: none)"
    )
    redis_days_ttl: float = Field(
        default=7 * 86400.0, gt=0, le=365 * 86400.0, description="Seconds a shared day outlives its last use"
    )
    oauth_secret: SecretStr | None = Field(
        default=None, description="--auth oauth: the server secret that encrypts stored Hardal keys (32+ characters)"
    )
    public_url: str | None = Field(
        default=None, description="--auth oauth: the origin clients reach the server at (issuer and resource URLs)"
    )
    mcp_allowed_hosts: tuple[str, ...] = Field(default=(), description="Extra Host values the HTTP transport accepts")
    mcp_allowed_origins: tuple[str, ...] = Field(default=(), description="Extra Origin values it accepts")

    @field_validator("api_key", "website_id", "mcp_token", "redis_url", "oauth_secret", "public_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("mcp_allowed_hosts", "mcp_allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        value = value.strip()
        # true/false: the MCP Bundle's "keep the day store" switch, which hosts pass as a boolean's text
        switch = {"": "auto", "auto": "auto", "true": "auto", "off": "off", "false": "off"}
        return switch.get(value.lower(), value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        address = re.split("[?#]", value, maxsplit=1)[0]
        if display_url(address) != address:  # it had a user name or password
            raise ValueError(
                "must not carry a user name or password: a gateway that needs credentials of its own is not "
                f"supported (requests carry only HARDAL_API_KEY, as a Bearer token); use {display_url(value)}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The URL may hold a password: the message never repeats it.
        if value is not None and not value.get_secret_value().startswith(REDIS_SCHEMES):
            schemes = ", ".join(REDIS_SCHEMES)
            raise ValueError(f"must start with {schemes} (its value is not shown: it may hold a password)")
        return value

    @field_validator("oauth_secret")
    @classmethod
    def _check_oauth_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`); its value is not shown")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", value):
            raise ValueError(
                "must be an http(s) URL without user name, query or fragment (e.g. https://mcp.example.com)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Istanbul, UTC)") from None
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from `HARDAL_*` variables; `overrides` (already typed) win over the environment."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(env_name(name))
            if raw is not None and raw.strip():  # a blank variable (common in host configs) means unset
                values[name] = raw
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def env_name(field: str) -> str:
    return f"HARDAL_{field.upper()}"


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "?"
        problems.append(f"{env_name(field)}: {err['msg']}")
    return "Invalid configuration — " + "; ".join(problems)


_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::\d*)?")


def display_url(url: str) -> str:
    """`url` as it may be shown in messages and logs: no userinfo (`user:password@`), no query or fragment.

    HARDAL_BASE_URL may not carry credentials (`Settings` refuses them), but the refusal shows the URL, so
    it must not repeat them. A malformed authority (a raw `/` in a password ends it early,
    `https://u:p/ss@host`) loses everything up to its last `@`, so no part of the password survives either."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    path, query = tail, ""
    for mark in "?#":
        if mark in path:
            path, _, _ = path.partition(mark)
            query = f"{mark}[redacted]"
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    elif "@" in path and not _HOST_PORT.fullmatch(authority):
        authority, slash, after = (authority + path).rpartition("@")[2].partition("/")
        path = slash + after
    return f"{scheme}://{authority}{path}{query}"
