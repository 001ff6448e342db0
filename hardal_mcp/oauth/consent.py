"""The page a person sees when an app asks to use this server (/consent), and the per-address limits in front
of the authorization endpoints.

The SDK's /authorize validates the app's request and sends the person here (`provider.authorize`). The page
names the app and where it will send them back, and asks for their Hardal API key and, optionally, a default
website. Nothing is issued before Hardal accepts the key (one request, `HardalClient.vouch`); a refused key is
said on the page, where the person can fix it, not sent back to the app as an error code nobody reads.

The page is ours alone: server-rendered, every value escaped, no script and no external asset, a strict
Content-Security-Policy (one style by nonce, form posts only to itself and, for the redirect that follows, to
the app's own origin), never framed, never cached. The form carries a CSRF token that must match a cookie set
with the page (SameSite=Strict), and a cross-origin post is refused outright."""

from __future__ import annotations

import hmac
import html
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InputError
from ..params import check_id
from .provider import SCOPE, HardalOAuthProvider, Pending, Refused

log = logging.getLogger(__name__)

CONSENT_PATH = "/consent"
CSRF_COOKIE = "hardal_consent_csrf"
MAX_KEY_LENGTH = 512


class Consent:
    """The /consent endpoint (GET shows the page, POST answers it) for `provider`. `default_website` is the
    server's HARDAL_WEBSITE_ID, offered in the form."""

    def __init__(self, provider: HardalOAuthProvider, *, default_website: str | None) -> None:
        self.provider = provider
        self.default_website = default_website
        self._secure = provider.issuer.startswith("https://")

    async def handle(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._answer(request)
        pending = await self.provider.pending(request.query_params.get("request", ""))
        if pending is None:
            return _gone()
        return self._page(pending, website=self.default_website or "")

    async def _answer(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != _origin(self.provider.issuer):
            return _plain(403, "Refused: this form may only be sent from its own page.")
        form = await request.form()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        pending = await self.provider.pending(fields.get("request", ""))
        if pending is None:
            return _gone()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = fields.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
            return _plain(403, "Refused: the form's security token did not match. Reload the page and try again.")
        if fields.get("action") == "deny":
            return _back(await self.provider.deny(pending))
        website = fields.get("website_id", "").strip()
        key = fields.get("api_key", "").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            return self._page(pending, website=website, problem="Paste your Hardal API key.")
        try:
            chosen = check_id("website_id", website) if website else self.default_website
            url = await self.provider.approve(pending, SecretStr(key), chosen)
        except InputError:
            return self._page(pending, website="", problem="That website id is not one Hardal uses; copy it exactly.")
        except Refused as exc:
            return self._page(pending, website=website, problem=exc.message)
        return _back(url)

    def _page(self, pending: Pending, *, website: str, problem: str | None = None) -> Response:
        csrf = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(16)
        body = render(pending, csrf=csrf, nonce=nonce, website=website, problem=problem, default=self.default_website)
        response = HTMLResponse(body, status_code=400 if problem else 200, headers=_headers(nonce, pending))
        response.set_cookie(
            CSRF_COOKIE, csrf, path=CONSENT_PATH, httponly=True, samesite="strict", secure=self._secure, max_age=900
        )
        return response


def render(pending: Pending, *, csrf: str, nonce: str, website: str, problem: str | None, default: str | None) -> str:
    """The consent page's HTML: every value from the app or the person escaped."""
    e = html.escape
    name = e(pending.client_name[:100])
    notice = f'<p class="problem" role="alert">{e(problem)}</p>' if problem else ""
    hint = (
        f"Leave empty to use this server's default, {e(default)}."
        if default
        else "Required: the key is checked against it."
    )
    optional = " <small>(optional)</small>" if default else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Connect {name} to Hardal analytics</title>
<style nonce="{nonce}">
:root {{ color-scheme: light dark; font-family: system-ui, sans-serif; }}
body {{ max-width: 30rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.45; }}
h1 {{ font-size: 1.35rem; margin-bottom: .25rem; }}
.who {{ color: GrayText; margin-top: 0; }}
label {{ display: block; font-weight: 600; margin-top: 1rem; }}
input[type=password], input[type=text] {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }}
small {{ color: GrayText; }}
.problem {{ border-left: 4px solid #c62828; padding: .5rem .75rem;
  background: color-mix(in srgb, #c62828 12%, Canvas); }}
.buttons {{ display: flex; gap: .75rem; margin-top: 1.5rem; }}
button {{ font: inherit; padding: .5rem 1.25rem; cursor: pointer; }}
button[value=allow] {{ font-weight: 600; }}
</style></head>
<body><main>
<h1>Connect <strong>{name}</strong> to Hardal analytics</h1>
<p class="who">It will be sent back to <strong>{e(pending.redirect_host)}</strong> and may read your website's
sessions through this server ({e(" ".join(pending.params.scopes or [SCOPE]))}, read-only).
Continue only if you started this from that app.</p>
{notice}
<form method="post" action="{CONSENT_PATH}" autocomplete="off">
<input type="hidden" name="request" value="{e(pending.id)}">
<input type="hidden" name="csrf" value="{e(csrf)}">
<label for="api_key">Hardal API key</label>
<input id="api_key" name="api_key" type="password" maxlength="{MAX_KEY_LENGTH}" spellcheck="false" autofocus>
<small>In Hardal: signal → Settings → Security → API Keys. It is checked with Hardal now, kept encrypted on this
server, and never shown to {name}.</small>
<label for="website_id">Default website id{optional}</label>
<input id="website_id" name="website_id" type="text" maxlength="128" spellcheck="false" value="{e(website)}">
<small>{hint}</small>
<div class="buttons">
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</div>
</form></main></body></html>
"""


def _headers(nonce: str, pending: Pending | None) -> dict[str, str]:
    # After the post, the browser follows a redirect to the app: form-action must allow its origin.
    targets = "'self'"
    if pending is not None:
        uri = urlsplit(str(pending.params.redirect_uri))
        targets += f" {uri.scheme}://{uri.netloc}" if uri.scheme in ("http", "https") else f" {uri.scheme}:"
    policy = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # Not no-referrer: with it, Chromium sends `Origin: null` on the form's post, which the Origin check refuses.
        # same-origin still keeps the page's address (the request id in it) from the app it redirects to.
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _gone() -> Response:
    return _plain(400, "This sign-in request has expired or was already answered. Start again from your app.")


def _plain(status: int, message: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hardal analytics</title></head>'
        f"<body><main><p>{html.escape(message)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_headers(nonce, None))


def _back(url: str) -> Response:
    return RedirectResponse(
        url, status_code=303, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` requests per `seconds` from one address."""

    count: int
    seconds: float


# Per client address: registrations, authorization requests, and consent answers (each a guess at a key).
LIMITS = {
    ("POST", "/register"): Limit(10, 3600.0),
    ("GET", "/authorize"): Limit(60, 600.0),
    ("POST", "/authorize"): Limit(60, 600.0),
    ("POST", CONSENT_PATH): Limit(10, 600.0),
}
MAX_ADDRESSES = 50_000  # addresses remembered per endpoint; the oldest go first


class PerAddressLimits:
    """Answers 429 once an address exceeds its `Limit` on an endpoint (this process's count: behind several
    replicas each counts its own). The address is the connection's, which uvicorn takes from X-Forwarded-For
    when the proxy is trusted (FORWARDED_ALLOW_IPS)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: dict[tuple[str, str], Limit] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limits = LIMITS if limits is None else limits
        self._clock = clock
        self._seen: dict[tuple[str, str], dict[str, deque[float]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = (scope["method"], scope["path"].rstrip("/") or "/")
            limit = self.limits.get(route)
            if limit is not None and not self._admit(route, scope, limit):
                log.warning("OAuth: too many %s %s from one address; refused", *route)
                await _too_many(route, limit)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _admit(self, route: tuple[str, str], scope: Scope, limit: Limit) -> bool:
        client = scope.get("client")
        address = client[0] if client else "?"
        now = self._clock()
        seen = self._seen.setdefault(route, {})
        times = seen.pop(address, None) or deque()
        seen[address] = times  # most recent last: the oldest addresses are dropped first
        while times and now - times[0] >= limit.seconds:
            times.popleft()
        if len(seen) > MAX_ADDRESSES:
            del seen[next(iter(seen))]
        if len(times) >= limit.count:
            return False
        times.append(now)
        return True


def _too_many(route: tuple[str, str], limit: Limit) -> Response:
    retry = {"Retry-After": str(int(limit.seconds))}
    description = "Too many requests from this address; try again later."
    if route[1] == CONSENT_PATH:
        response = _plain(429, "Too many attempts from your address. Wait a few minutes, then start again.")
        response.headers.update(retry)
        return response
    body = {"error": "temporarily_unavailable", "error_description": description}
    return JSONResponse(body, status_code=429, headers={**retry, "Cache-Control": "no-store"})
