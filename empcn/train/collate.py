"""Collation: cache samples → one :class:`ComplexBatch` of disjoint complexes.

Every index array is offset by the number of cells of the rank it indexes in the samples before
it — nodes for edge endpoints and ring vertices, edges for ring edges, the sender's and the
receiver's rank for each neighbourhood pair. (Two public reference models shipped exactly this
offset bug for years; ``tests/train/test_collate.py`` checks batched == per-sample forward passes.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from empcn import schema
from empcn.cache import Sample
from empcn.train.batch import ComplexBatch

QM9_SPECIES = (1, 6, 7, 8, 9)  # H C N O F
BOND_ORDERS = (1.0, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class CollateSpec:
    """What to put in a batch beside the cell complex.

    ``neighbourhoods``: name → (sender rank, receiver rank) of the neighbourhoods to collate.
    ``fields``: further stored fields to carry (schema names, e.g. ``"sample/y"``, ``"nodes/vel"``):
    the task's targets and the model's inputs; one the samples do not hold is left out (the task or
    model that needs it says so). ``species``/``charge_power``: the node features (:func:`node_features`).
    """

    neighbourhoods: dict[str, tuple[int, int]]
    fields: tuple[str, ...] = ()
    species: tuple[int, ...] = QM9_SPECIES
    charge_power: int = 2  # EGNN's node features: one_hot(z) * (z / max z)^p for p = 0..charge_power

    @property
    def node_features(self) -> int:
        return len(self.species) * (self.charge_power + 1)

    @property
    def edge_features(self) -> int:
        return len(BOND_ORDERS)

    @staticmethod
    def from_manifest(manifest: dict, fields: tuple[str, ...] = ()) -> CollateSpec:
        """Every neighbourhood the cache stores, and ``fields``."""
        nbrs = {n["name"]: (int(n["sender_rank"]), int(n["receiver_rank"])) for n in manifest.get("neighbourhoods", [])}
        return CollateSpec(neighbourhoods=nbrs, fields=tuple(fields))


def manifest_species(manifest: dict) -> tuple[int, ...]:
    """The element vocabulary node features are built from: the cache's ``elements.vocabulary``
    (caches of one's own molecules), else QM9's five (QM9 caches, and N-body caches, which have no z)."""
    vocabulary = (manifest.get("elements") or {}).get("vocabulary")
    return tuple(int(z) for z in vocabulary) if vocabulary else QM9_SPECIES


def present_elements(manifest: dict) -> tuple[int, ...]:
    """Elements a cache's molecules contain (``elements.atoms``; QM9: its five; no z: none)."""
    elements = manifest.get("elements")
    if elements:
        return tuple(sorted(int(z) for z, n in elements.get("atoms", {}).items() if int(n) > 0))
    return QM9_SPECIES if manifest.get("dataset") == "qm9" else ()


def unseen_elements(manifest: dict, species: tuple[int, ...]) -> list[int]:
    """Elements of the cache's molecules that are not among ``species`` (a model's vocabulary)."""
    return sorted(set(present_elements(manifest)) - set(species))


def node_features(z: np.ndarray, spec: CollateSpec) -> np.ndarray:
    """(N, len(species)*(charge_power+1)) float32: one-hot species times powers of z/max(z), as EGNN."""
    species = np.asarray(spec.species)
    onehot = (np.asarray(z)[:, None] == species[None, :]).astype(np.float32)
    scaled = (np.asarray(z, dtype=np.float32) / float(species.max()))[:, None]
    return np.concatenate([onehot * scaled**p for p in range(spec.charge_power + 1)], axis=1)


def species_counts(batch: ComplexBatch, spec: CollateSpec) -> torch.Tensor:
    """(B, len(species)) float64 on the batch's device: atoms of each species per graph.

    Read from the one-hot block of :func:`node_features` (its first ``len(species)`` columns, the
    ``p = 0`` power), so it needs no extra batch field; atoms of other elements are not counted.
    """
    s = len(spec.species)
    onehot = batch.node_feat[:, :s].to(torch.float64)
    out = torch.zeros(batch.num_graphs, s, dtype=torch.float64, device=onehot.device)
    return out.index_add_(0, batch.node_graph, onehot)


def ragged_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``[starts[i], starts[i] + lengths[i])`` as one int64 index (no Python loop)."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


@dataclass(frozen=True)
class RaggedBatch:
    """The samples of one batch as concatenated cache arrays: what :func:`collate_ragged` reads.

    ``arrays``: ``"group/array"`` key → ``(values, counts)``, ``values: (Σ counts, …)`` the samples'
    rows one sample after another, ``counts: (size,)`` int64 rows per sample. The training data path
    builds it straight from in-memory shards with a few vectorised gathers per array
    (:meth:`empcn.train.dataset.ShardStream.load_batch`); :meth:`of_samples` builds it from
    per-sample dicts.
    """

    size: int
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]

    @staticmethod
    def of_samples(samples: Sequence[Sample]) -> RaggedBatch:
        """Concatenate the cache arrays (``"group/array"`` keys) of per-sample dicts."""
        keys = [k for k, v in samples[0].items() if "/" in k and isinstance(v, np.ndarray)] if samples else []
        return RaggedBatch(
            len(samples),
            {
                k: (np.concatenate([s[k] for s in samples]), np.array([len(s[k]) for s in samples], np.int64))
                for k in keys
            },
        )

    def values(self, key: str, dtype: npt.DTypeLike, tail: tuple[int, ...] = ()) -> np.ndarray:
        """The concatenated rows of ``key`` as ``dtype``, shaped ``(-1, *tail)`` (an empty batch: no rows)."""
        if key not in self.arrays:
            if self.size == 0:
                return np.zeros((0, *tail), dtype=dtype)
            raise KeyError(f"collate: the samples have no {key!r}")
        return self.arrays[key][0].astype(dtype, copy=False).reshape(-1, *tail)

    def counts(self, key: str) -> np.ndarray:
        """(size,) int64 rows of ``key`` per sample."""
        if key not in self.arrays:
            if self.size == 0:
                return np.zeros(0, dtype=np.int64)
            raise KeyError(f"collate: the samples have no {key!r}")
        return self.arrays[key][1]


