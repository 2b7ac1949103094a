"""Ring cells: chordless cycles (hand-checked chemistry, brute force, relabelling), SSSR, edge slots."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from helpers import qm9pack_csv
from rdkit import Chem

from empcn.lift.bonds import molecule_bonds
from empcn.lift.rings import (
    canonical_ring,
    chordless_cycles,
    ring_edge_slots,
    sssr_cycles,
    sssr_cycles_from_edges,
)

QM9_CSV = qm9pack_csv()
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def cycle_edges(*cycle: int) -> list[tuple[int, int]]:
    return [(cycle[k], cycle[(k + 1) % len(cycle)]) for k in range(len(cycle))]


def with_hydrogens(edges: list[tuple[int, int]], heavy: int, per_atom: list[int]) -> tuple[int, np.ndarray]:
    """Append per_atom[k] hydrogens (degree-1 nodes) to heavy atom k; returns (num_nodes, edges)."""
    out = list(edges)
    n = heavy
    for atom, count in enumerate(per_atom):
        for _ in range(count):
            out.append((atom, n))
            n += 1
    return n, np.array(out, dtype=np.int64)


def sizes(rings) -> list[int]:
    return [len(r) for r in rings]


# Hand-written heavy-atom graphs.
BENZENE = cycle_edges(0, 1, 2, 3, 4, 5)
# naphthalene: ring A 0-1-2-3-4-9, ring B 4-5-6-7-8-9, fusion bond 4-9
NAPHTHALENE = cycle_edges(0, 1, 2, 3, 4, 9) + [(4, 5), (5, 6), (6, 7), (7, 8), (8, 9)]
# cubane: vertex = 3-bit corner label, edges join labels differing in one bit
CUBANE = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
# adamantane: bridgeheads 0-3 (the K4 vertices), CH2 4-9 subdivide the six K4 edges
ADAMANTANE_BRIDGES = {4: (0, 1), 5: (0, 2), 6: (0, 3), 7: (1, 2), 8: (1, 3), 9: (2, 3)}
ADAMANTANE = [(a, m) for m, pair in ADAMANTANE_BRIDGES.items() for a in pair]
# norbornane: bridgeheads 0 and 3; bridges 1-2, 4-5 and 6
NORBORNANE = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 6), (6, 3)]
# bicyclo[2.2.2]octane: bridgeheads 0 and 1; bridges 2-3, 4-5, 6-7
BICYCLOOCTANE = [(0, 2), (2, 3), (3, 1), (0, 4), (4, 5), (5, 1), (0, 6), (6, 7), (7, 1)]


def test_benzene_one_six_ring_hydrogens_ignored():
    n, edges = with_hydrogens(BENZENE, 6, [1] * 6)
    assert chordless_cycles(n, edges) == [(0, 1, 2, 3, 4, 5)]


def test_cyclopropane():
    n, edges = with_hydrogens(cycle_edges(0, 1, 2), 3, [2, 2, 2])
    assert chordless_cycles(n, edges) == [(0, 1, 2)]


def test_tree_has_no_rings():
    # isobutane with its hydrogens, and a bare path
    n, edges = with_hydrogens([(0, 1), (1, 2), (1, 3)], 4, [3, 1, 3, 3])
    assert chordless_cycles(n, edges) == []
    assert chordless_cycles(5, np.array([[0, 1], [1, 2], [2, 3], [3, 4]])) == []
    assert chordless_cycles(3, np.zeros((0, 2), dtype=np.int64)) == []


def test_naphthalene_has_no_ten_ring():
    # The 10-cycle around the perimeter has the fusion bond 4-9 as a chord.
    rings = chordless_cycles(10, np.array(NAPHTHALENE), max_size=10)
    assert rings == [(0, 1, 2, 3, 4, 9), (4, 5, 6, 7, 8, 9)]


def test_cubane_faces_and_equatorial_hexagons():
    # By hand: the cube graph Q3 is bipartite (no odd cycles). Its 4-cycles are the 6 faces. A 6-cycle
    # leaves out two corners: if they are antipodal (e.g. 000 and 111) the six remaining corners
    # induce exactly 6 edges, the "equatorial" hexagon, which is chordless -- 4 antipodal pairs give 4
    # hexagons. Leaving out two adjacent corners leaves 7 induced edges (a chord); two corners at
    # distance 2 leave a corner of degree 1 (no 6-cycle at all). An 8-cycle uses all 8 corners, which
    # induce 12 edges > 8: chords. So: 6 four-rings + 4 six-rings.
    rings = chordless_cycles(8, np.array(CUBANE))
    assert sizes(rings) == [4] * 6 + [6] * 4
    faces = {frozenset(v for v in range(8) if (v >> bit) & 1 == side) for bit in range(3) for side in (0, 1)}
    assert {frozenset(r) for r in rings[:6]} == faces
    for hexagon in rings[6:]:
        left_out = set(range(8)) - set(hexagon)
        a, b = left_out
        assert a ^ b == 7  # antipodal corners


def test_adamantane():
    # Adamantane is K4 with every edge subdivided by a CH2: its cycles are the K4 cycles, with no
    # chords (every edge joins a bridgehead and a CH2 next to it on the cycle): 4 triangles of K4 ->
    # four 6-rings, 3 four-cycles of K4 -> three 8-rings.
    rings = chordless_cycles(10, np.array(ADAMANTANE))
    assert sizes(rings) == [6] * 4 + [8] * 3
    assert sizes(chordless_cycles(10, np.array(ADAMANTANE), max_size=7)) == [6] * 4


def test_norbornane_and_bicyclooctane():
    # bicyclo[2.2.1]: bridge pairs (2,2) -> 6-ring, (2,1) twice -> 5-rings; bridgeheads not bonded.
    assert chordless_cycles(7, np.array(NORBORNANE)) == [(0, 1, 2, 3, 6), (0, 5, 4, 3, 6), (0, 1, 2, 3, 4, 5)]
    # bicyclo[2.2.2]: three bridge pairs -> three 6-rings
    assert sizes(chordless_cycles(8, np.array(BICYCLOOCTANE))) == [6, 6, 6]


def test_max_size_cuts_eight_versus_nine_rings():
    eight, nine = np.array(cycle_edges(*range(8))), np.array(cycle_edges(*range(9)))
    assert chordless_cycles(8, eight, max_size=8) == [tuple(range(8))]
    assert chordless_cycles(9, nine, max_size=8) == []
    assert chordless_cycles(9, nine, max_size=9) == [tuple(range(9))]
    assert chordless_cycles(8, eight, max_size=7) == []


def test_canonical_start_and_direction():
    # cycle 5-2-7-0-3: start at 0, whose ring neighbours are 7 and 3 -> go toward 3
    edges = np.array(cycle_edges(5, 2, 7, 0, 3))
    assert chordless_cycles(8, edges) == [(0, 3, 5, 2, 7)]
    assert canonical_ring((7, 2, 5, 3, 0)) == (0, 3, 5, 2, 7)
    assert canonical_ring([3, 0, 7, 2, 5]) == (0, 3, 5, 2, 7)


def test_sorted_by_size_then_tuple():
    # two triangles and a square sharing nothing
    edges = np.array(cycle_edges(4, 5, 6, 7) + cycle_edges(8, 9, 10) + cycle_edges(0, 1, 2))
    assert chordless_cycles(11, edges) == [(0, 1, 2), (8, 9, 10), (4, 5, 6, 7)]


def brute_force_chordless(n: int, edges: np.ndarray, max_size: int) -> set[tuple[int, ...]]:
    """Every vertex subset of size 3..max_size whose induced subgraph is one cycle, in canonical form."""
    adjacency = np.zeros((n, n), dtype=bool)
    adjacency[edges[:, 0], edges[:, 1]] = adjacency[edges[:, 1], edges[:, 0]] = True
    found = set()
    for k in range(3, max_size + 1):
        for subset in combinations(range(n), k):
            sub = adjacency[np.ix_(subset, subset)]
            if not (sub.sum(axis=1) == 2).all():
                continue
            order, previous = [0], -1  # walk the 2-regular subgraph; a cycle if the walk covers it
            while True:
                nxt = [v for v in np.flatnonzero(sub[order[-1]]) if v != previous][0]
                if nxt == 0:
                    break
                previous = order[-1]
                order.append(int(nxt))
            if len(order) == k:
                found.add(canonical_ring([subset[v] for v in order]))
    return found


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 10))
    all_pairs = np.array(list(combinations(range(n), 2)))
    edges = all_pairs[rng.random(len(all_pairs)) < rng.uniform(0.25, 0.6)]
    edges = edges[:, ::-1] if seed % 2 else edges  # orientation must not matter
    max_size = int(rng.integers(3, 9))
    rings = chordless_cycles(n, edges, max_size=max_size)
    assert set(rings) == brute_force_chordless(n, np.asarray(edges), max_size)
    assert rings == sorted(rings, key=lambda r: (len(r), r))
    assert all(canonical_ring(r) == r for r in rings)


def relabelled_rings(n: int, edges: np.ndarray, perm: np.ndarray, max_size: int = 8) -> list:
    """Rings of the graph relabelled by atom v -> perm[v], mapped back to the old labels."""
    inverse = np.argsort(perm)
    rings = chordless_cycles(n, perm[edges], max_size=max_size)
    return sorted((canonical_ring(inverse[list(r)]) for r in rings), key=lambda r: (len(r), r))


@pytest.fixture(scope="module")
def qm9() -> pd.DataFrame:
    """The first 3,300 QM9 molecules (1-based QM9 index in column Index)."""
    return pd.read_csv(QM9_CSV, usecols=["Index", "SMILES", "Elements", "XYZ_Ang"], nrows=3300)


def parse_row(row) -> tuple[np.ndarray, np.ndarray]:
    """(z (N,), pos (N, 3) Å) of a QM9 CSV row."""
    z = np.array([ATOMIC_NUMBER[s] for s in row.Elements.strip("[]").replace("'", "").split(",")])
    pos = np.array(row.XYZ_Ang.replace("[", "").replace("]", "").split(","), dtype=float).reshape(-1, 3)
    return z, pos


@pytest.fixture(scope="module")
def qm9_ring_molecules(qm9) -> list[tuple[int, np.ndarray, str]]:
    """(num_atoms, bond index, SMILES) of the ring molecules among CSV rows 3000-3299."""
    out = []
    for row in qm9.iloc[3000:].itertuples():
        if "1" in row.SMILES:
            z, pos = parse_row(row)
            out.append((z.size, molecule_bonds(z, pos, row.SMILES).index, row.SMILES))
    return out


def test_relabelling_invariance(qm9_ring_molecules):
    rng = np.random.default_rng(7)
    graphs = [(n, index) for n, index, _ in qm9_ring_molecules[:60]]
    graphs += [(8, np.array(CUBANE)), (10, np.array(ADAMANTANE)), (10, np.array(NAPHTHALENE))]
    for n, edges in graphs:
        reference = chordless_cycles(n, edges)
        for _ in range(3):
            assert relabelled_rings(n, edges, rng.permutation(n)) == reference


def test_qm9_rings_agree_with_rdkit_sssr_for_simple_ring_systems(qm9_ring_molecules):
    # For molecules whose SSSR rings are all chordless and cover every chordless cycle (no cages,
    # no bridged systems), both ring sets coincide. This holds for most of QM9; require 80 %.
    same = 0
    for n, index, smiles in qm9_ring_molecules:
        heavy = np.arange(Chem.MolFromSmiles(smiles, sanitize=False).GetNumAtoms())
        same += set(chordless_cycles(n, index)) == set(sssr_cycles(smiles, heavy))
    assert same >= 0.8 * len(qm9_ring_molecules)


def test_real_qm9_norbornane(qm9):
    # QM9 molecule 3198 is norbornane, 'C1CC2CCC1C2': two 5-rings and one 6-ring.
    row = next(qm9[qm9.Index == 3198].itertuples())
    assert row.SMILES == "C1CC2CCC1C2"
    z, pos = parse_row(row)
    bonds = molecule_bonds(z, pos, row.SMILES)
    rings = chordless_cycles(z.size, bonds.index)
    assert sizes(rings) == [5, 5, 6]
    assert all(z[v] == 6 for ring in rings for v in ring)
    assert sizes(sssr_cycles(row.SMILES, np.flatnonzero(z != 1))) == [5, 5]


def test_sssr_naphthalene_and_cubane():
    assert sssr_cycles("c1ccc2ccccc2c1", np.arange(10)) == [(0, 1, 2, 3, 8, 9), (3, 4, 5, 6, 7, 8)]
    cubane = "C12C3C4C1C5C2C3C45"
    assert len(Chem.GetSSSR(Chem.MolFromSmiles(cubane))) == 5  # a cube has cycle rank 12 - 8 + 1 = 5
    rings = sssr_cycles(cubane, np.arange(8))
    assert sizes(rings) == [4] * 6  # symmetrised: all six faces
    # heavy_index maps SMILES atoms to XYZ indices (here hydrogens interleaved: heavy at even slots)
    mapped = sssr_cycles(Chem.MolFromSmiles(cubane, sanitize=False), np.arange(8) * 2)
    assert mapped == sorted((canonical_ring([2 * v for v in r]) for r in rings), key=lambda r: (len(r), r))
    assert sizes(sssr_cycles_from_edges(8, np.array(CUBANE))) == [4] * 6
    assert sizes(sssr_cycles_from_edges(10, np.array(ADAMANTANE))) == [6] * 4


def test_sssr_errors():
    with pytest.raises(ValueError, match="heavy_index"):
        sssr_cycles("C1CC1", np.arange(4))
    with pytest.raises(ValueError, match="C1CC"):
        sssr_cycles("C1CC", np.arange(3))


def test_ring_edge_slots():
    n, edges = with_hydrogens(NAPHTHALENE, 10, [1, 1, 1, 1, 0, 1, 1, 1, 1, 0])
    index = np.array(sorted(map(tuple, np.sort(edges, axis=1).tolist())))
    rings = chordless_cycles(n, index)
    slots = ring_edge_slots(rings, index, n)
    assert slots.shape == (12,)
    expected = [tuple(sorted((r[k], r[(k + 1) % len(r)]))) for r in rings for k in range(len(r))]
    assert [tuple(row) for row in index[slots].tolist()] == expected
    assert ring_edge_slots([], index, n).shape == (0,)
    with pytest.raises(ValueError, match=r"non-edge \(3, 0\)"):
        ring_edge_slots([(0, 1, 2, 3)], index, n)
    with pytest.raises(ValueError, match="sorted"):
        ring_edge_slots(rings, index[::-1], n)


def test_larger_graph_path_matches_small_graph_path():
    # Over 62 nodes the masks are built edge by edge; the rings must not change.
    edges = np.array(NAPHTHALENE + [(a + 10, b + 10) for a, b in CUBANE])
    small = chordless_cycles(20, edges)
    assert chordless_cycles(100, edges) == small
    shifted = chordless_cycles(200, edges + 150)
    assert shifted == [tuple(v + 150 for v in r) for r in small]


def test_bad_edges_raise():
    with pytest.raises(ValueError, match="self-loop"):
        chordless_cycles(4, np.array([[0, 1], [1, 2], [2, 2], [2, 0]]))
    with pytest.raises(ValueError, match="0..3"):
        chordless_cycles(4, np.array([[0, 1], [1, 2], [2, 4]]))
    with pytest.raises(ValueError, match="0..3"):
        chordless_cycles(4, np.array([[0, 1], [1, 2], [2, -1]]))
    with pytest.raises(ValueError, match="max_size"):
        chordless_cycles(4, np.array([[0, 1]]), max_size=2)


def networkx_rings(num_nodes: int, edges: np.ndarray, max_size: int = 8) -> list[tuple[int, ...]]:
    """networkx's chordless cycles of 3..max_size nodes, canonical and sorted like chordless_cycles."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(map(tuple, np.asarray(edges).tolist()))
    cycles = nx.chordless_cycles(graph, length_bound=max_size)
    return sorted((canonical_ring(c) for c in cycles if len(c) >= 3), key=lambda r: (len(r), r))


def test_chordless_cycles_agree_with_networkx_on_random_graphs():
    rng = np.random.default_rng(11)
    for trial in range(150):
        n = int(rng.integers(4, 14))
        pairs = np.array(list(combinations(range(n), 2)))
        edges = pairs[rng.random(len(pairs)) < rng.uniform(0.15, 0.5)]
        max_size = int(rng.integers(3, 9))
        assert chordless_cycles(n, edges, max_size) == networkx_rings(n, edges, max_size), (trial, n, edges.tolist())


def test_chordless_cycles_agree_with_networkx_on_qm9(qm9):
    rows = list(qm9.itertuples())
    assert len(rows) == 3300
    for row in rows:
        z, pos = parse_row(row)
        index = molecule_bonds(z, pos, row.SMILES).index
        assert chordless_cycles(z.size, index) == networkx_rings(z.size, index), row.Index
