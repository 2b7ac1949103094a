"""The model registry: ``--model NAME`` → the model that NAME trains for the cache's task.

One :class:`~empcn.registry.Registry` (:data:`MODELS`, entry-point group ``empcn.models``) holds
every model, built in or from a plug-in package. An entry is a :class:`ModelSpec`: for each task it
serves (``"scalar"``, ``"positions"``, a plug-in's task), an :class:`Implementation` — the frozen
config dataclass (deriving from :class:`~empcn.train.models.base.ModelConfig`) and the ``nn.Module``
built from one. ``--model egnn`` on a positions cache is EGNN's position model; the names runs saved
before the registry knew tasks (``egnn_dynamics``, …) still resolve (:data:`LEGACY_NAMES`).

Modules are imported on first use, so a model with a heavy dependency (SEGNN: e3nn) costs nothing to
processes that train another, and this module imports neither torch nor a model (the CLI lists
:meth:`Registry.names` for ``--help``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass, replace
from typing import TYPE_CHECKING, Any

from empcn.errors import RegistryError
from empcn.registry import Origin, Registry, load_target

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Implementation:
    """A model for one task: its config dataclass and the ``nn.Module`` class taking one.

    Each may be the class itself or ``"package.module:Class"``, imported on first use.
    """

    config: type | str
    module: type | str

    @property
    def config_class(self) -> type:
        return load_target(self.config) if isinstance(self.config, str) else self.config

    @property
    def constructor(self) -> Any:
        return load_target(self.module) if isinstance(self.module, str) else self.module


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its :class:`Implementation` for each task it serves (task name → implementation).

    ``summary``: one line for ``empcn models`` (the paper, what it is).
    """

    tasks: Mapping[str, Implementation]
    summary: str = ""


def check_spec(obj: Any) -> ModelSpec:
    """``obj`` if it is a usable :class:`ModelSpec` (the registry's check of built-ins and plug-ins)."""
    if not isinstance(obj, ModelSpec):
        raise TypeError(f"expected an empcn.train.models.registry.ModelSpec, got {type(obj).__name__}")
    if not obj.tasks or not all(isinstance(t, str) and t for t in obj.tasks):
        raise ValueError("a ModelSpec names at least one task it serves")
    bad = [t for t, impl in obj.tasks.items() if not isinstance(impl, Implementation)]
    if bad:
        raise TypeError(f"tasks[{bad[0]!r}] is not an Implementation")
    return obj


def _builtin(module: str, config: str, model: str) -> Implementation:
    where = f"empcn.train.models.{module}"
    return Implementation(f"{where}:{config}", f"{where}:{model}")


#: The built-in models (registry entries point here; the modules load on first use).
EGNN = ModelSpec(
    {
        "scalar": _builtin("egnn", "EGNNConfig", "EGNN"),
        "positions": _builtin("egnn_dynamics", "EGNNDynamicsConfig", "EGNNDynamics"),
    },
    "EGNN (Satorras, Hoogeboom, Welling 2021): E(n)-equivariant graph network on node pairs",
)
EMPCN = ModelSpec(
    {
        "scalar": _builtin("empcn", "EMPCNConfig", "EMPCN"),
        "positions": _builtin("empcn_dynamics", "EMPCNDynamicsConfig", "EMPCNDynamics"),
    },
    "EMPCN (Kovač et al. 2024): message passing between the cells of a CW-complex",
)
DECOUPLED = ModelSpec(
    {
        "scalar": _builtin("decoupled", "DecoupledConfig", "DecoupledEMPCN"),
        "positions": _builtin("decoupled_dynamics", "DecoupledDynamicsConfig", "DecoupledDynamics"),
    },
    "decoupled EMPCN (Kovač et al. 2024): EGNN on node pairs plus ring <-> node messages",
)
SEGNN = ModelSpec(
    {
        "scalar": _builtin("segnn", "SEGNNConfig", "SEGNN"),
        "positions": _builtin("segnn", "SEGNNDynamicsConfig", "SEGNNDynamics"),
    },
    "SEGNN (Brandstetter et al. 2022): steerable E(3)-equivariant network on e3nn",
)

