"""Lift users' own molecules (an SD file, or a folder of XYZ files with a targets CSV) like QM9.

Same cells and invariants as QM9 (:mod:`empcn.lift.qm9`): 0-cells every atom, 1-cells the bonds
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

from empcn import cache as cache_format
from empcn.choices import RingKind
from empcn.data import molecules as source
from empcn.data.xyz import element_name
from empcn.lift import pipeline
from empcn.lift.assemble import SampleCells, complex_shard
from empcn.lift.bonds import BadMolecule, geometric_bonds
from empcn.lift.checks import check_positions
from empcn.lift.rings import chordless_cycles, ring_edge_slots, sssr_cycles_from_edges
from empcn.lift.splits import target_statistics

DATASET = "molecules"
SDF_SUFFIXES = (".sdf", ".sd", ".mol")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MoleculesLiftConfig:
    """Every parameter of a lift of one's own molecules (those that change the bytes are recorded).

    ``targets``: SDF: ``NAME[=TAG],…`` (SD tags); XYZ folder: CSV column names (None: all but the id
    column). ``id_column``: SDF: the SD tag with the id (None: the title line); XYZ: the CSV column
    matching file stems (default ``id``). ``units``: ``NAME=UNIT,…``. ``fractions``: train, valid,
    test (sum 1). ``elements``: the vocabulary (None: the elements present).
    """

    source: Path
    out: Path = Path("data/molecules.h5")
    targets: str | None = None
    targets_csv: Path | None = None
    id_column: str | None = None
    units: str | None = None
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    elements: tuple[int, ...] | None = None
    rings: RingKind = "chordless"
    max_ring: int = 8
    shard_size: int = 1024
    workers: int = 1
    scheduler: str | None = None  # Dask: "local" or a scheduler address (not recorded)
    strict: bool = False
    resume: bool = False
    progress: bool = True
    target_tags: tuple[tuple[str, str], ...] = field(init=False, default=())
    unit_of: tuple[tuple[str, str], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        def bad(reason: str) -> pipeline.LiftError:
            return pipeline.LiftError(f"molecules lift: {reason}")

        src = Path(self.source)
        if not src.exists():
            raise bad(f"{src}: no such file or folder")
        if self.kind == "sdf":
            if self.targets_csv is not None:
                raise bad("--targets-csv is for a folder of XYZ files; an SD file's targets are its SD tags (--targets)")
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
            raise bad(f"fractions must be three numbers TRAIN,VALID,TEST >= 0 summing to 1 (train > 0), got {self.fractions!r}")
        object.__setattr__(self, "fractions", fr)
        if not _is_int(self.seed) or self.seed < 0:
            raise bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.elements is not None:
            els = tuple(sorted(set(int(z) for z in self.elements)))
            if not els or els[0] < 1 or els[-1] > 118:
                raise bad(f"elements must be atomic numbers 1..118, got {self.elements!r}")
            object.__setattr__(self, "elements", els)
        if self.rings not in ("chordless", "sssr"):
            raise bad(f"rings must be 'chordless' or 'sssr', got {self.rings!r}")
        if not _is_int(self.max_ring) or self.max_ring < 3:
            raise bad(f"max_ring must be an integer >= 3, got {self.max_ring!r}")
        if not _is_int(self.shard_size) or self.shard_size < 1 or not _is_int(self.workers) or self.workers < 1:
            raise bad(f"shard_size and workers must be positive integers, got {self.shard_size!r} and {self.workers!r}")
        pipeline.check_scheduler(self.scheduler)

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


@dataclass(frozen=True)
class CellOptions:
    """The lift parameters that shape one molecule's cells (what predict needs from a manifest)."""

    rings: str = "chordless"
    max_ring: int = 8

    @staticmethod
    def from_params(params: dict[str, Any]) -> "CellOptions":
        return CellOptions(str(params.get("rings", "chordless")), int(params.get("max_ring", 8)))


# ----------------------------------------------------------------------------------------------
# one molecule, one shard


def molecule_cells(record: source.MoleculeRecord, options: CellOptions) -> SampleCells:
    """The cells of one molecule (bonds from its file, or perceived from coordinates). Raises BadMolecule."""
    check_positions(record.pos)
    if record.bonds is None:
        bonds = geometric_bonds(record.z, record.pos)
        index, order = bonds.index, bonds.order
    else:
        index, order = record.bonds, record.orders
    n = len(record.z)
    if options.rings == "sssr":
        rings = [r for r in sssr_cycles_from_edges(n, index) if len(r) <= options.max_ring]
    else:
        rings = chordless_cycles(n, index, options.max_ring)
    return SampleCells(
        pos=record.pos,
        edge_index=index,
        rings=rings,
        ring_edge=ring_edge_slots(rings, index, n),
        node_arrays={"z": np.asarray(record.z, dtype=np.uint8)},
        edge_arrays={"order": np.asarray(order, dtype=np.float32)},
    )


