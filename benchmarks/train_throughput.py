"""Training throughput of empcn's models against EGNN written the reference way, in the same run.

Settings (issue #11): N-body charged 5-body, batch 100 — the reference EGNN 4 × 64 with the velocity
term against ``--model egnn`` and ``--model empcn`` (their N-body defaults); QM9, batch 96, all
ordered atom pairs — the reference EGNN 7 × 128 (attention, residual, sum readout) against
``--model egnn``, ``empcn`` and ``decoupled`` (their QM9 defaults). SEGNN (both settings) and the
N-body decoupled model are reported in the same tables; ``--models`` picks a subset.

empcn is timed through its real training loop (:class:`empcn.train.loop.Trainer`, one epoch of
``--batches`` batches: data loading, collation, forward, backward, clipping, Adam); the reference
(``reference_egnn.py``) through a bare Adam loop on the same batches, pair lists prepared beforehand,
so the reference pays no data loading. Contenders alternate within each of ``--rounds`` rounds, after
one warm-up epoch each; a ratio is the median over rounds of (empcn samples/s) / (reference samples/s)
of the same round. Absolute rates drift on shared machines; the ratios are what is tracked. Below
each table: the data path alone (reading, collation, transfer to the device) against the fastest
model's training rate, which says whether the loader keeps up (on a GPU above all).

    python benchmarks/train_throughput.py [--nbody-cache data/nbody.h5] [--qm9-cache data/qm9.h5]
        [--settings nbody,qm9] [--models egnn,empcn] [--batches 30] [--rounds 5] [--threads 1] [--device cpu]
        [--compile]     # also each model with --compile (torch.compiled pair messages), after its warm-up epoch

Without a cache it lifts one into a temporary folder (N-body: the default charged set; QM9: the
first 3,000 molecules).
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
from typing import Callable

import torch

from machine import describe
from reference_egnn import ReferenceNBodyEGNN, ReferenceQM9EGNN, all_pairs

from empcn.train.config import TrainConfig
from empcn.train.loop import Trainer

SETTINGS = {
    "nbody": {"batch": 100, "models": ("egnn", "empcn", "decoupled", "segnn"), "unit": "systems/s"},
    "qm9": {"batch": 96, "models": ("egnn", "empcn", "decoupled", "segnn"), "unit": "molecules/s"},
}


def make_trainer(cache: Path, setting: str, model: str, device: str, batches: int | None, out: Path, **extra) -> Trainer:
    config = TrainConfig(
        cache=str(cache), target="U0" if setting == "qm9" else None, model=model, out=str(out), epochs=1000,
        batch_size=SETTINGS[setting]["batch"], device=device, workers=0, limit_batches=batches, verify=False,
        progress=False, **extra,
    )
    return Trainer(config)


def empcn_round(t: Trainer) -> Callable[[int], float]:
    """samples/s of one training epoch of ``t`` (the loop's own code path)."""

    def run(epoch: int) -> float:
        _, count, seconds, _ = t._train_epoch(epoch, None)
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        return count / seconds

    return run


def loader_round(t: Trainer) -> Callable[[int], float]:
    """samples/s of ``t``'s data path alone: reading, collating and moving one epoch's batches to the device.

    The training loop does this work in the training process (``workers=0``, as timed here) or in
    DataLoader workers; the loader keeps up with a model when this rate is well above its training rate.
    """

    def run(epoch: int) -> float:
        t.train_stream.set_epoch(epoch)
        start = time.perf_counter()
        count = 0
        for batch in t.train_loader:
            batch.to(t.device, t.dtype)
            count += batch.num_graphs
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)

    return run


