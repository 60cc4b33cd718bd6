"""The demo's two script clients, ``demo/client_pysignalr.py`` and ``demo/client_node.mjs``,
run as a user would run them against ``python -m demo``: a token from ``/api/token``,
then a chat on ``/hubs/chat`` with the bearer token."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo_process import REPO_ROOT, DemoServer

from .conftest import Lines

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
CONNECTION_ID = r"[A-Za-z0-9_-]{22}"
CLUSTER_CONNECTION_ID = rf"{CONNECTION_ID}\.\d+\.[A-Za-z0-9_-]+\.0\.[A-Za-z0-9_-]+"
"""pysignalr negotiates version 0, whose connection id is its token: in a cluster a
signed one (``transports/cluster.py``)."""


def pysignalr_command(demo: DemoServer, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "demo" / "client_pysignalr.py"), demo.base_url, *args]


def node_command(demo: DemoServer, *args: str) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20) is not on PATH; `make test` installs it", pytrace=False)
    return [node, str(REPO_ROOT / "demo" / "client_node.mjs"), demo.base_url, *args]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def output_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.splitlines()


def test_pysignalr_client(shared_demo: DemoServer) -> None:
    done = run(
        pysignalr_command(
            shared_demo,
            "alice",
            "alice-password",
            "Hi from pysignalr",
            "--to",
            "alice@contoso.example",
        )
    )
    lines = output_lines(done)
    connection_id = CLUSTER_CONNECTION_ID if shared_demo.cluster else CONNECTION_ID
    assert re.fullmatch(
        rf"connected as alice <alice@contoso\.example> roles=Administrators connection={connection_id}",
        lines[0],
    ), lines
    assert sorted(lines[1:]) == [
        "ReceiveDirectMessage alice@contoso.example: Hi from pysignalr",
        "ReceiveMessage alice: Hi from pysignalr",
    ]


@pytest.mark.parametrize("transport", ["WebSockets", "ServerSentEvents", "LongPolling"])
def test_node_client(shared_demo: DemoServer, transport: str) -> None:
    message = f"Hi from Node over {transport}"
    done = run(
        node_command(
            shared_demo,
            *("bob", "bob-password", message),
            *("--to", "bob@contoso.example", "--transport", transport),
        )
    )
    lines = output_lines(done)
    assert re.fullmatch(
        rf"connected as bob <bob@contoso\.example> roles=\(none\) "
        rf"connection={CONNECTION_ID} transport={transport}",
        lines[0],
    ), lines
    assert sorted(lines[1:]) == [
        f"ReceiveDirectMessage bob@contoso.example: {message}",
        f"ReceiveMessage bob: {message}",
    ]


def test_clients_chat_with_each_other(shared_demo: DemoServer, tmp_path: Path) -> None:
    """pysignalr (alice) listens while Node (bob) writes to everyone and to alice."""
    listener = subprocess.Popen(
        pysignalr_command(
            shared_demo, "alice", "alice-password", "alice listening", "--listen", "60"
        ),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert listener.stdout is not None
    lines = Lines(listener.stdout, tmp_path / "pysignalr.log")
    try:
        lines.wait_for("^ReceiveMessage alice: alice listening$", TIMEOUT)
        output_lines(
            run(
                node_command(
                    shared_demo,
                    "bob",
                    "bob-password",
                    "hello alice",
                    "--to",
                    "alice@contoso.example",
                )
            )
        )
        expected = {
            "ReceiveDirectMessage bob@contoso.example: hello alice",
            "ReceiveMessage bob: hello alice",
        }
        while expected:  # in either order
            expected.discard(lines.wait_for("^Receive", TIMEOUT).string.rstrip("\n"))
        listener.send_signal(signal.SIGINT)
        assert listener.wait(timeout=TIMEOUT) == 0
    except (TimeoutError, EOFError) as error:
        pytest.fail(f"{error}; pysignalr printed:\n{''.join(lines.seen)}", pytrace=False)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


@pytest.mark.parametrize("client", ["pysignalr", "node"])
def test_wrong_password(shared_demo: DemoServer, client: str) -> None:
    command = {"pysignalr": pysignalr_command, "node": node_command}[client]
    done = run(command(shared_demo, "alice", "not-her-password", "never sent"))
    assert done.returncode == 1
    assert "POST /api/token answered 401" in done.stderr
    assert "Wrong username or password." in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("client", ["pysignalr", "node"])
def test_a_direct_message_by_username_and_an_unknown_user(
    shared_demo: DemoServer, client: str
) -> None:
    """``--to`` takes a username as well as a user id; an unknown user is one line in
    the hub's words (not the reference's "unexpected error" wrapper) and exit status 1."""
    command = pysignalr_command if client == "pysignalr" else node_command
    message = f"to myself by name via {client}"
    lines = output_lines(run(command(shared_demo, "bob", "bob-password", message, "--to", "bob")))
    assert f"ReceiveDirectMessage bob@contoso.example: {message}" in lines

    refused = run(command(shared_demo, "bob", "bob-password", "hello?", "--to", "zed"))
    assert refused.returncode == 1
    assert refused.stderr == "error: Unknown user 'zed'.\n"
