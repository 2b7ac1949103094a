"""A picture of a positions run: a few samples drawn as figures — input, true and predicted target.

``empcn evaluate RUN --poses poses.png`` calls :func:`draw_poses`: for ``count`` samples of a split
(evenly spaced through it) one 3-D panel each, with the 1-cells drawn as segments — only the bones
where the cache marks them (``edges/kind == 0``, MoCap), every 1-cell otherwise (N-body) — for the
input pose (grey), the true pose at the target frame (green) and the run's prediction (red, dashed).
Vertical axis: the data's y (CMU's up axis). Agg backend, no display needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from empcn import files, schema
from empcn.cache import Cache
from empcn.train.checkpoint import BEST
from empcn.train.collate import collate
from empcn.train.evaluate import _find_cache, load_trained
from empcn.train.tasks.base import TaskError
from empcn.train.tasks.positions import PositionTask

BONE = 0  # edges/kind of a bone (empcn.lift.mocap)
EDGE_KIND = schema.field_name(schema.EDGE_GROUP, "kind")


def _segments(sample: dict, pos: np.ndarray) -> np.ndarray:
    """(E, 2, 3) the segments to draw for ``pos: (N, 3)``."""
    edges = np.asarray(sample[schema.EDGE_INDEX], dtype=np.int64)
    if EDGE_KIND in sample:
        edges = edges[np.asarray(sample[EDGE_KIND]) == BONE]
    return np.stack([pos[edges[:, 0]], pos[edges[:, 1]]], axis=1)


def draw_poses(
    run_dir: Path,
    out: Path,
    split: str = "test",
    count: int = 4,
    cache: Path | None = None,
    device: str = "auto",
    which: str = BEST,
) -> Path:
    """Draw ``count`` samples of ``split`` with the run's predictions into the PNG ``out``; returns it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trained = load_trained(run_dir, which, device)
    if not isinstance(trained.task, PositionTask):
        raise TaskError(
            f"{run_dir}: --poses draws position runs (MoCap, N-body); this run predicts {trained.task.target}"
        )
    path = _find_cache(run_dir, cache, trained.config, trained.meta)
    data = Cache(path)
    indices = np.asarray(data.splits[split]) if split in data.splits else np.zeros(0, dtype=np.int64)
    if not len(indices):
        raise TaskError(f"{path}: no samples in split {split!r}")
    chosen = indices[np.linspace(0, len(indices) - 1, min(count, len(indices))).round().astype(np.int64)]
    samples = [data[int(i)] for i in chosen]
    batch = collate(samples, trained.spec)
    with torch.no_grad():
        pred = trained.model(batch.to(trained.device, trained.dtype)).double().cpu().numpy()
    offsets = np.concatenate([[0], np.cumsum([len(s[schema.NODE_POS]) for s in samples])])
    fig = Figure(figsize=(3.6 * len(samples), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for k, (index, sample) in enumerate(zip(chosen, samples)):
        ax = fig.add_subplot(1, len(samples), k + 1, projection="3d")
        poses = (
            (np.asarray(sample[schema.NODE_POS], dtype=np.float64), "0.6", "-", "input"),
            (np.asarray(sample[schema.NODE_TARGET_POS], dtype=np.float64), "tab:green", "-", "true"),
            (pred[offsets[k] : offsets[k + 1]], "tab:red", "--", "predicted"),
        )
        for pos, colour, style, label in poses:
            for n, seg in enumerate(_segments(sample, pos)):
                ax.plot(
                    seg[:, 0], seg[:, 2], seg[:, 1], color=colour, ls=style, lw=1.2, label=label if n == 0 else None
                )
        everything = np.concatenate([p[0] for p in poses])
        centre, half = everything.mean(axis=0), (everything.max(axis=0) - everything.min(axis=0)).max() / 2 + 1e-9
        ax.set(
            xlim=(centre[0] - half, centre[0] + half),
            ylim=(centre[2] - half, centre[2] + half),
            zlim=(centre[1] - half, centre[1] + half),
            xlabel="x",
            ylabel="z",
            zlabel="y",
        )
        mse = float(((pred[offsets[k] : offsets[k + 1]] - poses[1][0]) ** 2).mean())
        ax.set_title(f"sample {int(index)}: MSE {mse:.3g}", fontsize=9)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{Path(run_dir).name}: {split}, {trained.task.unit}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(out, lambda f: fig.savefig(f, format="png"))
    return out
