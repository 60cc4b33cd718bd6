"""The one rule of a close's detail (``triohub.hub.closing``): it is told to the
client only where the closer chose the words for it (an abort, the refusal
limit); any other reason's detail, which may hold an exception's message or a
client's data, never reaches the Close record."""

from __future__ import annotations

import pytest

from triohub.actors.control import CloseReason
from triohub.hub.closing import close_record
from triohub.protocol import Close

SECRET = "db password is hunter2"


@pytest.mark.parametrize("reason", list(CloseReason), ids=lambda reason: reason.name)
def test_a_detail_reaches_the_record_only_for_an_abort_or_the_limits(reason: CloseReason) -> None:
    plain = close_record(reason, "")
    detailed = close_record(reason, SECRET)
    if reason in (CloseReason.ABORTED, CloseReason.LIMITS_EXCEEDED):
        assert plain == Close()  # no reconnect, and nothing said unless the closer says it
        assert detailed == Close(error=SECRET)
    else:
        assert detailed == plain
        assert detailed is None or detailed.error is None or SECRET not in detailed.error


def test_records_without_a_detail() -> None:
    assert close_record(CloseReason.SHUTDOWN, "") == Close(allow_reconnect=True)
    assert close_record(CloseReason.REVOKED, "") == Close(error="Authentication revoked.")
    assert close_record(CloseReason.TRANSPORT_CLOSED, "") is None
    assert close_record(CloseReason.HANDSHAKE_FAILED, "") is None
