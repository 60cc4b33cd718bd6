"""SignalR hub protocol, sans-IO: bytes in, messages out; messages in, bytes out.

Nothing here imports trio or performs I/O (``tests/protocol/test_sans_io.py``
checks it). The pieces, in the order a connection meets them:

* ``negotiate``: the negotiate query and response body (``negotiate``).
* ``HubConnection``: one connection's handshake -> open -> closed lifecycle,
  built on ``HandshakeParser`` and a ``HubProtocol``'s decoder.
* ``JsonHubProtocol`` / ``MessagePackHubProtocol``: the two codecs.
* ``format_sse_event`` / ``SSE_PREAMBLE``: Server-Sent Events framing.
* ``ResumableStream``: stateful reconnect's sequence ids, replay buffer and Acks.
"""

from __future__ import annotations

from .base import HubProtocol, MessageDecoder, TransferFormat
from .connection import (
    NEED_DATA,
    ConnectionState,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    HubConnection,
    NeedData,
)
from .errors import (
    CLOSE_ON_ERROR,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Texts,
)
from .handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    RECORD_SEPARATOR,
    SUCCESS_REPLY,
    HandshakeFailure,
    HandshakeParser,
    HandshakeRequest,
    failure_reply,
    parse_handshake_request,
    resolve_protocol,
)
from .json_protocol import JsonHubProtocol
from .messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageType,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)
from .msgpack_protocol import MessagePackHubProtocol
from .negotiate import (
    MAX_NEGOTIATE_VERSION,
    NegotiateError,
    NegotiateRequest,
    NegotiateResponse,
    TransportType,
    negotiate,
    new_connection_id,
    parse_negotiate_query,
)
from .resumable import (
    DEFAULT_ACK_INTERVAL,
    DEFAULT_BUFFER_SIZE,
    SEQUENCED_TYPES,
    ResumableStream,
)
from .sse import SSE_CONTENT_TYPE, SSE_PREAMBLE, format_sse_event

__all__ = [
    "CLOSE_ON_ERROR",
    "DEFAULT_ACK_INTERVAL",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_NEGOTIATE_VERSION",
    "NEED_DATA",
    "RECORD_SEPARATOR",
    "SEQUENCED_TYPES",
    "SSE_CONTENT_TYPE",
    "SSE_PREAMBLE",
    "SUCCESS_REPLY",
    "Ack",
    "CancelInvocation",
    "Close",
    "Completion",
    "ConnectionState",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "HandshakeFailure",
    "HandshakeParser",
    "HandshakeRequest",
    "HubConnection",
    "HubMessage",
    "HubProtocol",
    "Invocation",
    "JsonHubProtocol",
    "LocalProtocolError",
    "MessageDecoder",
    "MessagePackHubProtocol",
    "MessageType",
    "NeedData",
    "NegotiateError",
    "NegotiateRequest",
    "NegotiateResponse",
    "Ping",
    "ProtocolError",
    "RemoteProtocolError",
    "ResumableStream",
    "Sequence",
    "StreamInvocation",
    "StreamItem",
    "Texts",
    "TransferFormat",
    "TransportType",
    "failure_reply",
    "format_sse_event",
    "negotiate",
    "new_connection_id",
    "parse_handshake_request",
    "parse_negotiate_query",
    "resolve_protocol",
]
