"""N-body lift: samples, cells, neighbourhoods, splits, manifest, reproducibility, kNN cells, bad input.

Real (short) simulations throughout: 5000-step trajectories are replaced by a few hundred steps via
the simulator config, everything else is the production path.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from empcn import cache as cf
from empcn import geometry, open_cache
from empcn.data.nbody import (
    ChargedConfig,
    GravityConfig,
    NBodySplit,
    egnn_initial_states,
    integrate_charged,
    simulate_charged,
    simulate_gravity,
)
from empcn.lift import pipeline
from empcn.lift.nbody import NBodyLiftConfig, graph_cells, knn_adjacency, lift_nbody, source_fingerprint

SHORT = ChargedConfig(num_steps=500, save_every=100)  # 5 frames, frame t = step 100 t
SPLITS = (NBodySplit("train", 12, 3), NBodySplit("valid", 6, 4), NBodySplit("test", 6, 5))
GRAVITY = GravityConfig(num_particles=16, num_steps=20, save_every=10)  # 2 frames
GRAVITY_SPLITS = (NBodySplit("train", 4, 7), NBodySplit("valid", 2, 8), NBodySplit("test", 2, 9))


def charged_config(out: Path, **changes) -> NBodyLiftConfig:
    base = NBodyLiftConfig(
        system="charged",
        out=out,
        splits=SPLITS,
        simulator=SHORT,
        frame_in=2,
        frame_target=4,
        shard_size=10,
        workers=1,
        progress=False,
        initial_states="seeded",
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def charged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lift_nbody(charged_config(tmp_path_factory.mktemp("nbody") / "nbody.h5"))


@pytest.fixture(scope="module")
def gravity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = NBodyLiftConfig(
        system="gravity",
        out=tmp_path_factory.mktemp("grav") / "g.h5",
        splits=GRAVITY_SPLITS,
        simulator=GRAVITY,
        frame_in=0,
        frame_target=1,
        k=4,
        shard_size=3,
        workers=1,
        progress=False,
    )
    return lift_nbody(cfg)


# ---------------------------------------------------------------- samples and cells


def test_samples_carry_inputs_and_targets_with_shapes(charged):
    cache = open_cache(charged)
    assert len(cache) == 24 and cache.num_shards == 3
    s = cache[13]
    for key, shape in (("pos", (5, 3)), ("vel", (5, 3)), ("target_pos", (5, 3)), ("charge", (5,))):
        assert s[key].shape == shape and s[key].dtype == np.float32, key
    assert "mass" not in s
    assert set(np.unique(s["charge"])) <= {-1.0, 1.0}
    assert s["edges"].shape == (10, 2) and len(s["rings"]) == 10


def test_inputs_and_target_are_the_simulator_frames(charged):
    """Every split is its own seeded stream: re-simulating it gives the stored frames exactly (float32)."""
    cache = open_cache(charged)
    for split in SPLITS:
        traj = simulate_charged(split.num_sims, SHORT, split.seed)
        idx = cache.splits[split.name]
        for row, i in enumerate(idx):
            s = cache[int(i)]
            np.testing.assert_array_equal(s["pos"], traj.pos[row, 2].astype(np.float32))
            np.testing.assert_array_equal(s["vel"], traj.vel[row, 2].astype(np.float32))
            np.testing.assert_array_equal(s["target_pos"], traj.pos[row, 4].astype(np.float32))
            np.testing.assert_array_equal(s["charge"], traj.charge[row].astype(np.float32))
            assert s["sample/sim"][0] == row and s["id"] == i


def test_full_complex_of_five_bodies(charged):
    """K5: 10 edges, 10 triangles; edges of a common triangle = edges sharing a node (every pair closes one)."""
    s = open_cache(charged)[5]
    assert [tuple(e) for e in s["edges"].tolist()] == list(itertools.combinations(range(5), 2))
    assert s["rings"] == list(itertools.combinations(range(5), 3))
    edges = s["edges"]
    slot_node, slot_edge = s["ring_slots/node"], s["ring_slots/edge"]
    nxt = slot_node.reshape(-1, 3)[:, [1, 2, 0]].ravel()
    np.testing.assert_array_equal(np.sort(edges[slot_edge], axis=1), np.sort(np.stack([slot_node, nxt], 1), axis=1))
    pairs = lambda name: {tuple(p) for p in s[f"nbr/{name}/index"].tolist()}  # noqa: E731
    assert len(pairs("0_0")) == 20 and len(pairs("0_1")) == 20 and len(pairs("2_0")) == 30
    assert pairs("1_1_lower") == pairs("1_1_upper") and len(pairs("1_1_upper")) == 10 * 6
    assert len(pairs("2_2_lower")) == 10 * 6  # each triangle shares each edge with 2 others


def test_stored_invariants_equal_torch_recomputation(charged):
    s = open_cache(charged)[20]
    pos = torch.from_numpy(s["pos"].astype(np.float64))
    edges = torch.from_numpy(s["edges"].astype(np.int64))
    np.testing.assert_allclose(geometry.edge_lengths(pos, edges).numpy(), s["edges/length"], rtol=1e-6)
    ring = geometry.ring_geometry(
        pos, torch.from_numpy(s["ring_slots/node"].astype(np.int64)), torch.arange(10).repeat_interleave(3), 10
    )
    np.testing.assert_allclose(ring.perimeter.numpy(), s["rings/perimeter"], rtol=1e-6)
    np.testing.assert_allclose(ring.radius.numpy(), s["rings/radius"], rtol=1e-6)
    # a triangle's barycentric-subdivision area is its plain area ½‖(b−a)×(c−a)‖
    tri = s["pos"].astype(np.float64)[np.array(s["rings"])]
    heron = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    np.testing.assert_allclose(s["rings/area"], heron, rtol=1e-5)


# ---------------------------------------------------------------- splits, manifest, files


def test_splits_are_contiguous_in_config_order(charged):
    cache = open_cache(charged)
    np.testing.assert_array_equal(cache.splits["train"], np.arange(0, 12))
    np.testing.assert_array_equal(cache.splits["valid"], np.arange(12, 18))
    np.testing.assert_array_equal(cache.splits["test"], np.arange(18, 24))
    info = cache.manifest["splits"]
    assert info["ranges"] == {"train": [0, 12], "valid": [12, 18], "test": [18, 24]}
    assert info["seeds"] == {"train": 3, "valid": 4, "test": 5} and info["order"] == ["train", "valid", "test"]
    codes = np.array([cache[i]["sample/split"][0] for i in range(len(cache))])
    np.testing.assert_array_equal(codes, np.repeat([0, 1, 2], [12, 6, 6]))


def test_manifest_records_task_simulator_and_parameters(charged):
    m = open_cache(charged).manifest
    assert m["dataset"] == "nbody" and m["task"] == "positions" and m["units"] == "simulation units"
    assert m["params"]["cells"] == "full" and m["params"]["k"] is None and m["params"]["max_ring"] == 3
    assert m["params"]["frame_in"] == 2 and m["params"]["frame_target"] == 4
    assert m["simulator"]["config"]["num_steps"] == 500 and m["simulator"]["function"].endswith("simulate_charged")
    assert m["simulator"]["horizon"] == pytest.approx(2 * SHORT.dt_frame)
    assert m["target"]["field"] == "nodes/target_pos"
    assert m["source"]["fingerprint"] == source_fingerprint(charged_config(charged))
    assert m["cells"]["edges_per_sample"] == {"10": 24} and m["cells"]["rings_per_sample"] == {"10": 24}
    assert m["counts"]["edges"] == 240 and m["counts"]["rings"] == 240
    assert "nodes/charge" in m["fields"] and "nodes/z" not in m["fields"]


def test_fingerprint_follows_the_simulation_not_the_lift(tmp_path):
    cfg = charged_config(tmp_path / "x.h5")
    assert source_fingerprint(cfg) == source_fingerprint(replace(cfg, frame_in=1, shard_size=3, workers=2))
    reseeded = replace(cfg, splits=(NBodySplit("train", 12, 99),) + SPLITS[1:])
    assert source_fingerprint(reseeded) != source_fingerprint(cfg)
    assert source_fingerprint(replace(cfg, simulator=replace(SHORT, vel_norm=0.6))) != source_fingerprint(cfg)


def test_cache_verifies(charged, gravity):
    for path in (charged, gravity):
        report = cf.verify_cache(path)
        assert report.ok, report.problems


def test_same_parameters_give_identical_bytes_whatever_workers(tmp_path, charged):
    again = lift_nbody(charged_config(tmp_path / "b" / "nbody.h5", workers=2))
    assert again.read_bytes() == charged.read_bytes()
    for k in range(3):
        name = cf.shard_name(k)
        assert (cf.shard_dir(again) / name).read_bytes() == (cf.shard_dir(charged) / name).read_bytes()


def test_resume_reuses_every_verified_shard(tmp_path, monkeypatch, charged):
    cfg = charged_config(tmp_path / "nbody.h5")
    lift_nbody(cfg)
    written: list[str] = []
    real = cf.write_shard
    monkeypatch.setattr(cf, "write_shard", lambda p, c: written.append(Path(p).name) or real(p, c))
    lift_nbody(replace(cfg, resume=True))
    assert written == []
    assert cfg.out.read_bytes() == charged.read_bytes()


# ---------------------------------------------------------------- gravity: kNN cells


def brute_force_knn_edges(pos: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Symmetrised kNN, one particle at a time (ties by lower index, as knn_graph)."""
    out = set()
    for i in range(len(pos)):
        d = np.linalg.norm(pos - pos[i], axis=1)
        d[i] = np.inf
        for j in np.argsort(d, kind="stable")[:k]:
            out.add((min(i, int(j)), max(i, int(j))))
    return out


