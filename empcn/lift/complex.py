"""Neighbourhoods of a CW-complex (nodes, edges, rings) as directed index pairs, for a whole shard.

EMPCN (arXiv 2406.03145) passes messages along the relations of CW networks: boundary, co-boundary,
lower and upper adjacency, plus P(σ), the vertices of a ring. Each relation is a list of directed
``[sender, receiver]`` pairs of shard-global cell indices. Everything is computed with numpy
arithmetic over all samples of a shard at once: one generic routine (:func:`pairs_sharing`) turns an
incidence list into "pairs of A that share some B", and the adjacencies are derived from it.

Conventions (every relation): pairs deduplicated, no self-pairs, sorted by sample, then receiver, then
sender; the sample of a pair is the sample of its receiver cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empcn.errors import EmpcnError
from empcn.schema import NEIGHBOURHOODS, NeighbourhoodSpec

__all__ = [
    "BadTopology",
    "NEIGHBOURHOODS",
    "NeighbourhoodSpec",
    "ShardTopology",
    "build_neighbourhoods",
    "pairs_sharing",
]


class BadTopology(EmpcnError, ValueError):
    """A :class:`ShardTopology` whose arrays are inconsistent; the message names the sample and reason."""


@dataclass(frozen=True, eq=False)
class ShardTopology:
    """Cells of S samples, all indices shard-global (the cells of sample s are contiguous).

    Ring k's vertices are ``ring_node[o_k : o_k + ring_sizes[k]]`` in cyclic order with
    ``o = cumsum(ring_sizes) - ring_sizes``; ``ring_edge`` at the same slot joins that vertex to the next.
    """

    node_offsets: np.ndarray  # (S+1,) int64, nodes of sample s: node_offsets[s] .. node_offsets[s+1]
    edge_index: np.ndarray  # (E, 2) int64, global node indices of each edge
    edge_offsets: np.ndarray  # (S+1,) int64
    ring_node: np.ndarray  # (L,) int64, global node per ring-vertex slot (cyclic order, rings contiguous)
    ring_edge: np.ndarray  # (L,) int64, global edge joining slot k to slot k+1 of the same ring
    ring_sizes: np.ndarray  # (R,) int64, vertices per ring
    ring_offsets: np.ndarray  # (S+1,) int64, rings per sample

    @property
    def num_samples(self) -> int:
        return int(self.node_offsets.shape[0]) - 1

    @property
    def ring_of(self) -> np.ndarray:
        """(L,) int64 ring of every slot."""
        return np.repeat(np.arange(self.ring_sizes.shape[0], dtype=np.int64), self.ring_sizes)

    def validate(self) -> None:
        """Raise :class:`BadTopology` (one line, naming the shard-local sample) on inconsistent arrays."""
        _validate(self)


def _cell_sample(offsets: np.ndarray) -> np.ndarray:
    """Sample of every cell of a rank, ``(offsets[-1],)`` int64, from its (S+1,) offsets."""
    return np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))


def _fail(what: str, sample: int | None = None) -> BadTopology:
    where = f"sample {sample}: " if sample is not None else ""
    return BadTopology(f"ShardTopology: {where}{what}")


def _check_offsets(name: str, offsets: np.ndarray, num_samples: int, total: int) -> None:
    if offsets.ndim != 1 or offsets.shape[0] != num_samples + 1:
        raise _fail(f"{name} must have shape ({num_samples + 1},), got {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != total:
        raise _fail(f"{name} must run from 0 to {total}, got {offsets[0]} .. {offsets[-1]}")
    bad = np.flatnonzero(np.diff(offsets) < 0)
    if bad.size:
        raise _fail(f"{name} decreases", int(bad[0]))


def _validate(topo: ShardTopology) -> None:
    s = topo.num_samples
    for name in ("node_offsets", "edge_index", "edge_offsets", "ring_node", "ring_edge", "ring_sizes", "ring_offsets"):
        arr = getattr(topo, name)
        if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.integer):
            raise _fail(f"{name} must be an integer numpy array, got {type(arr).__name__} {getattr(arr, 'dtype', '')}")
    if topo.node_offsets.ndim != 1 or s < 0:
        raise _fail(f"node_offsets must be 1-D with at least one entry, got shape {topo.node_offsets.shape}")
    e = topo.edge_index
    if e.ndim != 2 or e.shape[1] != 2:
        raise _fail(f"edge_index must have shape (E, 2), got {e.shape}")
    if topo.ring_node.ndim != 1 or topo.ring_node.shape != topo.ring_edge.shape:
        shapes = f"{topo.ring_node.shape}, {topo.ring_edge.shape}"
        raise _fail(f"ring_node and ring_edge must be 1-D of equal length, got {shapes}")
    if topo.ring_sizes.ndim != 1 or int(topo.ring_sizes.sum()) != topo.ring_node.shape[0]:
        raise _fail(f"ring_sizes must sum to the {topo.ring_node.shape[0]} ring slots")
    num_nodes = int(topo.node_offsets[-1])
    _check_offsets("node_offsets", topo.node_offsets, s, num_nodes)
    _check_offsets("edge_offsets", topo.edge_offsets, s, e.shape[0])
    _check_offsets("ring_offsets", topo.ring_offsets, s, topo.ring_sizes.shape[0])

    edge_sample = _cell_sample(topo.edge_offsets)
    bad = np.flatnonzero((e < 0).any(1) | (e >= num_nodes).any(1))
    if bad.size:
        i = bad[0]
        raise _fail(f"edge {i} has node indices {e[i].tolist()} outside [0, {num_nodes})", int(edge_sample[i]))
    bad = np.flatnonzero(e[:, 0] == e[:, 1])
    if bad.size:
        raise _fail(f"edge {bad[0]} is a self-loop on node {e[bad[0], 0]}", int(edge_sample[bad[0]]))
    node_sample = _cell_sample(topo.node_offsets)
    bad = np.flatnonzero((node_sample[e] != edge_sample[:, None]).any(1))
    if bad.size:
        raise _fail(f"edge {bad[0]} joins nodes {e[bad[0]].tolist()} of another sample", int(edge_sample[bad[0]]))

    sizes = topo.ring_sizes
    ring_sample = _cell_sample(topo.ring_offsets)
    bad = np.flatnonzero(sizes < 3)
    if bad.size:
        raise _fail(f"ring {bad[0]} has {sizes[bad[0]]} vertices, need >= 3", int(ring_sample[bad[0]]))
    if topo.ring_node.size == 0:
        return
    ring_of = topo.ring_of
    slot_sample = ring_sample[ring_of]
    node, edge = topo.ring_node, topo.ring_edge
    bad = np.flatnonzero((node < 0) | (node >= num_nodes) | (edge < 0) | (edge >= e.shape[0]))
    if bad.size:
        i = bad[0]
        raise _fail(f"ring {ring_of[i]} slot {i} has node {node[i]} / edge {edge[i]} out of range", int(slot_sample[i]))
    bad = np.flatnonzero((node_sample[node] != slot_sample) | (edge_sample[edge] != slot_sample))
    if bad.size:
        i = bad[0]
        raise _fail(f"ring {ring_of[i]} uses node {node[i]} / edge {edge[i]} of another sample", int(slot_sample[i]))
    nxt = node[_successor(sizes)]
    joins = np.sort(e[edge], axis=1)
    want = np.sort(np.stack([node, nxt], axis=1), axis=1)
    bad = np.flatnonzero((joins != want).any(1))
    if bad.size:
        i = bad[0]
        raise _fail(
            f"ring {ring_of[i]} edge {edge[i]} joins nodes {e[edge[i]].tolist()}, "
            f"not consecutive vertices {node[i]}, {nxt[i]}",
            int(slot_sample[i]),
        )


def _successor(sizes: np.ndarray) -> np.ndarray:
    """(L,) slot index of the next vertex of the same ring (cyclically)."""
    starts = np.cumsum(sizes) - sizes
    start_of = np.repeat(starts, sizes)
    size_of = np.repeat(sizes, sizes)
    k = np.arange(start_of.shape[0]) - start_of
    return start_of + (k + 1) % np.maximum(size_of, 1)


def pairs_sharing(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs ``(a_i, a_j)``, ``a_i != a_j``, of members that share some group ``b``.

    ``a, b: (K,)`` int64, an incidence list (member ``a[k]`` belongs to group ``b[k]``; repeats allowed).
    Each group of g distinct members expands to its g·(g−1) ordered pairs by index arithmetic (no loop
    over groups). Returns ``(sender, receiver)``, not yet deduplicated across groups.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    span = int(a.max()) + 1 if a.size else 1
    a, b = _unique_pairs(a, b, span)  # sorted by group, then member; each member once per group
    n = a.shape[0]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = b[1:] != b[:-1]
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    start_of = np.repeat(starts, sizes)  # (n,) first member of each member's group
    partners = np.repeat(sizes, sizes) - 1  # (n,) g−1 partners per member
    member = np.repeat(np.arange(n), partners)  # (P,) position of the sender in the sorted list
    first = start_of[member]
    partner = np.arange(member.shape[0])
    partner -= np.repeat(np.cumsum(partners) - partners, partners)  # j = 0 .. g−2 within the member's run
    partner += partner >= member - first  # skip the member itself (its own position in the group)
    partner += first
    return np.repeat(a, partners), a[partner]


def _unique_pairs(low: np.ndarray, high: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(low, high)`` pairs sorted by (high, low); ``0 <= low < span``. One int64 sort.

    Packs each pair as ``high << bits | low`` (shifts, not integer division, which is slow in numpy)
    and deduplicates by comparing neighbours (faster than np.unique, which hashes in numpy >= 2.3).
    """
    bits = max(int(span - 1).bit_length(), 1)
    key = np.sort((high << bits) | low)
    if key.size:
        keep = np.empty(key.shape[0], dtype=bool)
        keep[0] = True
        np.not_equal(key[1:], key[:-1], out=keep[1:])
        key = key[keep]
    return key & ((1 << bits) - 1), key >> bits


