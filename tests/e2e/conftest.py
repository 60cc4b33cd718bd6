"""End-to-end fixtures: the demo server as a subprocess, and the Node.js client runner.

* ``demo_server`` (session, once per server of ``SERVERS``): ``python -m demo --host
  127.0.0.1 --port 0 --server S``, on hypercorn (the default) and on triohub's own server
  (``native``), so every test that uses it runs against both. Started once per server,
  ready when it prints its listening line, stopped with SIGINT (Ctrl+C) at the end, which
  it must obey within SHUTDOWN_TIMEOUT (test_shutdown checks that it exits cleanly).
  Its stdout and stderr go to a log file that is attached to every failing test's report
  (``tests/demo_process.py``, shared with the browser suite).
* ``node_client`` (session): runs ``tests/e2e/js/client.mjs`` with the official
  ``@microsoft/signalr`` client from the repository's ``node_modules`` and returns the
  scenarios' observations (the JSON line the script prints last).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.demo_process import SERVERS, DemoServer, running_demo

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
CLIENT_SCRIPT = E2E_DIR / "js" / "client.mjs"

NODE_TIMEOUT = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under tests/e2e is end-to-end, even one whose module forgot
    # ``pytestmark``: ``make test-fast`` (-m "not e2e") must never start a client.
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


# -- the demo server --------------------------------------------------------------------


@pytest.fixture(scope="session", params=SERVERS)
def demo_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoServer]:
    kind = request.param
    # It must exit on SIGINT; its exit code is test_demo_process's business.
    with running_demo(tmp_path_factory.mktemp(f"demo-{kind}") / "demo-server.log", kind) as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    server = getattr(item, "funcargs", {}).get("demo_server")
    if report.failed and isinstance(server, DemoServer):
        report.sections.append((f"demo server log ({report.when})", server.log()))
    return report


# -- the Node.js client -----------------------------------------------------------------


class NodeClient:
    """Runs ``client.mjs`` scenarios; see the header of that script for its contract."""

    def __init__(self, node: str) -> None:
        self.node = node

    def command(
        self,
        scenarios: str | list[str],
        url: str,
        transport: str,
        protocol: str,
        *,
        skip_negotiation: bool = False,
    ) -> list[str]:
        names = scenarios if isinstance(scenarios, str) else ",".join(scenarios)
        command = [self.node, str(CLIENT_SCRIPT), names, url, transport, protocol]
        if skip_negotiation:
            command.append("--skip-negotiation")
        return command

    def run(
        self,
        scenarios: str | list[str],
        url: str,
        transport: str = "WebSockets",
        protocol: str = "json",
        *,
        skip_negotiation: bool = False,
        timeout: float = NODE_TIMEOUT,
    ) -> dict[str, Any]:
        """Run in a subprocess (sync tests); returns ``{scenario: observations}``."""
        command = self.command(
            scenarios, url, transport, protocol, skip_negotiation=skip_negotiation
        )
        try:
            done = subprocess.run(
                command, cwd=REPO_ROOT, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as expired:
            pytest.fail(
                _describe(command, None, expired.stdout or b"", expired.stderr or b"", timeout),
                pytrace=False,
            )
        return _results(command, done.returncode, done.stdout, done.stderr)

    async def arun(
        self,
        scenarios: str | list[str],
        url: str,
        transport: str = "WebSockets",
        protocol: str = "json",
        *,
        skip_negotiation: bool = False,
    ) -> dict[str, Any]:
        """Like ``run`` but with ``trio.run_process`` (trio tests serving in-process);
        fails after ``NODE_TIMEOUT`` (wrap in ``trio.fail_after`` for less)."""
        command = self.command(
            scenarios, url, transport, protocol, skip_negotiation=skip_negotiation
        )
        try:
            with trio.fail_after(NODE_TIMEOUT):
                done = await trio.run_process(
                    command, cwd=REPO_ROOT, capture_stdout=True, capture_stderr=True, check=False
                )
        except trio.TooSlowError:
            pytest.fail(_describe(command, None, b"", b"", NODE_TIMEOUT), pytrace=False)
        return _results(command, done.returncode, done.stdout, done.stderr)

    async def arun_script(self, script: Path, *args: str) -> dict[str, Any]:
        """Run another script of ``js/`` that prints one ``{"ok", "results"}`` line,
        with ``trio.run_process``; fails after ``NODE_TIMEOUT``."""
        command = [self.node, str(script), *args]
        with trio.fail_after(NODE_TIMEOUT):
            done = await trio.run_process(
                command, cwd=REPO_ROOT, capture_stdout=True, capture_stderr=True, check=False
            )
        return _results(command, done.returncode, done.stdout, done.stderr)


def _describe(
    command: list[str], code: int | None, stdout: bytes, stderr: bytes, timeout: float | None
) -> str:
    what = f"timed out after {timeout} s" if code is None else f"exited with code {code}"
    return (
        f"node client {what}: {' '.join(command)}\n"
        f"--- stdout ---\n{stdout.decode(errors='replace')}\n"
        f"--- stderr ---\n{stderr.decode(errors='replace')}"
    )


def _results(command: list[str], code: int, stdout: bytes, stderr: bytes) -> dict[str, Any]:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        output = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        output = None
    if code != 0 or not isinstance(output, dict) or output.get("ok") is not True:
        pytest.fail(_describe(command, code, stdout, stderr, None), pytrace=False)
    results: dict[str, Any] = output["results"]
    return results


@pytest.fixture(scope="session")
def node_client() -> NodeClient:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20) is not on PATH; `make test` installs it", pytrace=False)
    for package in ("@microsoft/signalr", "@microsoft/signalr-protocol-msgpack"):
        if not (REPO_ROOT / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"{package} is not installed in {REPO_ROOT / 'node_modules'}; run `make node`",
                pytrace=False,
            )
    return NodeClient(node)
