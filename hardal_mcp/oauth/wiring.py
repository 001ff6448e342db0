"""From settings to a running authorization server: the checks that refuse to start `--auth oauth` without
what it needs (a secret, a public URL the SDK accepts as an issuer, somewhere to keep the state), the state
backend (Redis when replicas share one, else the file beside the day store) and the SDK's `AuthSettings`."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions

from ..config import Settings
from ..errors import ConfigError
from ..store import store_path
from .provider import SCOPE, HardalOAuthProvider
from .sealing import Sealing
from .sqlite_state import FILENAME, SqliteState
from .state import State


def build(
    settings: Settings, *, resource_path: str, clock: Callable[[], float] = time.time
) -> tuple[HardalOAuthProvider, AuthSettings]:
    """The provider and the SDK's auth settings for it; ConfigError, saying what to set, when it cannot run."""
    if settings.oauth_secret is None:
        raise ConfigError(
            "--auth oauth needs HARDAL_OAUTH_SECRET: a secret of 32 characters or more (e.g. `openssl rand -hex 32`) "
            "that encrypts the Hardal keys people enter. Keep it: tokens issued under it end when it changes."
        )
    issuer = settings.public_url
    if issuer is None:
        raise ConfigError("--auth oauth needs the server's public URL: --public-url or HARDAL_PUBLIC_URL.")
    parts = urlsplit(issuer)
    if parts.path not in ("", "/"):
        raise ConfigError(f"--public-url {issuer}: give the origin only (https://host[:port]); the server is at /mcp.")
    if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1"):
        raise ConfigError(f"--public-url {issuer}: OAuth needs https (plain http is for loopback addresses only).")
    resource = issuer + resource_path
    provider = HardalOAuthProvider(
        open_state(settings, clock), Sealing(settings.oauth_secret), issuer=issuer, resource=resource, clock=clock
    )
    # From plain strings: AuthSettings keeps a path-less issuer without a trailing slash (RFC 8414 compares
    # issuers as strings, and clients check the `iss` we send back against it).
    auth = AuthSettings.model_validate(
        {
            "issuer_url": issuer,
            "resource_server_url": resource,
            "validate_token_resource": True,  # a token issued for another resource is refused (RFC 8707)
            "required_scopes": [SCOPE],
            "client_registration_options": ClientRegistrationOptions(
                enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
            "revocation_options": RevocationOptions(enabled=True),
        }
    )
    return provider, auth


def open_state(settings: Settings, clock: Callable[[], float]) -> State:
    """Redis when HARDAL_REDIS_URL is set (every replica honours every token); else `oauth.sqlite3` beside
    the day store."""
    if settings.redis_url is not None:
        from ..budget_backends import needs_redis

        with needs_redis():
            from .redis_state import RedisState
        return RedisState(settings, clock=clock)
    path = store_path(settings.store)
    if path is None:
        raise ConfigError(
            "--auth oauth keeps its tokens beside the day store, and HARDAL_STORE=off leaves it nowhere: set "
            "HARDAL_STORE to a directory (or auto), or HARDAL_REDIS_URL."
        )
    return SqliteState(path.parent / FILENAME, clock=clock)
