"""Decoupled EMPCN (Kovač et al. 2024): an EGNN on the fully connected node graph plus ring ↔ node messages.

The node part is EGNN's QM9 model (:mod:`empcn.train.models.egnn`). The cellular part carries ring
features ``g_ρ`` (width ``ring_hidden``) that talk to their vertices over the P relation
(``batch.nbr["2_0"]``, ring → node, and its reverse 0 → 2), conditioned on ring invariants. The
readout reads node features only. Cost O(|V|² + |R|·|V|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

import torch
from torch import Tensor, nn

from empcn.schema import RING_KIND, RING_TO_NODE
from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.models.base import ModelConfig
from empcn.train.models.egnn import EGNN, EGNNConfig, EGNNLayer
from empcn.train.models.embedding import GaussianFourierFeatures, GaussianRBF, InvariantEmbeddingConfig
from empcn.train.models.layers import (
    GatedMessage,
    check_dropout,
    check_node_features,
    check_ring_kinds,
    check_sizes,
    full_precision,
    get_neighbourhood,
    in_param_dtype,
    mlp,
    pool_sum,
    ring_kind_onehot,
    scatter_sum,
)


@dataclass(frozen=True)
class DecoupledConfig(ModelConfig, InvariantEmbeddingConfig):
    """Decoupled EMPCN. Defaults: QM9 (7 layers, EGNN hidden 128, ring hidden 48 → 74.8:25.2 parameters,
    ≈1.0M in all).

    Invariant embedding fields: :class:`~empcn.train.models.embedding.InvariantEmbeddingConfig`.
    """

    INPUT_FIELDS: ClassVar[dict[str, str]] = {"node": "in_node_features", "cell_kind": "ring_kinds"}
    SAVED_WITHOUT: ClassVar[dict[str, object]] = {"ring_kinds": 0}

    in_node_features: int = 15
    hidden: int = 128
    ring_hidden: int = 48
    layers: int = 7
    attention: bool = True
    residual: bool = True
    dropout: float = 0.0
    ring_kinds: int = 0  # > 0: each ring's kind (rings/kind) as a one-hot input of this width

    def __post_init__(self) -> None:
        check_sizes(
            "DecoupledConfig",
            in_node_features=self.in_node_features,
            hidden=self.hidden,
            ring_hidden=self.ring_hidden,
            layers=self.layers,
        )
        check_ring_kinds("DecoupledConfig", self.ring_kinds)
        check_dropout("DecoupledConfig", self.dropout)
        self.check_embedding("DecoupledConfig")

    def reads(self) -> tuple[str, ...]:
        return (RING_TO_NODE,)

    def reads_fields(self) -> tuple[str | tuple[str, ...], ...]:
        return (RING_KIND,) if self.ring_kinds else ()


class RingLayer(nn.Module):
    """The cellular half of one decoupled layer (ring width ``Hr``, node width ``H``).

    For every (ring ρ, vertex i) pair of P, with ``q_ρi = emb([area_ρ, perimeter_ρ, size_ρ, d_ρi])``::

        r_i   = Σ_ρ e·[Linear, SiLU, Linear, SiLU]([h_i ‖ g_ρ ‖ q_ρi])      (ring → node, width Hr)
        W_r r_i  is added inside the node update φ_h (``node_proj``, H × Hr, no bias)
        g_ρ'  = g_ρ + [Linear, SiLU, Linear]([g_ρ ‖ Σ_i e·[…]([g_ρ ‖ h_i ‖ q_ρi])])  (node → ring)

    ``update_rings=False`` (the last layer) builds no node → ring part: the readout never sees it.
    """

    def __init__(
        self, hidden: int, ring_hidden: int, inv_dim: int, residual: bool, update_rings: bool, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.residual = residual
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ring_to_node = GatedMessage(hidden + ring_hidden + inv_dim, ring_hidden)
        self.node_proj = nn.Linear(ring_hidden, hidden, bias=False)
        self.node_to_ring: GatedMessage | None = None
        self.ring_update: nn.Module | None = None
        if update_rings:
            self.node_to_ring = GatedMessage(ring_hidden + hidden + inv_dim, ring_hidden)
            self.ring_update = mlp([2 * ring_hidden, ring_hidden, ring_hidden])

    def node_term(self, h: Tensor, g: Tensor, ring: Tensor, node: Tensor, q: Tensor) -> Tensor:
        """``W_r Σ_ρ e·m_ρi``: ``(N, hidden)``, to add to the node update's first pre-activation."""
        m = self.ring_to_node.pairwise(h, g, node, ring, q)
        return self.node_proj(scatter_sum(m, node, h.shape[0]))

    def ring_step(self, h: Tensor, g: Tensor, ring: Tensor, node: Tensor, q: Tensor) -> Tensor:
        """Updated ring features ``(R, ring_hidden)`` (``g`` itself when this layer does not update rings)."""
        if self.node_to_ring is None or self.ring_update is None:
            return g
        m = self.node_to_ring.pairwise(g, h, ring, node, q)
        delta = self.dropout(self.ring_update(torch.cat([g, scatter_sum(m, ring, g.shape[0])], dim=-1)))
        return g + delta if self.residual else delta


