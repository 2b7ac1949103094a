"""Per-sample input checks run before a sample is lifted: values must fit the stored dtype, geometry
must not be degenerate. A failing sample is bad input (skipped with its id and reason, or a stop in
``--strict`` mode), never a failed shard.
"""

from __future__ import annotations

import numpy as np

from empcn.lift.bonds import BadMolecule

#: Two points closer than this (Å for QM9, simulation units for N-body) are "the same point".
MIN_SEPARATION = 1e-3


def check_positions(pos: np.ndarray, stored: type = np.float32, min_separation: float = MIN_SEPARATION) -> None:
    """Raise BadMolecule if ``pos`` (N, 3) does not fit ``stored`` or two points coincide.

    Vectorised: one pairwise distance matrix (N ≤ a few hundred for the data sets lifted here).
    """
    pos = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise BadMolecule("non-finite coordinate")
    limit = float(np.finfo(stored).max)
    big = np.abs(pos) > limit / 4  # margin: differences and squares of stored values must stay finite
    if big.any():
        atom, axis = np.argwhere(big)[0]
        raise BadMolecule(
            f"coordinate {pos[atom, axis]:.3g} of atom {int(atom) + 1} does not fit {np.dtype(stored).name}"
        )
    if len(pos) > 1:
        diff = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((diff * diff).sum(-1))
        i, j = np.triu_indices(len(pos), k=1)
        close = dist[i, j] < min_separation
        if close.any():
            a, b = int(i[close][0]), int(j[close][0])
            raise BadMolecule(f"atoms {a + 1} and {b + 1} are at the same point (distance {dist[a, b]:.2g})")
