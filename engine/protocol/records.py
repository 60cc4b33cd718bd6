"""What the two hub protocol decoders share: the incoming byte buffer and the
sticky protocol error. Each codec supplies only how a record is delimited and
read (``_next_message``)."""

from __future__ import annotations

from .errors import RemoteProtocolError
from .messages import HubMessage

__all__ = ["RecordDecoder"]


class RecordDecoder:
    """Buffers a byte stream in any split and hands out messages in order.

    After a ``RemoteProtocolError`` the decoder is unusable: every later
    ``next_message`` raises the same error and ``receive_data`` is ignored.
    """

    __slots__ = ("_buffer", "_error", "_max_message_size", "_start")

    def __init__(self, max_message_size: int | None = None) -> None:
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, not {max_message_size}")
        self._max_message_size = max_message_size
        self._buffer: bytes | bytearray = b""
        self._start = 0  # first byte of the next record
        self._error: RemoteProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the transport; any split of the stream is fine.

        The common case, a chunk of whole records, is kept as it is: no copy.
        """
        if not data or self._error is not None:
            return
        buffer = self._buffer
        start = self._start
        if start == len(buffer):
            self._buffer = bytes(data)
        else:
            if isinstance(buffer, bytearray):
                del buffer[:start]  # O(1) in CPython: bytearray drops a prefix in place
            else:
                buffer = bytearray(memoryview(buffer)[start:])
            buffer += data
            self._buffer = buffer
        self._start = 0
        self._shifted(start)

    def _shifted(self, by: int) -> None:
        """The buffer lost its first ``by`` bytes (offsets a codec keeps follow)."""

    def next_message(self) -> HubMessage | None:
        """The next complete message, or ``None`` until more bytes arrive.

        Raises:
            RemoteProtocolError: a malformed or oversize record; raised again
                on every later call.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_message()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_message(self) -> HubMessage | None:
        raise NotImplementedError
