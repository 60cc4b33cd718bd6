"""``triohub.protocol`` is sans-IO: importing every one of its modules never imports trio."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DIR = ROOT / "engine" / "protocol"

# Runs in a fresh interpreter, because this test process already has trio
# (pytest-trio). `triohub/__init__.py` (engine/__init__.py) is the public API and
# imports the Trio parts on purpose, so a stand-in parent package `triohub` over the
# engine/ folder is used: only triohub.protocol's own imports run. A meta path hook
# makes any trio import fail with a traceback naming the importer, and sys.modules
# is checked at the end as well.
PROBE = """
import importlib, importlib.abc, pkgutil, sys, types

class NoTrio(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trio" or name.startswith(("trio.", "trio_")):
            raise ImportError(f"sans-IO violation: something imported {name!r}")
        return None

sys.meta_path.insert(0, NoTrio())
parent = types.ModuleType("triohub")
parent.__path__ = [sys.argv[1]]
sys.modules["triohub"] = parent

import triohub.protocol
names = sorted(
    info.name for info in pkgutil.walk_packages(triohub.protocol.__path__, "triohub.protocol.")
)
for name in names:
    importlib.import_module(name)
assert not [m for m in sys.modules if m == "trio" or m.startswith("trio.")], "trio imported"
print(",".join(["triohub.protocol", *names]))
"""


def test_no_protocol_module_imports_trio() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "engine")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.strip().split(","))
    # The probe imported every module of the package, including ones added later.
    expected = {"triohub.protocol"} | {
        f"triohub.protocol.{info.name}" for info in pkgutil.iter_modules([str(PROTOCOL_DIR)])
    }
    assert imported == expected
    assert {"triohub.protocol.connection", "triohub.protocol.handshake"} <= imported
