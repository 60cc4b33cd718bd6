"""Sign-in throttling: ``SignInThrottle`` on Trio's clock (``autojump_clock``), then the
demo's ``/account/login`` and ``/api/token`` on the wire (429 with ``Retry-After``,
before the password is checked; failures logged with username and address, never the
password; correct sign-ins never throttled)."""

from __future__ import annotations

import logging

import pytest
import trio

from triohub.auth.throttle import SignInThrottle, ThrottleOptions

from .conftest import Demo, serve_demo

LOGGER = "triohub.auth.throttle"
HERE = "192.0.2.1"
THERE = "198.51.100.7"


def throttle(**options: float) -> SignInThrottle:
    return SignInThrottle(ThrottleOptions(**options))  # type: ignore[arg-type]


def fail(t: SignInThrottle, account: str | None, address: str | None, times: int = 1) -> None:
    for _ in range(times):
        assert t.retry_after(account, address) == 0
        t.failed(account, address)


# -- the buckets ------------------------------------------------------------------------


async def test_an_account_is_throttled_after_its_failures_from_any_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t = throttle(account_failures=5, address_failures=100, window=300)
    for n in range(5):
        fail(t, "alice", f"192.0.2.{n}")
    # A sixth try waits, from anywhere, whatever its password: one failure drains in 60 s.
    assert t.retry_after("alice", "203.0.113.9") == pytest.approx(60)
    assert t.retry_after("ALICE", HERE) == pytest.approx(60)  # names count case-folded
    assert t.retry_after("bob", HERE) == 0
    await trio.sleep(59)
    assert t.retry_after("alice", HERE) == pytest.approx(1)
    await trio.sleep(1)
    fail(t, "alice", HERE)  # one more fits...
    assert t.retry_after("alice", HERE) == pytest.approx(60)  # ...and only one
    await trio.sleep(300)
    fail(t, "alice", HERE, times=5)  # fully drained: a full burst again


async def test_an_address_is_throttled_across_accounts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t = throttle(account_failures=100, address_failures=4, window=60)
    for name in ("alice", "bob", "carol", "dave"):
        fail(t, name, HERE)
    assert t.retry_after("erin", HERE) == pytest.approx(15)
    assert t.retry_after(None, HERE) == pytest.approx(15)  # no account named
    assert t.retry_after("erin", THERE) == 0
    await trio.sleep(15)
    assert t.retry_after("erin", HERE) == 0


