"""What a molecule model was trained on, so that ``empcn predict`` can say when an input lies outside it.

A model fitted on QM9 (at most 29 atoms, 9 heavy) extrapolates wildly on a 302-atom alkane or on
water written in nanometres, and nothing in its output says so. At training time the run records,
over the molecules it trains on (:func:`training_domain`, read from the cache), the fewest and most
atoms of a molecule, the most atoms of each element in one molecule and, per pair of elements, the
shortest and longest bond (1-cell). ``predict`` then names every way a molecule falls outside:
an atom count outside that range, more atoms of an element than any training molecule had, a bond
of a pair of elements never bonded in training, or a bond more than :data:`BOND_MARGIN` shorter or
longer than any seen.

Saved in the run's metadata (:attr:`empcn.train.checkpoint.RunMeta.domain`, JSON-able); runs saved
before it existed have none and predict without the check, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from empcn.elements import SYMBOLS
from empcn.schema import EDGE_INDEX, EDGE_LENGTH, NODE_Z

#: A bond more than this fraction shorter than the shortest (or longer than the longest) bond of its
#: pair of elements in the training molecules is outside the domain.
BOND_MARGIN = 0.15

_Z = 128  # atomic numbers are < 128: pair keys z_i * 128 + z_j


@dataclass(frozen=True)
class TrainingDomain:
    """Statistics of the training molecules. Lengths in the cache's unit (Å for molecules).

    ``molecules``: how many were summarised; ``atoms``: (fewest, most) atoms of a molecule;
    ``elements``: atomic number → most atoms of it in one molecule; ``bonds``: (z_i, z_j) with
    z_i ≤ z_j → (shortest, longest) bond between those elements.
    """

    molecules: int
    atoms: tuple[int, int]
    elements: dict[int, int]
    bonds: dict[tuple[int, int], tuple[float, float]]
    unit: str = "Å"

    def to_dict(self) -> dict[str, Any]:
        """The saved form (JSON-able, string keys)."""
        return {
            "molecules": int(self.molecules),
            "atoms": [int(a) for a in self.atoms],
            "unit": self.unit,
            "elements": {str(z): int(n) for z, n in sorted(self.elements.items())},
            "bonds": {f"{a}-{b}": [float(lo), float(hi)] for (a, b), (lo, hi) in sorted(self.bonds.items())},
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainingDomain | None:
        """The domain a run saved; None for a run saved without one (an empty dict)."""
        if not d:
            return None
        bonds = {}
        for key, (lo, hi) in d["bonds"].items():
            a, b = key.split("-")
            bonds[(int(a), int(b))] = (float(lo), float(hi))
        return TrainingDomain(
            int(d["molecules"]),
            (int(d["atoms"][0]), int(d["atoms"][1])),
            {int(z): int(n) for z, n in d["elements"].items()},
            bonds,
            str(d.get("unit", "Å")),
        )

    def outside(self, z: np.ndarray, edges: np.ndarray, lengths: np.ndarray) -> list[str]:
        """Every way the molecule ``z`` (N,) with 1-cells ``edges`` (E, 2) of ``lengths`` (E,) lies outside.

        One line per kind of departure (the most extreme bond of each pair of elements); empty when
        the molecule is within what the model was trained on.
        """
        z = np.asarray(z, dtype=np.int64)
        out = []
        lo, hi = self.atoms
        if not lo <= len(z) <= hi:
            out.append(f"{len(z)} atoms (trained on {lo}–{hi})")
        counts = np.bincount(z, minlength=_Z)
        for element in np.flatnonzero(counts).tolist():
            most = self.elements.get(element, 0)
            if counts[element] > most:
                out.append(f"{counts[element]} {SYMBOLS[element]} atoms (trained on at most {most})")
        edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)
        pair = np.sort(z[edges], axis=1) if len(edges) else np.zeros((0, 2), dtype=np.int64)
        for a, b in sorted({(int(p), int(q)) for p, q in pair.tolist()}):
            these = lengths[(pair[:, 0] == a) & (pair[:, 1] == b)]
            name = f"{SYMBOLS[a]}–{SYMBOLS[b]}"
            if (a, b) not in self.bonds:
                out.append(f"a {name} bond (none in the training molecules)")
                continue
            shortest, longest = self.bonds[(a, b)]
            low, high = float(these.min()), float(these.max())
            seen = f"trained on {shortest:.3g}–{longest:.3g} {self.unit}"
            if low < shortest * (1 - BOND_MARGIN):
                out.append(f"a {name} bond of {low:.3g} {self.unit} ({seen})")
            if high > longest * (1 + BOND_MARGIN):
                out.append(f"a {name} bond of {high:.3g} {self.unit} ({seen})")
        return out


def training_domain(layout: Any, indices: np.ndarray) -> TrainingDomain | None:
    """The :class:`TrainingDomain` of the samples ``indices`` of a cache (``layout``: a
    :class:`~empcn.train.dataset.CacheLayout`); None for a cache without atoms and bonds (positions data).

    Vectorised per shard: each shard holding training samples is read once.
    """
    from empcn.cache import Cache
    from empcn.train.collate import ragged_index

    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return None
    cache = Cache(layout.path, max_shards_in_memory=1)
    shard_of = layout.shard_of(indices)
    fewest, most = np.iinfo(np.int64).max, 0
    per_element = np.zeros(_Z, dtype=np.int64)
    shortest = np.full(_Z * _Z, np.inf)
    longest = np.full(_Z * _Z, -np.inf)
    for k in np.unique(shard_of).tolist():
        content = cache.shard(k)
        if not all(content.has(name) for name in (NODE_Z, EDGE_INDEX, EDGE_LENGTH)):
            return None
        rows = indices[shard_of == k] - layout.shard_starts[k]
        node_off = content.offsets(NODE_Z)
        edge_off = content.offsets(EDGE_INDEX)
        sizes = node_off[rows + 1] - node_off[rows]
        fewest, most = min(fewest, int(sizes.min())), max(most, int(sizes.max()))
        # atoms of each element per molecule: one bincount over (molecule, element)
        node = ragged_index(node_off[rows], sizes)
        mol = np.repeat(np.arange(len(rows)), sizes)
        z = content.array(NODE_Z)[node].astype(np.int64)
        counts = np.bincount(mol * _Z + z, minlength=len(rows) * _Z).reshape(len(rows), _Z)
        np.maximum(per_element, counts.max(axis=0), out=per_element)
        # bond lengths per pair of elements
        bonds = edge_off[rows + 1] - edge_off[rows]
        edge = ragged_index(edge_off[rows], bonds)
        first_node = np.repeat(node_off[rows], bonds)
        ends = content.array(EDGE_INDEX)[edge].astype(np.int64) + first_node[:, None]
        pair = np.sort(content.array(NODE_Z)[ends].astype(np.int64), axis=1)
        key = pair[:, 0] * _Z + pair[:, 1]
        length = content.array(EDGE_LENGTH)[edge].astype(np.float64)
        np.minimum.at(shortest, key, length)
        np.maximum.at(longest, key, length)
    cache.close()
    seen = np.flatnonzero(np.isfinite(shortest))
    return TrainingDomain(
        molecules=len(indices),
        atoms=(fewest, most),
        elements={int(e): int(per_element[e]) for e in np.flatnonzero(per_element)},
        bonds={(int(q // _Z), int(q % _Z)): (float(shortest[q]), float(longest[q])) for q in seen},
    )
