"""Helpers of the tests that hand empcn caches and runs the way a careless or hostile teammate would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: A run small enough to train in a second: EGNN, width 8, one layer, 2 epochs of 2 batches.
TINY_RUN = [
    "--model",
    "egnn",
    "--hidden",
    "8",
    "--layers",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "50",
    "--limit-batches",
    "2",
    "--no-progress",
]


def copy_run(run: Path, dst: Path) -> Path:
    """A copy of the run folder ``run`` at ``dst``."""
    shutil.copytree(run, dst, symlinks=True)
    return dst


def copy_cache(entry: Path, folder: Path) -> Path:
    """A copy of the cache ``entry`` (entry file and shards folder) in ``folder``; its entry file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(entry, folder / entry.name)
    shutil.copytree(entry.with_name(entry.stem + ".shards"), folder / (entry.stem + ".shards"))
    return folder / entry.name


def grow(point: Path, kib: int) -> None:
    """Give the tmpfs at ``point`` ``kib`` KiB (freeing space on a full disk)."""
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(point)], check=True, capture_output=True)
