"""Tasks (what a run learns and how it is scored), evaluation on a split, rebuilding a trained model.

Two tasks, chosen by the cache's manifest (``task``) when training and by the run's model when
evaluating — all task-specific logic lives in the :class:`Task` classes below:

* :class:`ScalarTask` (QM9): a graph-level model predicts one target column; loss L1 on
  ``(y − mean)/MAD``; metric MAE in the target's unit.
* :class:`PositionTask` (N-body, manifest ``task: "positions"``): a dynamics model predicts every
  particle's position at the target frame; loss and metric are the MSE against
  ``nodes/target_pos``, averaged over particles and coordinates (as EGNN and EMPCN report it), in
  (simulation units)²; no normalisation.

``empcn evaluate RUN --split test`` loads ``RUN/best.pt`` (model weights, model config, task and
normalisation), streams the split of the cache the run trained on and prints the metric with its
unit. The training loop uses :func:`task_error` for its validation and test numbers, so both report
the same quantity.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from empcn.cache import CacheError
from empcn.train.checkpoint import BEST, CheckpointError, RunMeta, run_checkpoint
from empcn.train.collate import CollateSpec
from empcn.train.config import TaskDefaults, TrainConfig
from empcn.train.distributed import DistEnv, all_reduce_sum, resolve_device

DTYPES = {"float32": torch.float32, "float64": torch.float64}

POSITIONS = "positions"  # RunMeta.target of a positions run
SIMULATION_UNITS = "simulation units"


class TaskError(ValueError):
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

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        """CacheError unless the cache at ``path`` holds this task's target."""
        raise NotImplementedError

    def meta_fields(self) -> dict[str, Any]:
        """``RunMeta`` fields that record this task: target, target_index, unit, mean, mad."""
        raise NotImplementedError

    def normalised(self, layout: Any, train_indices: Any) -> "Task":
        """This task with the normalisation of the samples ``train_indices`` of the cache ``layout``."""
        return self

    def restored(self, meta: RunMeta) -> "Task":
        """This task with the normalisation a run recorded (``--resume`` keeps what the run started with)."""
        return self

    def describe(self) -> str:
        """What is predicted, for log lines."""
        return self.target

    def baseline(self) -> str:
        """A trivial predictor's score to read the metric against, for log lines ('' when none)."""
        return ""


@dataclass(frozen=True)
class ScalarTask(Task):
    """One graph-level target column: L1 loss on ``(y − mean)/MAD``, MAE in the target's unit."""

    kind: ClassVar[str] = "scalar"
    metric: ClassVar[str] = "MAE"
    loss_name: ClassVar[str] = "L1 (normalised)"
    sample_noun: ClassVar[str] = "molecules"

    target_index: int = 0
    mean: float = 0.0
    mad: float = 1.0

    def model_name(self, name: str) -> str:
        from empcn.train.models.registry import DYNAMICS_MODELS, MODELS

        if name in DYNAMICS_MODELS:
            raise TaskError(f"--model {name} predicts positions; this cache holds scalar targets (use egnn, empcn or decoupled)")
        if name not in MODELS:
            raise TaskError(f"unknown model {name!r} for scalar targets; known: {', '.join(sorted(MODELS))}")
        return name

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        return TaskDefaults.scalar(self.target, self.model_name(model))

    def baseline(self) -> str:
        return f"predicting the train mean scores MAE ≈ {self.mad:.4g} {self.unit} (the train MAD)"

    def collate_spec(self, neighbourhoods: dict[str, tuple[int, int]]) -> CollateSpec:
        return CollateSpec(neighbourhoods=dict(neighbourhoods), target_index=self.target_index)

    def loss(self, pred: Tensor, batch: Any) -> Tensor:
        dtype = _loss_dtype(pred)
        y = ((batch.y - self.mean) / self.mad).to(device=pred.device, dtype=dtype)  # float64 before the cast
        return (pred.to(dtype) - y).abs().mean()

    def error_sum(self, pred: Tensor, batch: Any) -> tuple[float, int]:
        value = pred.detach().double().cpu() * self.mad + self.mean
        return float((value - batch.y).abs().sum()), int(len(value))

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        names = manifest.get("targets", {}).get("names", [])
        if self.target not in names or names.index(self.target) != self.target_index:
            raise CacheError(f"{path}: target {self.target!r} is not column {self.target_index} of this cache")

    def meta_fields(self) -> dict[str, Any]:
        return dict(target=self.target, target_index=self.target_index, unit=self.unit, mean=self.mean, mad=self.mad)

    def normalised(self, layout: Any, train_indices: Any) -> "ScalarTask":
        """Mean/MAD of the manifest (whole train split), or recomputed over a ``--train-size`` subset."""
        from empcn.train.dataset import target_statistics

        if len(train_indices) < len(layout.split("train")):
            mean, mad = target_statistics(layout, train_indices, self.target_index)
        else:
            targets = layout.manifest.get("targets", {})
            mean = float(targets.get("train_mean", {}).get(self.target, 0.0))
            mad = float(targets.get("train_mad", {}).get(self.target, 1.0)) or 1.0
        return dataclasses.replace(self, mean=mean, mad=mad)

    def restored(self, meta: RunMeta) -> "ScalarTask":
        return dataclasses.replace(self, mean=meta.mean, mad=meta.mad)


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
    return ScalarTask(target=meta.target, unit=meta.unit, target_index=meta.target_index, mean=meta.mean, mad=meta.mad)


