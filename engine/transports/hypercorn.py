"""Serving a ``SignalRApp`` (or any ASGI app) with hypercorn's trio worker.

hypercorn's protocol stack (h11, wsproto, the ASGI streams, the lifespan) does
the work; the listening socket, the accept loop and the wall around each
connection are triohub's (``listening``), because hypercorn's own
(``hypercorn.trio.run.worker_serve`` on ``trio.serve_listeners``) let one
connection end the process and cannot be configured around it:

* pgjones/hypercorn#225: an upgrade request followed by more bytes in the same
  write drives h11 into its ERROR state; hypercorn's answer then raises
  ``h11.LocalProtocolError`` out of the connection task, into the listener's
  nursery, and the server exits. Reproduced with a bare ASGI app on hypercorn
  0.17.0, 0.17.3 and 0.18.0 (the newest at the time of writing); 0.14.4 and
  0.16.0 exit on the same bytes with ``AttributeError: 'WSStream' object has no
  attribute 'connection'``. Here the error ends that connection and is one
  INFO line.
* hypercorn shields every socket write with no deadline: a client that stops
  reading holds its connection (and what was queued for it) forever, past any
  hub timeout, and blocks shutdown. Here a write keeps its caller's deadline
  (the hub's ``send_timeout`` / ``close_timeout``, the graceful shutdown's),
  and ``write_timeout`` at most; a write that misses it closes the socket.
* Its accept loop logs an ERROR with a traceback every 100 ms while the process
  is out of file descriptors; here that is one WARNING per episode.
* The listen backlog is a parameter (hypercorn's default is 100).
* On a broken frame wsproto makes hypercorn drop the TCP connection without a
  close frame; here the client's frames pass ``FrameChecker`` first, and a
  broken one gets the 1002 close the native server sends (text that is not
  UTF-8 still ends the connection without a code: seeing it would mean
  decoding every message twice).
"""

from __future__ import annotations

import logging
import math
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.logging import Logger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveCallable,
    ASGISendCallable,
    ConnectionState,
    Scope,
)
from hypercorn.utils import wrap_app

from ..protocol.websocket import (
    BINARY,
    TEXT,
    FrameCache,
    FrameChecker,
    WebSocketError,
    close_frame,
)
from .listening import BACKLOG, accept_streams, listen_socket
from .pacing import ReadPacer
from .websocket import DIRECT_EXTENSION

__all__ = ["ACCESS_LOG_FORMAT", "serve_hypercorn"]

log = logging.getLogger("triohub.transports")

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus'
"""Like hypercorn's default but with the path only: never the query string,
which carries ``access_token`` for browser WebSocket and SSE connections."""

_SAFE_ATOMS = ("h", "m", "U", "H", "s", "b", "D")

WRITE_TIMEOUT = 30.0
"""Default ``write_timeout``: the longest one socket write may wait for a
client to read, when its caller set no shorter deadline."""


_CLOSE_WRITE = 1.0
"""Seconds the close frame of a client's protocol error may take to write."""

_WEBSOCKET_ACCEPTED = re.compile(
    rb"HTTP/1\.1 101 [^\r]*\r\n(?:[^\r]*\r\n)*?upgrade: *websocket\r\n", re.I
)
"""hypercorn's answer that makes the connection a WebSocket (not an h2c upgrade)."""


class RedactingLogger(Logger):
    """Hypercorn's logger with access-log records that hold no credentials.

    Hypercorn passes every request header, the query string and the whole
    environment as the record's arguments; a structured handler would ship
    them all. Only the atoms of ``ACCESS_LOG_FORMAT`` are kept.
    """

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        full = super().atoms(request, response, request_time)
        return {name: full[name] for name in _SAFE_ATOMS}