class _RingPart(nn.Module):
    """The cellular parameters of :class:`DecoupledEMPCN` (a container; the model sets them)."""

    ring_inv: GaussianFourierFeatures | GaussianRBF
    pair_inv: GaussianFourierFeatures | GaussianRBF
    embed: nn.Linear
    kind: nn.Linear
    layers: nn.ModuleList


class DecoupledEMPCN(nn.Module):
    """EGNN over all node pairs + ring ↔ node messages; readout from nodes only.

    Per layer ``l`` (all messages read the layer-``l`` states)::

        m_ij = e_ij φ_e([h_i ‖ h_j ‖ ‖x_i − x_j‖²])                          (j ≠ i, same graph)
        h_i' = h_i + [SiLU, Linear](Linear([h_i ‖ Σ_j m_ij]) + W_r r_i)     (r_i from RingLayer)
        g_ρ' from RingLayer.ring_step

    then ``y = φ_g(Σ_i φ_n(h_i))`` as in EGNN. Parameters live in two containers, ``node_part`` (the
    EGNN) and ``ring_part`` (everything cellular), see :meth:`parameter_split`.
    """

    def __init__(self, config: DecoupledConfig) -> None:
        super().__init__()
        self.config = config
        h, hr = config.hidden, config.ring_hidden
        # the node part is exactly the standalone EGNN (embed, layers, node_dec, graph_dec)
        self.node_part = EGNN(
            EGNNConfig(
                in_node_features=config.in_node_features,
                hidden=h,
                layers=config.layers,
                attention=config.attention,
                residual=config.residual,
                dropout=config.dropout,
            )
        )
        emb = config.embedding

        ring_part = _RingPart()
        ring_part.ring_inv = emb(3, seed=2)
        ring_part.pair_inv = emb(4, seed=3)
        ring_part.embed = nn.Linear(ring_part.ring_inv.out_dim, hr)
        if config.ring_kinds:
            ring_part.kind = nn.Linear(config.ring_kinds, hr, bias=False)
        ring_part.layers = nn.ModuleList(
            RingLayer(
                h,
                hr,
                ring_part.pair_inv.out_dim,
                config.residual,
                update_rings=k < config.layers - 1,
                dropout=config.dropout,
            )
            for k in range(config.layers)
        )
        self.ring_part = ring_part

    def parameter_split(self) -> tuple[int, int]:
        """``(EGNN part, cellular part)`` trainable parameter counts."""
        count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
        return count(self.node_part), count(self.ring_part)

    def forward(self, batch: ComplexBatch) -> Tensor:
        check_node_features(batch, self.config.in_node_features, "DecoupledEMPCN")
        idx, dist = get_neighbourhood(batch, RING_TO_NODE, "DecoupledEMPCN")
        ring, node = idx[:, 0], idx[:, 1]
        ring_scalars = torch.stack([batch.ring_area, batch.ring_perimeter, batch.ring_size], dim=-1)
        rp = self.ring_part
        q = rp.pair_inv(torch.cat([ring_scalars[ring], dist.unsqueeze(-1)], dim=-1))
        g = rp.embed(rp.ring_inv(ring_scalars))
        if self.config.ring_kinds:
            g = g + rp.kind(ring_kind_onehot(batch, self.config.ring_kinds, "DecoupledEMPCN").to(g.dtype))

        np_ = self.node_part
        pairs = fully_connected_pairs(batch.node_graph)
        h = np_.embed(batch.node_feat)
        x = batch.pos
        for egnn_layer, ring_layer in zip(
            cast("Sequence[EGNNLayer]", np_.layers), cast("Sequence[RingLayer]", rp.layers)
        ):
            m, _ = egnn_layer.edge_messages(h, x, pairs)
            agg = scatter_sum(m, pairs[:, 1], h.shape[0])
            extra = ring_layer.node_term(h, g, ring, node, q)
            g = ring_layer.ring_step(h, g, ring, node, q)
            h = egnn_layer.node_update(h, agg, extra)
        with full_precision(h):
            pooled = pool_sum(np_.node_dec(in_param_dtype(h, np_.node_dec)), batch.node_graph, batch.num_graphs)
            return np_.graph_dec(pooled).squeeze(-1)
