"""Checkpoints of a training run: ``last.pt`` (every epoch) and ``best.pt`` (best validation MAE).

A checkpoint holds everything needed to continue *exactly*: model, optimiser and scheduler state,
the number of finished epochs and optimiser steps, the best validation metric so far, the run's
config, the normalisation and model description, and the RNG states of torch (CPU and CUDA),
numpy and Python. Files are written to a temporary name in the same folder and renamed into place
(``os.replace``), so a crash never leaves a half-written checkpoint under the real name.

Only tensors and plain Python values are stored (RNG states are converted), so checkpoints load
with ``torch.load(weights_only=True)``: opening one never runs pickled code.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from empcn.errors import EmpcnError
from empcn.files import NotRegularFile, read_regular, write_atomic

LAST = "last.pt"
BEST = "best.pt"


class CheckpointError(EmpcnError):
    """A checkpoint that cannot be used (missing, unreadable, from another run); one-line message."""


@dataclass
class RunMeta:
    """What evaluate/predict need to rebuild a trained model without the training code path.

    model: the registry name (:data:`empcn.train.models.registry.MODELS`); model_config: its config
    dataclass as a dict; task / task_record: the task's registry name (:data:`empcn.train.tasks.TASKS`)
    and its own record (:meth:`Task.record`: target, unit, normalisation, …); neighbourhoods: names
    collated into batches; lift_params: the cache manifest's ``params`` (rings kind, max_ring, …) so
    predict lifts new molecules the same way; plugins: ``"model"``/``"task"``/``"dataset"`` →
    ``{"distribution", "version"}`` of an entry that came from a plug-in package (empty for built-ins); domain:
    statistics of the training molecules (:class:`empcn.train.domain.TrainingDomain`'s saved form)
    that ``predict`` checks inputs against, empty for positions runs and runs saved before it.

    Runs saved before tasks had records held the scalar task's fields here (target, target_index,
    unit, mean, mad, reference, reference_species; position runs with dummies) and named position
    models ``*_dynamics``: :meth:`from_dict` reads that form too.
    """

    #: Runs saved before the training domain was recorded predict without checking their inputs against it.
    SAVED_WITHOUT: ClassVar[dict[str, Any]] = {"domain": {}}

    model: str
    model_config: dict[str, Any]
    task: str
    task_record: dict[str, Any]
    neighbourhoods: dict[str, tuple[int, int]]
    species: tuple[int, ...]
    charge_power: int
    dataset: str
    lift_params: dict[str, Any]
    cache_path: str  # absolute path of the cache trained on
    cache_fingerprint: str
    plugins: dict[str, dict[str, str]] = field(default_factory=dict)
    domain: dict[str, Any] = field(default_factory=dict)

    def plugin(self, kind: str) -> str | None:
        """The distribution a plug-in ``kind`` ("model", "task" or "dataset") of this run came from, or None."""
        return (self.plugins.get(kind) or {}).get("distribution") or None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["neighbourhoods"] = {k: list(v) for k, v in self.neighbourhoods.items()}
        d["species"] = list(self.species)
        d["plugins"] = {k: dict(v) for k, v in self.plugins.items()}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunMeta:
        """The metadata a checkpoint saved (older checkpoints: their form before task records, and the
        "field added later" rule of :func:`empcn.train.saved.load_saved`)."""
        from dataclasses import replace

        from empcn.train.saved import load_saved

        if isinstance(d, dict) and "task" not in d and "target" in d:
            d = _from_untasked(d)
        meta = load_saved(RunMeta, d)
        return replace(
            meta,
            neighbourhoods={k: (int(v[0]), int(v[1])) for k, v in meta.neighbourhoods.items()},
            species=tuple(int(s) for s in meta.species),
        )


#: The task's fields a run's metadata held before tasks had records of their own.
_UNTASKED_FIELDS = ("target", "target_index", "unit", "mean", "mad", "reference", "reference_species")


def _from_untasked(d: dict[str, Any]) -> dict[str, Any]:
    """A run's metadata as saved before task records, in today's form: a ``*_dynamics`` model (e.g.
    ``egnn_dynamics``) is the registry's model for the ``positions`` task, whose only real field was
    the unit (target_index −1, mean 0, MAD 1 were placeholders); any other run is ``scalar``."""
    from empcn.train.models.registry import LEGACY_NAMES

    d = dict(d)
    fields = {k: d.pop(k) for k in _UNTASKED_FIELDS if k in d}
    if d.get("model") in LEGACY_NAMES:
        d["model"], d["task"] = LEGACY_NAMES[d["model"]]
        d["task_record"] = {"target": fields.get("target", "positions"), "unit": fields.get("unit", "")}
    else:
        d["task"], d["task_record"] = "scalar", fields
    return d


# ----------------------------------------------------------------------------------------------
# RNG states as weights-only-safe values


def capture_rng() -> dict[str, Any]:
    """Current RNG states of torch (CPU, every CUDA device), numpy's global RNG and Python's ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only when CUDA is available here too)."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------
# files


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: serialised in memory, then a new temporary file in the
    same folder, fsync, ``os.replace`` (:func:`empcn.files.write_atomic`: never through a planted link;
    a full disk is a one-line :class:`~empcn.files.WriteError` and leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_atomic(path, buffer.getbuffer())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        data = read_regular(path, follow=True)  # a FIFO or device is refused, never read
    except NotRegularFile as exc:
        raise CheckpointError(f"{path}: {exc.what}, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc.strerror or exc})") from None
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many kinds on corrupt files)
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}: {first})") from None
    if not isinstance(state, dict) or "model" not in state or "meta" not in state:
        raise CheckpointError(f"{path}: not a checkpoint of `empcn train`")
    return state


def run_checkpoint(run_dir: Path, which: str = BEST, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``best.pt`` (or ``last.pt``) of a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    return load_checkpoint(run_dir / which, map_location)


def best_or_last(run_dir: Path) -> tuple[str, str]:
    """``(checkpoint to evaluate, note)``: ``best.pt``, or ``last.pt`` with a note saying why when
    ``best.pt`` is missing (a run stopped while writing it, e.g. on a full disk); CheckpointError
    naming what is missing when neither is there."""
    run_dir = Path(run_dir)
    if (run_dir / BEST).exists() or not run_dir.is_dir():
        return BEST, ""
    if (run_dir / LAST).exists():
        return LAST, (
            f"{run_dir / BEST} is missing (the run stopped while writing it?): "
            f"used {LAST}, the run's latest checkpoint, instead"
        )
    raise CheckpointError(f"{run_dir}: no checkpoint ({BEST} and {LAST} are both missing)")


def resume_from(run_dir: Path) -> Path | None:
    """The checkpoint a resumed run continues from: ``last.pt``, or ``best.pt`` when only it was written
    (it holds a whole training state too); None when neither exists."""
    run_dir = Path(run_dir)
    return next((run_dir / name for name in (LAST, BEST) if (run_dir / name).exists()), None)
