"""Issue 14's done-when: the wheel, installed into a fresh virtual environment, is one
package named `triohub`; nothing named `engine` or `actors` reaches site-packages.

The wheel is built (pip, PEP 517 with build isolation: setuptools comes from PyPI or
pip's cache) from a copy of just what a source checkout ships to the build, so stale
build/ output of the working tree cannot leak into it. It is installed with --no-deps
into a venv without pip (pip --python installs into it) and imported there with this
environment's site-packages on PYTHONPATH for the dependencies only (a .pth there, such
as the editable install's finder, is not run from PYTHONPATH). ~5 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .support import OLD_NAMES, PUBLIC, PYPROJECT, ROOT, clean_env

pytestmark = pytest.mark.e2e

VERSION = PYPROJECT["project"]["version"]
DIST_INFO = f"triohub-{VERSION}.dist-info"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "triohub"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("engine", "actors"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    dist = work / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, source, cwd=work)
    (built,) = dist.glob("triohub-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", env, cwd=env.parent)
    python = env / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=env.parent)
    return env


def site_packages(venv: Path) -> Path:
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run(python, "-I", "-c", code, cwd=venv).strip())


def test_the_wheel_holds_one_package_with_py_typed_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"{DIST_INFO}/METADATA").decode()
    assert {name.split("/")[0] for name in names} == {"triohub", DIST_INFO}
    assert "triohub/py.typed" in names
    assert f"{DIST_INFO}/licenses/LICENSE" in names
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    # Every module of both folders, under the new name (actors/ inside triohub).
    assert "triohub/actors/router.py" in names
    expected = {
        "triohub/" + str(path.relative_to(ROOT / "engine"))
        for path in (ROOT / "engine").rglob("*.py")
    } | {"triohub/actors/" + path.name for path in (ROOT / "actors").glob("*.py")}
    assert {name for name in names if name.endswith(".py")} == expected


def test_nothing_named_engine_or_actors_in_site_packages(venv: Path) -> None:
    top = {path.name for path in site_packages(venv).iterdir()}
    assert "triohub" in top
    assert DIST_INFO in top
    clashes = {name for name in top if name.split(".")[0] in OLD_NAMES}
    assert clashes == set()


def test_import_triohub_in_the_fresh_venv(venv: Path) -> None:
    python = venv / "bin" / "python"
    # This environment's site-packages supplies trio, hypercorn and the rest; triohub
    # itself must come from the fresh venv (it is not a folder of that site-packages).
    deps = sysconfig.get_paths()["purelib"]
    assert not (Path(deps) / "triohub").exists(), "a non-editable triohub would shadow the wheel"
    code = f"""
import importlib.util
import triohub, triohub.actors.router
from triohub import {", ".join(PUBLIC)}
print(triohub.__file__)
print(triohub.actors.router.__file__)
print([name for name in {OLD_NAMES!r} if importlib.util.find_spec(name) is not None])
"""
    out = run(python, "-c", code, cwd=venv, env=clean_env(PYTHONPATH=deps))
    package, router, old = out.splitlines()
    here = site_packages(venv)
    assert Path(package) == here / "triohub" / "__init__.py"
    assert Path(router) == here / "triohub" / "actors" / "router.py"
    assert old == "[]"
