"""Small ComplexBatch objects for model tests, built independently of empcn.lift / empcn.geometry.

Topology and invariants are computed here in plain Python/torch (loops are fine: a dozen atoms), so
the model tests do not depend on the lift stage. Complexes: synthetic ones from noisy random 3-D
points (benzene-like ring with hydrogens, a triangle, a branched tree without rings, a
naphthalene-like pair of fused rings) and a few real QM9 molecules read from qm9pack's CSV with
bonds from covalent radii and rings = chordless cycles.
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass, replace

import torch
from helpers import qm9pack_csv
from torch import Tensor

from empcn.train.batch import ComplexBatch

SPECIES = ("H", "C", "N", "O", "F")
CHARGE = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
COVALENT_RADIUS = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}  # Å
NUM_NODE_FEATURES = 3 * len(SPECIES)  # one-hot × (Z/9)^0,1,2, as EGNN's QM9 charge powers
NUM_EDGE_FEATURES = 4  # bond-type one-hot (random in the synthetic complexes)
QM9_CSV = qm9pack_csv()
RANK_OF_NAME = {
    "0_0": (0, 0),
    "0_1": (0, 1),
    "1_0": (1, 0),
    "1_1_lower": (1, 1),
    "1_1_upper": (1, 1),
    "1_2": (1, 2),
    "2_1": (2, 1),
    "2_2_lower": (2, 2),
    "0_2": (0, 2),
    "2_0": (2, 0),
}


@dataclass
class Molecule:
    """A complex before lifting: positions (N, 3) float64 Å, species symbols, bonds, rings (cyclic order)."""

    pos: Tensor
    species: list[str]
    bonds: list[tuple[int, int]]
    rings: list[list[int]]


# ---------------------------------------------------------------- synthetic complexes


def _noisy(points: list[list[float]], gen: torch.Generator, noise: float = 0.15) -> Tensor:
    p = torch.tensor(points, dtype=torch.float64)
    return p + noise * torch.randn(p.shape, generator=gen, dtype=torch.float64)


def _hexagon(centre: tuple[float, float], radius: float = 1.4, phase: float = 0.0) -> list[list[float]]:
    return [
        [centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a), 0.0]
        for a in (phase + k * math.pi / 3 for k in range(6))
    ]


def benzene_like(gen: torch.Generator) -> Molecule:
    """C6 ring plus one H per carbon, perturbed: 12 atoms, 12 bonds, 1 ring."""
    ring = _hexagon((0.0, 0.0))
    hyd = [[2.48 / 1.4 * x, 2.48 / 1.4 * y, z] for x, y, z in ring]
    bonds = [(k, (k + 1) % 6) for k in range(6)] + [(k, 6 + k) for k in range(6)]
    return Molecule(_noisy(ring + hyd, gen), ["C"] * 6 + ["H"] * 6, bonds, [list(range(6))])


def triangle(gen: torch.Generator) -> Molecule:
    """Three random points, all bonded, one 3-ring (C, N, O)."""
    pos = 1.5 * torch.randn(3, 3, generator=gen, dtype=torch.float64)
    return Molecule(pos, ["C", "N", "O"], [(0, 1), (1, 2), (0, 2)], [[0, 1, 2]])


def tree(gen: torch.Generator) -> Molecule:
    """A branched acyclic molecule-like graph (7 atoms, 6 bonds, no rings)."""
    points = [[0, 0, 0], [1.5, 0, 0], [2.2, 1.2, 0], [2.2, -1.2, 0], [-0.6, 1.0, 0], [-0.6, -1.0, 0.3], [3.6, 1.3, 0.2]]
    bonds = [(0, 1), (1, 2), (1, 3), (0, 4), (0, 5), (2, 6)]
    return Molecule(_noisy(points, gen), ["C", "C", "O", "N", "H", "H", "F"], bonds, [])


def naphthalene_like(gen: torch.Generator) -> Molecule:
    """Two hexagons fused along one edge (10 C) plus 8 H: 18 atoms, 19 bonds, 2 rings sharing an edge."""
    d = 1.4 * math.sqrt(3.0)  # centre distance of edge-sharing hexagons of radius 1.4
    left = _hexagon((-d / 2, 0.0), phase=math.pi / 6)
    right = _hexagon((d / 2, 0.0), phase=math.pi / 6)
    # shared edge at x = 0: left vertex 0 (30°) = right vertex 2 (150°), left 5 (330°) = right 3 (210°)
    carbons = left + [right[k] for k in (0, 1, 4, 5)]  # ids 6, 7, 8, 9
    ring_a = [0, 1, 2, 3, 4, 5]
    ring_b = [6, 7, 0, 5, 8, 9]  # right vertices 0..5 in cyclic order
    outer = {1: -d / 2, 2: -d / 2, 3: -d / 2, 4: -d / 2, 6: d / 2, 7: d / 2, 8: d / 2, 9: d / 2}
    hyd = [[cx + 2.48 / 1.4 * (carbons[c][0] - cx), 2.48 / 1.4 * carbons[c][1], 0.0] for c, cx in outer.items()]
    c_bonds = {tuple(sorted((r[k], r[(k + 1) % 6]))) for r in (ring_a, ring_b) for k in range(6)}
    bonds = sorted(c_bonds) + [(c, 10 + k) for k, c in enumerate(outer)]
    return Molecule(_noisy(carbons + hyd, gen), ["C"] * 10 + ["H"] * 8, bonds, [ring_a, ring_b])


def synthetic_molecules(seed: int = 0) -> list[Molecule]:
    """[benzene-like, triangle, tree, naphthalene-like] with noise drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [benzene_like(gen), triangle(gen), tree(gen), naphthalene_like(gen)]


