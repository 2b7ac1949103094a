"""EGNN written the way its authors' code writes it: the fixed reference of the training-speed figures.

Follows the equations of Satorras, Hoogeboom, Welling (2021, arXiv 2102.09844) in the plain form of
their public code (written here, not copied): per layer, for every ordered pair (i receiver, j sender)
of a sparse pair list without padding,

    m_ij = φ_e(cat[h_i, h_j, ‖x_i − x_j‖², a_ij])            (φ_e = Linear, SiLU, Linear, SiLU)
    m_ij = m_ij · sigmoid(Linear(m_ij))                       (QM9: "attention")
    x_i' = x_i + mean_j (x_i − x_j) φ_x(m_ij) + φ_v(h_i) v⁰_i  (N-body only)
    h_i' = h_i + φ_h(cat[h_i, Σ_j m_ij])                      (φ_h = Linear, SiLU, Linear)

QM9: embed → 7 × 128 layers → node MLP → sum per molecule → MLP, L1 loss. N-body: ‖v⁰‖ → Linear →
4 × 64 layers with a_ij = [q_i q_j, ‖x⁰_i − x⁰_j‖²] and the velocity term, MSE of the positions.
Adam; one process with the machine's torch threads; the pair lists are built once per batch before
timing (the authors' code builds them once per batch size), so the reference pays no data loading.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ReferenceEGNNLayer(nn.Module):
    """One layer exactly as the equations above, concatenating per pair."""

    def __init__(self, hidden: int, edge_attr_dim: int, attention: bool, coords: bool) -> None:
        super().__init__()
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + 1 + edge_attr_dim, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden), nn.SiLU())
        self.att_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.coord_mlp = None
        self.vel_mlp = None
        if coords:
            last = nn.Linear(hidden, 1, bias=False)
            nn.init.xavier_uniform_(last.weight, gain=1e-3)
            self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), last)
            self.vel_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, h: Tensor, x: Tensor, row: Tensor, col: Tensor, edge_attr: Tensor | None,
                vel: Tensor | None) -> tuple[Tensor, Tensor]:
        diff = x[row] - x[col]
        radial = (diff ** 2).sum(dim=1, keepdim=True)
        parts = [h[row], h[col], radial] + ([edge_attr] if edge_attr is not None else [])
        m = self.edge_mlp(torch.cat(parts, dim=1))
        if self.att_mlp is not None:
            m = m * self.att_mlp(m)
        if self.coord_mlp is not None:
            trans = diff * self.coord_mlp(m)
            total = torch.zeros_like(x).index_add_(0, row, trans)
            count = torch.zeros_like(x[:, :1]).index_add_(0, row, torch.ones_like(trans[:, :1]))
            x = x + total / count.clamp_min(1) + self.vel_mlp(h) * vel
        agg = torch.zeros_like(h).index_add_(0, row, m)
        h = h + self.node_mlp(torch.cat([h, agg], dim=1))
        return h, x


class ReferenceQM9EGNN(nn.Module):
    """EGNN's QM9 model: 7 × 128, attention, residual, sum readout → (B,)."""

    def __init__(self, in_features: int, hidden: int = 128, layers: int = 7) -> None:
        super().__init__()
        self.embedding = nn.Linear(in_features, hidden)
        self.layers = nn.ModuleList(ReferenceEGNNLayer(hidden, 0, True, False) for _ in range(layers))
        self.node_dec = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.graph_dec = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, feat: Tensor, x: Tensor, row: Tensor, col: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
        h = self.embedding(feat)
        for layer in self.layers:
            h, _ = layer(h, x, row, col, None, None)
        h = self.node_dec(h)
        pooled = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype).index_add_(0, graph, h)
        return self.graph_dec(pooled).squeeze(1)


class ReferenceNBodyEGNN(nn.Module):
    """EGNN's N-body model: 4 × 64 with the velocity term; returns the positions (N, 3)."""

    def __init__(self, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Linear(1, hidden)
        self.layers = nn.ModuleList(ReferenceEGNNLayer(hidden, 2, False, True) for _ in range(layers))

    def forward(self, x: Tensor, vel: Tensor, charge: Tensor, row: Tensor, col: Tensor) -> Tensor:
        d0 = x[row] - x[col]
        edge_attr = torch.cat([charge[row] * charge[col], (d0 ** 2).sum(1, keepdim=True)], dim=1)
        h = self.embedding(torch.linalg.vector_norm(vel, dim=1, keepdim=True))
        for layer in self.layers:
            h, x = layer(h, x, row, col, edge_attr, vel)
        return x


def all_pairs(graph: Tensor) -> tuple[Tensor, Tensor]:
    """(row = receiver i, col = sender j) of every ordered pair i ≠ j within each graph (graph sorted)."""
    same = graph[:, None] == graph[None, :]
    same.fill_diagonal_(False)
    row, col = same.nonzero(as_tuple=True)
    return row, col
