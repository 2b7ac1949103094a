"""Bonds of real QM9 molecules: SMILES graph + nearest-heavy-atom hydrogens, and the geometric fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import qm9pack_csv
from rdkit import Chem

from empcn.lift.bonds import BadMolecule, geometric_bonds, molecule_bonds

QM9_CSV = qm9pack_csv()
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


@pytest.fixture(scope="module")
def qm9() -> pd.DataFrame:
    """The first 3,300 QM9 molecules, indexed by their 1-based QM9 index."""
    frame = pd.read_csv(QM9_CSV, usecols=["Index", "SMILES", "Elements", "XYZ_Ang"], nrows=3300)
    return frame.set_index("Index")


def molecule(qm9: pd.DataFrame, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(z (N,) uint8, pos (N, 3) float64 Å, SMILES) of QM9 molecule ``index``."""
    row = qm9.loc[index]
    symbols = row.Elements.strip("[]").replace("'", "").split(",")
    z = np.array([ATOMIC_NUMBER[s] for s in symbols], dtype=np.uint8)
    pos = np.array(row.XYZ_Ang.replace("[", "").replace("]", "").split(","), dtype=float).reshape(-1, 3)
    return z, pos, row.SMILES


def pairs(index: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in index}


def heavy_pairs(bonds, z: np.ndarray) -> set[tuple[int, int]]:
    keep = (z[bonds.index[:, 0]] != 1) & (z[bonds.index[:, 1]] != 1)
    return pairs(bonds.index[keep])


def assert_well_formed(bonds, n: int) -> None:
    assert bonds.index.dtype == np.int32 and bonds.index.shape[1] == 2
    assert bonds.order.dtype == np.float32 and bonds.order.shape == (bonds.index.shape[0],)
    assert (bonds.index[:, 0] < bonds.index[:, 1]).all() and bonds.index.max() < n
    keys = bonds.index[:, 0].astype(np.int64) * n + bonds.index[:, 1]
    assert (np.diff(keys) > 0).all()  # sorted lexicographically, no repeats


def hydrogen_partner_count(bonds, z: np.ndarray) -> np.ndarray:
    """(N,) number of bonds to hydrogen per atom."""
    i, j = bonds.index.T
    partner = np.where(z[i] == 1, j, i)[(z[i] == 1) | (z[j] == 1)]
    return np.bincount(partner, minlength=z.size)


def test_methane(qm9):
    z, pos, smiles = molecule(qm9, 1)
    assert smiles == "C"
    bonds = molecule_bonds(z, pos, smiles)
    assert bonds.from_smiles
    np.testing.assert_array_equal(bonds.index, [[0, 1], [0, 2], [0, 3], [0, 4]])
    np.testing.assert_array_equal(bonds.order, [1, 1, 1, 1])


def test_water(qm9):
    z, pos, smiles = molecule(qm9, 3)
    assert smiles == "O"
    bonds = molecule_bonds(z, pos, smiles)
    np.testing.assert_array_equal(bonds.index, [[0, 1], [0, 2]])
    np.testing.assert_array_equal(bonds.order, [1, 1])


def test_benzene_bonds_are_aromatic(qm9):
    # QM9 spells benzene as a Kekule structure; all six ring bonds must come out 1.5 anyway.
    z, pos, smiles = molecule(qm9, 214)
    assert smiles == "C1=CC=CC=C1"
    bonds = molecule_bonds(z, pos, smiles)
    assert bonds.from_smiles
    ring = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5)}
    assert heavy_pairs(bonds, z) == ring
    heavy = (z[bonds.index[:, 0]] != 1) & (z[bonds.index[:, 1]] != 1)
    np.testing.assert_array_equal(bonds.order[heavy], np.full(6, 1.5))
    np.testing.assert_array_equal(hydrogen_partner_count(bonds, z)[:6], np.ones(6))
    # carbon valence 4 = 1.5 + 1.5 + 1 (C-H)
    valence = np.bincount(bonds.index.ravel(), weights=np.repeat(bonds.order, 2), minlength=z.size)
    np.testing.assert_allclose(valence[:6], 4.0)


