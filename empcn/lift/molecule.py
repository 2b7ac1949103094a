"""Molecules → cells, for every data set of molecules (QM9, users' own) and for ``empcn predict``.

One definition of a molecule's complex: 0-cells every atom, 1-cells its bonds (from the molecule's
SMILES, from its file, or perceived from covalent radii), 2-cells the chordless cycles of at most
``max_ring`` atoms (or RDKit's symmetrised SSSR). :func:`build_molecule_shard` is the one shard builder
of molecule data sets: each reads its molecules into a :class:`MoleculeTable`, which also says what the
data set stores per sample. ``empcn predict`` lifts single molecules with the same function
(:func:`predict_hook`), with the parameters the run's cache recorded.

RDKit and torch are imported when molecules are lifted, not when this module is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from empcn.errors import EmpcnError
from empcn.lift.groups import CellSpec
from empcn.lift.spec import Option, PredictHook

if TYPE_CHECKING:
    from empcn.cache import Sample, ShardContent
    from empcn.lift.assemble import SampleCells

RingKind = Literal["chordless", "sssr"]
RING_KINDS: tuple[str, ...] = get_args(RingKind)
BondSource = Literal["smiles", "file", "coordinates"]
SDF_SUFFIXES = (".sdf", ".sd", ".mol")


class LiftFailed(EmpcnError, ValueError):
    """A molecule the lift cannot turn into a complex; the message names the file and the reason."""


@dataclass(frozen=True)
class CellOptions:
    """The lift parameters that shape one molecule's cells (``--rings``, ``--max-ring``). ValueError when bad."""

    rings: RingKind = "chordless"
    max_ring: int = 8
    cells: CellSpec = field(default_factory=CellSpec)

    def __post_init__(self) -> None:
        if self.rings not in RING_KINDS:
            raise ValueError(f"rings must be 'chordless' or 'sssr', got {self.rings!r}")
        if not isinstance(self.max_ring, (int, np.integer)) or isinstance(self.max_ring, bool) or self.max_ring < 3:
            raise ValueError(f"max_ring must be an integer >= 3, got {self.max_ring!r}")
        if not isinstance(self.cells, CellSpec):
            raise ValueError(f"cells must be a CellSpec, got {self.cells!r}")

    @staticmethod
    def from_params(params: Mapping[str, Any]) -> CellOptions:
        """The options a cache's ``manifest["params"]`` recorded (today's defaults for those it lacks)."""
        cells = CellSpec.parse(params.get("cells", ["rings"]))
        return CellOptions(str(params.get("rings", "chordless")), int(params.get("max_ring", 8)), cells)  # type: ignore[arg-type]


def _cells_value(text: str) -> str:
    """One ``--cells`` value, checked (CellsError, a ValueError, names what is wrong)."""
    CellSpec.parse([text])
    return text


CELLS_OPTION = Option(
    "cells",
    "2-cells: 'rings', 'rings,groups' (built-in functional groups, docs/datasets.md) or "
    "'smarts:NAME=PATTERN' (a group of >= 3 atoms; boundary in the pattern's atom order); repeatable.",
    _cells_value,
    default="rings",
    metavar="CELLS",
    multiple=True,
)


def cells_param(cells: tuple[str, ...]) -> dict[str, Any]:
    """``{"cells": [...]}`` for a lift's recorded parameters, empty for rings only (caches as before)."""
    return {} if CellSpec.parse(cells).is_default else {"cells": list(cells)}


def cells_manifest(cells: tuple[str, ...]) -> dict[str, Any]:
    """The manifest's ``cells`` entries of non-default cells: the 2-cell kinds ``rings/kind`` indexes."""
    spec = CellSpec.parse(cells)
    return {} if spec.is_default else {"kinds": list(spec.kinds), "edge_kinds": ["bond", "boundary"]}


def cells_field_docs(cells: tuple[str, ...]) -> dict[str, str | None]:
    """The field docs of ``edges/kind`` and ``rings/kind``: written only for non-default cells."""
    if CellSpec.parse(cells).is_default:
        return {"edges/kind": None, "rings/kind": None}
    return {
        "edges/kind": "(E,) uint8 0 bond, 1 boundary pair of a 2-cell that is not a bond (order 0)",
        "rings/kind": "(R,) uint8 the 2-cell's kind: an index into manifest cells.kinds",
    }


@dataclass(frozen=True)
class MoleculeInput:
    """One molecule to lift. ``label``: its id in messages and skips; ``z``: (N,) atomic numbers; ``pos``:
    (N, 3) Å. Bonds: ``bonds`` (B, 2) with ``orders`` (B,) from its file, else from ``smiles`` (QM9; the
    heavy atoms in XYZ order), else perceived from coordinates."""

    label: int | str
    z: np.ndarray
    pos: np.ndarray
    smiles: str | None = None
    bonds: np.ndarray | None = None
    orders: np.ndarray | None = None


