"""Rings (2-cells) of a bond graph: chordless cycles, or RDKit's symmetrised SSSR.

A ring is a tuple of atom indices in cyclic order, in canonical form: it starts at its smallest
atom and continues toward the smaller of that atom's two ring neighbours. Ring lists are sorted by
(size, tuple), so the output depends only on the graph, and relabelling the atoms by a permutation
maps the ring set onto the ring set of the relabelled graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from rdkit import Chem

from empcn.lift.bonds import BadMolecule

Ring = tuple[int, ...]

_POW2 = np.left_shift(1, np.arange(62, dtype=np.int64))  # bit weights, graphs of <= 62 nodes


def canonical_ring(cycle: Sequence[int]) -> Ring:
    """``cycle`` (atoms in cyclic order, either direction) rotated to start at its smallest atom and
    oriented toward the smaller of that atom's two neighbours."""
    ring = [int(v) for v in cycle]
    k = ring.index(min(ring))
    ring = ring[k:] + ring[:k]
    if len(ring) > 2 and ring[-1] < ring[1]:
        ring = ring[:1] + ring[:0:-1]
    return tuple(ring)


def _sorted_rings(rings: list[Ring]) -> list[Ring]:
    return sorted(rings, key=lambda ring: (len(ring), ring))


def _check_edges(num_nodes: int, edges: np.ndarray) -> np.ndarray:
    """edges as an (E, 2) int array; ValueError on a bad shape or dtype, out-of-range indices or
    self-loops."""
    edges = np.asarray(edges)
    if edges.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise ValueError(f"edges must be an (E, 2) integer array, got shape {edges.shape} {edges.dtype}")
    if edges.min() < 0 or edges.max() >= num_nodes:
        raise ValueError(f"edge indices must lie in 0..{num_nodes - 1}, got {edges.min()}..{edges.max()}")
    loops = edges[:, 0] == edges[:, 1]
    if loops.any():
        raise ValueError(f"self-loop on node {int(edges[loops, 0][0])}")
    return edges


def chordless_cycles(num_nodes: int, edges: np.ndarray, max_size: int = 8) -> list[Ring]:
    """Chordless (induced) cycles with 3..max_size vertices of the graph on ``num_nodes`` nodes with
    undirected ``edges`` (E, 2) int (either orientation, repeats allowed); canonical rings sorted by
    (size, tuple). ValueError on out-of-range indices or self-loops.

    Nodes of degree 1 (hydrogens) are dropped from every neighbour set first; the search then runs
    with Python int bitmasks as adjacency sets (built by one bool @ bit-weight product for graphs of
    up to 62 nodes, edge by edge on the 2-core for larger ones).
    """
    if max_size < 3:
        raise ValueError(f"max_size must be at least 3, got {max_size}")
    edges = np.asarray(edges)
    if edges.ndim != 2 or edges.shape[0] < 3 or edges.shape[1] != 2 or num_nodes > _POW2.shape[0] or edges.min() < 0:
        edges = _check_edges(num_nodes, edges)
        return _chordless_sparse(num_nodes, edges, max_size) if edges.shape[0] >= 3 else []
    first, second = edges.T
    adjacency = np.zeros((num_nodes, num_nodes), dtype=bool)
    try:
        adjacency[first, second] = adjacency[second, first] = True
    except IndexError:
        _check_edges(num_nodes, edges)
        raise
    if adjacency.trace():
        _check_edges(num_nodes, edges)
    adjacency &= adjacency.sum(axis=0) > 1  # drop degree-1 nodes from every neighbour set
    return _chordless_from_masks((adjacency @ _POW2[:num_nodes]).tolist(), max_size)


def _chordless_sparse(num_nodes: int, edges: np.ndarray, max_size: int) -> list[Ring]:
    """chordless_cycles for graphs too large for int64 masks: keeps the edges between nodes of
    degree > 1, relabels those nodes 0..m-1 in increasing order (so canonical forms survive) and
    builds the Python int masks edge by edge."""
    degree = np.bincount(edges.ravel(), minlength=num_nodes)
    edges = edges[(degree[edges[:, 0]] > 1) & (degree[edges[:, 1]] > 1)]
    if edges.shape[0] < 3:
        return []
    nodes, local = np.unique(edges, return_inverse=True)
    masks = [0] * nodes.size
    for a, b in local.reshape(-1, 2).tolist():
        masks[a] |= 1 << b
        masks[b] |= 1 << a
    labels = nodes.tolist()
    return [tuple(labels[v] for v in ring) for ring in _chordless_from_masks(masks, max_size)]


