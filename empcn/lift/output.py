"""The output of a lift: checked first, held by one writer, left clean.

:func:`claim_output` is entered before the source is read. It

* creates ``--out``'s folder and proves it writable (a one-line :class:`LiftError` otherwise: under a
  regular file, read-only folder, …), so a bad ``--out`` fails in a second, not after the whole source;
* takes an exclusive, non-blocking ``flock`` on ``<out>.lock`` beside the entry file: a second lift
  into the same ``--out`` is refused with a message naming the first one's process id, never both
  reporting success (the kernel drops the lock when the holder dies, ``kill -9`` included). The lock
  file is opened without following links (:func:`empcn.files.open_lock_file`: a name taken by a
  link, FIFO or hard link is refused, never written through) and removed only while it is still
  the file this lift locked;
* removes leftovers of killed lifts (``.*.tmp`` files of the entry and of the shards), which only a
  lock holder may do, since a running lift's temporary files look the same;
* on failure, removes the folders it created if they are still empty.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from empcn import cache as cache_format
from empcn import files
from empcn.lift.pipeline import LiftError


class OutputBusy(LiftError):
    """Another lift holds ``--out``'s lock (the message names its process)."""


def lock_path(out: Path) -> Path:
    """``data/qm9.h5`` -> ``data/qm9.h5.lock``."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _created_folders(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``folder``, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _make_folder(out: Path) -> list[Path]:
    folder = out.parent
    blocker = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise LiftError(f"{out}: cannot write here: {blocker} is a file, not a folder")
    created = _created_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LiftError(f"{out}: cannot create its folder {folder} ({exc.strerror or exc})") from None
    if out.is_dir():
        raise LiftError(f"{out}: is a folder; --out names the entry file to write, e.g. {out / 'cache.h5'}")
    if not os.access(folder, os.W_OK | os.X_OK):
        _remove_empty(created)
        raise LiftError(f"{out}: cannot write into {folder} (permission denied)")
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _lock(out: Path) -> int:
    """An fd holding the exclusive lock on ``<out>.lock`` (:func:`empcn.files.take_lock`)."""
    try:
        return files.take_lock(lock_path(out))
    except files.LockHeld as exc:
        raise OutputBusy(
            f"{out}: another lift (pid {exc.holder}) is writing this cache; wait for it or choose another --out"
        ) from None
    except files.WriteError as exc:
        raise LiftError(f"{out}: cannot lock this cache: {exc}") from None


def wait_for_writer(out: Path) -> None:
    """Block until the lift now holding ``out``'s lock (if any) releases it; a stale lock file returns at once."""
    try:
        fd = files.open_regular(lock_path(out))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # granted when no exclusive holder is left
    finally:
        os.close(fd)


def remove_leftovers(out: Path) -> list[Path]:
    """Delete temporary files of killed lifts into ``out`` (call only while holding its lock)."""
    out = Path(out)
    removed = list(out.parent.glob(f".{out.name}.*.tmp"))
    folder = cache_format.shard_dir(out)
    if folder.is_dir():
        removed += list(folder.glob(".*.tmp"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@contextmanager
def claim_output(out: Path) -> Iterator[Path]:
    """Check, lock and clean ``out`` for one lift; see the module docstring. Yields ``out``."""
    out = Path(out)
    created = _make_folder(out)
    fd = _lock(out)
    ok = False
    try:
        remove_leftovers(out)
        yield out
        ok = True
    finally:
        if not ok:  # the workers have ended (a pool is joined when it is left): their temporary files go
            remove_leftovers(out)
            folder = cache_format.shard_dir(out)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if files.same_file(lock_path(out), fd):  # never a link or file someone put there meanwhile
            lock_path(out).unlink(missing_ok=True)
        os.close(fd)
        if not ok:
            _remove_empty(created)
