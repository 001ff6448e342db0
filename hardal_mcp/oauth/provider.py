"""The SDK's `OAuthAuthorizationServerProvider` for hardal-mcp: the SDK's handlers validate each request
(PKCE S256, redirect_uri as registered, scopes, client authentication) and call these methods for what only
we know. A grant is one person's consent: their Hardal key (sealed), their default website, the client and
the resource. Codes, access tokens and refresh tokens point at a grant; revoking a grant (a revocation, or
Hardal refusing its key) ends every token that points at it.

Access tokens are opaque and short-lived; a refresh token is used once (rotated); a code is taken once. A
token is accepted only for the resource it was issued for (the SDK compares it: `validate_token_resource`),
and stands for its key alone: the verifier hands the key to the tools (`HardalAccessToken`), as the bearer
key does in passthrough mode, so each token reaches only its own key's data, cache, store and budget."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    RegistrationError,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl, SecretStr, ValidationError

from ..errors import AuthError, HardalError, NotFoundError
from .sealing import Sealing, new_token
from .state import Kind, Record, State

log = logging.getLogger(__name__)

SCOPE = "hardal:read"  # the one scope: read the key's analytics through the tools
ACCESS_TTL = 3600  # seconds an access token lives
REFRESH_TTL = 30 * 86400  # seconds a refresh token (and its grant, unless refreshed) lives
CODE_TTL = 300
REQUEST_TTL = 900  # a consent page left open this long must be started again
NEW_CLIENT_TTL = 86400  # a registered client that never completes a consent is forgotten after this
CLIENT_TTL = 60 * 86400  # a client unused this long is forgotten (each consent and token renews it)
MAX_CLIENTS = 10_000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
OWNED_BY_GRANT: tuple[Kind, ...] = ("code", "access", "refresh", "spent")


class HardalAccessToken(AccessToken):
    """A verified access token, with the key it stands for (never rendered: the SDK shows none of it)."""

    key: SecretStr
    website_id: str | None = None
    grant_id: str


class HardalRefreshToken(RefreshToken):
    grant_id: str


class HardalCode(AuthorizationCode):
    grant_id: str


@dataclass(frozen=True, slots=True)
class Pending:
    """A consent request waiting for the person: what the client asked, as the SDK validated it."""

    id: str
    client_id: str
    client_name: str
    redirect_host: str
    params: AuthorizationParams


class Refused(Exception):
    """The consent cannot go on; `message` is for the person, on the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HardalOAuthProvider:
    """See the module docstring. `issuer` is the public origin (HARDAL_PUBLIC_URL / --public-url); the resource
    is `issuer` + `/mcp`. `clock` (seconds since the epoch) judges every expiry: tests move it."""

    def __init__(
        self,
        state: State,
        sealing: Sealing,
        *,
        issuer: str,
        resource: str,
        clock: Callable[[], float] = time.time,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.state = state
        self.sealing = sealing
        self.issuer = issuer.rstrip("/")
        self.resource = resource
        self._clock = clock
        self.max_clients = max_clients
        self._check_key: Callable[[SecretStr, str], Awaitable[None]] | None = None

    def attach(self, check_key: Callable[[SecretStr, str], Awaitable[None]]) -> None:
        """How a typed key is checked (the lifespan's `HardalClient.vouch`: one request to Hardal)."""
        self._check_key = check_key

    # -- clients ---------------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        record = await self.state.get("client", client_id)
        if record is None:
            return None
        sealed = record.pop("client_secret_sealed", None)
        if sealed is not None:
            secret = self.sealing.unseal(sealed, f"client:{client_id}")
            if secret is None:
                return None
            record["client_secret"] = secret.get_secret_value()
        return OAuthClientInformationFull.model_validate(record)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        for uri in client_info.redirect_uris or ():
            if not _acceptable_redirect(uri):
                raise RegistrationError(
                    "invalid_redirect_uri",
                    f"redirect URI {str(uri)[:200]!r} refused: use https, http on a loopback address, or an app's "
                    "own scheme",
                )
        if await self.state.count("client") >= self.max_clients:
            log.warning("OAuth: %d clients registered, the most kept; refusing another", self.max_clients)
            raise RegistrationError("invalid_client_metadata", "This server has all the clients it keeps; try later.")
        assert client_info.client_id is not None  # the SDK's handler assigns one
        await self._save_client(client_info, self._clock() + NEW_CLIENT_TTL)

    async def _save_client(self, client: OAuthClientInformationFull, expires_at: float) -> None:
        assert client.client_id is not None
        record: dict[str, Any] = client.model_dump(mode="json", exclude={"client_secret"})
        if client.client_secret is not None:
            secret = SecretStr(client.client_secret)
            record["client_secret_sealed"] = self.sealing.seal(secret, f"client:{client.client_id}")
        await self.state.put("client", client.client_id, record, expires_at=expires_at)

    # -- authorization -----------------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        """Keep the request and send the person to our consent page."""
        if params.resource is not None and not same_resource(params.resource, self.resource):
            raise AuthorizeError("invalid_target", f"this server issues tokens for {self.resource} only")
        scopes = params.scopes or [SCOPE]
        if SCOPE not in scopes:
            raise AuthorizeError("invalid_scope", f"ask for the scope {SCOPE}")
        request = new_token("hcr")
        kept = params.model_copy(update={"scopes": scopes, "resource": self.resource})
        body = {"client_id": client.client_id, "params": kept.model_dump(mode="json")}
        await self.state.put(
            "request", self.sealing.hash("request", request), body, expires_at=self._clock() + REQUEST_TTL
        )
        return f"{self.issuer}/consent?request={request}"

    async def pending(self, request: str) -> Pending | None:
        """The consent request behind a page, if it is still open."""
        record = await self.state.get("request", self.sealing.hash("request", request))
        if record is None:
            return None
        client = await self.get_client(record["client_id"])
        if client is None:
            return None
        try:
            params = AuthorizationParams.model_validate(record["params"])
        except ValidationError:
            return None
        name = client.client_name or client.client_id or "an unnamed application"
        host = AnyUrl(str(params.redirect_uri)).host or str(params.redirect_uri)
        return Pending(request, record["client_id"], name, host, params)

    async def approve(self, pending: Pending, key: SecretStr, website_id: str | None) -> str:
        """Check the key with Hardal, then issue a code: the URL to send the person back to. Refused (with a
        message for the page) when Hardal does not accept the key, or the request is gone."""
        if self._check_key is None:
            raise Refused("The server is starting; try again in a moment.")
        if website_id is None:
            raise Refused("Enter a website id: your key is checked against it.")
        try:
            await self._check_key(key, website_id)
        except AuthError as exc:
            if exc.status == 403:
                raise Refused(f"This key has no access to website {website_id!r}.") from None
            raise Refused("Hardal rejected this API key. Check it in Hardal: Settings → Security → API Keys.") from None
        except NotFoundError:
            raise Refused(f"Hardal found no website {website_id!r} for this key.") from None
        except HardalError:
            raise Refused("Hardal could not check the key just now; try again in a moment.") from None
        if await self.state.take("request", self.sealing.hash("request", pending.id)) is None:
            raise Refused("This sign-in request was already answered or has expired; start again from your app.")
        client = await self.get_client(pending.client_id)
        if client is None:
            raise Refused("The application that asked is no longer registered; start again from your app.")
        now = self._clock()
        grant_id = secrets.token_hex(16)
        key_id = self.sealing.key_id(key)
        grant = {
            "client_id": pending.client_id,
            "sealed_key": self.sealing.seal(key, grant_id),
            "key_id": key_id,
            "website_id": website_id,
            "scopes": pending.params.scopes,
            "resource": self.resource,
        }
        await self.state.put("grant", grant_id, grant, expires_at=now + REFRESH_TTL, owner=key_id)
        code = new_token("hcc")
        params = pending.params
        record = {
            "client_id": pending.client_id,
            "grant_id": grant_id,
            "code_challenge": params.code_challenge,
            "redirect_uri": str(params.redirect_uri),
            "redirect_uri_provided_explicitly": params.redirect_uri_provided_explicitly,
            "scopes": params.scopes,
            "resource": self.resource,
            "expires_at": now + CODE_TTL,
        }
        await self.state.put("code", self.sealing.hash("code", code), record, expires_at=now + CODE_TTL, owner=grant_id)
        await self._save_client(client, now + CLIENT_TTL)
        log.info("OAuth: client %s authorized for key %s", pending.client_id, key_id[:12])
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state, iss=self.issuer)

    async def deny(self, pending: Pending) -> str:
        """The person said no: back to the client with access_denied."""
        await self.state.delete("request", self.sealing.hash("request", pending.id))
        params = pending.params
        return construct_redirect_uri(
            str(params.redirect_uri), error="access_denied", state=params.state, iss=self.issuer
        )

    # -- codes and tokens ----------------------------------------------------------------------------------

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> HardalCode | None:
        record = await self._presented("code", authorization_code, client)
        return None if record is None else HardalCode(code=authorization_code, **record)

    async def _presented(self, kind: Kind, value: str, client: OAuthClientInformationFull) -> Record | None:
        """The stored record of a code or refresh token `client` presents; None when unknown (a spent one
        presented again ends its grant: `_replayed`) or issued to another client."""
        hashed = self.sealing.hash(kind, value)
        record = await self.state.get(kind, hashed)
        if record is None:
            await self._replayed(hashed)
            return None
        return record if record["client_id"] == client.client_id else None

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: HardalCode
    ) -> OAuthToken:
        hashed = self.sealing.hash("code", authorization_code.code)
        if await self.state.take("code", hashed) is None:
            await self._replayed(hashed)
            raise TokenError("invalid_grant", "authorization code already used")
        await self._spend(hashed, authorization_code.grant_id, authorization_code.expires_at)
        return await self._issue(client, authorization_code.grant_id, authorization_code.scopes)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> HardalRefreshToken | None:
        record = await self._presented("refresh", refresh_token, client)
        return None if record is None else HardalRefreshToken(token=refresh_token, **record)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: HardalRefreshToken, scopes: list[str]
    ) -> OAuthToken:
        hashed = self.sealing.hash("refresh", refresh_token.token)
        if await self.state.take("refresh", hashed) is None:
            await self._replayed(hashed)
            raise TokenError("invalid_grant", "refresh token already used")
        await self._spend(hashed, refresh_token.grant_id, refresh_token.expires_at or self._clock() + REFRESH_TTL)
        return await self._issue(client, refresh_token.grant_id, scopes)

    async def _spend(self, hashed: str, grant_id: str, expires_at: float) -> None:
        """Remember a used code or refresh token (its hash) until it would have expired."""
        await self.state.put("spent", hashed, {"grant_id": grant_id}, expires_at=expires_at, owner=grant_id)

    async def _replayed(self, hashed: str) -> None:
        """A code or refresh token used a second time was stolen, or its first use was: end its grant and every
        token issued from it (RFC 6749 §4.1.2 and OAuth 2.1 §4.3.1)."""
        spent = await self.state.get("spent", hashed)
        if spent is not None:
            log.warning("OAuth: a code or refresh token was used twice; its authorization is revoked")
            await self.revoke_grant(spent["grant_id"])

    async def _issue(self, client: OAuthClientInformationFull, grant_id: str, scopes: list[str]) -> OAuthToken:
        grant = await self.state.get("grant", grant_id)
        if grant is None or grant["client_id"] != client.client_id:
            raise TokenError("invalid_grant", "the authorization was revoked")
        now = self._clock()
        access, refresh = new_token("hma"), new_token("hmr")
        common = {"client_id": client.client_id, "grant_id": grant_id, "scopes": scopes, "resource": grant["resource"]}
        await self.state.put(
            "access",
            self.sealing.hash("access", access),
            {**common, "expires_at": int(now + ACCESS_TTL)},
            expires_at=now + ACCESS_TTL,
            owner=grant_id,
        )
        await self.state.put(
            "refresh",
            self.sealing.hash("refresh", refresh),
            {**common, "expires_at": int(now + REFRESH_TTL)},
            expires_at=now + REFRESH_TTL,
            owner=grant_id,
        )
        await self.state.put("grant", grant_id, grant, expires_at=now + REFRESH_TTL, owner=grant["key_id"])
        await self._save_client(client, now + CLIENT_TTL)
        return OAuthToken(access_token=access, expires_in=ACCESS_TTL, scope=" ".join(scopes), refresh_token=refresh)

    async def load_access_token(self, token: str) -> HardalAccessToken | None:
        record = await self.state.get("access", self.sealing.hash("access", token))
        if record is None:
            return None
        grant = await self.state.get("grant", record["grant_id"])
        if grant is None:
            return None
        key = self.sealing.unseal(grant["sealed_key"], record["grant_id"])
        if key is None:  # sealed under another HARDAL_OAUTH_SECRET: the person signs in again
            return None
        return HardalAccessToken(
            token="",  # the bearer secret is not kept past this check
            client_id=record["client_id"],
            scopes=record["scopes"],
            expires_at=record["expires_at"],
            resource=record["resource"],
            subject=f"key:{grant['key_id']}",  # sessions belong to the key, whichever token refreshed them
            key=key,
            website_id=grant["website_id"],
            grant_id=record["grant_id"],
        )

    async def revoke_token(self, token: HardalAccessToken | HardalRefreshToken) -> None:
        await self.revoke_grant(token.grant_id)

    async def revoke_grant(self, grant_id: str) -> None:
        """End a grant and every code and token that points at it."""
        await self.state.delete("grant", grant_id)
        for kind in OWNED_BY_GRANT:
            for id in await self.state.owned(kind, grant_id):
                await self.state.delete(kind, id)

    async def revoke_key(self, key: SecretStr) -> int:
        """Hardal refused `key` (401): end every grant made with it. Returns how many there were."""
        grants = await self.state.owned("grant", self.sealing.key_id(key))
        for grant_id in grants:
            await self.revoke_grant(grant_id)
        if grants:
            log.warning("OAuth: Hardal refused a key; %d of its authorizations revoked", len(grants))
        return len(grants)


def same_resource(a: str, b: str) -> bool:
    """Resource URLs compared as URLs (case of scheme and host, default ports), a trailing slash aside."""
    try:
        return str(AnyHttpUrl(a)).removesuffix("/") == str(AnyHttpUrl(b)).removesuffix("/")
    except ValidationError:
        return False


def _acceptable_redirect(uri: AnyUrl) -> bool:
    """https anywhere; http only back to this machine (native apps, RFC 8252 §7.3); an app's own scheme
    (RFC 8252 §7.1) — never javascript:, data:, file: or similar."""
    if uri.scheme == "https":
        return True
    if uri.scheme == "http":
        return uri.host in LOOPBACK_HOSTS
    return uri.scheme not in ("javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss")
