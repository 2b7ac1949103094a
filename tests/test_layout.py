"""The package layout's rules: the train stage never imports the lift stage, the raw readers or RDKit."""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_only_segnn_imports_e3nn():
    """The registry imports a model's module on first use: training EGNN never loads e3nn (≈1 s)."""
    code = (
        "import sys\n"
        "from empcn.train.models.registry import build_model, builtin_variants\n"
        "for name, task in builtin_variants():\n"
        "    if name != 'segnn':\n"
        "        build_model(name, task=task)\n"
        "assert 'e3nn' not in sys.modules, 'e3nn imported'\n"
        "build_model('segnn', task='positions')\n"
        "assert 'e3nn' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cli_lists_models_without_importing_torch():
    """``--help`` and the choice of ``--model`` read the registry's names: neither torch nor a model loads."""
    code = (
        "import sys\n"
        "import empcn.cli\n"
        "from empcn.train.models.registry import MODELS\n"
        "assert MODELS.names()[:4] == ('egnn', 'empcn', 'decoupled', 'segnn'), MODELS.names()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
