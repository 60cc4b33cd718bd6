"""The demo and its client examples at the edges a newcomer meets first: a port
in use, an address this machine does not have, an unknown option value, a
server that is not running. Each is one line naming the problem and the fix,
with a known exit status and no traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.__main__ import parser

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "DEMO_JWT_SECRET": "cli-test-secret-" + "x" * 32, "PYTHONUNBUFFERED": "1"}
UNASSIGNED = "192.0.2.1"
"""TEST-NET-1 (RFC 5737): no machine has it, so binding it fails."""


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60, check=False
    )


def demo(*arguments: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "demo", *arguments)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another socket listens on for the test's duration."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_port_in_use_is_one_line_with_the_fix_and_exit_status_1(taken_port: int) -> None:
    result = demo("--host", "127.0.0.1", "--port", str(taken_port))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot listen on http://127.0.0.1:{taken_port}: the port is in use by "
        f"another process; choose another port: make demo PORT={taken_port + 1} "
        "(PORT=0 picks a free one)\n"
    )
    assert result.stdout == ""


def test_an_address_this_machine_lacks_is_one_line_with_the_fix() -> None:
    result = demo("--host", UNASSIGNED, "--port", "0")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot listen on http://{UNASSIGNED}:0: this machine has no such address; "
        "choose another address: make demo HOST=127.0.0.1\n"
    )


def test_an_unknown_log_level_is_refused_by_argparse() -> None:
    result = demo("--log-level", "loud")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "python -m demo: error: argument --log-level: invalid choice: 'LOUD' "
        "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')"
    )


def test_a_lower_case_log_level_is_accepted() -> None:
    assert parser().parse_args(["--log-level", "debug"]).log_level == "DEBUG"


def test_help_describes_every_option_and_every_environment_variable() -> None:
    result = demo("--help")
    assert result.returncode == 0
    named = set()
    for source in (REPO / "demo").glob("*.py"):
        named |= set(re.findall(r"\bDEMO_[A-Z_]+\b", source.read_text()))
    assert {"DEMO_JWT_SECRET", "DEMO_SESSION_MAX_AGE"} <= named
    missing = sorted(name for name in named if name not in result.stdout)
    assert missing == []
    for action in parser()._actions:
        for option in action.option_strings:
            assert option in result.stdout
        assert action.help, f"{action.option_strings} has no help text"


def test_the_python_client_says_in_one_line_that_nothing_listens(closed_port: int) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    result = run(
        sys.executable, "-m", "demo.client_pysignalr", base, "alice", "alice-password", "hi"
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot connect to {base}: connection refused (is the demo running?)\n"
    )


def test_the_node_client_says_in_one_line_that_nothing_listens(closed_port: int) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    result = run("node", "demo/client_node.mjs", base, "alice", "alice-password", "hi")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot connect to {base}: connection refused (is the demo running?)\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "demo.client_pysignalr", "--help"],
        ["node", "demo/client_node.mjs", "--help"],
    ],
    ids=["pysignalr", "node"],
)
def test_the_clients_accept_help(command: list[str]) -> None:
    result = run(*command)
    assert result.returncode == 0
    assert result.stdout.startswith("usage:")
    for word in ("--to", "--listen", "BASE_URL" if "node" in command else "base_url"):
        assert word in result.stdout
    assert result.stderr == ""
