"""HTTP/1.1 on one accepted, non-blocking socket for triohub's own server: requests
read by h11, answers written straight to the socket.

h11 does the parsing and its checks (RFC 9112): the request line and methods as
tokens, header names as tokens, no control characters in values, exactly one Host
in an HTTP/1.1 request, at most one Host in any, a bounded head (431 past
``HEAD_LIMIT``), chunked or Content-Length bodies, keep-alive and the end of a
connection. Added here: absolute-form targets are reduced to their path and query
(RFC 9112 3.2.2), other non-origin forms are refused, and a request framed both by
``Transfer-Encoding`` and ``Content-Length`` is refused (a proxy may frame it the
other way: request smuggling). A refused request gets the status h11 suggests,
an empty body and ``Connection: close``, as hypercorn answers it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from http import HTTPStatus

import h11
import trio

from .actions import BOTH_FRAMINGS, HttpRequest, Respond
from .http import origin_form, parse_headers, route_path

__all__ = ["HEAD_LIMIT", "REQUEST_TIMEOUT", "BadRequest", "HttpWire"]

HEAD_LIMIT = 16 * 1024
"""Largest request line + headers; beyond it 431."""
REQUEST_TIMEOUT = 10.0
"""Seconds a started request may take to arrive whole, and an answer to be taken."""
_RECEIVE_SIZE = 65536
_UNREAD_LIMIT = 64 * 1024
"""Bytes a client may send ahead while its request is being answered (a poll, a
stream) before the connection is dropped."""

Header = tuple[bytes, bytes]


class BadRequest(Exception):
    """A request refused before it reaches the endpoint."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class HttpWire:
    """The HTTP side of one connection: one request at a time, until it upgrades
    or closes. Also the ``sse.ResponseStream`` of a streamed answer.

    Args:
        sock: the connected, non-blocking socket (the caller closes it).
        client: its peer's address.
    """

    def __init__(self, sock: socket.socket, client: tuple[str, int] | None = None) -> None:
        self.sock = sock
        self.client = client
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        self._ahead = 0
        self._declared = 0
        self.raw_path = b"/"
        """The last request's target path, as sent (for a fallback app)."""
        self.raw_query = b""
        self.raw_headers: list[Header] = []
        self.method = "GET"

    # -- reading -----------------------------------------------------------------

    async def _recv(self) -> bytes:
        """The next bytes from the client; ``b""`` at its end."""
        while True:
            try:
                return self.sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError:
                return b""

    async def _next_event(self) -> object:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._h11.receive_data(await self._recv())

    async def read_request(self) -> HttpRequest | None:
        """The next request's head; ``None`` when the client closed the connection
        between requests.

        Raises:
            BadRequest: refused (answer with ``refuse``).
        """
        try:
            event = await self._next_event()
        except h11.RemoteProtocolError as error:
            raise BadRequest(error.error_status_hint) from None
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        assert isinstance(event, h11.Request)
        if event.http_version not in (b"1.0", b"1.1"):
            raise BadRequest(400)
        raw_headers = list(event.headers)
        # h11 bounds a head that arrives in pieces; one that came whole is measured here.
        if len(event.target) + sum(len(n) + len(v) + 4 for n, v in raw_headers) > HEAD_LIMIT:
            raise BadRequest(431)
        target = origin_form(event.target)
        if not target.startswith(b"/"):
            raise BadRequest(400)
        raw_path, _, raw_query = target.partition(b"?")
        headers = parse_headers(raw_headers)
        if "transfer-encoding" in headers and "content-length" in headers:
            raise BadRequest(400, BOTH_FRAMINGS)
        self.raw_path, self.raw_query, self.raw_headers = raw_path, raw_query, raw_headers
        length = headers.get("content-length", ("0",))[0]
        self._declared = int(length) if length.isdigit() else 0
        self.method = event.method.decode("ascii")
        return HttpRequest(
            method=self.method,
            path=route_path(raw_path.decode("latin-1")),
            query=raw_query.decode("latin-1"),
            headers=headers,
            http_version=event.http_version.decode("ascii"),
            websocket=self.method == "GET"
            and "websocket" in _tokens(headers.get("upgrade", ()))
            and "upgrade" in _tokens(headers.get("connection", ())),
            client=self.client,
        )

    async def read_body(self, limit: int | None) -> bytes | None:
        """The request's body; ``None`` past ``limit`` bytes (end the connection then).

        Raises:
            BadRequest: a malformed body (chunked framing).
            trio.BrokenResourceError: the client left mid-body.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as error:
                raise BadRequest(error.error_status_hint) from None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if limit is not None and size > limit:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise trio.BrokenResourceError("the client left mid-body")

    async def next_cycle(self) -> bool:
        """After an answer: ready for the next request on this connection (the rest
        of this one's body read and dropped), or ``False`` to close it."""
        if self._h11.their_state is h11.SEND_BODY:
            if self._declared > _UNREAD_LIMIT:
                return False
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    if await self.read_body(_UNREAD_LIMIT) is None:
                        return False
            except (BadRequest, trio.BrokenResourceError, trio.TooSlowError):
                return False
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._ahead = 0
            return True
        return False

    async def wait_disconnect(self) -> None:
        """Returns when the client closes its side, or has sent too much ahead
        while its request is being answered."""
        while data := await self._recv():
            self._ahead += len(data)
            if self._ahead > _UNREAD_LIMIT:
                return
            self._h11.receive_data(data)

    # -- writing -----------------------------------------------------------------

    async def send_all(self, data: bytes) -> None:
        """Write it all within ``REQUEST_TIMEOUT``.

        Raises:
            trio.TooSlowError: the client does not read.
            OSError: the connection broke.
        """
        with trio.fail_after(REQUEST_TIMEOUT):
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            view = view[sent:]

    async def respond(self, answer: Respond) -> None:
        """A complete answer."""
        headers = [
            (b"content-type", answer.content_type.encode("latin-1")),
            (b"content-length", str(len(answer.body)).encode()),
            *answer.headers,
        ]
        if answer.close:
            headers.append((b"connection", b"close"))
        data = self._h11.send(
            h11.Response(status_code=answer.status, headers=headers, reason=_reason(answer.status))
        )
        body = self._h11.send(h11.Data(data=answer.body)) if answer.body else b""
        end = self._h11.send(h11.EndOfMessage())
        await self.send_all(b"".join(x or b"" for x in (data, body, end)))

    async def refuse(self, error: BadRequest) -> None:
        """The answer to a request refused while being read (then close)."""
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(error.body)).encode()),
            (b"connection", b"close"),
        ]
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            data = self._h11.send(
                h11.Response(
                    status_code=error.status, headers=headers, reason=_reason(error.status)
                )
            )
            assert data is not None
            await self.send_all(data + error.body)

    async def switch_protocols(self, headers: list[Header]) -> bytes:
        """Send the 101 answer to an upgrade request; returns the bytes the client
        sent after its request (its first frames)."""
        data = self._h11.send(
            h11.InformationalResponse(status_code=101, headers=headers, reason=_reason(101))
        )
        assert data is not None
        await self.send_all(data)
        trailing, _ = self._h11.trailing_data
        return bytes(trailing)

    async def start(self, status: int, headers: Sequence[Header]) -> None:
        data = self._h11.send(
            h11.Response(status_code=status, headers=list(headers), reason=_reason(status))
        )
        assert data is not None
        await self.send_all(data)

    async def write(self, body: bytes) -> None:
        # No deadline of its own: the hub's send timeout bounds a stream's writes.
        data = self._h11.send(h11.Data(data=body))
        if data:
            await self._write(data)

    async def finish(self) -> None:
        data = self._h11.send(h11.EndOfMessage())
        if data:
            await self.send_all(data)


def _tokens(values: tuple[str, ...]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",")}


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
