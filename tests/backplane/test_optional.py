"""Without a Redis URL nothing imports Redis: the embedded default stays as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import trio
import triohub
from triohub import HubServer, Hub
from triohub.backplane import HubNode
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.native import serve_native
from demo.app import build_app
from demo.__main__ import main

app = build_app("x" * 32)
assert all(r.node is None for r in app.server.hubs.values())
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("coredis", "redis"))
print(loaded)
"""


def test_no_redis_module_is_loaded_without_a_backplane() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
