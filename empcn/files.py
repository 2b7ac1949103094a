"""How empcn creates, appends to, locks and reads files in folders it may have received from someone else.

A cache folder or a run folder can come from a teammate, so any name in it may already be taken: by
a symbolic link to one of the reader's files (``.config.json.tmp → ~/notes.txt``), a FIFO, a hard
link. Every file empcn writes is therefore

* created **new** under a random name in its target's folder (:func:`tempfile.mkstemp`:
  ``O_CREAT | O_EXCL | O_NOFOLLOW``), so nothing planted there beforehand is ever opened for writing;
* written whole, fsynced and **renamed** into place (``os.replace`` replaces whatever sits at the
  target's name, a link included, instead of writing through it), so a reader sees the old file or
  the new one, never a part;
* **removed** when anything fails, a full disk included, and the failure raised as a one-line
  :class:`WriteError` naming the path (``…: no space left on device``).

Appending (``metrics.jsonl``) and lock files open an existing name only with ``O_NOFOLLOW`` and only
when it is a regular file with a single link (a hard-linked file is copied first); an append that
fails is rolled back to the file's previous size. Reading a file of a cache goes through
:func:`read_regular`: ``O_NONBLOCK`` (a FIFO cannot block the open) and ``fstat`` before any byte is
read, so a FIFO, a device or (where asked) a link is refused, never read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from empcn.errors import EmpcnError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_FULL = {errno.ENOSPC: "", errno.EDQUOT: " (disk quota exceeded)"}


class WriteError(EmpcnError, OSError):
    """A file empcn could not write (full disk, no permission, a name taken by something it did not
    make); the one-line message names the path. An ``OSError`` too, for callers that already catch those."""


class NotRegularFile(OSError):
    """A path that is not a regular file where empcn reads or writes one (``what``: "a FIFO", …)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path}: {what}, not a regular file")
        self.path = Path(path)
        self.what = what


def file_mode() -> int:
    """The mode a new regular file gets under the process umask (0o644 under the usual 022).

    ``mkstemp`` creates 0600 files whatever the umask; empcn's files get the mode any other new file
    of the folder would (a shared cache or run folder stays readable to the team).
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in words ("a symbolic link", "a FIFO", "a folder", …)."""
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return what
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def write_error(path: Path, exc: OSError) -> WriteError:
    """``exc``, raised while writing ``path``, as a one-line :class:`WriteError` naming the path."""
    if isinstance(exc, WriteError):
        return exc
    if exc.errno in _FULL:
        return WriteError(f"{path}: no space left on device{_FULL[exc.errno]}")
    if exc.errno == errno.ELOOP:
        return WriteError(f"{path}: a symbolic link; empcn never writes through a link it did not make (remove it)")
    if isinstance(exc, NotRegularFile):
        return WriteError(f"{path}: {exc.what} where empcn keeps a regular file it made (remove it)")
    return WriteError(f"{path}: cannot write ({exc.strerror or exc})")


def new_temporary(path: Path) -> tuple[int, Path]:
    """``(fd, name)`` of a new empty file ``.<name>.<random>.tmp`` in ``path``'s folder, mode :func:`file_mode`.

    Created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name: it is a file no one else had
    a handle on. The caller writes it and renames it into place, or removes it.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, file_mode())
    except OSError as exc:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    return fd, Path(name)


def write_atomic(path: Path, data: bytes | bytearray | memoryview | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, or a function writing into a binary file) as the file ``path``, whole or not at all.

    A new temporary file (:func:`new_temporary`) is written, fsynced and renamed to ``path``; on any
    failure it is removed and an ``OSError`` becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    fd, tmp = new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """:func:`write_atomic` of ``text`` as UTF-8."""
    return write_atomic(path, text.encode("utf-8"))


def _open_existing_or_new(path: Path, flags: int) -> int:
    """An fd on the regular, singly linked file ``path`` (created when absent), never through a link.

    :class:`NotRegularFile` when the name holds anything else; ``OSError`` as ``os.open`` raises it
    (``ELOOP`` for a symbolic link).
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, file_mode())
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without a reader (O_NONBLOCK): refused, as any FIFO
            raise NotRegularFile(path, kind_of(os.lstat(path).st_mode)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, kind_of(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (with its newline) to the file ``path``, creating it when absent; fsynced.

    Never through a link, never into a FIFO; a file with other hard links is first replaced by a
    copy of its own (:func:`write_atomic`), so the append changes no other name's content. A write
    that fails (full disk) is cut back to the file's previous size, so no torn line is left.
    """
    path = Path(path)
    data = line.encode("utf-8")
    try:
        fd = _open_existing_or_new(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        st = os.fstat(fd)
        if st.st_nlink != 1:
            write_atomic(path, read_regular(path) + data)
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, st.st_size)
            raise write_error(path, exc) from None
    finally:
        os.close(fd)


def open_lock_file(path: Path) -> int:
    """A read-write fd on the lock file ``path`` (created when absent) to ``flock``; never through a link.

    A name taken by a symbolic link, a FIFO, a folder or a hard link to another file is refused with a
    one-line :class:`WriteError`: writing a process id into it would change a file empcn did not make.
    """
    path = Path(path)
    try:
        fd = _open_existing_or_new(path, os.O_RDWR)
    except OSError as exc:
        if exc.errno == errno.ELOOP or isinstance(exc, NotRegularFile):
            what = "a symbolic link" if exc.errno == errno.ELOOP else exc.what  # type: ignore[attr-defined]
            raise WriteError(f"{path}: {what} where empcn keeps its lock file; remove it") from None
        raise write_error(path, exc) from None
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise WriteError(f"{path}: a lock file with other hard links (not one empcn made); remove it")
    return fd


class LockHeld(OSError):
    """Another process holds the lock file ``path``; ``holder`` is the process id it recorded ("?" if none)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path}: held by process {holder}")
        self.path = Path(path)
        self.holder = holder


def take_lock(path: Path) -> int:
    """An fd holding an exclusive ``flock`` on the lock file ``path`` (:func:`open_lock_file`), which then
    records this process's id; :class:`LockHeld` naming the holder when another process has it.

    Non-blocking; the kernel releases the lock when the fd is closed or the process dies. When the
    file was replaced between the open and the lock (a previous holder removing it), the new one is taken.
    """
    path = Path(path)
    while True:
        fd = open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(path, holder) from None
            raise write_error(path, exc) from None
        if same_file(path, fd):
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the id only words another process's refusal; a full disk is reported where it matters
            return fd
        os.close(fd)


def same_file(path: Path, fd: int) -> bool:
    """Whether the name ``path`` (not followed) is still the file open as ``fd``."""
    try:
        st, mine = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def open_regular(path: Path, follow: bool = False) -> int:
    """A read-only fd on the existing regular file ``path`` (see :func:`read_regular` for ``follow``)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow else _NOFOLLOW))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, kind_of(mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, follow: bool = False) -> bytes:
    """The bytes of the regular file ``path``; :class:`NotRegularFile` for anything else.

    ``follow``: a symbolic link at ``path`` is followed (a cache's entry file may be one); otherwise
    it is refused (``OSError`` ``ELOOP``). The open does not block on a FIFO and the kind is checked
    on the open file before any byte is read (no window between a check and the open).
    """
    fd = open_regular(path, follow)
    try:
        st = os.fstat(fd)
        chunks = []
        while block := os.read(fd, max(1 << 20, st.st_size + 1)):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def describe_path(path: Path) -> str | None:
    """None when ``path`` is a regular file (not a link); otherwise what it is ("missing", "a FIFO", …)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else kind_of(mode)
