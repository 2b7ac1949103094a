"""N-body accuracy: train a position model with the papers' settings, test MSE, one markdown row.

The charged 5-body standard set (3,000 / 2,000 / 2,000 simulations, positions 1,000 steps ahead) is
lifted to ``--cache`` first when missing. Then ``empcn train`` runs as a subprocess — the command a
user types — with the papers' settings (Adam 5e-4, batch 100, weight decay 1e-12; EGNN 4 layers ×
64, EMPCN 4 layers × 66 with dropout 0.2, SEGNN_G+P 4 layers × 64 with lmax 1) and a cosine schedule
over the epochs that fit the budget.
Re-running with the same ``--out`` continues that run folder (``empcn train --resume``) where it
stopped, with a fresh time budget. Finally ``empcn evaluate OUT --split test`` scores the best
checkpoint and one markdown row is printed:

    | model | train size | epochs | wall time | test MSE | published | command | machine | date |

    OMP_NUM_THREADS=1 python benchmarks/nbody_accuracy.py --model egnn --budget 70
    python benchmarks/nbody_accuracy.py --model empcn --epochs 200 --schedule cosine --budget 40   # default model
    python benchmarks/nbody_accuracy.py --model empcn --epochs 200 --budget 40 --seed 1 \
        --out runs/bench-nbody-empcn-paper --model-option velocity_invariants=false \
        --model-option velocity_messages=false      # any model field; here: the paper's EMPCN
    python benchmarks/nbody_accuracy.py --model empcn --epochs 10000 --schedule constant   # the papers' run
    python benchmarks/nbody_accuracy.py --model segnn --epochs 1000 --schedule constant --valid-every 5 \
        --compile --budget 600   # SEGNN's published run (1000 epochs, tested at the best of every 5th
        # epoch's validation); re-run the same line to continue it where the budget stopped it

``--budget MIN`` bounds this invocation's wall time: without ``--epochs`` the epoch count is chosen
from one timed epoch (training + validation) so that the cosine schedule ends inside the budget;
``empcn train --time-limit`` stops the run cleanly if it would not. ``wall time`` in the row is the
sum over all invocations of the ``empcn train`` processes (written to ``OUT/benchmark.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

#: test MSE, 3,000 training systems (EGNN, EMPCN papers; SEGNN_G+P, arXiv 2110.02905); decoupled: none
PUBLISHED = {"egnn": 0.0071, "empcn": 0.0046, "segnn": 0.0043}
BENCH_FILE = "benchmark.json"
RESERVE_S = 120.0  # kept free of training inside --budget: start-up, final test evaluation


@dataclass(frozen=True)
class Row:
    """One benchmark result; ``wall_s``: summed wall time of the ``empcn train`` invocations."""

    model: str
    train_size: int
    epochs_run: int
    epochs: int
    wall_s: float
    test_mse: float
    published: float | None
    command: str
    machine: str
    date: str

    def markdown(self) -> str:
        pub = f"{self.published:.4f}" if self.published is not None else "—"
        wall = f"{self.wall_s / 60:.1f} min"
        return (
            f"| {self.model} | {self.train_size:,} | {self.epochs_run}/{self.epochs} | {wall} | {self.test_mse:.5f} | "
            f"{pub} | `{self.command}` | {self.machine} | {self.date} |"
        )


HEADER = (
    "| model | train size | epochs | wall time | test MSE | published | command | machine | date |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def machine(device: str) -> str:
    """CPU model, cores and torch threads (and the GPU when training on CUDA)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {cores} cores, {torch.get_num_threads()} torch thread(s)"
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        text = f"{torch.cuda.get_device_name(0)} ({text})"
    return text


def ensure_cache(path: Path) -> None:
    """Lift the standard charged 5-body set to ``path`` when it is not there."""
    if path.exists():
        return
    from empcn.lift.nbody import NBodyLiftConfig, lift_nbody

    print(f"lifting the standard charged 5-body set to {path} (7,000 simulations) …", flush=True)
    start = time.perf_counter()
    lift_nbody(NBodyLiftConfig(out=path, workers=min(3, os.cpu_count() or 1), progress=False))
    print(f"lifted in {time.perf_counter() - start:.0f} s", flush=True)


def train_options(args: argparse.Namespace, epochs: int) -> list[str]:
    opts = [
        "--cache", str(args.cache), "--model", args.model, "--out", str(args.out), "--epochs", str(epochs),
        "--schedule", args.schedule, "--device", args.device, "--no-progress",
    ]
    if args.lr is not None:
        opts += ["--lr", str(args.lr)]
    if args.train_size is not None:
        opts += ["--train-size", str(args.train_size)]
    if args.dropout is not None:
        opts += ["--dropout", str(args.dropout)]
    if args.weight_decay is not None:
        opts += ["--weight-decay", str(args.weight_decay)]
    if args.seed is not None:
        opts += ["--seed", str(args.seed)]
    opts += run_control(args)
    for option in args.model_option:
        opts += ["--model-option", option]
    return opts


def run_control(args: argparse.Namespace) -> list[str]:
    """The options a resumed run may change (validation interval, compilation), for every invocation."""
    opts = ["--valid-every", str(args.valid_every)] if args.valid_every is not None else []
    return opts + (["--compile"] if args.compile else [])