def molecule_cells(mol: MoleculeInput, options: CellOptions) -> tuple[SampleCells, BondSource]:
    """The cells of one molecule and where its bonds came from. Raises BadMolecule."""
    from empcn.lift.assemble import SampleCells
    from empcn.lift.bonds import geometric_bonds, molecule_bonds
    from empcn.lift.checks import check_positions
    from empcn.lift.rings import chordless_cycles, ring_edge_slots, sssr_cycles, sssr_cycles_from_edges

    check_positions(mol.pos)  # values must fit float32, no two atoms at one point (zero-length bonds)
    z = mol.z
    source: BondSource
    if mol.bonds is not None:
        index, order, source = mol.bonds, mol.orders, "file"
    else:
        bonds = geometric_bonds(z, mol.pos) if mol.smiles is None else molecule_bonds(z, mol.pos, mol.smiles)
        index, order, source = bonds.index, bonds.order, "smiles" if bonds.from_smiles else "coordinates"
    n = len(z)
    if options.rings == "sssr":
        rings = (
            sssr_cycles(mol.smiles, np.flatnonzero(z != 1)) if source == "smiles" else sssr_cycles_from_edges(n, index)
        )
        rings = [r for r in rings if len(r) <= options.max_ring]
    else:
        rings = chordless_cycles(n, index, options.max_ring)
    if options.cells.is_default:
        cells = SampleCells(
            pos=mol.pos,
            edge_index=index,
            rings=rings,
            ring_edge=ring_edge_slots(rings, index, n),
            node_arrays={"z": np.asarray(z, dtype=np.uint8)},
            edge_arrays={"order": np.asarray(order, dtype=np.float32)},
        )
        return cells, source
    return _cells_with_groups(mol, options.cells, index, np.asarray(order, np.float32), rings, source), source


def _cells_with_groups(
    mol: MoleculeInput, spec: CellSpec, index: np.ndarray, order: np.ndarray, rings: list, source: BondSource
) -> SampleCells:
    """Rings (when ``spec.rings``) then the group cells of ``spec``; ``rings/kind`` indexes ``spec.kinds``;
    boundary pairs that are not bonds are added as edges of ``edges/kind`` 1 (order 0), bonds have kind 0."""
    from rdkit import Chem

    from empcn.lift.assemble import SampleCells
    from empcn.lift.groups import boundary_pairs, group_cells
    from empcn.lift.rings import ring_edge_slots

    n = len(mol.z)
    kinds = spec.kinds
    all_cells = [(tuple(r), kinds.index("ring")) for r in rings] if spec.rings else []
    seen = {frozenset(c) for c, _ in all_cells}
    # groups are matched on the SMILES (charges, hydrogen counts); a molecule without one gets none
    found = group_cells(Chem.MolFromSmiles(mol.smiles), np.flatnonzero(mol.z != 1), spec) if source == "smiles" else []
    for boundary, kind in found:
        if frozenset(boundary) not in seen:
            seen.add(frozenset(boundary))
            all_cells.append((boundary, kinds.index(kind)))
    bonds = {tuple(e) for e in np.asarray(index).tolist()}
    extra = [p for p in boundary_pairs(c for c, _ in all_cells) if p not in bonds]
    merged = np.concatenate([np.asarray(index, np.int64).reshape(-1, 2), np.asarray(extra, np.int64).reshape(-1, 2)])
    edge_kind = np.concatenate([np.zeros(len(index), np.uint8), np.ones(len(extra), np.uint8)])
    edge_order = np.concatenate([order, np.zeros(len(extra), np.float32)])
    perm = np.lexsort((merged[:, 1], merged[:, 0]))
    merged, edge_kind, edge_order = merged[perm], edge_kind[perm], edge_order[perm]
    boundaries = [c for c, _ in all_cells]
    return SampleCells(
        pos=mol.pos,
        edge_index=merged,
        rings=boundaries,
        ring_edge=ring_edge_slots(boundaries, merged, n),
        node_arrays={"z": np.asarray(mol.z, dtype=np.uint8)},
        edge_arrays={"order": edge_order, "kind": edge_kind},
        ring_arrays={"kind": np.asarray([k for _, k in all_cells], dtype=np.uint8)},
    )


# ----------------------------------------------------------------------------------------------
# the shard builder of every molecule data set


class MoleculeTable(ABC):
    """A data set's molecules as :func:`build_molecule_shard` reads them, and what it stores per sample."""

    @abstractmethod
    def molecule(self, m: int) -> MoleculeInput:
        """Molecule ``m`` of the lift."""

    @abstractmethod
    def sample_arrays(self, keep: np.ndarray, sources: list[BondSource]) -> dict[str, np.ndarray]:
        """The ``sample/…`` rows of the molecules ``keep`` (lifted, in order), whose bonds came from ``sources``."""

    def shard_summary(self, content: ShardContent, keep: np.ndarray, sources: list[BondSource]) -> dict[str, Any]:
        """Per-shard statistics beside the ring sizes (JSON-able; summed in the manifest by finish)."""
        return {}

    def shard_attrs(self, keep: np.ndarray) -> dict[str, Any]:
        """Further shard attributes (JSON-able)."""
        return {}