class DirectWebSocket:
    """Writes to the socket of one hypercorn WebSocket from the ASGI app, with
    no ASGI event, no wsproto and no task switch, when nothing is being written
    (``send_nowait``); what the kernel does not take at once is written before
    anything else, by ``flush`` (the app's writer, woken by ``attach``'s waker)
    or by hypercorn's next write. Never with permessage-deflate, nor once the
    client has sent its close frame: then ``send_nowait`` says ``False`` and the
    app sends ASGI events as usual."""

    __slots__ = ("attach", "flush", "send_nowait")

    def __init__(self, connection: _Connection) -> None:
        self.send_nowait: Callable[[bytes, bool], bool] = connection.direct_send
        """``(payload, binary) -> taken``: one whole message, or ``False``."""
        self.attach: Callable[[Callable[[], None]], None] = connection.direct_attach
        """Give the waker called when a write left bytes for ``flush``."""
        self.flush: Callable[[], Awaitable[None]] = connection.direct_flush
        """Write what a ``send_nowait`` left (the waker asked for it)."""


class _WithDirect:
    """hypercorn's app wrapper, with ``DIRECT_EXTENSION`` in WebSocket scopes."""

    def __init__(self, app: AppWrapper, connection: _Connection) -> None:
        self._app = app
        self._direct = DirectWebSocket(connection)

    async def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        if scope["type"] == "websocket":
            extensions = {**(scope.get("extensions") or {}), DIRECT_EXTENSION: self._direct}
            scope["extensions"] = extensions  # type: ignore[typeddict-item]
        await self._app(scope, receive, send, sync_spawn, call_soon)


