"""Helpers for testing hubs: an in-memory client, and bearer tokens to test with.

    async with open_test_client(server, "/hubs/echo") as client:
        assert await client.invoke("Add", 1, 2) == 3

    token = mint_token(SECRET, subject="alice", issuer=ISSUER, audience=AUDIENCE)

The client speaks the real protocol (JSON or MessagePack bytes) to a real
connection supervisor, so keep-alive, timeouts and close records all apply;
combine it with Trio's ``autojump_clock`` to test time-dependent behaviour.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import jwt
import trio

from .auth.principal import ANONYMOUS, Principal
from .protocol import (
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    StreamInvocation,
    StreamItem,
)
from .transports.memory import MemoryTransport, memory_transport_pair

__all__ = ["HubTestClient", "InvocationError", "mint_token", "open_test_client"]


def mint_token(
    key: str,
    *,
    subject: str,
    issuer: str,
    audience: str,
    lifetime: float = 3600.0,
    roles: Sequence[str] = (),
    algorithm: str = "HS256",
    now: float | None = None,
    **claims: Any,
) -> str:
    """A signed JWT for tests and local development (production tokens come
    from your identity provider).

    It carries ``sub``, ``iss``, ``aud``, ``iat``, ``nbf``, ``exp`` and, when
    given, ``role``; ``claims`` adds or overrides any other (``email=...``).

    Args:
        key: the shared secret (HS256; at least 32 bytes) or a private key in
            PEM for ``algorithm="RS256"`` and the like.
        subject: ``sub``, the user id by default.
        issuer: ``iss``, as ``JwtBearerOptions.issuer`` expects it.
        audience: ``aud``, as ``JwtBearerOptions.audience`` expects it.
        lifetime: seconds until ``exp``.
        roles: the ``role`` claim (what ``@authorize(roles=...)`` checks).
        now: the issue time (Unix seconds); the current time by default.
    """
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": int(issued + lifetime),
    }
    if roles:
        payload["role"] = list(roles)
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=algorithm)


class InvocationError(Exception):
    """The server answered an invocation with an error (the exact text)."""


class HubTestClient:
    """A protocol-level client on an in-memory transport."""

    def __init__(self, transport: MemoryTransport, protocol: str, server_protocols: Any) -> None:
        self._transport = transport
        self._codec = server_protocols[protocol]
        self._decoder = self._codec.decoder(None)
        self._next_id = 0
        self._pending: dict[str, trio.MemorySendChannel[HubMessage]] = {}
        self._inbox_send, self.inbox = trio.open_memory_channel[HubMessage](1000)
        """Everything not an answer to our calls: server invocations, pings, close."""
        self.handlers: dict[str, Callable[..., Any]] = {}
        """Client methods the server may call with client results (lower-case names)."""
        self.close_message: Close | None = None
        self.closed = trio.Event()
        self.handshake_reply: bytes = b""

    # -- sending --------------------------------------------------------------

    async def send_raw(self, data: bytes) -> None:
        await self._transport.send([data])

    async def send_message(self, message: HubMessage) -> None:
        await self.send_raw(self._codec.encode(message))

    def _new_id(self) -> str:
        invocation_id = str(self._next_id)
        self._next_id += 1
        return invocation_id

    async def send(self, target: str, *args: Any) -> None:
        """A non-blocking invocation (no invocation id)."""
        await self.send_message(Invocation(target, args))

    async def invoke(self, target: str, *args: Any, stream_ids: tuple[str, ...] = ()) -> Any:
        """Invoke and wait for the Completion.

        Raises:
            InvocationError: the Completion carried an error.
        """
        invocation_id = self._new_id()
        send, receive = trio.open_memory_channel[HubMessage](1)
        self._pending[invocation_id] = send
        await self.send_message(Invocation(target, args, invocation_id, stream_ids))
        completion = await receive.receive()
        assert isinstance(completion, Completion)
        if completion.error is not None:
            raise InvocationError(completion.error)
        return completion.result

    async def stream(self, target: str, *args: Any) -> AsyncIterator[Any]:
        """Items of a server-to-client stream; breaking out cancels it."""
        invocation_id = self._new_id()
        send, receive = trio.open_memory_channel[HubMessage](100)
        self._pending[invocation_id] = send
        await self.send_message(StreamInvocation(invocation_id, target, args))
        finished = False
        try:
            async for message in receive:
                if isinstance(message, StreamItem):
                    yield message.item
                    continue
                assert isinstance(message, Completion)
                finished = True
                if message.error is not None:
                    raise InvocationError(message.error)
                return
        finally:
            if not finished:
                with trio.CancelScope(shield=True):
                    await self.send_message(CancelInvocation(invocation_id))

    async def ping(self) -> None:
        await self.send_message(Ping())

    async def close(self) -> None:
        await self.send_message(Close())

    def upload_id(self) -> str:
        return self._new_id()

    # -- receiving ------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                while (message := self._decoder.next_message()) is not None:
                    await self._route(message)
                data = await self._transport.receive()
                if data is None:
                    return
                self._decoder.receive_data(data)
        finally:
            self.closed.set()
            for channel in self._pending.values():
                channel.close()
            self._inbox_send.close()

    async def _route(self, message: HubMessage) -> None:
        if isinstance(message, StreamItem | Completion):
            channel = self._pending.get(message.invocation_id)
            if channel is not None:
                await channel.send(message)
                if isinstance(message, Completion):
                    del self._pending[message.invocation_id]
                return
        if isinstance(message, Close):
            self.close_message = message
        if isinstance(message, Invocation) and message.invocation_id is not None:
            handler = self.handlers.get(message.target.lower())
            if handler is None:
                reply = Completion.with_error(
                    message.invocation_id, "Client didn't provide a result."
                )
            else:
                try:
                    reply = Completion.with_result(
                        message.invocation_id, handler(*message.arguments)
                    )
                except Exception as error:
                    reply = Completion.with_error(message.invocation_id, str(error))
            await self.send_message(reply)
            return
        await self._inbox_send.send(message)

    async def next_message(self, *, skip_pings: bool = True) -> HubMessage:
        """The next unsolicited message (``Ping`` skipped unless asked for)."""
        async for message in self.inbox:
            if skip_pings and isinstance(message, Ping):
                continue
            return message
        raise EOFError("the connection closed")


@asynccontextmanager
async def open_test_client(
    server: Any,
    path: str,
    *,
    principal: Principal = ANONYMOUS,
    protocol: str = "json",
    handshake: bytes | None = None,
    connection_id: str | None = None,
    buffer: int = 64,
) -> AsyncIterator[HubTestClient]:
    """Connect an in-memory client to a running ``HubServer``'s hub at ``path``.

    The handshake is sent and its reply read before the client is yielded
    (``client.handshake_reply``). On exit the transport is closed and the
    connection's supervisor is awaited.
    """
    registration = server.hubs[path]
    server_side, client_side = memory_transport_pair(buffer)
    client = HubTestClient(client_side, protocol, server.protocols)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: server.connect(
                registration,
                server_side,
                connection_id=connection_id or secrets.token_urlsafe(16),
                principal=principal,
            )
        )
        await client.send_raw(handshake or b'{"protocol":"%s","version":1}\x1e' % protocol.encode())
        first = await client_side.receive()
        client.handshake_reply = first or b""
        if first is not None:
            end = first.index(b"\x1e") + 1 if b"\x1e" in first else len(first)
            client.handshake_reply = first[:end]
            rest = first[end:]
            if rest:
                client._decoder.receive_data(rest)
        nursery.start_soon(client._read)
        try:
            yield client
        finally:
            await client_side.aclose()
