"""Checks of a saved run before anything is built from it (a run folder may come from someone else).

* :func:`check_weights_fit`: the tensor shapes a checkpoint's model config implies, computed on
  torch's ``meta`` device (no memory), must equal the shapes of its saved weights — so a config
  saying ``hidden=4000`` beside the weights of a ``hidden=16`` model is refused in one line before a
  1 GiB model is built.
* :func:`check_config_agrees`: a run has one configuration. ``config.json`` is what ``--resume``
  reads, the checkpoint holds the one its weights were trained with; the two must agree on every
  option that changes what is computed (:data:`~empcn.train.config.RUN_CONTROL` options and a grown
  ``epochs`` may differ), or the resume is refused naming the first difference.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch

from empcn.train.checkpoint import CheckpointError
from empcn.train.config import RUN_CONTROL, ConfigError, TrainConfig


def _meta_shapes(name: str, values: dict[str, Any], task: str | None = None) -> dict[str, tuple[int, ...]]:
    from empcn.train.models.registry import model_from_saved

    with torch.device("meta"):
        model = model_from_saved(name, values, task)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def expected_shapes(name: str, values: dict[str, Any], task: str | None = None) -> dict[str, tuple[int, ...]] | None:
    """:func:`_expected_shapes`, remembered per process for each (model, saved config)."""
    try:
        key = json.dumps(values, sort_keys=True)
    except TypeError:
        return _expected_shapes(name, values, task)
    return _remembered_shapes(name, key, task)


@functools.lru_cache(maxsize=32)
def _remembered_shapes(name: str, key: str, task: str | None) -> dict[str, tuple[int, ...]] | None:
    return _expected_shapes(name, json.loads(key), task)


def _expected_shapes(name: str, values: dict[str, Any], task: str | None = None) -> dict[str, tuple[int, ...]] | None:
    """Name → shape of every tensor of the state dict of model ``name`` built from the saved config
    ``values``, without allocating it; None when the model cannot be built on the meta device.

    A constructor that computes constants with real tensors (e3nn's Clebsch–Gordan coefficients,
    cached per process) fails on the meta device the first time; a small copy of the config built on
    the CPU fills those caches, after which the meta build works.
    """
    from empcn.train.models.registry import build_model, saved_config

    try:
        return _meta_shapes(name, values, task)
    except (RuntimeError, NotImplementedError, AssertionError):
        pass
    try:
        config = saved_config(name, values, task)
        small = {
            f: min(int(getattr(config, f)), cap) for f, cap in (("hidden", 16), ("layers", 1)) if hasattr(config, f)
        }
        build_model(name, dataclasses.replace(config, **small), task)
        return _meta_shapes(name, values, task)
    except Exception:  # noqa: BLE001  (no check is possible: the caller builds as before)
        return None


def check_weights_fit(
    where: Path | str, name: str, values: dict[str, Any], weights: Any, task: str | None = None
) -> None:
    """CheckpointError naming ``where`` unless ``weights`` (a state dict) fits model ``name`` (for ``task``) with config ``values``."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise CheckpointError(f"{where}: its model weights are not a dict of tensors")
    try:
        expected = expected_shapes(name, values, task)
    except (KeyError, TypeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{where}: does not fit this empcn ({first})") from None
    if expected is None:
        return
    saved = {key: tuple(t.shape) for key, t in weights.items()}
    missing = [key for key in expected if key not in saved]  # in the model's order
    extra = [key for key in saved if key not in expected]
    wrong = [key for key in expected if key in saved and expected[key] != saved[key]]
    if not (missing or extra or wrong):
        return
    if wrong:
        what = f"{wrong[0]}: saved {list(saved[wrong[0]])}, its config makes {list(expected[wrong[0]])}"
    elif missing:
        what = f"no weights for {missing[0]}"
    else:
        what = f"weights {extra[0]} that its config has no place for"
    raise CheckpointError(
        f"{where}: its weights do not fit its model config ({what}); the checkpoint is damaged or was edited"
    )


def check_config_agrees(config_file: Path | str, config: TrainConfig, checkpoint: Path | str, saved: Any) -> None:
    """CheckpointError unless ``config`` (read from ``config_file``) and the config a checkpoint saved agree.

    Compared: every option that changes what a run computes; ``epochs`` may have grown since the
    checkpoint (``--epochs`` extends a run), the run-control options may differ.
    """
    try:
        theirs = TrainConfig.from_dict(saved, where=str(checkpoint))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    for f in dataclasses.fields(TrainConfig):
        if f.name in RUN_CONTROL or f.name == "epochs":
            continue
        mine, other = getattr(config, f.name), getattr(theirs, f.name)
        if mine != other:
            raise CheckpointError(
                f"{config_file}: {f.name} {mine!r} differs from {other!r} in {checkpoint}, which the run's weights "
                f"were trained with; a run has one configuration (restore {Path(config_file).name})"
            )
    if theirs.epochs is not None and config.epochs is not None and config.epochs < theirs.epochs:
        raise CheckpointError(
            f"{config_file}: epochs {config.epochs} is fewer than the {theirs.epochs} of {checkpoint} "
            f"(restore {Path(config_file).name}, or extend the run with a larger --epochs)"
        )