def _build_shard(
    records: list[source.MoleculeRecord], n_targets: int, config: MoleculesLiftConfig, task: pipeline.ShardTask
) -> cache_format.ShardContent:
    options = CellOptions(config.rings, config.max_ring)
    cells: list[SampleCells] = []
    keep: list[int] = []
    skipped: list[dict[str, Any]] = []
    for m in range(task.start, task.stop):
        rec = records[m]
        try:
            cells.append(molecule_cells(rec, options))
        except BadMolecule as exc:
            if config.strict:
                raise pipeline.LiftError(f"molecule {rec.id}: {exc}") from None
            skipped.append({"id": rec.id, "reason": str(exc)})
            continue
        keep.append(m)
    per_sample = {
        "id": np.asarray(keep, dtype=np.int64),
        "y": np.array([records[m].y for m in keep], dtype=np.float64).reshape(len(keep), n_targets),
        "bonds_from_file": np.array([records[m].bonds is not None for m in keep], dtype=np.uint8),
    }
    content = complex_shard(cells, per_sample)
    z = content.groups["nodes"].arrays["z"]
    ring_sizes = content.groups["rings"].arrays["size"]
    content.attrs["names"] = [records[m].id for m in keep]
    content.attrs["skipped"] = skipped
    content.attrs["summary"] = {
        "ring_sizes": {str(s): int(n) for s, n in zip(*np.unique(ring_sizes, return_counts=True))},
        "elements": {str(e): int(n) for e, n in zip(*np.unique(z, return_counts=True))},
        "bonds_perceived": int(len(keep) - per_sample["bonds_from_file"].sum()),
    }
    return content


# ----------------------------------------------------------------------------------------------
# driver


def read_source(config: MoleculesLiftConfig) -> source.MoleculeSet:
    """The molecules of ``config.source`` (SourceError on a bad source, or a bad molecule with strict)."""
    if config.kind == "sdf":
        from empcn.lift.sdf import TargetTag, read_sdf

        tags = [TargetTag(n, t) for n, t in config.target_tags]
        return read_sdf(Path(config.source), tags, config.id_column, config.strict)
    wanted = [n for n, _ in config.target_tags] or None
    return source.read_xyz_folder(
        Path(config.source), Path(config.targets_csv), config.id_column or "id", wanted, config.strict  # type: ignore[arg-type]
    )


def lift_molecules(config: MoleculesLiftConfig) -> Path:
    """The whole lift (``--out`` checked and locked first); returns the entry file."""
    from empcn.lift.output import claim_output

    with claim_output(Path(config.out)):
        return lift_unclaimed(config)


def lift_unclaimed(config: MoleculesLiftConfig) -> Path:
    """The lift into ``config.out``, whose lock the caller holds (:func:`empcn.lift.output.claim_output`)."""
    src_info = config.source_info()
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
    n_targets = len(mols.targets)
    job = pipeline.LiftJob(
        dataset=DATASET,
        num_items=len(records),
        build=lambda task: _build_shard(records, n_targets, config, task),
        params=config.recorded_params(),
        source=src_info,
        **pipeline.run_options(config),
        desc="lift molecules",
        versions=("rdkit",),
    )
    return pipeline.run_lift(job, lambda results: _finish(config, mols.targets, results, skipped))


def random_splits(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Sample indices (ascending) of train/valid/test: a ``RandomState(seed)`` permutation cut by ``fractions``."""
    perm = np.random.RandomState(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = min(n - n_train, int(round(fractions[1] * n)))
    cuts = {"train": perm[:n_train], "valid": perm[n_train : n_train + n_valid], "test": perm[n_train + n_valid :]}
    return {k: np.sort(v).astype(np.int64) for k, v in cuts.items()}


def _finish(
    config: MoleculesLiftConfig, targets: tuple[str, ...], results: list[pipeline.ShardResult], skipped: list[dict[str, Any]]
) -> pipeline.LiftedSplits:
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
            "ranks": {"0": "nodes (atoms, hydrogens included)",
                      "1": "edges (bonds: from the SD file; perceived from covalent radii for XYZ files)",
                      "2": f"rings ({config.rings} cycles of at most {config.max_ring} atoms)"},
            "ring_sizes": pipeline.merge_counts(results, "ring_sizes"),
            "bonds_perceived_samples": sum(int(r.summary.get("bonds_perceived", 0)) for r in results),
        },
    }
    fields = {
        "sample/id": "(S,) int64 index of the molecule among the lifted ones, source order (names: shard attribute 'names')",
        "sample/bonds_from_smiles": None,
        "sample/bonds_from_file": "(S,) uint8 1 if bonds came from the SD file, 0 if perceived from coordinates",
        "nodes/pos": "(N, 3) float32 positions (Å)",
        "nodes/z": "(N,) uint8 atomic numbers (manifest.elements.vocabulary: the node-feature species)",
    }
    return pipeline.LiftedSplits(splits, manifest, fields=fields, skipped=skipped)
