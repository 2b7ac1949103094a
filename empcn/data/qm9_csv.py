"""Reader for the QM9 CSVs of the qm9pack package (``qm9_part1.csv`` … ``qm9_part3.csv``).

Each row is one characterised molecule: ``Index`` (GDB-9 id), ``SMILES`` (the GDB-17 SMILES, the
same as the first SMILES of the official ``.xyz`` files), ``N_atoms``, ``Elements`` (``"['C','H']"``),
``XYZ_Ang`` (``"[[x,y,z],...]"``, Å) and the scalar properties. Only the needed columns are parsed,
with pandas' C parser, and the bracketed lists of all rows are parsed in bulk; rows that do not fit
the bulk path's shape checks are parsed one by one so that a bad row costs only itself.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from empcn.data.qm9_targets import (
    SYMBOL_TO_Z,
    TARGETS,
    QM9Raw,
    Skipped,
    SourceError,
    _offsets_of,
    _segment_gather,
    merge_blocks,
)

TARGET_COLUMNS: tuple[str, ...] = (
    "Dipole_debye",
    "Polarizability_bohr3",
    "HOMO_au",
    "LUMO_au",
    "HOMO_LUMO_gap_au",
    "R2_bohr2",
    "ZPVE_au",
    "InternalEnergy_0K_au",
    "InternalEnergy_298K_au",
    "Enthalphy_298K_au",
    "GibbsFreeEnergy_298K_au",
    "Heatcapacity_Cv_cal_mol_K",
)
"""qm9pack column of each of :data:`TARGETS`, in the same order."""

_COLUMNS = ("Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang") + TARGET_COLUMNS
_STRING_COLUMNS = {"SMILES": str, "Elements": str, "XYZ_Ang": str}
_LIMIT_MARGIN = 64  # extra rows per chunk with a limit, for excluded or bad rows

_Z_OF_BYTE = np.zeros(256, dtype=np.uint8)  # ASCII code of a one-letter symbol -> Z (0: unknown)
for _sym, _z in SYMBOL_TO_Z.items():
    _Z_OF_BYTE[ord(_sym)] = _z
_DROP_ELEMENT_PUNCT = str.maketrans("", "", "[]',")
_DROP_BRACKETS = str.maketrans("", "", "[]")


class _BadRow(Exception):
    """One row that cannot be used; the message is the one-line reason."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def csv_parts(folder: Path) -> list[Path]:
    """The ``qm9_part*.csv`` files of ``folder`` in part-number order."""
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    return sorted(folder.glob("qm9_part*.csv"), key=key)


def read_csv_source(
    folder: Path, limit: int | None, strict: bool, exclude: frozenset[int] | set[int]
) -> tuple[QM9Raw, list[Skipped]]:
    """Read the CSV parts of ``folder``; see :func:`empcn.data.qm9.read_qm9` for the contract.

    The parts are read in part order and, with ``limit``, chunk by chunk until ``limit`` molecules
    are in hand: qm9pack's parts hold increasing ids (part 1: 1–44746, part 2: 44747–89008, …).
    """
    parts = csv_parts(folder)
    if not parts:
        raise SourceError(f"{folder}: no qm9_part*.csv files")
    blocks: list[QM9Raw] = []
    skipped: list[tuple[float, Skipped]] = []  # (position in id order, skipped row)
    have, top_id = 0, 0.0
    for path in parts:
        for row0, frame in _frames(path, limit):
            block, bad, top_id = _parse_frame(frame, path, row0, exclude, top_id)
            blocks.append(block)
            skipped.extend(bad)
            have += len(block)
            if limit is not None and have >= limit:
                break
        if limit is not None and have >= limit:
            break
    raw, repeats = merge_blocks(blocks)
    for i in repeats.tolist():
        skipped.append((float(i), Skipped(i, f"id {i} appears more than once; the first row was kept")))
    if limit is not None and len(raw) > limit:
        raw = raw.take(np.arange(limit))
    if limit is not None and len(raw) == limit:  # rows read beyond the limit do not count
        skipped = [(key, s) for key, s in skipped if key <= raw.ids[-1]]
    if strict and skipped:
        raise SourceError(f"{folder}: {skipped[0][1].reason}")
    return raw, [s for _, s in skipped]


