"""SD files → :class:`~empcn.data.molecules.MoleculeRecord` (RDKit parses them; RDKit lives in the lift room).

Each record must have 3-D coordinates for every atom, hydrogens included (``removeHs=False``), and
is sanitised by RDKit, so bond orders are the file's with aromaticity perceived (aromatic bonds 1.5,
the edge features QM9 uses). Targets come from SD tags. A record is skipped with its id and reason
when RDKit cannot read or sanitise it, it has no 3-D coordinates, an atom has implicit hydrogens
(the file does not list them, so they would be missing 0-cells), a target tag is missing or not a
number, or its id was already seen. A record the file ends inside (data items but no ``$$$$`` after
them: a file cut short, whose last value would read as another number) and a record whose title or
tags are not UTF-8 text are skipped with their reason too; neither stops the lift.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from empcn.data.molecules import MoleculeRecord, MoleculeSet, Skips, SourceError, parse_target

RDLogger.DisableLog("rdApp.*")

_ORDER = {
    Chem.BondType.SINGLE: 1.0,
    Chem.BondType.DOUBLE: 2.0,
    Chem.BondType.TRIPLE: 3.0,
    Chem.BondType.AROMATIC: 1.5,
}


@dataclass(frozen=True)
class TargetTag:
    """A target's name in the cache and the SD tag it is read from (``energy=r_mmffld_Potential_Energy``)."""

    name: str
    tag: str


def parse_target_tags(text: str) -> tuple[TargetTag, ...]:
    """``"energy=r_mmffld_Potential_Energy-OPLS_2005,logS"`` → tags (a bare name is its own tag)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, tag = part.partition("=")
        out.append(TargetTag(name.strip(), (tag or name).strip()))
    names = [t.name for t in out]
    if not out or len(set(names)) != len(names) or not all(names):
        raise ValueError(f"--targets takes NAME[=TAG],… with distinct names, got {text!r}")
    return tuple(out)


def _record_title(supplier: Chem.SDMolSupplier, index: int) -> str:
    try:
        return supplier.GetItemText(index).split("\n", 1)[0].strip()
    except (RuntimeError, ValueError):  # UnicodeDecodeError is a ValueError
        return ""


def ends_inside_a_record(path: Path) -> bool:
    """Whether the SD file ``path`` ends inside a record: text after its last ``$$$$`` line that is not
    a complete molfile (a single record may omit ``$$$$`` when nothing follows its ``M  END``).

    One pass over the lines, in constant memory.
    """
    import os

    from empcn.files import open_regular

    text = after_end = seen_end = False  # of the record after the last "$$$$" so far
    with os.fdopen(open_regular(Path(path), follow=True), "rb") as f:
        for line in f:
            if line.strip() == b"$$$$":
                text = after_end = seen_end = False
            elif line.startswith(b"M  END"):
                text, seen_end, after_end = True, True, False
            elif line.strip():
                text = True
                after_end = after_end or seen_end
    return text and (after_end or not seen_end)


def molecule_arrays(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z (N,) uint8, pos (N, 3) float64 Å, bonds (E, 2) int32 i<j sorted, orders (E,) float32) of ``mol``.

    ValueError with a reason when it has no 3-D conformer or implicit hydrogens.
    """
    if mol.GetNumConformers() == 0:
        raise ValueError("no coordinates")
    conf = mol.GetConformer()
    pos = np.asarray(conf.GetPositions(), dtype=np.float64).reshape(-1, 3)
    if not conf.Is3D() or mol.GetNumAtoms() < 2 or not np.any(pos[:, 2] != 0.0):
        raise ValueError("no 3-D coordinates (a 2-D or 0-D record)")
    implicit = [a.GetIdx() + 1 for a in mol.GetAtoms() if a.GetNumImplicitHs() > 0]
    if implicit:
        raise ValueError(
            f"atom {implicit[0]} has implicit hydrogens: the file must list every hydrogen with coordinates"
        )
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    if z.min() < 1 or z.max() > 118:
        raise ValueError("a dummy or query atom (atomic number 0)")
    n_bonds = mol.GetNumBonds()
    bonds = np.empty((n_bonds, 2), dtype=np.int64)
    orders = np.empty(n_bonds, dtype=np.float32)
    for k, b in enumerate(mol.GetBonds()):
        bonds[k] = (b.GetBeginAtomIdx(), b.GetEndAtomIdx())
        orders[k] = _ORDER.get(b.GetBondType(), 0.0)
    bonds.sort(axis=1)
    rows = np.lexsort((bonds[:, 1], bonds[:, 0]))
    return z.astype(np.uint8), pos, bonds[rows].astype(np.int32), orders[rows]


