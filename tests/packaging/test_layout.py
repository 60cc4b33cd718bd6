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


# -- the layering, from the import graph ------------------------------------------------
#
# Every import statement of engine/ and actors/ counts, at module level or inside a
# function, except those under `if TYPE_CHECKING:` (annotations only: they never run,
# so they cannot make an import cycle or pull trio in at run time).


def module_name(path: Path) -> str:
    """The installed name of a file of engine/ or actors/ (``triohub.hub.server``)."""
    for package, folder in sorted(FOLDERS.items(), key=lambda item: -len(item[0])):
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise ValueError(f"{path} is in neither engine/ nor actors/")


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names a module imports at run time: ``from x import y`` gives ``x``
    and ``x.y`` (``y`` may be a submodule), relative imports resolved."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    here = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def package_imports() -> dict[str, set[str]]:
    """Each module of engine/ and actors/ (installed names) and every name it imports
    at run time."""
    imports = {}
    for folder in FOLDERS.values():
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            module = module_name(path)
            imports[module] = imports_of(path.read_text(), module, path.name == "__init__.py")
    return imports


def import_graph(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """The edges between the package's own modules."""
    return {
        module: {name for name in names if name in imports and name != module}
        for module, names in imports.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_reads_relative_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import trio\n"
        "from . import clients\n"
        "from ..actors.router import Router\n"
        "if TYPE_CHECKING:\n"
        "    from .server import HubServer\n"
        "def later():\n"
        "    from ..transports import asgi\n"
    )
    names = imports_of(source, "triohub.hub.session", is_package=False)
    assert "triohub.hub.clients" in names
    assert "triohub.actors.router" in names
    assert "triohub.transports.asgi" in names  # a function-level import counts
    assert "trio" in names
    assert "triohub.hub.server" not in names  # TYPE_CHECKING only: excluded
    package = imports_of("from .router import Router", "triohub.actors", is_package=True)
    assert "triohub.actors.router" in package
    assert module_name(FOLDERS["triohub"] / "hub" / "server.py") == "triohub.hub.server"
    assert module_name(FOLDERS["triohub.actors"] / "__init__.py") == "triohub.actors"


def test_the_cycle_check_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_actors_import_nothing_from_the_engine() -> None:
    offenders = {
        module: sorted(
            name
            for name in names
            if name.split(".")[0] in OLD_NAMES
            or (name.startswith("triohub") and not name.startswith("triohub.actors"))
        )
        for module, names in package_imports().items()
        if module.startswith("triohub.actors")
    }
    assert len(offenders) >= 5
    assert {module: found for module, found in offenders.items() if found} == {}


def is_trio(name: str) -> bool:
    """trio itself or a trio_* library (trio_websocket): not triohub."""
    top = name.split(".")[0]
    return top == "trio" or top.startswith("trio_")


def test_the_protocol_imports_no_trio() -> None:
    assert [is_trio(n) for n in ("trio", "trio.lowlevel", "trio_websocket", "triohub")] == [
        True,
        True,
        True,
        False,
    ]
    offenders = {
        module: sorted(name for name in names if is_trio(name))
        for module, names in package_imports().items()
        if module.startswith("triohub.protocol")
    }
    assert len(offenders) >= 5
    assert {module: found for module, found in offenders.items() if found} == {}


def test_no_import_cycle_runs_through_the_hub() -> None:
    graph = import_graph(package_imports())
    assert "triohub.actors.router" in graph["triohub.hub.server"]
    through_hub = [
        component
        for component in cycles(graph)
        if any(module.startswith("triohub.hub.") for module in component)
    ]
    assert through_hub == []