def seconds_per_epoch(args: argparse.Namespace) -> float:
    """Wall seconds of one epoch (training + validation + checkpoint), timed after a warm-up epoch."""
    from empcn.train.config import TrainConfig
    from empcn.train.loop import Trainer

    with tempfile.TemporaryDirectory(prefix="nbody-calib-") as tmp:
        config = TrainConfig(
            cache=str(args.cache), model=args.model, out=str(Path(tmp) / "run"), epochs=2, lr=args.lr,
            schedule=args.schedule, train_size=args.train_size, device=args.device, verify=False, progress=False,
            dropout=args.dropout, model_options=tuple(args.model_option),
            **({} if args.weight_decay is None else {"weight_decay": args.weight_decay}),
            **({} if args.seed is None else {"seed": args.seed}),
        )
        trainer = Trainer(config)
        trainer._train_epoch(1, None)  # warm-up: allocator, caches of decoded shards
        start = time.perf_counter()
        trainer._train_epoch(2, None)
        trainer.evaluate("valid")
        trainer._save(improved=True)
        return time.perf_counter() - start


def run_logged(cmd: list[str]) -> float:
    """Run ``cmd`` with its output passed through; its wall seconds. Exits on failure."""
    print("$ " + shlex.join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: `{shlex.join(cmd)}` exited with status {proc.returncode}")
    return wall


def record_invocation(out: Path, wall: float, cmd: list[str]) -> float:
    """Append this invocation to ``OUT/benchmark.json``; the summed training wall seconds."""
    path = out / BENCH_FILE
    data = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    data["invocations"].append(
        {"date": datetime.datetime.now().isoformat(timespec="seconds"), "wall_s": wall, "command": shlex.join(cmd)}
    )
    path.write_text(json.dumps(data, indent=1) + "\n")
    return float(sum(i["wall_s"] for i in data["invocations"]))


def main(argv: list[str] | None = None) -> Row:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("egnn", "empcn", "decoupled", "segnn"), default="empcn")
    parser.add_argument("--cache", type=Path, default=Path("data/nbody.h5"))
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/bench-nbody-<model>)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: what fits --budget)")
    parser.add_argument("--budget", type=float, default=None, help="minutes of wall time for this invocation")
    parser.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 5e-4, the papers')")
    parser.add_argument("--train-size", type=int, default=None, help="training systems (default: all 3,000)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dropout", type=float, default=None, help="dropout (default: the model's)")
    parser.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default: 1e-12)")
    parser.add_argument("--seed", type=int, default=None, help="training seed: initialisation, shuffling (default: 0)")
    parser.add_argument("--valid-every", type=int, default=None,
                        help="validate every N epochs; the test MSE is the best validated epoch's (SEGNN's code: 5)")
    parser.add_argument("--compile", action="store_true",
                        help="train with --compile (the same function; SEGNN ≈2× faster steps on one CPU thread)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to `empcn train --model-option` (repeatable)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.out = args.out or Path("runs") / f"bench-nbody-{args.model}"
    if args.epochs is None and args.budget is None:
        parser.error("give --epochs, --budget or both")
    python = [sys.executable, "-m", "empcn"]
    ensure_cache(args.cache)

    resuming = (args.out / "last.pt").exists()
    if resuming:
        cmd = python + ["train", "--resume", str(args.out), "--no-progress"] + run_control(args)
    else:
        epochs = args.epochs
        if epochs is None:
            per_epoch = seconds_per_epoch(args)
            usable = args.budget * 60.0 - (time.perf_counter() - started) - RESERVE_S
            epochs = max(1, math.floor(0.9 * usable / per_epoch))
            print(f"one epoch takes {per_epoch:.2f} s here: {epochs} epochs fit the budget", flush=True)
        cmd = python + ["train"] + train_options(args, epochs)
    if args.budget is not None:
        remaining = args.budget * 60.0 - (time.perf_counter() - started) - RESERVE_S / 2
        cmd += ["--time-limit", f"{max(remaining, 60.0) / 60.0:.2f}"]
    wall = record_invocation(args.out, run_logged(cmd), cmd)

    evaluation = subprocess.run(
        python + ["evaluate", str(args.out), "--split", "test", "--json", "--device", args.device],
        capture_output=True, text=True,
    )
    if evaluation.returncode != 0:
        sys.exit(f"error: evaluate failed: {evaluation.stderr.strip()}")
    result = json.loads(evaluation.stdout)
    from empcn.train.config import TrainConfig
    from empcn.train.metrics import read_records

    config = TrainConfig.load(args.out)
    records = read_records(args.out)
    from empcn.train.dataset import CacheLayout

    train_size = config.train_size or len(CacheLayout.read(args.cache).split("train"))
    row = Row(
        model=args.model, train_size=train_size, epochs_run=records[-1].epoch if records else 0,
        epochs=int(config.epochs or 0), wall_s=wall, test_mse=float(result["mse"]),
        published=PUBLISHED.get(args.model), command=shlex.join(["python", "benchmarks/nbody_accuracy.py", *(sys.argv[1:] if argv is None else argv)]),
        machine=machine(args.device), date=datetime.date.today().isoformat(),
    )
    print(f"test MSE {row.test_mse:.6f} {result['unit']} (best epoch {result['epoch']}, {result['samples']} systems)")
    print(HEADER)
    print(row.markdown(), flush=True)
    return row


if __name__ == "__main__":
    main()
