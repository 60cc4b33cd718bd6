"""``JsonFormatter``: one JSON object per log line, for log pipelines.

Fields: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and the
structured fields a line carries in ``extra={"triohub": {...}}`` (connection
open and close lines: ``event``, ``connection_id``, ``user_id``, ``transport``,
``duration``, ``close_reason``...). The engine never puts a credential in a log
record, so none reaches these lines either.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "triohub", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()
