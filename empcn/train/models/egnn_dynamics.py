"""EGNN's N-body model (Satorras, Hoogeboom, Welling 2021, arXiv 2102.09844): positions ahead in time.

E(n)-equivariant in positions and velocities (rotations, reflections; positions also translate,
velocities do not) and equivariant to relabelling the particles. ``forward(batch) -> (N, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import message_pairs
from empcn.train.models.dynamics_inputs import (
    Connectivity,
    CoordAgg,
    DynamicsConfig,
    scalar_products,
    speed,
    velocity,
)
from empcn.train.models.egnn import EGNNLayer
from empcn.train.models.layers import scatter_sum


@dataclass(frozen=True)
class EGNNDynamicsConfig(DynamicsConfig):
    """EGNN for N-body position prediction. Defaults: EGNN's N-body model (4 layers, hidden 64, no
    attention gate, residual ("recurrent") node updates, mean coordinate aggregation, C = 1).

    The shared fields: :class:`~empcn.train.models.dynamics_inputs.DynamicsConfig` (``use_node_scalar``:
    ``s_i s_j`` in the edge attribute; ``velocity_messages`` off = the paper). ``attention``: EGNN's soft
    edge gate. ``connectivity``: ``"full"`` = all particle pairs (the paper), ``"complex"`` = both
    directions of ``batch.edge_index`` (e.g. the kNN graph of a gravity cache).
    """

    attention: bool = False
    connectivity: Connectivity = "full"

    def __post_init__(self) -> None:
        self.check_dynamics("EGNNDynamicsConfig")
        if self.connectivity not in ("full", "complex"):
            raise ValueError(f"EGNNDynamicsConfig: connectivity must be 'full' or 'complex', got {self.connectivity!r}")


def egnn_edge_attr(batch: ComplexBatch, pairs: Tensor, use_scalar: bool, model: str) -> Tensor:
    """EGNN's N-body edge attribute ``(P, 2)``: ``[s_i s_j, ‖x⁰_i − x⁰_j‖²]`` of the input positions
    (``(P, 1)`` without the product when not ``use_scalar``)."""
    d0 = batch.pos[pairs[:, 1]] - batch.pos[pairs[:, 0]]
    parts = [(d0 * d0).sum(dim=-1, keepdim=True)]
    if use_scalar:
        parts.insert(0, scalar_products(batch, pairs, model))
    return torch.cat(parts, dim=-1)


def egnn_stack(
    hidden: int,
    layers: int,
    edge_attr_dim: int,
    attention: bool,
    residual: bool,
    dropout: float,
    coord_agg: CoordAgg,
    coord_weight: float,
    velocity_messages: bool,
) -> nn.ModuleList:
    """``layers`` coordinate-and-velocity EGNN layers. The last has no node update φ_h: the output is its
    positions, which never read its node features, so every parameter receives a gradient."""
    stack = nn.ModuleList(
        EGNNLayer(
            hidden,
            edge_attr_dim=edge_attr_dim,
            attention=attention,
            residual=residual,
            dropout=dropout,
            update_coords=True,
            use_velocity=True,
            coord_agg=coord_agg,
            coord_weight=coord_weight,
            velocity_messages=velocity_messages,
        )
        for _ in range(layers)
    )
    last = cast(EGNNLayer, stack[-1])
    last.node_in = None
    last.node_out = None
    return stack


class EGNNDynamics(nn.Module):
    """EGNN's N-body model. With pairs ``[j, i]`` and ``a_ij = [s_i s_j, ‖x⁰_i − x⁰_j‖²]``::

        h⁰_i = Linear(‖v⁰_i‖)
        m_ij = φ_e(h_i ‖ h_j ‖ ‖x_i − x_j‖² ‖ a_ij)
        x'_i = x_i + φ_v(h_i) v⁰_i + C · mean_j (x_i − x_j) φ_x(m_ij)
        h'_i = h_i + φ_h(h_i ‖ Σ_j m_ij)                       (not in the last layer)

    ``forward(batch) -> (N, 3)`` the positions after the last layer.
    """

    def __init__(self, config: EGNNDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(1, config.hidden)
        self.layers = egnn_stack(
            config.hidden,
            config.layers,
            2 if config.use_node_scalar else 1,
            config.attention,
            config.residual,
            config.dropout,
            config.coord_agg,
            config.coord_weight,
            config.velocity_messages,
        )

    #: the tensor-only method ``--compile`` compiles whole (:func:`~empcn.train.models.layers.use_compiled_messages`)
    compiled_stack = "layer_stack"

    def forward(self, batch: ComplexBatch) -> Tensor:
        vel = velocity(batch, "EGNNDynamics")
        pairs = message_pairs(batch.node_graph, batch.edge_index, self.config.connectivity)
        attr = egnn_edge_attr(batch, pairs, self.config.use_node_scalar, "EGNNDynamics")
        return self.layer_stack(self.embed(speed(vel)), batch.pos, vel, pairs, attr)

    def layer_stack(self, h: Tensor, x: Tensor, vel: Tensor, pairs: Tensor, attr: Tensor) -> Tensor:
        """The layers from ``h⁰: (N, H)``, ``x⁰, v⁰: (N, 3)``, ``pairs: (P, 2)``, ``a: (P, d)`` → ``(N, 3)``.

        Tensors in, tensors out, no host synchronisation: the unit ``--compile`` compiles whole.
        """
        last = len(self.layers) - 1
        for k, layer in enumerate(cast("Sequence[EGNNLayer]", self.layers)):
            m, diff = layer.edge_messages(h, x, pairs, attr)
            x_new = layer.coord_update(h, x, m, diff, pairs, vel)
            if k < last:
                h = layer.node_update(h, scatter_sum(m, pairs[:, 1], h.shape[0]))
            x = x_new
        return x