def reference_setup(t: Trainer, setting: str) -> tuple[torch.nn.Module, list[tuple], Callable[[tuple], int]]:
    """The reference EGNN, the batches ``t``'s loader yields (pair lists prepared), and one Adam step on one."""
    device = t.device
    t.train_stream.set_epoch(0)
    prepared = []
    for batch in t.train_loader:
        b = batch.to(device, torch.float32)
        row, col = all_pairs(b.node_graph)
        if setting == "qm9":
            y = ((t.task.targets(batch) - t.task.mean) / t.task.mad).to(device, torch.float32)
            prepared.append((b.node_feat, b.pos, row, col, b.node_graph, b.num_graphs, y))
        else:
            charge = b.field("nodes/charge").reshape(-1, 1)
            prepared.append((b.pos, b.field("nodes/vel"), charge, row, col, b.field("nodes/target_pos"), b.num_graphs))
    torch.manual_seed(0)
    if setting == "qm9":
        model = ReferenceQM9EGNN(prepared[0][0].shape[1]).to(device)
    else:
        model = ReferenceNBodyEGNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-12)

    def step(item: tuple) -> int:
        if setting == "qm9":
            feat, x, row, col, graph, n, y = item
            loss = (model(feat, x, row, col, graph, n) - y).abs().mean()
        else:
            x, vel, q, row, col, target, n = item
            loss = ((model(x, vel, q, row, col) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return n

    return model, prepared, step


def reference_round(t: Trainer, setting: str) -> tuple[Callable[[int], float], int]:
    """samples/s of the reference EGNN over the batches ``t``'s loader yields (collected once)."""
    model, prepared, step = reference_setup(t, setting)
    params = sum(p.numel() for p in model.parameters())

    def run(_: int) -> float:
        start = time.perf_counter()
        count = sum(step(item) for item in prepared)
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)

    return run, params


def lift_default(setting: str, tmp: Path) -> Path:
    if setting == "nbody":
        from empcn.lift.nbody import NBodyLiftConfig, lift_nbody

        return lift_nbody(NBodyLiftConfig(out=tmp / "nbody.h5", progress=False))
    from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

    return lift_qm9(QM9LiftConfig(out=tmp / "qm9.h5", limit=3000, shard_size=1024, progress=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nbody-cache", type=Path)
    parser.add_argument("--qm9-cache", type=Path)
    parser.add_argument("--settings", default="nbody,qm9")
    parser.add_argument("--batches", type=int, default=30, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="empcn models under bf16 autocast (--amp)")
    parser.add_argument("--models", help="comma-separated subset of the setting's models (default: all)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each model with --compile (torch.compiled pair messages) beside its eager path")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, i.e. the machine's cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="empcn-throughput-"))
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    extra = {"amp": True} if args.amp else {}
    print(f"{command}\n{describe(args.device)}, {torch.get_num_threads()} torch threads, "
          f"{datetime.date.today().isoformat()}\n")
    for setting in args.settings.split(","):
        cache = getattr(args, f"{setting}_cache") or lift_default(setting, tmp)
        spec = SETTINGS[setting]
        runs: dict[str, Callable[[int], float]] = {}
        params: dict[str, int] = {}
        chosen = [m for m in spec["models"] if not args.models or m in args.models.split(",")]
        trainers = {m: make_trainer(cache, setting, m, args.device, args.batches, tmp / f"{setting}-{m}", **extra)
                    for m in chosen}
        if args.compile:
            trainers.update({
                f"{m} --compile": make_trainer(cache, setting, m, args.device, args.batches, tmp / f"{setting}-{m}-c",
                                               compile=True, **extra)
                for m in chosen if m != "segnn"
            })
        runs["reference"], params["reference"] = reference_round(trainers[chosen[0]], setting)
        for m, t in trainers.items():
            runs[m], params[m] = empcn_round(t), t.parameters
        for name, run in runs.items():  # warm-up (and --compile's compilation)
            run(1)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.rounds):
            for name, run in runs.items():
                rates[name].append(run(r + 2))
        ref = rates["reference"]
        print(f"### {setting}, batch {spec['batch']}, {args.batches} batches × {args.rounds} rounds, {args.device}"
              + (" (--amp)" if args.amp else ""))
        print(f"| model | params | {spec['unit']} (median) | ratio to reference (median of rounds) | per round |")
        print("|---|---|---|---|---|")
        loader = loader_round(trainers[chosen[0]])
        loader(1)
        loading = statistics.median(loader(r + 2) for r in range(args.rounds))
        for name, values in rates.items():
            ratios = [v / rv for v, rv in zip(values, ref)]
            label = "reference EGNN (authors' form)" if name == "reference" else f"empcn `--model {name}`"
            print(f"| {label} | {params[name]:,} | {statistics.median(values):,.0f} | "
                  f"**{statistics.median(ratios):.2f}×** | {' '.join(f'{x:.2f}' for x in ratios)} |", flush=True)
        fastest = max((n for n in rates if n != "reference"), key=lambda n: statistics.median(rates[n]))
        print(f"\ndata loader alone (read, collate, to {args.device}; in the training process): {loading:,.0f} "
              f"{spec['unit']}, {loading / statistics.median(rates[fastest]):.1f}× the fastest model's training rate "
              f"(`{fastest}`)")
        print()


if __name__ == "__main__":
    main()
