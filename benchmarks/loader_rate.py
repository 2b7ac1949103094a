"""How fast the training data path delivers batches: reading shards, collation, transfer to the device.

For each cache and model (the model decides which neighbourhoods a batch carries), one process per
measurement iterates the training loader of ``empcn train``'s own :class:`~empcn.train.loop.Trainer`
(``workers=0``: in the training process) for ``--samples`` samples, after one warm-up epoch, and
reports samples per second of its CPU time (``time.process_time``, less sensitive than wall time to
other jobs on a shared machine). With ``--old REV`` the same measurement also runs on the package of
an older commit (``git archive``, as ``same_results.py``), alternating with this checkout round by
round, and the table gives the ratio new / old of the same round (median over rounds).

    python benchmarks/loader_rate.py --nbody-cache /tmp/bench/nbody.h5 --qm9-cache /tmp/bench/qm9.h5 [--old 46df6e4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child(cache: str, setting: str, model: str, samples: int) -> None:
    """Measure in this process (whose ``empcn`` is whichever tree PYTHONPATH names) and print JSON."""
    import torch

    from train_throughput import make_trainer  # the settings' batch sizes and targets, as the throughput table

    torch.set_num_threads(1)
    t = make_trainer(Path(cache), setting, model, "cpu", None, Path(tempfile.mkdtemp(prefix="empcn-loader-")) / "run")

    def epoch(e: int) -> float:
        t.train_stream.set_epoch(e)
        start, n = time.process_time(), 0
        while n < samples:
            for batch in t.train_loader:
                batch.to(t.device, t.dtype)
                n += batch.num_graphs
                if n >= samples:
                    break
        return n / (time.process_time() - start)

    epoch(1)
    print(json.dumps({"rate": epoch(2)}))


def measure(tree: Path, cache: Path, setting: str, model: str, samples: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(cache), setting, model, str(samples)],
        capture_output=True, text=True, env=env, cwd=tree,
    )
    if done.returncode:
        raise SystemExit(f"loader_rate: {model} on {cache} under {tree} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["rate"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    from train_throughput import SETTINGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nbody-cache", type=Path)
    parser.add_argument("--qm9-cache", type=Path)
    parser.add_argument("--models", default="egnn,empcn")
    parser.add_argument("--samples", type=int, default=3000, help="samples per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old", help="also measure this older commit's data path, round by round beside this one")
    args = parser.parse_args()
    trees = {"this checkout": ROOT}
    if args.old:
        from same_results import export_old

        old = Path(tempfile.gettempdir()) / f"empcn-old-{args.old}"
        export_old(args.old, old)
        trees[args.old] = old
    caches = {s: c for s, c in (("nbody", args.nbody_cache), ("qm9", args.qm9_cache)) if c is not None}
    if not caches:
        raise SystemExit("loader_rate: give --nbody-cache and/or --qm9-cache")
    print(f"python {' '.join(sys.argv)}\n")
    head = " | ".join(f"`{name}` samples/s" for name in trees)
    print(f"| setting | model | {head} |" + (" new / old (rounds) |" if args.old else ""))
    print("|---|---|" + "---|" * len(trees) + ("---|" if args.old else ""))
    for setting, cache in caches.items():
        for model in args.models.split(","):
            rates: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    rates[name].append(measure(tree, cache, setting, model, args.samples))
            row = " | ".join(f"{statistics.median(v):,.0f}" for v in rates.values())
            if args.old:
                ratios = [a / b for a, b in zip(rates["this checkout"], rates[args.old])]
                row += f" | **{statistics.median(ratios):.2f}×** ({' '.join(f'{r:.2f}' for r in ratios)})"
            print(f"| {setting}, batch {SETTINGS[setting]['batch']} | `{model}` | {row} |", flush=True)


if __name__ == "__main__":
    main()
