"""Ctrl-C during a lift with worker processes: one line, no traceback from any worker, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from empcn import cache as cf


def test_ctrl_c_during_a_lift_with_workers_prints_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "qm9.h5"
    lift = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "empcn",
            "lift",
            "--dataset",
            "qm9",
            "--limit",
            "20000",
            "--shard-size",
            "50",
            "--out",
            str(out),
            "--workers",
            "2",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(cf.shard_dir(out).glob("shard-*.h5"))) < 2:  # the workers are writing shards
        assert lift.poll() is None and time.monotonic() < deadline, lift.communicate()[1][-2000:]
        time.sleep(0.05)
    os.killpg(lift.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every process of the group gets it
    _, err = lift.communicate(timeout=120)
    assert lift.returncode == 130
    assert err.splitlines() == [
        f"error: interrupted: {out}: nothing complete was written (`empcn lift … --resume` keeps the shards "
        "already finished)"
    ]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")) == []
    for shard in cf.shard_dir(out).glob("shard-*.h5"):  # what is there is whole (a shard without its
        recorded = cf.recorded_digest(shard)  # digest, cut before it, is rebuilt by --resume)
        assert recorded in (None, cf.sha256_file(shard))
