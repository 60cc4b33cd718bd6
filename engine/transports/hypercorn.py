"""Serving a ``SignalRApp`` (or any ASGI app) with hypercorn's trio worker."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.logging import Logger
from hypercorn.trio import serve

__all__ = ["ACCESS_LOG_FORMAT", "serve_hypercorn"]

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus'
"""Like hypercorn's default but with the path only: never the query string,
which carries ``access_token`` for browser WebSocket and SSE connections."""

_SAFE_ATOMS = ("h", "m", "U", "H", "s", "b", "D")


class RedactingLogger(Logger):
    """Hypercorn's logger with access-log records that hold no credentials.

    Hypercorn passes every request header, the query string and the whole
    environment as the record's arguments; a structured handler would ship
    them all. Only the atoms of ``ACCESS_LOG_FORMAT`` are kept.
    """

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        full = super().atoms(request, response, request_time)
        return {name: full[name] for name in _SAFE_ATOMS}


async def serve_hypercorn(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: logging.Logger | str | None = None,
    graceful_timeout: float = 5.0,
    shutdown_trigger: Any = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled or ``shutdown_trigger`` returns.

    Follows Trio's start protocol: ``host, port = await nursery.start(serve_hypercorn, app)``
    returns once the socket is bound (``port=0`` picks a free port).
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.access_log_format = ACCESS_LOG_FORMAT
    config.accesslog = access_log
    config.logger_class = RedactingLogger
    config.errorlog = logging.getLogger("triohub.hypercorn")
    # The hub enforces its own message size; let larger frames reach it so the
    # client gets the hub's error close instead of a bare socket error.
    config.websocket_max_message_size = 16 * 1024 * 1024
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=shutdown_trigger)
        )
        task_status.started(_address(binds[0]))


def _address(bind: str) -> tuple[str, int]:
    location = bind.split("://", 1)[-1]
    host, _, port = location.rpartition(":")
    return host.strip("[]"), int(port)
