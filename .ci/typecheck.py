"""`make typecheck`: mypy (strict, from pyproject.toml) on the package as it is installed.

Installed, engine/ is the package `triohub` and actors/ is `triohub.actors`
(pyproject.toml maps the folders), so engine/ imports `..actors`. mypy cannot follow the
editable install's import hook, and a folder is one package to it, so this script stages
the installed layout as symlinks, rebuilt on every run (new files are seen at once):

    build/typecheck/triohub/<each entry of engine/>  ->  engine/<entry>
    build/typecheck/triohub/actors                   ->  actors/

and runs mypy on it (`mypy_path` and `packages` in pyproject.toml name the staging
directory and `triohub`). mypy reports the staged paths; each line is mapped back to the
real file (build/typecheck/triohub/actors/x.py -> actors/x.py, the rest -> engine/...),
so editors and terminals jump to the right place. The exit status is mypy's.
Extra arguments are passed to mypy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "typecheck"
PACKAGE = STAGE / "triohub"
STAGED = re.compile(r"^(?P<lead>\S*?)build/typecheck/triohub/(?P<actors>actors/)?", re.M)


def stage() -> None:
    """The installed layout of triohub as symlinks into engine/ and actors/."""
    if STAGE.is_symlink() or STAGE.is_file():
        STAGE.unlink()
    shutil.rmtree(STAGE, ignore_errors=True)  # removes the links, never their targets
    PACKAGE.mkdir(parents=True)
    for entry in sorted((ROOT / "engine").iterdir()):
        if entry.name == "__pycache__":
            continue
        if entry.name == "actors":
            sys.exit("engine/actors would hide actors/ (installed as triohub.actors)")
        (PACKAGE / entry.name).symlink_to(os.path.relpath(entry, PACKAGE))
    (PACKAGE / "actors").symlink_to(os.path.relpath(ROOT / "actors", PACKAGE))


def real_paths(output: str) -> str:
    """build/typecheck/triohub/... -> engine/... or actors/... (mypy's paths, relative or not)."""

    def repl(match: re.Match[str]) -> str:
        lead = match.group("lead")
        if lead and not lead.endswith("/"):
            return match.group(0)
        return lead + ("actors/" if match.group("actors") else "engine/")

    return STAGED.sub(repl, output)


def main() -> int:
    stage()
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *sys.argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(real_paths(result.stdout))
    sys.stderr.write(real_paths(result.stderr))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