def test_ring_molecule_matches_smiles_valences(qm9):
    # 1H-imidazole-5-carbaldehyde: O0=C1(H)-C2, ring C2=C3(H)-N4=C5(H)-N6(H)-C2
    z, pos, smiles = molecule(qm9, 1027)
    assert smiles == "O=CC1=CN=CN1"
    bonds = molecule_bonds(z, pos, smiles)
    assert bonds.from_smiles
    assert_well_formed(bonds, z.size)
    mol = Chem.MolFromSmiles(smiles)
    assert len(heavy_pairs(bonds, z)) == mol.GetNumBonds() == 7
    hydrogens = np.flatnonzero(z == 1)
    degree = np.bincount(bonds.index.ravel(), minlength=z.size)
    np.testing.assert_array_equal(degree[hydrogens], 1)  # every H has exactly one bond
    np.testing.assert_array_equal(hydrogen_partner_count(bonds, z)[:7], [0, 1, 0, 1, 0, 1, 1])
    expected_degree = [atom.GetDegree() + atom.GetTotalNumHs() for atom in mol.GetAtoms()]
    np.testing.assert_array_equal(degree[:7], expected_degree)
    orders = {pair: float(o) for pair, o in zip(map(tuple, bonds.index.tolist()), bonds.order)}
    assert orders[(0, 1)] == 2.0 and orders[(1, 2)] == 1.0
    for ring_bond in [(2, 3), (3, 4), (4, 5), (5, 6), (2, 6)]:
        assert orders[ring_bond] == 1.5  # imidazole is aromatic


def test_saturated_ring_valences(qm9):
    # cyclopropane-1,2-diol: C valence 4, O valence 2, all single bonds
    z, pos, smiles = molecule(qm9, 104)
    assert smiles == "OC1CC1O"
    bonds = molecule_bonds(z, pos, smiles)
    np.testing.assert_array_equal(bonds.order, 1.0)
    valence = np.bincount(bonds.index.ravel(), weights=np.repeat(bonds.order, 2), minlength=z.size)
    expected = {1: 1, 6: 4, 8: 2}
    np.testing.assert_array_equal(valence, [expected[int(v)] for v in z])


def test_hydrogens_anywhere_in_the_order(qm9):
    # Interleaving hydrogens among the heavy atoms relabels the same bonds.
    z, pos, smiles = molecule(qm9, 1027)
    reference = molecule_bonds(z, pos, smiles)
    rng = np.random.default_rng(0)
    heavy, hydrogens = np.flatnonzero(z != 1), np.flatnonzero(z == 1)
    slots = np.sort(rng.choice(z.size, size=heavy.size, replace=False))  # heavy keep their order
    order = np.empty(z.size, dtype=np.int64)
    order[slots] = heavy
    order[np.setdiff1d(np.arange(z.size), slots)] = rng.permutation(hydrogens)
    new_of_old = np.argsort(order)
    shuffled = molecule_bonds(z[order], pos[order], smiles)
    assert shuffled.from_smiles
    assert_well_formed(shuffled, z.size)
    mapped = np.sort(new_of_old[reference.index], axis=1)
    expected = dict(zip(map(tuple, mapped.tolist()), reference.order.tolist()))
    assert dict(zip(map(tuple, shuffled.index.tolist()), shuffled.order.tolist())) == expected


def test_fallback_on_wrong_element_order(qm9):
    # Acetaldehyde's XYZ is C, C, O; 'O=CC' lists O first, so the SMILES cannot be mapped.
    z, pos, smiles = molecule(qm9, 11)
    assert smiles == "CC=O"
    right = molecule_bonds(z, pos, smiles)
    wrong = molecule_bonds(z, pos, "O=CC")
    assert right.from_smiles and not wrong.from_smiles
    np.testing.assert_array_equal(wrong.index, right.index)  # C0-C1, C1=O2 and the four C-H
    heavy = (z[wrong.index[:, 0]] != 1) & (z[wrong.index[:, 1]] != 1)
    np.testing.assert_array_equal(wrong.order[heavy], 0.0)  # order unknown from coordinates
    np.testing.assert_array_equal(wrong.order[~heavy], 1.0)


