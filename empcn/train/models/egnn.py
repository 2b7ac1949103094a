"""EGNN (Satorras, Hoogeboom, Welling 2021, arXiv 2102.09844): the QM9 variant and its E(n) layer.

The QM9 model is invariant: it reads positions only through squared pair distances and never moves
them. :class:`EGNNLayer` also carries the coordinate-updating (equivariant) form with the optional
velocity term, for N-body style tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import message_pairs
from empcn.train.models.base import ModelConfig
from empcn.train.models.layers import (
    GatedMessage,
    check_dropout,
    check_node_features,
    check_sizes,
    full_precision,
    in_param_dtype,
    mlp,
    pair_position_step,
    pool_sum,
    position_weight_mlp,
    scatter_sum,
)


@dataclass(frozen=True)
class EGNNConfig(ModelConfig):
    """EGNN for graph-level invariant regression. Defaults: the QM9 model of the EGNN paper.

    ``connectivity``: ``"full"`` = all ordered node pairs of each graph (the paper's QM9 setting),
    ``"bonds"`` = both directions of ``batch.edge_index``.
    """

    INPUT_FIELDS: ClassVar[dict[str, str]] = {"node": "in_node_features"}

    in_node_features: int = 15
    hidden: int = 128
    layers: int = 7
    attention: bool = True
    residual: bool = True
    dropout: float = 0.0
    connectivity: Literal["full", "bonds"] = "full"

    def __post_init__(self) -> None:
        check_sizes("EGNNConfig", in_node_features=self.in_node_features, hidden=self.hidden, layers=self.layers)
        check_dropout("EGNNConfig", self.dropout)
        if self.connectivity not in ("full", "bonds"):
            raise ValueError(f"EGNNConfig: connectivity must be 'full' or 'bonds', got {self.connectivity!r}")


class EGNNLayer(nn.Module):
    """One E(n)-equivariant graph layer.

    With ``pairs: (P, 2)`` rows ``[j, i]`` (sender, receiver) and ``h: (N, hidden)``, ``x: (N, 3)``::

        m_ij = e_ij · φ_e([h_i ‖ h_j ‖ ‖x_i − x_j‖² ‖ a_ij])
        e_ij = sigmoid(Linear(φ_e(…)))                          (1 if not attention)
        h_i' = h_i + φ_h([h_i ‖ Σ_j m_ij])                      (without "h_i +" if not residual)
        x_i' = x_i + C · agg_j (x_i − x_j) φ_x(m_ij) [+ φ_v(h_i) v_i⁰]   (only if update_coords)

    ``velocity_messages`` (an empcn extension) adds ``C · agg_j (v⁰_i − v⁰_j) φ_w(m_ij)`` to the step.

    ``agg`` is the mean (``coord_agg="mean"``, EGNN's N-body code) or the sum over neighbours.
    φ_e = [Linear, SiLU, Linear, SiLU], φ_h = [Linear, SiLU, Linear], φ_x = φ_v = [Linear, SiLU,
    Linear → 1]; φ_x's last layer starts near zero (Xavier gain 1e-3) so early coordinate steps are
    small. Dropout (if any) acts on φ_h's output.
    """

    def __init__(
        self,
        hidden: int,
        edge_attr_dim: int = 0,
        attention: bool = True,
        residual: bool = True,
        dropout: float = 0.0,
        update_coords: bool = False,
        use_velocity: bool = False,
        coord_agg: Literal["mean", "sum"] = "mean",
        coord_weight: float = 1.0,
        velocity_messages: bool = False,
    ) -> None:
        super().__init__()
        if use_velocity and not update_coords:
            raise ValueError("EGNNLayer: use_velocity needs update_coords=True")
        if velocity_messages and not use_velocity:
            raise ValueError("EGNNLayer: velocity_messages needs use_velocity=True")
        if coord_agg not in ("mean", "sum"):
            raise ValueError(f"EGNNLayer: coord_agg must be 'mean' or 'sum', got {coord_agg!r}")
        self.hidden = hidden
        self.edge_attr_dim = edge_attr_dim
        self.residual = residual
        self.edge_mlp = GatedMessage(2 * hidden + 1 + edge_attr_dim, hidden, gate=attention)
        # None in the last layer of a dynamics stack (egnn_stack), which updates positions only
        self.node_in: nn.Linear | None = nn.Linear(2 * hidden, hidden)
        self.node_out: nn.Module | None = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.update_coords = update_coords
        self.coord_agg = coord_agg
        self.coord_weight = coord_weight
        self.coord_mlp: nn.Module | None = None
        self.vel_mlp: nn.Module | None = None
        self.rel_vel_mlp: nn.Module | None = None
        if update_coords:
            self.coord_mlp = position_weight_mlp(hidden)
            if use_velocity:
                self.vel_mlp = mlp([hidden, hidden, 1])
            if velocity_messages:
                self.rel_vel_mlp = position_weight_mlp(hidden)

    def edge_messages(
        self, h: Tensor, x: Tensor, pairs: Tensor, edge_attr: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Gated messages ``m: (P, hidden)`` and the differences ``x_i − x_j: (P, 3)``."""
        send, recv = pairs[:, 0], pairs[:, 1]
        diff = x.index_select(0, recv) - x.index_select(0, send)
        parts = [(diff * diff).sum(dim=-1, keepdim=True)]  # ‖x_i − x_j‖²
        if self.edge_attr_dim:
            if edge_attr is None or edge_attr.shape != (pairs.shape[0], self.edge_attr_dim):
                got = None if edge_attr is None else tuple(edge_attr.shape)
                raise ValueError(
                    f"EGNNLayer: expected edge_attr of shape ({pairs.shape[0]}, {self.edge_attr_dim}), got {got}"
                )
            parts.append(edge_attr)
        pair_inputs = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return self.edge_mlp.pairwise(h, h, recv, send, pair_inputs), diff

    def node_update(self, h: Tensor, agg: Tensor, extra: Tensor | None = None) -> Tensor:
        """``h + φ_h([h ‖ agg])``; ``extra: (N, hidden)`` is added to φ_h's first pre-activation.

        Adding ``W_r · a`` there is a Linear over ``[h ‖ agg ‖ a]`` split in two, which is how the
        decoupled model feeds ring messages into the node update.
        """
        if self.node_in is None or self.node_out is None:
            raise ValueError("EGNNLayer: this layer updates positions only (no node update)")
        pre = self.node_in(torch.cat([h, agg], dim=-1))
        if extra is not None:
            pre = pre + extra
        out = self.dropout(self.node_out(pre))
        return h + out if self.residual else out

    def coord_update(self, h: Tensor, x: Tensor, m: Tensor, diff: Tensor, pairs: Tensor, vel: Tensor | None) -> Tensor:
        """``x + C · agg [(x_i − x_j) φ_x(m_ij) (+ (v_i − v_j) φ_w(m_ij))] [+ φ_v(h_i) v_i]``."""
        assert self.coord_mlp is not None
        if (self.vel_mlp is not None or self.rel_vel_mlp is not None) and vel is None:
            raise ValueError("EGNNLayer: built with use_velocity or velocity_messages but called without vel")
        rel_vel = None if self.rel_vel_mlp is None or vel is None else vel[pairs[:, 1]] - vel[pairs[:, 0]]
        step = pair_position_step(pairs, x.shape[0], diff, m, self.coord_mlp, self.coord_agg, rel_vel, self.rel_vel_mlp)
        x = x + self.coord_weight * step
        if self.vel_mlp is not None:
            x = x + self.vel_mlp(h) * vel
        return x

    def forward(
        self,
        h: Tensor,
        x: Tensor,
        pairs: Tensor,
        edge_attr: Tensor | None = None,
        vel: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``h: (N, hidden)``, ``x: (N, 3)``, ``pairs: (P, 2)`` → ``(h', x')`` (``x' = x`` unless update_coords)."""
        m, diff = self.edge_messages(h, x, pairs, edge_attr)
        agg = scatter_sum(m, pairs[:, 1], h.shape[0])
        h_new = self.node_update(h, agg)
        x_new = self.coord_update(h, x, m, diff, pairs, vel) if self.update_coords else x
        return h_new, x_new


class EGNN(nn.Module):
    """EGNN's QM9 model: embed → L invariant EGNN layers → node MLP → sum per graph → MLP → scalar.

    ``forward(batch) -> (B,)``. Reads ``batch.node_feat``, ``batch.pos``, ``batch.node_graph`` (and
    ``batch.edge_index`` when ``connectivity="bonds"``).
    """

    def __init__(self, config: EGNNConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.embed = nn.Linear(config.in_node_features, h)
        self.layers = nn.ModuleList(
            EGNNLayer(h, attention=config.attention, residual=config.residual, dropout=config.dropout)
            for _ in range(config.layers)
        )
        self.node_dec = mlp([h, h, h])
        self.graph_dec = mlp([h, h, 1])

    def compiled_units(self) -> list[nn.Module]:
        """What ``--compile`` compiles whole: the layers (called as modules in :meth:`forward`)."""
        return list(self.layers)

    def pairs(self, batch: ComplexBatch) -> Tensor:
        """The message pairs ``(P, 2)`` [sender, receiver] for this batch."""
        return message_pairs(batch.node_graph, batch.edge_index, self.config.connectivity)

    def forward(self, batch: ComplexBatch) -> Tensor:
        check_node_features(batch, self.config.in_node_features, "EGNN")
        pairs = self.pairs(batch)
        h = self.embed(batch.node_feat)
        x = batch.pos
        for layer in self.layers:
            h, x = layer(h, x, pairs)
        with full_precision(h):
            pooled = pool_sum(self.node_dec(in_param_dtype(h, self.node_dec)), batch.node_graph, batch.num_graphs)
            return self.graph_dec(pooled).squeeze(-1)