#: Names → models. A new model is one module ending in ``MODEL = ModelSpec(…)`` (as a plug-in's) and one
#: line here, ``"name": "empcn.train.models.name:MODEL"``; the four above keep their specs in this module.
MODELS: Registry[ModelSpec] = Registry(
    "model",
    "empcn.models",
    {
        "egnn": f"{__name__}:EGNN",
        "empcn": f"{__name__}:EMPCN",
        "decoupled": f"{__name__}:DECOUPLED",
        "segnn": f"{__name__}:SEGNN",
    },
    check=check_spec,
)

#: Names of the position models before the registry knew tasks: still accepted by ``--model`` and
#: recorded in runs saved then (``RunMeta.model``); name → (registry name, task). A plain name given
#: without a task still means what it meant then: the model's ``scalar`` variant.
LEGACY_NAMES: dict[str, tuple[str, str]] = {
    f"{name}_dynamics": (name, "positions") for name in ("egnn", "empcn", "decoupled", "segnn")
}
#: The task of a plain model name given without one (before tasks, plain names were graph-level models).
PLAIN_NAME_TASK = "scalar"


def saved_name(name: str, task: str) -> str:
    """The name runs saved before the task registry recorded for model ``name`` on ``task``
    (``egnn_dynamics`` for EGNN's position model; the name itself otherwise)."""
    return next((old for old, new in LEGACY_NAMES.items() if new == (name, task)), name)


def builtin_variants() -> list[tuple[str, str]]:
    """Every (model, task) pair the built-in models serve, in the registry's order."""
    return [(name, task) for name in MODELS.builtin_names() for task in MODELS.get(name).tasks]


@dataclass(frozen=True)
class ModelChoice:
    """A model resolved for a task: its registry ``name``, the ``task`` and the :class:`Implementation`.

    ``origin``: where the entry is defined (a plug-in's distribution and version go into saved runs).
    """

    name: str
    task: str
    implementation: Implementation
    origin: Origin = field(default_factory=lambda: Origin("builtin", ""))

    @property
    def config_class(self) -> type:
        return self.implementation.config_class

    def plugin(self) -> dict[str, str]:
        """``{"distribution": …, "version": …}`` of a plug-in model, empty for a built-in one."""
        if self.origin.kind != "plugin":
            return {}
        return {"distribution": self.origin.distribution or "", "version": self.origin.version or ""}


def models_for(task: str) -> list[str]:
    """The registered models that serve ``task`` (loads every entry)."""
    out = []
    for name in MODELS.names():
        try:
            if task in MODELS.get(name).tasks:
                out.append(name)
        except RegistryError:  # a broken plug-in is not offered
            continue
    return out


def resolve(name: str, task: str | None = None, config: Any = None, distribution: str | None = None) -> ModelChoice:
    """The model ``name`` (a registry name or a :data:`LEGACY_NAMES` name) for ``task``.

    ``task`` None: the task of a legacy name, of ``config``'s class, the model's only task, or else
    :data:`PLAIN_NAME_TASK`.
    ``distribution``: the plug-in a saved run says ``name`` came from (named when it is missing).
    RegistryError (one line) when the name is unknown, the plug-in missing or broken, or the model does
    not serve the task.
    """
    if name in LEGACY_NAMES and name not in MODELS:
        name, legacy_task = LEGACY_NAMES[name]
        if task is not None and task != legacy_task:
            raise RegistryError(
                f"--model {name}_dynamics predicts positions; this cache's task is {task} "
                f"(models for it: {', '.join(models_for(task)) or 'none'})"
            )
        task = legacy_task
    spec = MODELS.get(name, distribution=distribution)
    if task is None and config is not None:
        task = next((t for t, impl in spec.tasks.items() if isinstance(config, impl.config_class)), None)
    if task is None:
        if len(spec.tasks) == 1:
            task = next(iter(spec.tasks))
        elif PLAIN_NAME_TASK in spec.tasks:
            task = PLAIN_NAME_TASK
        else:
            raise RegistryError(f"model {name!r} serves the tasks {', '.join(spec.tasks)}: say which")
    if task not in spec.tasks:
        raise RegistryError(
            f"--model {name} does not serve this cache's task {task!r} (it serves {', '.join(spec.tasks)}); "
            f"models for {task}: {', '.join(models_for(task)) or 'none'}"
        )
    choice = ModelChoice(name, task, spec.tasks[task], MODELS.origin(name))
    _check_implementation(choice)
    return choice


