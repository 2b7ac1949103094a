"""A full disk: one line naming the path and "no space left", nothing half-written, every run resumes.

The full file systems are small tmpfs mounts (:func:`small_disk`); these tests skip, saying why, where
the test process may not mount one. The runs that stopped mid-write are tested without a mount.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from helpers import error_line, invoke
from safety_helpers import TINY_RUN, copy_run, grow

from empcn import cache as cf
from empcn.train.checkpoint import BEST, LAST, load_checkpoint

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def pages(path: Path) -> int:
    return math.ceil(path.stat().st_size / (PAGE_KIB * 1024))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_a_lift_into_a_full_file_system_stops_in_one_line_and_resumes(small_disk, tmp_path: Path) -> None:
    disk = small_disk(100)  # the first shard of 20 molecules (~60 KB) fits, the second does not
    out = disk / "qm9.h5"
    args = [
        "lift",
        "--dataset",
        "qm9",
        "--limit",
        "60",
        "--shard-size",
        "20",
        "--out",
        out,
        "--workers",
        "1",
        "--no-progress",
    ]
    full = invoke(*args)
    assert full.exit_code == 2, full.output
    assert error_line(full) == f"error: {cf.shard_dir(out) / cf.shard_name(1)}: no space left on device"
    assert not out.exists() and temporaries(disk) == []  # no entry file, nothing half-written
    assert sorted(p.name for p in cf.shard_dir(out).iterdir()) == ["shard-00000.h5", "shard-00000.h5.sha256"]
    grow(disk, 2048)
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert cf.verify_cache(out).ok and len(cf.open_cache(out)) == 60


def test_a_training_on_a_full_file_system_stops_in_one_line_and_resumes(
    small_disk, qm9_cache: Path, tiny_run: Path
) -> None:
    # room for the lock, config.json, metrics.jsonl and one checkpoint, not for the second
    room = 3 + pages(tiny_run / BEST) + pages(tiny_run / BEST) // 2
    disk = small_disk(room * PAGE_KIB)
    run = disk / "run"
    full = invoke("train", "--cache", qm9_cache, "--target", "U0", "--out", run, *TINY_RUN)
    assert full.exit_code == 2, full.output
    assert error_line(full) == (
        f"error: {run / LAST}: no space left on device (the run keeps its checkpoint {BEST}: free space or fix "
        f"the folder, then `empcn train --resume {run}`)"
    )
    assert temporaries(disk) == [] and not (run / LAST).exists()
    assert load_checkpoint(run / BEST)["epoch"] == 1  # whole, and as new as the run got
    grow(disk, 4096)
    resumed = invoke("train", "--resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} after epoch 1 (step 2) from {BEST} ({LAST} is missing)" in resumed.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert invoke("evaluate", run, "--no-plot", "--device", "cpu").exit_code == 0


def test_a_run_stopped_between_last_and_best_still_evaluates_and_resumes(tiny_run: Path, tmp_path: Path) -> None:
    """A run that wrote last.pt but not best.pt (a full disk under earlier versions) is not stuck."""
    run = copy_run(tiny_run, tmp_path / "run")
    (run / BEST).unlink()
    evaluated = invoke("evaluate", run, "--json", "--no-plot", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    note = f"note: {run / BEST} is missing (the run stopped while writing it?): used {LAST}, the run's latest checkpoint, instead"
    assert evaluated.stderr.strip() == note
    assert json.loads(evaluated.stdout)["epoch"] == 2
    resumed = invoke("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert f"{run / BEST} (epoch 2) is missing: epoch 2" in resumed.stdout
    assert (run / BEST).is_file() and json.loads((run / "result.json").read_text())["epochs_run"] == 3


def test_a_run_with_only_best_resumes_from_it(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    (run / LAST).unlink()
    resumed = invoke("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} after epoch 2" in resumed.stdout and (run / LAST).is_file()
