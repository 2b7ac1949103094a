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

Beside the cell complex, a batch carries the further **fields** its run asked for by their names in
:mod:`empcn.schema` (``"nodes/vel"``, ``"nodes/target_pos"``, ``"sample/y"``, …): the task's targets
and the inputs a model reads (:meth:`ComplexBatch.field`). Which fields a data set stores is its
manifest's ``fields``; no data set has slots of its own here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from empcn.errors import EmpcnError


class MissingField(EmpcnError, KeyError):
    """A model or task asked a batch for a field its cache does not store; one-line message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


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
    nbr: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # name -> (P, 2) long [sender, receiver]
    nbr_dist: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # name -> (P,) float
    #: (E, Fe) float invariant edge input features (bond-order one-hot); (E, 0) when the cache has none
    edge_feat: torch.Tensor | None = None
    #: further stored fields by schema name ("nodes/vel": (N, 3), "sample/y": (B, T), …), as stored
    fields: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    sample_index: torch.Tensor | None = None  # (B,) long, index of each sample in the cache (data path only)

    def __post_init__(self) -> None:
        if self.edge_feat is None:  # no edge features: an (E, 0) view, no allocation (the data path's hot loop)
            self.edge_feat = self.edge_len.as_strided((self.edge_len.shape[0], 0), (1, 1))

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[0])

    @property
    def num_rings(self) -> int:
        return int(self.ring_graph.shape[0])

    def has(self, name: str) -> bool:
        """Whether the batch carries the field ``name`` (e.g. ``"nodes/vel"``)."""
        return name in self.fields

    def field(self, name: str, user: str = "") -> torch.Tensor:
        """The field ``name`` (a schema name such as ``"nodes/vel"``); MissingField naming it otherwise.

        ``user``: who asks (a model or task), for the message.
        """
        try:
            return self.fields[name]
        except KeyError:
            who = f"{user}: " if user else ""
            have = ", ".join(sorted(self.fields)) or "none"
            raise MissingField(
                f"{who}the batch has no field {name!r} (its cache does not store it; fields carried: {have})"
            ) from None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ComplexBatch:
        """A copy on ``device``; floating tensors are cast to ``dtype`` when given."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype, non_blocking=True)
            return t.to(device=device, non_blocking=True)

        changes: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = move(value)
            elif isinstance(value, dict):
                changes[f.name] = {k: move(v) for k, v in value.items()}
        return dataclasses.replace(self, **changes)
