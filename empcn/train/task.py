"""Tasks: what a run learns and how it is scored, chosen by the cache's manifest (``task``).

* :class:`ScalarTask` (QM9): a graph-level model predicts one target column; loss L1 on
  ``(y − ref − mean)/MAD``, where ``ref`` is an optional per-element atom reference
  (:mod:`empcn.train.reference`; 0 with ``--target-reference none``, the papers' normalisation);
  metric MAE in the target's unit.
* :class:`PositionTask` (N-body, manifest ``task: "positions"``): a dynamics model predicts every
  particle's position at the target frame; loss and metric are the MSE against
  ``nodes/target_pos``, averaged over particles and coordinates (as EGNN and EMPCN report it), in
  (simulation units)²; no normalisation.

All task-specific logic of training and evaluation lives here; the loop has no task branches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from empcn.cache import CacheError
from empcn.errors import EmpcnError
from empcn.train.checkpoint import BEST, CheckpointError, RunMeta, run_checkpoint
from empcn.train.collate import CollateSpec
from empcn.train.config import TaskDefaults

POSITIONS = "positions"  # RunMeta.target of a positions run
SIMULATION_UNITS = "simulation units"


class TaskError(EmpcnError, ValueError):
    """A cache, model and options that do not make a run together; one-line message."""


# ----------------------------------------------------------------------------------------------
# tasks


def _loss_dtype(pred: Tensor) -> torch.dtype:
    """float32 at least: a bf16 autocast output is compared with its target in float32."""
    return torch.promote_types(pred.dtype, torch.float32)


@dataclass(frozen=True)
class Task:
    """What a run learns and how it is scored. Subclasses: :class:`ScalarTask`, :class:`PositionTask`.

    ``target``: the scalar column (QM9) or ``"positions"``; ``unit``: the metric's unit.
    """

    kind: ClassVar[str]
    metric: ClassVar[str]  # "MAE" | "MSE"
    loss_name: ClassVar[str]
    sample_noun: ClassVar[str]  # what one sample is, for log lines

    target: str
    unit: str

    def model_name(self, name: str) -> str:
        """The registry name ``--model name`` trains for this task; TaskError when it does not fit."""
        raise NotImplementedError

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        """The option defaults of this task (``model``: as typed by the user)."""
        raise NotImplementedError

    def collate_spec(self, neighbourhoods: dict[str, tuple[int, int]]) -> CollateSpec:
        """What collation must put into a batch for this task."""
        raise NotImplementedError

    def loss(self, pred: Tensor, batch: Any) -> Tensor:
        """Training loss of ``pred`` (on the model's device) against the CPU ``batch``'s target."""
        raise NotImplementedError

    def error_sum(self, pred: Tensor, batch: Any) -> tuple[float, int]:
        """(Σ error, number of terms) of a batch, in the metric's unit (float64); metric = Σ/n over a split."""
        raise NotImplementedError

    def pairs(self, pred: Tensor, batch: Any) -> tuple[Tensor, Tensor]:
        """(true, predicted) values of a batch in the metric's unit, flat float64 CPU: one point each
        of a parity plot (a molecule's target; a particle coordinate)."""
        raise NotImplementedError

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        """CacheError unless the cache at ``path`` holds this task's target."""
        raise NotImplementedError

    def meta_fields(self) -> dict[str, Any]:
        """``RunMeta`` fields that record this task: target, target_index, unit, mean, mad, reference, reference_species."""
        raise NotImplementedError

    def normalised(
        self, layout: Any, train_indices: Any, reference: str = "none", species: tuple[int, ...] = ()
    ) -> "Task":
        """This task with the normalisation of the samples ``train_indices`` of the cache ``layout``.

        ``reference``: ``"atoms"`` fits a per-element reference over the elements ``species`` first
        (scalar tasks only; TaskError otherwise).
        """
        if reference != "none":
            raise TaskError(f"--target-reference {reference} applies to scalar targets (QM9), not to {self.describe()}")
        return self

    def restored(self, meta: RunMeta) -> "Task":
        """This task with the normalisation a run recorded (``--resume`` keeps what the run started with)."""
        return self

    def describe(self) -> str:
        """What is predicted, for log lines."""
        return self.target

    def normalisation(self) -> str:
        """How the target is normalised, for log lines ('' when it is not)."""
        return ""

    def baselines(self, layout: Any, train_indices: Any, splits: dict[str, Any], species: tuple[int, ...]) -> dict[str, Any]:
        """Trivial predictors' scores on each split (name → sample indices), fitted on ``train_indices``:
        split name → an object with ``line(unit)`` (empty when the task has none)."""
        return {}


@dataclass(frozen=True)
class ScalarTask(Task):
    """One graph-level target column: L1 loss on ``(y − ref − mean)/MAD``, MAE in the target's unit.

    ``reference``: (S,) per-atom coefficients (target unit) of the elements ``reference_species``
    (the collation's species, in its order); ``ref = Σ_e reference_e · n_e`` per molecule. Empty:
    no reference (``ref = 0``), the papers' plain normalisation. ``mean``/``mad``: of ``y − ref``
    over the molecules trained on.
    """

    kind: ClassVar[str] = "scalar"
    metric: ClassVar[str] = "MAE"
    loss_name: ClassVar[str] = "L1 (normalised)"
    sample_noun: ClassVar[str] = "molecules"

    target_index: int = 0
    mean: float = 0.0
    mad: float = 1.0
    reference: tuple[float, ...] = ()
    reference_species: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.reference) != len(self.reference_species):
            raise TaskError(
                f"{self.target}: an atom reference of {len(self.reference)} values for {len(self.reference_species)} elements"
            )

    def _reference(self, batch: Any) -> Tensor | None:
        """(B,) float64 CPU: the atom reference of each molecule of the CPU ``batch`` (None without one)."""
        if not self.reference:
            return None
        from empcn.train.collate import CollateSpec, species_counts

        counts = species_counts(batch, CollateSpec(neighbourhoods={}, species=self.reference_species))
        return counts @ torch.tensor(self.reference, dtype=torch.float64, device=counts.device)

    def value(self, pred: Tensor, batch: Any) -> Tensor:
        """(B,) float64 CPU: the model's output ``pred`` (normalised) in the target's unit, for the CPU ``batch``."""
        value = pred.detach().double().cpu() * self.mad + self.mean
        ref = self._reference(batch)
        return value if ref is None else value + ref

    def model_name(self, name: str) -> str:
        from empcn.train.models.registry import DYNAMICS_MODELS, MODELS

        if name in DYNAMICS_MODELS:
            raise TaskError(f"--model {name} predicts positions; this cache holds scalar targets (use egnn, empcn, decoupled or segnn)")
        if name not in MODELS:
            raise TaskError(f"unknown model {name!r} for scalar targets; known: {', '.join(sorted(MODELS))}")
        return name

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        return TaskDefaults.scalar(self.target, self.model_name(model))

    def describe(self) -> str:
        return f"{self.target} − atom reference" if self.reference else self.target

    def normalisation(self) -> str:
        if not self.reference:
            return f"target normalisation: (y − mean) / MAD with the train mean {self.mean:.6g} and MAD {self.mad:.6g} {self.unit}"
        from empcn.train.reference import element_symbol

        per = ", ".join(f"{element_symbol(z)} {c:.6g}" for z, c in zip(self.reference_species, self.reference))
        return (
            f"atom reference (least squares on the train molecules' element counts), {self.unit} per atom: {per}; "
            f"the residual r normalised as (r − mean) / MAD with its train mean {self.mean:.6g} and MAD {self.mad:.6g}"
        )

    def baselines(self, layout: Any, train_indices: Any, splits: dict[str, Any], species: tuple[int, ...]) -> dict[str, Any]:
        from empcn.train.reference import baselines

        return baselines(layout, train_indices, splits, self.target_index, tuple(species))

    def collate_spec(self, neighbourhoods: dict[str, tuple[int, int]]) -> CollateSpec:
        return CollateSpec(neighbourhoods=dict(neighbourhoods), target_index=self.target_index)

    def loss(self, pred: Tensor, batch: Any) -> Tensor:
        dtype = _loss_dtype(pred)
        ref = self._reference(batch)
        y = batch.y if ref is None else batch.y - ref
        y = ((y - self.mean) / self.mad).to(device=pred.device, dtype=dtype)  # float64 before the cast
        return (pred.to(dtype) - y).abs().mean()

    def error_sum(self, pred: Tensor, batch: Any) -> tuple[float, int]:
        value = self.value(pred, batch)
        return float((value - batch.y).abs().sum()), int(len(value))

    def pairs(self, pred: Tensor, batch: Any) -> tuple[Tensor, Tensor]:
        return batch.y.double().reshape(-1), self.value(pred, batch).reshape(-1)

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        names = manifest.get("targets", {}).get("names", [])
        if self.target not in names or names.index(self.target) != self.target_index:
            raise CacheError(f"{path}: target {self.target!r} is not column {self.target_index} of this cache")

    def meta_fields(self) -> dict[str, Any]:
        return dict(
            target=self.target, target_index=self.target_index, unit=self.unit, mean=self.mean, mad=self.mad,
            reference=tuple(self.reference), reference_species=tuple(self.reference_species),
        )

    def normalised(
        self, layout: Any, train_indices: Any, reference: str = "none", species: tuple[int, ...] = ()
    ) -> "ScalarTask":
        """``reference`` ``"none"``: mean/MAD of the manifest (whole train split), or recomputed over a
        ``--train-size`` subset. ``"atoms"``: the least-squares atom reference of the elements
        ``species`` over ``train_indices``, and mean/MAD of the residual (:mod:`empcn.train.reference`)."""
        from empcn.train.dataset import target_statistics

        if reference == "atoms":
            from empcn.statistics import mean_mad
            from empcn.train.reference import fit_atom_counts, read_counts

            if not species:
                raise TaskError(f"{self.target}: an atom reference needs the elements to count")
            counts, y = read_counts(layout, train_indices, self.target_index, tuple(species))
            fit = fit_atom_counts(counts, y, tuple(species))
            mean, mad = mean_mad(y - counts @ fit.coef)
            return dataclasses.replace(
                self, mean=float(mean), mad=float(mad),
                reference=tuple(float(c) for c in fit.coef), reference_species=tuple(int(s) for s in species),
            )
        if reference != "none":
            raise TaskError(f"--target-reference must be atoms or none, got {reference!r}")
        if len(train_indices) < len(layout.split("train")):
            mean, mad = target_statistics(layout, train_indices, self.target_index)
        else:
            targets = layout.manifest.get("targets", {})
            mean = float(targets.get("train_mean", {}).get(self.target, 0.0))
            mad = float(targets.get("train_mad", {}).get(self.target, 1.0)) or 1.0
        return dataclasses.replace(self, mean=mean, mad=mad, reference=(), reference_species=())

    def restored(self, meta: RunMeta) -> "ScalarTask":
        return dataclasses.replace(
            self, mean=meta.mean, mad=meta.mad, reference=tuple(meta.reference),
            reference_species=tuple(meta.reference_species),
        )