async def test_successes_never_count_and_reset_only_the_account(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t = throttle(account_failures=3, address_failures=5, window=60)
    for _ in range(1000):
        assert t.retry_after("alice", HERE) == 0
        t.succeeded("alice", HERE)
    fail(t, "alice", HERE, times=2)
    t.succeeded("alice", HERE)  # the right password: alice starts afresh...
    fail(t, "alice", HERE, times=3)
    assert t.retry_after("alice", THERE) > 0
    # ...but the address keeps its count (5 failures so far): an attacker's own good
    # account cannot wipe the address's record of their guesses.
    t.succeeded("mallory", HERE)
    assert t.retry_after("mallory", HERE) == pytest.approx(12)


async def test_ipv6_counts_by_its_64_network(autojump_clock: trio.testing.MockClock) -> None:
    t = throttle(account_failures=100, address_failures=2, window=60)
    fail(t, "a", "2001:db8:1:2::1")
    fail(t, "b", "2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert t.retry_after("c", "2001:db8:1:2::99") > 0
    assert t.retry_after("c", "2001:db8:1:3::1") == 0
    # An IPv4-mapped address is the IPv4 address.
    fail(t, "a", "::ffff:192.0.2.1", times=2)
    assert t.retry_after("c", HERE) > 0


async def test_memory_is_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    t = throttle(account_failures=5, address_failures=5, window=10, max_entries=50)
    for n in range(200):
        t.failed(f"user{n}", f"10.0.{n // 250}.{n % 250}")
    assert len(t._accounts) == 50
    assert len(t._addresses) == 50
    full = [r for r in caplog.records if "forgetting the oldest" in r.getMessage()]
    assert len(full) == 2  # once per table, not once per eviction
    # Drained buckets are dropped as new ones come, without any warning.
    await trio.sleep(10)
    t.failed("late", HERE)
    assert len(t._accounts) == 1
    assert len(t._addresses) == 1


async def test_a_very_long_account_name_is_cut(autojump_clock: trio.testing.MockClock) -> None:
    t = throttle(account_failures=1, address_failures=100, window=60)
    fail(t, "x" * 10_000, HERE)
    assert t.retry_after("x" * 128 + "different tail", THERE) > 0


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert SignInThrottle.retry_after_header(0.2) == b"1"
    assert SignInThrottle.retry_after_header(59.01) == b"60"
    assert SignInThrottle.retry_after_header(60) == b"60"


@pytest.mark.parametrize(
    "options",
    [{"account_failures": 0}, {"address_failures": -1}, {"window": 0}, {"max_entries": 0}],
)
def test_options_must_be_positive(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ThrottleOptions(**options)  # type: ignore[arg-type]


async def test_logs_failures_and_the_moment_of_throttling_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    t = throttle(account_failures=3, address_failures=100, window=60)
    fail(t, "alice\nFAKE LINE", HERE, times=3)
    for _ in range(50):
        assert t.retry_after("alice\nFAKE LINE", HERE) > 0
    by_level: dict[str, list[str]] = {}
    for record in caplog.records:
        by_level.setdefault(record.levelname, []).append(record.getMessage())
    assert by_level["INFO"] == ["failed sign-in for 'alice\\nFAKE LINE' from 192.0.2.1"] * 3
    assert by_level["WARNING"] == ["sign-ins for 'alice\\nFAKE LINE' throttled: 3 failures"]
    assert len(by_level["DEBUG"]) == 50  # refusals while throttled: DEBUG only
    assert all("\n" not in m for messages in by_level.values() for m in messages)


# -- on the wire: the demo --------------------------------------------------------------

STRICT = ThrottleOptions(account_failures=3, address_failures=6, window=60)


async def wrong_login(demo: Demo, username: str, password: str = "wrong") -> int:
    response = await demo.http.post(
        "/account/login", data={"username": username, "password": password}
    )
    return response.status_code


async def test_login_is_throttled_then_even_the_right_password_waits(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: 200 wrong passwords in 0.19 s, nothing logged, the right one accepted
    right after."""
    caplog.set_level(logging.DEBUG)
    async with serve_demo(nursery, throttle=STRICT) as demo:
        statuses = [await wrong_login(demo, "alice", f"guess-{n}") for n in range(20)]
        assert statuses == [401] * 3 + [429] * 17
        response = await demo.http.post(
            "/account/login", data={"username": "alice", "password": "alice-password"}
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "20"  # 60 s / 3 failures
        assert "set-cookie" not in response.headers
        assert "Too many failed sign-ins" in response.text
        # The token endpoint shares the count: alice is throttled there too.
        token = await demo.http.post(
            "/api/token", json={"username": "alice", "password": "alice-password"}
        )
        assert token.status_code == 429
        assert token.headers["retry-after"] == "20"
        assert token.json() == {
            "error": "too_many_attempts",
            "error_description": "Too many failed sign-ins; try again later.",
        }
        # Other users sign in (the address has 3 of its 6 failures).
        assert await demo.http.login_cookie("bob")
    failures = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO
    ]
    assert failures == ["failed sign-in for 'alice' from 127.0.0.1"] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["sign-ins for 'alice' throttled: 3 failures"]
    assert "guess-" not in caplog.text
    assert "alice-password" not in caplog.text


async def test_token_endpoint_is_throttled_per_address(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve_demo(nursery, throttle=STRICT) as demo:
        statuses = []
        for n in range(8):
            response = await demo.http.post(
                "/api/token", json={"username": f"nobody{n}", "password": "hunter2"}
            )
            statuses.append(response.status_code)
        assert statuses == [401] * 6 + [429] * 2
        assert response.headers["retry-after"] == "10"  # 60 s / 6 failures
        # Throttled before the password is checked: bob's right password waits too.
        response = await demo.http.post(
            "/api/token", json={"username": "bob", "password": "bob-password"}
        )
        assert response.status_code == 429
    assert "hunter2" not in caplog.text
    assert "failed sign-in for 'nobody0' from 127.0.0.1" in caplog.text
    assert "sign-ins from 127.0.0.1 throttled: 6 failures" in caplog.text


async def test_many_correct_sign_ins_are_never_throttled(nursery: trio.Nursery) -> None:
    async with serve_demo(nursery, throttle=STRICT) as demo:
        for _ in range(15):
            assert await demo.http.login_cookie("alice")
            assert await demo.http.token("bob")
        # A failure now and then between them never adds up to a lockout: each correct
        # sign-in empties the account's bucket.
        for _ in range(3):
            assert await wrong_login(demo, "alice") == 401
            assert await demo.http.login_cookie("alice")
            assert await wrong_login(demo, "alice") == 401


async def test_concurrent_guesses_cannot_outrun_the_count(nursery: trio.Nursery) -> None:
    async with serve_demo(nursery, throttle=STRICT) as demo:
        statuses: list[int] = []

        async def guess(n: int) -> None:
            statuses.append(await wrong_login(demo, "alice", f"guess-{n}"))

        async with trio.open_nursery() as guesses:
            for n in range(12):
                guesses.start_soon(guess, n)
        assert sorted(statuses) == [401] * 3 + [429] * 9
