"""The demo's plain HTTP side: sign-in, tokens, the chat page and the
official SignalR browser bundle (served from node_modules, never copied).

Sign-in hardening:

* Failed password checks on ``/account/login`` and ``/api/token`` are
  throttled per account and per client address (``SignInThrottle``): 429 with
  ``Retry-After``, before the password is looked at; every failure is logged
  with the username and address (never the password).
* The sign-in and sign-out forms must be posted from this site: a foreign
  ``Origin`` (or, without one, ``Referer``) is refused with 403, so another
  site cannot sign a visitor in as the attacker (login CSRF) or out. A POST
  with neither header is allowed: browsers send ``Origin`` on every POST, so
  such a request is not a browser's, and only browsers can be tricked.
* Sign-out ends the session for good: the cookie's session id is revoked
  (a copy of the cookie gets 401 everywhere) and the session's live hub
  connections are closed.
* The cookie is ``Secure`` when the browser's connection is TLS (the request's
  scheme, or ``X-Forwarded-Proto`` from a trusted proxy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from triohub import HubServer, Principal, email_user_id
from triohub.auth.authenticator import AuthenticationFailed, AuthenticationRefused
from triohub.auth.cookie import CookieAuthenticator
from triohub.auth.origin import check_form_origin
from triohub.auth.proxy import TrustedProxies
from triohub.auth.request import RequestInfo
from triohub.auth.throttle import SignInLimiter, SignInThrottle
from triohub.auth.user_id import resolve_user_id
from triohub.backplane import BackplaneUnavailable
from triohub.transports.http import Receive, Scope, Send, read_body, request_info, respond

from .chat import BanList
from .observability import PROMETHEUS_CONTENT_TYPE
from .users import MAX_TOKEN_LIFETIME, check_password, find_user, issue_token

log = logging.getLogger("demo")

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "static"
BUNDLE = ROOT.parent / "node_modules" / "@microsoft" / "signalr" / "dist" / "browser"

_STATIC_FILES = {
    "/app.js": (STATIC / "app.js", "text/javascript; charset=utf-8"),
    "/style.css": (STATIC / "style.css", "text/css; charset=utf-8"),
    "/lib/signalr.min.js": (BUNDLE / "signalr.min.js", "text/javascript; charset=utf-8"),
    "/lib/signalr.min.js.map": (BUNDLE / "signalr.min.js.map", "application/json"),
}
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class DemoWeb:
    """ASGI app for every non-hub path of the demo.

    Args:
        cookies: the session cookie scheme (the hubs use the same object).
        jwt_secret: signs ``/api/token`` tokens.
        server: the hub server whose connections sign-out closes.
        throttle: failed sign-in throttling (default ``SignInThrottle()``; a
            cluster's is ``RedisSignInThrottle``).
        proxies: reverse proxies whose ``X-Forwarded-*`` headers are believed.
        bans: the chat's ban list (renewal refuses a banned user).
        signed_out: tells the other nodes of a cluster that a session ended (they
            close its connections); ``None``: a single node.
    """

    def __init__(
        self,
        cookies: CookieAuthenticator,
        jwt_secret: str,
        *,
        server: HubServer | None = None,
        throttle: SignInLimiter | None = None,
        proxies: TrustedProxies | None = None,
        metrics: Callable[[], bytes] | None = None,
        bans: BanList | None = None,
        signed_out: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.cookies = cookies
        self.metrics = metrics
        """Prometheus text for ``GET /metrics``; ``None``: no such page (``--metrics`` is off)."""
        self._jwt_secret = jwt_secret
        self.server = server
        self.throttle: SignInLimiter = throttle if throttle is not None else SignInThrottle()
        self.bans = bans
        self.signed_out = signed_out
        self.proxies = proxies if proxies is not None else TrustedProxies()
        # Read once at start-up: no file I/O on the event loop per request, and a
        # missing browser bundle is reported at once.
        self._files: dict[Path, bytes] = {}
        pages = ["index.html", "login-failed.html", "login-throttled.html"]
        for path in [STATIC / page for page in pages] + [
            file for file, _ in _STATIC_FILES.values()
        ]:
            try:
                self._files[path] = path.read_bytes()
            except FileNotFoundError:
                log.error("missing %s (run `make demo`, which installs it)", path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            await self._serve(scope, receive, send)
        except BackplaneUnavailable as error:
            # A cluster's shared state (sessions, throttle, bans) cannot be read:
            # refuse rather than guess (each handler asks before it responds).
            log.warning("%s %s: %s", scope["method"], scope["path"], error)
            await respond(send, 503, b"Service Unavailable: try again shortly.")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/" and method in ("GET", "HEAD"):
            await self._file(send, STATIC / "index.html", "text/html; charset=utf-8")
        elif path in _STATIC_FILES and method in ("GET", "HEAD"):
            await self._file(send, *_STATIC_FILES[path])
        elif path == "/account/login" and method == "POST":
            await self._login(request_info(scope, None), receive, send)
        elif path == "/account/logout" and method == "POST":
            await self._logout(request_info(scope, None), send)
        elif path == "/api/token" and method == "POST":
            await self._token(request_info(scope, None), receive, send)
        elif path == "/account/renew" and method == "POST":
            await self._renew(request_info(scope, None), send)
        elif path == "/metrics" and method == "GET" and self.metrics is not None:
            await respond(send, 200, self.metrics(), content_type=PROMETHEUS_CONTENT_TYPE)
        elif path in ("/account/login", "/account/logout", "/account/renew", "/api/token", "/"):
            await respond(send, 405, b"Method Not Allowed", headers=[(b"allow", b"POST")])
        else:
            await respond(send, 404, b"Not Found")

    async def _file(self, send: Send, path: Path, content_type: str) -> None:
        body = self._files.get(path)
        if body is None:
            await respond(send, 500, f"missing {path.name}".encode())
            return
        await respond(
            send,
            200,
            body,
            content_type=content_type,
            headers=[*_SECURITY_HEADERS, (b"cache-control", b"no-cache")],
        )

    def _cross_site(self, request: RequestInfo) -> str | None:
        reason = check_form_origin(
            request,
            scheme=self.proxies.scheme(request),
            allowed_origins=self.cookies.allowed_origins,
        )
        if reason is not None:
            log.warning("%s %s refused: %s", request.method, request.path, reason)
        return reason

    def _secure(self, request: RequestInfo) -> bool:
        return self.proxies.scheme(request) == "https"

    async def _login(self, request: RequestInfo, receive: Receive, send: Send) -> None:
        if self._cross_site(request) is not None:
            await respond(send, 403, b"Forbidden: the form was not posted from this site.")
            return
        try:
            form = parse_qs((await read_body(receive, 16 * 1024)).decode("utf-8", "replace"))
        except Exception:
            await respond(send, 400, b"Bad Request")
            return
        username = (form.get("username") or [""])[0]
        password = (form.get("password") or [""])[0]
        address = self.proxies.client_address(request)
        # Nothing awaited between admit() and settle() but them: concurrent attempts
        # cannot all pass the throttle before one of them is counted.
        wait = await self.throttle.admit(username or None, address)
        if wait > 0:
            page = self._files.get(STATIC / "login-throttled.html", b"Too many attempts.")
            await respond(
                send,
                429,
                page,
                content_type="text/html; charset=utf-8",
                headers=[(b"retry-after", SignInThrottle.retry_after_header(wait))],
            )
            return
        user = check_password(username, password)
        await self.throttle.settle(username or None, address, succeeded=user is not None)
        if user is None:
            page = self._files.get(STATIC / "login-failed.html", b"Wrong username or password.")
            await respond(send, 401, page, content_type="text/html; charset=utf-8")
            return
        log.info("%r signed in from %s", user.username, address)
        cookie = self.cookies.issue(user.claims(), secure=self._secure(request))
        await respond(
            send, 303, b"", headers=[(b"location", b"/"), (b"set-cookie", cookie.encode())]
        )

    async def _logout(self, request: RequestInfo, send: Send) -> None:
        if self._cross_site(request) is not None:
            await respond(send, 403, b"Forbidden: the form was not posted from this site.")
            return
        principal = await self.cookies.end_session(request)
        if principal is not None:
            session = self.cookies.session_of(principal)
            closed = 0
            if self.server is not None and self.server.running:
                closed = await self.server.abort_connections(
                    lambda p: self.cookies.session_of(p) == session
                )
            if self.signed_out is not None and session is not None:
                await self.signed_out(session)
            log.info(
                "%r signed out (%d live connections closed)", principal.name_identifier, closed
            )
        clear = self.cookies.clear(secure=self._secure(request))
        await respond(
            send, 303, b"", headers=[(b"location", b"/"), (b"set-cookie", clear.encode())]
        )

    async def _renew(self, request: RequestInfo, send: Send) -> None:
        """A new cookie for the request's session: the same session id, the user's
        current claims, a full ``max_age`` ahead. The page asks for one before its
        session expires, then refreshes its hub connection in place with it
        (``POST /hubs/chat/refresh``). A session that ended, or whose
        credentials were revoked (``RevokeSessions``) or whose user is banned,
        is not renewed (401): renewal must not outrun a revocation."""
        if self._cross_site(request) is not None:
            await _json(
                send,
                403,
                {"error": "forbidden", "error_description": "Not posted from this site."},
            )
            return
        try:
            principal = await self.cookies.authenticate(request)
        except (AuthenticationFailed, AuthenticationRefused):
            principal = None
        session_id = None if principal is None else self.cookies.session_of(principal)
        user = None if principal is None else find_user(str(principal.claim("sub") or ""))
        if (
            principal is None
            or session_id is None
            or user is None
            or await self._refused(principal)
        ):
            await _json(
                send,
                401,
                {"error": "invalid_token", "error_description": "No session to renew."},
            )
            return
        cookie = self.cookies.issue(
            user.claims(), secure=self._secure(request), session_id=session_id
        )
        await _json(
            send,
            200,
            {"expires_in": self.cookies.max_age},
            headers=[(b"set-cookie", cookie.encode())],
        )

    async def _refused(self, principal: Principal) -> bool:
        """Whether the server refuses ``principal``'s credential (revoked) or user
        (banned, by the server or from the chat)."""
        name = principal.name_identifier
        if self.bans is not None and name is not None and await self.bans.contains(name):
            return True
        if self.server is None:
            return False
        user_id = await resolve_user_id(email_user_id, principal)  # the chat's user id
        state = self.server.authorizer.state
        return (
            state.is_banned(user_id) or state.revoked(principal, user_id, time.time()) is not None
        )

    async def _token(self, request: RequestInfo, receive: Receive, send: Send) -> None:
        try:
            document: Any = orjson.loads(await read_body(receive, 16 * 1024))
        except Exception:
            await _json(send, 400, {"error": "invalid_request", "error_description": "Send JSON."})
            return
        if not isinstance(document, dict):
            await _json(
                send, 400, {"error": "invalid_request", "error_description": "Send a JSON object."}
            )
            return
        lifetime = document.get("lifetime", 3600)
        if (
            isinstance(lifetime, bool)
            or not isinstance(lifetime, int)
            or not 1 <= lifetime <= MAX_TOKEN_LIFETIME
        ):
            await _json(
                send,
                400,
                {
                    "error": "invalid_request",
                    "error_description": f"lifetime must be 1..{MAX_TOKEN_LIFETIME} seconds.",
                },
            )
            return
        username, password = document.get("username"), document.get("password")
        account = username if isinstance(username, str) and username else None
        address = self.proxies.client_address(request)
        wait = await self.throttle.admit(account, address)
        if wait > 0:
            await _json(
                send,
                429,
                {
                    "error": "too_many_attempts",
                    "error_description": "Too many failed sign-ins; try again later.",
                },
                headers=[(b"retry-after", SignInThrottle.retry_after_header(wait))],
            )
            return
        user = (
            check_password(username, password)
            if isinstance(username, str) and isinstance(password, str)
            else None
        )
        await self.throttle.settle(account, address, succeeded=user is not None)
        if user is None:
            await _json(
                send,
                401,
                {"error": "invalid_grant", "error_description": "Wrong username or password."},
            )
            return
        log.info("%r was issued a token from %s", user.username, address)
        token = issue_token(user, self._jwt_secret, lifetime)
        await _json(
            send, 200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        )


async def _json(
    send: Send,
    status: int,
    document: dict[str, Any],
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await respond(
        send,
        status,
        orjson.dumps(document),
        content_type="application/json",
        headers=[(b"cache-control", b"no-store"), *(headers or [])],
    )
