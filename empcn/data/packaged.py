"""Data shipped inside the package as a ``.tar.xz``, unpacked once into the user's cache folder.

The readers take folders and files, and the installed package may sit on read-only storage, so a
packaged archive is never unpacked beside itself: :func:`unpacked` writes its files into
``cache_root() / "<stem>-<sha256 of the archive, 16 hex>"`` and returns that folder. Unpacking is

* **safe**: every member is read into memory and checked before anything is written: regular files
  only (no links, devices or folders that escape), relative names of plain components
  (``[A-Za-z0-9_][A-Za-z0-9_.-]*``: no ``..``, no absolute or hidden paths), no duplicates, at most
  :data:`MAX_BYTES` in all (a damaged or hostile archive cannot fill the disk);
* **atomic**: the files go into a temporary sibling folder that is renamed into place in one step,
  so a reader never sees half a folder and two processes unpacking at once both end with one copy;
* **checked**: the folder holds :data:`LISTING` (name → size and sha256 of every file); a folder
  whose files no longer match it (edited, truncated, deleted) is unpacked again.

``cache_root()``: ``$EMPCN_CACHE_DIR``, else the platform's user cache folder + ``empcn``
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%``
on Windows).
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from empcn.errors import EmpcnError

__all__ = [
    "CACHE_ENV_VAR",
    "LISTING",
    "MAX_BYTES",
    "PackagedDataError",
    "cache_root",
    "pack_members",
    "read_members",
    "unpacked",
]

CACHE_ENV_VAR = "EMPCN_CACHE_DIR"
LISTING = ".empcn-files.json"  # written into an unpacked folder, last, before the rename
MAX_BYTES = 256 * 2**20
MAX_DEPTH = 4
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class PackagedDataError(EmpcnError):
    """A packaged archive that cannot be read or unpacked; one line naming the archive or folder."""


def cache_root() -> Path:
    """The folder that unpacked data goes to (see the module docstring)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "empcn"


def _check_name(archive: Path, name: str) -> None:
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise PackagedDataError(f"{archive}: member {name!r} is not a plain relative path; refusing to unpack")


def read_members(archive: Path | str) -> dict[str, bytes]:
    """Name (``/``-separated, relative) → bytes of every regular file of a ``.tar.xz``, in archive order.

    PackagedDataError (one line) for an unreadable archive, a link or special file, a name that is not
    a plain relative path, a duplicate, or more than :data:`MAX_BYTES` of content."""
    archive = Path(archive)
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(archive, mode="r:xz") as tar:
            for info in tar:
                if info.isdir():
                    _check_name(archive, info.name.rstrip("/"))
                    continue
                if not info.isfile():
                    raise PackagedDataError(
                        f"{archive}: member {info.name!r} is a link or special file; refusing to unpack"
                    )
                _check_name(archive, info.name)
                if info.name in members:
                    raise PackagedDataError(f"{archive}: member {info.name!r} appears twice")
                total += info.size
                if total > MAX_BYTES:
                    raise PackagedDataError(
                        f"{archive}: more than {MAX_BYTES >> 20} MiB of content; refusing to unpack"
                    )
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file always has one
                members[info.name] = handle.read()
    except (OSError, tarfile.TarError, lzma.LZMAError, EOFError) as exc:
        raise PackagedDataError(f"{archive}: cannot read the archive: {' '.join(str(exc).split())}") from None
    if not members:
        raise PackagedDataError(f"{archive}: the archive holds no files")
    return members


def pack_members(members: Mapping[str, bytes], preset: int = 9 | lzma.PRESET_EXTREME) -> bytes:
    """A ``.tar.xz`` of ``members`` (name → bytes) whose bytes depend on nothing else: names sorted, mode
    0644, owner 0, time 0 (the inverse of :func:`read_members`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ, preset=preset)


def _listing(members: Mapping[str, bytes]) -> dict[str, list[int | str]]:
    return {name: [len(data), hashlib.sha256(data).hexdigest()] for name, data in sorted(members.items())}


def _intact(folder: Path) -> bool:
    """Whether ``folder`` holds exactly the files its listing records, with their sizes and sha256."""
    try:
        listing = json.loads((folder / LISTING).read_text(encoding="utf-8"))
        for name, (size, digest) in listing.items():
            path = folder / name
            if path.stat().st_size != size or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                return False
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return True


def unpacked(archive: Path | str, root: Path | str | None = None) -> Path:
    """The folder that holds ``archive``'s files, unpacked under ``root`` (default :func:`cache_root`)
    on first use or when the copy there is damaged (see the module docstring)."""
    archive = Path(archive)
    try:
        data = archive.read_bytes()
    except OSError as exc:
        raise PackagedDataError(f"{archive}: cannot read the packaged data: {' '.join(str(exc).split())}") from None
    root = Path(root) if root is not None else cache_root()
    stem = archive.name.split(".")[0]
    final = root / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}"
    if _intact(final):
        return final
    members = read_members(archive)
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    except OSError as exc:
        raise PackagedDataError(
            f"{root}: cannot unpack {archive.name} there: {' '.join(str(exc).split())} "
            f"(set ${CACHE_ENV_VAR} to a writable folder)"
        ) from None
    try:
        for name, content in members.items():
            path = temp.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        (temp / LISTING).write_text(json.dumps(_listing(members), indent=0) + "\n", encoding="utf-8")
        os.chmod(temp, 0o755)  # mkdtemp makes 0700 folders; the cache is as readable as any other
        if final.exists():  # a damaged copy: move it aside, then put the new one in its place
            os.rename(final, temp.with_name(temp.name + ".old"))
        os.rename(temp, final)
    except OSError as exc:
        if not _intact(final):  # else a concurrent unpack of the same archive got there first
            raise PackagedDataError(f"{final}: cannot unpack {archive.name}: {' '.join(str(exc).split())}") from None
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".old")):
            shutil.rmtree(leftover, ignore_errors=True)
    return final