def _check_implementation(choice: ModelChoice) -> None:
    """A plug-in's config must be a dataclass deriving from ModelConfig (its methods are what the trainer asks)."""
    from empcn.train.models.base import ModelConfig

    where = f"model {choice.name!r} ({choice.origin.describe()}), task {choice.task}"
    try:
        config, module = choice.implementation.config_class, choice.implementation.constructor
    except Exception as exc:  # an import error of a plug-in: one line naming it
        if choice.origin.kind == "builtin":
            raise
        raise RegistryError(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(config, type) and is_dataclass(config) and issubclass(config, ModelConfig)):
        raise RegistryError(f"{where}: its config {config!r} is not a dataclass deriving from ModelConfig")
    if not callable(module):
        raise RegistryError(f"{where}: its module {module!r} cannot be called with a config")


def config_class(name: str, task: str | None = None) -> type:
    """The config dataclass of model ``name`` for ``task`` (the defaults: ``config_class(name, task)()``)."""
    return resolve(name, task).config_class


def build_model(name: str, config: Any = None, task: str | None = None) -> nn.Module:
    """Build model ``name`` for ``task`` from ``config`` (its config dataclass; ``None`` = the defaults).

    Without ``task``: the task whose config class ``config`` is (or a legacy name's, or the only one).
    """
    choice = resolve(name, task, config)
    cls = choice.config_class
    if config is None:
        config = cls()
    if not isinstance(config, cls):
        raise TypeError(
            f"build_model({name!r}, task {choice.task}): config must be a {cls.__name__}, got {type(config).__name__}"
        )
    return choice.implementation.constructor(config)


def config_for_run(
    name: str,
    node_features: int,
    edge_features: int,
    hidden: int | None = None,
    layers: int | None = None,
    dropout: float | None = None,
    options: tuple[str, ...] = (),
    node_scalar: bool = True,
    task: str | None = None,
    cell_kinds: int = 0,
) -> Any:
    """The config of model ``name`` for ``task`` in a new run: its defaults, the cache's input widths, the run's sizes.

    ``edge_features``: the width of the cache's edge features, 0 when the run does not read them.
    ``options``: ``--model-option KEY=VALUE`` strings (:mod:`empcn.train.model_options`).
    ``node_scalar``: the cache stores a per-node scalar (charges, masses); False turns a model's use of
    one off before ``options`` apply. ``cell_kinds``: the 2-cell kinds the cache records (0: none).
    ValueError (one line) for a value the config refuses; RegistryError for an unknown model.
    """
    from empcn.train.model_options import apply_model_options

    config = config_class(name, task)().with_inputs(node_features, edge_features, node_scalar, cell_kinds)
    sizes = {k: v for k, v in {"hidden": hidden, "layers": layers, "dropout": dropout}.items() if v is not None}
    lacking = [k for k in sizes if not hasattr(config, k)]
    if lacking:
        raise ValueError(f"--{lacking[0]}: model {name!r} has no {lacking[0]} (its config {type(config).__name__})")
    return apply_model_options(replace(config, **sizes), options)


def saved_config(name: str, values: dict[str, Any], task: str | None = None, distribution: str | None = None) -> Any:
    """The config of model ``name`` for ``task`` as a run saved it (:func:`empcn.train.saved.load_saved`'s rule).

    ``distribution``: the plug-in the run recorded the model came from (named when it is missing).
    """
    from empcn.train.saved import load_saved

    return load_saved(resolve(name, task, distribution=distribution).config_class, values)


def model_from_saved(
    name: str, values: dict[str, Any], task: str | None = None, distribution: str | None = None
) -> nn.Module:
    """Model ``name`` for ``task`` rebuilt from the config a run saved (weights still to be loaded)."""
    return build_model(name, saved_config(name, values, task, distribution), task)
