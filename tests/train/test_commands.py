"""``empcn train | evaluate | predict`` through the CLI, and the rule that training never imports the lift."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import error_line, invoke, qm9pack_csv

from empcn.cache import open_cache
from empcn.train.collate import collate
from empcn.train.evaluate import load_trained

QM9_CSV = qm9pack_csv()
TINY = ["--hidden", "16", "--layers", "2", "--epochs", "1", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def run(qm9_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A decoupled EMPCN trained one epoch on U0 through `empcn train`."""
    out = tmp_path_factory.mktemp("cli") / "u0-decoupled"
    result = invoke("train", "--cache", qm9_cache, "--target", "U0", "--model", "decoupled", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "test MAE" in result.stdout and "meV" in result.stdout
    return out


# ----------------------------------------------------------------------------------------------
# the train stage stays free of the lift stage


def test_training_imports_neither_rdkit_nor_networkx(qm9_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = f"""
import sys
import empcn.train.loop, empcn.train.commands, empcn.train.dataset, empcn.train.evaluate, empcn.cli
lifted = lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("rdkit", "networkx", "empcn.lift"))
assert not lifted(), lifted()
assert not any(m.startswith("empcn.lift") for m in sys.modules)
from typer.testing import CliRunner
from empcn.cli import app
r = CliRunner().invoke(app, ["train", "--cache", {str(qm9_cache)!r}, "--target", "gap", "--model", "decoupled",
                             "--out", {str(out)!r}, "--limit-batches", "2", {", ".join(map(repr, TINY))}])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(app, ["evaluate", {str(out)!r}])
assert r.exit_code == 0, r.output
assert not lifted(), lifted()
assert not any(m.startswith("empcn.lift") for m in sys.modules), [m for m in sys.modules if "lift" in m]
print("clean")
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# train / evaluate


def test_evaluate_reports_the_runs_test_mae_with_its_unit(run: Path) -> None:
    saved = json.loads((run / "result.json").read_text())
    result = invoke("evaluate", run, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["split"] == "test" and got["unit"] == saved["unit"] == "meV" and got["target"] == "U0"
    assert got["mae"] == pytest.approx(saved["test_mae"], rel=1e-12)
    line = invoke("evaluate", run, "--split", "valid")
    assert line.exit_code == 0 and line.stdout.startswith("valid MAE ") and " meV " in line.stdout


def test_resume_of_a_finished_run_only_retests(run: Path) -> None:
    result = invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stdout and "epoch 1/1" not in result.stdout


def test_command_line_mistakes_are_one_line_errors(run: Path, qm9_cache: Path, tmp_path: Path) -> None:
    r = invoke("train", "--target", "U0")
    assert r.exit_code == 2 and "--cache and --target are required" in error_line(r)
    r = invoke("train", "--cache", qm9_cache, "--target", "U0", "--model", "decoupled", "--out", run, *TINY)
    assert r.exit_code == 2 and "already holds a run" in error_line(r)
    r = invoke("train", "--resume", run, "--lr", "0.1")
    assert r.exit_code == 2 and "--lr 0.1 differs" in error_line(r)
    r = invoke("train", "--cache", tmp_path / "missing.h5", "--target", "U0", "--out", tmp_path / "r")
    assert r.exit_code == 2 and str(tmp_path / "missing.h5") in error_line(r)
    r = invoke("train", "--cache", qm9_cache, "--target", "U0", "--out", tmp_path / "r", "--dropout", "1.5")
    assert r.exit_code == 2 and "--dropout" in error_line(r)
    r = invoke("evaluate", tmp_path / "nowhere")
    assert r.exit_code == 2 and "no such run folder" in error_line(r)


def test_a_diverging_run_exits_1_with_one_line(qm9_cache: Path, tmp_path: Path) -> None:
    r = invoke(
        "train",
        "--cache",
        qm9_cache,
        "--target",
        "U0",
        "--model",
        "egnn",
        "--out",
        tmp_path / "r",
        "--lr",
        "1e30",
        "--clip",
        "0",
        "--epochs",
        "3",
        "--hidden",
        "16",
        "--layers",
        "2",
        "--no-progress",
    )
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert "training diverged: non-finite" in line and "(try a lower --lr" in line


# ----------------------------------------------------------------------------------------------
# predict


def _csv_row(mol_id: int) -> pd.Series:
    df = pd.read_csv(QM9_CSV, nrows=mol_id + 5)
    return df[df["Index"] == mol_id].iloc[0]


def raw_qm9_text(row: pd.Series) -> str:
    """The official raw QM9 .xyz layout for a qm9pack row (Mathematica-style exponent on one coordinate)."""
    elements = ast.literal_eval(row["Elements"])
    xyz = ast.literal_eval(row["XYZ_Ang"])
    charges = ast.literal_eval(row["Mulliken_pop"])
    props = [
        row[c]
        for c in (
            "RotA_GHz",
            "RotB_GHz",
            "RotC_GHz",
            "Dipole_debye",
            "Polarizability_bohr3",
            "HOMO_au",
            "LUMO_au",
            "HOMO_LUMO_gap_au",
            "R2_bohr2",
            "ZPVE_au",
            "InternalEnergy_0K_au",
            "InternalEnergy_298K_au",
            "Enthalphy_298K_au",
            "GibbsFreeEnergy_298K_au",
            "Heatcapacity_Cv_cal_mol_K",
        )
    ]
    lines = [str(len(elements)), "gdb " + str(int(row["Index"])) + "\t" + "\t".join(f"{p:.6f}" for p in props)]
    for k, (el, (x, y, z), q) in enumerate(zip(elements, xyz, charges)):
        xs = f"{x * 1e6:.10f}*^-6" if k == 0 else f"{x:.10f}"
        lines.append(f"{el}\t{xs}\t{y:.10f}\t{z:.10f}\t{q:.6f}")
    lines += [
        "\t".join(str(f) for f in ast.literal_eval(row["Harmonic_Freq_cmi"])),
        f"{row['SMILES']}\t{row['SMILES']}",
        f"{row['InChi']}\t{row['InChi']}",
    ]
    return "\n".join(lines) + "\n"


def plain_xyz_text(row: pd.Series) -> str:
    elements = ast.literal_eval(row["Elements"])
    xyz = ast.literal_eval(row["XYZ_Ang"])
    body = [f"{el} {x:.10f} {y:.10f} {z:.10f}" for el, (x, y, z) in zip(elements, xyz)]
    return "\n".join([str(len(elements)), "a comment line", *body]) + "\n"


@pytest.fixture(scope="module")
def ring_molecule(qm9_cache: Path) -> tuple[int, object]:
    """(cache index, sample) of the cached molecule with the most rings whose bonds came from its SMILES."""
    cache = open_cache(qm9_cache)
    best = max(
        (i for i in range(len(cache)) if cache[i]["sample/bonds_from_smiles"][0]),
        key=lambda i: (len(cache[i]["rings"]), -i),
    )
    assert cache[best]["rings"]
    return best, cache[best]


def test_predict_lifts_files_as_the_cache_did(run: Path, ring_molecule, tmp_path: Path) -> None:
    index, sample = ring_molecule
    row = _csv_row(sample["id"])
    raw = tmp_path / f"dsgdb9nsd_{sample['id']:06d}.xyz"
    raw.write_text(raw_qm9_text(row))
    plain = tmp_path / "plain.xyz"
    plain.write_text(plain_xyz_text(row))

    trained = load_trained(run, device="cpu")
    task = trained.task

    with torch.no_grad():
        batch = collate([sample], trained.input_spec).to("cpu", trained.dtype)
        expected = float(trained.model(batch).double()[0]) * task.mad + task.mean
    # U0's atom reference: Σ over the molecule's atoms of its element's coefficient
    per_element = dict(zip(task.reference_species, task.reference))
    assert per_element, "U0 is trained with an atom reference by default"
    expected += sum(per_element[int(z)] for z in sample["z"])

    result = invoke("predict", run, raw, plain, "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, (raw, plain)):
        name, value, unit = line.split()
        assert name == str(path) and unit == "meV"
        # the same complex as the cache's (positions rounded to float32 by the lift, as stored)
        assert float(value) == pytest.approx(expected, rel=1e-5)
    listed = json.loads(invoke("predict", run, raw, "--json", "--device", "cpu").stdout)
    assert listed == [
        {
            "file": str(raw),
            "target": "U0",
            "unit": "meV",
            "value": pytest.approx(expected, rel=1e-6),
            "outside": [],
            "checked": True,
        }
    ]


def test_predict_names_a_bad_file(run: Path, tmp_path: Path) -> None:
    good = tmp_path / "water.xyz"
    good.write_text("3\nwater\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("three\nnot a molecule\n")
    r = invoke("predict", run, good, garbage)
    assert r.exit_code == 2 and str(garbage) in error_line(r) and "atom count" in error_line(r)
    # the good file is still predicted, the bad one reported on its own line
    assert r.stdout.split()[0] == str(good) and np.isfinite(float(r.stdout.split()[1]))
    listed = json.loads(invoke("predict", run, garbage, good, tmp_path / "absent.xyz", "--json").stdout)
    assert [sorted(entry) for entry in listed] == [
        ["error", "file"],
        ["checked", "file", "outside", "target", "unit", "value"],
        ["error", "file"],
    ]
    assert "atom count" in listed[0]["error"] and "absent.xyz" in listed[2]["error"]
    short = tmp_path / "short.xyz"
    short.write_text("4\ncomment\nC 0 0 0\nH 1 0 0\n")
    r = invoke("predict", run, short)
    assert r.exit_code == 2 and str(short) in error_line(r)
    chlorine = tmp_path / "hcl.xyz"
    chlorine.write_text("2\nHCl\nH 0 0 0\nCl 0 0 1.27\n")
    r = invoke("predict", run, chlorine)
    assert r.exit_code == 2 and str(chlorine) in error_line(r) and "17" in error_line(r)
    r = invoke("predict", run, tmp_path / "absent.xyz")
    assert r.exit_code == 2 and "absent.xyz" in error_line(r)
    ok = invoke("predict", run, good)
    assert ok.exit_code == 0 and ok.stdout.split()[0] == str(good) and np.isfinite(float(ok.stdout.split()[1]))


def test_an_unwritable_run_folder_is_one_line_before_any_work(qm9_cache: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = invoke("train", "--cache", qm9_cache, "--target", "U0", "--out", blocker / "run", *TINY)
    assert r.exit_code == 2 and str(blocker) in error_line(r) and "a file" in error_line(r)
    assert blocker.read_text() == "not a folder"


def test_a_damaged_shard_stops_evaluate_and_train_with_one_line(run: Path, qm9_cache: Path, tmp_path: Path) -> None:
    import shutil

    from empcn.cache import open_cache

    copy = tmp_path / "damaged"
    shutil.copytree(qm9_cache.parent, copy)
    entry = copy / qm9_cache.name
    cache = open_cache(entry)
    test_shard = int(cache.splits["test"][0]) // (cache.shard_range(0)[1] - cache.shard_range(0)[0])
    shard = copy / cache.manifest["shards"][test_shard]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # array bytes: a readable file with wrong values
    shard.write_bytes(bytes(data))
    r = invoke("evaluate", run, "--cache", entry, "--device", "cpu")
    assert r.exit_code == 2 and str(shard) in error_line(r) and "sha256" in error_line(r)
    r = invoke("train", "--cache", entry, "--target", "U0", "--out", tmp_path / "r", "--no-verify", *TINY)
    assert r.exit_code == 2 and str(shard) in error_line(r)
