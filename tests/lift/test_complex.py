"""Neighbourhoods of hand-built complexes and real QM9 molecules, global indexing, bad input, speed."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from helpers import qm9pack_csv

from empcn.geometry import cell_barycentres, pair_distances, ring_geometry
from empcn.lift.complex import (
    NEIGHBOURHOODS,
    BadTopology,
    NeighbourhoodSpec,
    ShardTopology,
    build_neighbourhoods,
    pairs_sharing,
)

QM9_CSV = qm9pack_csv()
UNDIRECTED = ("0_0", "1_1_lower", "1_1_upper", "2_2_lower")
REVERSES = (("0_1", "1_0"), ("1_2", "2_1"), ("0_2", "2_0"))


@dataclass
class Sample:
    """One complex with local indices; rings as cyclic node lists (edges are looked up)."""

    num_nodes: int
    edges: list[tuple[int, int]]
    rings: list[list[int]] = field(default_factory=list)

    def ring_edges(self, ring: list[int]) -> list[int]:
        lookup = {frozenset(e): i for i, e in enumerate(self.edges)}
        return [lookup[frozenset((ring[k], ring[(k + 1) % len(ring)]))] for k in range(len(ring))]


def stack(samples: list[Sample]) -> ShardTopology:
    """Shard-global topology of several samples (per-sample loop: test helper only)."""
    nodes, edges, slots_n, slots_e, sizes = [0], [0], [], [], []
    edge_index, ring_offsets = [], [0]
    for s in samples:
        n0, e0 = nodes[-1], edges[-1]
        edge_index += [(i + n0, j + n0) for i, j in s.edges]
        for ring in s.rings:
            slots_n += [v + n0 for v in ring]
            slots_e += [e + e0 for e in s.ring_edges(ring)]
            sizes.append(len(ring))
        nodes.append(n0 + s.num_nodes)
        edges.append(e0 + len(s.edges))
        ring_offsets.append(ring_offsets[-1] + len(s.rings))
    i64 = dict(dtype=np.int64)
    return ShardTopology(
        node_offsets=np.array(nodes, **i64),
        edge_index=np.array(edge_index, **i64).reshape(-1, 2),
        edge_offsets=np.array(edges, **i64),
        ring_node=np.array(slots_n, **i64),
        ring_edge=np.array(slots_e, **i64),
        ring_sizes=np.array(sizes, **i64),
        ring_offsets=np.array(ring_offsets, **i64),
    )


# Naphthalene heavy atoms: ring A = 0-1-2-3-4-5, ring B = 4-6-7-8-9-5, fusion bond 4-5 (edge 4).
NAPHTHALENE = Sample(
    10,
    [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (4, 6), (6, 7), (7, 8), (8, 9), (5, 9)],
    [[0, 1, 2, 3, 4, 5], [4, 6, 7, 8, 9, 5]],
)
TRIANGLE = Sample(3, [(0, 1), (1, 2), (0, 2)], [[0, 1, 2]])  # cyclopropane
ETHANOL = Sample(3, [(0, 1), (1, 2)])  # C-C-O, no rings
ATOM = Sample(1, [])  # methane heavy atom, no edges
# Bicyclo[1.1.1]pentane: bridgeheads 0, 1; bridges 2, 3, 4; three 4-rings, each pair sharing two edges.
BICYCLOPENTANE = Sample(
    5,
    [(0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)],
    [[0, 2, 1, 3], [0, 2, 1, 4], [0, 3, 1, 4]],
)


def as_set(index: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(map(int, p)) for p in index}


def reference(s: Sample) -> dict[str, set[tuple[int, int]]]:
    """Brute-force relations of one sample from their definitions (sets, local indices)."""
    edge_nodes = [set(e) for e in s.edges]
    ring_edges = [set(s.ring_edges(r)) for r in s.rings]
    ring_nodes = [set(r) for r in s.rings]
    ne, nr = len(s.edges), len(s.rings)
    return {
        "0_0": {(i, j) for e in s.edges for i, j in (e, e[::-1])},
        "0_1": {(v, e) for e in range(ne) for v in edge_nodes[e]},
        "1_0": {(e, v) for e in range(ne) for v in edge_nodes[e]},
        "1_1_lower": {(a, b) for a in range(ne) for b in range(ne) if a != b and edge_nodes[a] & edge_nodes[b]},
        "1_1_upper": {(a, b) for a in range(ne) for b in range(ne) if a != b and any({a, b} <= r for r in ring_edges)},
        "1_2": {(e, r) for r in range(nr) for e in ring_edges[r]},
        "2_1": {(r, e) for r in range(nr) for e in ring_edges[r]},
        "2_2_lower": {(a, b) for a in range(nr) for b in range(nr) if a != b and ring_edges[a] & ring_edges[b]},
        "0_2": {(v, r) for r in range(nr) for v in ring_nodes[r]},
        "2_0": {(r, v) for r in range(nr) for v in ring_nodes[r]},
    }


def check_conventions(topo: ShardTopology, nbr: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Order, dtype, no duplicates, no self-pairs, offsets and sender/receiver in the same sample."""
    assert list(nbr) == [spec.name for spec in NEIGHBOURHOODS]
    offsets = {0: topo.node_offsets, 1: topo.edge_offsets, 2: topo.ring_offsets}
    for spec in NEIGHBOURHOODS:
        index, off = nbr[spec.name]
        assert index.dtype == np.int64 and off.dtype == np.int64
        assert index.ndim == 2 and index.shape[1] == 2
        assert off.shape == (topo.num_samples + 1,) and off[0] == 0 and off[-1] == len(index)
        if len(index):
            key = index[:, 1] * (index[:, 0].max() + 1) + index[:, 0]
            assert np.all(np.diff(key) > 0), f"{spec.name}: not strictly sorted by (receiver, sender)"
        if spec.sender_rank == spec.receiver_rank:
            assert np.all(index[:, 0] != index[:, 1]), f"{spec.name}: self-pair"
        s_send = np.searchsorted(offsets[spec.sender_rank], index[:, 0], side="right") - 1
        s_recv = np.searchsorted(offsets[spec.receiver_rank], index[:, 1], side="right") - 1
        assert np.array_equal(s_send, s_recv), f"{spec.name}: pair across samples"
        assert np.array_equal(np.bincount(s_recv, minlength=topo.num_samples), np.diff(off))


