"""Sign-in throttling: failed password checks slow down guessing.

Each account and each client address has a leaky bucket of failures: a
failed sign-in adds one, the bucket drains at ``failures / window`` per
second, and while one more failure would overflow it every sign-in for that
account or from that address is refused (429 with ``Retry-After``) *before*
the password is looked at, so even the right password waits. Successful
sign-ins add nothing (a busy client signing in correctly is never slowed),
and one empties its account's bucket (not the address's: an attacker with an
account of their own must not be able to reset their address's count).

Both limits apply: per account against guessing one user's password from
many addresses, per address against trying many accounts from one. IPv6
addresses count by their /64 network (one host holds a whole /64).

Memory is bounded: each table keeps at most ``max_entries`` buckets, drops
drained ones first and, when full, the one updated longest ago (logged, as
a flood of distinct accounts or addresses is what fills it).

Failed sign-ins are logged at INFO with the account name and address (never
the password); the moment an account or address becomes throttled is logged
at WARNING, once; refused attempts while throttled only at DEBUG, so a flood
cannot flood the logs.

Time is Trio's clock (``trio.current_time``), so tests drive it with
``autojump_clock``.

``SignInLimiter`` is what an app's sign-in calls (``admit``, then ``settle``):
``SignInThrottle`` is it for one process; ``triohub.backplane.throttle``'s
``RedisSignInThrottle`` keeps the same buckets in Redis for every node of a
cluster.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

__all__ = ["SignInLimiter", "SignInThrottle", "ThrottleOptions", "account_key", "address_key"]

log = logging.getLogger("triohub.auth.throttle")

_MAX_ACCOUNT_KEY = 128
"""Longer account names are cut for the key (and for the log line)."""


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"ThrottleOptions.{attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class ThrottleOptions:
    """How many failed sign-ins are tolerated, and how fast they are forgiven."""

    account_failures: int = attrs.field(default=5, validator=_positive)
    """Failures one account may take in a burst; after that one more every
    ``window / account_failures`` seconds."""
    address_failures: int = attrs.field(default=20, validator=_positive)
    """The same for one client address (or IPv6 /64)."""
    window: float = attrs.field(default=300.0, validator=_positive)
    """Seconds in which a full bucket drains."""
    max_entries: int = attrs.field(default=10_000, validator=_positive)
    """Buckets kept per table (accounts, addresses)."""


@attrs.define
class _Bucket:
    level: float
    stamp: float


class _Table:
    """Leaky buckets by key, least recently updated first."""

    def __init__(self, what: str, limit: int, window: float, max_entries: int) -> None:
        self.what = what
        self.limit = limit
        self.rate = limit / window
        self.max_entries = max_entries
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._warned_full = False

    def __len__(self) -> int:
        return len(self._buckets)

    def level(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        return max(0.0, bucket.level - (now - bucket.stamp) * self.rate)

    def wait(self, key: str, now: float) -> float:
        """Seconds until one more failure would fit (0.0: it fits now)."""
        excess = self.level(key, now) + 1 - self.limit
        return excess / self.rate if excess > 0 else 0.0

    def add(self, key: str, now: float) -> float:
        """Count a failure; returns the new level."""
        level = self.level(key, now) + 1
        self._buckets[key] = _Bucket(level, now)
        self._buckets.move_to_end(key)
        self._trim(now)
        return level

    def clear(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _trim(self, now: float) -> None:
        # Oldest first: drained buckets go for free; past the cap the oldest goes anyway.
        while self._buckets:
            key = next(iter(self._buckets))
            if self.level(key, now) > 0 and len(self._buckets) <= self.max_entries:
                break
            if self.level(key, now) > 0 and not self._warned_full:
                self._warned_full = True
                log.warning(
                    "sign-in throttle: more than %d %s with recent failures; forgetting the "
                    "oldest (a flood of distinct %s?)",
                    self.max_entries,
                    self.what,
                    self.what,
                )
            del self._buckets[key]


class SignInLimiter(Protocol):
    """Throttling around one sign-in: ``admit`` before the password is looked
    at, ``settle`` after; nothing else is awaited in between."""

    async def admit(self, account: str | None, address: str | None) -> float:
        """Seconds to wait before ``account`` may try from ``address`` (answer
        429); 0.0: check the password, then ``settle``."""
        ...

    async def settle(self, account: str | None, address: str | None, *, succeeded: bool) -> None:
        """The admitted attempt's outcome: a failure counts, a success empties
        the account's bucket."""
        ...


