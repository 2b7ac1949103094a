"""A cache is exactly its entry file and the regular files of its shards folder; nothing else is ever read.

Each test builds a cache a teammate could hand over — its manifest and checksums consistent, so that
only the confinement rules can catch it — and checks `cache verify` and every read refuse it in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from safety_helpers import copy_cache

from empcn import cache as cf
from empcn.cache import CacheError


def rewrite_manifest(entry: Path, change) -> None:
    """Rewrite ``entry`` with ``change(manifest)`` applied, its manifest checksum recomputed (a forgery
    that passes the entry file's own checks)."""
    manifest, splits = cf._read_entry(entry)
    change(manifest)
    cf.write_entry(entry, manifest, splits, [s["file"] for s in manifest["shards"]])


def reseal(entry: Path, k: int) -> None:
    """Record shard ``k``'s current bytes in the manifest (after the test edited the shard)."""
    shard = cf.open_cache(entry).shard_path(k)

    def change(manifest: dict) -> None:
        manifest["shards"][k]["sha256"] = cf.sha256_file(shard)

    rewrite_manifest(entry, change)


def verify_in_subprocess(entry: Path) -> subprocess.CompletedProcess:
    """`empcn cache verify` in a process limited to 3 GiB of address space and 120 s (a cache must not
    be able to make it read forever or hang)."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
        "from empcn.cli import main; sys.argv = ['empcn', 'cache', 'verify', sys.argv[1]]; main()"
    )
    return subprocess.run([sys.executable, "-c", code, str(entry)], capture_output=True, text=True, timeout=120)


def refused_everywhere(entry: Path, k: int, why: str) -> None:
    """`cache verify` reports ``why`` for shard ``k``, and reading shard ``k`` raises it."""
    report = cf.verify_cache(entry)
    assert not report.ok and any(why in p for p in report.problems), report.problems
    with pytest.raises(CacheError, match=why):
        cf.open_cache(entry).shard(k)


def test_dataset_stored_in_an_external_file_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = cf.open_cache(entry).shard_path(1)
    outside = tmp_path / "outside.bin"
    with h5py.File(shard, "r+") as f:
        y = f["sample/y"][()]
        del f["sample/y"]
        f.create_dataset("sample/y", data=y, external=[(str(outside), 0, h5py.h5f.UNLIMITED)])
    reseal(entry, 1)
    assert outside.stat().st_size == y.nbytes  # the data now lives outside: editing it would pass the checksum
    refused_everywhere(entry, 1, "dataset 'sample/y' keeps its data in an external file")


def test_external_link_in_a_shard_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = cf.open_cache(entry).shard_path(0)
    outside = tmp_path / "outside.h5"
    with h5py.File(shard, "r+") as f, h5py.File(outside, "w") as o:
        f.copy(f["nodes"], o, "nodes")
        del f["nodes"]
        f["nodes"] = h5py.ExternalLink(str(outside), "/nodes")
    reseal(entry, 0)
    refused_everywhere(entry, 0, f"'nodes' is an external link to {outside}")


def test_virtual_dataset_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = cf.open_cache(entry).shard_path(2)
    outside = tmp_path / "ids.h5"
    with h5py.File(shard, "r+") as f:
        ids = f["sample/id"][()]
        with h5py.File(outside, "w") as o:
            o["id"] = ids
        layout = h5py.VirtualLayout(shape=ids.shape, dtype=ids.dtype)
        layout[:] = h5py.VirtualSource(str(outside), "id", shape=ids.shape)
        del f["sample/id"]
        f.create_virtual_dataset("sample/id", layout)
    reseal(entry, 2)
    refused_everywhere(entry, 2, "dataset 'sample/id' is virtual")


def test_entry_file_with_a_foreign_external_link_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    outside = tmp_path / "splits.h5"
    with h5py.File(outside, "w") as o:
        o["train"] = np.arange(3, dtype=np.int64)
    with h5py.File(entry, "r+") as f:
        del f["splits/train"]
        f["splits/train"] = h5py.ExternalLink(str(outside), "/train")
    with pytest.raises(CacheError, match=f"'splits/train' is an external link to {outside}"):
        cf.open_cache(entry)


@pytest.mark.parametrize(
    "file, why",
    [
        ("../outside/shard-00000.h5", "leaves the shards folder"),
        ("/tmp/shard-00000.h5", "is an absolute path"),
        ("qm9.shards/sub/shard-00000.h5", "is not a file inside the shards folder"),
    ],
)
def test_manifest_shard_paths_stay_in_the_shards_folder(qm9_cache: Path, tmp_path: Path, file: str, why: str) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shard-00000.h5").write_bytes(cf.open_cache(entry).shard_path(0).read_bytes())

    def change(manifest: dict) -> None:
        manifest["shards"][0]["file"] = file

    rewrite_manifest(entry, change)
    with pytest.raises(CacheError, match=f"{entry}: manifest's shards\\[0\\] file '{file}' {why}"):
        cf.open_cache(entry)
    report = cf.verify_cache(entry)
    assert len(report.problems) == 1 and why in report.problems[0]


def test_dev_zero_as_a_shard_is_refused_without_reading_it(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")

    def change(manifest: dict) -> None:
        manifest["shards"][0]["file"] = "/dev/zero"

    rewrite_manifest(entry, change)
    proc = verify_in_subprocess(entry)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "'/dev/zero' is an absolute path" in proc.stderr


@pytest.mark.parametrize("kind", ["fifo", "link out", "link to /dev/zero"])
def test_a_shard_that_is_not_a_regular_file_is_never_opened(qm9_cache: Path, tmp_path: Path, kind: str) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = cf.open_cache(entry).shard_path(1)
    outside = tmp_path / "outside.h5"
    outside.write_bytes(shard.read_bytes())  # the very bytes the manifest's digest expects
    shard.unlink()
    if kind == "fifo":
        os.mkfifo(shard)
    else:
        shard.symlink_to(outside if kind == "link out" else "/dev/zero")
    what = "a FIFO" if kind == "fifo" else "a symbolic link"
    proc = verify_in_subprocess(entry)  # a FIFO would block an open, /dev/zero never end
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"FAULT {shard}: {what}, not a shard file" in proc.stderr
    with pytest.raises(CacheError, match=f"{shard}: {what}, not a shard file"):
        cf.open_cache(entry).shard(1)


def test_cache_info_and_size_do_not_follow_a_shard_link(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = cf.open_cache(entry).shard_path(0)
    shard.unlink()
    shard.symlink_to("/dev/zero")
    assert cf.missing_shards(entry) == [shard]
    assert cf.cache_size_bytes(entry) < cf.cache_size_bytes(qm9_cache)