def _frames(path: Path, limit: int | None) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first data row, frame) of ``path``: the whole file at once, or chunks when a limit is set."""
    kwargs = dict(usecols=list(_COLUMNS), na_filter=False, dtype=_STRING_COLUMNS, engine="c")
    try:
        if limit is None:
            yield 0, pd.read_csv(path, **kwargs)
            return
        row0 = 0
        with pd.read_csv(path, chunksize=max(limit, 1) + _LIMIT_MARGIN, **kwargs) as reader:
            for frame in reader:
                yield row0, frame
                row0 += len(frame)
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise SourceError(f"{path}: cannot read CSV: {_one_line(exc)}") from None


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values float64, malformed bool): a text that is no number gives NaN and malformed=True."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64), np.zeros(len(column), dtype=bool)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    malformed = np.zeros(len(column), dtype=bool)
    for r in np.flatnonzero(np.isnan(values)):  # only the rare NaN rows: a NaN literal or no number
        try:
            float(column.iloc[r])
        except (TypeError, ValueError):
            malformed[r] = True
    return values, malformed


def _bad_token(token: object, column: str, what: str = "malformed number") -> str:
    """One-line reason for an unusable cell (an empty cell means the row was cut short)."""
    if isinstance(token, str) and not token.strip():
        return f"missing {column} (row cut short?)"
    if what == "malformed number":
        return f"malformed number {token!r} in {column}"
    return f"{column} {token!r} is {what}"


def _parse_frame(
    frame: pd.DataFrame, path: Path, row0: int, exclude: frozenset[int] | set[int], top_id: float
) -> tuple[QM9Raw, list[tuple[float, Skipped]], float]:
    """One frame of rows -> (block of its good molecules, unsorted; (key, Skipped) per bad row; top id).

    A bad row's key places it in id order: its id, or for a row without a usable id the highest id
    read before it plus 0.5 (``top_id``: the highest id of the frames before, returned updated).
    """
    m = len(frame)
    reasons: dict[int, str] = {}

    def flag(rows: np.ndarray, message) -> None:
        for r in rows.tolist():
            reasons.setdefault(r, message(r) if callable(message) else message)

    ids, bad_ids = _numbers(frame["Index"])
    ok_id = ~bad_ids & np.isfinite(ids) & (ids >= 1) & (ids == np.round(ids))
    flag(np.flatnonzero(~ok_id), lambda r: _bad_token(frame["Index"].iloc[r], "Index", "not a positive integer"))
    n, bad_n = _numbers(frame["N_atoms"])
    ok_n = ~bad_n & np.isfinite(n) & (n >= 1) & (n == np.round(n))
    flag(np.flatnonzero(~ok_n), lambda r: _bad_token(frame["N_atoms"].iloc[r], "N_atoms", "not a positive integer"))
    n = np.where(ok_n, n, 0).astype(np.int64)

    targets = np.empty((m, len(TARGETS)), dtype=np.float64)
    for k, col in enumerate(TARGET_COLUMNS):
        values, malformed = _numbers(frame[col])
        targets[:, k] = values
        flag(np.flatnonzero(malformed), lambda r, col=col: _bad_token(frame[col].iloc[r], col))
        flag(np.flatnonzero(~malformed & ~np.isfinite(values)), lambda r, col=col, v=values: f"non-finite {col} {v[r]}")

    rows = np.flatnonzero(ok_n)
    rows_ok, counts, z, pos, bad_structure = _parse_structures(
        n, frame["Elements"].tolist(), frame["XYZ_Ang"].tolist(), rows
    )
    for r, message in bad_structure.items():
        reasons.setdefault(r, message)

    excluded = np.zeros(m, dtype=bool)
    if exclude:
        excluded[ok_id] = np.isin(ids[ok_id].astype(np.int64), np.fromiter(exclude, dtype=np.int64))
    has_reason = np.zeros(m, dtype=bool)
    has_reason[list(reasons)] = True
    keep = ~has_reason[rows_ok] & ~excluded[rows_ok]
    starts = _offsets_of(counts)[:-1]
    atoms = _segment_gather(starts[keep], counts[keep])
    good = rows_ok[keep]
    smiles = frame["SMILES"].tolist()
    block = QM9Raw(
        ids=ids[good].astype(np.int64),
        smiles=[s if isinstance(s, str) else "" for s in (smiles[r] for r in good.tolist())],
        offsets=_offsets_of(counts[keep]),
        z=z[atoms],
        pos=pos[atoms],
        targets=targets[good],
    )
    running = np.fmax.accumulate(np.concatenate([[top_id], np.where(ok_id, ids, np.nan)]))[1:]
    keys = np.where(ok_id, ids, running + 0.5)
    bad = [
        (float(keys[r]), Skipped(int(ids[r]) if ok_id[r] else None, f"{path.name} line {row0 + r + 2}: {reasons[r]}"))
        for r in sorted(reasons)
        if not excluded[r]
    ]
    return block, bad, float(running[-1]) if m else top_id


def _parse_structures(
    n: np.ndarray, elements: list, xyz: list, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Parse Elements/XYZ_Ang of ``rows``.

    Returns (rows parsed, in segment order; (R,) atom counts; (sum,) uint8 z; (sum, 3) float64 Å;
    {row: reason} of rows that failed). Rows whose text lengths fit the compact qm9pack layout go
    through the bulk parser, the others (and all of them if the bulk parse fails) row by row.
    """
    el_len = np.array([len(t) if isinstance(t, str) else -1 for t in elements], dtype=np.int64)
    commas = np.array([t.count(",") if isinstance(t, str) else -1 for t in xyz], dtype=np.int64)
    fits = np.zeros(len(n), dtype=bool)
    fits[rows] = (el_len[rows] == 4 * n[rows] + 1) & (commas[rows] == 3 * n[rows] - 1)
    fast_rows, slow_rows = rows[fits[rows]], rows[~fits[rows]]
    bulk = _bulk_structures(n[fast_rows], [elements[r] for r in fast_rows], [xyz[r] for r in fast_rows])
    if bulk is None:
        fast_rows, slow_rows = fast_rows[:0], rows
        z_fast, pos_fast, bad_fast = np.zeros(0, np.uint8), np.zeros((0, 3)), {}
    else:
        z_fast, pos_fast, bad_local = bulk
        bad_fast = {int(fast_rows[i]): msg for i, msg in bad_local.items()}
    z_parts, pos_parts, slow_ok, bad = [z_fast], [pos_fast], [], dict(bad_fast)
    for r in slow_rows.tolist():
        try:
            zr, pr = _structure_row(int(n[r]), elements[r], xyz[r])
        except _BadRow as exc:
            bad[r] = str(exc)
            continue
        z_parts.append(zr)
        pos_parts.append(pr)
        slow_ok.append(r)
    slow_ok_arr = np.asarray(slow_ok, dtype=np.int64)
    rows_ok = np.concatenate([fast_rows, slow_ok_arr]).astype(np.int64)
    counts = np.concatenate([n[fast_rows], n[slow_ok_arr]]).astype(np.int64)
    return rows_ok, counts, np.concatenate(z_parts), np.concatenate(pos_parts), bad


