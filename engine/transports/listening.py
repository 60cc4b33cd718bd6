"""What every server of triohub does the same way around ``accept``: the
listening socket (its backlog), the pace of accepting when the process is out
of file descriptors, and the wall around each connection.

* ``listen_socket`` binds a listener with an explicit backlog (default
  ``BACKLOG``; hypercorn's and trio's defaults are 100 and 128, which a burst of
  reconnecting clients overflows), logs ``<server> listening on http://HOST:PORT``
  and turns a failure to bind into a ``ListenError`` that names the address.
* ``AcceptPacer``: ``accept`` failing with EMFILE / ENFILE / ENOMEM / ENOBUFS is
  one WARNING per episode (not one per retry, and never a traceback), retries
  back off from 10 ms to 1 s, and one line says when accepting works again.
* ``isolated``: no exception of one connection, raised by our code or by a
  library under it (hypercorn, h11, wsproto, trio-websocket), reaches the
  listener's nursery: it ends that connection and is one log line.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NoReturn

import trio

__all__ = [
    "BACKLOG",
    "AcceptPacer",
    "ListenError",
    "accept_streams",
    "http_address",
    "isolated",
    "listen_socket",
]

log = logging.getLogger("triohub.transports")

BACKLOG = 1024
"""Default listen backlog of every server (the kernel caps it at
``net.core.somaxconn``)."""

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""``accept`` errors that say "not now" (the process or the system is out of
descriptors or buffers) rather than "never"."""

_FIRST_PAUSE = 0.01
_LONGEST_PAUSE = 1.0


class ListenError(OSError):
    """A server could not listen on its address (port in use, an address this
    host does not have, a name that does not resolve, a port it may not use).

    ``str(error)`` is one line naming the address and the cause, e.g.
    ``cannot listen on http://127.0.0.1:8000: the port is in use by another process``.
    It is an ``OSError`` (with the original ``errno``), so code that caught
    ``OSError`` from the servers keeps working.
    """

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        self.host = host
        self.port = port
        self.address = http_address(host, port)
        """``http://HOST:PORT`` (IPv6 hosts in brackets)."""
        self.reason = _bind_failure(cause)
        """The cause in words: ``the port is in use by another process``."""
        super().__init__(cause.errno, f"cannot listen on {self.address}: {self.reason}")

    def __str__(self) -> str:
        return str(self.strerror)


