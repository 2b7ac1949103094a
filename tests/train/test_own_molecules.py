"""Own molecules end to end through the CLI: lift an SD file, train, evaluate, predict; unseen elements refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import OPLS_ENERGY, error_line, invoke, rdkit_ligands

from empcn.cache import open_cache
from empcn.train.evaluate import load_trained

TINY = ["--hidden", "16", "--layers", "2", "--epochs", "1", "--batch-size", "16", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def cdk2_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cache, run): cdk2.sdf (47 ligands, no iodine) lifted and a decoupled EMPCN trained on its energy."""
    tmp = tmp_path_factory.mktemp("own")
    cache = tmp / "cdk2.h5"
    r = invoke(
        "lift",
        "--dataset",
        "molecules",
        "--source",
        rdkit_ligands("cdk2"),
        "--targets",
        OPLS_ENERGY,
        "--units",
        "energy=kcal/mol",
        "--fractions",
        "0.6,0.2,0.2",
        "--out",
        cache,
        "--workers",
        "1",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "wrote" in r.stdout and "47 samples" in r.stdout
    run = tmp / "run"
    r = invoke("train", "--cache", cache, "--target", "energy", "--model", "decoupled", "--out", run, *TINY)
    assert r.exit_code == 0, r.output
    assert "test MAE" in r.stdout and "kcal/mol" in r.stdout
    return cache, run


def test_the_model_reads_the_caches_vocabulary(cdk2_run: tuple[Path, Path]) -> None:
    cache, run = cdk2_run
    vocabulary = open_cache(cache).manifest["elements"]["vocabulary"]
    assert vocabulary == [1, 6, 7, 8, 9, 16, 17, 35]
    trained = load_trained(run, device="cpu")
    assert list(trained.meta.species) == vocabulary and trained.meta.dataset == "molecules"
    assert trained.spec.node_features == len(vocabulary) * (trained.spec.charge_power + 1)


def test_evaluate_and_predict_an_sd_file(cdk2_run: tuple[Path, Path], tmp_path: Path) -> None:
    cache, run = cdk2_run
    r = invoke("evaluate", run, "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert (
        result["unit"] == "kcal/mol"
        and result["samples"] == len(open_cache(cache).splits["test"])
        and np.isfinite(result["mae"])
    )
    # predict on the training file: one line per record, labelled file:id, the model's value for the cached sample
    r = invoke("predict", run, rdkit_ligands("cdk2"), "--json", "--device", "cpu")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    c = open_cache(cache)
    names = [n for k in range(c.num_shards) for n in c.shard(k).attrs["names"]]
    assert [entry["file"] for entry in listed] == [f"{rdkit_ligands('cdk2')}:{n}" for n in names]
    trained = load_trained(run, device="cpu")
    import torch

    from empcn.train.collate import collate

    with torch.no_grad():
        batch = collate([c[i] for i in range(3)], trained.input_spec)
        expected = trained.model(batch.to("cpu", trained.dtype)).double() * trained.task.mad + trained.task.mean
    assert [entry["value"] for entry in listed[:3]] == pytest.approx(expected.tolist(), rel=1e-5)
    # a one-record SD file and an XYZ file (bonds perceived) are predicted too
    one = tmp_path / "one.sdf"
    one.write_text(rdkit_ligands("cdk2").read_text().split("$$$$\n")[0] + "$$$$\n")
    r = invoke("predict", run, one, "--device", "cpu")
    assert r.exit_code == 0, r.output
    name, value, unit = r.stdout.split()
    assert name == str(one) and unit == "kcal/mol" and float(value) == pytest.approx(listed[0]["value"], rel=1e-5)
    from rdkit import Chem

    mol = next(iter(Chem.SDMolSupplier(str(one), removeHs=False)))
    xyz = tmp_path / "first.xyz"
    body = [
        f"{a.GetSymbol()} {x:.6f} {y:.6f} {z:.6f}"
        for a, (x, y, z) in zip(mol.GetAtoms(), mol.GetConformer().GetPositions())
    ]
    xyz.write_text(f"{mol.GetNumAtoms()}\nfirst\n" + "\n".join(body) + "\n")
    r = invoke("predict", run, xyz, "--device", "cpu")
    assert r.exit_code == 0, r.output
    name, value, unit = r.stdout.split()
    assert name == str(xyz) and unit == "kcal/mol" and np.isfinite(float(value))


def test_an_unseen_element_is_refused_in_predict_and_evaluate(cdk2_run: tuple[Path, Path], tmp_path: Path) -> None:
    cache, run = cdk2_run
    egfr = rdkit_ligands("egfr")
    # predict: each iodine ligand of egfr.sdf is one line naming the element and the file:record
    r = invoke("predict", run, egfr, "--json", "--device", "cpu")
    assert r.exit_code == 2
    listed = json.loads(r.stdout)
    refused = [e for e in listed if "error" in e]
    assert len(refused) == 5 and all("I (Z=53)" in e["error"] and str(egfr) in e["error"] for e in refused)
    assert len(listed) == 365 and all(np.isfinite(e["value"]) for e in listed if "error" not in e)
    iodo = tmp_path / "iodo.xyz"
    iodo.write_text("5\niodomethane\nC 0 0 0\nI 0 0 2.14\nH 1.03 0 -0.36\nH -0.51 0.89 -0.36\nH -0.51 -0.89 -0.36\n")
    r = invoke("predict", run, iodo, "--device", "cpu")
    assert r.exit_code == 2 and str(iodo) in error_line(r) and "I (Z=53)" in error_line(r)
    # evaluate on a cache holding iodine: one line naming the element and the cache file
    other = tmp_path / "egfr.h5"
    lifted = invoke(
        "lift",
        "--dataset",
        "molecules",
        "--source",
        egfr,
        "--targets",
        OPLS_ENERGY,
        "--out",
        other,
        "--workers",
        "1",
        "--no-progress",
    )
    assert lifted.exit_code == 0, lifted.output
    r = invoke("evaluate", run, "--cache", other, "--device", "cpu")
    assert r.exit_code != 0
    line = error_line(r)
    assert str(other) in line and "I (Z=53)" in line


def test_molecules_lift_mistakes_are_one_line(tmp_path: Path) -> None:
    r = invoke("lift", "--dataset", "molecules", "--out", tmp_path / "a.h5")
    assert r.exit_code == 2 and "--source" in error_line(r)
    r = invoke("lift", "--dataset", "molecules", "--source", rdkit_ligands("cdk2"), "--out", tmp_path / "a.h5")
    assert r.exit_code == 2 and "--targets" in error_line(r)
    r = invoke(
        "lift",
        "--dataset",
        "molecules",
        "--source",
        rdkit_ligands("cdk2"),
        "--targets",
        "energy=nope",
        "--out",
        tmp_path / "a.h5",
        "--strict",
        "--no-progress",
    )
    assert r.exit_code == 2 and "ZINC" in error_line(r) and "nope" in error_line(r)
    r = invoke(
        "lift",
        "--dataset",
        "molecules",
        "--source",
        rdkit_ligands("cdk2"),
        "--targets",
        OPLS_ENERGY,
        "--elements",
        "H,C,Xx",
        "--out",
        tmp_path / "a.h5",
    )
    assert r.exit_code == 2 and "Xx" in error_line(r)
    r = invoke("lift", "--dataset", "molecules", "--source", tmp_path, "--out", tmp_path / "a.h5")
    assert r.exit_code == 2 and "--targets-csv" in error_line(r)
    r = invoke("lift", "--dataset", "qm9", "--targets", "U0", "--out", tmp_path / "a.h5")
    assert r.exit_code == 2 and "--targets" in error_line(r) and "molecules" in error_line(r)
    assert not (tmp_path / "a.h5").exists()