def _shift(counts: np.ndarray, per_sample: np.ndarray) -> np.ndarray:
    """For each row, the number of cells before its sample: repeat(exclusive cumsum(counts), per_sample)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.repeat(np.cumsum(counts) - counts, per_sample)


def collate(samples: Sequence[Sample], spec: CollateSpec) -> ComplexBatch:
    """Concatenate ``samples`` (per-sample dicts, as :class:`empcn.cache.Cache` yields) into one batch."""
    return collate_ragged(RaggedBatch.of_samples(samples), spec)


def collate_ragged(rb: RaggedBatch, spec: CollateSpec) -> ComplexBatch:
    """One batch with batch-global indices from the concatenated arrays of its samples."""
    b = rb.size
    n = {r: rb.counts(key) for r, key in schema.CELL_COUNT_FIELDS.items()}
    n_slots = rb.counts(schema.SLOT_NODE)

    pos = rb.values(schema.NODE_POS, np.float32, (3,))
    z = rb.values(schema.NODE_Z, np.int64) if schema.NODE_Z in rb.arrays else np.zeros(len(pos), np.int64)
    edge_index = rb.values(schema.EDGE_INDEX, np.int64, (2,)) + _shift(n[0], n[1])[:, None]
    ring_node = rb.values(schema.SLOT_NODE, np.int64) + _shift(n[0], n_slots)
    ring_edge = rb.values(schema.SLOT_EDGE, np.int64) + _shift(n[1], n_slots)
    ring_sizes = rb.values(schema.RING_SIZE, np.int64)
    ring_of = np.repeat(np.arange(len(ring_sizes)), ring_sizes)

    nbr: dict[str, torch.Tensor] = {}
    nbr_dist: dict[str, torch.Tensor] = {}
    for name, (rs, rr) in spec.neighbourhoods.items():
        key = schema.nbr_index(name)
        if key not in rb.arrays:
            continue
        per = rb.counts(key)
        shift = np.stack([_shift(n[rs], per), _shift(n[rr], per)], axis=1)  # senders' rank, receivers' rank
        nbr[name] = torch.from_numpy(rb.values(key, np.int64, (2,)) + shift)
        nbr_dist[name] = torch.from_numpy(rb.values(schema.nbr_dist(name), np.float32))

    edge_feat = None
    if schema.EDGE_ORDER in rb.arrays:
        order = rb.values(schema.EDGE_ORDER, np.float32)
        edge_feat = torch.from_numpy(
            (order[:, None] == np.asarray(BOND_ORDERS, np.float32)[None, :]).astype(np.float32)
        )

    return ComplexBatch(
        num_graphs=b,
        pos=torch.from_numpy(pos),
        node_feat=torch.from_numpy(node_features(z, spec)),
        node_graph=torch.from_numpy(np.repeat(np.arange(b), n[0])),
        edge_index=torch.from_numpy(edge_index),
        edge_graph=torch.from_numpy(np.repeat(np.arange(b), n[1])),
        edge_len=torch.from_numpy(rb.values(schema.EDGE_LENGTH, np.float32)),
        ring_node=torch.from_numpy(ring_node),
        ring_edge=torch.from_numpy(ring_edge),
        ring_of=torch.from_numpy(ring_of),
        ring_graph=torch.from_numpy(np.repeat(np.arange(b), n[2])),
        ring_size=torch.from_numpy(ring_sizes.astype(np.float32)),
        ring_area=torch.from_numpy(rb.values(schema.RING_AREA, np.float32)),
        ring_perimeter=torch.from_numpy(rb.values(schema.RING_PERIMETER, np.float32)),
        ring_radius=torch.from_numpy(rb.values(schema.RING_RADIUS, np.float32)),
        nbr=nbr,
        nbr_dist=nbr_dist,
        edge_feat=edge_feat,
        fields={name: torch.from_numpy(_field_rows(rb, name)) for name in spec.fields if name in rb.arrays},
    )


def _field_rows(rb: RaggedBatch, name: str) -> np.ndarray:
    """The rows of a carried field, as stored: every row of the batch's samples (nodes, edges, …), or
    one row per sample for the sample group (whose offsets are 0..S by the schema)."""
    values, counts = rb.arrays[name]
    if schema.group_of(name) == schema.SAMPLE_GROUP and len(values) != len(counts):
        values = values[np.cumsum(counts) - counts]
    return values
