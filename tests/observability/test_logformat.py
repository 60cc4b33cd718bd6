"""``JsonFormatter``: one JSON object per line, the structured fields merged in."""

from __future__ import annotations

import json
import logging
import sys

from triohub.observability import JsonFormatter


def record(**kwargs: object) -> logging.LogRecord:
    made = logging.LogRecord("triohub.connection", logging.INFO, __file__, 1, "a %s", ("b",), None)
    made.created = 0.0
    for key, value in kwargs.items():
        setattr(made, key, value)
    return made


def test_a_line_carries_its_structured_fields() -> None:
    line = JsonFormatter().format(
        record(triohub={"event": "connection.closed", "duration": 1.5, "message": "ignored"})
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "1970-01-01T00:00:00.000+00:00",
        "level": "INFO",
        "logger": "triohub.connection",
        # A field cannot replace the line's own keys.
        "message": "a b",
        "event": "connection.closed",
        "duration": 1.5,
    }


def test_an_exception_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(record(exc_info=sys.exc_info()))
    parsed = json.loads(line)
    assert parsed["exception"].splitlines()[-1] == "ValueError: boom"
    assert "\n" not in line
