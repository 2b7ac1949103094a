"""The public data path: a PyTorch ``IterableDataset`` and ``DataLoader`` over one split of a cache.

:class:`ComplexDataset` *is* the stream ``empcn train`` reads (:class:`empcn.train.dataset.ShardStream`),
with a constructor that takes a cache and a split name: the same epoch plan (shards shuffled, samples
shuffled within windows of ``buffer_shards`` shards, every DDP rank its own contiguous part, DataLoader
workers contiguous blocks of batches) and the same collation into :class:`~empcn.train.batch.ComplexBatch`.
It batches itself, so its :class:`DataLoader` has ``batch_size=None``.

Never imports the lift stage: a training process reads cached complexes only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from empcn import schema
from empcn.cache import Cache, CacheError
from empcn.errors import EmpcnError
from empcn.train.batch import ComplexBatch
from empcn.train.collate import CollateSpec, manifest_species
from empcn.train.dataset import CacheLayout, ShardStream

#: Fields that every batch holds as the complex itself (positions, cells, their geometry), never as ``fields``.
COMPLEX_FIELDS = frozenset(
    {
        schema.NODE_POS,
        schema.EDGE_INDEX,
        schema.EDGE_LENGTH,
        schema.RING_SIZE,
        schema.RING_AREA,
        schema.RING_PERIMETER,
        schema.RING_RADIUS,
        schema.SLOT_NODE,
        schema.SLOT_EDGE,
    }
)
_CARRIED_GROUPS = (schema.SAMPLE_GROUP, *schema.RANK_GROUPS.values())


def cache_layout(cache: str | Path | Cache | CacheLayout) -> CacheLayout:
    """The layout of ``cache`` (an entry file's path, an open :class:`~empcn.cache.Cache` or a layout)."""
    if isinstance(cache, CacheLayout):
        return cache
    return CacheLayout.read(cache.path if isinstance(cache, Cache) else cache)


def carried_fields(layout: CacheLayout) -> tuple[str, ...]:
    """Every stored field a batch can carry beside the complex: targets, atomic numbers, velocities, bond
    orders, a data set's own per-cell arrays (``sample/…``, ``nodes/…``, ``edges/…``, ``rings/…``)."""
    return tuple(
        sorted(
            f
            for f in layout.stored_fields()
            if f not in COMPLEX_FIELDS and schema.group_of(f) in _CARRIED_GROUPS and "<" not in f
        )
    )


def _world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size: as given, else the process group's (torchrun), else (0, 1)."""
    import torch.distributed as dist

    if rank is None or world_size is None:
        joined = dist.is_available() and dist.is_initialized()
        rank = (dist.get_rank() if joined else 0) if rank is None else rank
        world_size = (dist.get_world_size() if joined else 1) if world_size is None else world_size
    return int(rank), int(world_size)


class ComplexDataset(ShardStream):
    """Batches of one split of a cache, streamed shard by shard: a ``torch.utils.data.IterableDataset``.

    ``cache``: the entry file (or an open :class:`~empcn.cache.Cache`); ``split``: ``"train"``,
    ``"valid"``, ``"test"`` (the cache's ``splits``) or None for every sample; ``indices``: global
    sample indices instead of a split. ``shuffle``/``seed``/``buffer_shards``: the epoch plan of
    ``empcn train`` (call :meth:`set_epoch` before each epoch, or iterate through :class:`DataLoader`,
    which does). ``fields``: stored fields each batch carries by name (``batch.field("sample/y")``);
    default every field of the cache beside the complex (:func:`carried_fields`). ``neighbourhoods``:
    names of :data:`empcn.schema.NEIGHBOURHOODS` to collate (default: all the cache stores).
    ``species``: the elements of the one-hot node features (default: the cache's vocabulary).
    ``rank``/``world_size``: this process's part of each epoch (default: the ``torch.distributed``
    process group's, else the whole split); ``drop_last``: cut the epoch to a multiple of the world
    size so every rank gets as many batches (``DistributedSampler``'s meaning; training does).
    ``limit_batches``: at most this many batches per epoch. ``len(dataset)``: batches per epoch.
    """

    def __init__(
        self,
        cache: str | Path | Cache | CacheLayout,
        split: str | None = "train",
        batch_size: int = 32,
        *,
        shuffle: bool = False,
        seed: int = 0,
        buffer_shards: int = 4,
        fields: Sequence[str] | None = None,
        neighbourhoods: Sequence[str] | None = None,
        species: Sequence[int] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        limit_batches: int | None = None,
    ) -> None:
        layout = cache_layout(cache)
        if indices is not None:
            chosen = np.asarray(indices, dtype=np.int64).reshape(-1)
        elif split is None:
            chosen = np.arange(layout.num_samples, dtype=np.int64)
        else:
            chosen = layout.split(split)
        spec = CollateSpec.from_manifest(layout.manifest)
        if neighbourhoods is not None:
            unknown = sorted(set(neighbourhoods) - set(spec.neighbourhoods))
            if unknown:
                raise CacheError(
                    f"{layout.path}: no neighbourhood {', '.join(unknown)} (it stores "
                    f"{', '.join(spec.neighbourhoods) or 'none'})"
                )
            spec = replace(spec, neighbourhoods={n: spec.neighbourhoods[n] for n in neighbourhoods})
        stored = layout.stored_fields()
        if fields is None:
            fields = carried_fields(layout)
        missing = [f for f in fields if f not in stored]
        if missing:
            raise CacheError(f"{layout.path}: has no field {', '.join(missing)}")
        species = tuple(int(z) for z in species) if species is not None else manifest_species(layout.manifest)
        spec = replace(spec, fields=tuple(fields), species=species)
        rank, world_size = _world(rank, world_size)
        if batch_size < 1 or not 0 <= rank < world_size:
            raise EmpcnError(
                f"ComplexDataset: batch_size must be ≥ 1 and 0 ≤ rank < world_size, got "
                f"{batch_size}, {rank}, {world_size}"
            )
        super().__init__(
            layout,
            chosen,
            spec,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            buffer_shards=buffer_shards,
            rank=rank,
            world_size=world_size,
            drop_remainder=drop_last,
            limit_batches=limit_batches,
        )
        self.split = split

    @property
    def manifest(self) -> dict[str, Any]:
        """The cache's manifest (data set, targets and their units, splits, cells, fields)."""
        return self.layout.manifest

    @property
    def collate_spec(self) -> CollateSpec:
        """What each batch holds beside the complex: neighbourhoods, fields, node-feature species."""
        return self.spec

    def __repr__(self) -> str:
        return (
            f"ComplexDataset({self.layout.path!r}, split={self.split!r}, samples={len(self.indices)}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, batches={len(self)})"
        )


class DataLoader(torch.utils.data.DataLoader):
    """A ``torch.utils.data.DataLoader`` of :class:`ComplexDataset` batches (``ComplexBatch`` objects).

    ``DataLoader(cache, "train", batch_size=32, shuffle=True, num_workers=2)`` builds the dataset
    (further keywords go to :class:`ComplexDataset`); ``DataLoader(dataset)`` wraps one. Each
    iteration is one epoch: the loader sets the dataset's epoch to 0, 1, 2, … as it is iterated
    (:meth:`set_epoch` chooses the next one), so shuffled epochs differ and are reproducible from
    ``seed``. Workers are forked per epoch and open the cache themselves.
    """

    def __init__(
        self,
        dataset: ComplexDataset | str | Path | Cache,
        split: str | None = "train",
        batch_size: int = 32,
        shuffle: bool = False,
        num_workers: int = 0,
        **options: Any,
    ) -> None:
        if not isinstance(dataset, ComplexDataset):
            dataset = ComplexDataset(dataset, split, batch_size, shuffle=shuffle, **options)
        elif options:
            raise EmpcnError(
                f"DataLoader: options {', '.join(sorted(options))} apply when it builds the dataset, "
                "not to a ComplexDataset given"
            )
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=False,
            prefetch_factor=4 if num_workers > 0 else None,
        )
        self._next_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch (shuffle order) of the next iteration."""
        self._next_epoch = int(epoch)

    def __iter__(self) -> Iterator[ComplexBatch]:
        self.dataset.set_epoch(self._next_epoch)
        self._next_epoch += 1
        return super().__iter__()
