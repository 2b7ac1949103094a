"""Models and runs from Python: what ``empcn train``, ``evaluate`` and ``predict`` do, as functions.

:func:`fit` is ``empcn train`` (the same :class:`~empcn.train.loop.Trainer`: run folder, checkpoints,
``metrics.jsonl``, plots, resume) returning its :class:`~empcn.train.metrics.RunResult`, with an optional
callback per epoch; :func:`evaluate` is ``empcn evaluate``; :func:`load_model` and :func:`predict`
restore a run's model; :func:`build_model` makes a registered model sized for a cache, for a loop of
one's own. Errors a user can fix are :class:`~empcn.errors.EmpcnError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empcn.errors import EmpcnError

if TYPE_CHECKING:
    from torch import nn

    from empcn.predict import Failure, Prediction
    from empcn.train.evaluate import EvalResult, TrainedModel
    from empcn.train.metrics import EpochRecord, RunResult


def build_model(
    name: str,
    cache: Any,
    *,
    hidden: int | None = None,
    layers: int | None = None,
    dropout: float | None = None,
    edge_features: bool = True,
    **options: Any,
) -> nn.Module:
    """Model ``name`` (a name of ``empcn.models``) for ``cache``'s task, sized for its inputs.

    As ``empcn train --model NAME`` builds it: the variant for the cache's task (graph-level targets or
    positions), node-feature width from the cache's element vocabulary, bond orders as edge input when
    the cache stores them (unless ``edge_features=False``), a position model's node scalar (charges,
    masses) when stored. ``hidden``/``layers``/``dropout``: as ``--hidden``/``--layers``/``--dropout``
    (default: the model's); ``options``: any other field of the model's config (``--model-option``),
    e.g. ``fourier_scale=0.5``. Its forward takes a :class:`~empcn.train.batch.ComplexBatch` of a
    :class:`~empcn.loader.ComplexDataset` of that cache. ``cache``: the entry file or an open cache.
    """
    from empcn import schema
    from empcn.errors import RegistryError
    from empcn.loader import cache_layout
    from empcn.train.collate import CollateSpec, manifest_species
    from empcn.train.models.registry import build_model as build
    from empcn.train.models.registry import config_for_run
    from empcn.train.tasks import DEFAULT_TASK
    from empcn.train.tasks.base import task_class

    layout = cache_layout(cache)
    stored = layout.stored_fields()
    spec = CollateSpec(neighbourhoods={}, species=manifest_species(layout.manifest))
    try:
        task = task_class(str(layout.manifest.get("task", DEFAULT_TASK))).models_serve()
        config = config_for_run(
            name,
            spec.node_features,
            spec.edge_features if edge_features and schema.EDGE_ORDER in stored else 0,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            node_scalar=any(f in stored for f in schema.NODE_SCALAR_FIELDS),
            task=task,
        )
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(config)})
        if unknown:
            raise ValueError(f"model {name!r} has no option {', '.join(unknown)} (its config {type(config).__name__})")
        config = dataclasses.replace(config, **options)
    except RegistryError:
        raise
    except (ValueError, TypeError) as exc:
        raise EmpcnError(" ".join(str(exc).split())) from None
    return build(name, config, task)


def fit(
    cache: str | Path | None = None,
    *,
    target: str | None = None,
    model: str = "empcn",
    out: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[EpochRecord], Any] | None = None,
    **options: Any,
) -> RunResult:
    """Train a run, as ``empcn train`` does, and return its result (the test metric at the best epoch).

    ``cache``: the entry file; ``target``: the column of a scalar cache (``"U0"``; none for positions);
    ``model``: a name of ``empcn.models``; ``out``: the run folder (default ``runs/<target>-<model>``);
    ``options``: any other option of ``empcn train`` by its :class:`~empcn.train.config.TrainConfig`
    field name (``epochs=5``, ``batch_size=32``, ``lr=1e-3``, ``train_size=1000``, ``hidden=64``,
    ``model_options=("fourier_scale=0.5",)``, ``progress=False``, ``tensorboard=True``, …).
    ``resume=True``: continue the run in ``out`` exactly (its saved config; only run-control options and
    more ``epochs`` may be given). ``callback(record)``: called after every epoch with its
    :class:`~empcn.train.metrics.EpochRecord` (epoch, train loss, valid metric, learning rate,
    throughput) once it is written and checkpointed; an exception it raises stops the run, which stays
    resumable. The run folder is the CLI's: ``empcn evaluate``, ``--resume`` and ``predict`` use it.
    """
    from empcn.train.config import ConfigError, TrainConfig, merge_for_resume
    from empcn.train.loop import train

    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"cache", "target", "model", "out"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise EmpcnError(f"fit: unknown option {', '.join(unknown)} (options: {', '.join(sorted(known))})")
    if "model_options" in options:
        options["model_options"] = tuple(options["model_options"])
    given: dict[str, Any] = {
        "cache": str(cache) if cache is not None else None,
        "target": target,
        "model": model,
        "out": str(out) if out is not None else None,
        **options,
    }
    try:
        if resume:
            if out is None:
                raise ConfigError("fit(resume=True) needs out=, the run folder to continue")
            config = merge_for_resume(
                TrainConfig.load(Path(out)), {**given, "model": None if model == "empcn" else model}
            )
        else:
            if cache is None:
                raise ConfigError("fit needs the cache to train on (or resume=True and out=)")
            config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    except TypeError as exc:
        raise EmpcnError(f"fit: {exc}") from None
    return train(config, resume=resume, on_epoch=callback)


def evaluate(
    run: str | Path,
    split: str = "test",
    *,
    cache: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int = 0,
    plot: bool = False,
) -> EvalResult:
    """The run's metric on ``split`` (MAE in the target's unit, or MSE of positions), as ``empcn evaluate``.

    ``cache``: another cache of the same kind (default: the run's); ``plot``: also draw
    ``RUN/parity_<split>.png``. The result's ``value``, ``metric``, ``unit``, ``samples``, ``epoch``.
    """
    from empcn.train.evaluate import evaluate_run

    return evaluate_run(
        Path(run), split, Path(cache) if cache is not None else None, device, batch_size, num_workers, plot=plot
    )


def load_model(run: str | Path, device: str = "cpu") -> TrainedModel:
    """The best model of a run (``best.pt``; ``last.pt`` when that is missing), in ``eval()`` mode.

    ``.model`` is the ``nn.Module``; ``.task`` turns its outputs into the target's unit
    (``task.predictions(out, batch)``); ``.spec`` is the collation it was trained with, so
    ``empcn.ComplexDataset(cache, "test", species=trained.spec.species)`` feeds it.
    """
    from empcn.train.checkpoint import best_or_last
    from empcn.train.evaluate import load_trained

    return load_trained(Path(run), best_or_last(Path(run))[0], device)


def predict(run: str | Path, files: Sequence[str | Path], device: str = "cpu") -> list[Prediction | Failure]:
    """``empcn predict RUN FILE…``: one result per structure of ``files``, read and lifted as the run's cache was.

    A :class:`~empcn.predict.Prediction` (``value`` in ``unit``, and ``outside``: how the molecule lies
    outside the training molecules) or a :class:`~empcn.predict.Failure` naming the file and the reason.
    """
    from empcn.predict import predict_files

    return predict_files(Path(run), [Path(f) for f in files], device)