def test_fallback_on_atom_count_and_explicit_hydrogens(qm9):
    z, pos, _ = molecule(qm9, 16)  # cyclopropane
    assert not molecule_bonds(z, pos, "CC").from_smiles
    explicit = molecule_bonds(z, pos, "[H]C1([H])CC1")
    assert not explicit.from_smiles
    assert heavy_pairs(explicit, z) == {(0, 1), (1, 2), (0, 2)}


def test_fallback_when_smiles_atom_order_differs_from_xyz(qm9):
    # QM9 molecule 23 (butadiyne, 'C#CC#C'): same element sequence, but the XYZ lists the carbons
    # in another order, so the SMILES bonds join atoms 2.5 Å apart. The coordinates give a chain.
    z, pos, smiles = molecule(qm9, 23)
    bonds = molecule_bonds(z, pos, smiles)
    assert not bonds.from_smiles
    chain = heavy_pairs(bonds, z)
    assert len(chain) == 3
    carbon_degree = np.bincount(np.array(sorted(chain)).ravel(), minlength=4)
    assert sorted(carbon_degree.tolist()) == [1, 1, 2, 2]  # a chain C-C-C-C
    terminal = (carbon_degree == 1).astype(int)
    np.testing.assert_array_equal(hydrogen_partner_count(bonds, z)[:4], terminal)  # H-C#C-C#C-H


def test_bad_smiles_raises_with_the_smiles_in_the_message():
    z = np.array([6, 1, 1, 1, 1], dtype=np.uint8)
    pos = np.zeros((5, 3))
    with pytest.raises(BadMolecule, match=r"C1CC"):
        molecule_bonds(z, pos, "C1CC")


def test_malformed_arrays_raise():
    with pytest.raises(BadMolecule, match="shape"):
        molecule_bonds(np.array([6, 1]), np.zeros((3, 3)), "C")
    with pytest.raises(BadMolecule, match="1..118"):
        molecule_bonds(np.array([6, 0]), np.zeros((2, 3)), "C")


def test_hydrogen_molecule_without_heavy_atoms():
    z = np.array([1, 1], dtype=np.uint8)
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74]])
    for smiles, from_smiles in [("[H][H]", False), ("", True)]:
        bonds = molecule_bonds(z, pos, smiles)
        assert bonds.from_smiles is from_smiles
        np.testing.assert_array_equal(bonds.index, [[0, 1]])
        np.testing.assert_array_equal(bonds.order, [1.0])


def test_geometric_bonds_agree_with_smiles_on_qm9(qm9):
    # Coordinate perception reproduces the SMILES graph for (nearly) every early QM9 molecule.
    agree = total = 0
    for index in qm9.index[:2000]:
        z, pos, smiles = molecule(qm9, index)
        from_smiles = molecule_bonds(z, pos, smiles)
        if not from_smiles.from_smiles:
            continue
        total += 1
        agree += np.array_equal(geometric_bonds(z, pos).index, from_smiles.index)
    assert total >= 1990
    assert agree >= 0.99 * total


def test_nitro_group_keeps_written_orders_next_to_an_aromatic_ring():
    # QM9 molecule 21968, 2-nitropyrrole, written with a pentavalent nitro N: O0=N1(=O2)-C3, ring
    # C3=C4-C5=C6-N7(H)-C3. The pyrrole ring is aromatic; the nitro group keeps its written orders
    # (as in nitro compounds without a ring) instead of RDKit's charge-separated rewrite.
    row = pd.read_csv(QM9_CSV, usecols=["Index", "SMILES", "Elements", "XYZ_Ang"], skiprows=range(1, 21517), nrows=1)
    frame = row.set_index("Index")
    z, pos, smiles = molecule(frame, 21968)
    assert smiles == "O=N(=O)C1=CC=CN1"
    bonds = molecule_bonds(z, pos, smiles)
    assert bonds.from_smiles
    orders = {pair: float(o) for pair, o in zip(map(tuple, bonds.index.tolist()), bonds.order)}
    assert orders[(0, 1)] == orders[(1, 2)] == 2.0 and orders[(1, 3)] == 1.0
    for ring_bond in [(3, 4), (4, 5), (5, 6), (6, 7), (3, 7)]:
        assert orders[ring_bond] == 1.5
