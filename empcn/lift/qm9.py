"""Lift QM9: molecules → CW-complexes (atoms, bonds, rings) → invariants → HDF5 shards + manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empcn import cache as cache_format
from empcn.choices import RingKind, SplitScheme
from empcn.data import qm9 as qm9_source
from empcn.lift import pipeline
from empcn.lift.assemble import SampleCells, complex_shard
from empcn.lift.bonds import BadMolecule, geometric_bonds, molecule_bonds
from empcn.lift.checks import check_positions
from empcn.lift.rings import chordless_cycles, ring_edge_slots, sssr_cycles, sssr_cycles_from_edges
from empcn.lift.splits import qm9_splits, target_statistics



@dataclass(frozen=True)
class QM9LiftConfig:
    """Every parameter of a QM9 lift (all recorded in the manifest)."""

    source: Path | None = None  # None: the CSVs of the qm9pack package
    out: Path = Path("data/qm9.h5")
    limit: int | None = None  # the first `limit` molecules (by id)
    rings: RingKind = "chordless"
    max_ring: int = 8
    split: SplitScheme = "cormorant"
    shard_size: int = 4096
    workers: int = 1
    scheduler: str | None = None  # Dask: "local" or a scheduler address (not recorded)
    strict: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(reason: str) -> pipeline.LiftError:
            return pipeline.LiftError(f"qm9 lift: {reason}")

        if self.rings not in ("chordless", "sssr"):
            raise bad(f"rings must be 'chordless' or 'sssr', got {self.rings!r}")
        if self.split not in ("cormorant", "empsn"):
            raise bad(f"split must be 'cormorant' or 'empsn', got {self.split!r}")
        if not _is_int(self.max_ring) or self.max_ring < 3:
            raise bad(f"max_ring must be an integer >= 3, got {self.max_ring!r}")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise bad(f"limit must be a positive integer, got {self.limit!r}")
        if not _is_int(self.shard_size) or self.shard_size < 1 or not _is_int(self.workers) or self.workers < 1:
            raise bad(f"shard_size and workers must be positive integers, got {self.shard_size!r} and {self.workers!r}")
        pipeline.check_scheduler(self.scheduler)

    def recorded_params(self) -> dict[str, Any]:
        """The parameters that change the bytes of the cache (not workers/progress/resume/out)."""
        return {
            "limit": self.limit,
            "rings": self.rings,
            "max_ring": self.max_ring,
            "split": self.split,
            "shard_size": self.shard_size,
            "strict": self.strict,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any], **run: Any) -> "QM9LiftConfig":
        """The config whose :meth:`recorded_params` are ``params`` (a cache manifest's), plus run options.

        A parameter a cache does not record takes today's default; an unknown one is refused.
        """
        recorded = set(cls().recorded_params())
        unknown = sorted(set(params) - recorded)
        if unknown:
            raise pipeline.LiftError(f"qm9 lift: the cache records parameters this empcn does not know: {', '.join(unknown)}")
        return cls(**params, **run)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------
# worker side: one shard


@dataclass(frozen=True)
class _QM9Inputs:
    raw: qm9_source.QM9Raw
    targets: np.ndarray  # (M, 12) standard units
    config: QM9LiftConfig


def molecule_cells(
    z: np.ndarray, pos: np.ndarray, smiles: str | None, config: QM9LiftConfig
) -> tuple[SampleCells, bool]:
    """One molecule's cells and whether its bonds came from the SMILES. Raises BadMolecule.

    ``smiles=None`` (a plain XYZ file): bonds are perceived from coordinates.
    """
    check_positions(pos)  # values must fit float32, no two atoms at one point (zero-length bonds)
    bonds = geometric_bonds(z, pos) if smiles is None else molecule_bonds(z, pos, smiles)
    if config.rings == "sssr":
        if bonds.from_smiles:
            rings = sssr_cycles(smiles, np.flatnonzero(z != 1))
        else:
            rings = sssr_cycles_from_edges(len(z), bonds.index)
        rings = [r for r in rings if len(r) <= config.max_ring]
    else:
        rings = chordless_cycles(len(z), bonds.index, config.max_ring)
    slots = ring_edge_slots(rings, bonds.index, len(z))
    cells = SampleCells(
        pos=pos,
        edge_index=bonds.index,
        rings=rings,
        ring_edge=slots,
        node_arrays={"z": np.asarray(z, dtype=np.uint8)},
        edge_arrays={"order": np.asarray(bonds.order, dtype=np.float32)},
    )
    return cells, bonds.from_smiles


def _build_shard(inputs: _QM9Inputs, task: pipeline.ShardTask) -> cache_format.ShardContent:
    raw, config = inputs.raw, inputs.config
    cells: list[SampleCells] = []
    from_smiles: list[bool] = []
    keep: list[int] = []
    skipped: list[dict[str, Any]] = []
    for m in range(task.start, task.stop):
        a, b = int(raw.offsets[m]), int(raw.offsets[m + 1])
        try:
            sample, smiles_ok = molecule_cells(raw.z[a:b], raw.pos[a:b], raw.smiles[m], config)
        except BadMolecule as exc:
            message = f"molecule {int(raw.ids[m])}: {exc}"
            if config.strict:
                raise pipeline.LiftError(message) from None
            skipped.append({"id": int(raw.ids[m]), "reason": str(exc)})
            continue
        cells.append(sample)
        from_smiles.append(smiles_ok)
        keep.append(m)
    keep_idx = np.asarray(keep, dtype=np.int64)
    per_sample = {
        "id": raw.ids[keep_idx].astype(np.int64),
        "y": inputs.targets[keep_idx].astype(np.float64),
        "bonds_from_smiles": np.asarray(from_smiles, dtype=np.uint8),
    }
    content = complex_shard(cells, per_sample)
    ring_sizes = content.groups["rings"].arrays["size"]
    content.attrs["skipped"] = skipped
    content.attrs["summary"] = {
        "ring_sizes": {str(s): int(n) for s, n in zip(*np.unique(ring_sizes, return_counts=True))},
        "bond_fallback": int(len(cells) - per_sample["bonds_from_smiles"].sum()),
    }
    return content


# ----------------------------------------------------------------------------------------------
# driver


def lift_qm9(config: QM9LiftConfig) -> Path:
    """Run the whole QM9 lift; returns the entry file path. Raises LiftError / SourceError on bad input.

    ``--out`` is checked and locked before the source is read (:func:`empcn.lift.output.claim_output`).
    """
    from empcn.lift.output import claim_output

    with claim_output(Path(config.out)):
        return _lift_qm9(config)


def lift_unclaimed(config: QM9LiftConfig) -> Path:
    """The lift into ``config.out``, whose lock the caller holds (``empcn lift --cache-dir``)."""
    return _lift_qm9(config)


def _lift_qm9(config: QM9LiftConfig) -> Path:
    raw, skipped = qm9_source.read_qm9(config.source, limit=config.limit, strict=config.strict)
    inputs = _QM9Inputs(raw, qm9_source.standard_targets(raw), config)
    job = pipeline.LiftJob(
        dataset="qm9",
        num_items=len(raw.ids),
        build=lambda task: _build_shard(inputs, task),
        params=config.recorded_params(),
        source={
            "kind": qm9_source.source_kind(config.source),
            "name": "qm9pack==1.0.3" if config.source is None else Path(config.source).name,
            "fingerprint": qm9_source.source_fingerprint(config.source),
        },
        **pipeline.run_options(config),
        desc="lift qm9",
        versions=("rdkit",),
    )
    return pipeline.run_lift(job, lambda results: _finish(config, results, [asdict(s) for s in skipped]))


def _finish(config: QM9LiftConfig, results: list[pipeline.ShardResult], skipped: list[dict[str, Any]]) -> pipeline.LiftedSplits:
    """Cormorant (or EMPSN) splits, train-split target statistics and the cell summary."""
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
            "ranks": {"0": "nodes (atoms, hydrogens included)", "1": "edges (covalent bonds)",
                      "2": f"rings ({config.rings} cycles of at most {config.max_ring} atoms)"},
            "ring_sizes": pipeline.merge_counts(results, "ring_sizes"),
            "bond_fallback_samples": sum(int(r.summary.get("bond_fallback", 0)) for r in results),
        },
    }
    return pipeline.LiftedSplits(splits, manifest, skipped=skipped)