# ---------------------------------------------------------------- real QM9 molecules


def qm9_molecule(index: int, max_rows: int = 400) -> Molecule:
    """QM9 molecule ``index`` (1-based, among the first ``max_rows`` rows of qm9_part1.csv).

    Bonds: atoms closer than 1.2 × the sum of covalent radii. Rings: chordless cycles ≤ 8 atoms.
    """
    import pandas as pd

    df = pd.read_csv(QM9_CSV, nrows=max_rows, usecols=["Index", "Elements", "XYZ_Ang"])
    row = df[df["Index"] == index]
    if row.empty:
        raise ValueError(f"{QM9_CSV.name}: molecule {index} not among the first {max_rows} rows")
    species = list(ast.literal_eval(row["Elements"].iloc[0]))
    pos = torch.tensor(ast.literal_eval(row["XYZ_Ang"].iloc[0]), dtype=torch.float64)
    bonds = [
        (i, j)
        for i, j in itertools.combinations(range(len(species)), 2)
        if float(torch.linalg.norm(pos[i] - pos[j])) < 1.2 * (COVALENT_RADIUS[species[i]] + COVALENT_RADIUS[species[j]])
    ]
    return Molecule(pos, species, bonds, chordless_cycles(len(species), bonds))


def chordless_cycles(n: int, bonds: list[tuple[int, int]], max_size: int = 8) -> list[list[int]]:
    """All chordless cycles of ≤ ``max_size`` nodes, each once, starting at its smallest node (brute force)."""
    adj = {i: set() for i in range(n)}
    for i, j in bonds:
        adj[i].add(j)
        adj[j].add(i)
    found: list[list[int]] = []

    def extend(path: list[int]) -> None:
        for nxt in sorted(adj[path[-1]]):
            if nxt == path[0] and len(path) >= 3 and path[1] < path[-1]:
                chord = any(b in adj[a] for a, b in itertools.combinations(path, 2) if not _consecutive(path, a, b))
                if not chord:
                    found.append(list(path))
            elif nxt > path[0] and nxt not in path and len(path) < max_size:
                extend(path + [nxt])

    for s in range(n):
        extend([s])
    return found