def test_gravity_cells_are_the_knn_graph_and_its_triangles(gravity):
    cache = open_cache(gravity)
    assert cache.manifest["params"]["cells"] == "knn" and cache.manifest["params"]["k"] == 4
    traj = simulate_gravity(4, GRAVITY, 7)
    total_rings = 0
    for i in range(len(cache)):
        s = cache[i]
        assert "charge" not in s and s["mass"].shape == (16,)
        edges = {tuple(e) for e in s["edges"].tolist()}
        assert edges == brute_force_knn_edges(s["pos"].astype(np.float64), 4)
        assert len(edges) == len(s["edges"])
        cliques = [
            t for t in itertools.combinations(range(16), 3) if {(t[0], t[1]), (t[1], t[2]), (t[0], t[2])} <= edges
        ]
        assert s["rings"] == cliques
        total_rings += len(cliques)
        if i < 4:  # train split: the seed-7 stream
            np.testing.assert_array_equal(s["target_pos"], traj.pos[i, 1].astype(np.float32))
    assert total_rings > 0
    assert sum(int(v) * n for v, n in cache.manifest["cells"]["rings_per_sample"].items()) == total_rings


def test_graph_cells_on_a_hand_made_graph():
    """A square with one diagonal (0-2) plus a pendant vertex: 2 triangles, edges (i,j),(j,k),(k,i) per slot."""
    adj = np.zeros((1, 5, 5), dtype=bool)
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (3, 4)]:
        adj[0, i, j] = adj[0, j, i] = True
    cells = graph_cells(adj)
    edges = [tuple(e) for e in cells.edge_index.tolist()]
    assert edges == [(0, 1), (0, 2), (0, 3), (1, 2), (2, 3), (3, 4)]
    assert cells.triangles.tolist() == [[0, 1, 2], [0, 2, 3]]
    joined = [[edges[e] for e in row] for row in cells.triangle_edges.tolist()]
    assert joined == [[(0, 1), (1, 2), (0, 2)], [(0, 2), (2, 3), (0, 3)]]
    assert graph_cells(adj, max_ring=2).triangles.shape == (0, 3)


