"""Plug-ins: a data set and a model from another package, installed with pip into a temporary folder, lift,
train, evaluate and predict through the command line exactly like built-in ones; without the package, its
runs and caches say in one line which package to install; a broken plug-in is one line naming its package.

The plug-in is the real package ``tests/plugins/empcn-pointclouds`` (pyproject, a data set module and a
model module), following docs/architecture.md's recipe "Adding a plug-in"; every command runs in a fresh
process whose ``PYTHONPATH`` holds the folder pip installed it into (or, for "not installed", does not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import pip_install_copy

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugins" / "empcn-pointclouds"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in installed by pip into a folder of its own (built from a copy: pip builds in the source tree),
    offline and without build isolation: with the setuptools of the test environment (the ``test`` extra)."""
    target = pip_install_copy(PLUGIN, tmp_path_factory.mktemp("plugin"))
    assert (target / "empcn_pointclouds-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def run(path: Path, *args: object, python: str | None = None) -> subprocess.CompletedProcess:
    """``python -m empcn ARGS`` (or ``python -c CODE``) with ``path`` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO)]), "OMP_NUM_THREADS": "1"}
    command = ["-c", python] if python is not None else ["-m", "empcn", *map(str, args)]
    return subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=600)


def one_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_a_plug_in_data_set_lifts_like_a_built_in_one(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "clouds.h5"
    lift = ["lift", "--dataset", "pointclouds", "--samples", "40", "--no-progress"]
    done = run(site, *lift, "--shard-size", "16", "--workers", "2", "--out", out)
    assert done.returncode == 0 and f"wrote {out}: 40 samples in 3 shards" in done.stdout, done.stderr
    verified = run(site, "cache", "verify", out)
    assert verified.returncode == 0 and "ok:" in verified.stdout, verified.stderr

    # the rest in one process (the same command line, in-process): listing, help, resume, misuse,
    # --cache-dir, what the cache holds, and predict's hook lifting a cloud file as the cache was lifted
    check = f"""
import json, numpy as np
from pathlib import Path
from typer.testing import CliRunner
from empcn import open_cache
from empcn.cli import app
from empcn.lift.datasets import dataset
def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])
listed = cli("datasets")
assert listed.exit_code == 0, listed.output
assert "pointclouds  (plug-in empcn-pointclouds 0.1.0, empcn_pointclouds.dataset:SPEC; task scalar" in listed.output
assert "qm9  (built-in" in listed.output and "--min-points INT" in listed.output
shown = " ".join(cli("lift", "--dataset", "pointclouds", "--help").output.split())
for text in ("Options of --dataset pointclouds:", "--samples INT", "[default: 200]", "[default: 5 points]",
             "--cache-dir DIR", "[default: data/pointclouds.h5]", "[default: 64 samples]", "--resume"):
    assert text in shown, text
assert "--strict" not in shown and "--limit" not in shown
out, tmp = Path({str(out)!r}), Path({str(tmp_path)!r})
lift = {lift!r}
shards = sorted(out.with_name("clouds.shards").glob("shard-*.h5"))
stamps = [p.stat().st_mtime_ns for p in shards]
again = cli(*lift, "--shard-size", "16", "--workers", "1", "--out", out, "--resume")
assert again.exit_code == 0 and [p.stat().st_mtime_ns for p in shards] == stamps, again.output  # all reused
refused = cli(*lift, "--limit", "3", "--out", tmp / "x.h5")
assert refused.exit_code == 2 and refused.output.startswith(
    "error: --limit is not an option of --dataset pointclouds") and len(refused.output.splitlines()) == 1, refused.output
first, second = cli(*lift, "--cache-dir", tmp / "team"), cli(*lift, "--cache-dir", tmp / "team")
assert first.exit_code == 0 and "wrote" in first.output, first.output
assert second.exit_code == 0 and "reusing" in second.output and "wrote" not in second.output, second.output

