"""2-cells beyond rings: functional groups found by RDKit SMARTS, and the checks every cell list passes.

``--cells`` names which 2-cells a molecule lift makes (:class:`CellSpec`): ``rings`` (the chordless
cycles, the default), ``groups`` (the built-in functional groups of :data:`BUILTIN_GROUPS`) and
``smarts:NAME=PATTERN`` (a user's group). A 2-cell needs at least three vertices, so every group pattern
matches at least three heavy atoms; a group of two heavy atoms is written with the atom it is attached to
(a nitrile is ``[#6]C#N``). The boundary of a group cell is its atoms **in the pattern's atom order**,
closed back to the first: write a pattern as a walk over the group. Consecutive boundary atoms that are
not bonded become 1-cells of their own kind in the cache, as MoCap's boundary pairs do.

RDKit is imported when patterns are compiled or matched, not when this module is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from empcn.errors import EmpcnError

# name → SMARTS over heavy atoms; each matches >= 3 atoms, listed in boundary (walk) order.
BUILTIN_GROUPS: dict[str, str] = {
    "carboxyl": "[CX3](=O)[OX2H1,OX1-]",  # acid or carboxylate (QM9 has zwitterions)
    "ester": "[#6][CX3](=O)[OX2][#6]",
    "amide": "[NX3][CX3]=[OX1]",
    "secondary_amine": "[#6][NX3H1;!$(N[#6]=[O,N,S]);!$(Na)][#6]",
    "tertiary_amine": "[#6][NX3H0;!$(N[#6]=[O,N,S]);!$(Na);!$(N~[!#6])]([#6])[#6]",
    "nitro": "[NX3+](=O)[O-]",
    "nitrile": "[#6][CX2]#[NX1]",
    "ketone": "[#6][CX3](=O)[#6]",
    "aldehyde": "[#6][CX3H1]=O",
    "ether": "[#6][OX2;!$(O[#6]=O)][#6]",
    "sulfonyl": "[#6][SX4](=O)=O",
    "trifluoromethyl": "[CX4](F)(F)F",
}
RINGS_KIND = "ring"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class CellsError(EmpcnError, ValueError):
    """A bad ``--cells`` value or a bad cell; the message names it."""


@dataclass(frozen=True)
class CellSpec:
    """Which 2-cells a molecule lift makes: ``rings`` and the (name, SMARTS) ``groups``, in order."""

    rings: bool = True
    groups: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.rings and not self.groups:
            raise CellsError("cells: name at least one of rings, groups, smarts:NAME=PATTERN")
        seen: set[str] = set()
        for name, pattern in self.groups:
            if not NAME.match(name) or name == RINGS_KIND:
                raise CellsError(f"cells: group name {name!r} must be an identifier other than {RINGS_KIND!r}")
            if name in seen:
                raise CellsError(f"cells: group {name!r} is named twice")
            seen.add(name)
            compile_pattern(name, pattern)

    @property
    def is_default(self) -> bool:
        """Rings only: the caches of earlier versions, byte for byte."""
        return self.rings and not self.groups

    @property
    def kinds(self) -> tuple[str, ...]:
        """The 2-cell kinds this spec can make, in order (the model's one-hot columns)."""
        return ((RINGS_KIND,) if self.rings else ()) + tuple(name for name, _ in self.groups)

    def to_params(self) -> list[str]:
        """The spec as the manifest records it (and :meth:`parse` reads back)."""
        words = (["rings"] if self.rings else []) + [f"smarts:{n}={p}" for n, p in self.groups]
        return words

    @staticmethod
    def parse(values: str | Sequence[str]) -> CellSpec:
        """``--cells`` values: each ``smarts:NAME=PATTERN`` or a comma list of ``rings`` and ``groups``."""
        values = [values] if isinstance(values, str) else list(values)
        rings, groups = False, []
        for value in values:
            if value.startswith("smarts:"):
                name, sep, pattern = value[len("smarts:") :].partition("=")
                if not sep or not pattern:
                    raise CellsError(f"cells: {value!r} is not smarts:NAME=PATTERN")
                groups.append((name, pattern))
                continue
            for word in value.split(","):
                if word == "rings":
                    rings = True
                elif word == "groups":
                    groups.extend(BUILTIN_GROUPS.items())
                else:
                    raise CellsError(f"cells: unknown {word!r} (rings, groups or smarts:NAME=PATTERN)")
        return CellSpec(rings, tuple(groups))


def compile_pattern(name: str, pattern: str) -> Any:
    """The RDKit query of ``pattern``; CellsError when RDKit cannot parse it or it has < 3 atoms."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        query = Chem.MolFromSmarts(pattern)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if query is None:
        raise CellsError(f"cells: group {name!r}: RDKit cannot parse the SMARTS {pattern!r}")
    if query.GetNumAtoms() < 3:
        raise CellsError(f"cells: group {name!r}: {pattern!r} matches {query.GetNumAtoms()} atoms; a 2-cell needs >= 3")
    return query


def group_cells(mol: Any, heavy_index: np.ndarray, spec: CellSpec) -> list[tuple[tuple[int, ...], str]]:
    """(boundary, kind) of every group match of ``spec`` in the RDKit molecule ``mol``.

    heavy_index: (A,) int, the lift's node of each atom of ``mol``. Per group, matches are sorted by their
    boundary; a match whose atom set another cell (earlier in the spec) already has is dropped.
    """
    from rdkit import Chem

    if isinstance(mol, str):
        mol = Chem.MolFromSmiles(mol)
    heavy_index = np.asarray(heavy_index, dtype=np.int64)
    out: list[tuple[tuple[int, ...], str]] = []
    seen: set[frozenset[int]] = set()
    for name, pattern in spec.groups:
        query = compile_pattern(name, pattern)
        boundaries = sorted(tuple(int(heavy_index[a]) for a in m) for m in mol.GetSubstructMatches(query))
        for boundary in boundaries:
            key = frozenset(boundary)
            if key not in seen:
                seen.add(key)
                out.append((boundary, name))
    return out


def check_cells(num_nodes: int, cells: Iterable[Sequence[int]], label: object = "") -> list[tuple[int, ...]]:
    """``cells`` as vertex tuples; CellsError naming the first cell with < 3 vertices, a repeated vertex,
    a vertex outside ``[0, num_nodes)``, or the vertex set of an earlier cell."""
    where = f"{label}: " if label != "" else ""
    out: list[tuple[int, ...]] = []
    seen: dict[frozenset[int], int] = {}
    for k, cell in enumerate(cells):
        if isinstance(cell, (str, bytes)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in cell
        ):
            raise CellsError(f"{where}cell {k} {cell!r}: vertices must be integers")
        vertices = tuple(int(v) for v in cell)
        if len(vertices) < 3:
            raise CellsError(f"{where}cell {k} {list(vertices)}: a 2-cell needs >= 3 vertices")
        bad = [v for v in vertices if not 0 <= v < num_nodes]
        if bad:
            raise CellsError(f"{where}cell {k} {list(vertices)}: vertex {bad[0]} outside 0..{num_nodes - 1}")
        if len(set(vertices)) != len(vertices):
            raise CellsError(f"{where}cell {k} {list(vertices)}: a vertex repeats")
        key = frozenset(vertices)
        if key in seen:
            raise CellsError(f"{where}cell {k} {list(vertices)}: the same vertices as cell {seen[key]}")
        seen[key] = k
        out.append(vertices)
    return out


def boundary_pairs(cells: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    """Every consecutive vertex pair (i < j) of every cell's closed boundary, unique, sorted."""
    pairs = {(min(a, b), max(a, b)) for c in cells for a, b in zip(c, tuple(c[1:]) + tuple(c[:1]))}
    return sorted(pairs)


# ----------------------------------------------------------------------------------------------
# cells files (--cells-file)

CELLS_FILE_KEYS = {"cells", "per_sample", "about", "names"}


@dataclass(frozen=True)
class CellsFile:
    """2-cells read from a JSON file: ``cells`` for every sample, or ``per_sample`` (sample id as text →
    its cells). Each cell is a list of >= 3 node indices in boundary (cyclic) order."""

    cells: tuple[tuple[int, ...], ...] | None = None
    per_sample: dict[str, tuple[tuple[int, ...], ...]] | None = None

    def for_sample(self, sample_id: object, num_nodes: int) -> list[tuple[int, ...]]:
        """The checked cells of sample ``sample_id`` with ``num_nodes`` nodes (none when the file lists it not)."""
        if self.cells is not None:
            return check_cells(num_nodes, self.cells, f"sample {sample_id}")
        return check_cells(num_nodes, (self.per_sample or {}).get(str(sample_id), ()), f"sample {sample_id}")


def read_cells_file(path: Any) -> CellsFile:
    """A cells file: ``{"cells": [[i, j, k, …], …]}`` or ``{"per_sample": {"ID": [[…], …], …}}`` (plus
    optional ``about`` text and ``names``). CellsError naming the file and the bad entry."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CellsError(f"{path}: not a readable JSON cells file ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict) or ("cells" in doc) == ("per_sample" in doc):
        raise CellsError(f"{path}: a cells file is an object with either 'cells' or 'per_sample'")
    unknown = sorted(set(doc) - CELLS_FILE_KEYS)
    if unknown:
        raise CellsError(f"{path}: unknown keys {', '.join(unknown)} (cells, per_sample, about, names)")

    def cell_list(value: Any, where: str) -> tuple[tuple[int, ...], ...]:
        if not isinstance(value, list):
            raise CellsError(f"{path}: {where} must be a list of cells")
        out = []
        for k, cell in enumerate(value):
            if not isinstance(cell, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in cell):
                raise CellsError(f"{path}: {where} cell {k} {cell!r}: a cell is a list of node indices")
            out.append(tuple(cell))
        check_cells(
            max((v for c in out for v in c), default=-1) + 1,
            [c for c in out if min(c, default=0) >= 0],
            f"{path}: {where}",
        )
        return tuple(out)

    if "cells" in doc:
        return CellsFile(cells=cell_list(doc["cells"], "cells"))
    per = doc["per_sample"]
    if not isinstance(per, dict):
        raise CellsError(f"{path}: per_sample must map sample ids to lists of cells")
    return CellsFile(per_sample={str(k): cell_list(v, f"sample {k}") for k, v in per.items()})


def packaged_cells(name: str) -> CellsFile:
    """A cells file shipped in :mod:`empcn.data` (e.g. ``mocap_paper_cells.json``)."""
    from importlib.resources import as_file, files

    with as_file(files("empcn.data") / name) as path:
        return read_cells_file(path)
