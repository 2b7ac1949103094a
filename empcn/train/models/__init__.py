"""Models of the train stage, one module per model with its config; :mod:`.registry` names them.

Graph-level regressors (QM9), ``forward(batch) -> (B,)``: :mod:`.egnn`, :mod:`.empcn`, :mod:`.decoupled`.
Position predictors (N-body), ``forward(batch) -> (N, 3)``: :mod:`.egnn_dynamics`, :mod:`.empcn_dynamics`,
:mod:`.decoupled_dynamics` (what they read: :mod:`.dynamics_inputs`). Shared parts: :mod:`.layers`
(MLPs, gated messages, scatter sums), :mod:`.embedding` (invariant embeddings and their config block),
:mod:`.cell_layer` (the EMPCN layer core), :mod:`.base` (what every config tells the trainer).
"""

from empcn.train.models.decoupled import DecoupledConfig, DecoupledEMPCN
from empcn.train.models.egnn import EGNN, EGNNConfig, EGNNLayer
from empcn.train.models.empcn import EMPCN, QM9_NEIGHBOURHOODS, EMPCNConfig
from empcn.train.models.registry import MODELS, ModelSpec, build_model, config_class

__all__ = [
    "EGNN",
    "EGNNConfig",
    "EGNNLayer",
    "EMPCN",
    "EMPCNConfig",
    "QM9_NEIGHBOURHOODS",
    "DecoupledEMPCN",
    "DecoupledConfig",
    "MODELS",
    "ModelSpec",
    "build_model",
    "config_class",
]
