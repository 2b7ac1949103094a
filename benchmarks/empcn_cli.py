"""``empcn`` as the benchmarks run it: the command a user types, in a subprocess, from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def empcn(*args: str, tree: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m empcn ARGS`` with this checkout first on the path; output captured as text.

    ``tree``: another source tree's empcn instead (e.g. an older commit's), run from inside it so that
    no other checkout's package shadows it.
    """
    source = Path(__file__).resolve().parents[1] if tree is None else tree
    env = dict(os.environ, PYTHONPATH=str(source))
    return subprocess.run([sys.executable, "-m", "empcn", *args], env=env, cwd=tree, text=True, capture_output=True)
