"""``--dataset molecules``: SD files and XYZ folders lifted like QM9, vocabulary, splits, statistics, skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import OPLS_ENERGY, rdkit_ligands
from rdkit import Chem
from rdkit.Chem import AllChem

from empcn import geometry
from empcn.cache import open_cache, verify_cache
from empcn.data.molecules import SourceError
from empcn.lift.molecules import MoleculesLiftConfig, lift_molecules
from empcn.lift.pipeline import LiftError
from empcn.lift.rings import chordless_cycles
from empcn.lift.splits import random_splits
from empcn.statistics import mean_mad

TAG = "r_mmffld_Potential_Energy-OPLS_2005"


def _lift(tmp_path: Path, source: Path, name: str = "mols.h5", **kw) -> Path:
    kw.setdefault("targets", OPLS_ENERGY)
    return lift_molecules(MoleculesLiftConfig(source=source, out=tmp_path / name, progress=False, **kw))


@pytest.fixture(scope="module")
def egfr_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lift(tmp_path_factory.mktemp("egfr"), rdkit_ligands("egfr"), shard_size=128, units="energy=kcal/mol")


def test_sd_file_is_lifted_with_its_bonds_vocabulary_split_and_statistics(egfr_cache: Path) -> None:
    sdf = rdkit_ligands("egfr")
    mols = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False)]
    cache = open_cache(egfr_cache)
    m = cache.manifest
    assert verify_cache(egfr_cache).ok
    assert len(cache) == len(mols) == 365 and m["skipped"] == [] and cache.num_shards == 3
    # the vocabulary is the elements present (RDKit's count), atom counts included
    present: dict[int, int] = {}
    for mol in mols:
        for atom in mol.GetAtoms():
            present[atom.GetAtomicNum()] = present.get(atom.GetAtomicNum(), 0) + 1
    assert m["elements"]["vocabulary"] == sorted(present)
    assert {int(k): v for k, v in m["elements"]["atoms"].items()} == present
    assert 53 in present and 35 in present  # iodine, bromine: beyond QM9's five
    # targets: the SD tag, in the unit given; statistics over the train split
    y = np.array([float(mol.GetProp(TAG)) for mol in mols])
    assert m["targets"]["names"] == ["energy"] and m["targets"]["units"] == {"energy": "kcal/mol"}
    ids = np.array([cache[i]["id"] for i in range(len(cache))])
    assert ids.tolist() == list(range(365))
    stored_y = np.array([cache[i]["y"]["energy"] for i in range(len(cache))])
    np.testing.assert_array_equal(stored_y, y)
    mean, mad = mean_mad(y[cache.splits["train"]])
    assert m["targets"]["train_mean"]["energy"] == pytest.approx(float(mean), rel=1e-12)
    assert m["targets"]["train_mad"]["energy"] == pytest.approx(float(mad), rel=1e-12)
    # the seeded split: disjoint, covering, sized by the fractions
    sp = {k: set(v.tolist()) for k, v in cache.splits.items()}
    assert sp["train"] | sp["valid"] | sp["test"] == set(range(365))
    assert not (sp["train"] & sp["valid"]) and not (sp["train"] & sp["test"]) and not (sp["valid"] & sp["test"])
    assert (len(sp["train"]), len(sp["valid"])) == (round(0.8 * 365), round(0.1 * 365))
    assert m["splits"]["scheme"] == "random" and m["splits"]["seed"] == 0
    # names in the shards, bonds from the file with aromatic orders, every atom a 0-cell
    names = [n for k in range(cache.num_shards) for n in cache.shard(k).attrs["names"]]
    assert names == [mol.GetProp("_Name") for mol in mols]
    for i in (0, 100, 364):
        s, mol = cache[i], mols[i]
        np.testing.assert_array_equal(s["z"], [a.GetAtomicNum() for a in mol.GetAtoms()])
        np.testing.assert_allclose(s["pos"], mol.GetConformer().GetPositions(), atol=1e-5)
        pairs = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds())
        assert [tuple(e) for e in s["edges"].tolist()] == pairs
        aromatic = sum(b.GetIsAromatic() for b in mol.GetBonds())
        assert int((s["edges/order"] == 1.5).sum()) == aromatic > 0
        assert s["sample/bonds_from_file"][0] == 1
        # the same cells and invariants as QM9: chordless cycles, lengths from empcn.geometry
        assert sorted(s["rings"]) == sorted(chordless_cycles(len(s["z"]), s["edges"], 8))
        import torch

        lengths = geometry.edge_lengths(torch.from_numpy(s["pos"]).double(), torch.from_numpy(s["edges"]).long())
        np.testing.assert_allclose(s["edges/length"], lengths.numpy(), rtol=1e-5)


def test_split_is_seeded_and_set_by_fractions(tmp_path: Path) -> None:
    a = random_splits(47, (0.6, 0.2, 0.2), 0)
    assert [len(a[k]) for k in ("train", "valid", "test")] == [28, 9, 10]
    b = random_splits(47, (0.6, 0.2, 0.2), 0)
    c = random_splits(47, (0.6, 0.2, 0.2), 1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["train"], c["train"])
    entry = _lift(tmp_path, rdkit_ligands("cdk2"), fractions=(0.6, 0.2, 0.2), seed=1)
    cache = open_cache(entry)
    assert {k: v.tolist() for k, v in cache.splits.items()} == {k: v.tolist() for k, v in c.items()}
    with pytest.raises(LiftError, match="fractions"):
        MoleculesLiftConfig(source=rdkit_ligands("cdk2"), targets=OPLS_ENERGY, fractions=(0.5, 0.2, 0.2))


def _sd_record(mol: Chem.Mol, name: str, props: dict[str, str]) -> str:
    mol = Chem.Mol(mol)
    for key in list(mol.GetPropNames()):
        mol.ClearProp(key)
    mol.SetProp("_Name", name)
    for key, value in props.items():
        mol.SetProp(key, value)
    return Chem.MolToMolBlock(mol) + "".join(f">  <{k}>\n{v}\n\n" for k, v in props.items()) + "$$$$\n"


def test_bad_records_are_skipped_with_id_and_reason_or_stop_strict(tmp_path: Path) -> None:
    mols = list(Chem.SDMolSupplier(str(rdkit_ligands("cmet")), removeHs=False))
    flat = Chem.Mol(mols[2])
    AllChem.Compute2DCoords(flat)
    text = "".join(
        [
            _sd_record(mols[0], "good-1", {"dg": "-9.1"}),
            _sd_record(mols[1], "no-tag", {"other": "1"}),
            _sd_record(flat, "flat", {"dg": "-8"}),
            _sd_record(mols[3], "word", {"dg": "strong"}),
            _sd_record(mols[4], "good-1", {"dg": "-7.5"}),
            "broken\n  junk\n\n  2  1  0  0  0  0            999 V2000\nnot an atom line\nM  END\n$$$$\n",
            _sd_record(Chem.RemoveHs(mols[5]), "no-hydrogens", {"dg": "-6"}),
            _sd_record(mols[6], "good-2", {"dg": "-8.25"}),
        ]
    )
    sdf = tmp_path / "mixed.sdf"
    sdf.write_text(text)
    entry = _lift(tmp_path, sdf, targets="dg")
    cache = open_cache(entry)
    assert len(cache) == 2 and [cache[i]["y"]["dg"] for i in range(2)] == [-9.1, -8.25]
    reasons = {s["id"]: s["reason"] for s in cache.manifest["skipped"]}
    assert set(reasons) == {"no-tag", "flat", "word", "good-1", "broken", "no-hydrogens"}
    assert "missing" in reasons["no-tag"] and "'dg'" in reasons["no-tag"]
    assert "3-D" in reasons["flat"]
    assert "not a number" in reasons["word"] and "strong" in reasons["word"]
    assert "duplicate id" in reasons["good-1"] and "record 1" in reasons["good-1"]
    assert "RDKit cannot read" in reasons["broken"]
    assert "implicit hydrogens" in reasons["no-hydrogens"]
    with pytest.raises(SourceError, match="no-tag.*missing"):
        _lift(tmp_path, sdf, "strict.h5", targets="dg", strict=True)
    assert not (tmp_path / "strict.h5").exists()


def _xyz_text(mol: Chem.Mol) -> str:
    pos = mol.GetConformer().GetPositions()
    lines = [f"{a.GetSymbol()} {x:.6f} {y:.6f} {z:.6f}" for a, (x, y, z) in zip(mol.GetAtoms(), pos)]
    return f"{mol.GetNumAtoms()}\n{mol.GetProp('_Name')}\n" + "\n".join(lines) + "\n"


def test_xyz_folder_with_a_targets_csv(tmp_path: Path) -> None:
    mols = list(Chem.SDMolSupplier(str(rdkit_ligands("cmet")), removeHs=False))
    folder = tmp_path / "xyz"
    folder.mkdir()
    rows = ["name,dg,note"]
    for k, mol in enumerate(mols[:8]):
        (folder / f"lig{k}.xyz").write_text(_xyz_text(mol))
        rows.append(f"lig{k},{mol.GetProp('r_exp_dg')},x")
    rows[3] = "lig2,,x"  # missing value
    rows[4] = "lig3,n/a,x"  # not a number
    rows.append("lig4,-1.0,x")  # a second row for lig4
    rows.append("ghost,-2.0,x")  # no file
    (folder / "lig7.xyz").write_text("7\nbroken\nC 0 0 0\n")
    (folder / "extra.xyz").write_text(_xyz_text(mols[9]))  # no CSV row
    csv = tmp_path / "props.csv"
    csv.write_text("\n".join(rows) + "\n")
    entry = lift_molecules(
        MoleculesLiftConfig(
            source=folder,
            targets_csv=csv,
            id_column="name",
            targets="dg",
            out=tmp_path / "x.h5",
            progress=False,
        )
    )
    cache = open_cache(entry)
    m = cache.manifest
    kept = [0, 1, 5, 6]
    assert len(cache) == len(kept)
    assert [cache[i]["y"]["dg"] for i in range(len(cache))] == [float(mols[k].GetProp("r_exp_dg")) for k in kept]
    assert [n for k in range(cache.num_shards) for n in cache.shard(k).attrs["names"]] == [f"lig{k}" for k in kept]
    reasons = {s["id"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"lig2", "lig3", "lig4", "lig7", "ghost", "extra"}
    assert "missing" in reasons["lig2"] and "not a number" in reasons["lig3"]
    assert "duplicate id" in reasons["lig4"] and "atom count" in reasons["lig7"]
    assert "no file" in reasons["ghost"] and "no row" in reasons["extra"]
    # bonds perceived from coordinates: recorded per sample and in the manifest
    assert m["cells"]["bonds_perceived_samples"] == len(kept)
    assert all(cache[i]["sample/bonds_from_file"][0] == 0 for i in range(len(cache)))
    assert m["params"]["format"] == "xyz-folder" and m["source"]["kind"] == "xyz-folder"
    # perception finds the file's bond graph for these ligands (heavy bonds at covalent distance)
    for i, k in enumerate(kept):
        pairs = sorted(tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mols[k].GetBonds())
        assert [tuple(e) for e in cache[i]["edges"].tolist()] == pairs
    # every column but the id is a target by default; a missing column is one line
    with pytest.raises(SourceError, match="no target column 'logS'"):
        lift_molecules(
            MoleculesLiftConfig(
                source=folder, targets_csv=csv, id_column="name", targets="logS", out=tmp_path / "y.h5", progress=False
            )
        )


def test_element_vocabulary_option_skips_other_elements(tmp_path: Path) -> None:
    entry = _lift(tmp_path, rdkit_ligands("egfr"), elements=(1, 6, 7, 8, 9, 16, 17, 35))
    m = open_cache(entry).manifest
    assert m["elements"]["vocabulary"] == [1, 6, 7, 8, 9, 16, 17, 35]
    iodine = [s for s in m["skipped"] if "I (Z=53)" in s["reason"]]
    assert len(iodine) == len(m["skipped"]) > 0 and m["counts"]["samples"] == 365 - len(iodine)
    assert "53" not in m["elements"]["atoms"]


def test_manifest_keys_are_json_and_no_absolute_paths(egfr_cache: Path) -> None:
    text = json.dumps(open_cache(egfr_cache).manifest)
    assert str(rdkit_ligands("egfr").parent) not in text and str(egfr_cache.parent) not in text


def test_bytes_do_not_depend_on_workers_and_ids_may_come_from_a_tag(tmp_path: Path) -> None:
    one = _lift(tmp_path / "one", rdkit_ligands("cdk2"), shard_size=16, workers=1, id_column="id")
    two = _lift(tmp_path / "two", rdkit_ligands("cdk2"), shard_size=16, workers=2, id_column="id")
    files = [Path("mols.h5")] + [Path("mols.shards") / f"shard-{k:05d}.h5" for k in range(3)]
    for rel in files:
        assert (one.parent / rel).read_bytes() == (two.parent / rel).read_bytes(), rel
    cache = open_cache(one)
    tags = [m.GetProp("id") for m in Chem.SDMolSupplier(str(rdkit_ligands("cdk2")), removeHs=False)]
    assert [n for k in range(cache.num_shards) for n in cache.shard(k).attrs["names"]] == tags
    assert cache.manifest["params"]["id_column"] == "id"
