"""One writer per run folder: an exclusive ``flock`` on ``RUN/.writer.lock`` while a training writes there.

Two ``empcn train`` processes writing one ``--out`` would interleave their epochs in ``metrics.jsonl``
and test one run's model with the other's ``best.pt``. The first to start holds the lock until it
ends; a second (a new run or a ``--resume`` of the same folder, on this or, where the file system
honours ``flock``, another host) is refused with one line naming the holder's process id. The kernel
drops the lock when its holder dies (``kill -9`` included), so a killed run never blocks its resume.

The lock file is opened without following links (:func:`empcn.files.open_lock_file`) and kept after
the run (removing it would let a process that opened the old file and one that creates a new one
both hold "the" lock). Readers (``evaluate``, ``predict``) take no lock: every file of a run is
renamed into place whole, so they read the old or the new checkpoint, never a mix.

Within one process the lock is shared: any number of :class:`RunFolderLock` handles of one folder
(e.g. a trainer built, inspected and rebuilt by a test) hold it together until the last is released.
"""

from __future__ import annotations

import os
from pathlib import Path

from empcn import files
from empcn.errors import EmpcnError

LOCK_FILE = ".writer.lock"

_HELD: dict[tuple[int, int], list[int]] = {}  # (st_dev, st_ino) of a run folder → [fd, handles]


class RunFolderBusy(EmpcnError):
    """Another process is writing the run folder (the message names it)."""


class RunFolderLock:
    """This process's hold on a run folder's writer lock; :meth:`release` (or garbage collection) lets go."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        st = self.run_dir.stat()
        self._key: tuple[int, int] | None = (st.st_dev, st.st_ino)
        held = _HELD.get(self._key)
        if held is not None:
            held[1] += 1
            return
        _HELD[self._key] = [_lock(self.run_dir), 1]

    def release(self) -> None:
        """Give this handle up; the lock is released with the process's last handle on the folder."""
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        held = _HELD[key]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            os.close(held[0])  # closing the file releases the flock

    def __del__(self) -> None:
        self.release()


def _lock(run_dir: Path) -> int:
    """An fd holding the exclusive lock of ``run_dir``; RunFolderBusy when another process holds it."""
    try:
        return files.take_lock(run_dir / LOCK_FILE)
    except files.LockHeld as exc:
        raise RunFolderBusy(
            f"{run_dir}: another training (pid {exc.holder}) is writing this run folder; wait for it to end "
            "or choose another --out"
        ) from None
