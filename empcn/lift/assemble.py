"""Per-sample cells → one shard's arrays: concatenation, neighbourhoods, invariants, local indices.

Dataset-independent: QM9 molecules, N-body systems and MoCap skeletons all arrive here as
:class:`SampleCells` and leave as a :class:`~empcn.cache.ShardContent` in the layout of
``docs/cache-format.md``. Everything after the per-sample list is vectorised over the shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from empcn import geometry, schema
from empcn.cache import RaggedGroup, Sample, ShardContent, sample_from_shard
from empcn.lift.complex import ShardTopology, build_neighbourhoods
from empcn.schema import (
    EDGE_GROUP,
    FIELD_DOCS,
    NBR_PREFIX,
    NEIGHBOURHOODS,
    NODE_GROUP,
    RANK_GROUPS,
    RING_GROUP,
    RING_SLOT_GROUP,
    SAMPLE_GROUP,
)

#: The fields :func:`complex_shard` writes for every data set (``nbr/<name>/…``: every neighbourhood);
#: a data set's spec declares the others it writes (its ``sample/…`` rows, node and edge arrays).
COMPLEX_FIELDS: tuple[str, ...] = (
    schema.NODE_POS,
    schema.EDGE_INDEX,
    schema.EDGE_LENGTH,
    schema.RING_SIZE,
    schema.RING_AREA,
    schema.RING_PERIMETER,
    schema.RING_RADIUS,
    schema.SLOT_NODE,
    schema.SLOT_EDGE,
    f"{NBR_PREFIX}/<name>/index",
    f"{NBR_PREFIX}/<name>/dist",
)


@dataclass
class SampleCells:
    """The cells of one sample before concatenation (local indices).

    pos: (N, 3) float64; edge_index: (E, 2) int; rings: vertex tuples in cyclic order;
    ring_edge: (sum of ring sizes,) edge index joining consecutive ring vertices;
    node_arrays: extra per-node arrays to store under ``nodes/`` (z, velocities, charges, …);
    edge_arrays: extra per-edge arrays (bond order, …).
    """

    pos: np.ndarray
    edge_index: np.ndarray
    rings: Sequence[tuple[int, ...]]
    ring_edge: np.ndarray
    node_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    edge_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ring_arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _concat(parts: list[np.ndarray], dtype: type | np.dtype, tail: tuple[int, ...] = ()) -> np.ndarray:
    if not parts:
        return np.zeros((0, *tail), dtype=dtype)
    return np.concatenate([np.asarray(p, dtype=dtype).reshape(-1, *tail) for p in parts])


def complex_shard(cells: Sequence[SampleCells], per_sample: Mapping[str, np.ndarray]) -> ShardContent:
    """Concatenate ``cells`` into one shard with neighbourhoods and invariants.

    per_sample: arrays with one row per sample (stored in the ``sample`` group).
    """
    num = len(cells)
    n_nodes = np.array([len(c.pos) for c in cells], dtype=np.int64)
    n_edges = np.array([len(c.edge_index) for c in cells], dtype=np.int64)
    n_rings = np.array([len(c.rings) for c in cells], dtype=np.int64)
    ring_sizes = np.array([len(r) for c in cells for r in c.rings], dtype=np.int64)
    n_slots = np.array([sum(len(r) for r in c.rings) for c in cells], dtype=np.int64)
    node_off, edge_off, ring_off, slot_off = map(_offsets, (n_nodes, n_edges, n_rings, n_slots))

    # positions rounded to the stored float32 first, so stored invariants match the stored positions
    pos32 = _concat([c.pos for c in cells], np.float32, (3,))
    edge_local = _concat([c.edge_index for c in cells], np.int64, (2,))
    edge_global = edge_local + np.repeat(node_off[:-1], n_edges)[:, None]
    slot_node_local = _concat([np.asarray([v for r in c.rings for v in r]) for c in cells], np.int64)
    slot_edge_local = _concat([c.ring_edge for c in cells], np.int64)
    slot_node = slot_node_local + np.repeat(node_off[:-1], n_slots)
    slot_edge = slot_edge_local + np.repeat(edge_off[:-1], n_slots)

    topo = ShardTopology(
        node_offsets=node_off,
        edge_index=edge_global,
        edge_offsets=edge_off,
        ring_node=slot_node,
        ring_edge=slot_edge,
        ring_sizes=ring_sizes,
        ring_offsets=ring_off,
    )
    nbrs = build_neighbourhoods(topo)

    pos = torch.from_numpy(pos32.astype(np.float64))
    edge_t = torch.from_numpy(edge_global)
    ring_of = torch.from_numpy(np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    ring = geometry.ring_geometry(pos, torch.from_numpy(slot_node), ring_of, len(ring_sizes))
    lengths = geometry.edge_lengths(pos, edge_t)
    bary = geometry.cell_barycentres(pos, edge_t, ring)
    cell_off = {0: node_off, 1: edge_off, 2: ring_off}

    groups: dict[str, RaggedGroup] = {
        SAMPLE_GROUP: RaggedGroup(
            np.arange(num + 1, dtype=np.int64), {k: np.asarray(v) for k, v in per_sample.items()}
        ),
        NODE_GROUP: RaggedGroup(node_off, {"pos": pos32}),
        EDGE_GROUP: RaggedGroup(
            edge_off,
            {"index": edge_local.astype(np.int32), "length": lengths.numpy().astype(np.float32)},
            {"index": (NODE_GROUP,)},
        ),
        RING_GROUP: RaggedGroup(
            ring_off,
            {
                "size": ring_sizes.astype(np.int32),
                "area": ring.area.numpy().astype(np.float32),
                "perimeter": ring.perimeter.numpy().astype(np.float32),
                "radius": ring.radius.numpy().astype(np.float32),
            },
        ),
        RING_SLOT_GROUP: RaggedGroup(
            slot_off,
            {"node": slot_node_local.astype(np.int32), "edge": slot_edge_local.astype(np.int32)},
            {"node": (NODE_GROUP,), "edge": (EDGE_GROUP,)},
        ),
    }
    for key in sorted({k for c in cells for k in c.node_arrays}):
        sample_arr = [np.asarray(c.node_arrays[key]) for c in cells]
        tail = sample_arr[0].shape[1:] if sample_arr else ()
        groups[NODE_GROUP].arrays[key] = _concat(sample_arr, sample_arr[0].dtype if sample_arr else np.float32, tail)
    for key in sorted({k for c in cells for k in c.edge_arrays}):
        sample_arr = [np.asarray(c.edge_arrays[key]) for c in cells]
        tail = sample_arr[0].shape[1:] if sample_arr else ()
        groups[EDGE_GROUP].arrays[key] = _concat(sample_arr, sample_arr[0].dtype if sample_arr else np.float32, tail)
    for key in sorted({k for c in cells for k in c.ring_arrays}):
        sample_arr = [np.asarray(c.ring_arrays[key]) for c in cells]
        groups[RING_GROUP].arrays[key] = _concat(sample_arr, sample_arr[0].dtype if sample_arr else np.float32)

    for spec in NEIGHBOURHOODS:
        index, offsets = nbrs[spec.name]
        index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        owner = np.repeat(np.arange(num), np.diff(offsets))
        local = np.stack(
            [index[:, 0] - cell_off[spec.sender_rank][owner], index[:, 1] - cell_off[spec.receiver_rank][owner]],
            axis=1,
        )
        idx_t = torch.from_numpy(index)
        dist = geometry.pair_distances(bary[spec.sender_rank], bary[spec.receiver_rank], idx_t)
        groups[f"{NBR_PREFIX}/{spec.name}"] = RaggedGroup(
            np.asarray(offsets, dtype=np.int64),
            {"index": local.astype(np.int32), "dist": dist.numpy().astype(np.float32)},
            {"index": (RANK_GROUPS[spec.sender_rank], RANK_GROUPS[spec.receiver_rank])},
        )
    return ShardContent(groups)


def single_sample(cells: SampleCells, per_sample: Mapping[str, np.ndarray] | None = None) -> Sample:
    """One sample lifted exactly as a shard's samples are (``empcn predict``'s input files)."""
    content = complex_shard([cells], per_sample if per_sample is not None else {"id": np.zeros(1, dtype=np.int64)})
    return sample_from_shard(content, 0)


def undeclared_fields(content: ShardContent, declared: Sequence[str]) -> list[str]:
    """The ``group/array`` fields of ``content`` that are neither the complex's own nor in ``declared``."""
    written = {
        f"{g}/{a}" for g, grp in content.groups.items() if not g.startswith(NBR_PREFIX + "/") for a in grp.arrays
    }
    return sorted(written - set(COMPLEX_FIELDS) - set(declared))


def field_docs(declared: Sequence[str], overrides: Mapping[str, str | None]) -> dict[str, str | None]:
    """``manifest["fields"]`` of a data set, as :class:`~empcn.lift.pipeline.LiftedSplits` takes it.

    The complex's fields and ``declared`` with :data:`empcn.schema.FIELD_DOCS`' text, replaced by
    ``overrides`` (a data set's units; ``None``: a declared field this lift does not write); every other
    name of ``FIELD_DOCS`` maps to ``None`` (not stored). ValueError for a declared field without a text,
    or a text for a field that is not declared.
    """
    written = (*COMPLEX_FIELDS, *declared)
    stray = sorted(k for k, v in overrides.items() if v is not None and k not in written)
    if stray:
        raise ValueError(f"its finish documents {', '.join(stray)}, which its spec's fields do not declare")
    docs = {name: overrides.get(name, FIELD_DOCS.get(name)) for name in written}
    missing = sorted(k for k, v in docs.items() if v is None and k not in overrides)
    if missing:
        raise ValueError(f"no documentation for {', '.join(missing)} (its finish's fields give each field's text)")
    return {**dict.fromkeys(FIELD_DOCS), **{k: v for k, v in docs.items() if v is not None}}
