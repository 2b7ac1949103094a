"""Evaluation on a split and rebuilding a trained model (tasks: :mod:`empcn.train.tasks`).

``empcn evaluate RUN --split test`` loads ``RUN/best.pt`` (model weights, model config, task and
normalisation), streams the split of the cache the run trained on and prints the metric with its
unit, and draws the parity plot of that split (predicted against true values, the metric in its
title) into ``RUN/parity_<split>.png``, beside the learning curve. The training loop uses
:func:`task_error` for its validation and test numbers, so both report the same quantity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from empcn.cache import CacheError
from empcn.elements import element_name, symbols
from empcn.errors import RegistryError
from empcn.train.checkpoint import (
    BEST,
    CheckpointError,
    RunMeta,
    best_or_last,
    run_checkpoint,
)
from empcn.train.collate import CollateSpec, unseen_elements
from empcn.train.config import TrainConfig
from empcn.train.distributed import DistEnv, all_reduce_sum, resolve_device
from empcn.train.models.base import field_names, missing_fields
from empcn.train.models.registry import build_model, saved_config
from empcn.train.precision import DTYPES, autocast
from empcn.train.tasks.base import Task, task_from_meta

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
    plot: str = ""  # the parity plot written ("" when none)
    note: str = ""  # why no parity plot was written, when one was asked for; a missing best.pt

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
    task: Task
    model_config: Any  # the model's config dataclass, as the run saved it

    @property
    def input_fields(self) -> tuple[str | tuple[str, ...], ...]:
        """The stored fields the model reads beside the complex (its config's ``reads_fields``)."""
        return tuple(self.model_config.reads_fields())

    @property
    def spec(self) -> CollateSpec:
        """The collation the run trained with: its neighbourhoods, the task's targets and the model's
        inputs, species and charge powers."""
        return collate_spec(self.meta, (*self.task.fields, *self.input_fields))

    @property
    def input_spec(self) -> CollateSpec:
        """:attr:`spec` without the task's targets (new samples to predict have none)."""
        return collate_spec(self.meta, self.input_fields)


def collate_spec(meta: RunMeta, fields: tuple[str | tuple[str, ...], ...] = ()) -> CollateSpec:
    """The collation of a run: its neighbourhoods, species and charge powers, carrying ``fields``."""
    return CollateSpec(
        neighbourhoods=dict(meta.neighbourhoods),
        fields=field_names(fields),
        species=tuple(meta.species),
        charge_power=meta.charge_power,
    )


def load_trained(run_dir: Path, which: str = BEST, device: str = "auto") -> TrainedModel:
    """The model of ``run_dir/which`` on ``device``; CheckpointError naming the file when unusable
    (a missing plug-in: one line naming its package)."""
    from empcn.train.saved_checks import check_weights_fit

    dev = resolve_device(device)
    path = Path(run_dir) / which
    state = run_checkpoint(Path(run_dir), which, map_location="cpu")
    try:
        meta = RunMeta.from_dict(state["meta"])
        config = TrainConfig.from_dict(state["config"])
        task = task_from_meta(meta)
        model_config = saved_config(meta.model, meta.model_config, task.models_serve(), meta.plugin("model"))
        check_weights_fit(  # before building
            Path(run_dir) / which, meta.model, meta.model_config, state["model"], task.models_serve()
        )
        model = build_model(meta.model, model_config, task.models_serve())
        model.load_state_dict(state["model"])
    except RegistryError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: does not fit this empcn ({first})") from None
    dtype = DTYPES[config.dtype]
    model.to(device=dev, dtype=dtype).eval()
    return TrainedModel(model, meta, config, int(state.get("epoch", 0)), dev, dtype, task, model_config)


def task_error(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    dtype: torch.dtype,
    amp: bool,
    task: Task,
    env: DistEnv | None = None,
    pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[float, int]:
    """(the task's metric, number of samples) over everything ``loader`` yields on all ranks.

    MAE: mean over molecules; MSE: mean over every particle coordinate of every system (with equal
    particle counts, the mean of the per-system MSEs as EGNN/EMPCN report it). ``pairs``: when given,
    every batch's (true, predicted) values (:meth:`Task.pairs`, this rank's batches) are appended.
    """
    total = torch.zeros(3, dtype=torch.float64)  # Σ error, terms, samples
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad() if task.eval_needs_grad else torch.no_grad():
            for batch in loader:
                with autocast(device, dtype, amp):
                    out = model(batch.to(device, dtype))
                err, terms = task.error_sum(out, batch)
                if pairs is not None:
                    pairs.append(task.pairs(out, batch))
                total += torch.tensor([err, float(terms), float(batch.num_graphs)], dtype=torch.float64)
    finally:
        model.train(was_training)
    if env is not None and env.distributed:
        total = total.to(env.device)
        all_reduce_sum(total, env)
        total = total.cpu()
    n = int(total[1].item())
    return (float(total[0] / n) if n else float("nan")), int(total[2].item())


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    cache: Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int = 0,
    which: str = BEST,
    plot: bool = False,
) -> EvalResult:
    """The task's metric (MAE or MSE) of ``run_dir``'s best model on ``split`` of its cache (or ``cache``).

    ``plot``: also draw the parity plot into ``run_dir/parity_<split>.png`` (a run folder that cannot
    be written is no error: the result's ``note`` says why there is no plot). A run without ``best.pt``
    (stopped while writing it) is evaluated at ``last.pt``, and the ``note`` says so.
    """
    from empcn.train.dataset import CacheLayout, ShardStream, make_loader

    best_missing = ""
    if which == BEST:
        which, best_missing = best_or_last(Path(run_dir))
    trained = load_trained(run_dir, which, device)
    meta, config, task = trained.meta, trained.config, trained.task
    path = _find_cache(run_dir, cache, config, meta)
    layout = CacheLayout.read(path)
    task.check_cache(layout.manifest, str(path))
    missing = missing_fields((*task.fields, *trained.input_fields), layout.stored_fields())
    if missing:
        raise CacheError(f"{path}: has no field {', '.join(missing)} (run {run_dir} reads it)")
    unseen = unseen_elements(layout.manifest, tuple(meta.species))
    if unseen:
        raise CacheError(
            f"{path}: element {', '.join(element_name(z) for z in unseen)} is not among those the model of "
            f"{run_dir} knows ({symbols(meta.species)}); evaluate it on a cache of the same elements"
        )
    stream = ShardStream(
        layout,
        layout.split(split),
        trained.spec,
        batch_size or config.batch_size or 100,
        shuffle=False,
        buffer_shards=config.buffer_shards,
    )
    amp = bool(config.amp) if config.amp is not None else task.defaults(meta.model, meta.dataset).amp
    pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if plot else None
    value, n = task_error(
        trained.model, make_loader(stream, workers), trained.device, trained.dtype, amp, task, pairs=pairs
    )
    result = EvalResult(
        str(run_dir),
        split,
        task.target,
        task.unit,
        task.metric,
        value,
        n,
        trained.epoch,
        task.sample_noun,
        note=best_missing,
    )
    if pairs is None:
        return result
    try:
        path = write_parity(Path(run_dir), result, pairs, task)
    except OSError as exc:
        why = str(exc) if exc.strerror is None else f"{Path(run_dir)}: {exc.strerror}"
        return dataclasses.replace(result, note="; ".join(filter(None, [best_missing, f"no parity plot: {why}"])))
    return dataclasses.replace(result, plot=str(path))


def write_parity(run_dir: Path, result: EvalResult, pairs: list[tuple[torch.Tensor, torch.Tensor]], task: Task) -> Path:
    """``run_dir/parity_<split>.png`` of the (true, predicted) ``pairs`` that gave ``result``; the
    labels are the task's (:meth:`Task.parity_labels`).

    Its PNG ``Description`` chunk is ``split=… target=… samples=… points=… epoch=… metric=… value=… unit=…``.
    """
    from empcn.train.metrics import PARITY_FILE, plot_parity

    true = torch.cat([t for t, _ in pairs]) if pairs else torch.zeros(0, dtype=torch.float64)
    pred = torch.cat([p for _, p in pairs]) if pairs else torch.zeros(0, dtype=torch.float64)
    what, quantity = task.parity_labels()
    title = (
        f"{what}, {result.split} split ({result.samples} {result.noun}, epoch {result.epoch})\n"
        f"{result.metric} {result.value:.4g} {result.unit}"
    )
    description = (
        f"split={result.split} target={result.target} samples={result.samples} points={len(true)} epoch={result.epoch} "
        f"metric={result.metric} value={result.value!r} unit={result.unit}"
    )
    return plot_parity(
        Path(run_dir) / PARITY_FILE.format(split=result.split),
        true.numpy(),
        pred.numpy(),
        title=title,
        quantity=quantity,
        description=description,
    )


def _find_cache(run_dir: Path, cache: Path | None, config: TrainConfig, meta: RunMeta) -> Path:
    """The cache to evaluate on: ``cache`` if given, else the run's (as typed, then its absolute path)."""
    if cache is not None:
        return Path(cache)
    for candidate in (Path(config.cache), Path(meta.cache_path)):
        if candidate.exists():
            return candidate
    raise CacheError(f"{config.cache}: the cache of run {run_dir} is not there (pass --cache)")