@dataclass(frozen=True)
class PositionTask(Task):
    """Positions at the target frame: loss and metric MSE over particles and coordinates, (length unit)².

    ``horizon``: simulation steps between input and target frame (0 when unknown), for log lines.
    """

    kind: ClassVar[str] = "positions"
    metric: ClassVar[str] = "MSE"
    loss_name: ClassVar[str] = "MSE"
    sample_noun: ClassVar[str] = "systems"

    target: str = POSITIONS
    unit: str = f"({SIMULATION_UNITS})²"
    horizon: int = 0

    #: ``--model`` names for this task → the position-predicting models.
    ALIASES: ClassVar[dict[str, str]] = {
        "egnn": "egnn_dynamics", "empcn": "empcn_dynamics", "decoupled": "decoupled_dynamics",
        "segnn": "segnn_dynamics",
    }

    def model_name(self, name: str) -> str:
        from empcn.train.models.registry import DYNAMICS_MODELS

        name = self.ALIASES.get(name, name)
        if name not in DYNAMICS_MODELS:
            known = sorted(set(self.ALIASES) | set(DYNAMICS_MODELS))
            raise TaskError(f"--model {name} does not predict positions; known: {', '.join(known)}")
        return name

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        return TaskDefaults.positions(dataset or "nbody", self.model_name(model))

    def collate_spec(self, neighbourhoods: dict[str, tuple[int, int]]) -> CollateSpec:
        return CollateSpec(neighbourhoods=dict(neighbourhoods), target_index=None)

    @staticmethod
    def _target(batch: Any) -> Tensor:
        if batch.target_pos is None or batch.target_pos.shape != batch.pos.shape:
            raise TaskError("the batch has no (N, 3) target_pos: not a positions cache")
        return batch.target_pos

    def loss(self, pred: Tensor, batch: Any) -> Tensor:
        dtype = _loss_dtype(pred)
        target = self._target(batch).to(device=pred.device, dtype=dtype)
        return ((pred.to(dtype) - target) ** 2).mean()

    def error_sum(self, pred: Tensor, batch: Any) -> tuple[float, int]:
        diff = pred.detach().double().cpu() - self._target(batch).double()
        return float((diff * diff).sum()), int(diff.numel())

    def pairs(self, pred: Tensor, batch: Any) -> tuple[Tensor, Tensor]:
        return self._target(batch).double().reshape(-1), pred.detach().double().cpu().reshape(-1)

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        if manifest.get("task") != POSITIONS:
            raise CacheError(f"{path}: not a positions cache (its manifest's task is {manifest.get('task')!r})")

    def meta_fields(self) -> dict[str, Any]:
        return dict(target=self.target, target_index=-1, unit=self.unit, mean=0.0, mad=1.0)

    def describe(self) -> str:
        return f"positions {self.horizon} steps ahead" if self.horizon else "positions"


