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
    """The user id (from the hub's user-id provider), the same for hub-level
    checks (HTTP requests, before any connection exists) and method checks."""
    connection_id: str | None = None
    failed_requirement: str | None = None
    """The first unmet requirement, or why the decision failed closed."""
    detail: str = ""
    anonymous: bool = False
    """The caller presented no credential."""


class Auditor:
    """Emits and counts decisions."""

    def __init__(self, hook: Callable[[AuditRecord], None] | None = None) -> None:
        """``hook`` is called synchronously with each record: keep it quick
        (hand the record to a channel for anything slow)."""
        self.hook = hook
        self._counts: Counter[tuple[str, str | None, str]] = Counter()
        self._cells: dict[tuple[str, str | None, str], list[int]] = {}
        self._policies: dict[tuple[str, str | None], str] = {}
        """The policy label of each guarded hub and method (for the metrics)."""

    @property
    def counters(self) -> Counter[tuple[str, str | None, str]]:
        """``(hub, method, outcome) -> count``; method ``None`` for hub-level checks
        (a snapshot)."""
        merged = Counter(self._counts)
        for key, cell in self._cells.items():
            if cell[0]:
                merged[key] += cell[0]
        return merged

    @property
    def quiet(self) -> bool:
        """Nobody listens for an "allowed" record (no hook, no DEBUG audit log):
        counting it is all there is to do."""
        return self.hook is None and not log.isEnabledFor(logging.DEBUG)

    def cell(
        self, hub: str, method: str | None, outcome: str = "allowed", *, policy: str = ""
    ) -> list[int]:
        """The count of one ``(hub, method, outcome)`` as a one-item list, for a
        guard to bump (``cell[0] += 1``) on every call without building a
        record or hashing a key: what ``count`` does, cheapest."""
        if policy:
            self._policies[hub, method] = policy
        return self._cells.setdefault((hub, method, outcome), [0])

    def decisions(self) -> list[tuple[str, str | None, str, str, int]]:
        """``(hub, method, policy, outcome, count)`` for every decision so far
        (what the ``triohub.authorization.decisions`` metric reports)."""
        return [
            (hub, method, self._policies.get((hub, method), ""), outcome, count)
            for (hub, method, outcome), count in self.counters.items()
        ]

    def record(self, record: AuditRecord) -> None:
        key = (record.hub, record.method, record.outcome)
        self._policies.setdefault((record.hub, record.method), record.policy)
        cell = self._cells.get(key)
        if cell is not None:
            cell[0] += 1
        else:
            self._counts[key] += 1
        # Allowed decisions happen on every poll and call: DEBUG. Denials: WARNING,
        # except for anonymous callers (a browser before sign-in, a probe): INFO,
        # since being asked for a credential is how they learn to sign in.
        if record.outcome == "allowed":
            level = logging.DEBUG
        elif record.anonymous:
            level = logging.INFO
        else:
            level = logging.WARNING
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
        if self.hook is not None:
            try:
                self.hook(record)
            except Exception:
                log.exception("the audit hook raised")