def _open(path: Path) -> Chem.SDMolSupplier:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such SD file")
    try:
        supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)
        count = len(supplier)
    except (OSError, RuntimeError) as exc:
        raise SourceError(f"{path}: RDKit cannot open it ({' '.join(str(exc).split())})") from None
    if count == 0:
        raise SourceError(f"{path}: no SD records in this file")
    return supplier


def _records(
    supplier: Chem.SDMolSupplier, targets: Sequence[TargetTag], id_tag: str | None, cut: bool = False
) -> Iterator[tuple[int, str, MoleculeRecord | str]]:
    """``(1-based record number, id, record or the reason it is unusable)`` for every SD record, in order.

    ``cut``: the file ends inside its last record (:func:`ends_inside_a_record`), which is then skipped.
    """
    count = len(supplier)
    for k in range(count):
        if cut and k == count - 1:
            title = _record_title(supplier, k) or f"record {k + 1}"
            yield k + 1, title, f"the file ends inside record {k + 1} (no $$$$ after its data: cut short?)"
            continue
        mol = supplier[k]
        if mol is None:
            yield (
                k + 1,
                _record_title(supplier, k) or f"record {k + 1}",
                f"RDKit cannot read or sanitise record {k + 1}",
            )
            continue
        try:
            if id_tag:
                if not mol.HasProp(id_tag):
                    yield k + 1, mol.GetProp("_Name").strip() or f"record {k + 1}", f"no id tag {id_tag!r}"
                    continue
                mol_id = mol.GetProp(id_tag).strip()
            else:
                mol_id = mol.GetProp("_Name").strip()
            texts = [mol.GetProp(t.tag) if mol.HasProp(t.tag) else None for t in targets]
        except UnicodeDecodeError:
            yield k + 1, f"record {k + 1}", f"record {k + 1}'s title or tags are not UTF-8 text"
            continue
        mol_id = mol_id or f"record {k + 1}"
        absent = [t for t, text in zip(targets, texts) if text is None]
        if absent:
            yield k + 1, mol_id, f"target {absent[0].name!r} is missing (no SD tag {absent[0].tag!r})"
            continue
        try:
            y = np.array([parse_target(t.name, text) for t, text in zip(targets, texts)], dtype=np.float64)
            z, pos, bonds, orders = molecule_arrays(mol)
        except ValueError as exc:
            yield k + 1, mol_id, str(exc)
            continue
        yield k + 1, mol_id, MoleculeRecord(mol_id, z, pos, bonds, orders, y)


def read_sdf(path: Path, targets: Sequence[TargetTag], id_tag: str | None = None, strict: bool = False) -> MoleculeSet:
    """Every usable record of the SD file ``path`` (see the module docstring for what is skipped).

    ``id_tag``: the SD tag holding the molecule id (None: the record's title line; an empty title
    becomes ``record N``, 1-based). A second record with an id already seen is skipped.
    """
    path = Path(path)
    skips = Skips(path, strict)
    records: list[MoleculeRecord] = []
    first_seen: dict[str, int] = {}
    for number, mol_id, item in _records(_open(path), targets, id_tag, ends_inside_a_record(path)):
        if mol_id in first_seen:
            skips.add(mol_id, f"duplicate id (record {number}; first seen in record {first_seen[mol_id]})")
            continue
        first_seen[mol_id] = number
        if isinstance(item, str):
            skips.add(mol_id, item)
        else:
            records.append(item)
    return MoleculeSet(records, tuple(t.name for t in targets), (path,), skips.items)


def read_sdf_for_predict(path: Path) -> list[tuple[str, MoleculeRecord | str]]:
    """Every record of an SD file, in order, as ``(id, record)`` or ``(id, reason it cannot be used)``."""
    return [(mol_id, item) for _, mol_id, item in _records(_open(path), (), None, ends_inside_a_record(path))]
