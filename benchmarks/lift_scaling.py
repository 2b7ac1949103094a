"""How the QM9 lift scales with workers: forked processes vs a local Dask cluster, and where the time goes.

    python benchmarks/lift_scaling.py [--limit 20000] [--shard-size 1000] [--repeat 2] [--out-dir /tmp/empcn-scaling]

Runs ``empcn lift --dataset qm9 --limit N`` as a user does (a fresh process, source read included)
with ``--workers 1``, ``--workers 2`` and ``--scheduler local --workers 2``, round-robin ``--repeat``
times (on a shared machine a slow moment then hits every configuration alike), and prints each wall
time and molecules/s. Then, in this process on one core, splits one lift into its stages: reading
the source, building the shards (RDKit parsing, bonds, rings, invariants) and writing them (HDF5 +
gzip + sha256). Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import describe

CONFIGS = {
    "--workers 1": ["--workers", "1"],
    "--workers 2": ["--workers", "2"],
    "--scheduler local --workers 2": ["--scheduler", "local", "--workers", "2"],
}


def lift_wall_s(limit: int, shard_size: int, options: list[str], out: Path) -> float:
    shutil.rmtree(out.parent, ignore_errors=True)
    cmd = [sys.executable, "-m", "empcn", "lift", "--dataset", "qm9", "--limit", str(limit), "--shard-size",
           str(shard_size), "--out", str(out), "--no-progress", *options]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stages(limit: int, shard_size: int, folder: Path) -> dict[str, float]:
    """Seconds of each stage of one lift, one process, one thread."""
    import torch

    torch.set_num_threads(1)
    from empcn import cache as cache_format
    from empcn.lift import pipeline
    from empcn.lift.qm9 import SPEC, QM9LiftConfig

    config = QM9LiftConfig(limit=limit, shard_size=shard_size)
    t0 = time.perf_counter()
    lifted = SPEC.read(config)
    t_read = time.perf_counter() - t0
    t_build = t_write = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    for task in pipeline.plan_shards(lifted.num_items, shard_size):
        t0 = time.perf_counter()
        content = SPEC.build_shard(lifted.items, config, task.start, task.stop)
        t1 = time.perf_counter()
        path = folder / cache_format.shard_name(task.index)
        cache_format.write_digest(path, cache_format.write_shard(path, content))
        t_build += t1 - t0
        t_write += time.perf_counter() - t1
    return {"read source": t_read, "build shards": t_build, "write shards": t_write}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=20000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/empcn-scaling"))
    args = ap.parse_args()

    walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
    loads = []
    for _ in range(args.repeat):
        for name, options in CONFIGS.items():
            loads.append(os.getloadavg()[0])
            walls[name].append(lift_wall_s(args.limit, args.shard_size, options, args.out_dir / "lift" / "q.h5"))
    print(f"QM9 --limit {args.limit} --shard-size {args.shard_size}; {describe()}; "
          f"1-min load average before the runs {min(loads):.1f}–{max(loads):.1f}\n")
    print("| lift | " + " | ".join(f"run {i + 1}" for i in range(args.repeat)) + " |")
    print("|---|" + "---|" * args.repeat)
    for name, ws in walls.items():
        print(f"| `{name}` | " + " | ".join(f"{w:.1f} s ({args.limit / w:,.0f} mol/s)" for w in ws) + " |")
    parts = stages(args.limit, args.shard_size, args.out_dir / "stages")
    total = sum(parts.values())
    print("\n| stage (one process, one thread) | seconds | share |\n|---|---|---|")
    for name, s in parts.items():
        print(f"| {name} | {s:.1f} | {100 * s / total:.0f} % |")
    shutil.rmtree(args.out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