def task_for_cache(manifest: dict[str, Any], path: str, target: str | None) -> Task:
    """The task a cache asks for (its manifest's ``task``), with ``--target`` checked against it.

    Scalar tasks come back un-normalised (mean 0, MAD 1): the trainer sets the statistics.
    """
    if manifest.get("task") == POSITIONS:
        if target is not None:
            raise TaskError(
                f"{path}: --target {target} does not apply: this cache's task is positions "
                "(the model predicts nodes/target_pos); leave --target out"
            )
        sim = manifest.get("simulator", {})
        horizon = int(sim.get("step_target", 0)) - int(sim.get("step_in", 0))
        if not sim:  # recorded data (MoCap): frames between input and target
            horizon = int(manifest.get("target", {}).get("horizon_frames", 0))
        units = str(manifest.get("units", SIMULATION_UNITS))
        return PositionTask(unit=f"({units})²", horizon=max(horizon, 0))
    targets = manifest.get("targets", {})
    names = list(targets.get("names", []))
    if target is None:
        raise TaskError(f"{path}: --target is required (this cache has {', '.join(names) or 'no targets'})")
    if target not in names:
        raise TaskError(f"{path}: target {target!r} is not in this cache (it has {', '.join(names)})")
    return ScalarTask(target=target, unit=str(targets.get("units", {}).get(target, "")), target_index=names.index(target))


def task_from_meta(meta: RunMeta) -> Task:
    """The task a trained run was trained on (a dynamics model ⇒ positions)."""
    from empcn.train.models.registry import DYNAMICS_MODELS

    if meta.model in DYNAMICS_MODELS:
        return PositionTask(unit=meta.unit)
    if meta.reference and tuple(meta.reference_species) != tuple(meta.species):
        raise TaskError(
            f"the run's atom reference counts elements {list(meta.reference_species)}, its model reads {list(meta.species)}"
        )
    return ScalarTask(
        target=meta.target, unit=meta.unit, target_index=meta.target_index, mean=meta.mean, mad=meta.mad,
        reference=tuple(meta.reference), reference_species=tuple(meta.reference_species),
    )


def task_of_run(run_dir: Path, which: str = BEST) -> Task:
    """The task of the run in ``run_dir`` (reads its checkpoint's metadata)."""
    state = run_checkpoint(Path(run_dir), which, map_location="cpu")
    try:
        return task_from_meta(RunMeta.from_dict(state["meta"]))
    except (KeyError, TypeError, ValueError) as exc:  # TaskError is a ValueError
        raise CheckpointError(f"{Path(run_dir) / which}: does not fit this empcn ({exc})") from None
