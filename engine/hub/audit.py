"""Authorization decisions: one structured log record each, an optional hook,
and counters per hub, method and outcome readable from the server."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import attrs

__all__ = ["AuditRecord", "Auditor"]

log = logging.getLogger("triohub.audit")


@attrs.frozen
class AuditRecord:
    """One authorization decision. Never holds a credential."""

    hub: str
    """The hub class name."""
    method: str | None
    """The hub method's wire name; ``None`` for a hub-level (HTTP request) check."""
    policy: str
    """The ``@authorize`` data that applied (policy names and roles)."""
    outcome: str
    """``"allowed"`` or ``"denied"``."""
    user_id: str | None = None
    """The connection's user id for method checks; for hub-level checks (HTTP
    requests, before any connection exists) the principal's name identifier."""
    connection_id: str | None = None
    failed_requirement: str | None = None
    """The first unmet requirement, or why the decision failed closed."""
    detail: str = ""


class Auditor:
    """Emits and counts decisions."""

    def __init__(self, hook: Callable[[AuditRecord], None] | None = None) -> None:
        """``hook`` is called synchronously with each record: keep it quick
        (hand the record to a channel for anything slow)."""
        self._hook = hook
        self.counters: Counter[tuple[str, str | None, str]] = Counter()
        """``(hub, method, outcome) -> count``; method ``None`` for hub-level checks."""

    @property
    def wants_records(self) -> bool:
        """Whether an allowed decision needs its record built (a hook, or the
        audit log at DEBUG); otherwise counting it in ``counters`` is enough."""
        return self._hook is not None or log.isEnabledFor(logging.DEBUG)

    def record(self, record: AuditRecord) -> None:
        self.counters[(record.hub, record.method, record.outcome)] += 1
        # Allowed decisions happen on every poll and call: DEBUG; denials: WARNING.
        level = logging.DEBUG if record.outcome == "allowed" else logging.WARNING
        # Checked first: asdict() below is costly and would be built for nothing.
        if log.isEnabledFor(level):
            log.log(
                level,
                "authorization %s: hub=%s method=%s policy=%s user=%s connection=%s failed=%s",
                record.outcome,
                record.hub,
                record.method,
                record.policy,
                record.user_id,
                record.connection_id,
                record.failed_requirement,
                extra={"audit": attrs.asdict(record)},
            )
        if self._hook is not None:
            try:
                self._hook(record)
            except Exception:
                log.exception("the audit hook raised")
