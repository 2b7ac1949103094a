"""Decoupled EMPCN for N-body positions: EGNN's N-body model plus ring ↔ vertex messages (Kovač et al. 2024).

The papers do not run the decoupled model on N-body; this is empcn's. Ring invariants are recomputed
from the current positions in every layer. ``forward(batch) -> (N, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from empcn import geometry
from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.models.decoupled import RingLayer
from empcn.train.models.dynamics_inputs import DynamicsConfig, speed, velocity
from empcn.train.models.egnn import EGNNLayer
from empcn.train.models.egnn_dynamics import egnn_edge_attr, egnn_stack
from empcn.train.models.embedding import GaussianFourierFeatures, GaussianRBF, InvariantEmbeddingConfig
from empcn.train.models.layers import check_sizes, scatter_sum


@dataclass(frozen=True)
class DecoupledDynamicsConfig(DynamicsConfig, InvariantEmbeddingConfig):
    """Decoupled EMPCN for N-body positions: :class:`~empcn.train.models.egnn_dynamics.EGNNDynamics`' node
    part (same defaults) plus ring features of width ``ring_hidden`` exchanging messages with their vertices.

    The papers do not run the decoupled model on N-body; ``ring_hidden = 32`` keeps the EGNN part
    identical to ``egnn_dynamics`` so the two differ only by the cellular part.
    Shared fields: :class:`~empcn.train.models.dynamics_inputs.DynamicsConfig`; invariant embedding fields:
    :class:`~empcn.train.models.embedding.InvariantEmbeddingConfig`.
    """

    fourier_scale: float = 0.1
    ring_hidden: int = 32
    attention: bool = False

    def __post_init__(self) -> None:
        self.check_dynamics("DecoupledDynamicsConfig")
        check_sizes("DecoupledDynamicsConfig", ring_hidden=self.ring_hidden)
        self.check_embedding("DecoupledDynamicsConfig")


class _NodePart(nn.Module):
    """The EGNN parameters of :class:`DecoupledDynamics` (a container; the model sets them)."""

    embed: nn.Linear
    layers: nn.ModuleList


class _RingPart(nn.Module):
    """The cellular parameters of :class:`DecoupledDynamics` (a container; the model sets them).
    ``embed`` is None when no layer has a ring part."""

    ring_inv: GaussianFourierFeatures | GaussianRBF
    pair_inv: GaussianFourierFeatures | GaussianRBF
    embed: nn.Linear | None
    layers: nn.ModuleList


class DecoupledDynamics(nn.Module):
    """EGNN over all particle pairs + ring → vertex messages (P relation), ring invariants from current x.

    Per layer l, with ring scalars ``c_ρ = [radius_ρ, perimeter_ρ, size_ρ]`` and ``d_ρi = ‖x_i − bary_ρ‖``
    of the layer's input positions, ``q_ρi = γ_q(c_ρ ‖ d_ρi)``::

        x'_i = EGNN position update (as EGNNDynamics)
        h'_i = h_i + [SiLU, Linear](Linear(h_i ‖ Σ_j m_ij) + W_r Σ_ρ e·φ(h_i ‖ g_ρ ‖ q_ρi))
        g'_ρ = g_ρ + MLP(g_ρ ‖ Σ_i e·φ(g_ρ ‖ h_i ‖ q_ρi)),    g⁰_ρ = Linear(γ_g(c_ρ))

    (:class:`~empcn.train.models.decoupled.RingLayer`). Only the first L−1 layers carry a ring part (the
    last layer's node features are never read) and only the first L−2 update ring features.
    """

    def __init__(self, config: DecoupledDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        h, hr = config.hidden, config.ring_hidden
        node_part = _NodePart()
        node_part.embed = nn.Linear(1, h)
        node_part.layers = egnn_stack(
            h,
            config.layers,
            2 if config.use_node_scalar else 1,
            config.attention,
            config.residual,
            config.dropout,
            config.coord_agg,
            config.coord_weight,
            config.velocity_messages,
        )
        self.node_part = node_part
        emb = config.embedding

        ring_part = _RingPart()
        ring_part.ring_inv = emb(3, seed=2)
        ring_part.pair_inv = emb(4, seed=3)
        n_ring = config.layers - 1
        ring_part.embed = nn.Linear(ring_part.ring_inv.out_dim, hr) if n_ring > 0 else None
        ring_part.layers = nn.ModuleList(
            RingLayer(
                h, hr, ring_part.pair_inv.out_dim, config.residual, update_rings=k < n_ring - 1, dropout=config.dropout
            )
            for k in range(n_ring)
        )
        self.ring_part = ring_part

    def parameter_split(self) -> tuple[int, int]:
        """``(EGNN part, cellular part)`` trainable parameter counts."""
        count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
        return count(self.node_part), count(self.ring_part)

    #: the tensor-only method ``--compile`` compiles whole (:func:`~empcn.train.models.layers.use_compiled_messages`)
    compiled_stack = "layer_stack"

    def forward(self, batch: ComplexBatch) -> Tensor:
        name = "DecoupledDynamics"
        vel = velocity(batch, name)
        pairs = fully_connected_pairs(batch.node_graph)
        attr = egnn_edge_attr(batch, pairs, self.config.use_node_scalar, name)
        plan = geometry.ring_plan(
            batch.ring_node, batch.ring_of, batch.num_rings, pos=batch.pos
        )  # P(ρ): (ring, vertex) slots
        return self.layer_stack(self.node_part.embed(speed(vel)), batch.pos, vel, pairs, attr, plan)

    def layer_stack(
        self, h: Tensor, x: Tensor, vel: Tensor, pairs: Tensor, attr: Tensor, plan: geometry.RingPlan
    ) -> Tensor:
        """The layers from ``h⁰: (N, H)``, ``x⁰, v⁰: (N, 3)``, ``pairs: (P, 2)``, ``a: (P, d)`` and the rings'
        :class:`~empcn.geometry.RingPlan` → ``(N, 3)``; ring invariants recomputed from each layer's input
        positions. Tensors in, tensors out, no host synchronisation: the unit ``--compile`` compiles whole.
        """
        np_, rp = self.node_part, self.ring_part
        ring, node = plan.ring_of, plan.ring_node
        g = None
        n_ring = len(rp.layers)
        rings = cast("Sequence[RingLayer]", rp.layers)
        for k, layer in enumerate(cast("Sequence[EGNNLayer]", np_.layers)):
            m, diff = layer.edge_messages(h, x, pairs, attr)
            x_new = layer.coord_update(h, x, m, diff, pairs, vel)
            if k < n_ring:
                geo = geometry.planned_ring_geometry(x, plan)
                c = torch.stack([geo.radius, geo.perimeter, geo.size], dim=-1)
                if g is None:
                    assert rp.embed is not None  # built whenever a layer has a ring part
                    g = rp.embed(rp.ring_inv(c))
                d = torch.linalg.vector_norm(
                    x.index_select(0, node) - geo.barycentre.index_select(0, ring), dim=-1, keepdim=True
                )
                q = rp.pair_inv(torch.cat([c.index_select(0, ring), d], dim=-1))
                extra = rings[k].node_term(h, g, ring, node, q)
                g = rings[k].ring_step(h, g, ring, node, q)
                h = layer.node_update(h, scatter_sum(m, pairs[:, 1], h.shape[0]), extra)
            x = x_new  # n_ring = layers − 1: the last layer moves positions only
        return x
