"""Training throughput (samples/s) of EGNN, EMPCN, decoupled EMPCN and SEGNN at their defaults.

On a QM9 cache the models are the graph-level regressors (target U0); on a positions cache (N-body,
``--cache data/nbody.h5``) the same ``--models`` names train the position models (``segnn`` →
``segnn_dynamics``), with the positions task's defaults.

Runs the real training loop (:class:`empcn.train.loop.Trainer`, one warm-up epoch then one timed
epoch, each cut to ``--batches`` batches) on a lifted cache, on CPU and on CUDA when available, and
the data loader alone (shards → collated batches, no model) with 0 and ``--workers`` worker
processes. Prints markdown table rows with the command, machine and date.

    python benchmarks/train_throughput.py --cache data/qm9.h5 [--batches 20] [--devices cpu,cuda]

Without ``--cache`` it lifts the first ``--lift`` QM9 molecules into a temporary folder first.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import describe

from empcn.train.config import TrainConfig
from empcn.train.dataset import make_loader
from empcn.train.loop import Trainer

MODELS = ("egnn", "empcn", "decoupled", "segnn")


def machine(device: str) -> str:
    return f"{describe(device)}, {torch.get_num_threads()} torch threads"


def is_positions_cache(cache: Path) -> bool:
    from empcn.train.dataset import CacheLayout
    from empcn.train.task import POSITIONS

    return CacheLayout.read(cache).manifest.get("task") == POSITIONS


def trainer(cache: Path, model: str, device: str, batches: int, batch_size: int, workers: int, out: Path) -> Trainer:
    config = TrainConfig(
        cache=str(cache), target=None if is_positions_cache(cache) else "U0", model=model, out=str(out), epochs=2, batch_size=batch_size,
        device=device, workers=workers, limit_batches=batches, verify=False, progress=False,
    )
    return Trainer(config)


def train_rate(t: Trainer) -> tuple[float, int]:
    """Molecules/s of the second (timed) epoch; the first warms up allocator, kernels and caches."""
    t._train_epoch(1, None)
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    _, count, seconds, _ = t._train_epoch(2, None)
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    return count / seconds, count


def loader_rate(t: Trainer, workers: int) -> tuple[float, int]:
    """(molecules/s, molecules) the loader delivers over a whole train epoch (collated CPU batches only).

    Includes forking the workers, as every training epoch does.
    """
    stream = t.train_stream
    limit, stream.limit_batches = stream.limit_batches, None
    stream.set_epoch(7)
    try:
        start = time.perf_counter()
        count = sum(b.num_graphs for b in make_loader(stream, workers))
        return count / (time.perf_counter() - start), count
    finally:
        stream.limit_batches = limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="lifted cache (default: lift --lift molecules to a temp folder)")
    parser.add_argument("--lift", type=int, default=3000, help="molecules to lift when --cache is not given")
    parser.add_argument("--batches", type=int, default=20, help="batches per timed epoch")
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader-only row")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped without a GPU")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="empcn-bench-"))
    cache = args.cache
    if cache is None:
        from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

        cache = lift_qm9(QM9LiftConfig(out=tmp / "qm9.h5", limit=args.lift, shard_size=1024, progress=False))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    date = datetime.date.today().isoformat()
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]

    print("| what | device | batch | params | samples/s | command | machine | date |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for model in args.models.split(","):
            t = trainer(cache, model, device, args.batches, args.batch_size, 0, tmp / f"{device}-{model}")
            rate, count = train_rate(t)
            name = f"train {model} (hidden {t.model_config.hidden}, {t.model_config.layers} layers)"
            print(f"| {name} | {device} | {args.batch_size} | {t.parameters:,} | {rate:,.0f} | `{command}` | "
                  f"{machine(device)} | {date} |", flush=True)
            if device == devices[0]:
                for w in sorted({0, args.workers}):
                    rate, n = loader_rate(t, w)
                    print(f"| loader only for {model}, {w} workers ({len(t.spec.neighbourhoods)} neighbourhoods, "
                          f"{n} molecules) | cpu | {args.batch_size} | – | {rate:,.0f} | `{command}` | {machine('cpu')} | {date} |", flush=True)


if __name__ == "__main__":
    main()
