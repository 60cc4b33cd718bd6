"""Protocol errors and every error text the server puts on the wire.

The texts are byte-exact copies of ASP.NET Core SignalR's (clients and their
tests compare them), so they live here, in one place, and nowhere else.
"""

from __future__ import annotations

from typing import Final

from .messages import Close

__all__ = [
    "CLOSE_ON_ERROR",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Texts",
]


class Texts:
    """Exact error strings (``signalr-protocol.md`` sections 2.2, 3, 4.1, 7, 9)."""

    # -- handshake (4.1)
    HANDSHAKE_CANCELED: Final = "Handshake was canceled."
    HANDSHAKE_UNEXPECTED: Final = "An unexpected error occurred during connection handshake."

    @staticmethod
    def protocol_not_supported(name: str) -> str:
        return f"The protocol '{name}' is not supported."

    @staticmethod
    def version_not_supported(version: int, name: str) -> str:
        return f"The server does not support version {version} of the '{name}' protocol."

    @staticmethod
    def transfer_format_not_supported(name: str, transfer_format: str) -> str:
        return (
            f"Cannot use the '{name}' protocol on the current transport. "
            f"The transport does not support '{transfer_format}' transfer format."
        )

    # -- negotiate (2.2)
    NEGOTIATE_NON_INTEGER: Final = "The client requested a non-integer protocol version."

    @staticmethod
    def negotiate_version_unsupported(version: int) -> str:
        return (
            f"The client requested version '{version}', "
            "but the server does not support this version."
        )

    # -- close records (7)
    CONNECTION_CLOSED_WITH_ERROR: Final = "Connection closed with an error."
    AUTHENTICATION_EXPIRED: Final = "Authentication expired."
    AUTHENTICATION_REVOKED: Final = "Authentication revoked."

    # -- message parsing (4.2, 6); shown only with detailed errors
    @staticmethod
    def max_message_size_exceeded(limit: int) -> str:
        return (
            f"The maximum message size of {limit}B was exceeded. "
            "The message size can be configured in AddHubOptions."
        )

    @staticmethod
    def missing_property(name: str) -> str:
        return f"Missing required property '{name}'."

    ERROR_AND_RESULT: Final = "The 'error' and 'result' properties are mutually exclusive."

    @staticmethod
    def header_not_string(key: str) -> str:
        return f"Expected header '{key}' to be of type String."

    # -- stateful reconnect: a peer's Ack or Sequence we refuse (logs only; the
    # Close says CONNECTION_CLOSED_WITH_ERROR like any protocol error)
    SEQUENCE_AHEAD: Final = "Sequence ID greater than amount of messages we've received."

    @staticmethod
    def sequence_not_positive(sequence_id: int) -> str:
        return f"Sequence ID {sequence_id} is not positive: sequence ids start at 1."

    @staticmethod
    def ack_ahead(sequence_id: int, sent: int) -> str:
        return f"Ack for sequence ID {sequence_id}, but only {sent} messages were sent."

    # -- invocation errors (9)
    @staticmethod
    def method_does_not_exist(target: str) -> str:
        return (
            f"Failed to invoke '{target}' due to an error on the server. "
            "HubException: Method does not exist."
        )

    @staticmethod
    def invocation_failed(target: str) -> str:
        """Binding failures: wrong argument count or argument types."""
        return f"Failed to invoke '{target}' due to an error on the server."

    @staticmethod
    def argument_count(provided: int, expected: int) -> str:
        return f"Invocation provides {provided} argument(s) but target expects {expected}."

    ARGUMENT_BINDING: Final = (
        "Error binding arguments. Make sure that the types of the provided values "
        "match the types of the hub method being invoked."
    )

    @staticmethod
    def unauthorized(target: str) -> str:
        return f"Failed to invoke '{target}' because user is unauthorized"

    @staticmethod
    def shutting_down(target: str) -> str:
        # triohub's own: ASP.NET Core cancels in-flight work at once on shutdown.
        return f"Failed to invoke '{target}' because the server is shutting down."

    @staticmethod
    def unexpected_error(target: str) -> str:
        return f"An unexpected error occurred invoking '{target}' on the server."

    @staticmethod
    def hub_exception(target: str, message: str) -> str:
        return f"An unexpected error occurred invoking '{target}' on the server. HubException: {message}"

    @staticmethod
    def stream_count_mismatch(target: str, sent: int, expected: int) -> str:
        return (
            f"An unexpected error occurred invoking '{target}' on the server. "
            f"HubException: Client sent {sent} stream(s), Hub method expects {expected}."
        )

    @staticmethod
    def streaming_via_invocation(target: str) -> str:
        return (
            f"The client attempted to invoke the streaming '{target}' method "
            "with a non-streaming invocation."
        )

    @staticmethod
    def plain_via_stream_invocation(target: str) -> str:
        return (
            f"The client attempted to invoke the non-streaming '{target}' method "
            "with a streaming invocation."
        )

    STREAMING_ERROR: Final = "An error occurred on the server while streaming results."

    @staticmethod
    def invocation_id_in_use(invocation_id: str) -> str:
        return f"Invocation ID '{invocation_id}' is already in use."

    CLIENT_RESULTS_IN_ON_CONNECTED: Final = (
        "Client results inside OnConnectedAsync Hub methods are not allowed."
    )

    STREAM_BINDING_FAILED: Final = "Failed to bind Stream message."
    """An upload stream item of the wrong type ends its stream with this error."""

    # -- per-connection limits: triohub's own (the reference has none of these);
    # refusals of a call use the reference's HubException form of section 9.
    @staticmethod
    def too_many_streams(target: str, limit: int) -> str:
        return (
            f"An unexpected error occurred invoking '{target}' on the server. "
            f"HubException: Too many open streams: a connection may have {limit} "
            "(streams to and from the client together)."
        )

    @staticmethod
    def group_name_too_long(length: int, limit: int) -> str:
        return f"Group names may be at most {limit} characters long; this one has {length}."

    @staticmethod
    def too_many_groups(limit: int) -> str:
        return f"A connection may be in at most {limit} groups."

    @staticmethod
    def too_many_client_results(connection_id: str, limit: int) -> str:
        return f"Connection '{connection_id}' already has {limit} client results pending."

    @staticmethod
    def limits_exceeded(refusals: int, window: float) -> str:
        """The Close error for a client that keeps running into its limits."""
        return (
            "Connection closed with an error. HubException: "
            f"{refusals} requests were refused within {window:g} s for exceeding "
            "the connection's limits."
        )

    # -- HTTP bodies (3)
    CONNECTION_ID_REQUIRED: Final = "Connection ID required"
    NO_CONNECTION: Final = "No Connection with that ID"
    CANNOT_CHANGE_TRANSPORT: Final = "Cannot change transports mid-connection"
    POST_NOT_ALLOWED_FOR_WEBSOCKETS: Final = (
        "POST requests are not allowed for WebSocket connections."
    )
    DELETE_NOT_ALLOWED: Final = "Cannot terminate this connection using the DELETE endpoint."

    @staticmethod
    def transport_not_supported(transport: str) -> str:
        return f"{transport} transport not supported by this end point type"


CLOSE_ON_ERROR: Final = Close(error=Texts.CONNECTION_CLOSED_WITH_ERROR, allow_reconnect=True)
"""What the server sends after a protocol error, an oversize message or a client timeout."""


class ProtocolError(Exception):
    """Base of the protocol layer's own errors; nothing else escapes a codec."""


class LocalProtocolError(ProtocolError):
    """Our side tried to do something the protocol forbids (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    Attributes:
        close: the Close record to send back before ending the connection.
    """

    def __init__(self, message: str, *, close: Close = CLOSE_ON_ERROR) -> None:
        super().__init__(message)
        self.close = close
