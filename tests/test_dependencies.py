"""Every package that empcn imports when a module loads is a declared dependency of a plain install.

Optional extras (TensorBoard, Dask, …) are imported inside the functions that need them; what a module
imports at load time must come with ``pip install empcn`` itself — a dependency that only arrives
through another package (click through older typer, or through Dask in the test extra) breaks a fresh
install when that package changes.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "empcn"


def _load_time_imports(path: Path) -> set[str]:
    """Top-level names imported by the statements of a module's body (not inside functions or TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared() -> set[str]:
    """Distribution names (normalised) that a plain install of empcn requires."""
    out = set()
    for line in requires("empcn") or []:
        if "extra ==" in line:
            continue
        out.add(re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def test_every_module_level_import_is_a_declared_dependency() -> None:
    declared = _declared()
    providers = packages_distributions()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _load_time_imports(path):
            if name in sys.stdlib_module_names or name in {"empcn", "__future__"}:
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
            assert dists, f"{path.relative_to(PACKAGE.parent)} imports {name}, which no installed distribution provides"
            if not dists & declared:
                missing.append(f"{path.relative_to(PACKAGE.parent)}: {name} ({', '.join(sorted(dists))})")
    assert not missing, "imported at load time but not in install_requires: " + "; ".join(missing)