def build_molecule_shard(table: MoleculeTable, config: Any, start: int, stop: int) -> ShardContent:
    """Molecules ``[start, stop)`` of ``table`` as one shard, lifted with ``config.rings``/``max_ring``.

    A molecule that cannot be lifted is skipped with its reason (``config.strict``: LiftError naming it).
    """
    from empcn.lift.assemble import complex_shard
    from empcn.lift.bonds import BadMolecule
    from empcn.lift.pipeline import LiftError

    options = CellOptions(config.rings, config.max_ring, CellSpec.parse(getattr(config, "cells", ("rings",))))
    cells: list[SampleCells] = []
    sources: list[BondSource] = []
    keep: list[int] = []
    skipped: list[dict[str, Any]] = []
    for m in range(start, stop):
        mol = table.molecule(m)
        try:
            sample, source = molecule_cells(mol, options)
        except BadMolecule as exc:
            if config.strict:
                raise LiftError(f"molecule {mol.label}: {exc}") from None
            skipped.append({"id": mol.label, "reason": str(exc)})
            continue
        cells.append(sample)
        sources.append(source)
        keep.append(m)
    keep_idx = np.asarray(keep, dtype=np.int64)
    content = complex_shard(cells, table.sample_arrays(keep_idx, sources))
    ring_sizes = content.groups["rings"].arrays["size"]
    content.attrs.update(table.shard_attrs(keep_idx))
    content.attrs["skipped"] = skipped
    content.attrs["summary"] = {
        "ring_sizes": {str(s): int(n) for s, n in zip(*np.unique(ring_sizes, return_counts=True))},
        **table.shard_summary(content, keep_idx, sources),
    }
    return content


# ----------------------------------------------------------------------------------------------
# empcn predict: molecule files lifted like a cache


def read_molecule_files(path: Path) -> list[tuple[str, Any]]:
    """``(label, Molecule | MoleculeRecord | the error why not)`` for each molecule of an .xyz or SD file.

    An SD file may hold several records: each is labelled ``file:id`` (``file`` alone for one record).
    """
    from empcn.data.molecules import SourceError
    from empcn.data.xyz import BadMoleculeFile, read_molecule

    path = Path(path)
    if path.suffix.lower() in SDF_SUFFIXES:
        from empcn.lift.sdf import read_sdf_for_predict

        try:
            records = read_sdf_for_predict(path)
        except SourceError as exc:
            return [(str(path), exc)]
        many = len(records) > 1
        return [
            (
                f"{path}:{mol_id}" if many else str(path),
                item if not isinstance(item, str) else BadMoleculeFile(f"{path}:{mol_id}: {item}"),
            )
            for mol_id, item in records
        ]
    try:
        return [(str(path), read_molecule(path))]
    except BadMoleculeFile as exc:
        return [(str(path), exc)]


def lift_single(mol: MoleculeInput, options: CellOptions) -> Sample:
    """The cache-format sample of one molecule; LiftFailed naming ``mol.label`` when it cannot be lifted."""
    from empcn.lift.assemble import single_sample
    from empcn.lift.bonds import BadMolecule

    try:
        cells, _ = molecule_cells(mol, options)
        return single_sample(cells)
    except (BadMolecule, ValueError) as exc:
        raise LiftFailed(f"{mol.label}: cannot lift ({' '.join(str(exc).split())})") from None


def predict_hook(options_of: Callable[[Mapping[str, Any]], CellOptions], smiles_bonds: bool) -> PredictHook:
    """``empcn predict`` for a molecule data set: .xyz and SD files, lifted with ``options_of(params)``.

    An SD record's bonds come from its file; an XYZ file's from its SMILES when ``smiles_bonds`` (raw
    QM9 files carry one) and it has one, else they are perceived from coordinates (as an XYZ folder is
    lifted by ``--dataset molecules``).
    """

    def lift(item: Any, params: Mapping[str, Any], label: str) -> Sample:
        from empcn.data.molecules import MoleculeRecord

        if isinstance(item, MoleculeRecord):
            mol = MoleculeInput(label, item.z, item.pos, bonds=item.bonds, orders=item.orders)
        else:
            mol = MoleculeInput(label, item.z, item.pos, smiles=item.smiles if smiles_bonds else None)
        return lift_single(mol, options_of(params))

    return PredictHook("molecules as .xyz (raw QM9 or plain XYZ) or SD (.sdf) files", read_molecule_files, lift)
