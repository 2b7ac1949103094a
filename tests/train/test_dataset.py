"""The streaming data path: epoch plans, shuffling windows, rank/worker partitions, lazy cache handles."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from empcn.cache import open_cache, shard_dir, write_entry
from empcn.train.batch import ComplexBatch
from empcn.train.collate import CollateSpec, collate
from empcn.train.dataset import (
    CacheLayout,
    ShardStream,
    epoch_order,
    make_loader,
    subset_of_split,
    worker_block,
)

TARGET = "U0"


@pytest.fixture(scope="module")
def layout(qm9_cache: Path) -> CacheLayout:
    return CacheLayout.read(qm9_cache)


@pytest.fixture(scope="module")
def spec(layout: CacheLayout) -> CollateSpec:
    full = CollateSpec.from_manifest(layout.manifest, ("sample/y",))
    return CollateSpec(neighbourhoods={"2_0": full.neighbourhoods["2_0"]}, fields=full.fields)


def stream(layout: CacheLayout, spec: CollateSpec, split: str = "train", **kw) -> ShardStream:
    kw.setdefault("shuffle", True)
    return ShardStream(layout, layout.split(split), spec, kw.pop("batch_size", 16), **kw)


def seen(s: ShardStream, workers: int = 0) -> list[np.ndarray]:
    """Sample indices of every batch one epoch yields."""
    return [b.sample_index.numpy() for b in make_loader(s, workers)]


def test_layout_reads_the_entry_file_only(layout: CacheLayout, qm9_cache: Path) -> None:
    cache = open_cache(qm9_cache)
    assert layout.num_samples == len(cache) and len(layout.shard_starts) == cache.num_shards >= 2
    assert layout.shard_starts[0] == 0 and layout.shard_stops[-1] == len(cache)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(layout.split(name), cache.splits[name])
    idx = np.arange(len(cache))
    for i in idx[:: max(1, len(cache) // 17)]:
        assert cache.locate(int(i))[0] == layout.shard_of(np.array([i]))[0]


def test_an_epoch_yields_the_split_once_in_a_seeded_order(layout: CacheLayout, spec: CollateSpec) -> None:
    s = stream(layout, spec, seed=3)
    s.set_epoch(1)
    first = seen(s)
    order = np.concatenate(first)
    np.testing.assert_array_equal(np.sort(order), layout.split("train"))  # everything, once
    assert len(first) == len(s) and all(len(b) == 16 for b in first[:-1])
    assert not np.array_equal(order, np.sort(order))  # shuffled
    np.testing.assert_array_equal(np.concatenate(seen(s)), order)  # same seed, same epoch: same order
    s.set_epoch(2)
    assert not np.array_equal(np.concatenate(seen(s)), order)  # new epoch: new order
    other = stream(layout, spec, seed=4)
    other.set_epoch(1)
    assert not np.array_equal(np.concatenate(seen(other)), order)


def test_no_shuffle_is_ascending(layout: CacheLayout, spec: CollateSpec) -> None:
    s = stream(layout, spec, "valid", shuffle=False)
    np.testing.assert_array_equal(np.concatenate(seen(s)), layout.split("valid"))


def test_shuffle_keeps_to_windows_of_buffer_shards(layout: CacheLayout) -> None:
    idx = layout.split("train")
    shard = layout.shard_of(idx)
    n_shards = len(np.unique(shard))
    order, pos = epoch_order(idx, shard, seed=0, epoch=5, shuffle=True, buffer_shards=1)
    along = layout.shard_of(order)
    # one shard at a time: the shard changes exactly n_shards - 1 times, in the planned shard order
    changes = np.flatnonzero(np.diff(along)) + 1
    assert len(changes) == n_shards - 1
    np.testing.assert_array_equal(np.argsort(pos[np.unique(shard)]), np.argsort(pos[along[np.r_[0, changes]]]))
    # a window of all shards mixes them
    mixed, _ = epoch_order(idx, shard, seed=0, epoch=5, shuffle=True, buffer_shards=n_shards)
    assert len(np.flatnonzero(np.diff(layout.shard_of(mixed)))) > n_shards


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_are_disjoint_with_equal_batch_counts(layout: CacheLayout, spec: CollateSpec, world: int) -> None:
    parts = []
    for rank in range(world):
        s = stream(layout, spec, seed=1, rank=rank, world_size=world, drop_remainder=True, batch_size=7)
        s.set_epoch(4)
        batches = seen(s)
        assert len(batches) == len(s)
        parts.append(np.concatenate(batches))
    assert len({len(s) for s in parts}) == 1  # same samples, so same batches, on every rank
    union = np.concatenate(parts)
    assert len(np.unique(union)) == len(union)  # disjoint
    n = len(layout.split("train"))
    assert len(union) == n - n % world and np.isin(union, layout.split("train")).all()


def test_evaluation_partition_covers_everything(layout: CacheLayout, spec: CollateSpec) -> None:
    got = [np.concatenate(seen(stream(layout, spec, "test", shuffle=False, rank=r, world_size=3))) for r in range(3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(got)), layout.split("test"))


def test_dataloader_workers_split_batches_without_changing_them(layout: CacheLayout, spec: CollateSpec) -> None:
    s = stream(layout, spec, seed=2, batch_size=10)
    s.set_epoch(3)
    alone = seen(s)
    assert s._cache is not None  # iterating in this process opened a handle here …
    with_workers = seen(s, workers=2)
    assert len(with_workers) == len(alone) == len(s)
    assert sorted(map(tuple, with_workers)) == sorted(map(tuple, alone))  # same batches, other order
    blocks = [worker_block(len(alone), w, 2) for w in range(2)]
    assert blocks[0].stop == blocks[1].start and blocks[1].stop == len(alone)


def test_cache_handles_are_opened_lazily(layout: CacheLayout, spec: CollateSpec) -> None:
    s = stream(layout, spec)
    assert s._cache is None  # nothing opened before a DataLoader forks
    next(iter(s))
    assert s._cache is not None
    assert pickle.loads(pickle.dumps(s))._cache is None  # never shipped to another process


def test_one_shard_cache_still_splits_across_ranks(
    tmp_path: Path, qm9_cache: Path, layout: CacheLayout, spec: CollateSpec
) -> None:
    """A cache of one shard (its first), built from the real one: ranks still get disjoint halves."""
    entry = tmp_path / "one.h5"
    src = layout.manifest["shards"][0]
    dst = shard_dir(entry)
    dst.mkdir()
    shutil.copy(qm9_cache.parent / src["file"], dst / Path(src["file"]).name)
    stop = int(src["samples"][1])
    manifest = dict(layout.manifest)
    manifest["shards"] = [dict(src, file=f"{dst.name}/{Path(src['file']).name}")]
    manifest["counts"] = {"samples": stop}
    splits = {k: v[v < stop] for k, v in layout.splits.items()}
    write_entry(entry, manifest, splits, [manifest["shards"][0]["file"]])
    one = CacheLayout.read(entry)
    halves = []
    for rank in range(2):
        s = ShardStream(one, one.split("train"), spec, 8, shuffle=True, rank=rank, world_size=2, drop_remainder=True)
        halves.append(np.concatenate(seen(s)))
    assert len(halves[0]) == len(halves[1]) == len(splits["train"]) // 2 > 0
    assert not set(halves[0]) & set(halves[1])


def test_batches_hold_the_cached_samples(qm9_cache: Path, layout: CacheLayout, spec: CollateSpec) -> None:
    cache = open_cache(qm9_cache)
    s = stream(layout, spec, seed=0, batch_size=5)
    batch = next(iter(s))
    column = open_cache(qm9_cache).manifest["targets"]["names"].index(TARGET)
    y = batch.field("sample/y")
    for g, i in enumerate(batch.sample_index.tolist()):
        sample = cache[i]
        assert y[g, column].item() == sample["y"][TARGET]
        np.testing.assert_array_equal(batch.pos[batch.node_graph == g].numpy(), sample["pos"])
        assert int((batch.ring_graph == g).sum()) == len(sample["rings"])
    assert y.dtype == torch.float64 and y.shape == (5, len(sample["y"]))


def test_limit_batches_and_subsets(layout: CacheLayout, spec: CollateSpec) -> None:
    s = stream(layout, spec, limit_batches=2)
    assert len(s) == 2 and len(seen(s)) == 2
    train = layout.split("train")
    sub = subset_of_split(train, 50, seed=7)
    assert len(sub) == 50 and np.isin(sub, train).all() and np.all(np.diff(sub) > 0)
    np.testing.assert_array_equal(sub, subset_of_split(train, 50, seed=7))
    assert not np.array_equal(sub, subset_of_split(train, 50, seed=8))
    np.testing.assert_array_equal(subset_of_split(train, None, seed=7), train)


def assert_same_batch(got: ComplexBatch, want: ComplexBatch) -> None:
    """Every field equal, dtypes included (sample_index aside: only the data path sets it)."""
    for field in dataclasses.fields(ComplexBatch):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if field.name == "sample_index":
            continue
        if isinstance(a, dict):
            assert a.keys() == b.keys(), field.name
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), (field.name, key)
        elif isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), field.name
        else:
            assert a == b, field.name


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_vectorised_batches_equal_per_sample_collation(qm9_cache: Path, layout: CacheLayout, batch_size: int) -> None:
    """The data path gathers a batch shard by shard in a few numpy calls per array; the oracle is
    :func:`collate` of the samples the public reader returns one by one, in the batch's order."""
    cache = open_cache(qm9_cache)
    full = CollateSpec.from_manifest(
        layout.manifest, ("sample/y", "sample/id")
    )  # every neighbourhood, rings, bond orders
    s = stream(layout, full, seed=5, batch_size=batch_size, buffer_shards=3)
    s.set_epoch(2)
    spans = []
    for batch in s:
        idx = batch.sample_index.numpy()
        spans.append(len(np.unique(layout.shard_of(idx))))
        assert_same_batch(batch, collate([cache[int(i)] for i in idx], full))
    if batch_size > 1:
        assert max(spans) > 1  # batches whose samples interleave from several shards were checked


