"""How fast could a training step be? The matmul work of each model against what the CPU can do (issue #11).

For each setting of ``train_throughput.py`` it counts the matrix-multiply FLOPs of one training step
(forward + backward, :class:`torch.utils.flop_counter.FlopCounterMode` on a real batch) of the
reference EGNN and of empcn's models, times the reference's step in the same run, and derives the
matmul rate a model would have to sustain to reach its throughput target (ratio r to the reference:
step time ≤ reference step / r). Beside it, the rate this machine's torch reaches on a single matrix
product of the models' own shape (pairs × hidden by hidden × hidden) and on a large square one: a model
needing more than those cannot reach its target on this CPU by any fusion or reordering, since it must
still do its matrix products (elementwise work, gathers and scatters only add to the time).

    OMP_NUM_THREADS=1 python benchmarks/flop_bound.py --nbody-cache data/nbody.h5 --qm9-cache data/qm9.h5 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from machine import describe
from train_throughput import SETTINGS, lift_default, make_trainer, reference_setup

#: issue #11's targets: (setting, model) → throughput ratio to the reference.
TARGETS = {("nbody", "egnn"): 3.0, ("nbody", "empcn"): 0.6, ("qm9", "egnn"): 3.0}
#: the models' hidden widths per setting (the shape of their per-pair products).
HIDDEN = {"nbody": 64, "qm9": 128}


def matmul_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def empcn_step_flops(t) -> tuple[int, int]:
    """(matmul FLOPs of one forward + backward of ``t``'s model on its first batch, that batch's samples)."""
    t.train_stream.set_epoch(0)
    batch = next(iter(t.train_loader))
    b = batch.to(t.device, t.dtype)

    def step() -> None:
        loss = t.task.loss(t.ddp_model(b), batch)
        loss.backward()

    return matmul_flops(step), batch.num_graphs


def gemm_rate(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` in float32, best of repeated timings for about ``seconds``."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nbody-cache", type=Path)
    parser.add_argument("--qm9-cache", type=Path)
    parser.add_argument("--settings", default="nbody,qm9")
    parser.add_argument("--batches", type=int, default=8, help="reference steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="empcn-flops-"))
    print(f"python {' '.join(shlex.quote(a) for a in sys.argv)}\n{describe('cpu')}, {torch.get_num_threads()} torch "
          f"threads, {datetime.date.today().isoformat()}\n")
    large = gemm_rate(1024, 1024, 1024)
    print("| setting | model | matmul GFLOP per training step (fwd + bwd) | ÷ reference | reference step (ms) "
          "| target | step needed (ms) | matmul rate needed (GFLOP/s) | sgemm at the model's shape / 1024³ (GFLOP/s) | reachable? |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        cache = getattr(args, f"{setting}_cache") or lift_default(setting, tmp)
        models = [m for m in SETTINGS[setting]["models"] if m != "segnn"]
        trainers = {m: make_trainer(cache, setting, m, "cpu", args.batches, tmp / f"{setting}-{m}") for m in models}
        model, prepared, step = reference_setup(trainers[models[0]], setting)
        ref_flops = matmul_flops(lambda: step(prepared[0]))
        for item in prepared[:2]:  # warm-up
            step(item)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for item in prepared:
                step(item)
            times.append((time.perf_counter() - start) / len(prepared))
        ref_step = statistics.median(times)
        pairs = prepared[0][2 if setting == "qm9" else 3].numel()  # ordered pairs of the first batch
        shape = gemm_rate(pairs, HIDDEN[setting], HIDDEN[setting])
        rows = [("reference", ref_flops)] + [(m, empcn_step_flops(t)[0]) for m, t in trainers.items()]
        for name, flops in rows:
            target = TARGETS.get((setting, name))
            if target:
                needed_s = ref_step / target
                rate = flops / needed_s / 1e9
                verdict = "no" if rate > max(shape, large) else ("only near peak" if rate > 0.5 * shape else "yes")
                cells = f"≥ {target:g}× | {needed_s * 1e3:.1f} | {rate:.1f} | {shape:.1f} / {large:.1f} | {verdict}"
            else:
                cells = f"– | – | {ref_flops / ref_step / 1e9:.1f} (reached) | {shape:.1f} / {large:.1f} | –" if name == "reference" \
                    else "– | – | – | – | –"
            print(f"| {setting} | {name} | {flops / 1e9:.3f} | {flops / ref_flops:.2f} | {ref_step * 1e3:.1f} | {cells} |",
                  flush=True)


if __name__ == "__main__":
    main()
