"""Bonds (1-cells) of a molecule from its SMILES and 3-D coordinates.

The heavy-atom bond graph and bond orders come from the SMILES (SMILES atom ``i`` is the ``i``-th
heavy atom of the XYZ, as in QM9); every hydrogen bonds to its nearest heavy atom. When the SMILES
parses but does not describe the coordinates -- a different heavy-element sequence or count,
explicit ``[H]`` atoms, or a SMILES bond whose atoms lie implausibly far apart (the atom order or the
connectivity differs from the relaxed geometry) -- heavy-heavy bonds are perceived from covalent
radii instead and ``from_smiles`` is ``False``.

Bond orders are those written in the SMILES, except that aromatic rings are perceived by RDKit
(aromatic bonds get 1.5) so that equivalent ring bonds do not depend on which Kekulé structure the
SMILES happens to spell. Perception runs on the unsanitised molecule, and only when it can contain a
ring with a double or aromatic bond (57 % of QM9), which keeps the average cost per molecule low.
Groups written hypervalent stay as written: QM9's nitro groups ``N(=O)=O`` keep two N=O orders of 2
(a full RDKit sanitisation would rewrite them as ``[N+](=O)[O-]``, orders 2 and 1), so all nitro
groups are treated alike whether or not the molecule has a ring. Over all 130,831 QM9 molecules
these are the only differences from the orders of a fully sanitised RDKit molecule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, RDLogger

from empcn.errors import EmpcnError

# RDKit reports every unparsable SMILES on stderr; errors are raised as BadMolecule instead.
RDLogger.DisableLog("rdApp.*")

#: Heavy pair (a, b) is bonded by geometry when d_ab <= BOND_TOLERANCE * (r_a + r_b), r being the
#: covalent radii of Cordero et al. (2008) as tabulated by RDKit. On 50,000 QM9 molecules the longest
#: SMILES bond has d / (r_a + r_b) = 1.144 and the closest non-bonded heavy pair 1.156; over all of
#: QM9 this perception reproduces the SMILES bond graph for all but 43 of 130,823 molecules.
BOND_TOLERANCE = 1.15

#: A SMILES bond longer than SMILES_BOND_MAX * (r_a + r_b) in the coordinates means the SMILES does
#: not describe this geometry (wrong atom order, or a bond broken on relaxation): fall back.
SMILES_BOND_MAX = 1.3

_PT = Chem.GetPeriodicTable()
#: (119,) float64, Å: covalent radius by atomic number.
_RCOV = np.array([_PT.GetRcovalent(z) for z in range(119)], dtype=np.float64)
#: (119, 119) float64, Å²: squared distance limits by element pair, for the perception and the check.
_BOND_LIMIT2 = (BOND_TOLERANCE * (_RCOV[:, None] + _RCOV[None, :])) ** 2
_SMILES_LIMIT2 = (SMILES_BOND_MAX * (_RCOV[:, None] + _RCOV[None, :])) ** 2
#: Strictly upper-triangular mask and a range, sliced for molecules of up to 64 atoms.
_UPPER = np.triu(np.ones((64, 64), dtype=bool), 1)
_RANGE = np.arange(64)

#: SMILES atom tokens in order: a bracket atom's element symbol (group 1) or an organic-subset atom
#: (group 2). Checked against RDKit's atom count; anything unexpected takes the slow RDKit path.
_ATOM_TOKEN = re.compile(r"\[\d*([A-Z][a-z]?|[a-z][a-z]?|\*)[^\]]*\]|(Cl|Br|[BCNOSPFI]|[bcnosp]|\*)")
_SYMBOL_Z: dict[str, int] = {_PT.GetElementSymbol(k): k for k in range(1, 119)}
_SYMBOL_Z.update({s: _SYMBOL_Z[s.capitalize()] for s in ("b", "c", "n", "o", "p", "s", "se", "as", "te")})
_SYMBOL_Z["*"] = 0
#: str.translate table deleting everything but ASCII letters from a SMILES.
_DROP_NON_LETTERS = {c: None for c in range(128) if not chr(c).isalpha()}
#: bytes.translate table: atomic number -> its symbol when that is one letter, else "?".
_ONE_LETTER_SYMBOL = bytes(
    ord(_PT.GetElementSymbol(k)) if 0 < k < 119 and len(_PT.GetElementSymbol(k)) == 1 else ord("?") for k in range(256)
)
#: Characters without which a SMILES has no double bond, aromatic bond or aromatic atom (lowercase
#: b c n o p s, and the s / t of se, as, te); a false hit only costs an aromaticity perception.
_AROMATIC_HINT = re.compile(r"[=:bcnopst]")


class BadMolecule(EmpcnError, ValueError):
    """A molecule that cannot be lifted; the message is a one-line reason."""


@dataclass(frozen=True)
class MoleculeBonds:
    """Bonds of one molecule.

    index: (E, 2) int32 atom indices (XYZ order), i < j in each row, rows sorted lexicographically.
    order: (E,) float32 bond order: 1, 2, 3, 1.5 aromatic; 0 for heavy-heavy bonds perceived from
        coordinates (order unknown). Bonds to hydrogen are always 1.
    from_smiles: False when the SMILES did not match and heavy-heavy bonds came from coordinates.
    """

    index: np.ndarray
    order: np.ndarray
    from_smiles: bool


def molecule_bonds(z: np.ndarray, pos: np.ndarray, smiles: str) -> MoleculeBonds:
    """Bonds of a molecule from atomic numbers ``z`` (N,) int, positions ``pos`` (N, 3) float64 Å
    (XYZ order, hydrogens anywhere) and its SMILES (heavy atoms in XYZ heavy-atom order).

    Raises BadMolecule when the SMILES does not parse or the arrays are malformed.
    """
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise BadMolecule(f"SMILES {smiles!r} does not parse")
    return _bonds(z, pos, mol, smiles)


def geometric_bonds(z: np.ndarray, pos: np.ndarray) -> MoleculeBonds:
    """Bonds perceived from coordinates alone: heavy pairs within BOND_TOLERANCE of their covalent
    length (order 0), each hydrogen to its nearest heavy atom (order 1); ``from_smiles`` is False.
    z: (N,) int atomic numbers; pos: (N, 3) float64, Å."""
    return _bonds(z, pos, None, "")


def _bonds(z: np.ndarray, pos: np.ndarray, mol: Chem.Mol | None, smiles: str) -> MoleculeBonds:
    """molecule_bonds on a parsed SMILES, or geometric_bonds when ``mol`` is None."""
    z = np.asarray(z)
    pos = np.asarray(pos, dtype=np.float64)
    if z.ndim != 1 or pos.shape != (z.shape[0], 3) or z.dtype.kind not in "iu":
        raise BadMolecule(f"z has shape {z.shape} {z.dtype} and pos {pos.shape}; expected (N,) int and (N, 3)")
    n = z.shape[0]
    zl = z.tolist()
    if n and not 0 < min(zl) <= max(zl) <= 118:
        raise BadMolecule(f"atomic numbers must lie in 1..118, got {min(zl)}..{max(zl)}")

    # Work with heavy atoms first (QM9's own order); `perm` maps back to XYZ order at the end.
    nh = n - zl.count(1)
    perm = None
    if 1 in zl[:nh]:
        perm = np.argsort(z == 1, kind="stable")
        z, pos = z[perm], pos[perm]
        zl = z.tolist()
    zh = z[:nh]
    d2 = squared_distances(pos[:nh], pos)  # (nh, N) squared heavy-to-any distances, Å²

    # bond[i, j], i < j: order of bond i-j; -1 for a bond of unknown order; 0 for none.
    bond = np.zeros((n, n), dtype=np.float32)
    from_smiles = mol is not None and _smiles_matches(mol, smiles, zh)
    if from_smiles:
        from_smiles = _put_smiles_bonds(bond, mol, smiles, zh, d2[:, :nh])
    if not from_smiles:
        _put_geometric_bonds(bond, zh, d2[:, :nh])
    if 0 < nh < n:  # each hydrogen bonds to its nearest heavy atom
        bond[d2[:, nh:].argmin(axis=0), _arange(nh, n)] = 1.0
    elif nh == 0 and n > 1:  # no heavy atom (H2): each hydrogen bonds to its nearest other one
        _put_hydrogen_pairs(bond, pos)

    nonzero = bond.nonzero()  # row-major, so the pairs come out sorted
    index = np.transpose(nonzero)
    order = bond[nonzero]
    if not from_smiles:
        order = np.maximum(order, np.float32(0.0))
    if perm is not None:
        index = np.sort(perm[index], axis=1)
        rows = np.argsort(index[:, 0] * n + index[:, 1], kind="stable")
        index, order = index[rows], order[rows]
    return MoleculeBonds(index=index.astype(np.int32, order="C"), order=order, from_smiles=from_smiles)


def _smiles_matches(mol: Chem.Mol, smiles: str, zh: np.ndarray) -> bool:
    """Whether the SMILES atoms, in SMILES order, have the atomic numbers ``zh`` (H,) (so no [H]).

    Fast path: a SMILES without brackets or lowercase letters has one uppercase letter per atom
    (B C N O P S F I), so its letters must spell the heavy atoms' one-letter symbols.
    """
    letters = smiles.translate(_DROP_NON_LETTERS)
    if "[" not in smiles and letters.isupper():
        return zh.astype(np.uint8).tobytes().translate(_ONE_LETTER_SYMBOL) == letters.encode()
    return _smiles_atomic_numbers(mol, smiles) == zh.tolist()


def _smiles_atomic_numbers(mol: Chem.Mol, smiles: str) -> list[int]:
    """Atomic numbers of the SMILES atoms in SMILES order (tokenised; RDKit per atom if unsure)."""
    tokens = _ATOM_TOKEN.findall(smiles)
    if len(tokens) == mol.GetNumAtoms():
        zs = [_SYMBOL_Z.get(bracket or organic, -1) for bracket, organic in tokens]
        if -1 not in zs:
            return zs
    return [atom.GetAtomicNum() for atom in mol.GetAtoms()]


def _arange(start: int, stop: int) -> np.ndarray:
    """np.arange(start, stop), as a view of a cached range when it fits."""
    return _RANGE[start:stop] if stop <= _RANGE.shape[0] else np.arange(start, stop)


def _upper(k: int) -> np.ndarray:
    """(k, k) bool mask of the strict upper triangle."""
    return _UPPER[:k, :k] if k <= _UPPER.shape[0] else np.triu(np.ones((k, k), dtype=bool), 1)


def _put_smiles_bonds(bond: np.ndarray, mol: Chem.Mol, smiles: str, zh: np.ndarray, d2: np.ndarray) -> bool:
    """Write the SMILES heavy-heavy bond orders into the heavy block of ``bond`` (N, N); return
    False, writing nothing, when a SMILES bond is longer than SMILES_BOND_MAX times its covalent
    length.

    zh: (H,) heavy atomic numbers; d2: (H, H) squared distances, Å².
    """
    adj = Chem.GetAdjacencyMatrix(mol, useBO=True)
    # Aromaticity needs a ring -- bonds - atoms + fragments > 0, with at most dots + 1 fragments --
    # and a double bond, an aromatic bond or an aromatic atom; otherwise the written orders are final.
    dots = smiles.count(".")
    if mol.GetNumBonds() > adj.shape[0] - 1 - dots and _AROMATIC_HINT.search(smiles):
        try:  # RDKit's perception on the unsanitised molecule: written valences are kept as they are
            mol.UpdatePropertyCache(strict=False)
            Chem.GetSymmSSSR(mol)
            Chem.SetAromaticity(mol)
            adj = Chem.GetAdjacencyMatrix(mol, useBO=True, force=True)
        except Exception:  # noqa: BLE001  (perception impossible: keep the orders as written)
            pass
    if (adj * (d2 - _SMILES_LIMIT2[zh[:, None], zh]) > 0.0).any():  # orders are >= 0
        return False
    nh = zh.shape[0]
    bond[:nh, :nh] = adj * _upper(nh)
    return True


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(A, B)`` squared distances between the points ``a`` (A, 3) and ``b`` (B, 3), from explicit
    differences summed x, y, z in that order: elementwise operations only, so the same bits on any
    CPU (a BLAS Gram product, ``|a|² + |b|² − 2 a·b``, rounds differently with each CPU's kernels and
    loses precision for close pairs)."""
    diff = a[:, None, :] - b[None, :, :]
    dx, dy, dz = diff[..., 0], diff[..., 1], diff[..., 2]
    return dx * dx + dy * dy + dz * dz


def _put_geometric_bonds(bond: np.ndarray, zh: np.ndarray, d2: np.ndarray) -> None:
    """Mark heavy pairs with d_ij <= BOND_TOLERANCE (r_i + r_j) as bonds of unknown order (-1) in
    the heavy block of ``bond`` (N, N). zh: (H,) atomic numbers; d2: (H, H) squared distances, Å²."""
    nh = zh.shape[0]
    bond[:nh, :nh] = np.where((d2 <= _BOND_LIMIT2[zh[:, None], zh]) & _upper(nh), -1.0, 0.0)


def _put_hydrogen_pairs(bond: np.ndarray, pos: np.ndarray) -> None:
    """Bond each atom of an all-hydrogen molecule to its nearest other one (order 1) in ``bond``."""
    d2 = squared_distances(pos, pos)
    np.fill_diagonal(d2, np.inf)
    nearest = d2.argmin(axis=1)
    k = np.arange(pos.shape[0])
    bond[np.minimum(k, nearest), np.maximum(k, nearest)] = 1.0