def test_vectorised_batches_of_position_caches(tmp_path: Path) -> None:
    """N-body samples (velocities, charges, target positions, the complex's neighbourhoods) too."""
    from empcn.data.nbody import ChargedConfig
    from empcn.lift.nbody import NBodyLiftConfig, NBodySplit, lift_nbody

    path = lift_nbody(
        NBodyLiftConfig(
            out=tmp_path / "nbody.h5",
            splits=(NBodySplit("train", 60, 1), NBodySplit("valid", 4, 2), NBodySplit("test", 4, 3)),
            simulator=ChargedConfig(num_steps=200, save_every=100),
            frame_in=0,
            frame_target=1,
            shard_size=16,
            workers=1,
            progress=False,
        )
    )
    layout, cache = CacheLayout.read(path), open_cache(path)
    spec = CollateSpec.from_manifest(layout.manifest, ("nodes/vel", "nodes/charge", "nodes/target_pos", "sample/sim"))
    s = ShardStream(layout, layout.split("train"), spec, 25, shuffle=True, seed=1)
    s.set_epoch(1)
    batches = list(s)
    assert sum(b.num_graphs for b in batches) == len(layout.split("train"))
    for batch in batches:
        assert set(batch.fields) == set(spec.fields) and batch.field("nodes/vel").shape == batch.pos.shape
        assert_same_batch(batch, collate([cache[int(i)] for i in batch.sample_index.numpy()], spec))


def test_an_empty_batch_collates_to_no_cells(layout: CacheLayout) -> None:
    full = CollateSpec.from_manifest(layout.manifest, ("sample/y",))
    s = stream(layout, full)
    batch = s.load_batch(np.zeros(0, dtype=np.int64))
    assert batch.num_graphs == 0 and batch.pos.shape == (0, 3) and batch.edge_feat.shape == (0, 0)
    assert_same_batch(batch, collate([], full))
