"""Users' own molecules: the record type every molecule source yields, targets CSVs, folders of XYZ files.

RDKit-free (the raw-reader room): SDF files need a chemistry toolkit to read bonds, charges and
aromaticity correctly, so they are parsed in the lift room (:mod:`empcn.lift.sdf`) and arrive here
only as :class:`MoleculeRecord`. This module reads

* a **targets CSV** (one row per molecule: an id column and numeric target columns), and
* a **folder of XYZ files** (``<id>.xyz``, plain XYZ as :func:`empcn.data.xyz.parse_plain_xyz`; the
  id is the file's stem) joined with a targets CSV by id. XYZ files carry no bonds: the lift
  perceives them from coordinates and records that it did.

Bad molecules are returned as :class:`Skipped` (id and one-line reason) or, with ``strict``, raise
:class:`SourceError`. Units: positions Å; targets as written in the CSV (units come from ``--units``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empcn.data.fingerprint import files_fingerprint
from empcn.data.qm9_targets import SourceError
from empcn.data.xyz import parse_plain_xyz

__all__ = [
    "MoleculeRecord",
    "MoleculeSet",
    "Skipped",
    "SourceError",
    "files_fingerprint",
    "parse_target",
    "read_targets_csv",
    "read_xyz_folder",
]


@dataclass(frozen=True)
class MoleculeRecord:
    """One molecule of a user's source, ready to lift.

    ``id``: its name (SDF title or id tag, XYZ file stem); ``z`` (N,) uint8 atomic numbers;
    ``pos`` (N, 3) float64 Å; ``bonds`` (E, 2) int32 atom pairs i < j and ``orders`` (E,) float32
    (1, 1.5 aromatic, 2, 3; 0 unknown) when the file gives bonds, both None when they must be
    perceived from coordinates; ``y`` (T,) float64 target values in the order of the set's names.
    """

    id: str
    z: np.ndarray
    pos: np.ndarray
    bonds: np.ndarray | None
    orders: np.ndarray | None
    y: np.ndarray


@dataclass(frozen=True)
class Skipped:
    """A molecule left out, with a one-line reason (``id``: its name, or ``record N`` when unreadable)."""

    id: str
    reason: str


@dataclass(frozen=True)
class MoleculeSet:
    """What a reader returns: the molecules kept (source order), target names, files read, skips."""

    records: list[MoleculeRecord]
    targets: tuple[str, ...]
    files: tuple[Path, ...]
    skipped: list[Skipped]


class Skips:
    """Collects skips; with ``strict`` the first one raises :class:`SourceError` naming the source."""

    def __init__(self, source: Path, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.items: list[Skipped] = []

    def add(self, mol_id: str, reason: str) -> None:
        if self.strict:
            raise SourceError(f"{self.source}: molecule {mol_id}: {reason}")
        self.items.append(Skipped(mol_id, reason))


def parse_target(name: str, text: str | None) -> float:
    """The finite float of a target's text; ValueError with the reason (missing / not a number)."""
    if text is None or not str(text).strip():
        raise ValueError(f"target {name!r} is missing")
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"target {name!r} is not a number: {str(text).strip()[:40]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"target {name!r} is not a finite number: {str(text).strip()!r}")
    return value


# ----------------------------------------------------------------------------------------------
# targets CSV


@dataclass(frozen=True)
class TargetTable:
    """Rows of a targets CSV by id: ``rows[id]`` = the target texts (in ``targets`` order) of its first row."""

    targets: tuple[str, ...]
    rows: dict[str, list[str]]
    duplicates: list[str]  # ids with more than one row (each one skip, not a silent choice)


def read_targets_csv(path: Path, id_column: str, targets: Sequence[str] | None) -> TargetTable:
    """Read a targets CSV. ``targets``: the columns to keep (None: every column but ``id_column``)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if id_column not in header:
                raise SourceError(f"{path}: no id column {id_column!r} (columns: {', '.join(header) or 'none'})")
            names = tuple(targets) if targets else tuple(h for h in header if h != id_column)
            missing = [n for n in names if n not in header]
            if missing:
                raise SourceError(
                    f"{path}: no target column {', '.join(map(repr, missing))} (columns: {', '.join(header)})"
                )
            if not names:
                raise SourceError(f"{path}: no target columns besides the id column {id_column!r}")
            rows: dict[str, list[str]] = {}
            duplicates: list[str] = []
            for raw in reader:
                row = {(k or "").strip(): v for k, v in raw.items()}
                mol_id = (row.get(id_column) or "").strip()
                if not mol_id:
                    continue
                if mol_id in rows:
                    duplicates.append(mol_id)
                    continue
                rows[mol_id] = [row.get(n) or "" for n in names]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read the targets CSV ({exc.__class__.__name__}: {exc})") from None
    return TargetTable(names, rows, duplicates)


# ----------------------------------------------------------------------------------------------
# folder of XYZ files


def xyz_files(folder: Path) -> list[Path]:
    """The ``*.xyz`` files of ``folder`` in name order; SourceError when there are none."""
    folder = Path(folder)
    files = sorted(folder.glob("*.xyz"), key=lambda p: p.name)
    if not files:
        raise SourceError(f"{folder}: no *.xyz files in this folder")
    return files


def read_xyz_folder(
    folder: Path, targets_csv: Path, id_column: str, targets: Sequence[str] | None, strict: bool = False
) -> MoleculeSet:
    """Molecules ``<id>.xyz`` of ``folder`` with their targets from ``targets_csv`` (joined on ``id_column``).

    Skipped: a file that does not parse (or has fewer than 2 atoms), a file without a CSV row, a CSV
    row without a file, a missing or non-numeric target, an id with several CSV rows.
    """
    folder = Path(folder)
    files = xyz_files(folder)
    table = read_targets_csv(Path(targets_csv), id_column, targets)
    skips = Skips(folder, strict)
    duplicated = set(table.duplicates)
    for mol_id in dict.fromkeys(table.duplicates):
        skips.add(mol_id, f"duplicate id: {table.duplicates.count(mol_id) + 1} rows in {Path(targets_csv).name}")
    records: list[MoleculeRecord] = []
    seen: set[str] = set()
    for file in files:
        mol_id = file.stem
        seen.add(mol_id)
        if mol_id in duplicated:
            continue
        if mol_id not in table.rows:
            skips.add(mol_id, f"no row in {Path(targets_csv).name} (column {id_column!r})")
            continue
        try:
            y = np.array([parse_target(n, t) for n, t in zip(table.targets, table.rows[mol_id])], dtype=np.float64)
        except ValueError as exc:
            skips.add(mol_id, str(exc))
            continue
        try:
            z, pos = parse_plain_xyz(file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            skips.add(mol_id, f"{file.name}: {' '.join(str(exc).split())}")
            continue
        if len(z) < 2:
            skips.add(mol_id, f"{file.name}: a single atom has no 3-D structure to lift")
            continue
        records.append(MoleculeRecord(mol_id, z, pos, None, None, y))
    for mol_id in table.rows:
        if mol_id not in seen:
            skips.add(mol_id, f"no file {mol_id}.xyz in {folder}")
    return MoleculeSet(records, table.targets, (*files, Path(targets_csv)), skips.items)
