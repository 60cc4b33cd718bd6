"""Which site a browser request comes from: the ``Origin`` check against
cross-site WebSocket hijacking (cookie scheme) and against cross-site form
posts to sign-in and sign-out (login CSRF).

An HTML form on any site can POST to ``/account/login`` with the attacker's
own credentials: the victim's browser then holds the attacker's session
(and types into the attacker's chat). SameSite cookies do not help, since
the request needs no cookie. Browsers name the page that sent a POST in
``Origin`` (every current browser, on every POST), falling back to
``Referer`` for the oldest; ``check_form_origin`` compares it to this site.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from .request import RequestInfo

__all__ = ["check_form_origin", "normalize_origin", "own_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case with the default port dropped, or
    ``None`` when ``value`` is not an http(s) origin (``null``, garbage)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(request: RequestInfo, scheme: str | None = None) -> str | None:
    """This site's origin as the browser sees it: ``scheme`` (default: the
    request's, ``ws``/``wss`` as ``http``/``https``) and the ``Host`` header."""
    hosts = request.headers.get("host", ())
    if len(hosts) != 1:
        return None
    if scheme is None:
        scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)
    return normalize_origin(f"{scheme}://{hosts[0]}")


def check_form_origin(
    request: RequestInfo,
    *,
    scheme: str | None = None,
    allowed_origins: Collection[str] = (),
) -> str | None:
    """Whether a state-changing form POST comes from this site.

    Args:
        request: the POST.
        scheme: the scheme the browser used, when a trusted proxy terminated
            TLS (``TrustedProxies.scheme``); default: the request's own.
        allowed_origins: other origins whose pages may post (``https://app.example``).

    Returns:
        ``None`` when the request may proceed, else why it must be refused
        (403; safe to log: no credential in it).

    ``Origin`` decides when present; ``Origin: null`` (sandboxed frames,
    ``data:`` pages, some cross-site redirects) is refused. Without it the
    ``Referer``'s origin decides. With neither the request is allowed: it
    cannot come from a browser posting a form (browsers send ``Origin`` on
    every POST), and non-browser clients cannot be tricked into posting.
    """
    origins = request.headers.get("origin", ())
    referers = request.headers.get("referer", ())
    if len(origins) > 1 or len(referers) > 1:
        return "more than one Origin or Referer header"
    if origins:
        claimed, what = origins[0], "Origin"
    elif referers:
        claimed, what = referers[0], "Referer"
    else:
        return None
    origin = normalize_origin(claimed)
    if origin is None:
        return f"the {what} is not an http(s) origin"
    if origin == own_origin(request, scheme):
        return None
    allowed = {normalize_origin(o) for o in allowed_origins} - {None}
    if origin in allowed:
        return None
    return f"the {what} is another site"
