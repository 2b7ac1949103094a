"""RingNet: a small E(n)-invariant regressor of point clouds that reads their 2-cells (``--model ringnet``).

For a sample ``g`` with points ``p_i``, 2-cells (rings) ``r`` with vertices ``V(r)`` and stored
invariants ``a_r`` (vertex count, area, perimeter, radius), and ``φ``/``ψ`` two-layer MLPs::

    b_r   = (1/|V(r)|) Σ_{i ∈ V(r)} p_i                       (barycentre of a 2-cell)
    c_g   = mean of b_r over the 2-cells of g                 (the centroid of g's points if it has none)
    x̄_g  = (1/N_g) Σ_{i ∈ g} p_i
    d_i   = ‖p_i − c_g‖,  u_i = ‖p_i − x̄_g‖
    h_i   = φ_n([d_i, u_i, d_i², u_i²])
    e_r   = φ_r(a_r)
    h_i  ← h_i + Σ_{(r, i) ∈ 2_0} φ_m([e_r ‖ h_i ‖ d_ri])      (ring → vertex messages; d_ri = ‖b_r − p_i‖,
                                                               the stored ``nbr/2_0/dist``)
    y_g   = ψ([(1/N_g) Σ_{i ∈ g} h_i ‖ mean of e_r over the 2-cells of g])

Positions enter only through distances between points and barycentres, and the 2-cells through
their invariants: the output is invariant to rotations, reflections and translations of the cloud,
and to relabelling its points. The mean over points suits an intensive target such as the radius
of gyration of ``--dataset pointclouds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from empcn.schema import RING_TO_NODE
from empcn.train.batch import ComplexBatch
from empcn.train.models.base import ModelConfig
from empcn.train.models.registry import Implementation, ModelSpec


@dataclass(frozen=True)
class RingNetConfig(ModelConfig):
    """``hidden``: width of every MLP (``--hidden``). The model builds its own inputs (no ``INPUT_FIELDS``)."""

    hidden: int = 32

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"RingNetConfig: hidden must be ≥ 1, got {self.hidden}")

    def reads(self) -> tuple[str, ...]:
        return (RING_TO_NODE,)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, outputs))


def graph_mean(values: Tensor, graph: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    """(B, F) mean of ``values`` (M, F) over the rows of each graph, and (B,) the number of rows (0: mean 0)."""
    total = values.new_zeros(num_graphs, values.shape[1]).index_add_(0, graph, values)
    count = torch.bincount(graph, minlength=num_graphs).to(values.dtype)
    return total / count.clamp(min=1).unsqueeze(-1), count


class RingNet(nn.Module):
    """``forward(batch) -> (B,)``: see the module docstring."""

    def __init__(self, config: RingNetConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.node = mlp(4, h, h)
        self.ring = mlp(4, h, h)
        self.message = mlp(2 * h + 1, h, h)
        self.head = mlp(2 * h, h, 1)

    def forward(self, batch: ComplexBatch) -> Tensor:
        pos, b = batch.pos, batch.num_graphs
        barycentre = pos.new_zeros(batch.num_rings, 3).index_add_(0, batch.ring_of, pos[batch.ring_node])
        barycentre = barycentre / batch.ring_size.to(pos.dtype).clamp(min=1).unsqueeze(-1)
        cell_centre, rings = graph_mean(barycentre, batch.ring_graph, b)
        centroid, _ = graph_mean(pos, batch.node_graph, b)
        anchor = torch.where((rings > 0).unsqueeze(-1), cell_centre, centroid)
        d = torch.linalg.vector_norm(pos - anchor[batch.node_graph], dim=-1)
        u = torch.linalg.vector_norm(pos - centroid[batch.node_graph], dim=-1)
        h = self.node(torch.stack([d, u, d * d, u * u], dim=-1))
        invariants = torch.stack([batch.ring_size, batch.ring_area, batch.ring_perimeter, batch.ring_radius], dim=-1)
        e = self.ring(invariants.to(pos.dtype))
        ring, node = batch.nbr[RING_TO_NODE][:, 0], batch.nbr[RING_TO_NODE][:, 1]
        dist = batch.nbr_dist[RING_TO_NODE].to(pos.dtype).unsqueeze(-1)
        h = h + torch.zeros_like(h).index_add_(0, node, self.message(torch.cat([e[ring], h[node], dist], dim=-1)))
        pooled, _ = graph_mean(h, batch.node_graph, b)
        cells, _ = graph_mean(e, batch.ring_graph, b)
        return self.head(torch.cat([pooled, cells], dim=-1)).squeeze(-1)


#: What ``--model ringnet`` trains: this model for graph-level scalar targets.
MODEL = ModelSpec(
    {"scalar": Implementation(RingNetConfig, RingNet)},
    "RingNet: distances to the 2-cell's barycentre, ring -> vertex messages, a mean over points",
)