def _consecutive(cycle: list[int], a: int, b: int) -> bool:
    i, j = cycle.index(a), cycle.index(b)
    return abs(i - j) in (1, len(cycle) - 1)


# ---------------------------------------------------------------- lifting to a ComplexBatch


def node_features(species: list[str]) -> Tensor:
    """One-hot species × (Z/9)^p for p = 0, 1, 2: (N, 15) float64."""
    onehot = torch.zeros(len(species), len(SPECIES), dtype=torch.float64)
    onehot[torch.arange(len(species)), torch.tensor([SPECIES.index(s) for s in species])] = 1.0
    z = torch.tensor([CHARGE[s] / 9.0 for s in species], dtype=torch.float64).unsqueeze(-1)
    return torch.cat([onehot, onehot * z, onehot * z * z], dim=-1)


def lift(mol: Molecule, edge_feat_seed: int | None = None) -> ComplexBatch:
    """A one-graph ComplexBatch (float64) with every neighbourhood of RANK_OF_NAME and its distances."""
    pos = mol.pos
    n = pos.shape[0]
    edges = sorted(tuple(sorted(b)) for b in mol.bonds)
    edge_id = {e: k for k, e in enumerate(edges)}
    ring_edges = [[edge_id[tuple(sorted((r[k], r[(k + 1) % len(r)])))] for k in range(len(r))] for r in mol.rings]

    edge_bary = torch.stack([(pos[i] + pos[j]) / 2 for i, j in edges]) if edges else pos.new_zeros(0, 3)
    ring_bary = torch.stack([pos[r].mean(0) for r in mol.rings]) if mol.rings else pos.new_zeros(0, 3)
    bary = {0: pos, 1: edge_bary, 2: ring_bary}

    def ring_area(r: list[int]) -> Tensor:
        c = pos[r].mean(0)
        nxt = r[1:] + r[:1]
        return sum(0.5 * torch.linalg.norm(torch.cross(pos[a] - c, pos[b] - c, dim=0)) for a, b in zip(r, nxt))

    def ring_perimeter(r: list[int]) -> Tensor:
        return sum(torch.linalg.norm(pos[r[(k + 1) % len(r)]] - pos[r[k]]) for k in range(len(r)))

    def ring_radius(r: list[int]) -> Tensor:
        return 0.5 * max(torch.linalg.norm(pos[a] - pos[b]) for a, b in itertools.combinations(r, 2))

    node_edges = {i: [k for k, e in enumerate(edges) if i in e] for i in range(n)}
    edge_rings = {k: [q for q, re in enumerate(ring_edges) if k in re] for k in range(len(edges))}
    pairs: dict[str, set[tuple[int, int]]] = {name: set() for name in RANK_OF_NAME}
    for k, (i, j) in enumerate(edges):
        pairs["0_0"] |= {(i, j), (j, i)}
        pairs["0_1"] |= {(i, k), (j, k)}
        pairs["1_0"] |= {(k, i), (k, j)}
    for i in range(n):
        pairs["1_1_lower"] |= {(a, b) for a in node_edges[i] for b in node_edges[i] if a != b}
    for q, r in enumerate(mol.rings):
        pairs["1_1_upper"] |= {(a, b) for a in ring_edges[q] for b in ring_edges[q] if a != b}
        pairs["1_2"] |= {(a, q) for a in ring_edges[q]}
        pairs["2_1"] |= {(q, a) for a in ring_edges[q]}
        pairs["0_2"] |= {(i, q) for i in r}
        pairs["2_0"] |= {(q, i) for i in r}
    for k in range(len(edges)):
        pairs["2_2_lower"] |= {(a, b) for a in edge_rings[k] for b in edge_rings[k] if a != b}

    nbr, nbr_dist = {}, {}
    for name, (s, r) in RANK_OF_NAME.items():
        idx = torch.tensor(sorted(pairs[name]), dtype=torch.long).reshape(-1, 2)
        nbr[name] = idx
        nbr_dist[name] = torch.linalg.norm(bary[s][idx[:, 0]] - bary[r][idx[:, 1]], dim=-1)

    edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2)
    slots = [(q, k) for q, r in enumerate(mol.rings) for k in range(len(r))]
    edge_feat = None
    if edge_feat_seed is not None:
        gen = torch.Generator().manual_seed(edge_feat_seed)
        kind = torch.randint(NUM_EDGE_FEATURES, (len(edges),), generator=gen)
        edge_feat = torch.nn.functional.one_hot(kind, NUM_EDGE_FEATURES).to(torch.float64)
    f64 = dict(dtype=torch.float64)
    return ComplexBatch(
        num_graphs=1,
        pos=pos.clone(),
        node_feat=node_features(mol.species),
        node_graph=torch.zeros(n, dtype=torch.long),
        edge_index=edge_index,
        edge_graph=torch.zeros(len(edges), dtype=torch.long),
        edge_len=torch.linalg.norm(pos[edge_index[:, 1]] - pos[edge_index[:, 0]], dim=-1),
        ring_node=torch.tensor([mol.rings[q][k] for q, k in slots], dtype=torch.long),
        ring_edge=torch.tensor([ring_edges[q][k] for q, k in slots], dtype=torch.long),
        ring_of=torch.tensor([q for q, _ in slots], dtype=torch.long),
        ring_graph=torch.zeros(len(mol.rings), dtype=torch.long),
        ring_size=torch.tensor([float(len(r)) for r in mol.rings], **f64),
        ring_area=torch.stack([ring_area(r) for r in mol.rings]) if mol.rings else torch.zeros(0, **f64),
        ring_perimeter=torch.stack([ring_perimeter(r) for r in mol.rings]) if mol.rings else torch.zeros(0, **f64),
        ring_radius=torch.stack([ring_radius(r) for r in mol.rings]) if mol.rings else torch.zeros(0, **f64),
        nbr=nbr,
        nbr_dist=nbr_dist,
        edge_feat=edge_feat,
    )


