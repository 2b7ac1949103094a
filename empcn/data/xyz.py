"""Molecule files for ``empcn predict``: raw QM9 ``.xyz`` files and plain XYZ (raw readers, no RDKit).

Plain XYZ: a count line, a comment line, then ``El x y z`` lines (Å; the element may also be an
atomic number). A raw QM9 file (its second line starts with ``gdb``) is read by
:func:`empcn.data.qm9_xyz.parse_xyz`, which also gives its SMILES (bonds then come from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empcn.elements import SYMBOLS, element_name  # noqa: F401  (re-exported: readers and messages use them)
from empcn.errors import EmpcnError

_NUMBER = {s.lower(): z for z, s in enumerate(SYMBOLS) if s}


class BadMoleculeFile(EmpcnError, ValueError):
    """A molecule file that cannot be read; the message names the file and the reason (one line)."""


@dataclass(frozen=True)
class Molecule:
    """One molecule read from a file: z (N,) uint8, pos (N, 3) float64 Å, SMILES (None: plain XYZ)."""

    path: str
    z: np.ndarray
    pos: np.ndarray
    smiles: str | None  # None for plain XYZ: bonds from coordinates


def atomic_number(token: str) -> int:
    """Atomic number of an element symbol (any case) or of a number 1–118; ValueError otherwise."""
    if token.isdigit():
        z = int(token)
        if not 1 <= z < len(SYMBOLS):
            raise ValueError(f"atomic number {z} out of range")
        return z
    try:
        return _NUMBER[token.lower()]
    except KeyError:
        raise ValueError(f"unknown element {token!r}") from None


def parse_plain_xyz(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``(z, pos)`` of a one-molecule plain XYZ text; ValueError with a one-line reason."""
    lines = text.replace("*^", "e").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError("empty file")
    try:
        n = int(lines[0].split()[0]) if lines[0].split() else -1
    except ValueError:
        raise ValueError(f"first line {lines[0].strip()!r} is not an atom count") from None
    if n < 1:
        raise ValueError("the atom count must be positive")
    atoms = lines[2 : 2 + n]
    if len(atoms) < n:
        raise ValueError(f"atom count {n} but only {len(atoms)} atom lines")
    if any(line.strip() for line in lines[2 + n :]):
        raise ValueError(f"text after the {n} atom lines (multi-molecule XYZ files are not supported)")
    z = np.empty(n, dtype=np.uint8)
    pos = np.empty((n, 3), dtype=np.float64)
    for i, line in enumerate(atoms):
        tokens = line.split()
        if len(tokens) < 4:
            raise ValueError(f"atom line {i + 1} has {len(tokens)} fields, expected 'element x y z'")
        try:
            z[i] = atomic_number(tokens[0])
            pos[i] = [float(t) for t in tokens[1:4]]
        except ValueError as exc:
            raise ValueError(f"atom line {i + 1}: {exc}") from None
    if not np.isfinite(pos).all():
        raise ValueError("non-finite coordinate")
    return z, pos


def read_molecule(path: Path) -> Molecule:
    """Read one .xyz file (raw QM9 or plain); BadMoleculeFile naming the file when it cannot be used."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadMoleculeFile(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    lines = text.splitlines()
    try:
        if len(lines) > 1 and lines[1].split()[:1] == ["gdb"]:
            from empcn.data.qm9_xyz import BadXYZ, parse_xyz

            try:
                mol = parse_xyz(text)
            except BadXYZ as exc:
                raise ValueError(str(exc)) from None
            return Molecule(str(path), mol.z.astype(np.uint8), mol.pos, mol.smiles)
        z, pos = parse_plain_xyz(text)
    except ValueError as exc:
        raise BadMoleculeFile(f"{path}: {exc}") from None
    return Molecule(str(path), z, pos, None)
