"""MoCap lift: skeleton complexes, the protocol's samples and splits, manifest, reproducible bytes, CLI,
and a tiny train + evaluate run through the CLI. Real CMU subject-35 trials (the built-in amc30 folder,
found as the package finds it).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from empcn import cache as cf
from empcn import open_cache
from empcn.cli import app
from empcn.data.amc import joint_positions, read_amc
from empcn.data.asf import read_asf
from empcn.data.mocap import MocapProtocol, default_source
from empcn.lift.mocap import PAPER_CELLS, MocapLiftConfig, lift_mocap, skeleton_complex
from empcn.train.checkpoint import load_checkpoint

TRIALS = ("train_01", "train_02", "train_03", "train_04", "train_17")  # four walks and one jog
PROTOCOL = MocapProtocol(fps=30, trial_split=(2, 1, 1), train_samples=20, seed=0)
runner = CliRunner()


def config(out: Path, **changes) -> MocapLiftConfig:
    base = MocapLiftConfig(
        source=default_source() / "amc30", out=out, trials=TRIALS, protocol=PROTOCOL, shard_size=64, progress=False
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def mocap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lift_mocap(config(tmp_path_factory.mktemp("mocap") / "mocap.h5"))


@pytest.fixture(scope="module")
def skeleton():
    return read_asf(default_source() / "amc30" / "35.asf")


def test_samples_have_the_skeleton_counts(mocap, skeleton):
    cache = open_cache(mocap)
    m = cache.manifest
    assert m["task"] == "positions" and m["dataset"] == "mocap"
    s = cache[5]
    for key in ("pos", "vel", "target_pos"):
        assert s[key].shape == (31, 3) and s[key].dtype == np.float32, key
    assert "charge" not in s and "mass" not in s and m["target"]["node_scalar"] is None
    kinds = m["cells"]["edges_by_kind"]
    assert kinds["bone"] == 30 and kinds["bone"] + kinds["two_hop"] == 65  # GMN's graph: 65 pairs
    assert s["edges"].shape == (30 + 35 + kinds["boundary"], 2)
    assert [tuple(r) for r in s["rings"]] == list(PAPER_CELLS)
    names = [r["names"] for r in m["cells"]["rings"]]
    assert names[0] == ["root", "ltibia", "rtibia"] and names[4] == ["lhand", "lfingers", "lthumb"]
    assert names[8] == ["rhipjoint", "rfemur", "rtibia", "lhipjoint", "lfemur", "ltibia"]


def test_every_ring_is_bounded_by_1_cells_and_the_extra_ones_are_exactly_its_missing_pairs(skeleton):
    cx = skeleton_complex(skeleton)
    pairs = {tuple(e) for e in cx.edge_index.tolist()}
    parents = skeleton.parents
    bones = {tuple(sorted((int(parents[j]), j))) for j in range(1, 31)}
    nbrs = {v: {a for e in bones for a in e if v in e and a != v} for v in range(31)}
    two_hop = {tuple(sorted((a, b))) for v in range(31) for a in nbrs[v] for b in nbrs[v] if a < b} - bones
    ring_pairs = {tuple(sorted((r[k], r[(k + 1) % len(r)]))) for r in PAPER_CELLS for k in range(len(r))}
    assert len(two_hop) == 35
    assert pairs == bones | two_hop | ring_pairs
    kind = dict(zip(map(tuple, cx.edge_index.tolist()), cx.edge_kind.tolist()))
    assert {p for p, k in kind.items() if k == 2} == ring_pairs - bones - two_hop
    slots = iter(cx.ring_edge.tolist())
    for ring in PAPER_CELLS:
        for k in range(len(ring)):
            assert tuple(cx.edge_index[next(slots)]) == tuple(sorted((ring[k], ring[(k + 1) % len(ring)])))
    assert len(skeleton_complex(skeleton, edges="bones", cells="none").edge_index) == 30


def test_the_split_is_by_trial_seeded_and_recorded(mocap, tmp_path):
    cache = open_cache(mocap)
    m = cache.manifest
    trials = m["splits"]["trials"]
    assert sorted(sum(trials.values(), [])) == ["train_01", "train_02", "train_03", "train_04"]
    assert [s["id"] for s in m["skipped"]] == ["train_17"]  # the jog is too short for 2.75 s
    assert m["splits"]["counts"] == {"train": 20, "valid": 74, "test": 74}  # causal: start frames 1..74
    names = m["splits"]["trial_names"]
    for split, idx in cache.splits.items():
        seen = {names[int(t)] for t in _sample_field(cache, idx, "trial")}
        assert seen == set(trials[split]), split
    other = open_cache(lift_mocap(config(tmp_path / "s1.h5", protocol=replace(PROTOCOL, seed=1))))
    assert other.manifest["splits"]["trials"] != trials
    assert m["params"]["seed"] == 0 and other.manifest["params"]["seed"] == 1


def _sample_field(cache, indices, name: str) -> np.ndarray:
    """``sample/<name>`` of every sample in ``indices``."""
    return np.asarray([cache[int(i)][f"sample/{name}"][0] for i in indices])


def test_samples_are_the_poses_of_their_trial(mocap, skeleton):
    cache = open_cache(mocap)
    m = cache.manifest
    assert m["target"]["horizon_frames"] == 8 and m["target"]["horizon"] == pytest.approx(8 / 30)
    idx = np.array([0, 7, 25, 100, 167])
    trial = _sample_field(cache, idx, "trial")
    start = _sample_field(cache, idx, "start")
    for i, t, s in zip(idx, trial, start):
        name = m["splits"]["trial_names"][int(t)]
        x = joint_positions(skeleton, read_amc(default_source() / "amc30" / f"{name}.amc", skeleton))
        sample = cache[int(i)]
        np.testing.assert_allclose(sample["pos"], x[s], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(sample["target_pos"], x[s + 8], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(sample["vel"], (x[s] - x[s - 1]) * 30 / 120, rtol=1e-5, atol=1e-5)


def test_the_same_files_give_identical_bytes_wherever_they_lie(mocap, tmp_path):
    """No source (the built-in folder, unpacked in the user cache) and a copy of it elsewhere."""
    elsewhere = tmp_path / "elsewhere" / "amc30"
    shutil.copytree(default_source() / "amc30", elsewhere)
    names = sorted(p.name for p in cf.shard_dir(mocap).glob("shard-*.h5"))
    assert len(names) == 3
    for source in (None, elsewhere):
        again = lift_mocap(config(tmp_path / f"again-{source is None}" / "mocap.h5", source=source))
        assert again.read_bytes() == mocap.read_bytes(), source
        for name in names:
            assert (cf.shard_dir(again) / name).read_bytes() == (cf.shard_dir(mocap) / name).read_bytes()
    assert open_cache(mocap).manifest["source"]["name"] == "amc30"  # the folder's name, not its path


def test_cli_lift_errors_are_one_line(tmp_path):
    r = runner.invoke(
        app,
        [
            "lift",
            "--dataset",
            "mocap",
            "--source",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "m.h5"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "no such folder" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(
        app,
        [
            "lift",
            "--dataset",
            "mocap",
            "--source",
            str(default_source() / "amc30"),
            "--fps",
            "30",
            "--trials",
            "train_0[1-4]",
            "--out",
            str(tmp_path / "m.h5"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "4 usable trials cannot be split 11/6/6" in r.output
    r = runner.invoke(
        app,
        [
            "lift",
            "--dataset",
            "mocap",
            "--source",
            str(default_source() / "amc30"),
            "--trials",
            "train_0[1-4]",
            "--out",
            str(tmp_path / "m.h5"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "is --fps right?" in r.output  # 30 Hz files read as 120 Hz: all too short
    assert not (tmp_path / "m.h5").exists()


def test_a_tiny_run_trains_and_evaluates_through_the_cli(tmp_path):
    cache = tmp_path / "tiny.h5"
    r = runner.invoke(
        app,
        [
            "lift",
            "--dataset",
            "mocap",
            "--trials",
            "train_0[1-4]",
            "--trial-split",
            "2,1,1",
            "--out",
            str(cache),
            "--no-progress",
        ],
    )  # no --source: the built-in 30 Hz trials
    assert r.exit_code == 0, r.output
    assert open_cache(cache).manifest["motion"]["fps"] == 30.0
    for model in ("decoupled", "empcn", "egnn"):
        run = tmp_path / f"mocap-{model}"
        args = [
            "train",
            "--cache",
            str(cache),
            "--model",
            model,
            "--epochs",
            "1",
            "--batch-size",
            "100",
            "--hidden",
            "8",
            "--layers",
            "2",
            "--limit-batches",
            "1",
            "--out",
            str(run),
            "--no-progress",
        ]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "test MSE" in r.output, r.output
        out = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--json"])
        assert out.exit_code == 0, out.output
        result = json.loads(out.stdout)
        assert result["metric"] == "MSE" and result["samples"] == 74 and np.isfinite(result["mse"]), result
        assert result["unit"] == "(ASF length units)²"
        meta = load_checkpoint(run / "best.pt", map_location="cpu")["meta"]
        assert meta["model_config"]["use_node_scalar"] is False  # no charges in a MoCap cache
    picture = tmp_path / "poses.png"
    out = runner.invoke(app, ["evaluate", str(run), "--split", "valid", "--poses", str(picture), "--pose-samples", "2"])
    assert out.exit_code == 0, out.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000


def test_a_cache_without_node_scalars_turns_the_models_use_of_one_off():
    from empcn.train.models.registry import config_for_run

    for name in ("egnn_dynamics", "empcn_dynamics", "decoupled_dynamics"):
        assert config_for_run(name, 15, 0).use_node_scalar is True  # N-body: charges
        assert config_for_run(name, 15, 0, node_scalar=False).use_node_scalar is False
        forced = config_for_run(name, 15, 0, options=("use_node_scalar=true",), node_scalar=False)
        assert forced.use_node_scalar is True  # an explicit --model-option still wins
    assert config_for_run("egnn", 15, 0, node_scalar=False) == config_for_run("egnn", 15, 0)  # no such switch