def _chordless_from_masks(adj: list[int], max_size: int) -> list[Ring]:
    """Chordless cycles of the graph with adjacency bitmasks ``adj``, canonical and sorted.

    Each cycle is grown from its smallest vertex s as an induced path s, v1, ..., vk over vertices
    above s: a new vertex must neighbour the last one and no other path vertex, except that
    touching s closes the cycle (kept once, when v1 < vk). The path's blocked set collects the path
    and the neighbours of its interior, so the test is one bitmask AND per step.
    """
    rings: list[Ring] = []
    for s, adj_s in enumerate(adj):
        above = -1 << (s + 1)  # every vertex index > s
        closers = adj_s & above
        if closers & (closers - 1) == 0:  # s needs two higher neighbours to be a ring's minimum
            continue
        stack: list[tuple[Ring, int]] = []
        rest = closers
        while rest:
            low = rest & -rest
            rest ^= low
            v1 = low.bit_length() - 1
            stack.append(((s, v1), low))  # blocked: v1 itself (s and below are outside `above`)
        while stack:
            path, blocked = stack.pop()
            last = path[-1]
            candidates = adj[last] & above & ~blocked
            grow = len(path) + 1 < max_size
            blocked_next = blocked | adj[last]  # `last` becomes interior
            while candidates:
                low = candidates & -candidates
                candidates ^= low
                w = low.bit_length() - 1
                if low & closers:
                    if path[1] < w:
                        rings.append(path + (w,))
                elif grow:
                    stack.append((path + (w,), blocked_next))
    return _sorted_rings(rings)


def sssr_cycles(smiles_or_mol: str | Chem.Mol, heavy_index: np.ndarray) -> list[Ring]:
    """RDKit's symmetrised SSSR (Chem.GetSymmSSSR) of a molecule, as canonical rings of XYZ atom
    indices sorted by (size, tuple).

    smiles_or_mol: SMILES (parsed without sanitising) or an RDKit molecule; heavy_index: (A,) int,
    XYZ index of SMILES atom k (the heavy atoms in XYZ order when the SMILES matches).
    """
    mol = smiles_or_mol
    if isinstance(smiles_or_mol, str):
        mol = Chem.MolFromSmiles(smiles_or_mol, sanitize=False)
        if mol is None:
            raise BadMolecule(f"SMILES {smiles_or_mol!r} does not parse")
    heavy_index = np.asarray(heavy_index).tolist()
    if len(heavy_index) != mol.GetNumAtoms():
        raise ValueError(f"heavy_index has {len(heavy_index)} entries for {mol.GetNumAtoms()} SMILES atoms")
    return _sorted_rings([canonical_ring([heavy_index[a] for a in ring]) for ring in Chem.GetSymmSSSR(mol)])


def sssr_cycles_from_edges(num_nodes: int, edges: np.ndarray) -> list[Ring]:
    """Symmetrised SSSR of a plain graph (for molecules whose bonds came from coordinates), as
    canonical rings sorted by (size, tuple). Builds an RDKit molecule of dummy atoms: a Python loop
    over the edges, meant for the rare fallback molecules only."""
    edges = _check_edges(num_nodes, edges)
    mol = Chem.RWMol()
    for _ in range(num_nodes):
        mol.AddAtom(Chem.Atom(0))
    for i, j in edges.tolist():
        if mol.GetBondBetweenAtoms(i, j) is None:
            mol.AddBond(i, j, Chem.BondType.SINGLE)
    return _sorted_rings([canonical_ring(ring) for ring in Chem.GetSymmSSSR(mol)])


def ring_edge_slots(rings: Sequence[Sequence[int]], edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """For every ring vertex slot k, the row of ``edge_index`` joining slot k to slot k + 1
    (cyclically), concatenated over ``rings`` in list order: (sum of ring sizes,) int64.

    edge_index: (E, 2) int, i < j in each row, rows sorted lexicographically (as MoleculeBonds.index).
    Raises ValueError when a ring uses a pair of atoms that is not an edge (or edge_index is not
    sorted that way).
    """
    if len(rings) == 0:
        return np.zeros(0, dtype=np.int64)
    a = np.fromiter(chain.from_iterable(rings), dtype=np.int64)
    b = np.fromiter(chain.from_iterable(tuple(r[1:]) + (r[0],) for r in rings), dtype=np.int64)
    keys = np.minimum(a, b) * num_nodes + np.maximum(a, b)
    edge_index = np.asarray(edge_index)
    edge_keys = edge_index @ np.array([num_nodes, 1], dtype=np.int64)  # i * N + j, increasing
    slots = np.searchsorted(edge_keys, keys)
    missing = edge_keys.take(slots, mode="clip") != keys if edge_keys.size else np.ones(keys.size, bool)
    if missing.any():
        _raise_missing_edge(rings, a, b, missing, edge_index, edge_keys)
    return slots


def _raise_missing_edge(
    rings: Sequence[Sequence[int]],
    a: np.ndarray,
    b: np.ndarray,
    missing: np.ndarray,
    edge_index: np.ndarray,
    edge_keys: np.ndarray,
) -> None:
    """The ValueError of ring_edge_slots: a badly sorted edge_index, or the first ring non-edge."""
    if edge_index.ndim != 2 or edge_index.shape[1] != 2:
        raise ValueError(f"edge_index must be (E, 2), got shape {edge_index.shape}")
    if (np.diff(edge_keys) <= 0).any() or (edge_index[:, 0] >= edge_index[:, 1]).any():
        raise ValueError("edge_index rows must have i < j and be sorted lexicographically without repeats")
    k = int(np.flatnonzero(missing)[0])
    ring = int(np.searchsorted(np.cumsum([len(r) for r in rings]), k, side="right"))
    raise ValueError(f"ring {tuple(rings[ring])} uses non-edge ({int(a[k])}, {int(b[k])})")
