"""Settings.from_env: each HARDAL_* variable, defaults, blanks, and errors that name the variable and
never carry the API key."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from hardal_mcp.config import Settings
from hardal_mcp.errors import ConfigError

KEY = "hk_live_Q7w8E9r0T1y2U3i4O5p6A7s8"
VARIABLES = [
    "HARDAL_API_KEY",
    "HARDAL_WEBSITE_ID",
    "HARDAL_BASE_URL",
    "HARDAL_TIMEZONE",
    "HARDAL_TIMEOUT",
    "HARDAL_RATE_LIMIT",
    "HARDAL_PAGE_SIZE",
]


def test_defaults_without_any_variable():
    settings = Settings.from_env({})
    assert settings.api_key is None
    assert settings.website_id is None
    assert settings.base_url == "https://app.usehardal.com"  # reference §1.1
    assert settings.timezone == "Europe/Istanbul"  # the Sessions API's own default (§2.1)
    assert settings.timeout == 30.0  # Hardal's own client (§6.18)
    assert settings.rate_limit == 100  # 100 requests per minute per key (§1.4)
    assert 1 <= settings.page_size <= 1000


def test_api_key():
    settings = Settings.from_env({"HARDAL_API_KEY": KEY})
    assert isinstance(settings.api_key, SecretStr)
    assert settings.api_key.get_secret_value() == KEY


def test_api_key_and_website_id_are_stripped():
    settings = Settings.from_env({"HARDAL_API_KEY": f"  {KEY}\n", "HARDAL_WEBSITE_ID": " demo "})
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == KEY
    assert settings.website_id == "demo"


@pytest.mark.parametrize(
    ("variable", "raw", "field", "value"),
    [
        ("HARDAL_WEBSITE_ID", "cm6gihhlq000aue9wkelb4ay3", "website_id", "cm6gihhlq000aue9wkelb4ay3"),
        ("HARDAL_BASE_URL", "http://127.0.0.1:8080", "base_url", "http://127.0.0.1:8080"),
        ("HARDAL_BASE_URL", "https://api.nexus.example.test/", "base_url", "https://api.nexus.example.test"),
        ("HARDAL_BASE_URL", " http://localhost:9000// ", "base_url", "http://localhost:9000"),
        ("HARDAL_TIMEZONE", "America/New_York", "timezone", "America/New_York"),
        ("HARDAL_TIMEZONE", "UTC", "timezone", "UTC"),
        ("HARDAL_TIMEOUT", "12.5", "timeout", 12.5),
        ("HARDAL_TIMEOUT", "600", "timeout", 600.0),
        ("HARDAL_RATE_LIMIT", "50", "rate_limit", 50),
        ("HARDAL_RATE_LIMIT", "1", "rate_limit", 1),
        ("HARDAL_PAGE_SIZE", "200", "page_size", 200),
        ("HARDAL_PAGE_SIZE", "1000", "page_size", 1000),
    ],
)
def test_each_variable_is_read(variable, raw, field, value):
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == value
    defaults = Settings.from_env({})
    for other in Settings.model_fields:
        if other != field:
            assert getattr(settings, other) == getattr(defaults, other), other


def test_other_variables_are_ignored():
    settings = Settings.from_env({"HARDAL_SOMETHING": "x", "PATH": "/usr/bin", "hardal_timeout": "5", "API_KEY": KEY})
    assert settings == Settings.from_env({})


def test_overrides_win_over_the_environment():
    settings = Settings.from_env({"HARDAL_TIMEOUT": "5", "HARDAL_WEBSITE_ID": "env_site"}, timeout=9.0)
    assert settings.timeout == 9.0
    assert settings.website_id == "env_site"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
@pytest.mark.parametrize("variable", ["HARDAL_API_KEY", "HARDAL_WEBSITE_ID"])
def test_blank_key_or_website_is_unset(variable, blank):
    assert Settings.from_env({variable: blank}) == Settings.from_env({})


@pytest.mark.parametrize(
    "variable",
    [
        name
        for name in ("HARDAL_BASE_URL", "HARDAL_TIMEZONE", "HARDAL_TIMEOUT", "HARDAL_RATE_LIMIT", "HARDAL_PAGE_SIZE")
    ],
)
def test_blank_value_of_any_other_variable_is_unset(variable):
    assert Settings.from_env({variable: "  "}) == Settings.from_env({})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("HARDAL_TIMEOUT", "abc"),
        ("HARDAL_TIMEOUT", "0"),
        ("HARDAL_TIMEOUT", "-1"),
        ("HARDAL_TIMEOUT", "601"),
        ("HARDAL_TIMEOUT", "nan"),
        ("HARDAL_RATE_LIMIT", "0"),
        ("HARDAL_RATE_LIMIT", "many"),
        ("HARDAL_RATE_LIMIT", "1.5"),
        ("HARDAL_RATE_LIMIT", "100001"),
        ("HARDAL_PAGE_SIZE", "0"),
        ("HARDAL_PAGE_SIZE", "1001"),
        ("HARDAL_PAGE_SIZE", "ten"),
        ("HARDAL_BASE_URL", "ftp://app.usehardal.com"),
        ("HARDAL_BASE_URL", "app.usehardal.com"),
        ("HARDAL_TIMEZONE", "Mars/Olympus_Mons"),
        ("HARDAL_TIMEZONE", "../../etc/passwd"),
    ],
)
def test_invalid_value_is_a_config_error_naming_the_variable_without_the_key(variable, raw):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HARDAL_API_KEY": KEY, variable: raw})
    message = str(info.value)
    assert variable in message
    others = [v for v in VARIABLES if v not in (variable, "HARDAL_API_KEY")]
    assert not any(v in message for v in others), "only the faulty variable is named"
    assert KEY not in message
    assert KEY not in repr(info.value)
    assert info.value.__cause__ is None


def test_every_invalid_variable_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HARDAL_API_KEY": KEY, "HARDAL_TIMEOUT": "x", "HARDAL_PAGE_SIZE": "0"})
    assert "HARDAL_TIMEOUT" in str(info.value)
    assert "HARDAL_PAGE_SIZE" in str(info.value)
    assert KEY not in str(info.value)


def test_an_invalid_override_never_echoes_the_key():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HARDAL_API_KEY": KEY}, api_key=[KEY])
    assert "HARDAL_API_KEY" in str(info.value)
    assert KEY not in str(info.value)


def test_repr_str_and_dumps_never_contain_the_key():
    settings = Settings.from_env({"HARDAL_API_KEY": KEY, "HARDAL_WEBSITE_ID": "demo"})
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == KEY  # the key is there, just never shown
    for text in (repr(settings), str(settings), f"{settings}", settings.model_dump_json(), repr(settings.api_key)):
        assert KEY not in text
    assert "demo" in repr(settings)


def test_settings_are_frozen():
    settings = Settings.from_env({"HARDAL_TIMEOUT": "5"})
    with pytest.raises(ValidationError):
        settings.timeout = 60  # type: ignore[misc]
    assert settings.timeout == 5.0
