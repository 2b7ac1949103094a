"""Per-epoch metrics of a run: ``metrics.jsonl`` (one JSON object per epoch), ``learning_curve.png``, ``result.json``.

The error metric is the task's (:mod:`empcn.train.evaluate`): MAE in the target's unit for scalar
targets (QM9), MSE of positions in (simulation units)² for N-body. In the JSON files the values are
named by their metric — ``valid_mae``/``best_valid_mae``/``test_mae`` or ``valid_mse``/
``best_valid_mse``/``test_mse`` — next to ``"metric"`` (files without it are MAE). ``train_loss`` is
the task's training loss (L1 on (y − mean)/MAD, dimensionless; or the MSE of positions, with dropout
active); ``throughput`` is training samples per second over all ranks.
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from empcn import files
from empcn.errors import EmpcnError

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
RESULT_FILE = "result.json"
PARITY_FILE = "parity_{split}.png"  # written by ``empcn evaluate`` (:func:`plot_parity`)

#: Fields holding a value of the error metric: stored in JSON as ``<prefix><metric>`` (e.g. ``test_mse``).
_METRIC_FIELDS = {"valid_error": "valid_", "best_valid_error": "best_valid_", "test_error": "test_"}


def _to_json(obj: Any) -> dict[str, Any]:
    d = asdict(obj)
    suffix = d["metric"].lower()
    for name, prefix in _METRIC_FIELDS.items():
        if name in d:
            d[prefix + suffix] = d.pop(name)
    return d


def _from_json(cls: type, d: dict[str, Any]) -> Any:
    d = dict(d)
    suffix = str(d.setdefault("metric", "MAE")).lower()
    for name, prefix in _METRIC_FIELDS.items():
        if prefix + suffix in d:
            d[name] = d.pop(prefix + suffix)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class EpochRecord:
    """One line of ``metrics.jsonl``. ``partial``: the epoch was cut short by ``--time-limit``."""

    epoch: int  # 1-based
    lr: float  # learning rate at the end of the epoch
    train_loss: float  # mean training loss of the task
    valid_error: float  # the metric on the valid split, in ``unit``
    best_valid_error: float
    unit: str
    time_s: float  # wall time of the epoch's training part
    throughput: float  # training samples / s, all ranks
    steps: int  # optimiser steps so far
    partial: bool = False
    metric: str = "MAE"  # "MAE" | "MSE"


@dataclass(frozen=True)
class RunResult:
    """``result.json``: the outcome of a run (test metric at the best validation epoch)."""

    target: str
    unit: str
    model: str
    epochs_run: int
    best_epoch: int
    best_valid_error: float
    test_error: float
    stopped: str  # "completed" | "time_limit" | "interrupted"
    wall_time_s: float  # this invocation (a resumed run counts from its resume)
    parameters: int
    metric: str = "MAE"
    #: split → trivial predictors' scores in ``unit`` fitted on the molecules trained on (QM9):
    #: ``{"mean_mae": …, "atoms_mae": …, "samples": …}`` (:mod:`empcn.train.reference`); empty for positions.
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


def append_record(run_dir: Path, record: EpochRecord) -> None:
    """Append ``record`` as one JSON line (fsynced; never through a link; a failed write leaves no torn line)."""
    files.append_line(Path(run_dir) / METRICS_FILE, json.dumps(_to_json(record), sort_keys=True) + "\n")


class MetricsError(EmpcnError):
    """A ``metrics.jsonl`` that is not the run's own (a link, a FIFO, a line that is no record); one line."""


def read_records(run_dir: Path) -> list[EpochRecord]:
    """All records of ``metrics.jsonl`` (empty when the file does not exist).

    A last line without its newline (a write cut short) is left out; anything else that is not a
    record, and a file that is not a regular file of the run (a link is never followed), is a MetricsError.
    """
    path = Path(run_dir) / METRICS_FILE
    if not os.path.lexists(path):
        return []
    try:
        text = files.read_regular(path).decode("utf-8")
    except files.NotRegularFile as exc:
        raise MetricsError(f"{path}: {exc.what}, not the run's metrics file (remove it)") from None
    except OSError as exc:
        what = "a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror or exc})"
        raise MetricsError(f"{path}: {what}, not the run's metrics file (remove it)") from None
    except UnicodeDecodeError:
        raise MetricsError(f"{path}: not UTF-8 text, not the run's metrics file") from None
    out = []
    for number, line in enumerate(text.split("\n")[:-1], start=1):  # a last line without "\n" is a cut write
        if not line.strip():
            continue
        try:
            out.append(_from_json(EpochRecord, json.loads(line)))
        except (ValueError, TypeError, AttributeError) as exc:
            raise MetricsError(f"{path}:{number}: not a metrics record ({' '.join(str(exc).split())[:120]})") from None
    return out


