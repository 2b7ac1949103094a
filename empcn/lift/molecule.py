"""Lift single molecules exactly as a QM9 or own-molecules cache was lifted (for ``empcn predict``).

The cells, neighbourhoods and invariants come from the same code as ``empcn lift``
(:func:`empcn.lift.qm9.molecule_cells` → :func:`empcn.lift.assemble.complex_shard`), with the lift
parameters the cache recorded (:meth:`QM9LiftConfig.from_params`), so a model sees a new molecule
the way it saw its training data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from empcn.cache import Sample, sample_from_shard
from empcn.data.xyz import Molecule
from empcn.errors import EmpcnError
from empcn.lift.assemble import complex_shard
from empcn.lift.bonds import BadMolecule
from empcn.lift.qm9 import QM9LiftConfig, molecule_cells


class LiftFailed(EmpcnError, ValueError):
    """A molecule the lift cannot turn into a complex; the message names the file and the reason."""


def lift_molecule(mol: Molecule, config: QM9LiftConfig) -> Sample:
    """The cache-format sample of ``mol`` (bonds from its SMILES when it has one, else geometric)."""
    try:
        cells, _ = molecule_cells(mol.z, mol.pos, mol.smiles, config)
        content = complex_shard([cells], {"id": np.zeros(1, dtype=np.int64)})
    except (BadMolecule, ValueError) as exc:
        raise LiftFailed(f"{mol.path}: cannot lift ({' '.join(str(exc).split())})") from None
    return sample_from_shard(content, 0)


def lift_like_cache(molecules: list[Molecule], params: dict[str, Any]) -> list[Sample]:
    """Samples of ``molecules``, lifted with a cache manifest's ``params``."""
    config = QM9LiftConfig.from_params(params, progress=False)
    return [lift_molecule(mol, config) for mol in molecules]


def lift_record(record: Any, params: dict[str, Any], label: str) -> Sample:
    """The cache-format sample of a :class:`~empcn.data.molecules.MoleculeRecord` (an SD record, or a
    molecule file lifted for a ``molecules`` run), with the rings options of a manifest's ``params``."""
    from empcn.lift.molecules import CellOptions
    from empcn.lift.molecules import molecule_cells as record_cells

    try:
        cells = record_cells(record, CellOptions.from_params(params))
        content = complex_shard([cells], {"id": np.zeros(1, dtype=np.int64)})
    except (BadMolecule, ValueError) as exc:
        raise LiftFailed(f"{label}: cannot lift ({' '.join(str(exc).split())})") from None
    return sample_from_shard(content, 0)