cache = open_cache(out)
m = cache.manifest
assert m["dataset"] == "pointclouds" and "task" not in m and m["targets"]["names"] == ["rg"], m
assert m["plugin"] == {{"distribution": "empcn-pointclouds", "version": "0.1.0",
                       "entry_point": "empcn_pointclouds.dataset:SPEC"}}, m["plugin"]
assert sum(m["splits"]["counts"].values()) == 40 and m["fields"]["sample/y"].startswith("(S, 1)")
for i in range(len(cache)):
    s = cache[i]
    pos = s["pos"].astype(np.float64)
    assert [tuple(r) for r in s["rings"]] == [(0, 1, 2, 3)] and 5 <= len(pos) <= 12
    assert abs(s["sample/y"][0, 0] - np.sqrt(((pos - pos.mean(0)) ** 2).sum(1).mean())) < 1e-5
hook = dataset("pointclouds").predict
s = cache[7]
np.save(tmp / "c7.npy", s["pos"])
(tmp / "c7.json").write_text(json.dumps({{"points": s["pos"].tolist()}}))
(tmp / "bad.json").write_text(json.dumps({{"points": [[0, 0, 0]]}}))
for name in ("c7.npy", "c7.json"):
    (label, item), = hook.read(tmp / name)
    new = hook.lift(item, m["params"], label)
    for key in ("edges/index", "rings/area", "rings/perimeter", "nbr/0_2/index", "nbr/1_1_lower/dist", "nodes/pos"):
        assert np.array_equal(new[key], s[key]), key
