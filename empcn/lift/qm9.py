"""QM9: molecules → CW-complexes (atoms, bonds, rings) → invariants → HDF5 shards + manifest.

The data set's one module: its config and options, its reader (:func:`empcn.data.qm9.read_qm9`), its
molecules for the shared molecule shard builder (:func:`empcn.lift.molecule.build_molecule_shard`),
its finish (the Cormorant/EMPSN splits, train statistics, cell summary) and :data:`SPEC`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from empcn.data import qm9 as qm9_source
from empcn.lift import molecule, pipeline
from empcn.lift.groups import CellSpec
from empcn.lift.molecule import (
    CELLS_OPTION,
    BondSource,
    CellOptions,
    MoleculeInput,
    RingKind,
    cells_field_docs,
    cells_manifest,
    cells_param,
)
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option

SplitScheme = Literal["cormorant", "empsn"]


@dataclass(frozen=True)
class QM9LiftConfig(LiftConfig):
    """Every parameter of a QM9 lift (those that change the bytes recorded in the manifest)."""

    DATASET = "qm9"
    SHARD_SIZE = 4096

    source: Path | None = None  # None: the CSVs of the qm9pack package
    limit: int | None = None  # the first `limit` molecules (by id)
    rings: RingKind = "chordless"
    max_ring: int = 8
    split: SplitScheme = "cormorant"
    cells: tuple[str, ...] = ("rings",)  # --cells values (empcn.lift.groups.CellSpec.parse)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source is not None and not Path(self.source).expanduser().exists():
            raise self.bad(f"{self.source}: no such file or folder")
        try:
            CellOptions(self.rings, self.max_ring, CellSpec.parse(self.cells))
        except ValueError as exc:
            raise self.bad(str(exc)) from None
        if self.split not in get_args(SplitScheme):
            raise self.bad(f"split must be 'cormorant' or 'empsn', got {self.split!r}")
        if self.limit is not None and (
            not isinstance(self.limit, (int, np.integer)) or isinstance(self.limit, bool) or self.limit < 1
        ):
            raise self.bad(f"limit must be a positive integer, got {self.limit!r}")

    def recorded_params(self) -> dict[str, Any]:
        """The parameters that change the bytes of the cache (not workers/progress/resume/out)."""
        return {
            "limit": self.limit,
            "rings": self.rings,
            "max_ring": self.max_ring,
            "split": self.split,
            "shard_size": self.shard_size,
            "strict": self.strict,
            **cells_param(self.cells),
        }

    def source_info(self) -> dict[str, Any]:
        return {
            "kind": qm9_source.source_kind(self.source),
            "name": "qm9pack==1.0.3" if self.source is None else Path(self.source).name,
            "fingerprint": qm9_source.source_fingerprint(self.source),
        }

    @classmethod
    def from_params(cls, params: dict[str, Any], **run: Any) -> QM9LiftConfig:
        """The config whose :meth:`recorded_params` are ``params`` (a cache manifest's), plus run options.

        A parameter a cache does not record takes today's default; an unknown one is refused.
        """
        recorded = set(cls().recorded_params()) | {"cells"}
        unknown = sorted(set(params) - recorded)
        if unknown:
            raise pipeline.LiftError(
                f"qm9 lift: the cache records parameters this empcn does not know: {', '.join(unknown)}"
            )
        if "cells" in params:
            params = {**params, "cells": tuple(params["cells"])}
        return cls(**params, **run)


@dataclass(frozen=True)
class QM9Molecules(molecule.MoleculeTable):
    """QM9's molecules (:class:`~empcn.data.qm9.QM9Raw`) and their 12 targets in standard units, (M, 12)."""

    raw: qm9_source.QM9Raw
    targets: np.ndarray

    def molecule(self, m: int) -> MoleculeInput:
        a, b = int(self.raw.offsets[m]), int(self.raw.offsets[m + 1])
        return MoleculeInput(int(self.raw.ids[m]), self.raw.z[a:b], self.raw.pos[a:b], smiles=self.raw.smiles[m])

    def sample_arrays(self, keep: np.ndarray, sources: list[BondSource]) -> dict[str, np.ndarray]:
        return {
            "id": self.raw.ids[keep].astype(np.int64),
            "y": self.targets[keep].astype(np.float64),
            "bonds_from_smiles": np.asarray([s == "smiles" for s in sources], dtype=np.uint8),
        }

    def shard_summary(self, content: Any, keep: np.ndarray, sources: list[BondSource]) -> dict[str, Any]:
        return {"bond_fallback": sum(s != "smiles" for s in sources)}


def read(config: QM9LiftConfig) -> LiftInput:
    """QM9's molecules (SourceError on a bad source, or a bad molecule with strict)."""
    raw, skipped = qm9_source.read_qm9(config.source, limit=config.limit, strict=config.strict)
    table = QM9Molecules(raw, qm9_source.standard_targets(raw))
    return LiftInput(table, len(raw.ids), skipped=[asdict(s) for s in skipped])


def finish(config: QM9LiftConfig, lifted: LiftInput, results: list[pipeline.ShardResult]) -> pipeline.LiftedSplits:
    """Cormorant (or EMPSN) splits, train-split target statistics and the cell summary."""
    from empcn.lift.splits import qm9_splits, target_statistics

    ids = pipeline.concat_sample_arrays(results, "id", np.zeros(0, np.int64))
    ys = pipeline.concat_sample_arrays(results, "y", np.zeros((0, len(qm9_source.TARGETS))))
    splits, split_info = qm9_splits(ids, config.split)
    stats = target_statistics(ys[splits["train"]], qm9_source.TARGETS)
    manifest = {
        "splits": split_info,
        "targets": {
            "names": list(qm9_source.TARGETS),
            "units": dict(qm9_source.TARGET_UNITS),
            "train_mean": stats["mean"],
            "train_mad": stats["mad"],
            "convention": "EGNN/Cormorant: energies in meV; U0, U, H, G with QM9 atom references "
            "subtracted (atomisation), Cv with 2.981 cal/(mol K) per atom subtracted",
        },
        "cells": {
            "ranks": {
                "0": "nodes (atoms, hydrogens included)",
                "1": "edges (covalent bonds)",
                "2": f"rings ({config.rings} cycles of at most {config.max_ring} atoms)",
            },
            "ring_sizes": pipeline.merge_counts(results, "ring_sizes"),
            "bond_fallback_samples": sum(int(r.summary.get("bond_fallback", 0)) for r in results),
            **cells_manifest(config.cells),
        },
    }
    return pipeline.LiftedSplits(splits, manifest, fields=cells_field_docs(config.cells))


def lift_qm9(config: QM9LiftConfig) -> Path:
    """Run the whole QM9 lift (:func:`empcn.lift.datasets.lift`); returns the entry file."""
    from empcn.lift.datasets import lift

    return lift(config, SPEC)[0]


def _predict_options(params: dict[str, Any]) -> CellOptions:
    config = QM9LiftConfig.from_params(params, progress=False)
    return CellOptions(config.rings, config.max_ring, CellSpec.parse(config.cells))


SPEC = DatasetSpec(
    config=QM9LiftConfig,
    summary="QM9: 130,831 small organic molecules with 12 quantum-chemical targets",
    options=(
        Option(
            "source",
            "Raw data: QM9's dsgdb9nsd.xyz.tar.bz2, a folder of its .xyz files, or a folder of qm9pack-style CSVs.",
            Path,
            default="the CSVs of qm9pack==1.0.3",
            metavar="PATH",
        ),
        Option(
            "limit",
            "Lift only the first N molecules (by id); the splits stay those of the full set.",
            int,
            minimum=1,
            metavar="N",
        ),
        Option("rings", "2-cells: chordless cycles, or RDKit's symmetrised SSSR.", molecule.RING_KINDS),
        Option("max-ring", "Largest ring that becomes a 2-cell.", int, unit="atoms", minimum=3),
        CELLS_OPTION,
        Option("split", "Split: cormorant (EGNN's) or empsn (EMPSN/EMPCN's).", get_args(SplitScheme)),
    ),
    read=read,
    build_shard=molecule.build_molecule_shard,
    finish=finish,
    fields=("sample/id", "sample/y", "sample/bonds_from_smiles", "nodes/z", "edges/order", "edges/kind", "rings/kind"),
    task="scalar",
    versions=("rdkit",),
    predict=molecule.predict_hook(_predict_options, smiles_bonds=True),
)
