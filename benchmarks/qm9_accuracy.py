"""QM9 at equal budget (issue #14 §2): EGNN, decoupled EMPCN and EMPCN on U0, gap and alpha, several seeds.

Every (target, training size, model, variant, seed) trains as ``empcn train`` in a subprocess (the
command a user types) into ``ROOT/<target>-n<size>-<model>[-<variant>]-s<seed>`` with one protocol for
all models: each model's QM9 defaults (EGNN 7 × 128; decoupled EMPCN = that EGNN + rings 48 wide;
EMPCN 7 × 56, eight neighbourhoods), batch 96, Adam with cosine decay over ``--epochs``, lr 5e-4
(1e-3 for gap), weight decay 1e-12, clip 10, the default target reference (per-element fit for U0 and
alpha, plain mean/MAD for gap), the same seeded training subset of ``--train-sizes`` molecules for
every model of a seed, test MAE at the epoch of the best valid MAE. ``--variants`` adds runs with
extra ``empcn train`` flags (the measurements behind the defaults of docs/models.md), e.g.
``--variants 'fs0.3=--model-option fourier_scale=0.3' --variant-models decoupled``.

**Resumable**: a run with a ``result.json`` is only read; one with a ``last.pt`` but no result continues
with ``empcn train --resume`` (fresh ``--time-limit``). ``--part K/N`` takes every N-th job starting at
the K-th (0-based), so N processes on N cores share one table; re-running any of them fills in the rest.
The table (mean ± sd over seeds, epochs, wall time, the published numbers and the atom-count fit on the
same test split beside it) is printed and written to ``ROOT/results.md``.

    OMP_NUM_THREADS=1 python benchmarks/qm9_accuracy.py --cache data/qm9-20k.h5 --train-sizes 5000 \\
        --epochs 6 --root runs/bench-qm9 --part 0/2      # and --part 1/2 beside it
    python benchmarks/qm9_accuracy.py --cache data/qm9.h5 --train-sizes 5000,100000 --epochs 1000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from empcn_cli import empcn

from empcn.train.metrics import read_result

#: Published test MAE (EMPCN paper, Table 2; full Cormorant training set, 1000 epochs): α bohr³, gap / U0 meV.
PUBLISHED = {
    "egnn": {"U0": "12", "gap": "48", "alpha": "0.071"},
    "decoupled": {"U0": "11", "gap": "40", "alpha": "0.063"},
    "empcn": {"U0": "—", "gap": "—", "alpha": "—"},
    "segnn": {"U0": "15", "gap": "42", "alpha": "0.060"},
}
MODELS = tuple(PUBLISHED)
#: Where a metrics record or result holds seconds of this invocation only, the script adds its own clock.
CLOCK_FILE = "bench_clock.json"


@dataclass(frozen=True)
class Job:
    target: str
    size: int
    model: str
    variant: str  # "" = the defaults
    seed: int
    flags: tuple[str, ...]

    def run_dir(self, root: Path) -> Path:
        variant = f"-{self.variant}" if self.variant else ""
        return root / f"{self.target}-n{self.size}-{self.model}{variant}-s{self.seed}"


def train(job: Job, run: Path, args: argparse.Namespace) -> None:
    """Train (or continue) one run until it has a result.json or its --time-limit ends; add up its wall time."""
    if (run / "result.json").exists():
        return
    limit = ["--time-limit", str(args.time_limit)] if args.time_limit else []
    limit += ["--valid-every", str(args.valid_every), "--no-progress", "--no-verify"]
    if (run / "last.pt").exists():
        cmd = ["train", "--resume", str(run), "--epochs", str(args.epochs), *limit]
    else:
        cmd = [
            "train", "--cache", str(args.cache), "--target", job.target, "--model", job.model, "--out", str(run),
            "--epochs", str(args.epochs), "--train-size", str(job.size), "--seed", str(job.seed),
            "--device", args.device, *job.flags, *limit,
        ]
    print("empcn " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    done = empcn(*cmd)
    seconds = time.perf_counter() - start
    clock = run / CLOCK_FILE
    if run.exists():
        before = json.loads(clock.read_text())["seconds"] if clock.exists() else 0.0
        clock.write_text(json.dumps({"seconds": before + seconds}) + "\n")
    tail = (done.stdout + done.stderr).strip().splitlines()[-2:]
    print("\n".join(tail), flush=True)
    if done.returncode:
        print(f"{run}: empcn train exited with {done.returncode}", flush=True)


def read(run: Path) -> dict | None:
    """Test MAE, epochs, wall time and the atom-count fit of a finished run (None when not finished)."""
    result = read_result(run)
    if result is None:
        return None
    clock = run / CLOCK_FILE
    seconds = json.loads(clock.read_text())["seconds"] if clock.exists() else result.wall_time_s
    return {
        "test": float(result.test_error), "unit": result.unit, "epochs": result.epochs_run,
        "best_epoch": result.best_epoch, "seconds": seconds, "parameters": result.parameters,
        "atoms_fit": float(result.baselines.get("test", {}).get("atoms_mae", math.nan)),
    }


def fmt(values: list[float], digits: int | None = None) -> str:
    """Mean ± sample sd (just the value for one), to a precision that suits the magnitude."""
    if not values:
        return "—"
    digits = digits if digits is not None else (3 if max(abs(v) for v in values) < 10 else 1)
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.{digits}f}{spread}"


def table(jobs: list[Job], root: Path) -> str:
    lines = [
        "| target | train size | model | seeds finished | test MAE (mean ± sd) | per seed | epochs | wall per run (min) "
        "| atom-count fit, same test split | published (full data) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int, str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.target, job.size, job.model, job.variant), []).append(job)
    for (target, size, model, variant), members in groups.items():
        results = [read(j.run_dir(root)) for j in members]
        done = [r for r in results if r is not None]
        unit = done[0]["unit"] if done else ""
        per_seed = " / ".join(fmt([r["test"]]) if r else "—" for r in results)
        epochs = sorted({r["epochs"] for r in done})
        wall = fmt([r["seconds"] / 60 for r in done], digits=1)
        fit = fmt([r["atoms_fit"] for r in done if math.isfinite(r["atoms_fit"])])
        name = model + (f" ({variant})" if variant else "")
        lines.append(
            f"| {target} | {size:,} | {name} | {len(done)}/{len(members)} | {fmt([r['test'] for r in done])} {unit} "
            f"| {per_seed} | {', '.join(map(str, epochs)) or '—'} | {wall} | {fit} | {PUBLISHED[model][target] if target in PUBLISHED[model] else '—'} |"
        )
    return "\n".join(lines) + "\n"


def parse_variants(text: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    out = [("", ())]
    for item in text:
        name, sep, flags = item.partition("=")
        if not sep or not name or not flags.strip():
            raise SystemExit(f"--variants {item!r}: expected NAME=FLAGS, e.g. 'fs0.3=--model-option fourier_scale=0.3'")
        out.append((name, tuple(flags.split())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("data/qm9.h5"))
    parser.add_argument("--root", type=Path, default=Path("runs/bench-qm9"))
    parser.add_argument("--targets", default="U0,gap,alpha")
    parser.add_argument("--models", default="egnn,decoupled,empcn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-sizes", default="5000", help="comma-separated; 5000 = 5 %% of Cormorant's 100k (Figure 4)")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--valid-every", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=None, help="minutes per run and invocation")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--variants", nargs="*", default=[], help="NAME=FLAGS: extra runs with these empcn train flags")
    parser.add_argument("--variant-models", default=None, help="models the variants apply to (default: all)")
    parser.add_argument("--variant-targets", default=None, help="targets the variants apply to (default: all)")
    parser.add_argument("--part", default="0/1", help="K/N: run every N-th job from the K-th (N parallel processes)")
    parser.add_argument("--only-variants", action="store_true", help="train only the variants' runs (the defaults' runs are read)")
    parser.add_argument("--report-only", action="store_true", help="print the table of what has finished; train nothing")
    args = parser.parse_args()

    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    targets = [t for t in args.targets.split(",") if t]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    sizes = [int(s) for s in args.train_sizes.split(",") if s]
    variant_models = set(args.variant_models.split(",")) if args.variant_models else set(models)
    variant_targets = set(args.variant_targets.split(",")) if args.variant_targets else set(targets)
    try:
        k, n = (int(x) for x in args.part.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        parser.error(f"--part {args.part!r}: expected K/N with 0 <= K < N")
    if not args.cache.exists():
        parser.error(f"--cache {args.cache}: no such file (lift it first: empcn lift --dataset qm9 --out {args.cache})")

    jobs = [
        Job(target, size, model, name, seed, flags)
        for target in targets for size in sizes for model in models
        for name, flags in parse_variants(args.variants)
        if not name or (model in variant_models and target in variant_targets)
        for seed in seeds
    ]
    # Seeds innermost in the listing, but run seed-major so that a cut-off run leaves whole seeds behind.
    order = sorted(jobs, key=lambda j: (j.seed, targets.index(j.target), j.size, bool(j.variant)))
    if not args.report_only:
        for job in order[k::n]:
            if job.variant or not args.only_variants:
                train(job, job.run_dir(args.root), args)
    text = table(jobs, args.root)
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
