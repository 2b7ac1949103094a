"""Issue #14 §1: does ``empcn train --model egnn`` train QM9 like EGNN's own code, at equal budget?

Two contenders on the same cache, target, split, training subset and batches, per seed:

* **ours**: ``empcn train --model egnn --target-reference none`` (the loop of :mod:`empcn.train.loop`:
  Adam, cosine decay per optimiser step, gradient clipping at norm 10, weight decay 1e-12);
* **own code**: the EGNN QM9 model in its authors' form (``reference_egnn.ReferenceQM9EGNN``:
  ``cat[h_i, h_j, ‖x_i − x_j‖²]`` per ordered pair, attention, residual, sum readout) trained by a loop
  that mirrors the authors' ``main_qm9.py`` (written here from its description, not copied):
  Adam with weight decay 1e-16, ``CosineAnnealingLR`` over the epochs stepped once per epoch, no
  clipping, L1 loss on ``(y − mean)/MAD``, the test MAE reported at the epoch of the best valid MAE.

Both read the batches of the same :class:`~empcn.train.loop.Trainer` (same subset, same shuffling per
epoch, same normalisation: mean/MAD of the subset trained on), so what differs is only the model code
and the loop. The cache's U0 is already the atomisation energy (QM9's atom references subtracted, as
EGNN/Cormorant train it), so ``--target-reference none`` is the papers' target.

    OMP_NUM_THREADS=1 python benchmarks/qm9_egnn_own_code.py --cache data/qm9.h5 --train-size 2000 \\
        --epochs 6 --seeds 0,1,2 --out runs/own-code

Resumable per (contender, seed): a finished one (its ``result_own_code.json``) is read, not rerun. Prints the
valid-MAE curves and the test MAE table (mean ± sd over seeds) in Markdown.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch

from machine import describe
from reference_egnn import ReferenceQM9EGNN, all_pairs

from empcn.train.config import TrainConfig
from empcn.train.loop import Trainer
from empcn.train.metrics import read_records


def config(args: argparse.Namespace, seed: int, out: Path) -> TrainConfig:
    return TrainConfig(
        cache=args.cache, target=args.target, model="egnn", out=str(out), epochs=args.epochs,
        train_size=args.train_size, seed=seed, target_reference="none", progress=False, verify=False,
        device="cpu",
    )


def run_ours(args: argparse.Namespace, seed: int, out: Path) -> dict:
    """``empcn train`` through its own Trainer; the valid curve from its ``metrics.jsonl``."""
    start = time.perf_counter()
    result = Trainer(config(args, seed, out)).run()
    return {
        "valid": [r.valid_error for r in read_records(out)],
        "test": float(result.test_error), "best_epoch": int(result.best_epoch), "seconds": time.perf_counter() - start,
    }


def mae(model: torch.nn.Module, loader, mean: float, mad: float, targets) -> float:
    """MAE (target unit) of the own-code model over a loader's batches (``targets(batch)``: the target column)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            b = batch.to(torch.device("cpu"), torch.float32)
            row, col = all_pairs(b.node_graph)
            pred = model(b.node_feat, b.pos, row, col, b.node_graph, b.num_graphs).double() * mad + mean
            total += float((pred - targets(batch).double()).abs().sum())
            count += batch.num_graphs
    return total / count


def run_own_code(args: argparse.Namespace, seed: int, out: Path) -> dict:
    """The authors' loop on the batches of an (unstarted) empcn Trainer of the same config."""
    start = time.perf_counter()
    trainer = Trainer(config(args, seed, out))
    mean, mad = float(trainer.task.mean), float(trainer.task.mad)
    torch.manual_seed(seed)
    model = None
    valid: list[float] = []
    best = (math.inf, 0, None)
    for epoch in range(1, args.epochs + 1):
        trainer.train_stream.set_epoch(epoch)
        for batch in trainer.train_loader:
            b = batch.to(torch.device("cpu"), torch.float32)
            if model is None:
                model = ReferenceQM9EGNN(b.node_feat.shape[1])
                opt = torch.optim.Adam(model.parameters(), lr=trainer.config.lr, weight_decay=1e-16)
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
            model.train()
            row, col = all_pairs(b.node_graph)
            pred = model(b.node_feat, b.pos, row, col, b.node_graph, b.num_graphs)
            loss = (pred - ((trainer.task.targets(batch) - mean) / mad).float()).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        valid.append(mae(model, trainer.eval_loaders["valid"], mean, mad, trainer.task.targets))
        if valid[-1] < best[0]:
            best = (valid[-1], epoch, copy.deepcopy(model.state_dict()))
        print(f"  own code seed {seed} epoch {epoch}: valid MAE {valid[-1]:.2f}", flush=True)
    model.load_state_dict(best[2])
    test = mae(model, trainer.eval_loaders["test"], mean, mad, trainer.task.targets)
    return {"valid": valid, "test": test, "best_epoch": best[1], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--target", default="U0")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/own-code")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("ours", "own"), default=None, help="run one contender (two processes in parallel)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[int, dict]] = {"ours": {}, "own": {}}
    for seed in seeds:
        for name, fn in (("own", run_own_code), ("ours", run_ours)):
            if args.only and name != args.only:
                continue
            out = root / f"{name}-seed{seed}"
            done = out / "result_own_code.json"
            if done.exists():
                results[name][seed] = json.loads(done.read_text())
                continue
            out.mkdir(parents=True, exist_ok=True)
            results[name][seed] = fn(args, seed, out)
            done.write_text(json.dumps(results[name][seed], indent=1) + "\n")
            print(f"{name} seed {seed}: test MAE {results[name][seed]['test']:.2f}", flush=True)
    print(f"\n{describe()}; {args.target}, {args.train_size} training molecules, {args.epochs} epochs, "
          f"batch 96, seeds {args.seeds}\n")
    print("| contender | valid MAE per epoch (seed 0) | test MAE per seed | test MAE mean ± sd | wall per run |")
    print("|---|---|---|---|---|")
    for name, label in (("own", "EGNN's own code (mirrored)"), ("ours", "`empcn train --model egnn`")):
        runs = results[name]
        if not runs:
            continue
        tests = [runs[s]["test"] for s in sorted(runs)]
        sd = statistics.stdev(tests) if len(tests) > 1 else float("nan")
        first = runs[min(runs)]["valid"]
        print(f"| {label} | {' → '.join(f'{v:.1f}' for v in first if v is not None and not math.isnan(v))} | "
              f"{' / '.join(f'{t:.1f}' for t in tests)} | {statistics.fmean(tests):.1f} ± {sd:.1f} | "
              f"{statistics.fmean(runs[s]['seconds'] for s in runs) / 60:.1f} min |")


if __name__ == "__main__":
    main()
