"""One writer per run folder: a second `empcn train` into a running run's folder is refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import error_line, invoke


def test_a_second_training_into_a_running_runs_folder_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    options = [
        "--target",
        "U0",
        "--model",
        "egnn",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--batch-size",
        "16",
        "--limit-batches",
        "1",
        "--valid-every",
        "100000",
        "--no-progress",
    ]
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "empcn",
            "train",
            "--cache",
            str(qm9_cache),
            "--out",
            str(out),
            "--epochs",
            "100000",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():  # the first run is training: it has written epochs
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.2)
        for args in (
            ["--cache", qm9_cache, "--out", out, "--epochs", "3", *options],  # a new run there
            ["--resume", out, "--no-progress"],
        ):  # a resume of the running run
            second = invoke("train", *args)
            assert second.exit_code == 2, second.output
            assert error_line(second) == (
                f"error: {out}: another training (pid {first.pid}) is writing this run folder; wait for it to end "
                "or choose another --out"
            )
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the kernel dropped the lock of the killed run: it resumes
    resumed = invoke("train", "--resume", out, "--time-limit", "0.001", "--no-progress")
    assert resumed.exit_code == 0 and "time limit" in resumed.stdout, resumed.output


def test_the_lock_is_shared_within_one_process_and_released_with_the_last_handle(tmp_path: Path) -> None:
    from empcn.train.run_lock import LOCK_FILE, RunFolderLock

    a, b = RunFolderLock(tmp_path), RunFolderLock(tmp_path)  # e.g. a trainer built twice by one program
    probe = [
        sys.executable,
        "-c",
        "import sys; from empcn.train.run_lock import RunFolderLock as L; L(sys.argv[1])",
        str(tmp_path),
    ]
    a.release()
    busy = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    assert busy.returncode != 0 and f"another training (pid {os.getpid()})" in busy.stderr
    b.release()
    assert subprocess.run(probe, capture_output=True, text=True, timeout=120).returncode == 0
    assert (tmp_path / LOCK_FILE).is_file()
