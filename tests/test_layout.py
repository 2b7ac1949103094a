"""The package layout's rules: the train stage never imports the lift stage, the raw readers or RDKit."""

from __future__ import annotations

import ast
from pathlib import Path

import empcn

FORBIDDEN = ("empcn.lift", "empcn.data", "rdkit", "networkx")


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_under_train_imports_lift_data_or_rdkit():
    train = Path(empcn.__file__).parent / "train"
    files = sorted(train.rglob("*.py"))
    assert len(files) > 20
    offenders = {
        f"{path.relative_to(train.parent)}: {name}"
        for path in files
        for name in imported_modules(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert not offenders, sorted(offenders)
