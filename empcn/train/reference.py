"""The atom reference of an extensive target: a per-element linear fit on element counts.

Energies, heat capacities and polarisabilities of molecules grow with the number of atoms. A linear
model in the counts ``n_e`` of each element ``e`` (the "atom reference" atomistic libraries fit
before training) explains most of their variance; the network then only has to learn the residual:

    y ≈ Σ_e c_e · n_e + b          (least squares on the training split only)
    r = y − Σ_e c_e · n_e          (the residual; its mean is b, the fit's intercept)
    loss = |pred − (r − mean(r)) / MAD(r)|           (L1, averaged over molecules)
    value = pred · MAD(r) + mean(r) + Σ_e c_e · n_e      (back in the target's unit)

The coefficients ``c_e`` (target unit per atom, in the order of ``species``) are stored with the run
(:class:`~empcn.train.checkpoint.RunMeta` ``reference`` / ``reference_species``); ``mean``/``mad``
of the run are then those of ``r``. An empty reference is the papers' plain ``(y − mean)/MAD``.

On QM9 (train split fit, valid split MAE; ``docs/models.md``) the fit scores 5–12 % of the
predict-the-mean MAE for zpve, U0, U, H, G, 35 % for alpha and Cv, and 74–94 % for mu, homo, lumo,
gap and r2: :data:`empcn.train.tasks.scalar.EXTENSIVE_TARGETS` get it by default.

Element counts come from the cache's ``nodes/z`` (for the fit) and from a batch's one-hot node
features (:func:`empcn.train.collate.species_counts`) during training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empcn.cache import Cache
from empcn.schema import NODE_Z, SAMPLE_Y

_SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}  # QM9's elements (the train stage does not import empcn.data)


def element_symbol(z: int) -> str:
    """``"C"`` for 6 (QM9's elements), ``"Z=17"`` for others: for log lines."""
    return _SYMBOLS.get(int(z), f"Z={int(z)}")


@dataclass(frozen=True)
class AtomFit:
    """A least-squares fit ``y ≈ counts · coef + intercept``.

    ``coef``: (S,) float64, target unit per atom of ``species[k]``; ``intercept``: target unit.
    """

    species: tuple[int, ...]
    coef: np.ndarray
    intercept: float

    def predict(self, counts: np.ndarray) -> np.ndarray:
        """(n,) float64 fitted values of molecules with element ``counts`` (n, S)."""
        return np.asarray(counts, dtype=np.float64) @ self.coef + self.intercept


def fit_atom_counts(counts: np.ndarray, y: np.ndarray, species: tuple[int, ...]) -> AtomFit:
    """Least squares of ``y`` (n,) on ``counts`` (n, S) and a constant (minimum-norm when rank-deficient,
    e.g. an element absent from a small subset: its coefficient is then 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if counts.ndim != 2 or counts.shape != (len(y), len(species)):
        raise ValueError(f"counts must be (n, {len(species)}) for {len(y)} targets, got {counts.shape}")
    if len(y) == 0:
        return AtomFit(tuple(species), np.zeros(len(species)), 0.0)
    design = np.concatenate([counts, np.ones((len(y), 1))], axis=1)
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    return AtomFit(tuple(species), solution[:-1].copy(), float(solution[-1]))


def read_counts(
    layout: object, indices: np.ndarray, target_index: int, species: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Element counts (n, S) float64 (elements outside ``species`` are not counted; all 0 in a cache
    without atomic numbers) and the target (n,) float64 of the samples ``indices`` of a cache
    (``layout``: a :class:`~empcn.train.dataset.CacheLayout`), in the order of ``indices``. Reads each
    shard once."""
    indices = np.asarray(indices, dtype=np.int64)
    counts = np.zeros((len(indices), len(species)), dtype=np.float64)
    y = np.zeros(len(indices), dtype=np.float64)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.asarray(species, dtype=np.int64)] = np.arange(len(species))
    shard = layout.shard_of(indices)  # type: ignore[attr-defined]
    cache = Cache(layout.path, max_shards_in_memory=1)  # type: ignore[attr-defined]
    try:
        for k in np.unique(shard).tolist():
            where = np.flatnonzero(shard == k)
            rows = indices[where] - layout.shard_starts[k]  # type: ignore[attr-defined]
            content = cache.shard(k)
            y[where] = content.array(SAMPLE_Y)[rows, target_index]
            if not content.has(NODE_Z):  # not atoms (a scalar data set of point clouds): nothing to count
                continue
            z = content.array(NODE_Z).astype(np.int64)
            offsets = content.offsets(NODE_Z)
            molecule = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
            column = lookup[z]
            known = column >= 0
            per_shard = np.bincount(
                molecule[known] * len(species) + column[known], minlength=(len(offsets) - 1) * len(species)
            ).reshape(-1, len(species))
            counts[where] = per_shard[rows]
    finally:
        cache.close()
    return counts, y


@dataclass(frozen=True)
class Baselines:
    """Trivial predictors' MAE on one split (target unit): the train mean, and the atom-count fit
    (``atoms_mae`` None for a cache without atoms to count)."""

    split: str
    samples: int
    mean_mae: float
    atoms_mae: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"mean_mae": self.mean_mae, "atoms_mae": self.atoms_mae, "samples": self.samples}

    def line(self, unit: str) -> str:
        text = (
            f"baselines on the {self.split} split ({self.samples} samples): predicting the train mean "
            f"MAE {self.mean_mae:.5g} {unit}"
        )
        if self.atoms_mae is None:
            return text
        return (
            f"baselines on the {self.split} split ({self.samples} molecules): predicting the train mean "
            f"MAE {self.mean_mae:.5g} {unit}; atom-count fit (least squares on the train molecules' element "
            f"counts) MAE {self.atoms_mae:.5g} {unit}"
        )

    def brief(self) -> str:
        """``train mean X, atom-count fit Y`` (the fit left out without atoms): the test line's comparison."""
        fit = f", atom-count fit {self.atoms_mae:.5g}" if self.atoms_mae is not None else ""
        return f"train mean {self.mean_mae:.5g}{fit}"


def baselines(
    layout: object,
    train_indices: np.ndarray,
    splits: dict[str, np.ndarray],
    target_index: int,
    species: tuple[int, ...],
) -> dict[str, Baselines]:
    """:class:`Baselines` of each split (name → sample indices), both predictors fitted on ``train_indices``
    (no atom-count fit when the train samples have no atoms of ``species``)."""
    train_counts, train_y = read_counts(layout, train_indices, target_index, species)
    fit = fit_atom_counts(train_counts, train_y, species) if train_counts.any() else None
    mean = float(train_y.mean()) if len(train_y) else 0.0
    out: dict[str, Baselines] = {}
    for name, indices in splits.items():
        counts, y = read_counts(layout, indices, target_index, species)
        if not len(y):
            out[name] = Baselines(name, 0, float("nan"), float("nan"))
            continue
        atoms = float(np.abs(y - fit.predict(counts)).mean()) if fit is not None else None
        out[name] = Baselines(name, int(len(y)), float(np.abs(y - mean).mean()), atoms)
    return out
