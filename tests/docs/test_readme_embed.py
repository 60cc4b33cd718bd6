"""The README's "Embed it" guide, run as written.

Every fenced block preceded by ``<!-- readme-test: NAME -->`` is extracted: the
blocks named like files are written into an empty folder and run there (the
server as a real process, the official JavaScript client with Node.js, the
pysignalr client), and the blocks named ``*-output`` are what those runs must
print, exactly. Edit the README and this test follows; break the example and
this test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-test: (\S+) -->\n```\w*\n(.*?)```\n", re.DOTALL)
LISTENING = re.compile(r"hypercorn listening on (http://127\.0\.0\.1:\d+)")
LIMIT = 30.0
"""Seconds any one process may take before the test fails."""


def readme_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for name, body in BLOCK.findall((REPO / "README.md").read_text()):
        assert name not in blocks, f"two README blocks named {name}"
        blocks[name] = body
    return blocks


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    found = readme_blocks()
    expected = {"chat_server.py", "mint_token.py", "client.mjs", "client_py.py"}
    assert expected | {"node-output", "pysignalr-output"} <= set(found)
    return found


@pytest.fixture(scope="module")
def folder(blocks: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's files in an empty folder (with the repository's npm packages,
    as ``npm install @microsoft/signalr`` would put them there)."""
    where = tmp_path_factory.mktemp("embed")
    for name, body in blocks.items():
        if "." in name:
            (where / name).write_text(body)
    (where / "node_modules").symlink_to(REPO / "node_modules")
    return where


def env() -> dict[str, str]:
    # Only the installed package: nothing of this repository on the path.
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "CHAT_JWT_SECRET"}}
    return {**clean, "PYTHONUNBUFFERED": "1"}


class ServerProcess:
    """``python chat_server.py`` on a free port, its output copied to ``log_path``
    by a thread (read as it comes: no polling)."""

    def __init__(self, folder: Path, log_name: str) -> None:
        self.log_path = folder / log_name
        self.process = subprocess.Popen(
            [sys.executable, "chat_server.py"],
            cwd=folder,
            env={**env(), "PORT": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.listening = threading.Event()
        self.url = ""
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                found = LISTENING.search(line)
                if found and not self.listening.is_set():
                    self.url = found.group(1)
                    self.listening.set()
        self.listening.set()  # exited: whoever waits finds no URL

    def wait_listening(self) -> str:
        assert self.listening.wait(LIMIT), "chat_server.py did not say where it listens"
        assert self.url, f"chat_server.py exited:\n{self.log()}"
        return self.url

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGINT (Ctrl+C); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        self._copier.join(LIMIT)
        return code


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(folder, "server.log")
    try:
        process.wait_listening()
        yield process
    finally:
        process.stop()


def run(folder: Path, *command: str) -> str:
    result = subprocess.run(
        command, cwd=folder, env=env(), capture_output=True, text=True, timeout=LIMIT, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stderr == "", result.stderr
    return result.stdout


def token(folder: Path, *user_and_roles: str) -> str:
    return run(folder, sys.executable, "mint_token.py", *user_and_roles).strip()


def test_the_official_js_client_gets_what_the_readme_says(
    server: ServerProcess, folder: Path, blocks: dict[str, str]
) -> None:
    url = server.url
    printed = run(folder, "node", "client.mjs", url, token(folder, "bob"))
    printed += run(folder, "node", "client.mjs", url, token(folder, "alice", "Moderators"))
    assert printed == blocks["node-output"]


def test_pysignalr_gets_what_the_readme_says(
    server: ServerProcess, folder: Path, blocks: dict[str, str]
) -> None:
    url = server.url
    printed = run(folder, sys.executable, "client_py.py", url, token(folder, "carol"))
    assert printed == blocks["pysignalr-output"]


def test_the_server_logs_where_it_listens_and_each_connection_without_tokens(
    server: ServerProcess, folder: Path
) -> None:
    url = server.url
    secret_token = token(folder, "dave")
    run(folder, sys.executable, "client_py.py", url, secret_token)
    log = server.log()
    assert f"hypercorn listening on {url}" in log
    assert re.search(r"connection \S+ opened: hub=ChatHub user=dave transport=WebSockets", log)
    assert secret_token not in log
    assert secret_token.split(".")[2] not in log  # not even the signature


def test_the_example_imports_only_what_it_uses(folder: Path) -> None:
    python_files = sorted(str(path) for path in folder.glob("*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F", *python_files],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_server_stops_gracefully_on_sigint(folder: Path) -> None:
    """Its own process, so the shared one above keeps running."""
    process = ServerProcess(folder, "stop.log")
    try:
        process.wait_listening()
    finally:
        code = process.stop()
    assert code == 0
    assert "Traceback" not in process.log()