def test_knn_adjacency_is_symmetric_without_self_loops():
    pos = np.random.default_rng(0).standard_normal((3, 9, 3))
    adj = knn_adjacency(pos, 2)
    assert np.array_equal(adj, adj.transpose(0, 2, 1)) and not adj[:, np.arange(9), np.arange(9)].any()
    assert (adj.sum(-1) >= 2).all()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"cells": "knn", "k": 6}, "k must be an integer in \\[1, 4\\]"),
        ({"simulator": GravityConfig()}, "needs a ChargedConfig"),
        ({"frame_target": 5}, "frame_target \\(5\\) < 5 frames"),
        ({"max_ring": 4}, "max_ring must be an integer <= 3"),
        ({"splits": (NBodySplit("train", 3, 1), NBodySplit("train", 3, 2))}, "distinct"),
        ({"system": "spring"}, "system must be"),
        ({"initial_states": "egnn", "splits": (NBodySplit("extra", 3, 1),)}, "not part of EGNN's stream"),
        ({"initial_states": "egnn", "splits": (NBodySplit("valid", 2001, 1),)}, "not part of EGNN's stream"),
        ({"initial_states": "egnn", "system": "gravity", "simulator": None}, "only for the charged system"),
        ({"initial_states": "nrI"}, "initial_states must be"),
    ],
)
def test_bad_config_is_a_one_line_lift_error(tmp_path, changes, message):
    with pytest.raises(pipeline.LiftError, match=message) as info:
        charged_config(tmp_path / "x.h5", **changes)
    assert "\n" not in str(info.value)