def _finalise(
    sender: np.ndarray, receiver: np.ndarray, num_senders: int, receiver_offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate and sort by (receiver, sender); offsets (S+1,) of pairs per sample of the receiver.

    Self-pairs never reach here: :func:`pairs_sharing` skips them and the other relations join cells
    of different ranks.
    """
    sender = np.asarray(sender, dtype=np.int64)
    receiver = np.asarray(receiver, dtype=np.int64)
    sender, receiver = _unique_pairs(sender, receiver, max(num_senders, 1))
    index = np.stack([sender, receiver], axis=1).reshape(-1, 2)
    # pairs up to each receiver cell, read at the sample boundaries (receivers are sorted)
    per_cell = np.zeros(int(receiver_offsets[-1]) + 1, dtype=np.int64)
    np.cumsum(np.bincount(receiver, minlength=int(receiver_offsets[-1])), out=per_cell[1:])
    return index, per_cell[receiver_offsets]


def build_neighbourhoods(topo: ShardTopology, *, validate: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every relation of :data:`NEIGHBOURHOODS` for a whole shard, in that order.

    Returns ``name -> (index (P, 2) int64 [sender, receiver] shard-global, offsets (S+1,) int64)`` where
    ``offsets[s]:offsets[s+1]`` are the pairs of sample s. ``validate`` checks the topology first
    (raises :class:`BadTopology`).
    """
    if validate:
        topo.validate()
    e = np.asarray(topo.edge_index, dtype=np.int64).reshape(-1, 2)
    num_nodes = int(topo.node_offsets[-1])
    num_edges = e.shape[0]
    num_rings = int(topo.ring_sizes.shape[0])
    offsets = {0: topo.node_offsets, 1: topo.edge_offsets, 2: topo.ring_offsets}
    counts = {0: num_nodes, 1: num_edges, 2: num_rings}

    edge_ids = np.arange(num_edges, dtype=np.int64)
    node_of_edge = e.reshape(-1)  # incidence (edge, node): 2 per edge
    edge_of_node = np.repeat(edge_ids, 2)
    ring_of = topo.ring_of
    ring_node = np.asarray(topo.ring_node, dtype=np.int64)
    ring_edge = np.asarray(topo.ring_edge, dtype=np.int64)

    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "0_0": pairs_sharing(node_of_edge, edge_of_node),
        "0_1": (node_of_edge, edge_of_node),
        "1_0": (edge_of_node, node_of_edge),
        "1_1_lower": pairs_sharing(edge_of_node, node_of_edge),
        "1_1_upper": pairs_sharing(ring_edge, ring_of),
        "1_2": (ring_edge, ring_of),
        "2_1": (ring_of, ring_edge),
        "2_2_lower": pairs_sharing(ring_of, ring_edge),
        "0_2": (ring_node, ring_of),
        "2_0": (ring_of, ring_node),
    }
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for spec in NEIGHBOURHOODS:
        sender, receiver = raw[spec.name]
        out[spec.name] = _finalise(sender, receiver, counts[spec.sender_rank], offsets[spec.receiver_rank])
    return out
