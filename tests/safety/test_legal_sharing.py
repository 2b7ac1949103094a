"""Legal ways of sharing a cache: an entry file reached through a link, a cache renamed as a pair."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import invoke
from safety_helpers import copy_cache

from empcn import cache as cf


def reads_whole(entry: Path, reference: Path) -> None:
    """``entry`` verifies and holds the samples of ``reference``."""
    result = invoke("cache", "verify", entry)
    assert result.exit_code == 0 and result.stdout.startswith(f"ok: {entry}: 3 shards verified"), result.output
    mine, theirs = cf.open_cache(entry), cf.open_cache(reference)
    for index in (0, 150, len(theirs) - 1):
        assert mine[index]["id"] == theirs[index]["id"]
        assert (mine[index]["pos"] == theirs[index]["pos"]).all()
    assert cf.cache_size_bytes(entry) == cf.cache_size_bytes(reference)
    assert cf.missing_shards(entry) == []


def test_entry_file_reached_through_a_link_finds_its_shards_beside_the_real_file(
    qm9_cache: Path, tmp_path: Path
) -> None:
    shared = copy_cache(qm9_cache, tmp_path / "shared" / "caches")
    mine = tmp_path / "me" / "data"
    mine.mkdir(parents=True)
    for name in ("qm9.h5", "u0-for-me.h5"):  # the link's own name need not be the cache's
        (mine / name).symlink_to(shared)
        reads_whole(mine / name, qm9_cache)
        assert cf.open_cache(mine / name).shard_path(0).parent == shared.parent / "qm9.shards"


def test_a_cache_renamed_as_a_pair_still_reads(qm9_cache: Path, tmp_path: Path, tiny_run: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "team")
    renamed = entry.with_name("u0.h5")
    entry.rename(renamed)
    (entry.parent / "qm9.shards").rename(entry.parent / "u0.shards")
    reads_whole(renamed, qm9_cache)
    assert cf.open_cache(renamed).shard_path(0) == entry.parent / "u0.shards" / "shard-00000.h5"
    # the manifest's bytes are those the lift wrote (it still names qm9.shards): nothing was rewritten
    assert cf.open_cache(renamed).manifest["shards"][0]["file"] == "qm9.shards/shard-00000.h5"
    # a run trained on the original evaluates on the renamed cache with the same result
    a = json.loads(invoke("evaluate", tiny_run, "--json", "--no-plot", "--device", "cpu").stdout)
    b = invoke("evaluate", tiny_run, "--cache", renamed, "--json", "--no-plot", "--device", "cpu")
    assert b.exit_code == 0, b.output
    assert json.loads(b.stdout)["mae"] == a["mae"]


def test_an_entry_file_copied_alone_reads_its_originals_shards(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "team")
    backup = entry.with_name("backup-of-qm9.h5")
    shutil.copy2(entry, backup)  # no backup-of-qm9.shards: the manifest's folder, qm9.shards, is used
    reads_whole(backup, qm9_cache)
