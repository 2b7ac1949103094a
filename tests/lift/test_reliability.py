"""Issue 10: a cache that is never silently wrong, a lift that never half-succeeds, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import empcn
from empcn import cache as cf
from empcn.cli import app
from empcn.data import qm9 as qm9_source
from empcn.lift import pipeline
from empcn.lift.output import lock_path
from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

runner = CliRunner()


def copy_cache(src: Path, dst_dir: Path) -> Path:
    shutil.copytree(src.parent, dst_dir)
    return dst_dir / src.name


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def one_line_error(res) -> str:
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert "Traceback" not in res.output and len(lines) == 1, res.output
    return lines[0]


def _lift(out: Path, **kw) -> Path:
    return lift_qm9(
        QM9LiftConfig(
            out=out, limit=kw.pop("limit", 60), shard_size=kw.pop("shard_size", 30), workers=1, progress=False, **kw
        )
    )


# 1. damage inside a shard's arrays never reads back as data ---------------------------------------


def test_damaged_array_bytes_are_detected_by_every_read(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = entry.parent / cf.open_cache(entry).manifest["shards"][1]["file"]
    flip(shard, shard.stat().st_size // 2)
    assert empcn.CacheError is cf.CacheError
    cache = empcn.open_cache(entry)
    cache[0]  # shard 0 is intact
    with pytest.raises(empcn.CacheError, match=f"{shard}.*sha256 mismatch"):
        cache[cache.shard_range(1)[0]]
    with pytest.raises(empcn.CacheError, match="sha256"):
        list(cache)


# 2. damaged HDF5 metadata is a one-line CacheError naming the file --------------------------------


def test_damaged_metadata_is_a_cache_error_naming_the_file(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = entry.parent / cf.open_cache(entry).manifest["shards"][0]["file"]
    for offset in (0, 8, 40, 96, 200, 400, 800):
        damaged = tmp_path / f"s{offset}.h5"
        shutil.copy(shard, damaged)
        flip(damaged, offset)
        try:
            cf.read_shard(damaged)  # no digest: the HDF5 decoding itself must fail cleanly
        except cf.CacheError as exc:
            assert str(damaged) in str(exc) and "\n" not in str(exc)
    for offset in (0, 8, 40, 96, 200, 400, 800, 1500, 3000):
        bad = tmp_path / f"e{offset}" / entry.name
        copy_cache(entry, bad.parent)
        flip(bad, offset)
        try:
            empcn.open_cache(bad)
        except empcn.CacheError as exc:
            assert str(bad) in str(exc) and "\n" not in str(exc)
        report = cf.verify_cache(bad)  # never KeyError / TypeError / RuntimeError
        res = runner.invoke(app, ["cache", "info", str(bad)])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.output
        if res.exit_code:
            assert str(bad) in one_line_error(res)
        assert isinstance(report.ok, bool)


# 3. resume proves a shard is intact before keeping it ---------------------------------------------


def test_resume_does_not_launder_a_damaged_shard(tmp_path: Path) -> None:
    out = _lift(tmp_path / "q.h5")
    shard = cf.shard_dir(out) / cf.shard_name(1)
    good = shard.read_bytes()
    out.unlink()  # the entry file (and its digests) gone, as after a killed re-lift
    flip(shard, len(good) // 2)  # still a readable HDF5 file: only the data changed
    _lift(out, resume=True)
    assert shard.read_bytes() == good
    assert cf.verify_cache(out).ok


# 4. the manifest is protected; one version field ---------------------------------------------------


def _rewrite_manifest(entry: Path, change) -> None:
    with h5py.File(entry, "r+") as f:
        m = json.loads(bytes(f["manifest"][()]).decode())
        change(m)
        del f["manifest"]
        f.create_dataset("manifest", data=np.frombuffer(json.dumps(m, sort_keys=True).encode(), dtype=np.uint8))


def test_a_changed_manifest_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    _rewrite_manifest(entry, lambda m: m["targets"]["train_mean"].__setitem__("U0", 0.0))
    with pytest.raises(empcn.CacheError, match=f"{entry}.*manifest checksum"):
        empcn.open_cache(entry)
    assert not cf.verify_cache(entry).ok
    assert "manifest checksum" in one_line_error(runner.invoke(app, ["cache", "info", str(entry)]))


def test_manifest_and_file_version_must_agree(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")

    def bump(m):
        m["format_version"] = cf.FORMAT_VERSION + 1

    _rewrite_manifest(entry, bump)
    with h5py.File(entry, "r+") as f:  # a consistent checksum: only the version disagreement remains
        f.attrs["manifest_sha256"] = __import__("hashlib").sha256(bytes(f["manifest"][()])).hexdigest()
    with pytest.raises(empcn.CacheError, match="manifest says format version"):
        empcn.open_cache(entry)


def test_a_format_1_cache_is_still_read_with_its_shards_checked(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    manifest = cf.open_cache(entry).manifest
    for meta in manifest["shards"]:  # rewrite as format 1 wrote it: version 1, no manifest checksum
        path = entry.parent / meta["file"]
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = 1
        meta["sha256"] = cf.sha256_file(path)
    manifest["format_version"] = 1
    with h5py.File(entry, "r+") as f:
        f.attrs["format_version"] = 1
        del f.attrs["manifest_sha256"]
        del f["manifest"]
        f.create_dataset("manifest", data=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    cache = empcn.open_cache(entry)
    assert len(list(cache)) == len(cache)
    report = cf.verify_cache(entry)
    assert report.ok and "no checksum" in report.notes[0]
    flip(entry.parent / manifest["shards"][0]["file"], 3000)
    with pytest.raises(empcn.CacheError, match="sha256"):
        list(empcn.open_cache(entry))


# 5. a second writer into one --out is refused -----------------------------------------------------


def test_a_concurrent_second_lift_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "q.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom empcn.lift.output import "
            "claim_output\nwith claim_output(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        res = runner.invoke(app, ["lift", "--limit", "20", "--out", str(out), "--workers", "1", "--no-progress"])
        assert res.exit_code == 2
        assert f"pid {holder.pid}" in one_line_error(res) and "another lift" in res.output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    _lift(out, limit=20)  # the kernel released the dead holder's lock
    assert not lock_path(out).exists()


# 6. values that do not fit float32 and degenerate geometry are skipped per molecule ---------------


@pytest.mark.parametrize("damage, reason", [("huge", "does not fit float32"), ("same", "same point")])
def test_bad_geometry_skips_the_molecule(tmp_path: Path, monkeypatch, damage: str, reason: str) -> None:
    real = qm9_source.read_qm9

    def damaged(source, limit=None, strict=False):
        raw, skipped = real(source, limit=limit, strict=strict)
        pos = raw.pos.copy()
        a = int(raw.offsets[5])
        if damage == "huge":
            pos[a, 0] = 1e308
        else:
            pos[a + 1] = pos[a]
        return type(raw)(**{**raw.__dict__, "pos": pos}), skipped

    monkeypatch.setattr(qm9_source, "read_qm9", damaged)
    out = _lift(tmp_path / "q.h5", limit=20)
    m = empcn.open_cache(out).manifest
    assert len(empcn.open_cache(out)) == 19
    assert [s["id"] for s in m["skipped"]] == [6] and reason in m["skipped"][0]["reason"]
    with pytest.raises(pipeline.LiftError, match=f"molecule 6: .*{reason}"):
        _lift(tmp_path / "s.h5", limit=20, strict=True)


# 7. unwritable outputs fail first, in one line ----------------------------------------------------


def test_unwritable_out_fails_before_reading_the_source(tmp_path: Path, monkeypatch) -> None:
    def must_not_read(*a, **k):
        raise AssertionError("the source was read before --out was checked")

    monkeypatch.setattr(qm9_source, "read_qm9", must_not_read)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["lift", "--out", str(blocker / "sub" / "q.h5"), "--no-progress"])
    assert res.exit_code == 2 and f"{blocker} is a file" in one_line_error(res)
    res = runner.invoke(app, ["lift", "--dataset", "nbody", "--out", str(blocker / "n.h5"), "--no-progress"])
    assert res.exit_code == 2 and "is a file" in one_line_error(res)
    folder = tmp_path / "dir.h5"
    folder.mkdir()
    res = runner.invoke(app, ["lift", "--out", str(folder), "--no-progress"])
    assert res.exit_code == 2 and "is a folder" in one_line_error(res)


# 8. files are created with the umask's modes --------------------------------------------------------


def test_cache_and_checkpoint_files_respect_the_umask(tmp_path: Path) -> None:
    from empcn.train.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        out = _lift(tmp_path / "q.h5", limit=20)
        ckpt = save_checkpoint(tmp_path / "run" / "last.pt", {"x": 1})
    finally:
        os.umask(old)
    files = [out, ckpt, *cf.shard_dir(out).iterdir()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o644"}


# 10. leftovers ---------------------------------------------------------------------------------------


def test_leftover_temporary_files_are_removed_and_failed_lifts_leave_no_folders(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "q.h5"
    folder = cf.shard_dir(out)
    folder.mkdir()
    (tmp_path / f".{out.name}.abc123.tmp").write_bytes(b"half")
    (folder / ".shard-00000.h5.xyz.tmp").write_bytes(b"half")
    _lift(out, limit=20)
    assert not list(tmp_path.glob("**/*.tmp"))

    def broken(*a, **k):
        raise qm9_source.SourceError("nope.tar.bz2: truncated")

    monkeypatch.setattr(qm9_source, "read_qm9", broken)
    with pytest.raises(qm9_source.SourceError):
        _lift(tmp_path / "new" / "deeper" / "q.h5")
    assert not (tmp_path / "new").exists()


def test_workers_die_with_the_parent(tmp_path: Path) -> None:
    code = (
        "import multiprocessing as mp, os, time\n"
        "from empcn.lift.pipeline import _init_worker\n"
        "pool = mp.get_context('fork').Pool(1, initializer=_init_worker, initargs=(os.getpid(),))\n"
        "print(pool.apply(os.getpid), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "State:\tZ" not in state

    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker)


# 11. options and paths that used to be handled silently ------------------------------------------


def test_source_with_nbody_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(app, ["lift", "--dataset", "nbody", "--source", str(tmp_path), "--out", str(tmp_path / "n.h5")])
    assert res.exit_code == 2 and "--source" in one_line_error(res)


def test_cache_info_notices_a_missing_shard(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "c")
    shard = entry.parent / cf.open_cache(entry).manifest["shards"][1]["file"]
    shard.unlink()
    res = runner.invoke(app, ["cache", "info", str(entry)])
    assert res.exit_code == 1 and f"{shard}: missing shard" in res.output


def test_a_folder_or_a_shard_as_cache_says_what_it_is(qm9_cache: Path) -> None:
    shard = cf.shard_dir(qm9_cache) / cf.shard_name(0)
    for path, what in ((qm9_cache.parent, "a folder"), (cf.shard_dir(qm9_cache), "a folder"), (shard, "a shard file")):
        res = runner.invoke(app, ["cache", "info", str(path)])
        assert res.exit_code == 2 and what in one_line_error(res)
        with pytest.raises(empcn.CacheError, match=what):
            empcn.open_cache(path)
