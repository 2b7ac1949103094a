"""Reader for the official QM9 raw files (``dsgdb9nsd.xyz.tar.bz2`` or a folder of ``*.xyz``).

One file per molecule (Ramakrishnan et al., Sci. Data 1, 140022, 2014)::

    n                                         atom count
    gdb <id> A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv     (tab separated)
    El x y z mulliken                         n lines, Å; numbers may read 1.2*^-6 (Mathematica)
    <harmonic frequencies>
    <GDB-17 SMILES> <B3LYP SMILES>
    <Corina InChI> <B3LYP InChI>

The GDB-17 SMILES is kept (it is the one in the qm9pack CSVs, so both sources agree). The archive is
streamed (never extracted); files are read one by one, which is I/O bound on the bz2 stream.
"""

from __future__ import annotations

import bz2
import re
import tarfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from empcn.data.qm9_targets import SYMBOL_TO_Z, QM9Raw, Skipped, SourceError, _offsets_of, merge_blocks

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.bz2", ".tbz2", ".tbz", ".tar")
PROPERTY_NAMES: tuple[str, ...] = (
    "A",
    "B",
    "C",
    "mu",
    "alpha",
    "homo",
    "lumo",
    "gap",
    "r2",
    "zpve",
    "U0",
    "U",
    "H",
    "G",
    "Cv",
)
"""The 15 numbers of the property line after ``gdb <id>``; the last 12 are the targets."""

_NAME_ID = re.compile(r"(\d+)\.xyz$")


class BadXYZ(Exception):
    """A raw QM9 file that cannot be used; the message is the one-line reason."""


@dataclass(frozen=True)
class XYZMolecule:
    """One parsed raw file: id, GDB-17 SMILES, z (n,) uint8, pos (n, 3) float64 Å, targets (12,) raw units."""

    id: int
    smiles: str
    z: np.ndarray
    pos: np.ndarray
    targets: np.ndarray


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def name_id(name: str) -> int | None:
    """GDB-9 id from a file name such as ``dsgdb9nsd_000123.xyz`` (None when it holds no number)."""
    match = _NAME_ID.search(name)
    return int(match.group(1)) if match else None


def _float(token: str) -> float:
    return float(token.replace("*^", "e"))


def _numbers(tokens: list[str], where: Callable[[int], str]) -> list[float]:
    """Floats of ``tokens`` (Mathematica ``*^`` exponents allowed); ``where(k)`` names token k's line.

    Raises BadXYZ naming the first token that is no number.
    """
    try:
        return list(map(float, tokens))
    except ValueError:
        pass
    for k, t in enumerate(tokens):
        try:
            _float(t)
        except ValueError:
            raise BadXYZ(f"malformed number {t!r} on {where(k)}") from None
    return list(map(_float, tokens))


