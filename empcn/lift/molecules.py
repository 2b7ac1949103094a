"""Lift users' own molecules (an SD file, or a folder of XYZ files with a targets CSV) like QM9.

Same cells and invariants as QM9 (:mod:`empcn.lift.molecule`): 0-cells every atom, 1-cells the bonds
(from the SD file, aromaticity perceived by RDKit; perceived from covalent radii for XYZ files, as
QM9's fallback does, and flagged ``sample/bonds_from_file = 0``), 2-cells chordless cycles of at
most ``max_ring`` atoms (or RDKit's symmetrised SSSR of the bond graph), the ten neighbourhoods.

What the manifest adds for these caches:

* ``elements``: ``vocabulary`` (atomic numbers, ascending: the one-hot node features a model
  trained on the cache is built from) and ``atoms`` (atom count per element). The vocabulary is the
  elements present, or ``--elements`` (then a molecule with another element is skipped).
* ``splits``: a seeded random split of the lifted molecules: ``perm = RandomState(seed).permutation(S)``;
  the first ``round(f_train·S)`` are train, the next ``round(f_valid·S)`` valid, the rest test.
* ``targets``: names, units (``--units``), mean and MAD over the train split.

Shards carry the molecules' names (SD title or id tag, XYZ file stem) in their ``names`` attribute,
in sample order; ``sample/id`` is the molecule's index among the lifted ones (source order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empcn.data import molecules as source
from empcn.lift import molecule, pipeline
from empcn.lift.molecule import BondSource, CellOptions, MoleculeInput, RingKind
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MoleculesLiftConfig(LiftConfig):
    """Every parameter of a lift of one's own molecules (those that change the bytes are recorded).

    ``targets``: SDF: ``NAME[=TAG],…`` (SD tags); XYZ folder: CSV column names (None: all but the id
    column). ``id_column``: SDF: the SD tag with the id (None: the title line); XYZ: the CSV column
    matching file stems (default ``id``). ``units``: ``NAME=UNIT,…``. ``fractions``: train, valid,
    test (sum 1). ``elements``: the vocabulary (None: the elements present).
    """

    DATASET = "molecules"
    SHARD_SIZE = 1024

    source: Path
    targets: str | None = None
    targets_csv: Path | None = None
    id_column: str | None = None
    units: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    elements: tuple[int, ...] | None = None
    rings: RingKind = "chordless"
    max_ring: int = 8
    target_tags: tuple[tuple[str, str], ...] = field(init=False, default=())
    unit_of: tuple[tuple[str, str], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = self.bad
        src = Path(self.source)
        if not src.exists():
            raise bad(f"{src}: no such file or folder")
        if self.kind == "sdf":
            if self.targets_csv is not None:
                raise bad(
                    "--targets-csv is for a folder of XYZ files; an SD file's targets are its SD tags (--targets)"
                )
            if not self.targets:
                raise bad(f"{src}: name the SD tags to learn with --targets NAME[=TAG],…")
        elif self.targets_csv is None:
            raise bad(f"{src}: a folder of XYZ files needs --targets-csv with a row per molecule")
        if self.targets:
            from empcn.lift.sdf import parse_target_tags

            try:
                tags = parse_target_tags(self.targets)
            except ValueError as exc:
                raise bad(str(exc)) from None
            if self.kind == "xyz-folder" and any(t.name != t.tag for t in tags):
                raise bad("--targets for a CSV names its columns (NAME=TAG is for SD tags)")
            object.__setattr__(self, "target_tags", tuple((t.name, t.tag) for t in tags))
        units: list[tuple[str, str]] = []
        for part in (p.strip() for p in (self.units or "").split(",")):
            if part:
                name, eq, unit = part.partition("=")
                if not eq or not name.strip():
                    raise bad(f"--units takes NAME=UNIT,…, got {self.units!r}")
                units.append((name.strip(), unit.strip()))
        object.__setattr__(self, "unit_of", tuple(units))
        fr = tuple(float(f) for f in self.fractions)
        if len(fr) != 3 or min(fr) < 0 or not math.isclose(sum(fr), 1.0, abs_tol=1e-9) or fr[0] <= 0:
            raise bad(
                f"fractions must be three numbers TRAIN,VALID,TEST >= 0 summing to 1 (train > 0), got {self.fractions!r}"
            )
        object.__setattr__(self, "fractions", fr)
        if not _is_int(self.seed) or self.seed < 0:
            raise bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.elements is not None:
            els = tuple(sorted(set(int(z) for z in self.elements)))
            if not els or els[0] < 1 or els[-1] > 118:
                raise bad(f"elements must be atomic numbers 1..118, got {self.elements!r}")
            object.__setattr__(self, "elements", els)
        try:
            CellOptions(self.rings, self.max_ring)
        except ValueError as exc:
            raise bad(str(exc)) from None

    @property
    def kind(self) -> str:
        """``sdf`` (an SD file) or ``xyz-folder``."""
        return "xyz-folder" if Path(self.source).is_dir() else "sdf"

    def recorded_params(self) -> dict[str, Any]:
        """The parameters that change the cache (not workers/progress/resume/out, nor paths)."""
        return {
            "format": self.kind,
            "targets": [list(t) for t in self.target_tags] or None,
            "id_column": self.id_column,
            "units": dict(self.unit_of),
            "fractions": list(self.fractions),
            "seed": self.seed,
            "elements": list(self.elements) if self.elements is not None else None,
            "rings": self.rings,
            "max_ring": self.max_ring,
            "shard_size": self.shard_size,
            "strict": self.strict,
        }

    def source_files(self) -> list[Path]:
        """The files the lift reads, in the order they are fingerprinted."""
        if self.kind == "sdf":
            return [Path(self.source)]
        return [*source.xyz_files(Path(self.source)), Path(self.targets_csv)]  # type: ignore[arg-type]

    def source_info(self) -> dict[str, Any]:
        """``{"kind", "name", "fingerprint"}`` of the source (the bytes of every file read)."""
        name = Path(self.source).name
        if self.kind == "xyz-folder":
            name = f"{name}/ + {Path(self.targets_csv).name}"  # type: ignore[arg-type]
        return {"kind": self.kind, "name": name, "fingerprint": source.files_fingerprint(self.source_files())}


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → (0.8, 0.1, 0.1); ValueError with the reason."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError(f"takes three numbers TRAIN,VALID,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def parse_elements(text: str) -> tuple[int, ...]:
    """``"H,C,N,O,Br"`` (symbols or atomic numbers) → atomic numbers; ValueError naming a bad one."""
    from empcn.data.xyz import atomic_number

    out = [atomic_number(token) for token in (t.strip() for t in text.split(",")) if token]
    if not out:
        raise ValueError("names no element")
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# the molecules of a lift, for the molecule shard builder


@dataclass(frozen=True)
class MoleculeRecords(molecule.MoleculeTable):
    """The records read, and how many targets each has."""

    records: list[source.MoleculeRecord]
    n_targets: int

    def molecule(self, m: int) -> MoleculeInput:
        rec = self.records[m]
        return MoleculeInput(rec.id, rec.z, rec.pos, bonds=rec.bonds, orders=rec.orders)

    def sample_arrays(self, keep: np.ndarray, sources: list[BondSource]) -> dict[str, np.ndarray]:
        return {
            "id": keep,
            "y": np.array([self.records[m].y for m in keep], dtype=np.float64).reshape(len(keep), self.n_targets),
            "bonds_from_file": np.array([s == "file" for s in sources], dtype=np.uint8),
        }

    def shard_summary(self, content: Any, keep: np.ndarray, sources: list[BondSource]) -> dict[str, Any]:
        z = content.groups["nodes"].arrays["z"]
        return {
            "elements": {str(e): int(n) for e, n in zip(*np.unique(z, return_counts=True))},
            "bonds_perceived": sum(s != "file" for s in sources),
        }

    def shard_attrs(self, keep: np.ndarray) -> dict[str, Any]:
        return {"names": [self.records[m].id for m in keep]}


# ----------------------------------------------------------------------------------------------
# reader and finish


def read_source(config: MoleculesLiftConfig) -> source.MoleculeSet:
    """The molecules of ``config.source`` (SourceError on a bad source, or a bad molecule with strict)."""
    if config.kind == "sdf":
        from empcn.lift.sdf import TargetTag, read_sdf

        tags = [TargetTag(n, t) for n, t in config.target_tags]
        return read_sdf(Path(config.source), tags, config.id_column, config.strict)
    wanted = [n for n, _ in config.target_tags] or None
    return source.read_xyz_folder(
        Path(config.source),
        Path(config.targets_csv),
        config.id_column or "id",
        wanted,
        config.strict,  # type: ignore[arg-type]
    )


def read(config: MoleculesLiftConfig) -> LiftInput:
    """The molecules to lift: those read, less those with an element outside ``--elements``."""
    from empcn.data.xyz import element_name

    mols = read_source(config)
    skipped = [{"id": s.id, "reason": s.reason} for s in mols.skipped]
    records = mols.records
    if config.elements is not None:
        allowed = set(config.elements)
        kept = []
        for rec in records:
            other = sorted(set(rec.z.tolist()) - allowed)
            if other:
                reason = f"element {element_name(other[0])} is not in --elements"
                if config.strict:
                    raise pipeline.LiftError(f"molecule {rec.id}: {reason}")
                skipped.append({"id": rec.id, "reason": reason})
            else:
                kept.append(rec)
        records = kept
    if not records:
        first = f" (first: {skipped[0]['id']}: {skipped[0]['reason']})" if skipped else ""
        raise pipeline.LiftError(f"{config.source}: no molecule can be lifted{first}")
    return LiftInput(MoleculeRecords(records, len(mols.targets)), len(records), skipped=skipped, context=mols.targets)


def finish(
    config: MoleculesLiftConfig, lifted: LiftInput, results: list[pipeline.ShardResult]
) -> pipeline.LiftedSplits:
    """The seeded random split, train statistics of the targets, the element vocabulary, the cell summary."""
    from empcn.lift.splits import random_splits, target_statistics

    targets: tuple[str, ...] = lifted.context
    ys = pipeline.concat_sample_arrays(results, "y", np.zeros((0, len(targets))))
    splits = random_splits(len(ys), config.fractions, config.seed)
    stats = target_statistics(ys[splits["train"]], targets)
    atoms = pipeline.merge_counts(results, "elements")
    vocabulary = list(config.elements) if config.elements is not None else [int(z) for z in atoms]
    units = dict(config.unit_of)
    manifest = {
        "splits": {
            "scheme": "random",
            "seed": config.seed,
            "fractions": list(config.fractions),
            "defined_over": "the lifted molecules in source order: RandomState(seed).permutation, cut by fractions",
            "counts": {k: int(len(v)) for k, v in splits.items()},
            "datasets": {k: f"splits/{k}" for k in splits},
        },
        "targets": {
            "names": list(targets),
            "units": {n: units.get(n, "") for n in targets},
            "train_mean": stats["mean"],
            "train_mad": stats["mad"],
            "convention": "as read from the source (SD tags or CSV columns), no conversion",
        },
        "elements": {"vocabulary": vocabulary, "atoms": atoms},
        "cells": {
            "ranks": {
                "0": "nodes (atoms, hydrogens included)",
                "1": "edges (bonds: from the SD file; perceived from covalent radii for XYZ files)",
                "2": f"rings ({config.rings} cycles of at most {config.max_ring} atoms)",
            },
            "ring_sizes": pipeline.merge_counts(results, "ring_sizes"),
            "bonds_perceived_samples": sum(int(r.summary.get("bonds_perceived", 0)) for r in results),
        },
    }
    fields = {
        "sample/id": "(S,) int64 index of the molecule among the lifted ones, source order (names: shard attribute 'names')",
        "sample/bonds_from_file": "(S,) uint8 1 if bonds came from the SD file, 0 if perceived from coordinates",
        "nodes/pos": "(N, 3) float32 positions (Å)",
        "nodes/z": "(N,) uint8 atomic numbers (manifest.elements.vocabulary: the node-feature species)",
    }
    return pipeline.LiftedSplits(splits, manifest, fields=fields)


def lift_molecules(config: MoleculesLiftConfig) -> Path:
    """The whole lift (:func:`empcn.lift.datasets.lift`); returns the entry file."""
    from empcn.lift.datasets import lift

    return lift(config, SPEC)[0]


SPEC = DatasetSpec(
    config=MoleculesLiftConfig,
    summary="Your own molecules: an SD file, or a folder of XYZ files with a CSV of targets",
    options=(
        Option(
            "source",
            "An SD file (.sdf, .sd, .mol; bonds and targets from it), or a folder of XYZ files with --targets-csv.",
            Path,
            metavar="PATH",
            required=True,
        ),
        Option(
            "targets",
            "Targets as NAME[=SD_TAG],… (SD file) or CSV columns (XYZ folder).",
            str,
            default="every CSV column but the id (XYZ folder)",
            metavar="NAME[=TAG],…",
        ),
        Option("targets-csv", "CSV of targets for a folder of XYZ files, a row per molecule.", Path, metavar="FILE"),
        Option(
            "id-column",
            "CSV column matching the XYZ file names, or the SD tag holding ids.",
            str,
            default="id (CSV); the title line (SD file)",
            metavar="NAME",
        ),
        Option(
            "units",
            "Units of the targets, NAME=UNIT,… (recorded; the values are stored as read).",
            str,
            metavar="NAME=UNIT,…",
        ),
        Option("fractions", "Random split fractions TRAIN,VALID,TEST.", parse_fractions, metavar="TRAIN,VALID,TEST"),
        Option("seed", "Seed of the random split.", int, minimum=0),
        Option(
            "elements",
            "The element vocabulary, e.g. H,C,N,O,F,S,Cl,Br; molecules with others are skipped.",
            parse_elements,
            default="the elements present",
            metavar="SYMBOLS",
        ),
        Option(
            "rings", "2-cells: chordless cycles, or RDKit's symmetrised SSSR of the bond graph.", molecule.RING_KINDS
        ),
        Option("max-ring", "Largest ring that becomes a 2-cell.", int, unit="atoms", minimum=3),
    ),
    read=read,
    build_shard=molecule.build_molecule_shard,
    finish=finish,
    fields=("sample/id", "sample/y", "sample/bonds_from_file", "nodes/z", "edges/order"),
    task="scalar",
    versions=("rdkit",),
    predict=molecule.predict_hook(CellOptions.from_params, smiles_bonds=False),
)