class _Connection(TCPServer):
    """hypercorn's per-connection server with writes that end.

    hypercorn shields each write so that a cancelled sender never leaves half
    a frame on the wire. Kept, but the shield keeps the caller's deadline (and
    ``write_timeout`` at most): a write that misses it cannot leave a usable
    connection, so the socket is closed under it. The reader task then sees
    the close and tells the protocol, which tells the app, as for any
    dropped client.

    Once hypercorn has accepted a WebSocket, the client's frames are checked
    before wsproto reads them (see the module's docstring).
    """

    def __init__(
        self,
        *args: Any,
        write_timeout: float,
        peer: str,
        sock: socket.socket | None = None,
        frames: FrameCache | None = None,
    ) -> None:
        super().__init__(*args)
        self._write_timeout = write_timeout
        self._peer = peer
        self._sock = sock
        """The stream's own socket, for writes the kernel takes at once (see
        ``_write``); ``None``: every write goes through the stream."""
        self._frame_cache = frames if frames is not None else FrameCache()
        self._pacer = ReadPacer()
        """When the read loop, finding bytes waiting, yields (see ``_receive``)."""
        self._rest = b""
        """What the kernel did not take of a direct write: written before anything else."""
        self._waker: Callable[[], None] | None = None
        """Makes the hub connection's writer call ``direct_flush`` (``_rest`` waits)."""
        if sock is not None:
            self.app = _WithDirect(self.app, self)
        self._cut = False
        self._frames: FrameChecker | None = None
        """Checks the client's frames once the connection is a WebSocket."""

    async def _read_data(self) -> None:
        # hypercorn's loop, with the client's frames checked before wsproto
        # reads them: on a broken frame wsproto makes hypercorn drop the TCP
        # connection without a close frame; here the client gets the close
        # code RFC 6455 asks for (1002), as from the native server.
        while True:
            try:
                if self._sock is not None and not self.config.read_timeout:
                    data = await self._receive(self._sock)
                else:
                    with trio.fail_after(self.config.read_timeout or math.inf):
                        data = bytes(await self.stream.receive_some(MAX_RECV))
            except (
                trio.ClosedResourceError,
                trio.BrokenResourceError,
                trio.TooSlowError,
                OSError,
            ):
                break
            if self._frames is not None and data:
                try:
                    self._frames.feed(data)
                except WebSocketError as error:
                    await self._refuse(error)
                    break
            await self.protocol.handle(RawData(data))
            if not data:
                break
        await self.protocol.handle(Closed())

    async def _receive(self, sock: socket.socket) -> bytes:
        """What the kernel holds, read at once if it holds any: the stream's
        ``receive_some`` yields to the scheduler on every call and, with no
        read timeout, ``fail_after`` adds a cancel scope for nothing. A run of
        reads that never wait still yields as ``ReadPacer`` says (by reads and
        by bytes: one read can hand hypercorn 64 KB to parse)."""
        while True:
            try:
                data = sock.recv(MAX_RECV)
            except BlockingIOError:
                await self._pacer.wait_readable(sock)
                continue
            await self._pacer.pace(len(data))
            return data

    async def _refuse(self, error: WebSocketError) -> None:
        """Send the close frame of a client's protocol error; nothing after it."""
        log.info("closing a WebSocket from %s with %d: %s", self._peer, error.code, error.reason)
        async with self.send_lock:
            if not self._cut:
                self._cut = True
                with trio.CancelScope(
                    shield=True,
                    deadline=trio.current_time() + min(self._write_timeout, _CLOSE_WRITE),
                ):
                    try:
                        await self.stream.send_all(close_frame(error.code))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        if self._cut:
            await trio.lowlevel.checkpoint()
            return
        data = event.data
        if self._frames is None and _WEBSOCKET_ACCEPTED.match(data):
            head = data.partition(b"\r\n\r\n")[0].lower()
            self._frames = FrameChecker(compressed=b"\r\nsec-websocket-extensions:" in head)
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        gone = False
        if self._sock is not None and not self._rest and not self.send_lock.locked():
            # Nothing is being written: hand the bytes to the kernel here. It
            # takes them whole nearly always, and then the write needs no lock,
            # no deadline and no trip through the scheduler (the stream's
            # ``send_all`` yields once per call): that trip and the per-write
            # cancel scopes were most of what a broadcast delivery cost on
            # hypercorn (benchmarks/README.md). The rest, if any, goes the
            # guarded way below, before anything else can be written.
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent, gone = 0, True
            if gone:
                await self.protocol.handle(Closed())
                return
            if sent == len(data):
                return
            data = data[sent:]
        async with self.send_lock:
            if self._rest:  # what a direct write left: it goes first
                data, self._rest = self._rest + data, b""
            if not data or self._cut:
                return
            now = trio.current_time()
            deadline = min(trio.current_effective_deadline(), now + self._write_timeout)
            if deadline <= now:
                # A cancelled caller (its connection is ending): a write
                # begun now could only be cut halfway.
                await self._cut_off(None)
                return
            with trio.CancelScope(shield=True, deadline=deadline) as write:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    gone = True
                except trio.BusyResourceError:
                    # hypercorn's close (``send_eof``) is running: the
                    # connection is ending, which is all this write can learn.
                    gone = True
            if write.cancelled_caught:
                await self._cut_off(deadline - now)
        if gone:
            await self.protocol.handle(Closed())

    # -- the ``triohub.websocket.direct`` extension (``DirectWebSocket``) --------

    def direct_send(self, payload: bytes, binary: bool) -> bool:
        """Write ``payload`` as one WebSocket message now, if nothing is being
        written and the kernel takes at least part of it; ``False``: not taken."""
        frames = self._frames
        if (
            self._sock is None
            or frames is None
            or frames.compressed
            or frames.closing
            or self._cut
            or self._rest
            or self.send_lock.locked()
        ):
            return False
        frame = self._frame_cache.frame(BINARY if binary else TEXT, payload)
        try:
            sent = self._sock.send(frame)
        except OSError:  # full (BlockingIOError) or gone: the guarded way finds out
            return False
        if sent < len(frame):
            self._rest = frame[sent:]
            if self._waker is not None:
                self._waker()
        return True

    def direct_attach(self, waker: Callable[[], None]) -> None:
        self._waker = waker

    async def direct_flush(self) -> None:
        await self._write(b"")

    async def _cut_off(self, waited: float | None) -> None:
        """Close the socket under a write that cannot finish (``waited``: how
        long it waited; ``None``: it was not begun)."""
        self._cut = True
        if waited is not None:
            log.info(
                "closed the connection from %s: a write waited %.3gs, its deadline "
                "(the client does not read)",
                self._peer,
                waited,
            )
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


