"""Log lines about what clients do: short, one line each, and rate limited.

A client controls how often these lines are written and much of what they
say, so each connection writes through a ``ConnectionLog``: client data is
clipped (``clip``), and the same line (by its format string) is written at
most ``burst`` times per ``window``; the rest are counted and reported as one
``suppressed`` line when that message's window ends or the connection closes.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

__all__ = ["CLIP", "ConnectionLog", "clip"]

CLIP = 200
"""Characters of client data a log line may carry."""


def clip(value: object, limit: int = CLIP) -> str:
    """``str(value)``, cut to ``limit`` characters with the full length noted."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class ConnectionLog:
    """One connection's rate-limited log lines, prefixed ``connection <id>: ``.

    Args:
        logger: where the lines go.
        connection_id: the public connection id (never a token or credential).
        burst: lines of one message written per window.
        window: seconds (Trio's clock) after which a message may be written again.
    """

    __slots__ = ("_burst", "_connection_id", "_logger", "_seen", "_window")

    def __init__(
        self, logger: logging.Logger, connection_id: str, *, burst: int = 10, window: float = 60.0
    ) -> None:
        self._logger = logger
        self._connection_id = connection_id
        self._burst = burst
        self._window = window
        # format string -> [window start, lines in the window, suppressed, level];
        # format strings come from the code, so this stays small.
        self._seen: dict[str, list[Any]] = {}

    def info(self, message: str, *args: object) -> None:
        self.log(logging.INFO, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = trio.current_time()
        entry = self._seen.get(message)
        if entry is None or now - entry[0] >= self._window:
            if entry is not None:
                self._report(message, entry)
            entry = self._seen[message] = [now, 0, 0, level]
        entry[1] += 1
        if entry[1] > self._burst:
            entry[2] += 1
            return
        self._logger.log(level, "connection %s: " + message, self._connection_id, *args)

    def flush(self) -> None:
        """Report what was suppressed (the connection is closing)."""
        for message, entry in self._seen.items():
            self._report(message, entry)
        self._seen.clear()

    def _report(self, message: str, entry: list[Any]) -> None:
        if entry[2]:
            self._logger.log(
                entry[3],
                "connection %s: suppressed %d more lines like %r",
                self._connection_id,
                entry[2],
                message,
            )
