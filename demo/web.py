"""The demo's plain HTTP side: sign-in, tokens, the chat page and the
official SignalR browser bundle (served from node_modules, never copied)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from engine.auth.cookie import CookieAuthenticator
from engine.transports.http import Receive, Scope, Send, read_body, respond

from .users import check_password, issue_token

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
    """ASGI app for every non-hub path of the demo."""

    def __init__(self, cookies: CookieAuthenticator, jwt_secret: str) -> None:
        self.cookies = cookies
        self._jwt_secret = jwt_secret
        # Read once at start-up: no file I/O on the event loop per request, and a
        # missing browser bundle is reported at once.
        self._files: dict[Path, bytes] = {}
        for path in [STATIC / "index.html", STATIC / "login-failed.html"] + [
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
        path, method = scope["path"], scope["method"]
        if path == "/" and method in ("GET", "HEAD"):
            await self._file(send, STATIC / "index.html", "text/html; charset=utf-8")
        elif path in _STATIC_FILES and method in ("GET", "HEAD"):
            await self._file(send, *_STATIC_FILES[path])
        elif path == "/account/login" and method == "POST":
            await self._login(receive, send)
        elif path == "/account/logout" and method == "POST":
            await respond(
                send,
                303,
                b"",
                headers=[(b"location", b"/"), (b"set-cookie", self.cookies.clear().encode())],
            )
        elif path == "/api/token" and method == "POST":
            await self._token(receive, send)
        elif path in ("/account/login", "/account/logout", "/api/token", "/"):
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

    async def _login(self, receive: Receive, send: Send) -> None:
        try:
            form = parse_qs((await read_body(receive, 16 * 1024)).decode("utf-8", "replace"))
        except Exception:
            await respond(send, 400, b"Bad Request")
            return
        username = (form.get("username") or [""])[0]
        password = (form.get("password") or [""])[0]
        user = check_password(username, password)
        if user is None:
            page = self._files.get(STATIC / "login-failed.html", b"Wrong username or password.")
            await respond(send, 401, page, content_type="text/html; charset=utf-8")
            return
        cookie = self.cookies.issue(user.claims())
        await respond(
            send, 303, b"", headers=[(b"location", b"/"), (b"set-cookie", cookie.encode())]
        )

    async def _token(self, receive: Receive, send: Send) -> None:
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
            or not 1 <= lifetime <= 86400
        ):
            await _json(
                send,
                400,
                {
                    "error": "invalid_request",
                    "error_description": "lifetime must be 1..86400 seconds.",
                },
            )
            return
        username, password = document.get("username"), document.get("password")
        user = (
            check_password(username, password)
            if isinstance(username, str) and isinstance(password, str)
            else None
        )
        if user is None:
            await _json(
                send,
                401,
                {"error": "invalid_grant", "error_description": "Wrong username or password."},
            )
            return
        token = issue_token(user, self._jwt_secret, lifetime)
        await _json(
            send, 200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        )


async def _json(send: Send, status: int, document: dict[str, Any]) -> None:
    await respond(
        send,
        status,
        orjson.dumps(document),
        content_type="application/json",
        headers=[(b"cache-control", b"no-store")],
    )