def account_key(account: str) -> str:
    return account.casefold()[:_MAX_ACCOUNT_KEY]


def address_key(address: str | None) -> str:
    if address is None:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class SignInThrottle:
    """Per-account and per-address throttling of failed sign-ins.

    Use it around the password check::

        wait = throttle.retry_after(username, address)
        if wait:
            return 429, Retry-After: ceil(wait)
        if check_password(username, password):
            throttle.succeeded(username, address)
        else:
            throttle.failed(username, address)

    No ``await`` between ``retry_after`` and ``failed``: Trio runs nothing else
    in between, so concurrent attempts cannot all pass the check.

    Args:
        options: limits (``ThrottleOptions()``: 5 per account, 20 per address,
            per 300 s).
        clock: seconds, monotonic (default ``trio.current_time``).
    """

    def __init__(
        self,
        options: ThrottleOptions | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.options = options = options or ThrottleOptions()
        self._clock = clock
        self._accounts = _Table(
            "accounts", options.account_failures, options.window, options.max_entries
        )
        self._addresses = _Table(
            "addresses", options.address_failures, options.window, options.max_entries
        )

    def retry_after(self, account: str | None, address: str | None) -> float:
        """Seconds to wait before ``account`` may try from ``address``; 0.0 = go on.

        ``account`` ``None``: the request named no account (only the address counts).
        """
        now = self._clock()
        wait = self._addresses.wait(address_key(address), now)
        if account is not None:
            wait = max(wait, self._accounts.wait(account_key(account), now))
        if wait > 0:
            log_refused(account, address, wait)
        return wait

    def failed(self, account: str | None, address: str | None) -> None:
        """Count a failed sign-in (wrong password, unknown account)."""
        now = self._clock()
        address_level = self._addresses.add(address_key(address), now)
        log_failed(account, address)
        if address_level + 1 > self._addresses.limit >= address_level:
            log_throttled_address(address, self._addresses.limit)
        if account is not None:
            account_level = self._accounts.add(account_key(account), now)
            if account_level + 1 > self._accounts.limit >= account_level:
                log_throttled_account(account, self._accounts.limit)

    def succeeded(self, account: str, address: str | None) -> None:
        """A correct password: the account starts afresh (the address does not)."""
        self._accounts.clear(account_key(account))

    async def admit(self, account: str | None, address: str | None) -> float:
        """``retry_after`` as a ``SignInLimiter`` (no checkpoint: nothing runs
        between it and ``settle``)."""
        return self.retry_after(account, address)

    async def settle(self, account: str | None, address: str | None, *, succeeded: bool) -> None:
        """``succeeded`` or ``failed`` as a ``SignInLimiter``."""
        if succeeded and account is not None:
            self.succeeded(account, address)
        elif not succeeded:
            self.failed(account, address)

    @staticmethod
    def retry_after_header(wait: float) -> bytes:
        """``Retry-After`` for ``wait`` seconds (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait))).encode()


# -- the log lines (SignInThrottle's and RedisSignInThrottle's) -------------------------


def log_failed(account: str | None, address: str | None) -> None:
    log.info("failed sign-in for %r from %s", shown(account), shown_address(address))


def log_throttled_address(address: str | None, limit: int) -> None:
    log.warning("sign-ins from %s throttled: %d failures", shown_address(address), limit)


def log_throttled_account(account: str | None, limit: int) -> None:
    log.warning("sign-ins for %r throttled: %d failures", shown(account), limit)


def log_refused(account: str | None, address: str | None, wait: float) -> None:
    log.debug(
        "sign-in for %r from %s refused: throttled for %.0f s more",
        shown(account),
        shown_address(address),
        wait,
    )


def shown(account: str | None) -> str | None:
    # %r of this: quotes and escapes, so a name cannot forge log lines.
    return None if account is None else account[:_MAX_ACCOUNT_KEY]


def shown_address(address: str | None) -> str:
    if address is None:
        return "an unknown address"
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return repr(address[:64])
