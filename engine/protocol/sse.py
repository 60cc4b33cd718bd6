"""Server-Sent Events framing of the server-to-client half (sans-IO).

Byte-exact with ASP.NET Core's ``ServerSentEventsMessageFormatter`` so that
captures of the reference and of triohub compare equal (``signalr-protocol.md``
section 3.2).
"""

from __future__ import annotations

from typing import Final

__all__ = ["SSE_CONTENT_TYPE", "SSE_PREAMBLE", "format_sse_event"]

SSE_PREAMBLE: Final = b":\r\n"
"""An SSE comment written and flushed first: some browsers (Firefox) fire the
EventSource ``open`` event only once data arrives."""

SSE_CONTENT_TYPE: Final = "text/event-stream"

_DATA: Final = b"data: "
_NEWLINE: Final = b"\r\n"


def format_sse_event(chunk: bytes) -> bytes:
    """Frame one chunk of hub records as an SSE event.

    Each LF-separated line becomes ``data: <line>\\r\\n`` (a CR ending a line
    of two or more bytes is dropped, since ``\\r\\n`` in the chunk must not
    become an extra CR on the client); a blank line ends the event. JSON records
    hold no raw LF, so in practice one chunk is one ``data:`` line. An empty
    chunk is an empty event, ``\\r\\n``, as the reference writes it.
    """
    if b"\n" not in chunk:
        return _DATA + chunk + _NEWLINE + _NEWLINE if chunk else _NEWLINE
    lines = chunk.split(b"\n")
    out = bytearray()
    for line in lines[:-1]:
        if len(line) > 1 and line.endswith(b"\r"):
            line = line[:-1]
        out += _DATA + line + _NEWLINE
    # The text after the last LF is a line too, even when empty.
    out += _DATA + lines[-1] + _NEWLINE + _NEWLINE
    return bytes(out)
