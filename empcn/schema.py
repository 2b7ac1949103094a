"""The names both stages agree on: cache groups, neighbourhoods and the fields they hold.

The lift writes these names and the train stage reads them; neither spells a name the other could
not look up here. Changing a name here is a change of the cache format (``docs/cache-format.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_GROUP = "sample"  # one row per sample (offsets = 0..S): id, targets, split, …
NODE_GROUP = "nodes"  # 0-cells
EDGE_GROUP = "edges"  # 1-cells
RING_GROUP = "rings"  # 2-cells
RING_SLOT_GROUP = "ring_slots"  # the vertices (and joining edges) of every ring, cyclic order
NBR_PREFIX = "nbr"  # nbr/<name>: one group per neighbourhood


@dataclass(frozen=True)
class NeighbourhoodSpec:
    """One message-passing relation: messages go from ``sender_rank`` cells to ``receiver_rank`` cells."""

    name: str  # "<sender>_<receiver>[_<relation>]", the key in caches and ComplexBatch.nbr
    sender_rank: int  # 0 nodes, 1 edges, 2 rings
    receiver_rank: int
    relation: str  # boundary | coboundary | lower_adjacency | upper_adjacency | vertex_of | vertices
    doc: str


NEIGHBOURHOODS: tuple[NeighbourhoodSpec, ...] = (
    NeighbourhoodSpec("0_0", 0, 0, "upper_adjacency", "nodes sharing an edge, both directions"),
    NeighbourhoodSpec("0_1", 0, 1, "boundary", "node -> edge it bounds (the node is in the edge's boundary)"),
    NeighbourhoodSpec("1_0", 1, 0, "coboundary", "edge -> its two nodes (the edge is in the node's co-boundary)"),
    NeighbourhoodSpec("1_1_lower", 1, 1, "lower_adjacency", "edges sharing a node, both directions"),
    NeighbourhoodSpec("1_1_upper", 1, 1, "upper_adjacency", "edges bounding a common ring, both directions"),
    NeighbourhoodSpec("1_2", 1, 2, "boundary", "edge -> ring it bounds"),
    NeighbourhoodSpec("2_1", 2, 1, "coboundary", "ring -> its boundary edges"),
    NeighbourhoodSpec("2_2_lower", 2, 2, "lower_adjacency", "rings sharing an edge, both directions"),
    NeighbourhoodSpec("0_2", 0, 2, "vertex_of", "node -> ring it is a vertex of"),
    NeighbourhoodSpec("2_0", 2, 0, "vertices", "ring -> its vertices (P(sigma) of the decoupled model)"),
)



#: Neighbourhood names by role (the keys of ``ComplexBatch.nbr``).
NODE_NODE = "0_0"
EDGE_LOWER = "1_1_lower"
EDGE_UPPER = "1_1_upper"
RING_TO_NODE = "2_0"
NAMES: tuple[str, ...] = tuple(spec.name for spec in NEIGHBOURHOODS)


def neighbourhood_docs() -> list[dict[str, object]]:
    """The neighbourhoods as the manifest documents them (``manifest["neighbourhoods"]``)."""
    from dataclasses import asdict

    return [asdict(spec) for spec in NEIGHBOURHOODS]


#: What every stored field holds (``manifest["fields"]``); data sets override the entries they change.
FIELD_DOCS: dict[str, str] = {
    "sample/id": "(S,) int64 dataset id of the sample (QM9: 1-based GDB-9 index)",
    "sample/y": "(S, T) float64 targets in the manifest's units, columns as targets.names",
    "sample/bonds_from_smiles": "(S,) uint8 1 if bonds came from the SMILES, 0 if perceived from coordinates",
    "nodes/pos": "(N, 3) float32 positions (QM9: Å)",
    "nodes/z": "(N,) uint8 atomic numbers",
    "edges/index": "(E, 2) int32 local node indices i < j of each 1-cell",
    "edges/order": "(E,) float32 bond order (1, 1.5 aromatic, 2, 3; 0 = unknown, geometric fallback)",
    "edges/length": "(E,) float32 edge length = 1-cell volume",
    "rings/size": "(R,) int32 number of vertices of each 2-cell",
    "rings/area": "(R,) float32 area by barycentric subdivision (sum of triangles from the barycentre)",
    "rings/perimeter": "(R,) float32 sum of the ring's edge lengths",
    "rings/radius": "(R,) float32 half the largest distance between two of the ring's vertices",
    "ring_slots/node": "(L,) int32 local node index of every ring vertex, rings contiguous, cyclic order",
    "ring_slots/edge": "(L,) int32 local edge index joining slot k to slot k+1 of the same ring",
    "nbr/<name>/index": "(P, 2) int32 local [sender, receiver] cell indices of a neighbourhood",
    "nbr/<name>/dist": "(P,) float32 distance between the barycentres of sender and receiver",
}
