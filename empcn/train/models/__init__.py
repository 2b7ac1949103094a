"""Models of the train stage: EGNN, EMPCN and decoupled EMPCN; each maps a ComplexBatch to (B,) scalars."""

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