async def serve_hypercorn(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backlog: int = BACKLOG,
    access_log: logging.Logger | str | None = None,
    graceful_timeout: float = 5.0,
    write_timeout: float = WRITE_TIMEOUT,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled or ``shutdown_trigger`` returns.

    Follows Trio's start protocol: ``host, port = await nursery.start(serve_hypercorn, app)``
    returns once the socket is bound (``port=0`` picks a free port).

    Args:
        app: an ASGI app (``SignalRApp``); its lifespan runs here.
        host: the address to listen on.
        port: the port (0: any free one).
        backlog: the listen backlog (connections the kernel queues before
            they are accepted).
        access_log: hypercorn's access log (a logger or a file name; ``None``: off).
        graceful_timeout: seconds open connections get to end after shutdown starts.
        write_timeout: the longest one socket write may wait for a client that
            does not read (the hubs' own ``send_timeout`` applies first).
        shutdown_trigger: shut down gracefully when this returns.
        reuse_port: share the port with other processes (``SO_REUSEPORT``).

    Raises:
        ListenError: the address cannot be bound (an ``OSError``).
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.backlog = backlog
    config.graceful_timeout = graceful_timeout
    config.access_log_format = ACCESS_LOG_FORMAT
    config.accesslog = access_log
    config.logger_class = RedactingLogger
    config.errorlog = logging.getLogger("triohub.hypercorn")
    # The hub enforces its own message size; let larger frames reach it so the
    # client gets the hub's error close instead of a bare socket error.
    config.websocket_max_message_size = 16 * 1024 * 1024
    listener = listen_socket(host, port, backlog, server="hypercorn", reuse_port=reuse_port)
    try:
        await _serve(
            wrap_app(app, config.wsgi_max_body_size, "asgi"),
            config,
            trio.socket.from_stdlib_socket(listener),
            write_timeout=write_timeout,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )
    finally:
        listener.close()


async def _serve(
    app: Any,
    config: Config,
    listener: trio.socket.SocketType,
    *,
    write_timeout: float,
    shutdown_trigger: Callable[[], Awaitable[object]] | None,
    task_status: trio.TaskStatus[tuple[str, int]],
) -> None:
    """hypercorn's ``worker_serve`` for one plain TCP listener: lifespan,
    accepting, graceful shutdown; with triohub's accept loop and connections."""
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    host, port = listener.getsockname()[:2]
    name = f"hypercorn on {host}:{port}"
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            connection = partial(
                _Connection, app, config, context, ConnectionState(lifespan_state.copy())
            )
            task_status.started((str(host), int(port)))
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            accept_streams,
                            listener,
                            server_nursery,
                            partial(_run, connection, write_timeout, FrameCache()),
                            name=name,
                            what="hypercorn connection",
                        )
                    )
                    if shutdown_trigger is not None:
                        await shutdown_trigger()
                    else:
                        await trio.sleep_forever()
                    accepting.cancel_scope.cancel()
            finally:
                # hypercorn's graceful shutdown: idle connections close now,
                # the others get ``graceful_timeout``.
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _run(
    connection: Callable[..., _Connection],
    write_timeout: float,
    frames: FrameCache,
    stream: trio.SocketStream,
    peer: str,
) -> None:
    # The connection's socket as a standard socket under a new stream (the
    # accepted one is left empty, and closing it closes nothing): writes the
    # kernel takes at once go to it directly (``_Connection.protocol_send``).
    accepted = stream.socket
    sock = socket.socket(accepted.family, accepted.type, accepted.proto, fileno=accepted.detach())
    sock.setblocking(False)
    own = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    try:
        await connection(
            own, write_timeout=write_timeout, peer=peer, sock=sock, frames=frames
        ).run()
    finally:
        await trio.aclose_forcefully(own)