def _bulk_structures(
    n: np.ndarray, elements: list[str], xyz: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[int, str]] | None:
    """All rows at once: (z, pos, {local row: reason}) or None when the text does not parse in bulk."""
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.uint8), np.zeros((0, 3)), {}
    letters = "".join(elements).translate(_DROP_ELEMENT_PUNCT)
    if len(letters) != total:
        return None
    try:
        codes = np.frombuffer(letters.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    lines = "\n".join(xyz).replace("],[", "\n").translate(_DROP_BRACKETS)
    try:
        frame = pd.read_csv(io.StringIO(lines), header=None, names=["x", "y", "z"], dtype=np.float64, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    if len(frame) != total:
        return None
    pos = frame.to_numpy(dtype=np.float64)
    z = _Z_OF_BYTE[codes]
    offsets = _offsets_of(n)
    molecule = np.repeat(np.arange(len(n)), n)
    bad: dict[int, str] = {}
    for a in np.flatnonzero(z == 0).tolist():
        bad.setdefault(int(molecule[a]), f"unknown element symbol {chr(codes[a])!r}")
    for a in np.flatnonzero(~np.isfinite(pos).all(axis=1)).tolist():
        bad.setdefault(int(molecule[a]), f"non-finite coordinate on atom {a - offsets[molecule[a]] + 1} in XYZ_Ang")
    return z, pos, bad


def _structure_row(n: int, elements: object, xyz: object) -> tuple[np.ndarray, np.ndarray]:
    """One row's (z (n,) uint8, pos (n, 3) float64 Å); raises _BadRow with the reason."""
    if not isinstance(elements, str) or not isinstance(xyz, str):
        raise _BadRow("missing Elements or XYZ_Ang")
    symbols = [t.strip().strip("'\"") for t in elements.strip().strip("[]").split(",")]
    if symbols == [""]:
        symbols = []
    if len(symbols) != n:
        raise _BadRow(f"Elements lists {len(symbols)} atoms but N_atoms is {n}")
    tokens = xyz.replace("[", " ").replace("]", " ").split(",")
    if len(tokens) != 3 * n or xyz.count("[") != n + 1:
        raise _BadRow(f"XYZ_Ang does not hold N_atoms = {n} [x,y,z] triples")
    for s in symbols:
        if s not in SYMBOL_TO_Z:
            raise _BadRow(f"unknown element symbol {s!r}")
    values = []
    for t in tokens:
        try:
            values.append(float(t))
        except ValueError:
            raise _BadRow(f"malformed number {t.strip()!r} in XYZ_Ang") from None
    pos = np.asarray(values, dtype=np.float64).reshape(n, 3)
    bad_atoms = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if len(bad_atoms):
        raise _BadRow(f"non-finite coordinate on atom {bad_atoms[0] + 1} in XYZ_Ang")
    return np.asarray([SYMBOL_TO_Z[s] for s in symbols], dtype=np.uint8), pos
