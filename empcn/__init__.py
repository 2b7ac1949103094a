"""empcn: E(n)-equivariant message passing on geometric cell complexes.

Two stages: ``empcn lift`` turns raw data into CW-complexes with their invariant geometric
features and writes HDF5 shards; ``empcn train`` streams those shards into models. The same from
Python (``docs/python.md``)::

    import empcn
    cache = empcn.open_cache("data/qm9.h5")                     # a lifted cache, read-only
    loader = empcn.DataLoader(cache, "train", batch_size=32, shuffle=True)
    model = empcn.build_model("empcn", cache)                   # sized for the cache
    result = empcn.fit("data/qm9.h5", target="U0", out="runs/u0", epochs=5)

Importing ``empcn`` is cheap: every name below is imported on first use (torch, h5py and RDKit load
only when a function needs them).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → ``"module:attribute"`` (or ``"module"`` for a module), imported on first access.
_PUBLIC: dict[str, str] = {
    # caches
    "open_cache": "empcn.cache:open_cache",
    "verify_cache": "empcn.cache:verify_cache",
    "Cache": "empcn.cache:Cache",
    "CacheError": "empcn.cache:CacheError",
    # data
    "ComplexDataset": "empcn.loader:ComplexDataset",
    "DataLoader": "empcn.loader:DataLoader",
    "ComplexBatch": "empcn.train.batch:ComplexBatch",
    # models and runs
    "build_model": "empcn.runs:build_model",
    "fit": "empcn.runs:fit",
    "evaluate": "empcn.runs:evaluate",
    "load_model": "empcn.runs:load_model",
    "predict": "empcn.runs:predict",
    "TrainConfig": "empcn.train.config:TrainConfig",
    # registries: list with list(empcn.models), add with empcn.models.register(name, spec)
    "datasets": "empcn.lift.datasets:DATASETS",
    "models": "empcn.train.models.registry:MODELS",
    "tasks": "empcn.train.tasks:TASKS",
    "DatasetSpec": "empcn.lift.spec:DatasetSpec",
    "ModelSpec": "empcn.train.models.registry:ModelSpec",
    "Implementation": "empcn.train.models.registry:Implementation",
    # errors
    "EmpcnError": "empcn.errors:EmpcnError",
    "MissingExtra": "empcn.extras:MissingExtra",
}

__all__ = ["__version__", *_PUBLIC]  # noqa: PLE0604  (the keys of _PUBLIC, all strings)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), so ``import empcn`` loads neither torch nor h5py."""
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'empcn' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
