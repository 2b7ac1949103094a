"""Functional-group 2-cells: --cells parsing, RDKit SMARTS matches on real QM9 molecules, cell checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import qm9pack_csv
from rdkit import Chem

from empcn.lift.groups import BUILTIN_GROUPS, CellsError, CellSpec, boundary_pairs, check_cells, group_cells

ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


@pytest.fixture(scope="module")
def qm9() -> pd.DataFrame:
    return pd.read_csv(qm9pack_csv(), usecols=["Index", "SMILES", "Elements"], nrows=3000)


def heavy_index(row) -> np.ndarray:
    z = np.array([ATOMIC_NUMBER[s] for s in row.Elements.strip("[]").replace("'", "").split(",")])
    return np.flatnonzero(z != 1)


def test_parse():
    assert CellSpec.parse("rings") == CellSpec() and CellSpec().is_default and CellSpec().kinds == ("ring",)
    both = CellSpec.parse("rings,groups")
    assert both.kinds == ("ring", *BUILTIN_GROUPS) and not both.is_default
    user = CellSpec.parse(["rings", "smarts:acid_f=C(=O)[F,Cl]"])
    assert user.groups == (("acid_f", "C(=O)[F,Cl]"),)
    assert CellSpec.parse(user.to_params()) == user


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("smarts:bad=C(", "'bad': RDKit cannot parse"),
        ("smarts:pair=C=O", "'pair'.*2 atoms"),
        ("smarts:ring=CCC", "identifier other than"),
        ("rings,smarts", "unknown 'smarts'"),
        ("smarts:noeq", "not smarts:NAME=PATTERN"),
        (["smarts:a=CCC", "smarts:a=CCO"], "'a' is named twice"),
    ],
)
def test_parse_errors(value, message):
    with pytest.raises(CellsError, match=message):
        CellSpec.parse(value)


def test_qm9_groups_match_rdkit(qm9):
    """Every built-in group cell on 3,000 QM9 molecules is an RDKit match of its pattern, in XYZ indices;
    every carboxylic acid or carboxylate found by an independent pattern gets its cell."""
    spec = CellSpec.parse("rings,groups")
    acid = Chem.MolFromSmarts("C(=O)[OH,O-]")
    acids = 0
    found: set[str] = set()
    for row in qm9.itertuples():
        mol = Chem.MolFromSmiles(row.SMILES)
        heavy = heavy_index(row)
        cells = group_cells(mol, heavy, spec)
        assert len({frozenset(c) for c, _ in cells}) == len(cells)
        for boundary, kind in cells:
            match = tuple(int(np.flatnonzero(heavy == v)[0]) for v in boundary)
            assert match in mol.GetSubstructMatches(Chem.MolFromSmarts(BUILTIN_GROUPS[kind]))
        found |= {k for _, k in cells}
        for m in mol.GetSubstructMatches(acid):
            acids += 1
            want = {int(heavy[a]) for a in m}
            assert any(set(c) == want and k == "carboxyl" for c, k in cells), row.Index
    assert acids >= 3
    assert {"carboxyl", "ester", "amide", "ether", "ketone", "aldehyde", "nitrile"} <= found


def test_groups_on_hand_molecules():
    spec = CellSpec.parse("groups")
    # methyl acetate CC(=O)OC: one ester cell, boundary in pattern order (C, C, O, O, C)
    assert group_cells("CC(=O)OC", np.arange(5), spec) == [((0, 1, 2, 3, 4), "ester")]
    # acetonitrile with interleaved hydrogens: heavy atoms at XYZ slots 0, 4, 5
    assert group_cells("CC#N", np.array([0, 4, 5]), spec) == [((0, 4, 5), "nitrile")]
    # acetic acid: a carboxyl, not an ester or ketone
    assert [k for _, k in group_cells("CC(=O)O", np.arange(4), spec)] == ["carboxyl"]


def test_check_cells_and_boundary_pairs():
    assert check_cells(5, [[0, 1, 2], (2, 3, 4)]) == [(0, 1, 2), (2, 3, 4)]
    for cells, message in [
        ([[0, 1]], r"cell 0 \[0, 1\]: a 2-cell needs >= 3"),
        ([[0, 1, 7]], "vertex 7 outside 0..4"),
        ([[0, 1, 1]], "a vertex repeats"),
        ([[0, 1, 2], [2, 0, 1]], r"cell 1 \[2, 0, 1\]: the same vertices as cell 0"),
        ([[0, 1.5, 2]], "must be integers"),
    ]:
        with pytest.raises(CellsError, match=message):
            check_cells(5, cells, "sample 3")
    assert boundary_pairs([(0, 1, 2), (2, 1, 3)]) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]


def test_molecule_cells_with_groups_on_qm9(qm9):
    """QM9 molecule 271, [NH3+]CCC([O-])=O: the carboxyl cell is a 2-cell of its kind; its O–O boundary
    pair is an added edge of kind 1; the shard of rings+groups cells assembles."""
    import pandas as pd

    from empcn.lift.assemble import complex_shard
    from empcn.lift.molecule import CellOptions, MoleculeInput, molecule_cells

    rows = pd.read_csv(qm9pack_csv(), usecols=["Index", "SMILES", "Elements", "XYZ_Ang"], nrows=300)
    row = next(rows[rows.Index == 271].itertuples())
    z = np.array([ATOMIC_NUMBER[s] for s in row.Elements.strip("[]").replace("'", "").split(",")])
    pos = np.array(row.XYZ_Ang.replace("[", "").replace("]", "").split(","), dtype=float).reshape(-1, 3)
    mol = MoleculeInput(271, z, pos, smiles=row.SMILES)
    plain, _ = molecule_cells(mol, CellOptions())
    spec = CellSpec.parse("rings,groups")
    cells, source = molecule_cells(mol, CellOptions(cells=spec))
    assert source == "smiles" and "kind" not in plain.edge_arrays and not plain.ring_arrays
    heavy = heavy_index(row)
    match = Chem.MolFromSmiles(row.SMILES).GetSubstructMatch(Chem.MolFromSmarts("C(=O)[O-]"))
    want = {int(heavy[a]) for a in match}
    kinds = [spec.kinds[k] for k in cells.ring_arrays["kind"]]
    assert [set(r) for r, k in zip(cells.rings, kinds) if k == "carboxyl"] == [want]
    bonds = {tuple(e) for e in plain.edge_index.tolist()}
    added = [tuple(e) for e, k in zip(cells.edge_index.tolist(), cells.edge_arrays["kind"]) if k == 1]
    assert added and not set(added) & bonds and bonds <= {tuple(e) for e in cells.edge_index.tolist()}
    assert all(z[a] == 8 and z[b] == 8 for a, b in added)  # the carboxyl's two oxygens
    shard = complex_shard([cells, cells], {"index": np.array([271, 271])})
    assert shard.groups["rings"].arrays["kind"].tolist() == 2 * cells.ring_arrays["kind"].tolist()


def test_lift_qm9_cells_cli(tmp_path):
    """`empcn lift --cells`: a bad SMARTS is a one-line error naming the group; rings,groups records the
    spec and the kinds in the manifest, and the default lift records neither."""
    import subprocess
    import sys

    from empcn.cache import open_cache

    def lift(*args: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "empcn",
            "lift",
            "--dataset",
            "qm9",
            "--limit",
            "40",
            "--workers",
            "1",
            "--no-progress",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)

    bad = lift("--cells", "smarts:acyl=C(=O", "--out", "bad.h5")
    assert bad.returncode != 0 and "'acyl': RDKit cannot parse" in bad.stderr
    assert lift("--cells", "rings,groups", "--cells", "smarts:cn=[#6]~[#7]~[#6]", "--out", "g.h5").returncode == 0
    assert lift("--out", "r.h5").returncode == 0
    mg, mr = open_cache(tmp_path / "g.h5").manifest, open_cache(tmp_path / "r.h5").manifest
    assert mg["params"]["cells"] == ["rings,groups", "smarts:cn=[#6]~[#7]~[#6]"]
    assert mg["cells"]["kinds"] == ["ring", *BUILTIN_GROUPS, "cn"]
    assert "cells" not in mr["params"] and "kinds" not in mr["cells"]


def test_cells_files(tmp_path):
    import json

    from empcn.lift.groups import packaged_cells, read_cells_file
    from empcn.lift.mocap import CMU_JOINTS, PAPER_CELLS

    shipped = json.loads((Path(__file__).parents[2] / "empcn" / "data" / "mocap_paper_cells.json").read_text())
    assert packaged_cells("mocap_paper_cells.json").cells == PAPER_CELLS == tuple(map(tuple, shipped["cells"]))
    assert shipped["names"] == [[CMU_JOINTS[v] for v in c] for c in PAPER_CELLS] and len(PAPER_CELLS) == 9
    per = tmp_path / "per.json"
    per.write_text(json.dumps({"per_sample": {"7": [[0, 1, 2]], "9": [[3, 2, 1, 0]]}}))
    cells = read_cells_file(per)
    assert cells.for_sample(9, 5) == [(3, 2, 1, 0)] and cells.for_sample(8, 5) == []
    with pytest.raises(CellsError, match=r"sample 7: cell 0 \[0, 1, 2\]: vertex 2 outside 0..1"):
        cells.for_sample(7, 2)
    for doc, message in [
        ({"cells": [[0, 1]]}, r"cells: cell 0 \[0, 1\]: a 2-cell needs >= 3"),
        ({"cells": [[0, 1, 2], [1, 2, 0]]}, "the same vertices as cell 0"),
        ({"cells": [[0, "a", 2]]}, "a cell is a list of node indices"),
        ({"cells": [], "per_sample": {}}, "either 'cells' or 'per_sample'"),
        ({"cell": []}, "either 'cells' or 'per_sample'"),
        ({"cells": [], "extra": 1}, "unknown keys extra"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        with pytest.raises(CellsError, match=message):
            read_cells_file(bad)
