"""The executor and the ledger do not import each other, save the ledger's one read API.

The executor learns what the ledger holds only through the reports stream and
:mod:`pipeline.ledger.inflight`; the ledger never imports the executor. Solana helpers both
need live in :mod:`pipeline.solana`, which imports neither. Imports are read from the
source with ast (direct imports, at any depth in a module, relative ones resolved).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).resolve().parent
LEDGER_READ_API = "pipeline.ledger.inflight"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (for ``from x import y``: x, and x.y in case y is one)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _imports_of_package(name: str) -> dict[str, set[str]]:
    folder = ROOT / name
    return {_module_name(path): _imports(path) for path in sorted(folder.rglob("*.py"))}


def _within(imported: str, package: str) -> bool:
    return imported == package or imported.startswith(package + ".")


def test_the_ledger_never_imports_the_executor() -> None:
    offenders = {module: sorted(i for i in imports if _within(i, "pipeline.executor"))
                 for module, imports in _imports_of_package("ledger").items()}
    assert {m: found for m, found in offenders.items() if found} == {}


def test_the_executor_imports_only_the_ledgers_read_api() -> None:
    offenders = {module: sorted(i for i in imports if _within(i, "pipeline.ledger")
                                and not _within(i, LEDGER_READ_API))
                 for module, imports in _imports_of_package("executor").items()}
    assert {m: found for m, found in offenders.items() if found} == {}
    users = {module for module, imports in _imports_of_package("executor").items()
             if any(_within(i, LEDGER_READ_API) for i in imports)}
    assert users, "the check would pass vacuously if the read API moved"


def test_the_shared_solana_helpers_import_neither() -> None:
    offenders = {module: sorted(i for i in imports if _within(i, "pipeline.executor")
                                or _within(i, "pipeline.ledger"))
                 for module, imports in _imports_of_package("solana").items()}
    assert {m: found for m, found in offenders.items() if found} == {}


def test_the_import_walk_sees_imports_inside_functions() -> None:
    # The ledger imports the Solana helpers lazily (only on a chain venue).
    assert "pipeline.solana.account" in _imports(ROOT / "ledger" / "process.py")
    assert "pipeline.ledger.db" in _imports(ROOT / "ledger" / "inflight.py")
