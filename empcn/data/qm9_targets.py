"""QM9 schema shared by both raw-source readers: the record types, the 12 targets and their units.

Both readers (``qm9_csv`` for the qm9pack CSVs, ``qm9_xyz`` for the official ``dsgdb9nsd`` files)
return a :class:`QM9Raw` in the files' own units; :func:`standard_targets` converts its targets to the
EGNN/Cormorant convention (meV energies, atomisation energies for U0/U/H/G, Cv minus 2.981 per atom).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from empcn.errors import EmpcnError

TARGETS: tuple[str, ...] = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv")

RAW_TARGET_UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "bohr^3",
    "homo": "Ha",
    "lumo": "Ha",
    "gap": "Ha",
    "r2": "bohr^2",
    "zpve": "Ha",
    "U0": "Ha",
    "U": "Ha",
    "H": "Ha",
    "G": "Ha",
    "Cv": "cal/(mol K)",
}
"""Units of ``QM9Raw.targets`` (as printed in the QM9 files)."""

TARGET_UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "bohr^3",
    "homo": "meV",
    "lumo": "meV",
    "gap": "meV",
    "r2": "bohr^2",
    "zpve": "meV",
    "U0": "meV",
    "U": "meV",
    "H": "meV",
    "G": "meV",
    "Cv": "cal/(mol K)",
}
"""Units after :func:`standard_targets`."""

HARTREE_TO_MEV = 27211.386245988  # 1 Ha = 27.211386245988 eV (CODATA 2018)
CV_PER_ATOM = 2.981  # cal/(mol K), QM9 atomref of Cv (the same for every element)

ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F")
SYMBOL_TO_Z: dict[str, int] = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

# QM9 atomref table (Hartree): free-atom U0, U(298.15 K), H(298.15 K), G(298.15 K).
_ATOM_REF_HA: dict[int, tuple[float, float, float, float]] = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
ATOM_REF_HA = np.full((10, 4), np.nan)
"""(10, 4) float64, Ha: row Z holds the free-atom U0, U, H, G of element Z (NaN for other Z)."""
for _z, _ref in _ATOM_REF_HA.items():
    ATOM_REF_HA[_z] = _ref
ATOM_REF_HA.setflags(write=False)

_IDX = {name: i for i, name in enumerate(TARGETS)}
_PLAIN_ENERGIES = [_IDX[n] for n in ("homo", "lumo", "gap", "zpve")]  # Ha -> meV, reference 0
_THERMO_ENERGIES = [_IDX[n] for n in ("U0", "U", "H", "G")]  # Ha -> meV, minus atom references


class SourceError(EmpcnError):
    """A QM9 source that cannot be read, or (strict mode) a bad molecule; one-line message naming the path."""


@dataclass(frozen=True)
class Skipped:
    """One molecule left out of a read, with a one-line reason (id None when it is not known)."""

    id: int | None
    reason: str


@dataclass(frozen=True, eq=False)
class QM9Raw:
    """Columnar block of M molecules in increasing id order, in the files' units.

    ids: (M,) int64, 1-based GDB-9 id. smiles: M GDB-17 SMILES strings (the ones used for bonds).
    offsets: (M+1,) int64, atoms of molecule m are ``[offsets[m], offsets[m+1])``.
    z: (sum N,) uint8 atomic numbers. pos: (sum N, 3) float64, Å, in file order.
    targets: (M, 12) float64, :data:`TARGETS` in :data:`RAW_TARGET_UNITS`.
    """

    ids: np.ndarray
    smiles: list[str]
    offsets: np.ndarray
    z: np.ndarray
    pos: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.ids)
        if self.ids.shape != (m,) or len(self.smiles) != m or self.offsets.shape != (m + 1,):
            raise ValueError("QM9Raw: ids, smiles and offsets disagree on the number of molecules")
        n = len(self.z)
        if self.offsets[0] != 0 or self.offsets[-1] != n or self.pos.shape != (n, 3):
            raise ValueError("QM9Raw: offsets, z and pos disagree on the number of atoms")
        if self.targets.shape != (m, len(TARGETS)):
            raise ValueError(f"QM9Raw: targets must be (M, {len(TARGETS)})")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_atoms(self) -> np.ndarray:
        """(M,) int64 atoms per molecule."""
        return np.diff(self.offsets)

    def take(self, idx: np.ndarray | Sequence[int]) -> QM9Raw:
        """The molecules at positions ``idx`` (increasing positions keep the id order)."""
        idx = np.asarray(idx, dtype=np.int64)
        counts = self.n_atoms[idx]
        atoms = _segment_gather(self.offsets[idx], counts)
        return QM9Raw(
            ids=self.ids[idx],
            smiles=[self.smiles[i] for i in idx.tolist()],
            offsets=_offsets_of(counts),
            z=self.z[atoms],
            pos=self.pos[atoms],
            targets=self.targets[idx],
        )

    @staticmethod
    def empty() -> QM9Raw:
        """A block of zero molecules."""
        return QM9Raw(
            ids=np.zeros(0, np.int64),
            smiles=[],
            offsets=np.zeros(1, np.int64),
            z=np.zeros(0, np.uint8),
            pos=np.zeros((0, 3)),
            targets=np.zeros((0, len(TARGETS))),
        )


def _offsets_of(counts: np.ndarray) -> np.ndarray:
    """(M+1,) int64 exclusive prefix sum of per-molecule atom counts."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _segment_gather(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Atom indices of the segments ``[starts[k], starts[k] + counts[k])`` concatenated, no Python loop."""
    total = int(counts.sum())
    shift = np.repeat(starts - _offsets_of(counts)[:-1], counts)
    return np.arange(total, dtype=np.int64) + shift


