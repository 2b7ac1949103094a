"""Proof that the speed work changed no model's function: an older commit and this checkout, side by side.

For each ``setting:model`` of ``--runs`` (default: the N-body EMPCN and EGNN defaults, QM9's EGNN,
decoupled and EMPCN defaults) it

1. trains the model with ``--seed 0`` for ``--epochs`` epochs under the **old** code (``git archive``
   of ``--old`` into ``ROOT/old-src``, run as ``python -m empcn`` with that tree on the path) and under
   **this** checkout, both on the same cache (lifted once by the old code, so the data are the old
   release's bytes), and compares every epoch's training loss and validation metric;
2. evaluates the **old** run's best checkpoint on the test split with both codes (a run saved by the
   older release, read by this one) and compares the two test metrics.

Prints a markdown table of the largest relative differences and exits 1 when any exceeds ``--rtol``
(default 1e-5: float32 rounding of reordered sums and of the fused Adam kernel, compounded over the
epochs' steps, stays orders of magnitude below it; a changed function does not).

    python benchmarks/same_results.py --old 5ff8f2c            # the commit before the speed work (#11)
    python benchmarks/same_results.py --old 5ff8f2c --runs nbody:empcn --epochs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from empcn_cli import empcn

HERE = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = "nbody:empcn,nbody:egnn,qm9:egnn,qm9:decoupled,qm9:empcn"
#: lift flags per setting (QM9: the first molecules only, so that a run takes seconds per epoch)
LIFT = {"nbody": ["--dataset", "nbody"], "qm9": ["--dataset", "qm9", "--limit", "3000"]}
TRAIN = {"nbody": [], "qm9": ["--target", "U0", "--batch-size", "96"]}
#: this checkout's flags for what an old release did without a flag: QM9 trained on the plain mean/MAD
#: before ``--target-reference`` (whose U0 default is now ``atoms``) existed; setting → (flags, the
#: text whose absence from the old tree's ``empcn/train/config.py`` says it predates them)
NEW_ONLY = {"nbody": ([], ""), "qm9": (["--target-reference", "none"], "target_reference")}


def new_only(setting: str, old_tree: Path) -> list[str]:
    """The flags of :data:`NEW_ONLY` for ``setting`` if the old tree predates them (none otherwise)."""
    flags, marker = NEW_ONLY[setting]
    if not flags or marker in (old_tree / "empcn" / "train" / "config.py").read_text():
        return []
    return flags


def checked(done: subprocess.CompletedProcess, what: str) -> str:
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"same_results: {what} failed: {tail[0]}")
    return done.stdout


def export_old(commit: str, dest: Path) -> None:
    """The tree of ``commit`` at ``dest`` (``git archive``; kept between invocations)."""
    if (dest / "empcn" / "__init__.py").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(HERE), "archive", commit], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"same_results: git archive {commit} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def valid_metric(record: dict) -> float:
    """The epoch's validation metric (``valid_mse`` or ``valid_mae``, as the run's metric names it)."""
    return float(record["valid_" + record.get("metric", "MAE").lower()])


def curve_difference(old: Path, new: Path) -> tuple[float, float, int]:
    """Largest relative difference of the training losses and of the validation metrics, and the epochs compared."""
    a, b = records(old), records(new)
    if [r["epoch"] for r in a] != [r["epoch"] for r in b]:
        raise SystemExit(f"same_results: {old} and {new} ran different epochs")
    loss = max(rel(x["train_loss"], y["train_loss"]) for x, y in zip(a, b))
    valid = max(rel(valid_metric(x), valid_metric(y)) for x, y in zip(a, b))
    return loss, valid, len(a)


def test_metric(text: str) -> float:
    result = json.loads(text.strip().splitlines()[-1])
    return float(result[result["metric"].lower()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the older commit (e.g. 5ff8f2c, before the speed work)")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated setting:model pairs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("runs/same-results"))
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    pairs = [item.split(":") for item in args.runs.split(",") if item]
    for pair in pairs:
        if len(pair) != 2 or pair[0] not in LIFT:
            parser.error(f"bad --runs entry {':'.join(pair)!r}; expected setting:model with setting in {sorted(LIFT)}")
    root = args.root.resolve()
    src = root / "old-src"
    export_old(args.old, src)
    rows, worst = [], 0.0
    for setting, model in pairs:
        cache = root / f"{setting}.h5"
        if not cache.exists():
            checked(empcn("lift", *LIFT[setting], "--out", str(cache), "--no-progress", tree=src), f"old lift of {setting}")
        runs = {side: root / f"{setting}-{model}-{side}" for side in ("old", "new")}
        common = ["train", "--cache", str(cache), "--model", model, "--epochs", str(args.epochs), "--seed", "0",
                  *TRAIN[setting], "--no-progress"]
        for side, run in runs.items():
            if not (run / "result.json").exists():
                if side == "old":
                    done = empcn(*common, "--out", str(run), tree=src)
                else:
                    done = empcn(*common, *new_only(setting, src), "--out", str(run))
                checked(done, f"{side} training of {setting} {model}")
        loss, valid, epochs = curve_difference(runs["old"], runs["new"])
        evaluate = ["evaluate", str(runs["old"]), "--split", "test", "--json"]
        by_old = test_metric(checked(empcn(*evaluate, tree=src), f"old evaluate of {runs['old']}"))
        by_new = test_metric(checked(empcn(*evaluate), f"new evaluate of {runs['old']}"))
        test = rel(by_old, by_new)
        worst = max(worst, loss, valid, test)
        rows.append(f"| {setting} | `{model}` | {epochs} | {loss:.1e} | {valid:.1e} | {by_old:.6g} / {by_new:.6g} | {test:.1e} |")
        print(rows[-1], flush=True)
    print(f"\nold = {args.old}, new = this checkout; seed 0, {args.epochs} epochs; relative differences\n")
    print("| setting | model | epochs | train loss (max over epochs) | validation metric (max) | "
          "old run's test metric: old code / this code | its difference |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    verdict = "the same" if worst <= args.rtol else "DIFFERENT"
    print(f"\nlargest relative difference {worst:.1e} (rtol {args.rtol:g}): {verdict}")
    raise SystemExit(0 if worst <= args.rtol else 1)


if __name__ == "__main__":
    main()
