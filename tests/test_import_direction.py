"""The layers hold: every `import` in `memory_service/` (top-level or inside a function) points
down the house, never up or sideways past a layer.

    app, cli, openapi       the process: wires everything (never the client)
    http                    controllers: may use tools (the tool endpoints) and services
    tools                   tool runners: use services, never HTTP
    services                rules and transactions: use storage
    storage                 SQL, engines, tables
    clock, settings, logs,  small neutral modules any server layer may use
    errors
    wire                    what the client and the server share (tool messages, error types)
    client                  the Python client: the wire module and nothing of the server

Read with `ast` rather than by importing, so a lazy import inside a function counts as much as
one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import memory_service

PACKAGE = Path(memory_service.__file__).parent
NEUTRAL = {"clock", "settings", "logs", "errors"}
TOP = {"app", "cli", "openapi", "__main__"}
SERVER = {"storage", "services", "tools", "http"} | NEUTRAL | TOP

# What each layer may import (besides itself, the `memory_service` package root for its version,
# and the wire module, which every layer may use).
ALLOWED: dict[str, set[str]] = {
    "wire": set(),
    "client": set(),
    "neutral": {"neutral"},
    "storage": {"neutral"},
    "services": {"storage", "neutral"},
    "tools": {"services", "neutral"},
    "http": {"tools", "services", "neutral"},
    "top": {"http", "tools", "services", "storage", "neutral"},
}


def layer_of(module: str) -> str | None:
    """`memory_service.http.kv` -> "http"; None for the package root or anything outside."""
    parts = module.split(".")
    if parts[0] != "memory_service" or len(parts) == 1:
        return None
    head = parts[1]
    if head in NEUTRAL:
        return "neutral"
    if head in TOP:
        return "top"
    return head


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, package_dir: Path) -> bool:
    path = package_dir.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, at any depth."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from .. import tools` names a module: judge the module it reaches.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub, package_dir) else target))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        own = layer_of(module_name(path, package))
        if own is None:
            continue
        for line, target in imports_of(path, package):
            dest = layer_of(target)
            if dest is None or dest in (own, "wire") or dest in ALLOWED[own]:
                continue
            where = f"{path.relative_to(package.parent)}:{line}"
            out.append(f"{where}: {own} imports {target} ({dest})")
    return sorted(set(out))


def test_every_module_has_a_layer():
    # A new top-level module must be placed in a layer above, not judged as one of its own.
    heads = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
    }
    assert heads - {"__init__"} - SERVER - {"wire", "client"} == set()


def test_imports_point_down_the_house():
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "line", "expected"),
    [
        ("memory_service/http/x.py", "from ..storage.kv import A", "http imports"),
        ("memory_service/http/x.py", "def f():\n    from ..storage import kv", "http imports"),
        ("memory_service/tools/x.py", "from ..http.memory import f", "tools imports"),
        ("memory_service/tools/x.py", "import memory_service.client.errors", "tools imports"),
        ("memory_service/client/x.py", "from ..tools import messages", "client imports"),
        ("memory_service/storage/x.py", "from ..services.errors import E", "storage imports"),
        ("memory_service/services/x.py", "from ..http import auth", "services imports"),
        ("memory_service/http/x.py", "from ..services.kv import K\nfrom ..wire import m", None),
        (
            "memory_service/client/x.py",
            "from ..wire import errors\nfrom ..clock import iso",
            "client",
        ),
        (
            "memory_service/client/x.py",
            "from ..wire import errors\nfrom .. import __version__",
            None,
        ),
    ],
)
def test_the_checker_sees_leaks(tmp_path, source, line, expected):
    # The checker itself, on small files: a rule test that never fails would prove nothing.
    root = tmp_path / "memory_service"
    path = tmp_path / source
    path.parent.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (path.parent / "__init__.py").write_text("")
    path.write_text(line + "\n")
    found = violations(root)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found


ROW_TYPES = {"Row", "RowMapping", "Result", "CursorResult"}


def row_leaks(package: Path = PACKAGE) -> list[str]:
    """Storage functions that declare a SQLAlchemy row as what they return, and modules outside
    storage that import a row type at all."""
    out = []
    for path in sorted(package.rglob("*.py")):
        where = str(path.relative_to(package.parent))
        tree = ast.parse(path.read_text(), where)
        in_storage = layer_of(module_name(path, package)) == "storage"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                imported = {alias.name for alias in node.names} & ROW_TYPES
                if imported and not in_storage:
                    out.append(f"{where}:{node.lineno}: imports {sorted(imported)}")
            elif (
                in_storage
                and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and not node.name.startswith("_")
                and node.returns is not None
            ):
                names = {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)}
                if names & ROW_TYPES:
                    out.append(
                        f"{where}:{node.lineno}: {node.name} returns {ast.unparse(node.returns)}"
                    )
    return out


def test_rows_never_leave_storage():
    assert row_leaks() == []


def test_the_row_checker_sees_leaks(tmp_path):
    root = tmp_path / "memory_service"
    (root / "storage").mkdir(parents=True)
    (root / "services").mkdir()
    for folder in (root, root / "storage", root / "services"):
        (folder / "__init__.py").write_text("")
    (root / "storage" / "x.py").write_text(
        "from sqlalchemy.engine import Row\n\ndef f(conn) -> list[Row]:\n    pass\n"
    )
    (root / "services" / "y.py").write_text("from sqlalchemy.engine import Row, Connection\n")
    assert row_leaks(root) == [
        "memory_service/services/y.py:1: imports ['Row']",
        "memory_service/storage/x.py:3: f returns list[Row]",
    ]
