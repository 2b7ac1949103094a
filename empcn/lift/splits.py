"""Train/valid/test splits and target statistics stored in a cache's manifest.

QM9 splits are defined over the 130,831 characterised molecules in id order, so a cache of a subset
(``--limit``, a partial folder, skipped molecules) keeps every molecule in the split it has in the
full data set:

* ``cormorant`` (EGNN, SEGNN, Cormorant): ``np.random.seed(0)``; ``perm = permutation(130831)``;
  train = perm[:100000], valid = perm[100000:117748], test = perm[117748:].
* ``empsn`` (the split printed in EMPSN/EMPCN): the same permutation, train = perm[:100000],
  test = perm[100000:110000], valid = the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from empcn.statistics import mean_mad

QM9_CHARACTERISED = 130_831
QM9_TOTAL = 133_885
_SPLIT_SEED = 0


def qm9_positions(ids: np.ndarray) -> np.ndarray:
    """0-based position of each 1-based GDB-9 id among the characterised molecules in id order."""
    from empcn.data.qm9 import uncharacterized_ids

    excluded = np.sort(uncharacterized_ids())
    ids = np.asarray(ids, dtype=np.int64)
    return ids - 1 - np.searchsorted(excluded, ids, side="left")


def _split_of_positions(scheme: str) -> tuple[np.ndarray, dict[str, int]]:
    perm = np.random.RandomState(_SPLIT_SEED).permutation(QM9_CHARACTERISED)
    if scheme == "cormorant":
        bounds = {"train": (0, 100_000), "valid": (100_000, 117_748), "test": (117_748, QM9_CHARACTERISED)}
    elif scheme == "empsn":
        bounds = {"train": (0, 100_000), "test": (100_000, 110_000), "valid": (110_000, QM9_CHARACTERISED)}
    else:
        raise ValueError(f"unknown split scheme {scheme!r} (cormorant or empsn)")
    code = np.empty(QM9_CHARACTERISED, dtype=np.int8)
    names = {"train": 0, "valid": 1, "test": 2}
    for name, (a, b) in bounds.items():
        code[perm[a:b]] = names[name]
    return code, names


def qm9_splits(ids: np.ndarray, scheme: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cache sample indices of each split (ascending) and the manifest's description of the split."""
    code, names = _split_of_positions(scheme)
    positions = qm9_positions(ids)
    if len(positions) and (positions.min() < 0 or positions.max() >= QM9_CHARACTERISED):
        raise ValueError("QM9 id outside the characterised set")
    sample_code = code[positions]
    splits = {name: np.flatnonzero(sample_code == c).astype(np.int64) for name, c in names.items()}
    info = {
        "scheme": scheme,
        "seed": _SPLIT_SEED,
        "defined_over": f"the {QM9_CHARACTERISED} characterised QM9 molecules in id order",
        "counts": {name: int(len(idx)) for name, idx in splits.items()},
        "datasets": {name: f"splits/{name}" for name in splits},
    }
    return splits, info


def target_statistics(y_train: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-target mean and mean absolute deviation (MAD) over the training samples (EGNN's normalisation)."""
    mean, mad = mean_mad(np.asarray(y_train, dtype=np.float64).reshape(len(y_train), len(names)))
    return {
        "mean": {n: float(m) for n, m in zip(names, mean)},
        "mad": {n: float(d) for n, d in zip(names, mad)},
    }


def random_splits(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Sample indices (ascending) of train/valid/test: a ``RandomState(seed)`` permutation cut by ``fractions``."""
    perm = np.random.RandomState(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = min(n - n_train, int(round(fractions[1] * n)))
    cuts = {"train": perm[:n_train], "valid": perm[n_train : n_train + n_valid], "test": perm[n_train + n_valid :]}
    return {k: np.sort(v).astype(np.int64) for k, v in cuts.items()}
