"""The installed name is `triohub`: fast checks against the development install.

The wheel itself is built and installed into a fresh environment in test_wheel.py.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

from .support import FOLDERS, OLD_NAMES, PUBLIC, PYPROJECT, ROOT, clean_env

SKIP = {"node_modules", "build", "dist", ".git", "__pycache__"}


def python_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not any(
            part in SKIP or part.startswith(".venv") for part in path.relative_to(ROOT).parts
        )
    ]


def old_imports(source: str) -> list[str]:
    """Absolute imports of the folder names (`engine...`, `actors...`): installed, they
    do not exist (inside engine/ the actors are `..actors`, elsewhere `triohub...`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in OLD_NAMES]
    return found


def test_the_check_sees_an_old_import() -> None:
    source = "import engine.hub\nfrom actors.kit import Reply\nfrom ..actors import kit\n"
    assert old_imports(source + "from triohub.actors import kit\nimport engineering\n") == [
        "engine.hub",
        "actors.kit",
    ]


def test_nothing_imports_the_folder_names() -> None:
    # The repository root is on sys.path under pytest, so `import engine` would still
    # work here and hide a module missed by the rename (or merged in from elsewhere).
    files = python_files()
    assert len(files) > 100
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in files
        if (found := old_imports(path.read_text()))
    }
    assert offenders == {}


def test_every_package_of_the_folders_is_installed() -> None:
    # pyproject.toml lists the packages (the folder mapping rules out `find`): a new
    # subpackage of engine/ or actors/ must be listed there, or the wheel lacks it.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert {name: ROOT / folder for name, folder in mapping.items()} == FOLDERS
    on_disk = {"triohub.actors"}
    for init in (ROOT / "engine").rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT / "engine").parts
        on_disk.add(".".join(("triohub", *parts)))
    assert not list((ROOT / "actors").glob("*/__init__.py")), "list actors' subpackages too"
    assert listed == on_disk
    assert (ROOT / "engine" / "py.typed").is_file()
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["triohub"] == ["py.typed"]


def run_fresh(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,  # not the repository: its folders must not be what gets imported
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_import_triohub_in_a_fresh_interpreter(tmp_path: Path) -> None:
    code = f"""
import importlib.util, sys
import triohub, triohub.actors.router
from triohub import {", ".join(PUBLIC)}
assert sorted(triohub.__all__) == sorted(set(triohub.__all__))
missing = [name for name in triohub.__all__ if not hasattr(triohub, name)]
assert not missing, missing
print(triohub.__file__)
print(triohub.actors.router.__file__)
print([name for name in {OLD_NAMES!r} if importlib.util.find_spec(name) is not None])
"""
    result = run_fresh(code, tmp_path)
    assert result.returncode == 0, result.stderr
    package, router, old = result.stdout.splitlines()
    # The development install serves the repository's folders under the new name,
    # and the folder names are not importable from it.
    assert Path(package) == FOLDERS["triohub"] / "__init__.py"
    assert Path(router) == FOLDERS["triohub.actors"] / "router.py"
    assert old == "[]"


def test_the_readme_imports_exist() -> None:
    # Item 2 of issue 14 runs the README's examples; until then, at least every
    # `from triohub... import ...` of its Python blocks names something that exists.
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    imports = [
        node
        for block in blocks
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "triohub"
    ]
    assert len(imports) >= 2
    for node in imports:
        module = importlib.import_module(node.module or "")
        missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
        assert missing == [], f"README: from {node.module} import {missing}"
