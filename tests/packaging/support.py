"""What the packaging tests share: the repository and the installed layout."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Installed, the repository's engine/ is `triohub` and actors/ is `triohub.actors`.
FOLDERS = {"triohub": ROOT / "engine", "triohub.actors": ROOT / "actors"}
OLD_NAMES = ("engine", "actors")
PUBLIC = (
    "Hub",
    "HubServer",
    "SignalRApp",
    "run_until_signalled",
    "serve_hypercorn",
    "serve_native",
    "serve_trio_websocket",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a fresh interpreter: no PYTHONPATH of ours, nothing from pytest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    return {**env, **extra}