def http_address(host: str, port: int) -> str:
    """``http://HOST:PORT``, with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind_failure(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return f"the host name does not resolve ({error.strerror})"
    if error.errno == errno.EADDRINUSE:
        return "the port is in use by another process"
    if error.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address"
    if error.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return error.strerror or str(error)


def listen_socket(
    host: str,
    port: int,
    backlog: int = BACKLOG,
    *,
    server: str = "triohub",
    reuse_port: bool = False,
) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (``port=0`` picks one).

    Logs ``<server> listening on http://HOST:PORT`` (INFO, logger
    ``triohub.transports``) with the port actually bound.

    Args:
        host: the address (or a name that resolves to one).
        port: the port; 0 picks a free one.
        backlog: the listen backlog.
        server: how the log line names the server (``"hypercorn"``, ``"native server"``).
        reuse_port: ``SO_REUSEPORT``: several processes bind the same port and
            the kernel spreads new connections over them (``demo --workers``).

    Raises:
        ValueError: ``backlog`` below 1.
        ListenError: the address cannot be bound.
    """
    if backlog < 1:
        raise ValueError(f"backlog must be at least 1, got {backlog!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind((host, port))
            listener.listen(backlog)
        except OSError as error:
            raise ListenError(host, port, error) from error
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    log.info("%s listening on %s", server, http_address(host, listener.getsockname()[1]))
    return listener


class AcceptPacer:
    """Paces a listener's accept loop through "out of descriptors" episodes.

    ``await pacer.failed(error)`` after an ``accept`` raised ``OSError`` (it
    re-raises anything that is not a capacity error), ``pacer.accepted()``
    after one worked. One pacer per listener.

    Args:
        name: how the log lines name the listener (e.g. ``"hypercorn 127.0.0.1:8000"``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        """Failed accepts in the current episode (0: accepting normally)."""
        self._pause = _FIRST_PAUSE

    async def failed(self, error: OSError) -> None:
        """Log the start of an episode, then sleep, longer each time.

        Raises:
            OSError: ``error`` itself when it is not a capacity error.
        """
        if error.errno not in CAPACITY_ERRNOS:
            raise error
        if not self.failures:
            log.warning(
                "%s: accept failed with %s (%s); new connections wait until it works again",
                self.name,
                errno.errorcode.get(error.errno or 0, error.errno),
                os.strerror(error.errno or 0),
            )
        self.failures += 1
        await trio.sleep(self._pause)
        self._pause = min(self._pause * 2, _LONGEST_PAUSE)

    def accepted(self) -> None:
        """An accept worked: end the episode, if one was running."""
        if self.failures:
            log.warning("%s: accepting again after %d failed tries", self.name, self.failures)
            self.failures = 0
            self._pause = _FIRST_PAUSE


def describe(error: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, at most ``limit`` characters of it (the
    message may carry client bytes)."""
    text = f"{type(error).__name__}: {error}".replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CLIENT_ERRORS: tuple[type[BaseException], ...] = ()
try:  # the protocol libraries under hypercorn and trio-websocket, if installed
    import h11
    import wsproto.utilities

    _CLIENT_ERRORS = (
        h11.ProtocolError,
        wsproto.utilities.LocalProtocolError,
        wsproto.utilities.RemoteProtocolError,
    )
except ImportError:  # pragma: no cover - both come with hypercorn
    pass


async def isolated(
    serve: Callable[[], Awaitable[object]], peer: str, what: str = "connection"
) -> None:
    """Run one connection's ``serve`` so that nothing it raises escapes.

    A protocol library's error (a client drove it into a state it does not
    handle, e.g. hypercorn#225) is an INFO line; anything else an ERROR line
    (the traceback only when DEBUG is on: a client that can trigger it could
    otherwise fill the log). Cancellation and ``KeyboardInterrupt`` pass.

    Args:
        serve: the connection's whole life.
        peer: the client's address, for the log line.
        what: what the connection is, for the log line.
    """
    try:
        await serve()
    except BaseException as raised:
        # Errors pass no further; cancellation and KeyboardInterrupt do, even
        # out of a group that also holds errors.
        errors: BaseException | None
        passing: BaseException | None
        if isinstance(raised, BaseExceptionGroup):
            errors, passing = raised.split(Exception)
        elif isinstance(raised, Exception):
            errors, passing = raised, None
        else:
            raise
        if errors is not None:
            _log_failure(errors, peer, what)
        if passing is not None:
            raise passing from None


def _log_failure(error: BaseException, peer: str, what: str) -> None:
    # Even a group of errors is one line: its first leaf names it.
    leaf = error
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, _CLIENT_ERRORS):
        log.info("%s from %s ended by a protocol error: %s", what, peer, describe(leaf))
    else:
        log.error(
            "%s from %s failed: %s",
            what,
            peer,
            describe(leaf),
            exc_info=error if log.isEnabledFor(logging.DEBUG) else None,
        )


async def accept_streams(
    listener: trio.socket.SocketType,
    nursery: trio.Nursery,
    serve: Callable[[trio.SocketStream, str], Awaitable[object]],
    *,
    name: str,
    what: str,
) -> NoReturn:
    """Accept forever; run ``serve(stream, peer)`` for each connection in
    ``nursery``, ``isolated``, and close the stream after it.

    Args:
        listener: a listening trio socket.
        nursery: where the connections run (it may outlive this loop, for a
            graceful shutdown).
        serve: one connection's life.
        name: the listener, for the log lines of ``AcceptPacer``.
        what: what a connection is, for the log lines of ``isolated``.
    """
    pacer = AcceptPacer(name)
    while True:
        try:
            sock, address = await listener.accept()
        except OSError as error:
            await pacer.failed(error)
            continue
        pacer.accepted()
        nursery.start_soon(_serve_stream, serve, trio.SocketStream(sock), peer_name(address), what)


async def _serve_stream(
    serve: Callable[[trio.SocketStream, str], Awaitable[object]],
    stream: trio.SocketStream,
    peer: str,
    what: str,
) -> None:
    try:
        await isolated(partial(serve, stream, peer), peer, what=what)
    finally:
        await trio.aclose_forcefully(stream)


def peer_name(address: Any) -> str:
    """``host:port`` of a socket address."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