def parse_xyz(text: str) -> XYZMolecule:
    """Parse the text of one raw QM9 file; raises :class:`BadXYZ` with a one-line reason."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise BadXYZ("file too short (no property line)")
    try:
        n = int(lines[0])
    except ValueError:
        raise BadXYZ(f"malformed atom count {lines[0].strip()!r}") from None
    head = lines[1].split()
    if len(head) != 2 + len(PROPERTY_NAMES) or head[0] != "gdb":
        raise BadXYZ(f"property line has {len(head)} fields, expected 'gdb', the id and 15 numbers")
    try:
        mol_id = int(head[1])
    except ValueError:
        raise BadXYZ(f"malformed id {head[1]!r} in the property line") from None
    props = np.array(_numbers(head[2:], lambda k: "the property line"), dtype=np.float64)
    targets = props[3:]  # mu ... Cv; A, B, C are checked but not kept
    atoms: list[list[str]] = []
    for line in lines[2:]:
        tokens = line.split()
        if not tokens or not tokens[0].isalpha():
            break
        atoms.append(tokens)
    if len(atoms) != n:
        raise BadXYZ(f"atom count {n} does not match {len(atoms)} atom lines")
    end = 2 + n
    if len(lines) < end + 2 or not lines[end + 1].split():
        raise BadXYZ("missing SMILES line")
    for i, tokens in enumerate(atoms):
        if len(tokens) not in (4, 5):
            raise BadXYZ(f"atom line {i + 1} has {len(tokens)} fields, expected 'element x y z charge'")
        if tokens[0] not in SYMBOL_TO_Z:
            raise BadXYZ(f"unknown element symbol {tokens[0]!r} on atom line {i + 1}")
    z = np.array([SYMBOL_TO_Z[t[0]] for t in atoms], dtype=np.uint8)
    coords = [c for t in atoms for c in t[1:4]]
    pos = np.array(_numbers(coords, lambda k: f"atom line {k // 3 + 1}"), dtype=np.float64).reshape(n, 3)
    if not np.isfinite(pos).all():
        raise BadXYZ(f"non-finite coordinate on atom line {np.flatnonzero(~np.isfinite(pos).all(axis=1))[0] + 1}")
    if not np.isfinite(targets).all():
        raise BadXYZ(f"non-finite {PROPERTY_NAMES[3 + np.flatnonzero(~np.isfinite(targets))[0]]} in the property line")
    return XYZMolecule(mol_id, lines[end + 1].split()[0], z, pos, targets)


class _Collector:
    """Gathers parsed molecules in read order; applies exclusion, the limit and strict mode."""

    def __init__(self, source: Path, limit: int | None, strict: bool, exclude: frozenset[int] | set[int]):
        self.source, self.limit, self.strict, self.exclude = source, limit, strict, exclude
        self.molecules: list[XYZMolecule] = []
        self.skipped: list[Skipped] = []
        self.seen: set[int] = set()

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.molecules) >= self.limit

    def wanted(self, mol_id: int | None) -> bool:
        return mol_id is None or mol_id not in self.exclude

    def bad(self, mol_id: int | None, reason: str) -> None:
        if self.strict:
            raise SourceError(f"{self.source}: {reason}")
        self.skipped.append(Skipped(mol_id, reason))

    def add(self, name: str, data: bytes) -> None:
        hint = name_id(name)
        try:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise BadXYZ("unreadable: not UTF-8 text") from None
            mol = parse_xyz(text)
            if hint is not None and mol.id != hint:
                raise BadXYZ(f"file name says id {hint} but the property line says gdb {mol.id}")
        except BadXYZ as exc:
            self.bad(hint, f"{name}: {exc}")
            return
        if mol.id in self.seen:
            self.bad(mol.id, f"{name}: id {mol.id} appears more than once; the first file read was kept")
        elif self.wanted(mol.id):
            self.seen.add(mol.id)
            self.molecules.append(mol)

    def result(self) -> tuple[QM9Raw, list[Skipped]]:
        mols = self.molecules
        if not mols:
            return QM9Raw.empty(), self.skipped
        block = QM9Raw(
            ids=np.array([m.id for m in mols], dtype=np.int64),
            smiles=[m.smiles for m in mols],
            offsets=_offsets_of(np.array([len(m.z) for m in mols], dtype=np.int64)),
            z=np.concatenate([m.z for m in mols]),
            pos=np.concatenate([m.pos for m in mols]),
            targets=np.stack([m.targets for m in mols]),
        )
        return merge_blocks([block])[0], self.skipped  # sorted by id; repeats were refused in add()


def read_xyz_folder(
    folder: Path, limit: int | None, strict: bool, exclude: frozenset[int] | set[int]
) -> tuple[QM9Raw, list[Skipped]]:
    """Read the ``*.xyz`` files of ``folder`` in id order (by file name), stopping at ``limit``."""
    files = sorted(folder.glob("*.xyz"), key=lambda p: (name_id(p.name) is None, name_id(p.name) or 0, p.name))
    out = _Collector(folder, limit, strict, exclude)
    for path in files:
        if out.full:
            break
        hint = name_id(path.name)
        if not out.wanted(hint):
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            out.bad(hint, f"{path.name}: unreadable: {_one_line(exc)}")
            continue
        out.add(path.name, data)
    return out.result()


class _Tap:
    """Read-through wrapper of the (decompressed) tar byte stream that remembers its last bytes.

    tarfile in stream mode takes an empty, truncated or garbled header after the first one as the
    end of the archive without an error; keeping the stream's tail lets the reader check that the
    archive really ends with a zero end-of-archive block, and draining it makes bz2 report a stream
    cut short.
    """

    KEEP = 1 << 20  # bytes of tail kept

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.count = 0  # bytes delivered so far
        self._tail: deque[bytes] = deque()
        self._kept = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.count += len(data)
            self._tail.append(data)
            self._kept += len(data)
            while self._kept - len(self._tail[0]) >= self.KEEP:
                self._kept -= len(self._tail.popleft())
        return data

    def drain(self) -> None:
        """Read the stream to its end (bz2 raises EOFError here if the stream was cut short)."""
        while self.read(1 << 20):
            pass

    def ends_at(self, offset: int) -> bool:
        """Whether a 512-byte zero block starts at ``offset`` (True if that part is no longer kept)."""
        first = self.count - self._kept
        if offset < first:
            return True
        tail = b"".join(self._tail)[offset - first : offset - first + tarfile.BLOCKSIZE]
        return len(tail) == tarfile.BLOCKSIZE and not tail.strip(b"\0")


def read_xyz_archive(
    archive: Path, limit: int | None, strict: bool, exclude: frozenset[int] | set[int]
) -> tuple[QM9Raw, list[Skipped]]:
    """Stream the ``*.xyz`` members of a ``.tar.bz2`` / ``.tar`` archive in archive order.

    Stops as soon as ``limit`` molecules are read (the official archive is in id order). A truncated
    or corrupt stream keeps the molecules read before it and records one :class:`Skipped`.
    """
    compressed = not archive.name.lower().endswith(".tar")
    what = "bz2-compressed tar" if compressed else "tar"
    try:
        raw = bz2.BZ2File(archive) if compressed else open(archive, "rb")  # noqa: SIM115
    except OSError as exc:
        raise SourceError(f"{archive}: cannot open: {_one_line(exc)}") from None
    tap = _Tap(raw)
    try:
        tar = tarfile.open(fileobj=tap, mode="r|")  # type: ignore[call-overload]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raw.close()
        raise SourceError(f"{archive}: cannot read as a {what} archive: {_one_line(exc)}") from None
    out = _Collector(archive, limit, strict, exclude)
    member_name: str | None = None
    read = 0
    with raw, tar:
        try:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not base.endswith(".xyz") or not out.wanted(name_id(base)):
                    continue
                member_name = base
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                member_name = None
                out.add(base, data)
                read += 1
                if out.full:
                    break  # stop decompressing as soon as enough molecules are in hand
            else:
                tap.drain()
                if not tap.ends_at(tar.offset):
                    raise tarfile.ReadError("no end-of-archive block where the members end")
        except (tarfile.TarError, EOFError, OSError) as exc:
            from empcn.data.qm9 import QM9_MAX_ID  # the official archive's size (lazy: qm9 imports this module)

            where = f"in member {member_name}" if member_name else f"after {read} molecule files"
            expected = limit if limit is not None else QM9_MAX_ID - len(exclude)
            unread = max(expected - read, 0)
            out.bad(
                name_id(member_name) if member_name else None,
                f"{archive.name}: archive truncated or corrupt {where}: {_one_line(exc)}; "
                f"{unread} of the {expected} molecules wanted from it were not read",
            )
    return out.result()
