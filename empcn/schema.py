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

#: The group of the cells of each rank (0 nodes, 1 edges, 2 rings).
RANK_GROUPS: dict[int, str] = {0: NODE_GROUP, 1: EDGE_GROUP, 2: RING_GROUP}


def field_name(group: str, array: str) -> str:
    """The name of a stored field, ``"<group>/<array>"`` (the keys of ``manifest["fields"]`` and of a sample)."""
    return f"{group}/{array}"


def group_of(field: str) -> str:
    """The group a field is stored in: ``"nodes/vel"`` → ``"nodes"``, ``"nbr/0_1/index"`` → ``"nbr/0_1"``."""
    return field.rsplit("/", 1)[0]


# Fields of the cell complex itself: every cache stores them, collation builds a batch's core from them.
SAMPLE_ID = field_name(SAMPLE_GROUP, "id")
SAMPLE_Y = field_name(SAMPLE_GROUP, "y")  # (S, T) scalar targets, columns as manifest targets.names
NODE_POS = field_name(NODE_GROUP, "pos")
NODE_Z = field_name(NODE_GROUP, "z")
EDGE_INDEX = field_name(EDGE_GROUP, "index")
EDGE_ORDER = field_name(EDGE_GROUP, "order")
EDGE_LENGTH = field_name(EDGE_GROUP, "length")
RING_SIZE = field_name(RING_GROUP, "size")
RING_KIND = field_name(RING_GROUP, "kind")  # (R,) uint8, index into manifest cells.kinds (non-default cells only)
RING_AREA = field_name(RING_GROUP, "area")
RING_PERIMETER = field_name(RING_GROUP, "perimeter")
RING_RADIUS = field_name(RING_GROUP, "radius")
SLOT_NODE = field_name(RING_SLOT_GROUP, "node")
SLOT_EDGE = field_name(RING_SLOT_GROUP, "edge")

#: The field whose rows count the cells of each rank in a sample.
CELL_COUNT_FIELDS: dict[int, str] = {0: NODE_POS, 1: EDGE_INDEX, 2: RING_SIZE}

# Fields some data sets store (position data sets: N-body, MoCap).
NODE_VEL = field_name(NODE_GROUP, "vel")  # (N, 3) input velocities
NODE_CHARGE = field_name(NODE_GROUP, "charge")  # (N,) charges (charged N-body)
NODE_MASS = field_name(NODE_GROUP, "mass")  # (N,) masses (gravity N-body)
NODE_TARGET_POS = field_name(NODE_GROUP, "target_pos")  # (N, 3) positions to predict
#: Per-node scalars a cache may store, at most one of them; position models read the first present.
NODE_SCALAR_FIELDS: tuple[str, ...] = (NODE_CHARGE, NODE_MASS)


def nbr_index(name: str) -> str:
    """``nbr/<name>/index``: (P, 2) [sender, receiver] local cell indices of a neighbourhood."""
    return field_name(f"{NBR_PREFIX}/{name}", "index")


def nbr_dist(name: str) -> str:
    """``nbr/<name>/dist``: (P,) barycentre distances of a neighbourhood's pairs."""
    return field_name(f"{NBR_PREFIX}/{name}", "dist")


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


def declared_fields(manifest: dict) -> frozenset[str]:
    """The fields a cache's manifest declares it stores (the keys of ``manifest["fields"]``)."""
    return frozenset(k for k in (manifest.get("fields") or {}) if isinstance(k, str))


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
