"""Fixtures for the browser and demo-client tests.

* ``demo`` (per test): a fresh ``python -m demo --host 127.0.0.1 --port 0 --server S``
  subprocess, so state that lasts the demo's lifetime (bans, history) never leaks between
  tests; ``shared_demo`` (per module) for tests that leave nothing behind. Both run once
  per deployment of ``DEPLOYMENTS``: each server of ``SERVERS`` (hypercorn, triohub's
  own), and ``--workers 2 --redis URL`` (two processes on one port, with a redis-server
  of their own, so nothing leaks through Redis either): every test runs on each. Each is
  stopped with SIGINT; its log is attached to the report of a failing test
  (``tests/demo_process.py``, shared with the end-to-end suite).
* ``browser`` (per module): Debian's ``/usr/bin/chromium`` driven by Playwright (never a
  browser download of Playwright's own).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.demo_process import (
    DEPLOYMENTS,
    REPO_ROOT,
    DemoServer,
    deployed_demo,
)

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class Lines:
    """A child's output lines, copied to a log file and readable with a timeout."""

    def __init__(self, stream: IO[str], log_path: Path) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._copy, args=(stream, log_path), daemon=True).start()

    def _copy(self, stream: IO[str], log_path: Path) -> None:
        with log_path.open("a") as log:
            for line in stream:
                log.write(line)
                log.flush()
                self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first further line matching ``pattern``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout} s") from None
            if line is None:
                raise EOFError(f"the output ended before a line matching {pattern!r}")
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found


@pytest.fixture(params=DEPLOYMENTS)
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoServer]:
    """A demo of its own: for tests that leave state behind (a ban lasts its lifetime)."""
    with deployed_demo(tmp_path / "demo.log", request.param) as demo:
        yield demo


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def shared_demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoServer]:
    """One demo for a module's tests that change nothing lasting."""
    kind = request.param
    with deployed_demo(tmp_path_factory.mktemp(f"demo-{kind}") / "demo.log", kind) as demo:
        yield demo


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing; `make chromium` installs Debian's", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    """``tests/artifacts/`` (git-ignored): screenshots worth a look by a human."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name in ("demo", "shared_demo"):
        demo = getattr(item, "funcargs", {}).get(name)
        if isinstance(demo, DemoServer):
            report.sections.append((f"demo log ({report.when})", demo.log()))
