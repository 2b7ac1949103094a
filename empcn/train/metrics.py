"""Per-epoch metrics of a run: ``metrics.jsonl`` (one JSON object per epoch) and ``learning_curve.png``.

``train_loss`` is the mean L1 loss on normalised targets ((y − mean)/MAD, dimensionless);
``valid_mae`` is in the target's unit (the cache manifest's ``targets.units``); ``throughput`` is
training molecules per second over all ranks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``metrics.jsonl``. ``partial``: the epoch was cut short by ``--time-limit``."""

    epoch: int  # 1-based
    lr: float  # learning rate at the end of the epoch
    train_loss: float  # mean normalised L1
    valid_mae: float  # target unit
    best_valid_mae: float
    unit: str
    time_s: float  # wall time of the epoch's training part
    throughput: float  # training molecules / s, all ranks
    steps: int  # optimiser steps so far
    partial: bool = False


@dataclass(frozen=True)
class RunResult:
    """``result.json``: the outcome of a run (test MAE at the best validation epoch)."""

    target: str
    unit: str
    model: str
    epochs_run: int
    best_epoch: int
    best_valid_mae: float
    test_mae: float
    stopped: str  # "completed" | "time_limit"
    wall_time_s: float
    parameters: int


def append_record(run_dir: Path, record: EpochRecord) -> None:
    """Append ``record`` as one JSON line (flushed and fsynced)."""
    path = Path(run_dir) / METRICS_FILE
    with open(path, "a") as f:
        f.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(run_dir: Path) -> list[EpochRecord]:
    """All records of ``metrics.jsonl`` (empty when the file does not exist)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(EpochRecord(**json.loads(line)))
    return out


def truncate_records(run_dir: Path, last_epoch: int) -> None:
    """Keep only the records of epochs ≤ ``last_epoch`` (a resumed run rewrites the rest)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    keep = [r for r in read_records(run_dir) if r.epoch <= last_epoch]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in keep))
    os.replace(tmp, path)


def write_result(run_dir: Path, result: RunResult) -> Path:
    path = Path(run_dir) / RESULT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def plot_learning_curve(run_dir: Path, records: list[EpochRecord] | None = None) -> Path | None:
    """Draw train loss and validation MAE against epoch into ``learning_curve.png`` (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    records = read_records(run_dir) if records is None else records
    if not records:
        return None
    epochs = [r.epoch for r in records]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r.train_loss for r in records], marker="." if len(records) < 50 else None)
    ax1.set(xlabel="epoch", ylabel="train L1 (normalised)", title="training loss")
    ax2.plot(epochs, [r.valid_mae for r in records], marker="." if len(records) < 50 else None, label="valid")
    best = min(records, key=lambda r: r.valid_mae if math.isfinite(r.valid_mae) else math.inf)
    ax2.axhline(best.valid_mae, color="grey", lw=0.8, ls="--", label=f"best {best.valid_mae:.4g} (epoch {best.epoch})")
    ax2.set(xlabel="epoch", ylabel=f"MAE [{records[-1].unit}]", title="validation MAE")
    ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ys = [float(v) for v in ax.get_lines()[0].get_ydata() if math.isfinite(float(v))]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 10:  # log only when the curve spans a decade
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / CURVE_FILE
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