def transformed(mol: Molecule, matrix: Tensor, shift: Tensor) -> Molecule:
    """The molecule with positions ``pos @ matrix.T + shift`` (same topology)."""
    return replace(mol, pos=mol.pos @ matrix.T + shift)


# ---------------------------------------------------------------- batching and relabelling


def collate(batches: list[ComplexBatch]) -> ComplexBatch:
    """Disjoint union of one-or-more-graph batches, offsetting every index by the cells before it."""
    offsets = {0: 0, 1: 0, 2: 0}
    graphs = 0
    parts: dict[str, list[Tensor]] = {}
    nbr: dict[str, list[Tensor]] = {name: [] for name in batches[0].nbr}
    nbr_dist: dict[str, list[Tensor]] = {name: [] for name in batches[0].nbr}
    for b in batches:
        shifted = {
            "pos": b.pos,
            "node_feat": b.node_feat,
            "node_graph": b.node_graph + graphs,
            "edge_index": b.edge_index + offsets[0],
            "edge_graph": b.edge_graph + graphs,
            "edge_len": b.edge_len,
            "ring_node": b.ring_node + offsets[0],
            "ring_edge": b.ring_edge + offsets[1],
            "ring_of": b.ring_of + offsets[2],
            "ring_graph": b.ring_graph + graphs,
            "ring_size": b.ring_size,
            "ring_area": b.ring_area,
            "ring_perimeter": b.ring_perimeter,
            "ring_radius": b.ring_radius,
        }
        if b.edge_feat is not None:
            shifted["edge_feat"] = b.edge_feat
        for key, value in shifted.items():
            parts.setdefault(key, []).append(value)
        for name, idx in b.nbr.items():
            s, r = RANK_OF_NAME[name]
            nbr[name].append(idx + torch.tensor([offsets[s], offsets[r]]))
            nbr_dist[name].append(b.nbr_dist[name])
        offsets = {0: offsets[0] + b.num_nodes, 1: offsets[1] + b.num_edges, 2: offsets[2] + b.num_rings}
        graphs += b.num_graphs
    cat = {key: torch.cat(value) for key, value in parts.items()}
    if "edge_feat" in cat and len(parts["edge_feat"]) != len(batches):
        raise ValueError("collate: edge_feat present in some batches only")
    return ComplexBatch(
        num_graphs=graphs,
        nbr={k: torch.cat(v) for k, v in nbr.items()},
        nbr_dist={k: torch.cat(v) for k, v in nbr_dist.items()},
        **cat,
    )


