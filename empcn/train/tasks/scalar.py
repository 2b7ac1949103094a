"""The ``scalar`` task: one graph-level target column (QM9, own molecules), normalised, scored by MAE.

Loss L1 on ``(y − ref − mean)/MAD``, where ``ref`` is an optional per-element atom reference
(:mod:`empcn.train.reference`; 0 with ``--target-reference none``, the papers' normalisation);
metric MAE in the target's unit. The batch carries ``sample/y`` (all target columns, as stored);
the task reads its column.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import Tensor

from empcn import schema
from empcn.cache import CacheError
from empcn.train.config import TargetReference, TaskDefaults
from empcn.train.tasks.base import Task, TaskError, loss_dtype

if TYPE_CHECKING:
    from empcn.train.batch import ComplexBatch
    from empcn.train.checkpoint import RunMeta

#: EGNN trains the orbital energies with lr 1e-3 and everything else with 5e-4 (arXiv 2102.09844).
HIGH_LR_TARGETS = frozenset({"gap", "homo", "lumo"})

#: QM9 targets whose default ``--target-reference`` is ``atoms``: on the train → valid split an
#: atom-count fit scores ≤ 36 % of the predict-the-mean MAE for these, ≥ 74 % for mu, homo, lumo, gap,
#: r2 (``empcn.train.reference``, ``docs/models.md``).
EXTENSIVE_TARGETS = frozenset({"alpha", "zpve", "U0", "U", "H", "G", "Cv"})


def scalar_defaults(target: str, model: str) -> TaskDefaults:
    """QM9 (EGNN's settings): 1000 epochs, batch 96, lr 1e-3 for gap/homo/lumo else 5e-4, cosine,
    bf16 autocast on CUDA; an atom reference for the extensive targets (ours, not the papers')."""
    lr = 1e-3 if target in HIGH_LR_TARGETS else 5e-4
    reference: TargetReference = "atoms" if target in EXTENSIVE_TARGETS else "none"
    return TaskDefaults("scalar", target, model, 1000, 96, lr, "cosine", True, reference)


@dataclass(frozen=True)
class ScalarTask(Task):
    """One graph-level target column: L1 loss on ``(y − ref − mean)/MAD``, MAE in the target's unit.

    ``target_index``: the column of ``sample/y``. ``reference``: (S,) per-atom coefficients (target
    unit) of the elements ``reference_species`` (the collation's species, in its order);
    ``ref = Σ_e reference_e · n_e`` per molecule. Empty: no reference (``ref = 0``), the papers'
    plain normalisation. ``mean``/``mad``: of ``y − ref`` over the molecules trained on.
    """

    kind: ClassVar[str] = "scalar"
    metric: ClassVar[str] = "MAE"
    loss_name: ClassVar[str] = "L1 (normalised)"
    fields: ClassVar[tuple[str, ...]] = (schema.SAMPLE_Y,)
    #: Runs saved before the atom reference existed had none; those saved before ``noun`` were molecules.
    SAVED_WITHOUT: ClassVar[dict[str, Any]] = {"reference": (), "reference_species": (), "noun": "molecules"}

    target_index: int = 0
    mean: float = 0.0
    mad: float = 1.0
    reference: tuple[float, ...] = ()
    reference_species: tuple[int, ...] = ()
    noun: str = "molecules"  # what one sample is, for log lines: "samples" for a cache without atoms

    def __post_init__(self) -> None:
        if len(self.reference) != len(self.reference_species):
            raise TaskError(
                f"{self.target}: an atom reference of {len(self.reference)} values for {len(self.reference_species)} elements"
            )
        object.__setattr__(self, "reference", tuple(float(c) for c in self.reference))
        object.__setattr__(self, "reference_species", tuple(int(z) for z in self.reference_species))

    # -- where the task comes from --------------------------------------------------------------
    @classmethod
    def for_cache(cls, manifest: dict[str, Any], path: str, target: str | None) -> ScalarTask:
        targets = manifest.get("targets", {})
        names = list(targets.get("names", []))
        if target is None:
            raise TaskError(f"{path}: --target is required (this cache has {', '.join(names) or 'no targets'})")
        if target not in names:
            raise TaskError(f"{path}: target {target!r} is not in this cache (it has {', '.join(names)})")
        atoms = bool(manifest.get("elements")) or manifest.get("dataset") == "qm9"  # QM9 caches before "elements"
        return cls(
            target=target,
            unit=str(targets.get("units", {}).get(target, "")),
            target_index=names.index(target),
            noun="molecules" if atoms else "samples",
        )

    @property
    def sample_noun(self) -> str:  # type: ignore[override]
        """``molecules`` for a cache of atoms (QM9, own molecules), else ``samples``."""
        return self.noun

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        super().check_cache(manifest, path)
        names = manifest.get("targets", {}).get("names", [])
        if self.target not in names or names.index(self.target) != self.target_index:
            raise CacheError(f"{path}: target {self.target!r} is not column {self.target_index} of this cache")

    def check_run(self, meta: RunMeta) -> None:
        if self.reference and tuple(self.reference_species) != tuple(meta.species):
            raise TaskError(
                f"the run's atom reference counts elements {list(self.reference_species)}, its model reads {list(meta.species)}"
            )

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        return scalar_defaults(self.target, model)

    # -- training -------------------------------------------------------------------------------
    def targets(self, batch: ComplexBatch) -> Tensor:
        """(B,) float64 CPU: the target column of every sample of the batch."""
        return batch.field(schema.SAMPLE_Y, f"target {self.target}")[:, self.target_index]

    def reference_values(self, batch: ComplexBatch) -> Tensor | None:
        """(B,) float64 CPU: the atom reference of each molecule of the CPU ``batch`` (None without one)."""
        if not self.reference:
            return None
        from empcn.train.collate import CollateSpec, species_counts

        counts = species_counts(batch, CollateSpec(neighbourhoods={}, species=self.reference_species))
        return counts @ torch.tensor(self.reference, dtype=torch.float64, device=counts.device)

    def value(self, pred: Tensor, batch: ComplexBatch) -> Tensor:
        """(B,) float64 CPU: the model's output ``pred`` (normalised) in the target's unit, for the CPU ``batch``."""
        value = pred.detach().double().cpu() * self.mad + self.mean
        ref = self.reference_values(batch)
        return value if ref is None else value + ref

    def loss(self, pred: Tensor, batch: ComplexBatch) -> Tensor:
        dtype = loss_dtype(pred)
        ref = self.reference_values(batch)
        y = self.targets(batch) if ref is None else self.targets(batch) - ref
        y = ((y - self.mean) / self.mad).to(device=pred.device, dtype=dtype)  # float64 before the cast
        return (pred.to(dtype) - y).abs().mean()

    def error_sum(self, pred: Tensor, batch: ComplexBatch) -> tuple[float, int]:
        value = self.value(pred, batch)
        return float((value - self.targets(batch)).abs().sum()), int(len(value))

    def normalised(
        self, layout: Any, train_indices: Any, reference: str = "none", species: tuple[int, ...] = ()
    ) -> ScalarTask:
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
            residual_mean, residual_mad = mean_mad(y - counts @ fit.coef)
            return dataclasses.replace(
                self,
                mean=float(residual_mean),
                mad=float(residual_mad),
                reference=tuple(float(c) for c in fit.coef),
                reference_species=tuple(int(s) for s in species),
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

    def restored(self, record: dict[str, Any]) -> ScalarTask:
        saved = cast(ScalarTask, type(self).from_record(record))
        return dataclasses.replace(
            self, mean=saved.mean, mad=saved.mad, reference=saved.reference, reference_species=saved.reference_species
        )

    def baselines(
        self, layout: Any, train_indices: Any, splits: dict[str, Any], species: tuple[int, ...]
    ) -> dict[str, Any]:
        from empcn.train.reference import baselines

        return baselines(layout, train_indices, splits, self.target_index, tuple(species))

    # -- what is printed and drawn --------------------------------------------------------------
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

    def pairs(self, pred: Tensor, batch: ComplexBatch) -> tuple[Tensor, Tensor]:
        return self.targets(batch).double().reshape(-1), self.value(pred, batch).reshape(-1)

    def check_predict(self, run: str, dataset: str) -> None:
        """``empcn predict`` prints one value per input file: runs of this task are taken."""

    def predictions(self, pred: Tensor, batch: ComplexBatch) -> list[Any]:
        return self.value(pred, batch).tolist()  # target unit (+ atom reference)