# ---------------------------------------------------------------- the generic routine


def test_pairs_sharing_expands_each_group() -> None:
    # groups: 10 -> {1, 2, 3}, 20 -> {3, 4}, 30 -> {5} ; member 1 listed twice in group 10
    a = np.array([3, 1, 4, 2, 5, 1, 3])
    b = np.array([10, 10, 20, 10, 30, 10, 20])
    sender, receiver = pairs_sharing(a, b)
    pairs = list(zip(sender.tolist(), receiver.tolist()))
    assert len(pairs) == 3 * 2 + 2 * 1  # g(g-1) per group, singleton group gives none
    assert set(pairs) == {(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2), (3, 4), (4, 3)}
    empty = pairs_sharing(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_spec_table() -> None:
    names = [spec.name for spec in NEIGHBOURHOODS]
    assert names == ["0_0", "0_1", "1_0", "1_1_lower", "1_1_upper", "1_2", "2_1", "2_2_lower", "0_2", "2_0"]
    for spec in NEIGHBOURHOODS:
        assert isinstance(spec, NeighbourhoodSpec)
        assert spec.name.startswith(f"{spec.sender_rank}_{spec.receiver_rank}") and spec.doc


# ---------------------------------------------------------------- naphthalene by hand


def test_naphthalene_counts_and_pairs() -> None:
    topo = stack([NAPHTHALENE])
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    counts = {name: len(index) for name, (index, _) in nbr.items()}
    # 11 bonds; atoms 4, 5 have degree 3 (3·2 lower pairs each), the other 8 degree 2 (2 each);
    # each 6-ring gives 6·5 upper pairs and no edge pair lies in both rings; 12 ring slots.
    assert counts == {
        "0_0": 22, "0_1": 22, "1_0": 22, "1_1_lower": 8 * 2 + 2 * 6, "1_1_upper": 2 * 30,
        "1_2": 12, "2_1": 12, "2_2_lower": 2, "0_2": 12, "2_0": 12,
    }  # fmt: skip
    assert nbr["2_2_lower"][0].tolist() == [[1, 0], [0, 1]]
    assert as_set(nbr["1_2"][0]) >= {(4, 0), (4, 1)}  # the fusion bond bounds both rings
    assert sorted(nbr["2_1"][0][nbr["2_1"][0][:, 0] == 1, 1].tolist()) == [4, 6, 7, 8, 9, 10]
    upper, lower = as_set(nbr["1_1_upper"][0]), as_set(nbr["1_1_lower"][0])
    assert {(4, 6), (6, 4), (0, 4), (4, 0)} <= upper and (0, 6) not in upper  # 0-1 and 4-6: different rings
    assert {(3, 4), (3, 6), (4, 6)} <= lower and (0, 2) not in lower
    assert sorted(nbr["0_2"][0][nbr["0_2"][0][:, 1] == 0, 0].tolist()) == [0, 1, 2, 3, 4, 5]
    nodes_in_two_rings = np.flatnonzero(np.bincount(nbr["0_2"][0][:, 0], minlength=10) == 2)
    assert nodes_in_two_rings.tolist() == [4, 5]
    assert nbr["1_0"][0][nbr["1_0"][0][:, 0] == 4, 1].tolist() == [4, 5]


def test_deduplication_bicyclopentane() -> None:
    """Two 4-rings share two edges; an edge pair (one bridge) lies in two rings: each counts once."""
    topo = stack([BICYCLOPENTANE])
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    assert len(nbr["2_2_lower"][0]) == 3 * 2  # every ordered pair of the 3 rings, once
    assert len(nbr["1_1_upper"][0]) == 6 * 5  # any two bridges form a ring, so every edge pair
    assert len(nbr["1_2"][0]) == 3 * 4 and len(nbr["0_2"][0]) == 3 * 4
    assert as_set(nbr["1_1_upper"][0]) == reference(BICYCLOPENTANE)["1_1_upper"]


def test_matches_brute_force_definitions() -> None:
    for sample in (NAPHTHALENE, TRIANGLE, ETHANOL, ATOM, BICYCLOPENTANE):
        nbr = build_neighbourhoods(stack([sample]))
        ref = reference(sample)
        for name, (index, _) in nbr.items():
            assert as_set(index) == ref[name], name


# ---------------------------------------------------------------- shards


def test_two_sample_shard_global_indices_and_offsets() -> None:
    topo = stack([TRIANGLE, NAPHTHALENE])
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    alone = {0: build_neighbourhoods(stack([TRIANGLE])), 1: build_neighbourhoods(stack([NAPHTHALENE]))}
    shift = {0: (0, 0, 0), 1: (3, 3, 1)}  # nodes, edges, rings before each sample
    for spec in NEIGHBOURHOODS:
        index, off = nbr[spec.name]
        for s in (0, 1):
            local = alone[s][spec.name][0]
            part = index[off[s] : off[s + 1]]
            expect = local + np.array([shift[s][spec.sender_rank], shift[s][spec.receiver_rank]])
            assert np.array_equal(part, expect), (spec.name, s)
    # triangle: each edge shares a node with both others, and the ring with both others
    assert np.diff(nbr["1_1_lower"][1]).tolist() == [6, 28]
    assert np.diff(nbr["1_1_upper"][1]).tolist() == [6, 60]
    assert np.diff(nbr["2_2_lower"][1]).tolist() == [0, 2]
    assert nbr["2_2_lower"][0].tolist() == [[2, 1], [1, 2]]


def test_samples_without_rings_or_edges() -> None:
    topo = stack([ATOM, ETHANOL, NAPHTHALENE, ATOM])
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    assert np.diff(nbr["0_0"][1]).tolist() == [0, 4, 22, 0]
    assert np.diff(nbr["1_1_lower"][1]).tolist() == [0, 2, 28, 0]
    for name in ("1_1_upper", "1_2", "2_1", "2_2_lower", "0_2", "2_0"):
        assert np.diff(nbr[name][1])[[0, 1, 3]].tolist() == [0, 0, 0], name
    assert nbr["0_0"][0][:4].tolist() == [[2, 1], [1, 2], [3, 2], [2, 3]]  # ethanol nodes 1..3


@pytest.mark.parametrize("samples", [[], [ATOM], [ETHANOL, ATOM]])
def test_shards_with_nothing_to_pair(samples: list[Sample]) -> None:
    topo = stack(samples)
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    assert len(nbr["2_0"][0]) == 0 and len(nbr["1_1_upper"][0]) == 0


def test_symmetry_and_reverse_relations() -> None:
    nbr = build_neighbourhoods(stack([TRIANGLE, NAPHTHALENE, BICYCLOPENTANE, ETHANOL]))
    for name in UNDIRECTED:
        pairs = as_set(nbr[name][0])
        assert pairs == {(j, i) for i, j in pairs}, name
    for forward, backward in REVERSES:
        assert as_set(nbr[forward][0]) == {(j, i) for i, j in as_set(nbr[backward][0])}
        assert np.array_equal(nbr[forward][1][-1:], nbr[backward][1][-1:])


# ---------------------------------------------------------------- real QM9 molecules (RDKit rings)


def _qm9_samples(limit: int) -> list[Sample]:
    """Heavy-atom complexes of the first ``limit`` ring-bearing QM9 molecules, rings from RDKit SSSR."""
    from rdkit import Chem

    samples: list[Sample] = []
    with QM9_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            mol = Chem.MolFromSmiles(row["SMILES"])
            if mol is None or mol.GetRingInfo().NumRings() == 0:
                continue
            edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
            rings = [list(r) for r in mol.GetRingInfo().AtomRings()]
            samples.append(Sample(mol.GetNumAtoms(), edges, rings))
            if len(samples) == limit:
                break
    return samples


def test_qm9_molecules_match_brute_force() -> None:
    samples = _qm9_samples(150)
    assert any(len(s.rings) >= 2 for s in samples)  # fused / bridged systems are included
    topo = stack(samples)
    nbr = build_neighbourhoods(topo)
    check_conventions(topo, nbr)
    shifts = {0: topo.node_offsets, 1: topo.edge_offsets, 2: topo.ring_offsets}
    for s, sample in enumerate(samples):
        ref = reference(sample)
        for spec in NEIGHBOURHOODS:
            index, off = nbr[spec.name]
            local = index[off[s] : off[s + 1]] - [shifts[spec.sender_rank][s], shifts[spec.receiver_rank][s]]
            assert as_set(local) == ref[spec.name], (s, spec.name)


# ---------------------------------------------------------------- geometry on neighbourhoods


def test_naphthalene_pair_distances_closed_form() -> None:
    """Regular naphthalene of side a: ring centres √3·a apart; ring to its vertices a; bonded atoms a."""
    a = 1.4
    h = a * math.sqrt(3) / 2  # apothem: ring centres at (∓h, 0), fusion bond 4-5 on x = 0

    def on_circle(centre_x: float, degrees: list[float]) -> np.ndarray:
        t = np.radians(degrees)
        return np.stack([centre_x + a * np.cos(t), a * np.sin(t), np.zeros(len(t))], 1)

    pos = np.zeros((10, 3))
    pos[[0, 1, 2, 3, 4, 5]] = on_circle(-h, [270, 210, 150, 90, 30, -30])
    pos[[6, 7, 8, 9]] = on_circle(h, [90, 30, -30, -90])
    np.testing.assert_allclose(on_circle(h, [150, 210]), pos[[4, 5]], atol=1e-12)  # shared vertices agree
    topo = stack([NAPHTHALENE])
    nbr = build_neighbourhoods(topo)
    p = torch.from_numpy(pos)
    ring_of = torch.from_numpy(topo.ring_of)
    geo = ring_geometry(p, torch.from_numpy(topo.ring_node), ring_of, 2)
    barys = cell_barycentres(p, torch.from_numpy(topo.edge_index), geo)
    dist = {
        s.name: pair_distances(barys[s.sender_rank], barys[s.receiver_rank], torch.from_numpy(nbr[s.name][0]))
        for s in NEIGHBOURHOODS
    }
    torch.testing.assert_close(geo.area, torch.full((2,), 3 * math.sqrt(3) / 2 * a**2, dtype=torch.float64))
    torch.testing.assert_close(dist["2_2_lower"], torch.full((2,), math.sqrt(3) * a, dtype=torch.float64))
    torch.testing.assert_close(dist["2_0"], torch.full((12,), a, dtype=torch.float64))
    torch.testing.assert_close(dist["0_0"], torch.full((22,), a, dtype=torch.float64))
    torch.testing.assert_close(dist["1_2"], torch.full((12,), a * math.sqrt(3) / 2, dtype=torch.float64))


# ---------------------------------------------------------------- bad input


def _replace(topo: ShardTopology, **changes: np.ndarray) -> ShardTopology:
    return ShardTopology(**{**{k: getattr(topo, k) for k in topo.__dataclass_fields__}, **changes})


def test_bad_topologies_name_the_sample() -> None:
    topo = stack([TRIANGLE, NAPHTHALENE])
    cross = topo.edge_index.copy()
    cross[5] = [1, 7]  # an edge of sample 1 touching a node of sample 0
    with pytest.raises(BadTopology, match=r"sample 1: edge 5 joins nodes \[1, 7\] of another sample"):
        build_neighbourhoods(_replace(topo, edge_index=cross))
    wrong_edge = topo.ring_edge.copy()
    wrong_edge[4] = 13  # ring 1 slot 1 (nodes 4 → 5 locally 1 → 2) given an unrelated bond
    with pytest.raises(BadTopology, match=r"sample 1: ring 1 edge 13 .* not consecutive"):
        build_neighbourhoods(_replace(topo, ring_edge=wrong_edge))
    loop = topo.edge_index.copy()
    loop[0] = [2, 2]
    with pytest.raises(BadTopology, match="sample 0: edge 0 is a self-loop"):
        build_neighbourhoods(_replace(topo, edge_index=loop))
    with pytest.raises(BadTopology, match="edge_offsets must run from 0 to 14"):
        build_neighbourhoods(_replace(topo, edge_offsets=np.array([0, 3, 13])))
    with pytest.raises(BadTopology, match="ring_sizes must sum"):
        build_neighbourhoods(_replace(topo, ring_sizes=np.array([3, 5, 6])))
    digon = stack([Sample(2, [(0, 1)]), Sample(3, [(0, 1), (1, 2), (0, 2)])])
    with pytest.raises(BadTopology, match="sample 1: ring 0 has 2 vertices, need >= 3"):
        build_neighbourhoods(
            _replace(
                digon,
                ring_node=np.array([2, 3]),
                ring_edge=np.array([1, 1]),
                ring_sizes=np.array([2]),
                ring_offsets=np.array([0, 0, 1]),
            )
        )
    with pytest.raises(BadTopology, match="integer numpy array"):
        build_neighbourhoods(_replace(topo, ring_node=topo.ring_node.astype(float)))


# ---------------------------------------------------------------- speed


def synthetic_shard(num_samples: int) -> tuple[ShardTopology, np.ndarray]:
    """Naphthalene plus 8 substituents (18 nodes, 19 edges, 2 rings) tiled ``num_samples`` times."""
    subst = [0, 1, 2, 3, 6, 7, 8, 9]
    base = Sample(18, NAPHTHALENE.edges + [(v, 10 + k) for k, v in enumerate(subst)], NAPHTHALENE.rings)
    one = stack([base])
    s = np.arange(num_samples, dtype=np.int64)
    n, e, r = 18, 19, 2

    def tile(x: np.ndarray, step: int) -> np.ndarray:
        """Copies of a local index array, shifted by ``step`` per sample."""
        return (x[None] + step * s.reshape((-1,) + (1,) * x.ndim)).reshape((-1,) + x.shape[1:])

    topo = ShardTopology(
        node_offsets=np.arange(num_samples + 1, dtype=np.int64) * n,
        edge_index=tile(one.edge_index, n),
        edge_offsets=np.arange(num_samples + 1, dtype=np.int64) * e,
        ring_node=tile(one.ring_node, n),
        ring_edge=tile(one.ring_edge, e),
        ring_sizes=np.tile(one.ring_sizes, num_samples),
        ring_offsets=np.arange(num_samples + 1, dtype=np.int64) * r,
    )
    pos = np.random.default_rng(0).normal(size=(num_samples * n, 3))
    return topo, pos


def test_a_4000_sample_shard_repeats_each_samples_relations() -> None:
    """A whole shard at once (the lift's unit of work; its speed is measured by benchmarks/lift_qm9.py)."""
    topo, pos = synthetic_shard(4000)
    nbr = build_neighbourhoods(topo)
    geo = ring_geometry(torch.from_numpy(pos), torch.from_numpy(topo.ring_node), torch.from_numpy(topo.ring_of), 8000)
    assert len(nbr["2_2_lower"][0]) == 2 * 4000 and geo.area.shape == (8000,)
    check_conventions(topo, nbr)
    assert np.array_equal(np.diff(nbr["1_1_upper"][1]), np.full(4000, 60))
    assert np.array_equal(np.diff(nbr["0_2"][1]), np.full(4000, 12))
