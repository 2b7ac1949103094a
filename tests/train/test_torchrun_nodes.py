"""The multi-node command of docs/scaling.md: two torchrun agents ("nodes") meeting by c10d rendezvous.

Each agent runs ``-m empcn train`` with one rank, as two machines would (here both on 127.0.0.1):
the ranks must form one world of 2, train on their halves of the data, and only rank 0 writes the
run folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from empcn.train.metrics import read_records


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_by_c10d_rendezvous_train_one_model(qm9_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    node = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "readme",
        "-m",
        "empcn",
        "train",
        "--cache",
        str(qm9_cache),
        "--target",
        "gap",
        "--model",
        "egnn",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    agents = [
        subprocess.Popen(node, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    logs = [a.communicate(timeout=240)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    said = [line for log in logs for line in log.splitlines() if line.startswith("training egnn")]
    assert len(said) == 1 and "x 2 ranks" in said[0]  # one world of two; rank 0 alone prints
    assert [r.epoch for r in read_records(out)] == [1]  # and alone writes the run folder
    assert json.loads((out / "result.json").read_text())["epochs_run"] == 1