def merge_blocks(blocks: Sequence[QM9Raw]) -> tuple[QM9Raw, np.ndarray]:
    """Concatenate unsorted blocks, sort by id (stable) and drop repeated ids.

    Returns the merged block and the (K,) int64 ids that were dropped as repeats (the first copy read
    is kept).
    """
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        return QM9Raw.empty(), np.zeros(0, np.int64)
    ids = np.concatenate([b.ids for b in blocks])
    counts = np.concatenate([b.n_atoms for b in blocks])
    if np.all(ids[1:] > ids[:-1]):  # already in order without repeats: plain concatenation
        return QM9Raw(
            ids=ids.astype(np.int64),
            smiles=[s for b in blocks for s in b.smiles],
            offsets=_offsets_of(counts),
            z=np.concatenate([b.z for b in blocks]),
            pos=np.concatenate([b.pos for b in blocks]),
            targets=np.concatenate([b.targets for b in blocks]),
        ), np.zeros(0, np.int64)
    starts = _offsets_of(counts)[:-1]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    keep = order[first]
    atoms = _segment_gather(starts[keep], counts[keep])
    smiles = [s for b in blocks for s in b.smiles]
    merged = QM9Raw(
        ids=ids[keep].astype(np.int64),
        smiles=[smiles[i] for i in keep.tolist()],
        offsets=_offsets_of(counts[keep]),
        z=np.concatenate([b.z for b in blocks])[atoms],
        pos=np.concatenate([b.pos for b in blocks])[atoms],
        targets=np.concatenate([b.targets for b in blocks])[keep],
    )
    return merged, sorted_ids[~first].astype(np.int64)


def standard_targets(raw: QM9Raw) -> np.ndarray:
    """(M, 12) float64 targets in :data:`TARGET_UNITS` (EGNN/Cormorant convention).

    homo/lumo/gap/zpve: Ha -> meV. U0/U/H/G: minus the sum of the free-atom references of the
    molecule's atoms (atomisation energies), Ha -> meV. Cv: minus 2.981 cal/(mol K) per atom.
    mu, alpha, r2 unchanged.
    """
    out = np.array(raw.targets, dtype=np.float64, copy=True)
    if len(raw) == 0:
        return out
    counts = raw.n_atoms
    molecule = np.repeat(np.arange(len(raw)), counts)  # (sum N,) molecule of each atom
    atom_ref = ATOM_REF_HA[raw.z.astype(np.int64)]  # (sum N, 4) Ha
    ref = np.stack([np.bincount(molecule, atom_ref[:, k], minlength=len(raw)) for k in range(4)], axis=1)
    out[:, _PLAIN_ENERGIES] *= HARTREE_TO_MEV
    out[:, _THERMO_ENERGIES] = (out[:, _THERMO_ENERGIES] - ref) * HARTREE_TO_MEV
    out[:, _IDX["Cv"]] -= CV_PER_ATOM * counts
    return out
