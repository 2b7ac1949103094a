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

    model_config: the model's config dataclass as a dict; mean/mad: target normalisation in the
    target's unit; neighbourhoods: names collated into batches; lift_params: the cache manifest's
    ``params`` (rings kind, max_ring, …) so predict lifts new molecules the same way.
    reference/reference_species: the atom reference of the target (target unit per atom of each
    element, in the order of ``reference_species``, which is ``species``'s; empty: none, the papers'
    plain normalisation, and what a run saved before the field existed trained with).
    domain: statistics of the training molecules (:class:`empcn.train.domain.TrainingDomain`'s saved
    form) that ``predict`` checks inputs against; empty for positions runs and runs saved before it.
    """

    #: Runs saved before the atom reference existed had none; runs saved before the training domain was
    #: recorded predict without checking their inputs against it.
    SAVED_WITHOUT: ClassVar[dict[str, Any]] = {"reference": (), "reference_species": (), "domain": {}}

    model: str
    model_config: dict[str, Any]
    target: str
    target_index: int
    unit: str
    mean: float
    mad: float
    neighbourhoods: dict[str, tuple[int, int]]
    species: tuple[int, ...]
    charge_power: int
    dataset: str
    lift_params: dict[str, Any]
    cache_path: str  # absolute path of the cache trained on
    cache_fingerprint: str
    reference: tuple[float, ...] = ()
    reference_species: tuple[int, ...] = ()
    domain: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["neighbourhoods"] = {k: list(v) for k, v in self.neighbourhoods.items()}
        d["species"] = list(self.species)
        d["reference"] = [float(c) for c in self.reference]
        d["reference_species"] = [int(z) for z in self.reference_species]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "RunMeta":
        """The metadata a checkpoint saved (older checkpoints: the "field added later" rule of
        :func:`empcn.train.saved.load_saved`)."""
        from dataclasses import replace

        from empcn.train.saved import load_saved

        meta = load_saved(RunMeta, d)
        return replace(
            meta,
            neighbourhoods={k: (int(v[0]), int(v[1])) for k, v in meta.neighbourhoods.items()},
            species=tuple(int(s) for s in meta.species),
            reference=tuple(float(c) for c in meta.reference),
            reference_species=tuple(int(z) for z in meta.reference_species),
        )


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
        return LAST, (f"{run_dir / BEST} is missing (the run stopped while writing it?): "
                      f"used {LAST}, the run's latest checkpoint, instead")
    raise CheckpointError(f"{run_dir}: no checkpoint ({BEST} and {LAST} are both missing)")


def resume_from(run_dir: Path) -> Path | None:
    """The checkpoint a resumed run continues from: ``last.pt``, or ``best.pt`` when only it was written
    (it holds a whole training state too); None when neither exists."""
    run_dir = Path(run_dir)
    return next((run_dir / name for name in (LAST, BEST) if (run_dir / name).exists()), None)
