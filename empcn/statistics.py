"""Target normalisation: one definition of mean and MAD, used by the lift (manifest) and by training.

EGNN normalises each target by its training mean and mean absolute deviation (MAD). The lift records
them per target in the manifest; ``empcn train --train-size`` recomputes them over its subset. A MAD
of 0 (a constant target, or no samples) would divide by zero: it is recorded as 1, so a reader can
always divide by it.
"""

from __future__ import annotations

import numpy as np


def mean_mad(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and MAD of ``y`` (S,) or (S, T) float64, over the samples (axis 0).

    No samples: mean 0, MAD 1. A MAD of exactly 0 becomes 1 (see the module docstring).
    """
    y = np.asarray(y, dtype=np.float64)
    shape = y.shape[1:]
    if y.shape[0] == 0:
        return np.zeros(shape), np.ones(shape)
    mean = y.mean(axis=0)
    mad = np.abs(y - mean).mean(axis=0)
    return mean, np.where(mad > 0, mad, 1.0)