def task_of_run(run_dir: Path, which: str = BEST) -> Task:
    """The task of the run in ``run_dir`` (reads its checkpoint's metadata)."""
    state = run_checkpoint(Path(run_dir), which, map_location="cpu")
    try:
        return task_from_meta(RunMeta.from_dict(state["meta"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(run_dir) / which}: does not fit this empcn ({exc})") from None


# ----------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class EvalResult:
    """The metric (``metric``: MAE or MSE) of a run's model on one split, in ``unit``.

    ``samples``: molecules or systems evaluated; ``epoch``: the checkpoint's epoch. ``to_dict()``
    (``empcn evaluate --json``) names the value by its metric: ``"mae"`` or ``"mse"``.
    """

    run: str
    split: str
    target: str
    unit: str
    metric: str
    value: float
    samples: int
    epoch: int
    noun: str = "molecules"

    @property
    def mae(self) -> float:
        """The value (kept for QM9 callers; an MSE for a positions run)."""
        return self.value

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d[self.metric.lower()] = d.pop("value")
        return d

    def line(self) -> str:
        return (
            f"{self.split} {self.metric} {self.value:.6g} {self.unit}  "
            f"({self.target}, {self.samples} {self.noun}, epoch {self.epoch})"
        )


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, ready for inference (``eval()`` mode, on ``device``)."""

    model: nn.Module
    meta: RunMeta
    config: TrainConfig
    epoch: int
    device: torch.device
    dtype: torch.dtype

    @property
    def spec(self) -> CollateSpec:
        return collate_spec(self.meta)

    @property
    def task(self) -> Task:
        return task_from_meta(self.meta)


def autocast(device: torch.device, dtype: torch.dtype, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for float32 models when ``enabled``; nothing otherwise (never on CPU)."""
    if enabled and device.type == "cuda" and dtype == torch.float32:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_config_from_dict(model: str, values: dict[str, Any]) -> Any:
    """The model's config dataclass from a saved dict (JSON lists back to tuples where the field is one)."""
    from empcn.train.models.registry import config_class

    cls = config_class(model)
    defaults = cls()
    fixed = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            fixed[f.name] = tuple(v) if isinstance(getattr(defaults, f.name), tuple) and isinstance(v, list) else v
    return cls(**fixed)


def model_from_meta(meta: RunMeta) -> nn.Module:
    from empcn.train.models.registry import build_model

    return build_model(meta.model, model_config_from_dict(meta.model, meta.model_config))


def collate_spec(meta: RunMeta) -> CollateSpec:
    """The collation the run trained with: its neighbourhoods, target column, species and charge powers."""
    base = task_from_meta(meta).collate_spec(dict(meta.neighbourhoods))
    return dataclasses.replace(base, species=tuple(meta.species), charge_power=meta.charge_power)


def load_trained(run_dir: Path, which: str = BEST, device: str = "auto") -> TrainedModel:
    """The model of ``run_dir/which`` on ``device``; CheckpointError naming the file when unusable."""
    dev = resolve_device(device)
    state = run_checkpoint(Path(run_dir), which, map_location="cpu")
    try:
        meta = RunMeta.from_dict(state["meta"])
        config = TrainConfig.from_dict(state["config"])
        model = model_from_meta(meta)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{Path(run_dir) / which}: does not fit this empcn ({first})") from None
    dtype = DTYPES[config.dtype]
    model.to(device=dev, dtype=dtype).eval()
    return TrainedModel(model, meta, config, int(state.get("epoch", 0)), dev, dtype)


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: Any, device: torch.device, dtype: torch.dtype, amp: bool, mean: float, mad: float
) -> Any:
    """Yield ``(prediction, batch)`` per batch: prediction ``(B,)`` float64 CPU in the target's unit."""
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            with autocast(device, dtype, amp):
                out = model(batch.to(device, dtype))
            yield out.detach().double().cpu() * mad + mean, batch
    finally:
        model.train(was_training)


def task_error(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    dtype: torch.dtype,
    amp: bool,
    task: Task,
    env: DistEnv | None = None,
) -> tuple[float, int]:
    """(the task's metric, number of samples) over everything ``loader`` yields on all ranks.

    MAE: mean over molecules; MSE: mean over every particle coordinate of every system (with equal
    particle counts, the mean of the per-system MSEs as EGNN/EMPCN report it).
    """
    total = torch.zeros(3, dtype=torch.float64)  # Σ error, terms, samples
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                with autocast(device, dtype, amp):
                    out = model(batch.to(device, dtype))
                err, terms = task.error_sum(out, batch)
                total += torch.tensor([err, float(terms), float(batch.num_graphs)], dtype=torch.float64)
    finally:
        model.train(was_training)
    if env is not None and env.distributed:
        total = total.to(env.device)
        all_reduce_sum(total, env)
        total = total.cpu()
    n = int(total[1].item())
    return (float(total[0] / n) if n else float("nan")), int(total[2].item())


def mean_absolute_error(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    dtype: torch.dtype,
    amp: bool,
    mean: float,
    mad: float,
    env: DistEnv | None = None,
) -> tuple[float, int]:
    """(MAE in the target's unit, number of samples) of a scalar model: :func:`task_error` of a ScalarTask."""
    task = ScalarTask(target="", unit="", mean=mean, mad=mad)
    return task_error(model, loader, device, dtype, amp, task, env)


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    cache: Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
    which: str = BEST,
) -> EvalResult:
    """The task's metric (MAE or MSE) of ``run_dir``'s best model on ``split`` of its cache (or ``cache``)."""
    from empcn.train.dataset import CacheLayout, ShardStream, make_loader

    trained = load_trained(run_dir, which, device)
    meta, config, task = trained.meta, trained.config, trained.task
    path = _find_cache(run_dir, cache, config, meta)
    layout = CacheLayout.read(path)
    task.check_cache(layout.manifest, str(path))
    stream = ShardStream(
        layout,
        layout.split(split),
        trained.spec,
        batch_size or config.batch_size or 100,
        shuffle=False,
        buffer_shards=config.buffer_shards,
    )
    amp = bool(config.amp) if config.amp is not None else task.kind == "scalar"
    value, n = task_error(trained.model, make_loader(stream, workers), trained.device, trained.dtype, amp, task)
    return EvalResult(str(run_dir), split, task.target, task.unit, task.metric, value, n, trained.epoch, task.sample_noun)


def _find_cache(run_dir: Path, cache: Path | None, config: TrainConfig, meta: RunMeta) -> Path:
    """The cache to evaluate on: ``cache`` if given, else the run's (as typed, then its absolute path)."""
    if cache is not None:
        return Path(cache)
    for candidate in (Path(config.cache), Path(meta.cache_path)):
        if candidate.exists():
            return candidate
    raise CacheError(f"{config.cache}: the cache of run {run_dir} is not there (pass --cache)")