def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv


def relabel(batch: ComplexBatch, gen: torch.Generator) -> ComplexBatch:
    """The same complexes with nodes, edges, rings and every neighbourhood's pairs randomly reordered.

    A permutation ``perm`` puts old cell ``perm[k]`` at new position ``k``; every index tensor is
    remapped through the inverse. Nodes stay grouped by graph only if the batch has one graph.
    """
    pn = torch.randperm(batch.num_nodes, generator=gen)
    pe = torch.randperm(batch.num_edges, generator=gen)
    pr = torch.randperm(batch.num_rings, generator=gen)
    inv = {0: _inverse(pn), 1: _inverse(pe), 2: _inverse(pr)}
    edge_index = inv[0][batch.edge_index[pe]].sort(dim=1).values
    new_ring_of = inv[2][batch.ring_of]
    slot_order = torch.argsort(new_ring_of, stable=True)
    nbr, nbr_dist = {}, {}
    for name, idx in batch.nbr.items():
        s, r = RANK_OF_NAME[name]
        order = torch.randperm(idx.shape[0], generator=gen)
        nbr[name] = torch.stack([inv[s][idx[order, 0]], inv[r][idx[order, 1]]], dim=1)
        nbr_dist[name] = batch.nbr_dist[name][order]
    return replace(
        batch,
        pos=batch.pos[pn],
        node_feat=batch.node_feat[pn],
        node_graph=batch.node_graph[pn],
        edge_index=edge_index,
        edge_graph=batch.edge_graph[pe],
        edge_len=batch.edge_len[pe],
        edge_feat=None if batch.edge_feat is None else batch.edge_feat[pe],
        ring_node=inv[0][batch.ring_node[slot_order]],
        ring_edge=inv[1][batch.ring_edge[slot_order]],
        ring_of=new_ring_of[slot_order],
        ring_graph=batch.ring_graph[pr],
        ring_size=batch.ring_size[pr],
        ring_area=batch.ring_area[pr],
        ring_perimeter=batch.ring_perimeter[pr],
        ring_radius=batch.ring_radius[pr],
        nbr=nbr,
        nbr_dist=nbr_dist,
    )


# ---------------------------------------------------------------- saved batches

#: Batch slots of releases before batches carried fields by schema name → that field (and its shape).
_SLOT_FIELDS = {"vel": "nodes/vel", "node_scalar": "nodes/charge", "target_pos": "nodes/target_pos", "y": "sample/y"}


def batch_from_dict(saved: dict) -> ComplexBatch:
    """The :class:`ComplexBatch` of a saved dict (``tests/fixtures/models/saved_models.pt``): today's form
    (``fields`` by schema name), or a release's before it, whose per-data-set slots (``vel``,
    ``node_scalar`` — the charges of the fixture's N-body systems —, ``target_pos``, ``y``) become fields."""
    values = dict(saved)
    fields = dict(values.pop("fields", None) or {})
    for slot, name in _SLOT_FIELDS.items():
        tensor = values.pop(slot, None)
        if tensor is not None:
            shape = {"node_scalar": (-1,), "y": (len(tensor), -1)}.get(slot, tensor.shape)
            fields[name] = tensor.reshape(shape)
    return ComplexBatch(**values, fields=fields)
