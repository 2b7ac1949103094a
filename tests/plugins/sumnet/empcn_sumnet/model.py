"""SumNet: one round of bond messages, then a sum over atoms: a small E(n)-invariant graph regressor.

With ``h_i = W_0 x_i`` (``x_i``: the node features empcn builds from the atom types) and the bonds
``(i, j)`` of ``batch.edge_index``::

    m_ij = MLP([h_i + h_j ‖ ‖p_i − p_j‖])        (symmetric in i and j; distances only: invariant)
    h_i' = h_i + Σ_{j ~ i} m_ij
    y    = MLP(Σ_i h_i')                          (per graph)

Positions enter only through bond lengths, so the output is invariant to rotations, reflections and
translations, and to relabelling the atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from empcn.train.batch import ComplexBatch
from empcn.train.models.base import ModelConfig
from empcn.train.models.registry import Implementation, ModelSpec


@dataclass(frozen=True)
class SumNetConfig(ModelConfig):
    """``in_node_features``: set from the cache; ``hidden``: width (``--hidden``); ``dropout`` on the messages."""

    INPUT_FIELDS: ClassVar[dict[str, str]] = {"node": "in_node_features"}

    in_node_features: int = 15
    hidden: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.in_node_features < 1 or self.hidden < 1:
            raise ValueError(
                f"SumNetConfig: in_node_features and hidden must be ≥ 1, got {self.in_node_features}, {self.hidden}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SumNetConfig: dropout must be in [0, 1), got {self.dropout}")


class SumNet(nn.Module):
    """``forward(batch) -> (B,)``: see the module docstring."""

    def __init__(self, config: SumNetConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.embed = nn.Linear(config.in_node_features, h)
        self.message = nn.Sequential(nn.Linear(h + 1, h), nn.SiLU(), nn.Dropout(config.dropout), nn.Linear(h, h))
        self.head = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, 1))

    def forward(self, batch: ComplexBatch) -> Tensor:
        h = self.embed(batch.node_feat)
        i, j = batch.edge_index[:, 0], batch.edge_index[:, 1]
        length = torch.linalg.vector_norm(batch.pos[i] - batch.pos[j], dim=-1, keepdim=True)
        m = self.message(torch.cat([h[i] + h[j], length.to(h.dtype)], dim=-1))
        h = h + torch.zeros_like(h).index_add_(0, i, m).index_add_(0, j, m)
        pooled = h.new_zeros(batch.num_graphs, h.shape[1]).index_add_(0, batch.node_graph, h)
        return self.head(pooled).squeeze(-1)


#: What `--model sumnet` trains: this model for graph-level scalar targets.
MODEL = ModelSpec({"scalar": Implementation(SumNetConfig, SumNet)}, "SumNet: bond messages and a sum over atoms")
