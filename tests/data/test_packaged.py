"""Packaged data: the built-in CMU subject-35 source, unpacked safely, atomically and once.

The built-in source is found as the package finds it (:func:`empcn.data.mocap.default_source`); the
unpacking rules are checked on small archives written here, hostile ones included.
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from empcn.data.mocap import BUILTIN_ARCHIVE, ENV_VAR, default_source, find_source
from empcn.data.packaged import CACHE_ENV_VAR, LISTING, PackagedDataError, pack_members, read_members, unpacked

ATTRIBUTION = (
    "The data used in this project was obtained from mocap.cs.cmu.edu.\n"
    "The database was created with funding from NSF EIA-0196217."
)


def test_the_built_in_source_holds_subject_35_with_cmus_terms(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    folder = default_source()
    assert folder.name.startswith("cmu_mocap_35-") and folder == default_source()
    assert BUILTIN_ARCHIVE.stat().st_size < 800_000  # compressed: 2.4 MB of text in ≈0.69 MB
    source = find_source(folder / "amc30")
    assert source.asf.name == "35.asf" and len(source.trials) == 33
    assert {p.name for p in source.trials} == {f"train_{k:02d}.amc" for k in range(1, 32)} | {
        "test_01.amc",
        "test_02.amc",
    }
    assert (folder / "35.asf").read_bytes() == source.asf.read_bytes() and (folder / "35_01.amc").is_file()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert ATTRIBUTION in readme and "may not be resold" in readme
    assert readme == BUILTIN_ARCHIVE.with_name("cmu_mocap_35.README.md").read_text(encoding="utf-8")


def test_packing_is_reproducible_and_unpacking_gives_the_same_files(tmp_path):
    members = {"b/two.txt": b"2" * 1000, "one.txt": b"one\n", "b/c/three.bin": bytes(range(256))}
    archive = tmp_path / "toy.tar.xz"
    archive.write_bytes(pack_members(members, preset=1))
    assert pack_members(dict(reversed(members.items())), preset=1) == archive.read_bytes()
    assert read_members(archive) == dict(sorted(members.items()))
    folder = unpacked(archive, tmp_path / "cache")
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("toy-")
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == {
        **members,
        LISTING: (folder / LISTING).read_bytes(),
    }
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [folder.name]  # no temporary left over


def test_an_unpacked_copy_is_reused_and_a_damaged_one_replaced(tmp_path, monkeypatch):
    archive = tmp_path / "toy.tar.xz"
    archive.write_bytes(pack_members({"a.txt": b"alpha\n", "sub/b.txt": b"beta\n"}, preset=1))
    folder = unpacked(archive, tmp_path / "cache")
    stamp = (folder / "a.txt").stat().st_mtime_ns
    os.utime(folder / "a.txt", ns=(stamp - 10**9, stamp - 10**9))
    assert unpacked(archive, tmp_path / "cache") == folder
    assert (folder / "a.txt").stat().st_mtime_ns == stamp - 10**9  # reused, not written again
    (folder / "a.txt").write_bytes(b"edited\n")
    (folder / "sub" / "b.txt").unlink()
    assert unpacked(archive, tmp_path / "cache") == folder
    assert (folder / "a.txt").read_bytes() == b"alpha\n" and (folder / "sub" / "b.txt").read_bytes() == b"beta\n"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [folder.name]
    # other content under the same name → another folder; $EMPCN_CACHE_DIR chooses the cache folder
    other = tmp_path / "other" / "toy.tar.xz"
    other.parent.mkdir()
    other.write_bytes(pack_members({"a.txt": b"gamma\n"}, preset=1))
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert unpacked(other).parent == tmp_path / "cache" and unpacked(other).name != folder.name


def _hostile(path: Path, add) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add(tar)
    path.write_bytes(lzma.compress(buffer.getvalue()))
    return path


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda t: _file(t, "../escaped.txt"), "not a plain relative path"),
        (lambda t: _file(t, "/tmp/absolute.txt"), "not a plain relative path"),
        (lambda t: _file(t, "a/../../up.txt"), "not a plain relative path"),
        (lambda t: _file(t, ".hidden"), "not a plain relative path"),
        (lambda t: (_file(t, "ok.txt"), _link(t, "link", "/etc/passwd", tarfile.SYMTYPE)), "link or special file"),
        (lambda t: (_file(t, "ok.txt"), _link(t, "hard", "ok.txt", tarfile.LNKTYPE)), "link or special file"),
        (lambda t: (_file(t, "twice.txt"), _file(t, "twice.txt")), "appears twice"),
    ],
)
def test_a_hostile_archive_is_refused_before_anything_is_written(tmp_path, build, words):
    archive = _hostile(tmp_path / "bad.tar.xz", build)
    root = tmp_path / "deep" / "cache"
    with pytest.raises(PackagedDataError, match=words) as info:
        unpacked(archive, root)
    assert "\n" not in str(info.value) and str(archive) in str(info.value)
    assert not root.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.xz"]


def test_a_damaged_archive_or_unwritable_cache_is_one_line(tmp_path):
    good = pack_members({"a.txt": b"alpha\n" * 1000}, preset=1)
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(PackagedDataError, match="cannot read the archive"):
        unpacked(cut, tmp_path / "cache")
    archive = tmp_path / "toy.tar.xz"
    archive.write_bytes(good)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(PackagedDataError, match=r"cannot unpack toy.tar.xz there: .*EMPCN_CACHE_DIR") as info:
        unpacked(archive, blocked / "cache")
    assert "\n" not in str(info.value)
