"""Model names → (config class, constructor), and :func:`build_model`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: the module that holds it, its frozen config dataclass and the ``nn.Module``
    taking one. The module is imported on first use, so a model with a heavy dependency (SEGNN: e3nn)
    costs nothing to processes that train another model."""

    module: str
    config_name: str
    model_name: str

    @property
    def config_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_name)

    @property
    def constructor(self) -> Callable[[Any], nn.Module]:
        return getattr(importlib.import_module(self.module), self.model_name)


def _spec(module: str, config: str, model: str) -> ModelSpec:
    return ModelSpec(f"empcn.train.models.{module}", config, model)


MODELS: dict[str, ModelSpec] = {
    "egnn": _spec("egnn", "EGNNConfig", "EGNN"),
    "empcn": _spec("empcn", "EMPCNConfig", "EMPCN"),
    "decoupled": _spec("decoupled", "DecoupledConfig", "DecoupledEMPCN"),
    "segnn": _spec("segnn", "SEGNNConfig", "SEGNN"),
}
"""Graph-level regressors: ``forward(batch) -> (B,)`` (QM9)."""

DYNAMICS_MODELS: dict[str, ModelSpec] = {
    "egnn_dynamics": _spec("egnn_dynamics", "EGNNDynamicsConfig", "EGNNDynamics"),
    "empcn_dynamics": _spec("empcn_dynamics", "EMPCNDynamicsConfig", "EMPCNDynamics"),
    "decoupled_dynamics": _spec("decoupled_dynamics", "DecoupledDynamicsConfig", "DecoupledDynamics"),
    "segnn_dynamics": _spec("segnn", "SEGNNDynamicsConfig", "SEGNNDynamics"),
}
"""Position predictors: ``forward(batch) -> (N, 3)`` (N-body, MoCap; a cache whose manifest says task "positions")."""

ALL_MODELS: dict[str, ModelSpec] = {**MODELS, **DYNAMICS_MODELS}


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``, or a one-line error listing the known names."""
    try:
        return ALL_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(ALL_MODELS))}") from None


def config_class(name: str) -> type:
    """The config dataclass of model ``name`` (build the default config with ``config_class(name)()``)."""
    return model_spec(name).config_class


def build_model(name: str, config: Any = None) -> nn.Module:
    """Build model ``name`` from ``config`` (its config dataclass; ``None`` = the defaults)."""
    spec = model_spec(name)
    if config is None:
        config = spec.config_class()
    if not isinstance(config, spec.config_class):
        raise TypeError(
            f"build_model({name!r}): config must be a {spec.config_class.__name__}, got {type(config).__name__}"
        )
    return spec.constructor(config)


def config_for_run(
    name: str,
    node_features: int,
    edge_features: int,
    hidden: int | None = None,
    layers: int | None = None,
    dropout: float | None = None,
    options: tuple[str, ...] = (),
    node_scalar: bool = True,
) -> Any:
    """The config of model ``name`` for a new run: its defaults, the cache's input widths, the run's sizes.

    ``edge_features``: the width of the cache's edge features, 0 when the run does not read them.
    ``options``: ``--model-option KEY=VALUE`` strings (:mod:`empcn.train.model_options`).
    ``node_scalar``: the cache stores a per-node scalar (charges, masses); False turns a model's use of
    one off before ``options`` apply.
    ValueError (one line) for an unknown model or a value the config refuses.
    """
    from empcn.train.model_options import apply_model_options

    config = config_class(name)().with_inputs(node_features, edge_features, node_scalar)
    sizes = {"hidden": hidden, "layers": layers, "dropout": dropout}
    config = replace(config, **{k: v for k, v in sizes.items() if v is not None})
    return apply_model_options(config, options)


def saved_config(name: str, values: dict[str, Any]) -> Any:
    """The config of model ``name`` as a run saved it (:func:`empcn.train.saved.load_saved`'s rule)."""
    from empcn.train.saved import load_saved

    return load_saved(config_class(name), values)


def model_from_saved(name: str, values: dict[str, Any]) -> nn.Module:
    """Model ``name`` rebuilt from the config a run saved (weights still to be loaded)."""
    return build_model(name, saved_config(name, values))
