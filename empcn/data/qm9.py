"""QM9 raw sources: one entry point, :func:`read_qm9`, for every place QM9 molecules come from.

Sources (all give the same molecules, targets and GDB-17 SMILES for the same id):

* ``None``: the CSVs shipped by the PyPI package ``qm9pack==1.0.3`` (found, never imported);
* a folder holding ``qm9_part*.csv`` in qm9pack's layout;
* the official archive ``dsgdb9nsd.xyz.tar.bz2`` (or a ``.tar``), streamed;
* a folder of official ``dsgdb9nsd_NNNNNN.xyz`` files.

The 3,054 "uncharacterized" molecules of QM9 are left out of every source (listed in
``qm9_uncharacterized.txt`` beside this module); bad molecules are returned as :class:`Skipped`, or
raise :class:`SourceError` with ``strict=True``.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from empcn.data.fingerprint import files_fingerprint
from empcn.data.qm9_csv import csv_parts, read_csv_source
from empcn.data.qm9_targets import (
    RAW_TARGET_UNITS,
    TARGET_UNITS,
    TARGETS,
    QM9Raw,
    Skipped,
    SourceError,
    standard_targets,
)
from empcn.data.qm9_xyz import ARCHIVE_SUFFIXES, read_xyz_archive, read_xyz_folder

__all__ = [
    "TARGETS",
    "TARGET_UNITS",
    "RAW_TARGET_UNITS",
    "QM9Raw",
    "Skipped",
    "SourceError",
    "default_source",
    "read_qm9",
    "standard_targets",
    "source_fingerprint",
    "source_kind",
    "uncharacterized_ids",
]

UNCHARACTERIZED_FILE = Path(__file__).with_name("qm9_uncharacterized.txt")
QM9_MAX_ID = 133_885


@lru_cache(maxsize=1)
def uncharacterized_ids() -> np.ndarray:
    """(3054,) int64 ascending, read-only: ids of QM9's uncharacterized molecules, left out of every read."""
    try:
        text = UNCHARACTERIZED_FILE.read_text(encoding="ascii")
    except OSError as exc:
        raise SourceError(f"{UNCHARACTERIZED_FILE}: cannot read the uncharacterized-id list: {exc}") from None
    ids = np.array(
        [int(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")],
        dtype=np.int64,
    )
    ids.sort()
    ids.setflags(write=False)
    return ids


def default_source() -> Path:
    """The data folder of the installed ``qm9pack`` package (located without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "qm9pack: package not installed, so there is no built-in QM9 source (pip install qm9pack==1.0.3)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _resolve(source: Path | str | None) -> tuple[str, Path]:
    """(kind, path) of a source; kinds: qm9pack-csv, csv, xyz-archive, xyz-folder."""
    path = default_source() if source is None else Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        if csv_parts(path):
            return ("qm9pack-csv" if source is None else "csv"), path
        if next(path.glob("*.xyz"), None) is not None:
            return "xyz-folder", path
        raise SourceError(f"{path}: not a QM9 source (no qm9_part*.csv and no *.xyz files in it)")
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return "xyz-archive", path
    raise SourceError(
        f"{path}: not a QM9 source (expected a folder of qm9_part*.csv or *.xyz files, or a .tar.bz2/.tar archive)"
    )


def source_kind(source: Path | str | None = None) -> str:
    """What ``source`` is: ``qm9pack-csv``, ``csv``, ``xyz-archive`` or ``xyz-folder``; SourceError if none."""
    return _resolve(source)[0]


def read_qm9(
    source: Path | str | None = None, limit: int | None = None, strict: bool = False
) -> tuple[QM9Raw, list[Skipped]]:
    """Read QM9 molecules from ``source`` (None: qm9pack's CSVs) in increasing id order.

    limit: keep the first ``limit`` molecules (by id) of the included set, reading no further than
    needed. strict: the first bad molecule raises :class:`SourceError` instead of becoming a
    :class:`Skipped`. A missing or unrecognised source raises :class:`SourceError`.
    Returns (molecules in the files' units, skipped molecules with one-line reasons).
    """
    kind, path = _resolve(source)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit == 0:
        return QM9Raw.empty(), []
    exclude = frozenset(uncharacterized_ids().tolist())
    if kind in ("qm9pack-csv", "csv"):
        return read_csv_source(path, limit, strict, exclude)
    if kind == "xyz-archive":
        return read_xyz_archive(path, limit, strict, exclude)
    return read_xyz_folder(path, limit, strict, exclude)


def _source_files(kind: str, path: Path) -> list[Path]:
    if kind in ("qm9pack-csv", "csv"):
        return csv_parts(path)
    if kind == "xyz-archive":
        return [path]
    return sorted(path.glob("*.xyz"), key=lambda p: p.name)


def source_fingerprint(source: Path | str | None = None) -> str:
    """``sha256:<hex>`` over the name, size and bytes of the source's files in name order.

    Only the files a read uses are hashed (qm9pack: the three ``qm9_part*.csv``; not
    ``qm9_polarizability.csv``), so the value is stable across machines and install paths.
    """
    kind, path = _resolve(source)
    return files_fingerprint(sorted(_source_files(kind, path), key=lambda p: p.name))
