"""``RedisSignInThrottle``: sign-in throttling shared by every node on one Redis.

The cluster's form of ``triohub.auth.throttle.SignInThrottle``, with the same
rule (``ThrottleOptions``, the module's docstring): a leaky bucket of failures
per account and per client address, refused while one more failure would
overflow either. Each bucket is a Redis hash (``l``: level, ``t``: when it
was last changed), updated by a Lua script so that a check and its count are
one step for the whole cluster:

* ``admit`` refuses (the seconds to wait) or counts the attempt as a failure
  at once, so concurrent attempts on any number of nodes cannot all pass
  the check before one of them is counted;
* ``settle(succeeded=True)`` takes that provisional failure back from the
  address and empties the account's bucket; a failure stays counted.

A bucket's key expires when it has drained, so Redis holds only the buckets
with recent failures (no ``max_entries``: a flood of names costs Redis keys
that expire within ``window``). Time is the nodes' Unix clock (``clock``),
passed to the script, so the nodes must agree on it to within a second or so.

While Redis is unreachable both raise ``triohub.backplane.BackplaneUnavailable``: a sign-in
that cannot be counted is not checked (fail closed). Imported only where a
Redis URL is given (it imports coredis through the backplane).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..auth.throttle import (
    ThrottleOptions,
    account_key,
    address_key,
    log_failed,
    log_refused,
    log_throttled_account,
    log_throttled_address,
)

if TYPE_CHECKING:
    from .redis import RedisBackplane

__all__ = ["THROTTLE_PREFIX", "RedisSignInThrottle"]

THROTTLE_PREFIX = "triohub:sign-in:"
"""Keys of the buckets (``address:`` or ``account:`` and the key follow)."""

# A bucket's level now: what it held, drained at `rate` per second since `t`.
_LEVEL = """
local now = tonumber(ARGV[1])
local function level(key, rate)
  local held = redis.call('HMGET', key, 'l', 't')
  if not held[1] then return 0 end
  return math.max(0, tonumber(held[1]) - (now - tonumber(held[2])) * rate)
end
"""

# KEYS: the address's bucket, then the account's (if any). ARGV: now, then a
# limit and a rate per key. Returns {wait, newly throttled keys' positions}.
_ADMIT = (
    _LEVEL
    + """
local wait, levels, newly = 0, {}, ''
for i, key in ipairs(KEYS) do
  local limit, rate = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  levels[i] = level(key, rate)
  local excess = levels[i] + 1 - limit
  if excess > 0 then
    wait = math.max(wait, excess / rate)
    if redis.call('HSETNX', key, 'w', '1') == 1 then newly = newly .. i end
  end
end
if wait > 0 then return {tostring(wait), newly} end
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i + 1])
  local full = levels[i] + 1
  redis.call('HSET', key, 'l', tostring(full), 't', ARGV[1])
  redis.call('HDEL', key, 'w')
  redis.call('PEXPIRE', key, math.ceil(full / rate * 1000))
end
return {'0', ''}
"""
)

# KEYS: the address's bucket, then the account's (if any). ARGV: now, the
# address's rate. The address gets its provisional failure back (an empty
# bucket goes: a successful sign-in leaves no key); the account's is emptied.
_SUCCEEDED = (
    _LEVEL
    + """
local rate = tonumber(ARGV[2])
local left = level(KEYS[1], rate) - 1
if left > 0 then
  redis.call('HSET', KEYS[1], 'l', tostring(left), 't', ARGV[1])
else
  redis.call('DEL', KEYS[1])
end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 1
"""
)


class RedisSignInThrottle:
    """Per-account and per-address throttling of failed sign-ins, in Redis (a
    ``SignInLimiter``)::

        wait = await throttle.admit(username, address)
        if wait:
            return 429, Retry-After: ceil(wait)
        user = check_password(username, password)
        await throttle.settle(username, address, succeeded=user is not None)

    Args:
        backplane: the process's link to Redis.
        options: the limits (``ThrottleOptions()``: 5 per account, 20 per
            address, per 300 s); every node should be given the same.
        prefix: the keys' prefix (one per application sharing a Redis).
        clock: Unix time.
    """

    def __init__(
        self,
        backplane: RedisBackplane,
        options: ThrottleOptions | None = None,
        *,
        prefix: str = THROTTLE_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backplane = backplane
        self.options = options = options or ThrottleOptions()
        self.prefix = prefix
        self._clock = clock
        self._address_rate = options.address_failures / options.window
        self._account_rate = options.account_failures / options.window

    def _keys(self, account: str | None, address: str | None) -> list[str]:
        """The address's bucket, then the account's (if any): the scripts' KEYS."""
        keys = [self.prefix + "address:" + address_key(address)]
        if account is not None:
            keys.append(self.prefix + "account:" + account_key(account))
        return keys

    async def admit(self, account: str | None, address: str | None) -> float:
        keys = self._keys(account, address)
        args = [repr(self._clock()), str(self.options.address_failures)]
        args.append(repr(self._address_rate))
        if account is not None:
            args += [str(self.options.account_failures), repr(self._account_rate)]
        answer: Any = await self.backplane.command(
            "checking a sign-in", lambda client: client.eval(_ADMIT, keys, args)
        )
        wait, newly = float(answer[0]), _text(answer[1])
        # Logged once per bucket, by the first attempt it refuses.
        if "1" in newly:
            log_throttled_address(address, self.options.address_failures)
        if "2" in newly:
            log_throttled_account(account, self.options.account_failures)
        if wait > 0:
            log_refused(account, address, wait)
        return wait

    async def settle(self, account: str | None, address: str | None, *, succeeded: bool) -> None:
        if not succeeded:
            # Counted by admit already.
            log_failed(account, address)
            await trio.lowlevel.checkpoint()
            return
        keys = self._keys(account, address)
        args = [repr(self._clock()), repr(self._address_rate)]
        await self.backplane.command(
            "recording a sign-in", lambda client: client.eval(_SUCCEEDED, keys, args)
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
