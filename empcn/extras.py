"""Optional dependencies (the ``empcn[…]`` extras), imported where they are used and only then.

Each extra adds one ecosystem's package: ``pyg`` (PyTorch Geometric), ``toponetx``, ``ase``,
``tensorboard``. A function that needs one calls :func:`require`, which imports it or raises
:class:`MissingExtra`, a one-line error naming the extra to install; nothing else in empcn imports
them, so an install without the extras costs nothing and runs ``lift``/``train``/``evaluate`` as before.

Standard library only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from empcn.errors import EmpcnError

#: extra name → (the module it provides, what it is for).
EXTRAS: dict[str, tuple[str, str]] = {
    "pyg": ("torch_geometric", "PyTorch Geometric"),
    "toponetx": ("toponetx", "TopoNetX"),
    "ase": ("ase", "ASE"),
    "tensorboard": ("torch.utils.tensorboard", "TensorBoard"),
}


class MissingExtra(EmpcnError, ImportError):
    """An optional package is not installed; the message names the extra that brings it."""


def require(extra: str, what: str) -> ModuleType:
    """The module of ``extra`` (e.g. ``"pyg"`` → ``torch_geometric``); MissingExtra saying ``what`` needs it.

    ``what``: the feature asking, for the message (``"empcn.pyg.to_data"``, ``"reading data.traj"``).
    """
    module, name = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = " ".join(str(exc).split())
        raise MissingExtra(
            f"{what} needs {name}, which is not installed here: pip install 'empcn[{extra}]' ({reason})"
        ) from None
