"""Where the time of a training step goes: the top operations (self CPU time) of a few steps.

Profiles forward, loss, backward and Adam of ``--model`` on batches from a cache's train split (the
loader runs before profiling, so the table is the step alone), after ``--warmup`` unprofiled steps.
Prints aten operations per step and a markdown table of the ``--top`` operations.

    python benchmarks/profile_step.py --cache data/nbody.h5 --model egnn [--steps 5] [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from empcn.train.config import TrainConfig
from empcn.train.loop import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--model", default="egnn")
    parser.add_argument("--target", default=None, help="scalar caches: the target (default U0)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--compile", action="store_true", help="the model as --compile runs it (compiled in the warm-up steps)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="empcn-profile-"))
    probe = TrainConfig(cache=str(args.cache), out=str(out / "probe"), model=args.model, target=args.target,
                        epochs=1, limit_batches=1, verify=False, progress=False, compile=args.compile)
    try:
        t = Trainer(probe)
    except Exception:  # a scalar cache needs a target
        t = Trainer(TrainConfig(**{**probe.__dict__, "target": "U0", "out": str(out / "probe2")}))
    need = args.warmup + args.steps
    t.train_stream.limit_batches = need
    batches: list = []
    for epoch in range(1, need + 1):  # small training splits (MoCap: 2 batches) take several epochs
        t.train_stream.set_epoch(epoch)
        batches += list(t.train_loader)
        if len(batches) >= need:
            break
    batches = batches[:need]
    model, opt = t.model, t.optimizer

    def step(b) -> None:
        g = b.to(t.device, t.dtype)
        loss = t.task.loss(model(g), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for b in batches[: args.warmup]:
        step(b)
    timed = batches[args.warmup :]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in timed:
            step(b)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"{args.model}{' --compile' if args.compile else ''}: {len(timed)} steps, {total / len(timed) / 1e3:.1f} ms self CPU per step, "
          f"{ops / len(timed):.0f} aten operations per step, {torch.get_num_threads()} threads")
    print("| operation | self CPU per step (ms) | share | calls per step |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"| `{e.key}` | {e.self_cpu_time_total / len(timed) / 1e3:.2f} | {e.self_cpu_time_total / total:.0%} | "
              f"{e.count / len(timed):.0f} |")


if __name__ == "__main__":
    main()
