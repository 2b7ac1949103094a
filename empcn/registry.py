"""Registries: the names of data sets, tasks and models, and where each is defined.

Each axis of variation is one :class:`Registry` (``empcn.lift.datasets.DATASETS``,
``empcn.train.tasks.TASKS``, ``empcn.train.models.registry.MODELS``); the CLI's choices, help texts
and error messages are derived from them. An entry is

* **built in**: a ``"package.module:attribute"`` string, imported on first use, so that a heavy
  dependency of one entry (RDKit, e3nn) costs nothing to a process that uses another;
* **a plug-in**: an entry point of the registry's group (``empcn.datasets``, ``empcn.tasks``,
  ``empcn.models``) in any installed distribution, declared in that package's ``pyproject.toml``::

      [project.entry-points."empcn.models"]
      pointnet = "empcn_pointclouds.model:SPEC"

* **registered at run time** from Python (:meth:`Registry.register`), e.g. in a notebook.

A built-in name cannot be taken over by a plug-in (the built-in wins and :meth:`Registry.shadowed`
reports the plug-in). Standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from empcn.errors import RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where an entry comes from: ``"builtin"``, ``"plugin"`` (with its distribution) or ``"runtime"``."""

    kind: str
    target: str  # "module:attribute" ("" for an object registered at run time)
    distribution: str | None = None  # the plug-in's package name, e.g. "empcn-pointclouds"
    version: str | None = None

    def describe(self) -> str:
        if self.kind == "plugin":
            return f"plug-in {self.distribution} {self.version or ''}".rstrip()
        return self.kind


def load_target(target: str) -> Any:
    """The object named by ``"package.module:attribute[.attribute…]"``."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise ValueError(f"{target!r} is not of the form 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


class Registry(Generic[T]):
    """Names → objects of one kind, from built-ins, plug-ins (entry points of ``group``) and run time.

    ``kind``: what an entry is, for messages ("data set", "task", "model"); ``check``: validates a
    loaded object and returns it (raise ``TypeError``/``ValueError`` with the reason), so that a broken
    plug-in is refused in one line naming its package.
    """

    def __init__(self, kind: str, group: str, builtins: dict[str, str], check: Callable[[Any], T] | None = None):
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._runtime: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._check = check
        self._plugins: dict[str, Origin] | None = None
        self._shadowed: list[Origin] = []

    # ------------------------------------------------------------------------------------------
    # discovery

    def _discover(self) -> dict[str, Origin]:
        if self._plugins is None:
            found: dict[str, Origin] = {}
            shadowed: list[Origin] = []
            for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                origin = Origin(
                    "plugin",
                    ep.value,
                    dist.name if dist is not None else None,
                    dist.version if dist is not None else None,
                )
                if ep.name in self._builtins or ep.name in found:
                    shadowed.append(Origin("plugin", f"{ep.name} = {ep.value}", origin.distribution, origin.version))
                    continue
                found[ep.name] = origin
            self._plugins, self._shadowed = found, shadowed
        return self._plugins

    def refresh(self) -> None:
        """Look for plug-ins again (after installing one in a running process)."""
        self._plugins = None
        self._loaded = {k: v for k, v in self._loaded.items() if k in self._builtins}

    def names(self) -> tuple[str, ...]:
        """Every name: built-ins in their order, then plug-ins and run-time entries, sorted."""
        extra = sorted((set(self._discover()) | set(self._runtime)) - set(self._builtins))
        return (*self._builtins, *extra)

    def builtin_names(self) -> tuple[str, ...]:
        return tuple(self._builtins)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._builtins or name in self._runtime or name in self._discover())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def origin(self, name: str) -> Origin:
        """Where ``name`` is defined; RegistryError when it is unknown."""
        if name in self._builtins:
            return Origin("builtin", self._builtins[name])
        if name in self._runtime:
            return Origin("runtime", "")
        plugins = self._discover()
        if name in plugins:
            return plugins[name]
        raise self.unknown(name)

    def shadowed(self) -> list[Origin]:
        """Plug-in entry points ignored because their name is taken (by a built-in or an earlier plug-in)."""
        self._discover()
        return list(self._shadowed)

    # ------------------------------------------------------------------------------------------
    # lookup

    def unknown(self, name: str, distribution: str | None = None) -> RegistryError:
        """The one-line error for a name this registry does not hold.

        ``distribution``: the plug-in package a saved run or cache says ``name`` came from.
        """
        if distribution:
            return RegistryError(
                f"{self.kind} {name!r} comes from the plug-in package {distribution!r}, which is not installed here "
                f"(pip install {distribution})"
            )
        return RegistryError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
            f"(a plug-in package adds one through the entry point group {self.group!r})"
        )

    def get(self, name: str, distribution: str | None = None) -> T:
        """The object registered as ``name`` (imported on first use).

        RegistryError (one line) when ``name`` is unknown (naming ``distribution`` when a run or
        cache recorded which plug-in it came from) or its plug-in cannot be loaded.
        """
        if name in self._runtime:
            return self._runtime[name]
        if name in self._loaded:
            return self._loaded[name]
        origin = self.origin(name) if name in self else None
        if origin is None:
            raise self.unknown(name, distribution)
        where = f"{self.kind} {name!r}" + (f" (plug-in {origin.distribution})" if origin.kind == "plugin" else "")
        try:
            obj = load_target(origin.target)
        except Exception as exc:  # an import error of a plug-in: one line naming it
            if origin.kind == "builtin":
                raise
            raise RegistryError(
                f"{where}: cannot be loaded from {origin.target}: {type(exc).__name__}: {exc}"
            ) from None
        if self._check is not None:
            try:
                obj = self._check(obj)
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"{where}: {origin.target} is not a valid {self.kind}: {exc}") from None
        self._loaded[name] = obj
        return obj

    def register(self, name: str, obj: T, replace: bool = False) -> T:
        """Add ``obj`` under ``name`` in this process (a notebook's own data set, task or model)."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if not replace and (name in self._builtins or name in self._runtime or name in self._discover()):
            raise RegistryError(f"{self.kind} {name!r} exists already ({self.origin(name).describe()})")
        if name in self._builtins:
            raise RegistryError(f"{self.kind} {name!r} is built in and cannot be replaced")
        if self._check is not None:
            try:
                obj = self._check(obj)
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"{self.kind} {name!r}: not a valid {self.kind}: {exc}") from None
        self._runtime[name] = obj
        self._loaded.pop(name, None)
        return obj

    def unregister(self, name: str) -> None:
        """Remove a run-time entry (built-ins and plug-ins stay)."""
        self._runtime.pop(name, None)