def test_blown_up_simulation_is_a_lift_error_and_keeps_the_old_cache(tmp_path):
    """Particles 1e-300 apart: r³ underflows to 0, unclipped forces are inf; the lift stops with the reason."""
    wild = ChargedConfig(num_steps=500, save_every=100, pos_std=1e-300, max_force=None)
    with np.errstate(all="ignore"), pytest.raises(pipeline.LiftError, match="non-finite") as info:
        lift_nbody(charged_config(tmp_path / "x.h5", simulator=wild))
    assert "\n" not in str(info.value) and not (tmp_path / "x.h5").exists()
    old = lift_nbody(charged_config(tmp_path / "y.h5", splits=SPLITS[:1]))
    before = old.read_bytes()
    with np.errstate(all="ignore"), pytest.raises(pipeline.LiftError):
        lift_nbody(charged_config(old, splits=SPLITS[:1], simulator=wild))
    assert old.read_bytes() == before and cf.verify_cache(old).ok


def test_max_ring_below_three_gives_a_graph_without_two_cells(tmp_path):
    path = lift_nbody(charged_config(tmp_path / "g.h5", max_ring=2, splits=SPLITS[:1]))
    s = open_cache(path)[0]
    assert len(s["edges"]) == 10 and s["rings"] == [] and len(s["nbr/1_1_upper/index"]) == 0
    assert cf.verify_cache(path).ok


# ---------------------------------------------------------------- EGNN's data set (default for charged)


def test_default_charged_lift_stores_egnn_systems(tmp_path):
    """Default initial states: each split is the head of EGNN's block of the same name, frames as configured."""
    cfg = replace(charged_config(tmp_path / "egnn.h5"), initial_states=None)
    assert cfg.initial_source == "egnn"
    assert NBodyLiftConfig(system="gravity").initial_source == "seeded"
    cache = open_cache(lift_nbody(cfg))
    blocks = egnn_initial_states(SHORT)
    for split in SPLITS:
        traj = integrate_charged(blocks[split.name].head(split.num_sims), SHORT)
        for row, i in enumerate(cache.splits[split.name]):
            s = cache[int(i)]
            np.testing.assert_array_equal(s["pos"], traj.pos[row, 2].astype(np.float32))
            np.testing.assert_array_equal(s["target_pos"], traj.pos[row, 4].astype(np.float32))
            np.testing.assert_array_equal(s["charge"], traj.charge[row].astype(np.float32))
    info = cache.manifest["splits"]
    assert info["initial_states"] == "egnn" and info["stream"]["seed"] == 43 and "seeds" not in info
    assert cache.manifest["params"]["initial_states"] == "egnn"
    assert cache.manifest["simulator"]["function"].endswith("integrate_charged")
    assert source_fingerprint(cfg) != source_fingerprint(charged_config(tmp_path / "egnn.h5"))


def test_fingerprint_names_the_simulator_version_not_its_source_text(monkeypatch):
    import empcn.data.nbody as sim

    cfg = NBodyLiftConfig(splits=(NBodySplit("train", 2, 1),))
    before = source_fingerprint(cfg)
    monkeypatch.setattr(sim.charged, "__doc__", "an edited comment")  # text changes: no effect
    assert source_fingerprint(cfg) == before
    monkeypatch.setattr(sim, "SIMULATOR_VERSION", sim.SIMULATOR_VERSION + 1)  # a bumped simulator: new identity
    assert source_fingerprint(cfg) != before
