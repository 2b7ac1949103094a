"""The cache format module on its own: round trip, reproducible bytes, atomicity, verification."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from empcn import cache as cf


def _content(seed: int, num: int = 5) -> cf.ShardContent:
    rng = np.random.default_rng(seed)
    n_nodes = rng.integers(1, 6, size=num)
    n_edges = rng.integers(0, 4, size=num)
    node_off = np.concatenate([[0], np.cumsum(n_nodes)])
    edge_off = np.concatenate([[0], np.cumsum(n_edges)])
    owner = np.repeat(np.arange(num), n_edges)
    edges = np.stack([rng.integers(0, n_nodes[owner]), rng.integers(0, n_nodes[owner])], axis=1).astype(np.int32)
    return cf.ShardContent(
        groups={
            "sample": cf.RaggedGroup(np.arange(num + 1), {"id": np.arange(num, dtype=np.int64) + 100}),
            "nodes": cf.RaggedGroup(node_off, {"pos": rng.normal(size=(node_off[-1], 3)).astype(np.float32)}),
            "edges": cf.RaggedGroup(edge_off, {"index": edges}, {"index": ("nodes",)}),
        },
        attrs={"note": "test", "skipped": []},
    )


def _write_cache(tmp_path, contents):
    entry = tmp_path / "toy.h5"
    folder = cf.shard_dir(entry)
    folder.mkdir()
    shards, start = [], 0
    for k, content in enumerate(contents):
        rel = f"{folder.name}/{cf.shard_name(k)}"
        digest = cf.write_shard(tmp_path / rel, content)
        shards.append({"file": rel, "samples": [start, start + content.num_samples], "sha256": digest, "bytes": 0})
        start += content.num_samples
    manifest = {
        "format": cf.FORMAT_NAME,
        "format_version": cf.FORMAT_VERSION,
        "dataset": "toy",
        "shards": shards,
        "counts": {"samples": start},
    }
    cf.write_entry(entry, manifest, {"train": np.arange(start)}, [s["file"] for s in shards])
    return entry


def test_round_trip_slices_every_sample(tmp_path):
    contents = [_content(1), _content(2, num=3)]
    entry = _write_cache(tmp_path, contents)
    cache = cf.open_cache(entry)
    assert len(cache) == 8 and cache.num_shards == 2
    for i in range(len(cache)):
        k, row = (0, i) if i < 5 else (1, i - 5)
        src = contents[k].groups
        s = cache[i]
        a, b = src["nodes"].offsets[row], src["nodes"].offsets[row + 1]
        np.testing.assert_array_equal(s["pos"], src["nodes"].arrays["pos"][a:b])
        a, b = src["edges"].offsets[row], src["edges"].offsets[row + 1]
        np.testing.assert_array_equal(s["edges"], src["edges"].arrays["index"][a:b])
        assert s["id"] == src["sample"].arrays["id"][row]
    assert [s["id"] for s in cache] == [cache[i]["id"] for i in range(len(cache))]
    assert cache[-1]["id"] == cache[7]["id"]
    with pytest.raises(IndexError):
        cache[8]
    np.testing.assert_array_equal(cache.splits["train"], np.arange(8))


def test_same_content_gives_identical_bytes(tmp_path):
    a = cf.write_shard(tmp_path / "a.h5", _content(7))
    b = cf.write_shard(tmp_path / "b.h5", _content(7))
    c = cf.write_shard(tmp_path / "c.h5", _content(8))
    assert a == b != c
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_failed_write_leaves_nothing(tmp_path):
    bad = _content(3)
    bad.groups["edges"].arrays["index"] = bad.groups["edges"].arrays["index"] + 100  # out of range
    with pytest.raises(cf.CacheError, match="out of range"):
        cf.write_shard(tmp_path / "bad.h5", bad)
    assert list(tmp_path.iterdir()) == []


def test_structural_checks_catch_faults():
    c = _content(4)
    c.groups["nodes"].arrays["pos"][0, 0] = np.nan
    with pytest.raises(cf.CacheError, match="NaN"):
        cf.check_shard_content(c, "x")
    c = _content(4)
    c.groups["nodes"].offsets = c.groups["nodes"].offsets[::-1].copy()
    with pytest.raises(cf.CacheError, match="offsets"):
        cf.check_shard_content(c, "x")


def test_verify_detects_corruption_and_missing_shards(tmp_path):
    entry = _write_cache(tmp_path, [_content(1), _content(2)])
    assert cf.verify_cache(entry).ok
    shard = cf.shard_dir(entry) / cf.shard_name(1)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = cf.verify_cache(entry)
    assert not report.ok and "sha256 mismatch" in report.problems[0] and str(shard) in report.problems[0]
    shard.unlink()
    assert "missing shard" in cf.verify_cache(entry).problems[0]


def test_other_format_version_is_refused(tmp_path):
    entry = _write_cache(tmp_path, [_content(1)])
    with h5py.File(entry, "r+") as f:
        f.attrs["format_version"] = cf.FORMAT_VERSION + 1
    with pytest.raises(cf.CacheError, match=f"{entry}.*version {cf.FORMAT_VERSION + 1}"):
        cf.open_cache(entry)
    with pytest.raises(cf.CacheError, match="no such cache"):
        cf.open_cache(tmp_path / "absent.h5")


def test_external_links_resolve_to_shards(tmp_path):
    entry = _write_cache(tmp_path, [_content(1), _content(2)])
    with h5py.File(entry, "r") as f:
        assert sorted(f["shards"].keys()) == ["00000", "00001"]
        assert f["shards/00001/sample/id"].shape == (5,)
