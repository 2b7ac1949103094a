"""Data-parallel training: 2 processes (gloo, CPU) under ``python -m torch.distributed.run``.

Each rank records the sample indices of its training batches and saves its final weights; the
ranks must end with identical weights, see disjoint batches (as many on each rank), and only rank 0
writes the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from empcn.cache import open_cache
from empcn.train.metrics import read_records

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    from empcn.train.config import TrainConfig
    from empcn.train.loop import Trainer, shutdown_quietly

    cache, out, probe = sys.argv[1:4]
    config = TrainConfig(cache=cache, target="gap", model="empcn", out=out, epochs=2, batch_size=16,
                         hidden=16, layers=2, progress=False, seed=3)
    trainer = Trainer(config)
    seen, final = [], [None]

    class Recorder:
        def __init__(self, loader):
            self.loader = loader
        def __iter__(self):
            batches = []
            seen.append(batches)
            for batch in self.loader:
                batches.append(batch.sample_index.tolist())
                yield batch
            # the loop asks for the next batch only after its optimiser step: these are the epoch's weights
            final[0] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    trainer.train_loader = Recorder(trainer.train_loader)
    result = trainer.run()
    rank = trainer.env.rank
    torch.save(final[0], f"{probe}/weights-{rank}.pt")  # run() ends holding best.pt's weights
    with open(f"{probe}/batches-{rank}.json", "w") as f:
        json.dump({"epochs": seen, "steps": len(trainer.train_stream), "test_mae": result.test_error}, f)
    shutdown_quietly(trainer.env)
    """
)


def test_two_gloo_ranks_train_the_same_model_on_disjoint_batches(qm9_cache: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    probe = tmp_path / "probe"
    probe.mkdir()
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(qm9_cache),
        str(out),
        str(probe),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    weights = [torch.load(probe / f"weights-{r}.pt", weights_only=True) for r in range(2)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    logs = [json.loads((probe / f"batches-{r}.json").read_text()) for r in range(2)]
    assert logs[0]["test_mae"] == logs[1]["test_mae"]  # all-reduced evaluation
    train = open_cache(qm9_cache).splits["train"]
    for epoch in range(2):
        per_rank = [logs[r]["epochs"][epoch] for r in range(2)]
        assert len(per_rank[0]) == len(per_rank[1]) == logs[0]["steps"]  # same number of steps: no hang
        samples = [np.concatenate(batches) for batches in per_rank]
        assert not set(samples[0]) & set(samples[1])  # disjoint
        union = np.concatenate(samples)
        assert len(union) == len(train) - len(train) % 2 and np.isin(union, train).all()
    assert logs[0]["epochs"][0] != logs[0]["epochs"][1]  # reshuffled each epoch

    # rank 0 alone wrote the run folder: one metrics line per epoch, its weights in last.pt
    assert [r.epoch for r in read_records(out)] == [1, 2]
    last = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last[k], weights[0][k]) for k in last)
