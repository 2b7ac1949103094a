"""What every task tells the train stage (:class:`Task`), and finding the task of a cache or a run.

A task is a frozen dataclass deriving from :class:`Task`, registered in
:data:`empcn.train.tasks.TASKS` under its :attr:`Task.kind`. Its dataclass fields are its **record**:
what a run saves of it (``RunMeta.task`` / ``RunMeta.task_record``) and rebuilds it from, read with
the "field added later" rule of :mod:`empcn.train.saved` (``SAVED_WITHOUT``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from empcn.cache import CacheError
from empcn.errors import EmpcnError, RegistryError
from empcn.train.config import TaskDefaults

if TYPE_CHECKING:
    from empcn.train.batch import ComplexBatch
    from empcn.train.checkpoint import RunMeta


class TaskError(EmpcnError, ValueError):
    """A cache, model and options that do not make a run together; one-line message."""


def loss_dtype(pred: Tensor) -> torch.dtype:
    """float32 at least: a bf16 autocast output is compared with its target in float32."""
    return torch.promote_types(pred.dtype, torch.float32)


@dataclass(frozen=True)
class Task:
    """What a run learns and how it is scored.

    Class attributes: ``kind`` (the registry name, recorded in runs and manifests), ``metric`` (the
    name of the number it reports, e.g. "MAE"), ``loss_name``, ``sample_noun`` (what one sample is,
    for log lines), ``fields`` (the stored fields its loss and metric read, by schema name: a batch
    of this task carries them and a cache without them is refused), ``model_task`` (the task whose
    model variants train this one: a task that only changes another's loss or metric, e.g. an L2 loss
    on scalar targets, names that task and every model for it serves it too; None: its own kind,
    models must serve it by name), ``eval_needs_grad`` (the model differentiates through its
    inputs also when evaluating, e.g. forces as −∂E/∂x: evaluation and prediction then run with
    autograd on). Instance fields (the record): ``target`` (what is predicted, for messages),
    ``unit`` (the metric's unit), and a subclass's own.
    """

    kind: ClassVar[str]
    metric: ClassVar[str]
    loss_name: ClassVar[str]
    sample_noun: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()
    model_task: ClassVar[str | None] = None
    eval_needs_grad: ClassVar[bool] = False

    target: str
    unit: str

    @classmethod
    def models_serve(cls) -> str:
        """The task name a model's :class:`~empcn.train.models.registry.ModelSpec` must serve to train this task."""
        return cls.model_task or cls.kind

    # -- where the task comes from --------------------------------------------------------------
    @classmethod
    def for_cache(cls, manifest: dict[str, Any], path: str, target: str | None) -> Task:
        """The task a cache with this ``manifest`` asks for, with the user's ``--target`` checked
        against it (TaskError, one line, when it does not fit). Not yet fitted to the training data."""
        raise NotImplementedError

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Task:
        """The task a run recorded (:meth:`record`), including records of older versions."""
        from empcn.train.saved import load_saved

        return load_saved(cls, record)

    def record(self) -> dict[str, Any]:
        """What a run saves of this task (JSON-able plain values): its dataclass fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        """CacheError unless the cache at ``path`` holds what this task learns (a run is evaluated on it)."""
        from empcn.train.tasks import DEFAULT_TASK

        found = manifest.get("task", DEFAULT_TASK)
        if found != self.kind:
            raise CacheError(f"{path}: its task is {found!r}, the run's is {self.kind!r}")

    def check_run(self, meta: RunMeta) -> None:
        """TaskError when the rest of a run's record contradicts this task's (e.g. elements counted)."""

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        """The defaults of the options that depend on the task (``model``: the registry name)."""
        raise NotImplementedError

    # -- training -------------------------------------------------------------------------------
    def normalised(
        self, layout: Any, train_indices: Any, reference: str = "none", species: tuple[int, ...] = ()
    ) -> Task:
        """This task fitted to the samples ``train_indices`` of the cache ``layout`` (normalisation).

        ``reference``: ``--target-reference``; ``"atoms"`` applies to scalar targets only.
        """
        if reference != "none":
            raise TaskError(f"--target-reference {reference} applies to scalar targets (QM9), not to {self.describe()}")
        return self

    def restored(self, record: dict[str, Any]) -> Task:
        """This task with what a run recorded when it started (``--resume`` keeps its normalisation)."""
        return self

    def loss(self, pred: Tensor, batch: ComplexBatch) -> Tensor:
        """Training loss of ``pred`` (on the model's device) against the CPU ``batch``'s target."""
        raise NotImplementedError

    def error_sum(self, pred: Tensor, batch: ComplexBatch) -> tuple[float, int]:
        """(Σ error, number of terms) of a batch, in the metric's unit (float64); metric = Σ/n over a split."""
        raise NotImplementedError

    def baselines(
        self, layout: Any, train_indices: Any, splits: dict[str, Any], species: tuple[int, ...]
    ) -> dict[str, Any]:
        """Trivial predictors' scores on each split (name → sample indices), fitted on ``train_indices``:
        split name → an object with ``line(unit)``, ``brief()``, ``to_dict()``, ``mean_mae`` and
        ``atoms_mae`` (none when the task has no baselines)."""
        return {}

    # -- what is printed and drawn --------------------------------------------------------------
    def describe(self) -> str:
        """What is predicted, for log lines."""
        return self.target

    def normalisation(self) -> str:
        """How the target is normalised, for log lines ('' when it is not)."""
        return ""

    def pairs(self, pred: Tensor, batch: ComplexBatch) -> tuple[Tensor, Tensor]:
        """(true, predicted) values of a batch in the metric's unit, flat float64 CPU: the points of the
        parity plot (one per molecule's target; one per particle coordinate)."""
        raise NotImplementedError

    def parity_labels(self) -> tuple[str, str]:
        """(what the parity plot's title names, its axis label with the unit)."""
        return self.target, f"{self.target} [{self.unit}]"

    @property
    def prediction_unit(self) -> str:
        """The unit of :meth:`predictions` (the metric's unit unless that is a square, as an MSE's)."""
        return self.unit

    def check_predict(self, run: str, dataset: str) -> None:
        """TaskError (one line) unless ``empcn predict`` takes runs of this task: one value per input
        file (:meth:`predictions`). ``dataset``: the run's data set, for the message. The scalar task
        (and a task deriving from it) takes them; the others are scored with ``empcn evaluate``."""
        raise TaskError(
            f"{run}: a {self.kind} run ({dataset}); `empcn predict` takes runs trained on graph-level targets "
            f"(score it with `empcn evaluate {run}`)"
        )

    def predictions(self, pred: Tensor, batch: ComplexBatch) -> list[Any]:
        """The model's output as ``empcn predict`` prints it: one JSON-able value per sample of the CPU
        ``batch`` in :attr:`prediction_unit` (TaskError when the task has nothing to print per sample)."""
        raise TaskError(f"`empcn predict` does not print {self.describe()}")


def task_class(name: str, distribution: str | None = None) -> type[Task]:
    """The registered task ``name`` (RegistryError, one line, when unknown or its plug-in is missing)."""
    from empcn.train.tasks import TASKS

    cls = TASKS.get(name, distribution=distribution)
    if cls.kind != name:
        raise RegistryError(f"task {name!r} ({TASKS.origin(name).describe()}): its class says kind {cls.kind!r}")
    return cls


def task_for_cache(manifest: dict[str, Any], path: str, target: str | None) -> Task:
    """The task a cache asks for (its manifest's ``task``; none: scalar), with ``--target`` checked.

    Scalar tasks come back un-normalised (mean 0, MAD 1): the trainer fits them.
    """
    from empcn.train.tasks import DEFAULT_TASK

    name = manifest.get("task", DEFAULT_TASK)
    if not isinstance(name, str):
        raise TaskError(f"{path}: malformed manifest (task {name!r})")
    try:
        return task_class(name).for_cache(manifest, path, target)
    except RegistryError as exc:
        raise TaskError(f"{path}: {exc}") from None


def task_from_meta(meta: RunMeta) -> Task:
    """The task a trained run was trained on, as it recorded it."""
    plugin = meta.plugins.get("task", {}).get("distribution") or None
    task = task_class(meta.task, plugin).from_record(dict(meta.task_record))
    task.check_run(meta)
    return task


def task_of_run(run_dir: Path, which: str | None = None) -> Task:
    """The task of the run in ``run_dir`` (reads its checkpoint's metadata)."""
    from empcn.train.checkpoint import BEST, CheckpointError, RunMeta, run_checkpoint

    which = which or BEST
    state = run_checkpoint(Path(run_dir), which, map_location="cpu")
    try:
        return task_from_meta(RunMeta.from_dict(state["meta"]))
    except (KeyError, TypeError, ValueError) as exc:  # TaskError is a ValueError
        raise CheckpointError(f"{Path(run_dir) / which}: does not fit this empcn ({exc})") from None
