"""Models of the train stage, one module per model with its config; :mod:`.registry` names them.

Graph-level regressors (task ``scalar``, QM9), ``forward(batch) -> (B,)``: :mod:`.egnn`, :mod:`.empcn`,
:mod:`.decoupled`, :mod:`.segnn`. Position predictors (task ``positions``, N-body, MoCap),
``forward(batch) -> (N, 3)``: :mod:`.egnn_dynamics`, :mod:`.empcn_dynamics`, :mod:`.decoupled_dynamics`,
:mod:`.segnn` (what they read: :mod:`.dynamics_inputs`). Shared parts: :mod:`.layers` (MLPs, gated
messages, scatter sums), :mod:`.embedding` (invariant embeddings and their config block),
:mod:`.cell_layer` (the EMPCN layer core), :mod:`.base` (what every config tells the trainer).

The names below are imported on first use (``from empcn.train.models import EGNN``): importing the
package, or its registry, loads neither torch nor e3nn.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EGNN": "egnn",
    "EGNNConfig": "egnn",
    "EGNNLayer": "egnn",
    "EMPCN": "empcn",
    "EMPCNConfig": "empcn",
    "QM9_NEIGHBOURHOODS": "empcn",
    "DecoupledEMPCN": "decoupled",
    "DecoupledConfig": "decoupled",
    "SEGNN": "segnn",
    "SEGNNConfig": "segnn",
    "SEGNNDynamics": "segnn",
    "SEGNNDynamicsConfig": "segnn",
    "EGNNDynamics": "egnn_dynamics",
    "EGNNDynamicsConfig": "egnn_dynamics",
    "EMPCNDynamics": "empcn_dynamics",
    "EMPCNDynamicsConfig": "empcn_dynamics",
    "DecoupledDynamics": "decoupled_dynamics",
    "DecoupledDynamicsConfig": "decoupled_dynamics",
    "MODELS": "registry",
    "ModelSpec": "registry",
    "Implementation": "registry",
    "build_model": "registry",
    "config_class": "registry",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