def truncate_records(run_dir: Path, last_epoch: int) -> None:
    """Keep only the records of epochs ≤ ``last_epoch`` (a resumed run rewrites the rest)."""
    path = Path(run_dir) / METRICS_FILE
    if not os.path.lexists(path):
        return
    keep = [r for r in read_records(run_dir) if r.epoch <= last_epoch]
    files.write_text_atomic(path, "".join(json.dumps(_to_json(r), sort_keys=True) + "\n" for r in keep))


def write_result(run_dir: Path, result: RunResult) -> Path:
    path = Path(run_dir) / RESULT_FILE
    return files.write_text_atomic(path, json.dumps(_to_json(result), indent=1, sort_keys=True) + "\n")


def read_result(run_dir: Path) -> RunResult | None:
    """``result.json`` of a run (None when the run has not finished once)."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    return _from_json(RunResult, json.loads(path.read_text()))


def plot_learning_curve(run_dir: Path, records: list[EpochRecord] | None = None) -> Path | None:
    """Draw train loss and the validation metric against epoch into ``learning_curve.png`` (Agg, no display)."""
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
    metric = records[-1].metric
    loss_label = "train L1 (normalised)" if metric == "MAE" else f"train {metric} [{records[-1].unit}]"
    ax1.plot(epochs, [r.train_loss for r in records], marker="." if len(records) < 50 else None)
    ax1.set(xlabel="epoch", ylabel=loss_label, title="training loss")
    scored = [r for r in records if math.isfinite(r.valid_error)]  # --valid-every: not every epoch is validated
    ax2.plot(
        [r.epoch for r in scored],
        [r.valid_error for r in scored],
        marker="." if len(scored) < 50 else None,
        label="valid",
    )
    if scored:
        best = min(scored, key=lambda r: r.valid_error)
        ax2.axhline(
            best.valid_error, color="grey", lw=0.8, ls="--", label=f"best {best.valid_error:.4g} (epoch {best.epoch})"
        )
    ax2.set(xlabel="epoch", ylabel=f"{metric} [{records[-1].unit}]", title=f"validation {metric}")
    ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ys = [float(v) for v in ax.get_lines()[0].get_ydata() if math.isfinite(float(v))]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 10:  # log only when the curve spans a decade
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return files.write_atomic(run_dir / CURVE_FILE, lambda f: fig.savefig(f, format="png"))


def plot_parity(path: Path, true: Any, predicted: Any, *, title: str, quantity: str, description: str = "") -> Path:
    """Predicted against true values (one point each, the y = x line for reference) into the PNG ``path``.

    ``true``/``predicted``: (n,) values in the unit named in ``quantity`` (the axis label, e.g.
    ``"U0 [meV]"``); ``title``: the plot's title (split and metric); ``description``: stored in the
    PNG's ``Description`` text chunk (machine-readable: what was plotted). Written atomically.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true = np.asarray(true, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    fig = Figure(figsize=(4.8, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    finite = np.isfinite(true) & np.isfinite(predicted)
    ax.scatter(true[finite], predicted[finite], s=3 if len(true) > 2000 else 8, alpha=0.35, lw=0, rasterized=True)
    if finite.any():
        lo = float(min(true[finite].min(), predicted[finite].min()))
        hi = float(max(true[finite].max(), predicted[finite].max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="y = x")
        ax.legend(fontsize=8, loc="upper left")
    ax.set(xlabel=f"true {quantity}", ylabel=f"predicted {quantity}", title=title)
    ax.title.set_fontsize(9)
    ax.set_aspect("equal", adjustable="datalim")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return files.write_atomic(
        Path(path), lambda f: fig.savefig(f, format="png", metadata={"Title": title, "Description": description})
    )