(label, item), = hook.read(tmp / "bad.json")
assert isinstance(item, Exception) and "bad.json" in str(item) and "N >= 4" in str(item), item
print("ok")
"""
    checked = run(site, python=check)
    assert checked.returncode == 0 and checked.stdout.strip().endswith("ok"), (
        checked.stdout[-2000:] + checked.stderr[-3000:]
    )


def test_a_plug_in_model_trains_evaluates_and_predicts_on_the_plug_in_data_set(site: Path, tmp_path: Path) -> None:
    """The whole path through the CLI: lift the plug-in's clouds, train its model (and a built-in one) on
    them, evaluate and predict; then, without the package, every step names it in one line."""
    cache = tmp_path / "clouds.h5"
    done = run(site, "lift", "--dataset", "pointclouds", "--samples", "40", "--no-progress", "--out", cache)
    assert done.returncode == 0, done.stderr
    listed = run(site, "models")
    assert listed.returncode == 0 and "plug-in empcn-pointclouds 0.1.0" in listed.stdout, listed.stdout + listed.stderr
    assert "ringnet" in " ".join(run(site, "train", "--help").stdout.split())

    quick = [
        "--target",
        "rg",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--no-progress",
        "--device",
        "cpu",
    ]
    ringnet = tmp_path / "rg-ringnet"
    trained = run(site, "train", "--cache", cache, "--model", "ringnet", *quick, "--out", ringnet)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "training ringnet (" in trained.stdout and "test MAE" in trained.stdout
    assert "train samples" in trained.stdout and "molecules" not in trained.stdout  # clouds are not molecules
    meta = torch.load(ringnet / "best.pt", weights_only=True)["meta"]
    assert (meta["model"], meta["task"], meta["dataset"]) == ("ringnet", "scalar", "pointclouds")
    plugin = {"distribution": "empcn-pointclouds", "version": "0.1.0"}
    assert meta["plugins"] == {"model": plugin, "dataset": plugin}
    evaluated = run(site, "evaluate", ringnet, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert (result["unit"], result["target"], result["noun"]) == ("length units", "rg", "samples")
    assert result["mae"] == pytest.approx(json.loads((ringnet / "result.json").read_text())["test_mae"], rel=1e-9)

    # predict: a cloud as .npy, the same cloud moved (rotated, reflected, shifted) as .json, a bad file
    pos = np.random.default_rng(5).standard_normal((9, 3))
    q, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((3, 3)))
    np.save(tmp_path / "cloud.npy", pos)
    (tmp_path / "moved.json").write_text(json.dumps({"points": (pos @ q.T + [3.0, -1.0, 2.0]).tolist()}))
    (tmp_path / "two.json").write_text(json.dumps({"points": [[0, 0, 0], [1, 0, 0]]}))
    files = [tmp_path / "cloud.npy", tmp_path / "moved.json", tmp_path / "two.json"]
    predicted = run(site, "predict", ringnet, *files)
    assert predicted.returncode == 2, predicted.stderr
    lines = predicted.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [str(f) for f in files[:2]], predicted.stdout
    assert all(line.endswith(" length units") for line in lines)
    values = [float(line.split()[1]) for line in lines]
    assert np.isfinite(values).all() and values[1] == pytest.approx(values[0], rel=1e-4)  # E(3)-invariant
    problems = [line for line in predicted.stderr.splitlines() if line.strip()]
    assert problems == [problems[0]] and problems[0].startswith(f"error: {files[2]}: need an (N, 3)"), problems

    # a built-in model trains on the plug-in's data set too
    egnn = tmp_path / "rg-egnn"
    trained = run(site, "train", "--cache", cache, "--model", "egnn", "--layers", "1", *quick, "--out", egnn)
    assert trained.returncode == 0 and "test MAE" in trained.stdout, trained.stderr[-3000:]
    assert torch.load(egnn / "best.pt", weights_only=True)["meta"]["plugins"] == {"dataset": plugin}

    # without the package (PYTHONPATH without its folder): one line naming it
    gone = tmp_path / "empty"
    gone.mkdir()
    for args, what in (
        (("evaluate", ringnet), "model 'ringnet'"),
        (("predict", ringnet, files[0]), "model 'ringnet'"),
        (("predict", egnn, files[0]), "data set 'pointclouds'"),
    ):
        done = run(gone, *args)
        assert done.returncode == 2, done.stderr
        missing = f"{what} comes from the plug-in package 'empcn-pointclouds', which is not installed here"
        assert missing in one_error(done)
    evaluated = run(gone, "evaluate", egnn, "--json")  # a built-in model needs only the cache, which any empcn reads
    assert evaluated.returncode == 0, evaluated.stderr
    line = one_error(run(gone, "lift", "--dataset", "pointclouds", "--out", tmp_path / "x.h5"))
    assert "unknown data set 'pointclouds'; known: qm9, nbody, mocap, molecules" in line


def test_a_broken_plug_in_is_one_line_naming_its_package(tmp_path: Path) -> None:
    """An installed distribution (what pip writes: a module and a dist-info folder) with bad entry points."""
    site = tmp_path / "site"
    (site / "empcn_broken").mkdir(parents=True)
    (site / "empcn_broken" / "__init__.py").write_text("NOT_A_SPEC = 42\n")
    info = site / "empcn_broken-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: empcn-broken\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text(
        "[empcn.datasets]\nmissing = empcn_broken.gone:SPEC\nnotaspec = empcn_broken:NOT_A_SPEC\n"
        "qm9 = empcn_broken:NOT_A_SPEC\n"
    )
    missing = run(site, "lift", "--dataset", "missing", "--out", tmp_path / "m.h5")
    assert missing.returncode == 2
    line = one_error(missing)
    assert "'missing' (plug-in empcn-broken)" in line and "cannot be loaded from empcn_broken.gone:SPEC" in line
    wrong = run(site, "lift", "--dataset", "notaspec", "--out", tmp_path / "n.h5")
    assert wrong.returncode == 2 and "(plug-in empcn-broken)" in one_error(wrong)
    assert "is not a valid data set: expected an empcn.lift.spec.DatasetSpec, got int" in one_error(wrong)
    listed = run(site, "datasets")
    assert listed.returncode == 1 and "qm9  (built-in" in listed.stdout  # the built-in wins its name
    problems = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(problems) == 3 and all("empcn-broken" in p for p in problems), listed.stderr
    assert any(p.startswith("note: ignored plug-in empcn-broken 0.2's entry point 'qm9 = ") for p in problems)
    assert not list(tmp_path.glob("*.h5"))
