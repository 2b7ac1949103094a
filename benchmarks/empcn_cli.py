"""``empcn`` as the benchmarks run it: the command a user types, in a subprocess, from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def empcn(*args: str) -> subprocess.CompletedProcess:
    """``python -m empcn ARGS`` with this checkout first on the path; output captured as text."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "empcn", *args], env=env, text=True, capture_output=True)
