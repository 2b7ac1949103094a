"""Streaming the shards of a lifted cache into collated :class:`ComplexBatch` objects.

One epoch is planned the same way in every process (DDP rank and DataLoader worker), from the
split's global sample indices, the seed and the epoch number alone:

1. **order** — shards holding split samples are shuffled; consecutive groups of ``buffer_shards``
   shards form *windows*; samples are shuffled within their window (an in-memory shuffle buffer of
   a few shards, so a worker never holds more than ``buffer_shards`` shards). No shuffle: ascending.
2. **ranks** — the order is cut into ``world_size`` contiguous parts at sample level (so even a
   1-shard cache splits). For training the remainder is dropped, so every rank has the same number
   of samples and hence of batches and DDP never waits on a rank that ran out.
3. **batches** — a rank's part is cut into batches of ``batch_size`` (the last may be shorter),
   optionally truncated to ``limit_batches``.
4. **workers** — DataLoader worker ``w`` of ``W`` takes the ``w``-th contiguous block of batches, so
   which samples form a batch does not depend on ``W`` (only the order batches arrive in does).

Parts are disjoint and together cover the split (minus the dropped remainder). Batching happens in
the workers: use ``DataLoader(dataset, batch_size=None)``. Cache handles are opened lazily inside
the process that iterates (never before a DataLoader forks), with an LRU of ``buffer_shards``
shards; a batch's samples are fetched shard by shard in window order, so each shard is decoded
once per window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from empcn import schema
from empcn.cache import Cache, CacheError, ShardContent
from empcn.statistics import mean_mad
from empcn.train.batch import ComplexBatch
from empcn.train.collate import CollateSpec, RaggedBatch, collate_ragged, ragged_index


@dataclass(frozen=True)
class CacheLayout:
    """What the data path needs from a cache's entry file, as plain arrays (picklable, no open files).

    shard_starts/shard_stops: (K,) int64 global sample range [start, stop) of each shard;
    splits: split name → ascending int64 global sample indices; manifest: the entry's manifest.
    """

    path: str
    shard_starts: np.ndarray
    shard_stops: np.ndarray
    splits: dict[str, np.ndarray]
    manifest: dict[str, Any]

    @staticmethod
    def read(path: Path | str) -> CacheLayout:
        """Read the entry file (manifest + splits); the shards are not touched. Raises CacheError."""
        cache = Cache(path)
        k = cache.num_shards
        starts = np.array([cache.shard_range(i)[0] for i in range(k)], dtype=np.int64)
        stops = np.array([cache.shard_range(i)[1] for i in range(k)], dtype=np.int64)
        return CacheLayout(str(path), starts, stops, dict(cache.splits), cache.manifest)

    @property
    def num_samples(self) -> int:
        return int(self.manifest["counts"]["samples"])

    def split(self, name: str) -> np.ndarray:
        """Global sample indices of split ``name``; CacheError naming the cache when it has none."""
        if name not in self.splits:
            raise CacheError(f"{self.path}: no split {name!r} (it has {', '.join(sorted(self.splits)) or 'none'})")
        return np.asarray(self.splits[name], dtype=np.int64)

    def shard_of(self, indices: np.ndarray) -> np.ndarray:
        """Shard of every global sample index: (n,) int64."""
        return np.searchsorted(self.shard_starts, indices, side="right").astype(np.int64) - 1

    def sample_keys(self) -> set[str]:
        """``"group/array"`` names a sample of this cache holds (read from its first shard)."""
        if not self.manifest.get("shards"):
            return set()
        content = Cache(self.path, max_shards_in_memory=1).shard(0)
        return {f"{g}/{a}" for g, group in content.groups.items() for a in group.arrays}

    def stored_fields(self) -> frozenset[str]:
        """The fields this cache stores: those its manifest declares (``manifest["fields"]``), or, for a
        manifest that declares none, the arrays of its first shard."""
        declared = schema.declared_fields(self.manifest)
        return declared if declared else frozenset(self.sample_keys())

    def fingerprint(self) -> str:
        """Identifies the cache's content: sha256 over its shards' sha256 (moves and renames keep it)."""
        import hashlib

        h = hashlib.sha256()
        for shard in self.manifest.get("shards", []):
            h.update(str(shard.get("sha256", "")).encode())
        return h.hexdigest()


def subset_of_split(indices: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """The first ``size`` of a ``seed``-permutation of ``indices``, ascending (all of them if ``size`` is None)."""
    indices = np.asarray(indices, dtype=np.int64)
    if size is None or size >= len(indices):
        return indices
    perm = np.random.default_rng(seed).permutation(len(indices))[:size]
    return np.sort(indices[perm])


def target_statistics(layout: CacheLayout, indices: np.ndarray, target_index: int) -> tuple[float, float]:
    """Mean and mean absolute deviation of the target over ``indices`` (reads their shards' ``sample/y``)."""
    cache = Cache(layout.path, max_shards_in_memory=1)
    shard = layout.shard_of(indices)
    ys = []
    for k in np.unique(shard).tolist():
        rows = indices[shard == k] - layout.shard_starts[k]
        ys.append(cache.shard(k).array(schema.SAMPLE_Y)[rows, target_index])
    cache.close()
    y = np.concatenate(ys).astype(np.float64) if ys else np.zeros(0)
    mean, mad = mean_mad(y)
    return float(mean), float(mad)


def epoch_order(
    indices: np.ndarray, shard_of: np.ndarray, seed: int, epoch: int, shuffle: bool, buffer_shards: int
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's sample order and every shard's position in it.

    indices: (n,) global sample indices; shard_of: (n,) their shards. Returns ``order`` (n,) and
    ``shard_pos`` (max shard + 1,) int64: rank of each shard in the shuffled shard order (the order
    shards are first needed in). Windows of ``buffer_shards`` consecutive shuffled shards are
    shuffled internally. Same (seed, epoch) → same result in every process.
    """
    indices = np.asarray(indices, dtype=np.int64)
    size = int(shard_of.max()) + 1 if len(shard_of) else 0
    shards = np.unique(shard_of)
    shard_pos = np.zeros(size, dtype=np.int64)
    if not shuffle:
        shard_pos[shards] = np.arange(len(shards))
        order = np.argsort(indices, kind="stable")
        return indices[order], shard_pos
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    shard_pos[rng.permutation(shards)] = np.arange(len(shards))
    window = shard_pos[shard_of] // buffer_shards
    order = np.lexsort((rng.random(len(indices)), window))
    return indices[order], shard_pos


def rank_part(order: np.ndarray, rank: int, world_size: int, drop_remainder: bool) -> np.ndarray:
    """Contiguous part ``rank`` of ``world_size``; with ``drop_remainder`` all parts have ⌊n/world⌋ samples."""
    if drop_remainder:
        per = len(order) // world_size
        return order[rank * per : (rank + 1) * per]
    return np.array_split(order, world_size)[rank]


def cut_batches(part: np.ndarray, batch_size: int, limit: int | None) -> list[np.ndarray]:
    """Consecutive batches of ``batch_size`` (the last may be shorter), at most ``limit`` of them."""
    batches = [part[a : a + batch_size] for a in range(0, len(part), batch_size)]
    return batches[:limit] if limit is not None else batches


def worker_block(num_batches: int, worker: int, num_workers: int) -> range:
    """Batches ``[a, b)`` of worker ``worker``: contiguous blocks, sizes differing by at most one."""
    a = (num_batches * worker) // num_workers
    b = (num_batches * (worker + 1)) // num_workers
    return range(a, b)


def gather_rows(
    content: ShardContent, rows: np.ndarray, groups: tuple[str, ...]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Samples ``rows`` of an in-memory shard, only the arrays of ``groups``, as :class:`RaggedBatch` arrays.

    One vectorised gather per array (the rows' ranges of each group's ``offsets`` joined into one
    index), instead of slicing sample by sample: a batch costs a few numpy calls per array, however
    many samples it has.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for gname in groups:
        group = content.groups.get(gname)
        if group is None:
            continue
        offsets = np.asarray(group.offsets)
        starts = offsets[rows]
        counts = offsets[rows + 1] - starts
        index = ragged_index(starts, counts)
        for aname, arr in group.arrays.items():
            out[f"{gname}/{aname}"] = (np.asarray(arr)[index], counts)
    return out


def join_parts(
    parts: list[tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]], size: int, where: str
) -> RaggedBatch:
    """One :class:`RaggedBatch` of ``size`` samples from per-shard gathers ``(positions, arrays)``.

    ``positions`` says where in the batch each gathered sample goes; samples are put in batch order
    with one more vectorised gather per array when the shards interleave.
    """
    if not parts:
        return RaggedBatch(size, {})
    if len(parts) == 1 and np.array_equal(parts[0][0], np.arange(size)):
        return RaggedBatch(size, parts[0][1])
    keys = list(parts[0][1])
    for _, arrays in parts[1:]:
        if list(arrays) != keys:
            raise CacheError(f"{where}: shards of one cache hold different arrays ({sorted(keys)} vs {sorted(arrays)})")
    placed = np.concatenate([positions for positions, _ in parts])
    order = np.argsort(placed, kind="stable")  # gathered sample that goes to batch position i
    joined: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    index_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # group → (counts, index): its arrays share them
    for key in keys:
        group = key.rsplit("/", 1)[0]
        if group not in index_of:
            counts = np.concatenate([arrays[key][1] for _, arrays in parts])
            starts = np.cumsum(counts) - counts
            index_of[group] = (counts[order], ragged_index(starts[order], counts[order]))
        counts, index = index_of[group]
        joined[key] = (np.concatenate([arrays[key][0] for _, arrays in parts])[index], counts)
    return RaggedBatch(size, joined)


def groups_needed(spec: CollateSpec) -> tuple[str, ...]:
    """Cache groups that :func:`empcn.train.collate.collate_ragged` reads for ``spec``."""
    base = (schema.SAMPLE_GROUP, *schema.RANK_GROUPS.values(), schema.RING_SLOT_GROUP)
    extra = tuple(sorted({schema.group_of(name) for name in spec.fields} - set(base)))
    return base + extra + tuple(f"{schema.NBR_PREFIX}/{name}" for name in sorted(spec.neighbourhoods))


class ShardStream(IterableDataset):
    """Batches of one split of a cache, streamed shard by shard (see the module docstring).

    ``len(stream)`` = batches this rank yields per epoch (the same every epoch and on every rank
    when ``drop_remainder``). Call :meth:`set_epoch` before iterating an epoch.
    """

    def __init__(
        self,
        layout: CacheLayout,
        indices: np.ndarray,
        spec: CollateSpec,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        buffer_shards: int = 4,
        rank: int = 0,
        world_size: int = 1,
        drop_remainder: bool = False,
        limit_batches: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.layout = layout
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= layout.num_samples):
            raise CacheError(f"{layout.path}: sample indices out of range of a cache of {layout.num_samples}")
        self.shard_of = layout.shard_of(self.indices)
        self.spec = spec
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_shards = max(1, buffer_shards)
        self.rank = rank
        self.world_size = world_size
        self.drop_remainder = drop_remainder
        self.limit_batches = limit_batches
        self.epoch = 0
        self._groups = groups_needed(spec)
        self._cache: Cache | None = None

    # -- planning (identical in every process) -------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_samples(self) -> int:
        n = len(self.indices)
        if self.drop_remainder:
            return n // self.world_size
        return len(np.array_split(np.arange(n), self.world_size)[self.rank])

    def __len__(self) -> int:
        nb = math.ceil(self._rank_samples() / self.batch_size)
        return min(nb, self.limit_batches) if self.limit_batches is not None else nb

    def plan(self) -> tuple[list[np.ndarray], np.ndarray]:
        """This rank's batches (global sample indices) for the current epoch, and the shard positions."""
        order, shard_pos = epoch_order(
            self.indices, self.shard_of, self.seed, self.epoch, self.shuffle, self.buffer_shards
        )
        part = rank_part(order, self.rank, self.world_size, self.drop_remainder)
        return cut_batches(part, self.batch_size, self.limit_batches), shard_pos

    # -- reading (inside the iterating process) ------------------------------------------------
    def _open(self) -> Cache:
        if self._cache is None:
            self._cache = Cache(self.layout.path, max_shards_in_memory=self.buffer_shards)
        return self._cache

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # never ship an opened cache to another process
        return state

    def load_batch(self, idx: np.ndarray, shard_pos: np.ndarray | None = None) -> ComplexBatch:
        """Collate the samples ``idx`` (global indices, in this order) into one batch."""
        cache = self._open()
        shard = self.layout.shard_of(idx)
        shards = np.unique(shard)
        if shard_pos is not None:
            shards = shards[np.argsort(shard_pos[shards], kind="stable")]
        parts = []
        for k in shards.tolist():
            where = np.flatnonzero(shard == k)
            rows = idx[where] - self.layout.shard_starts[k]
            parts.append((where, gather_rows(cache.shard(k), rows, self._groups)))
        batch = collate_ragged(join_parts(parts, len(idx), self.layout.path), self.spec)
        batch.sample_index = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
        return batch

    def __iter__(self) -> Iterator[ComplexBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches, shard_pos = self.plan()
        for b in worker_block(len(batches), worker, workers):
            yield self.load_batch(batches[b], shard_pos)


def make_loader(stream: ShardStream, workers: int) -> DataLoader:
    """A DataLoader over ``stream`` (which batches itself): ``workers`` processes, re-forked every epoch."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
