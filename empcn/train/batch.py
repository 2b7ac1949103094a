"""A batch of disjoint cell complexes, as the models consume it.

Every index tensor holds *batch-global* indices into the cell list of its rank: node indices run
over all nodes of the batch, edge indices over all edges, ring indices over all rings. Collation
(:mod:`empcn.train.collate`) offsets each sample's local indices by the number of cells of that
rank in the samples before it.

Ranks: 0 = nodes (atoms, particles, joints), 1 = edges (bonds), 2 = rings (cycles).
Neighbourhoods are named ``"<sender>_<receiver>[_<relation>]"``, see
:data:`empcn.schema.NEIGHBOURHOODS`; each is an index tensor ``(P, 2)`` of
``[sender cell, receiver cell]``, with ``nbr_dist[name]`` the distance between the two cells'
barycentres (the cache stores it; models that move positions recompute it with
:mod:`empcn.geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch


@dataclass
class ComplexBatch:
    """Disjoint union of ``num_graphs`` complexes. Shapes: N nodes, E edges, R rings, L ring-vertex slots."""

    num_graphs: int
    # rank 0
    pos: torch.Tensor  # (N, 3) float, Å for QM9, simulation units otherwise
    node_feat: torch.Tensor  # (N, F) float, invariant input features (e.g. one-hot species)
    node_graph: torch.Tensor  # (N,) long, graph of each node
    # rank 1
    edge_index: torch.Tensor  # (E, 2) long, node indices of each edge (i < j within a sample)
    edge_graph: torch.Tensor  # (E,) long
    edge_len: torch.Tensor  # (E,) float, edge length (1-cell volume)
    # rank 2: ring k's vertices are ring_node[ring_of == k] in cyclic order
    ring_node: torch.Tensor  # (L,) long, node index of every ring vertex slot
    ring_edge: torch.Tensor  # (L,) long, edge joining slot k to slot k+1 (cyclically) of the same ring
    ring_of: torch.Tensor  # (L,) long, ring of every slot
    ring_graph: torch.Tensor  # (R,) long
    ring_size: torch.Tensor  # (R,) float, number of vertices
    ring_area: torch.Tensor  # (R,) float, area by barycentric subdivision (2-cell volume)
    ring_perimeter: torch.Tensor  # (R,) float
    ring_radius: torch.Tensor  # (R,) float, half the largest vertex-vertex distance
    # neighbourhoods
    nbr: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (P, 2) long [sender, receiver]
    nbr_dist: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (P,) float
    # optional per-dataset extras
    edge_feat: torch.Tensor | None = None  # (E, Fe) float, e.g. bond order one-hot
    vel: torch.Tensor | None = None  # (N, 3) float, N-body / MoCap input velocities
    node_scalar: torch.Tensor | None = None  # (N, Fs) float, e.g. charges or masses
    target_pos: torch.Tensor | None = None  # (N, 3) float, positions to predict
    y: torch.Tensor | None = None  # (B,) float, the scalar target in the manifest's unit
    sample_index: torch.Tensor | None = None  # (B,) long, index of each sample in the cache

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[0])

    @property
    def num_rings(self) -> int:
        return int(self.ring_graph.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ComplexBatch":
        """A copy on ``device``; floating tensors are cast to ``dtype`` when given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype, non_blocking=True)
            return t.to(device=device, non_blocking=True)

        changes: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = move(value)
            elif isinstance(value, dict):
                changes[f.name] = {k: move(v) for k, v in value.items()}
        return replace(self, **changes)
