"""EMPCN (Kovač et al. 2024, arXiv 2406.03145, Appendix A; same layer design as EMPSN 2305.07100).

Message passing between the cells of a CW-complex (ranks 0 nodes, 1 edges, 2 rings) over the
neighbourhood types of :attr:`ComplexBatch.nbr`, conditioned on E(n)-invariant geometry only (pair
distances of barycentres and cell volumes), so the output is E(n)-invariant. Positions are not
updated (QM9 setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from empcn.schema import RING_KIND
from empcn.train.batch import ComplexBatch
from empcn.train.models.base import ModelConfig
from empcn.train.models.cell_layer import CellLayer
from empcn.train.models.embedding import InvariantEmbeddingConfig
from empcn.train.models.layers import (
    check_dropout,
    check_node_features,
    check_ring_kinds,
    check_sizes,
    full_precision,
    get_neighbourhood,
    in_param_dtype,
    mlp,
    neighbourhood_ranks,
    pool_sum,
    ring_kind_onehot,
)

QM9_NEIGHBOURHOODS: tuple[str, ...] = (
    "0_0",
    "0_1",
    "1_0",
    "1_1_lower",
    "1_1_upper",
    "1_2",
    "2_1",
    "2_2_lower",
)
"""Boundary (0_1, 1_2), co-boundary (1_0, 2_1), upper (0_0, 1_1_upper) and lower (1_1_lower,
2_2_lower) adjacencies up to rank 2."""


@dataclass(frozen=True)
class EMPCNConfig(ModelConfig, InvariantEmbeddingConfig):
    """Full EMPCN for graph-level invariant regression.

    ``neighbourhoods``: names of :attr:`ComplexBatch.nbr` to pass messages over (``"<sender>_<receiver>
    [_<relation>]"``); the model's ranks are 0 plus every rank they mention. ``in_edge_features``:
    width of ``batch.edge_feat`` (0 = ignore it). Invariants are embedded as
    :class:`~empcn.train.models.embedding.InvariantEmbeddingConfig` says (``inv_embedding``,
    ``inv_size``, ``fourier_scale`` in 1/Å, ``rbf_max`` in Å).
    """

    INPUT_FIELDS: ClassVar[dict[str, str]] = {
        "node": "in_node_features",
        "edge": "in_edge_features",
        "cell_kind": "ring_kinds",
    }
    SAVED_WITHOUT: ClassVar[dict[str, object]] = {"ring_kinds": 0}

    in_node_features: int = 15
    in_edge_features: int = 0
    hidden: int = 56
    layers: int = 7
    neighbourhoods: tuple[str, ...] = QM9_NEIGHBOURHOODS
    residual: bool = True
    dropout: float = 0.0
    ring_kinds: int = 0  # > 0: each ring's kind (rings/kind) as a one-hot input of this width

    def __post_init__(self) -> None:
        check_sizes("EMPCNConfig", in_node_features=self.in_node_features, hidden=self.hidden, layers=self.layers)
        check_ring_kinds("EMPCNConfig", self.ring_kinds)
        self.check_embedding("EMPCNConfig")
        if self.in_edge_features < 0:
            raise ValueError(f"EMPCNConfig: in_edge_features must be ≥ 0, got {self.in_edge_features}")
        check_dropout("EMPCNConfig", self.dropout)
        if not self.neighbourhoods:
            raise ValueError("EMPCNConfig: neighbourhoods must name at least one neighbourhood")
        if len(set(self.neighbourhoods)) != len(self.neighbourhoods):
            raise ValueError(f"EMPCNConfig: duplicate neighbourhoods in {self.neighbourhoods}")
        for name in self.neighbourhoods:
            neighbourhood_ranks(name)

    @property
    def ranks(self) -> tuple[int, ...]:
        """The cell ranks the model carries features for."""
        used = {0}
        for name in self.neighbourhoods:
            used.update(neighbourhood_ranks(name))
        return tuple(sorted(used))

    def reads(self) -> tuple[str, ...]:
        return tuple(self.neighbourhoods)

    def reads_fields(self) -> tuple[str | tuple[str, ...], ...]:
        return (RING_KIND,) if self.ring_kinds and 2 in self.ranks else ()


class EMPCNLayer(CellLayer):
    """One EMPCN layer (:class:`~empcn.train.models.cell_layer.CellLayer`) over ``neighbourhoods``,
    updating every rank that receives a neighbourhood; ranks that receive none keep their features.
    ``Inv_A`` has width ``inv_dim`` for every neighbourhood.
    """

    def __init__(
        self, hidden: int, neighbourhoods: tuple[str, ...], inv_dim: int, residual: bool, dropout: float
    ) -> None:
        receivers = dict.fromkeys(neighbourhood_ranks(name)[1] for name in neighbourhoods)  # first-seen order
        super().__init__(hidden, neighbourhoods, {a: inv_dim for a in neighbourhoods}, receivers, residual, dropout)

    def forward(self, h: dict[int, Tensor], nbr: dict[str, Tensor], inv: dict[str, Tensor]) -> dict[int, Tensor]:
        """``h[r]: (n_r, hidden)``; ``nbr[A]: (P_A, 2)`` [sender, receiver]; ``inv[A]: (P_A, inv_dim)``."""
        return {**h, **self.updated(h, nbr, self.messages(h, nbr, inv))}


class EMPCN(nn.Module):
    """Embed every rank → L :class:`EMPCNLayer` → per-rank readout, sum per graph, concat → MLP → scalar.

    Input features per rank: 0 ``node_feat``; 1 ``emb(edge_len)`` (‖ ``edge_feat``); 2
    ``emb([ring_area, ring_perimeter, ring_radius, ring_size])``, each through a Linear to ``hidden``.
    ``Inv_A(σ, τ) = emb([nbr_dist_A, vol σ, vol τ])`` with vol = 0 (node), edge_len (edge),
    ring_area (ring); it depends only on the batch, so it is computed once per forward.
    """

    def __init__(self, config: EMPCNConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.ranks = config.ranks
        emb = config.embedding
        self.embed_node = nn.Linear(config.in_node_features, h)
        self.edge_inv = emb(1, seed=1) if 1 in self.ranks else None
        self.embed_edge = (
            nn.Linear(self.edge_inv.out_dim + config.in_edge_features, h) if self.edge_inv is not None else None
        )
        self.ring_inv = emb(4, seed=2) if 2 in self.ranks else None
        self.embed_ring = nn.Linear(self.ring_inv.out_dim, h) if self.ring_inv is not None else None
        if self.embed_ring is not None and config.ring_kinds:
            self.embed_kind = nn.Linear(config.ring_kinds, h, bias=False)
        self.pair_inv = emb(3, seed=3)
        self.layers = nn.ModuleList(
            EMPCNLayer(h, config.neighbourhoods, self.pair_inv.out_dim, config.residual, config.dropout)
            for _ in range(config.layers)
        )
        self.readout = nn.ModuleDict({str(r): mlp([h, h, h]) for r in self.ranks})
        self.head = mlp([h * len(self.ranks), h, 1])

    def embed(self, batch: ComplexBatch) -> dict[int, Tensor]:
        """Initial features ``{rank: (n_rank, hidden)}``."""
        h = {0: self.embed_node(batch.node_feat)}
        if self.embed_edge is not None and self.edge_inv is not None:
            parts = [self.edge_inv(batch.edge_len.unsqueeze(-1))]
            if self.config.in_edge_features:
                ef = batch.edge_feat
                if ef is None or ef.shape != (batch.num_edges, self.config.in_edge_features):
                    got = None if ef is None else tuple(ef.shape)
                    raise ValueError(
                        f"EMPCN: batch.edge_feat has shape {got}, the config expects "
                        f"({batch.num_edges}, {self.config.in_edge_features})"
                    )
                parts.append(ef)
            h[1] = self.embed_edge(torch.cat(parts, dim=-1))
        if self.embed_ring is not None and self.ring_inv is not None:
            ring = torch.stack([batch.ring_area, batch.ring_perimeter, batch.ring_radius, batch.ring_size], dim=-1)
            h[2] = self.embed_ring(self.ring_inv(ring))
            if self.config.ring_kinds:
                h[2] = h[2] + self.embed_kind(ring_kind_onehot(batch, self.config.ring_kinds, "EMPCN").to(h[2].dtype))
        return h

    def compiled_units(self) -> list[nn.Module]:
        """What ``--compile`` compiles whole: the layers (called as modules in :meth:`forward`)."""
        return list(self.layers)

    def forward(self, batch: ComplexBatch) -> Tensor:
        check_node_features(batch, self.config.in_node_features, "EMPCN")
        volume = {0: batch.pos.new_zeros(batch.num_nodes), 1: batch.edge_len, 2: batch.ring_area}
        nbr: dict[str, Tensor] = {}
        inv: dict[str, Tensor] = {}
        for name in self.config.neighbourhoods:
            idx, dist = get_neighbourhood(batch, name, "EMPCN")
            s, r = neighbourhood_ranks(name)
            nbr[name] = idx
            inv[name] = self.pair_inv(torch.stack([dist, volume[r][idx[:, 1]], volume[s][idx[:, 0]]], dim=-1))
        h = self.embed(batch)
        for layer in self.layers:
            h = layer(h, nbr, inv)
        graph_of = {0: batch.node_graph, 1: batch.edge_graph, 2: batch.ring_graph}
        with full_precision(batch.pos):
            pooled = [
                pool_sum(self.readout[str(r)](in_param_dtype(h[r], self.head)), graph_of[r], batch.num_graphs)
                for r in self.ranks
            ]
            return self.head(torch.cat(pooled, dim=-1)).squeeze(-1)
