"""Fixtures of the tests that hand empcn caches and runs the way a careless or hostile teammate would."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import invoke
from safety_helpers import TINY_RUN


@pytest.fixture(scope="session")
def tiny_run(qm9_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished U0 run trained through `empcn train` (copy it before changing anything in it)."""
    out = tmp_path_factory.mktemp("safety-run") / "u0-egnn"
    result = invoke("train", "--cache", qm9_cache, "--target", "U0", "--out", out, *TINY_RUN)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``mount(kib)``: a new tmpfs of ``kib`` KiB (a file system that fills up), unmounted after the test.

    Skips, saying why, where this process may not mount (not root, no user namespace): the only
    tests that may skip are the ones needing a file system of their own.
    """
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no `mount` command here: the full-disk tests mount a small tmpfs")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0755", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(
                f"cannot mount a small tmpfs here ({' '.join(proc.stderr.split()) or 'mount failed'}): "
                "the full-disk tests need root or CAP_SYS_ADMIN"
            )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
