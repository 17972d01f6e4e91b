"""Who may change things through the web view, and the headers that keep hostile page
content inert.

* **The token** (``CLAIMWIRE_WEB_TOKEN``) unlocks every change. The API takes it as
  ``Authorization: Bearer <token>``; a browser signs in once with it and gets a session
  cookie (signed with a key derived from the token, HttpOnly, SameSite=Strict). Without
  a token the service is read-only. Tokens and signatures are compared in constant time.
* **CSRF**: every form that changes state carries a token derived from the session
  cookie and checked on POST; the sign-in form (no session yet) carries a random value
  that must match a cookie of its own (double submit). POSTs whose ``Origin`` is another
  site are refused before that.
* **Host check**: bound to loopback, only loopback host names are served, so a web page
  that rebinds its own DNS name to 127.0.0.1 cannot read the researcher's data.
* **Headers**: a Content-Security-Policy with no inline script or style, no framing,
  no referrer, no MIME sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "claimwire_session"
PRESIGN_COOKIE = "claimwire_signin"
SESSION_SECONDS = 7 * 86400

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # links out to articles carry no referrer; a form posted here keeps its Origin
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """The token and the keys derived from it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._key = hashlib.sha256(b"claimwire-web-session\0" + token.encode()).digest()

    @property
    def writable(self) -> bool:
        return bool(self.token)

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str | None) -> bool:
        if not self.token or not given:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    # --- browser sessions
    def new_session(self) -> str:
        issued = str(int(time.time()))
        nonce = secrets.token_hex(8)
        return f"{issued}.{nonce}.{self._sign('session', issued + '.' + nonce)}"

    def session_ok(self, value: str | None) -> bool:
        if not self.token or not value or value.count(".") != 2:
            return False
        issued, nonce, signature = value.split(".")
        if not issued.isdigit() or not hmac.compare_digest(
            signature.encode(), self._sign("session", issued + "." + nonce).encode()
        ):
            return False
        return 0 <= time.time() - int(issued) <= SESSION_SECONDS

    def signed_in(self, request: Request) -> bool:
        return self.session_ok(request.cookies.get(SESSION_COOKIE))

    def csrf_for(self, request: Request) -> str:
        """The CSRF token of the forms shown to this browser session ("" when not
        signed in: no form that changes state is shown then)."""
        session = request.cookies.get(SESSION_COOKIE)
        if not self.session_ok(session):
            return ""
        return self._sign("csrf", session or "")

    def csrf_ok(self, request: Request, given: str | None) -> bool:
        expected = self.csrf_for(request)
        return bool(expected and given) and hmac.compare_digest(
            (given or "").encode(), expected.encode()
        )


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def same_origin(request: Request) -> bool:
    """A POST sent by a page of this site: the browser's ``Sec-Fetch-Site`` says so, or
    its ``Origin`` (else ``Referer``) names this host. A request naming neither (not a
    browser: curl, scripts) passes; the CSRF token or the bearer token still decide."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() == request.headers.get("host", "").lower()


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response, and refuses requests whose
    ``Host`` is not one this service answers to (``allowed_hosts``; empty: any)."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts:
            host = ""
            for name, value in scope.get("headers", []):
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            hostname = urlsplit("//" + host).hostname or "" if host else ""
            if hostname.lower() not in self.allowed_hosts:
                response = PlainTextResponse(
                    "unknown host name: this claimwire answers to "
                    + ", ".join(sorted(self.allowed_hosts))
                    + " (CLAIMWIRE_WEB_ALLOWED_HOSTS)",
                    status_code=400,
                    headers=SECURITY_HEADERS,
                )
                await response(scope, receive, send)
                return

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if key.encode() not in present:
                        headers.append((key.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


Handler = Callable[[Request], Awaitable[Response]]
