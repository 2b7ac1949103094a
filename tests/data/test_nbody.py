"""Tests for the N-body simulators (empcn/data/nbody.py): small, short simulations only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from empcn.data.nbody import (
    EGNN_STREAM_BLOCKS,
    INPUT_FRAME,
    STANDARD_CHARGED_SPLITS,
    TARGET_FRAME,
    ChargedConfig,
    ChargedInitialState,
    GravityConfig,
    NBodySplit,
    egnn_initial_states,
    energy_charged,
    energy_gravity,
    generate_split,
    integrate_charged,
    knn_graph,
    simulate_charged,
    simulate_gravity,
)

SHORT_CHARGED = ChargedConfig(num_steps=200, save_every=10)  # 20 frames, frame t = step 10 t


# --------------------------------------------------------------------------- brute-force references


def coulomb_force_loop(x: np.ndarray, q: np.ndarray, clip: float | None) -> np.ndarray:
    """F_i = Σ_j q_i q_j (x_i − x_j)/|x_i − x_j|³, one particle pair at a time. x: (N, 3)."""
    n = len(x)
    f = np.zeros((n, 3))
    for i in range(n):
        for j in range(n):
            if i != j:
                r = x[i] - x[j]
                f[i] += q[i] * q[j] * r / math.sqrt(r @ r) ** 3
    return f if clip is None else np.clip(f, -clip, clip)


def plummer_accel_loop(x: np.ndarray, m: np.ndarray, eps: float) -> np.ndarray:
    """a_i = Σ_j m_j (x_j − x_i)/(|x_j − x_i|² + ε²)^{3/2}, pair by pair. x: (N, 3)."""
    n = len(x)
    a = np.zeros((n, 3))
    for i in range(n):
        for j in range(n):
            if i != j:
                r = x[j] - x[i]
                a[i] += m[j] * r / (r @ r + eps * eps) ** 1.5
    return a


# --------------------------------------------------------------------------- charged system


def test_charged_shapes_and_initial_state():
    tr = simulate_charged(3, SHORT_CHARGED, seed=1)
    assert tr.pos.shape == tr.vel.shape == (3, 20, 5, 3)
    assert tr.pos.dtype == tr.vel.dtype == np.float64
    assert tr.charge.shape == (3, 5) and tr.charge.dtype == np.float64
    assert tr.mass is None
    assert tr.dt_frame == pytest.approx(0.01)
    # frame 0 is the initial condition: speeds are exactly vel_norm
    np.testing.assert_allclose(np.linalg.norm(tr.vel[:, 0], axis=-1), 0.5, rtol=1e-12)


def test_charged_frame_t_is_step_t_times_save_every():
    coarse = simulate_charged(3, SHORT_CHARGED, seed=2)
    fine = simulate_charged(3, ChargedConfig(num_steps=200, save_every=1), seed=2)
    assert fine.pos.shape[1] == 200
    np.testing.assert_array_equal(coarse.pos, fine.pos[:, ::10])
    np.testing.assert_array_equal(coarse.vel, fine.vel[:, ::10])
    np.testing.assert_array_equal(coarse.charge, fine.charge)


@pytest.mark.parametrize("clip", [None, 0.3])
def test_charged_one_step_matches_brute_force_kick_drift(clip):
    cfg = ChargedConfig(num_steps=2, save_every=1, max_force=clip)
    tr = simulate_charged(4, cfg, seed=3)
    dt = cfg.dt
    for s in range(4):
        x0, v0, q = tr.pos[s, 0], tr.vel[s, 0], tr.charge[s]
        v1 = v0 + dt * coulomb_force_loop(x0, q, clip)  # kick
        x1 = x0 + dt * v1  # drift with the new velocity
        np.testing.assert_allclose(tr.vel[s, 1], v1, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(tr.pos[s, 1], x1, rtol=1e-12, atol=1e-15)


def test_charged_default_clip_bounds_every_velocity_increment():
    cfg = ChargedConfig(num_steps=300, save_every=1)
    tr = simulate_charged(50, cfg, seed=4)
    dv = np.abs(np.diff(tr.vel, axis=1))
    assert dv.max() <= cfg.dt * cfg.max_force * (1 + 1e-9)


def test_charged_deterministic_under_seed():
    a = simulate_charged(4, SHORT_CHARGED, seed=5)
    b = simulate_charged(4, SHORT_CHARGED, seed=5)
    c = simulate_charged(4, SHORT_CHARGED, seed=6)
    for field in ("pos", "vel", "charge"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.allclose(a.pos, c.pos)
    assert not np.allclose(a.vel[:, 0], c.vel[:, 0])


def test_charges_are_plus_minus_one_with_equal_probability_and_positions_standard_normal():
    tr = simulate_charged(2000, ChargedConfig(num_steps=1, save_every=1), seed=7)
    assert set(np.unique(tr.charge)) == {-1.0, 1.0}
    assert abs((tr.charge > 0).mean() - 0.5) < 0.03  # 10,000 draws: sd 0.005
    assert abs(tr.pos[:, 0].std() - 1.0) < 0.03  # 30,000 draws
    assert abs(tr.pos[:, 0].mean()) < 0.03


def test_charged_momentum_conserved_without_clipping():
    cfg = ChargedConfig(num_steps=1000, save_every=100, max_force=None)
    tr = simulate_charged(20, cfg, seed=8)
    momentum = tr.vel.sum(axis=2)  # unit masses: (S, T, 3)
    assert np.abs(momentum - momentum[:, :1]).max() < 1e-10


def _charged_relative_energy_error(dt: float, steps: int, save_every: int) -> float:
    """Max over frames/sims of |E(t) − E(0)| / (K₀ + Σ|U_ij|₀) for a gentle, seeded setting."""
    cfg = ChargedConfig(dt=dt, num_steps=steps, save_every=save_every, pos_std=3.0, max_force=None)
    tr = simulate_charged(16, cfg, seed=0)
    energy = energy_charged(tr.pos, tr.vel, tr.charge)
    x0 = tr.pos[:, 0]
    i, j = np.triu_indices(5, k=1)
    abs_u = np.abs(tr.charge[:, i] * tr.charge[:, j] / np.linalg.norm(x0[:, i] - x0[:, j], axis=-1)).sum(-1)
    scale = 0.5 * (tr.vel[:, 0] ** 2).sum(axis=(1, 2)) + abs_u
    return float((np.abs(energy - energy[:, :1]) / scale[:, None]).max())


def test_charged_energy_error_small_and_first_order():
    coarse = _charged_relative_energy_error(0.001, 1000, 100)
    fine = _charged_relative_energy_error(0.0005, 2000, 200)
    assert coarse < 1e-3
    # kick-drift (symplectic Euler) with the stored, half-step-lagged velocity: error ∝ dt
    assert 1.7 < coarse / fine < 2.3


def test_energy_charged_closed_form_two_particles():
    pos = np.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    vel = np.array([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    charge = np.array([[1.0, -1.0]])
    # K = ½(1 + 4) = 2.5, U = (1)(−1)/2 = −0.5
    np.testing.assert_allclose(energy_charged(pos, vel, charge), [2.0])
    # (S, T, N, 3) input gives (S, T)
    out = energy_charged(np.stack([pos, pos], axis=1), np.stack([vel, 0 * vel], axis=1), charge)
    np.testing.assert_allclose(out, [[2.0, -0.5]])


# --------------------------------------------------------------------------- gravity system

GENTLE_GRAVITY = GravityConfig(num_particles=10, num_steps=1000, save_every=100)


def test_gravity_shapes_com_frame_and_determinism():
    g = simulate_gravity(3, GENTLE_GRAVITY, seed=1)
    assert g.pos.shape == g.vel.shape == (3, 10, 10, 3)
    assert g.mass.shape == (3, 10) and np.all(g.mass == 1.0)
    assert g.charge is None
    assert g.dt_frame == pytest.approx(0.1)
    np.testing.assert_allclose(g.pos[:, 0].sum(axis=1), 0.0, atol=1e-13)
    np.testing.assert_allclose(g.vel[:, 0].sum(axis=1), 0.0, atol=1e-13)
    again = simulate_gravity(3, GENTLE_GRAVITY, seed=1)
    other = simulate_gravity(3, GENTLE_GRAVITY, seed=2)
    np.testing.assert_array_equal(g.pos, again.pos)
    assert not np.allclose(g.pos, other.pos)


def test_gravity_one_step_matches_brute_force_kdk():
    cfg = GravityConfig(num_particles=6, num_steps=2, save_every=1)
    g = simulate_gravity(3, cfg, seed=3)
    dt, eps = cfg.dt, cfg.softening
    for s in range(3):
        x0, v0, m = g.pos[s, 0], g.vel[s, 0], g.mass[s]
        v_half = v0 + 0.5 * dt * plummer_accel_loop(x0, m, eps)
        x1 = x0 + dt * v_half
        v1 = v_half + 0.5 * dt * plummer_accel_loop(x1, m, eps)
        np.testing.assert_allclose(g.pos[s, 1], x1, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g.vel[s, 1], v1, rtol=1e-12, atol=1e-15)


def test_gravity_frames_and_chunking_do_not_change_result():
    coarse = simulate_gravity(5, GravityConfig(num_particles=8, num_steps=40, save_every=10), seed=4)
    fine = simulate_gravity(5, GravityConfig(num_particles=8, num_steps=40, save_every=1, chunk_bytes=1), seed=4)
    np.testing.assert_allclose(coarse.pos, fine.pos[:, ::10], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(coarse.vel, fine.vel[:, ::10], rtol=1e-13, atol=1e-14)


def _gravity_relative_energy_error(dt: float, steps: int, save_every: int) -> tuple[float, np.ndarray]:
    cfg = GravityConfig(num_particles=10, dt=dt, num_steps=steps, save_every=save_every)
    g = simulate_gravity(4, cfg, seed=0)
    energy = energy_gravity(g.pos, g.vel, g.mass, cfg.softening)
    return float((np.abs(energy - energy[:, :1]) / np.abs(energy[:, :1])).max()), g


def test_gravity_conserves_energy_momentum_and_com_second_order():
    coarse, g = _gravity_relative_energy_error(0.001, 1000, 100)
    fine, _ = _gravity_relative_energy_error(0.0005, 2000, 200)
    assert coarse < 1e-3
    assert 3.5 < coarse / fine < 4.5  # leapfrog: halving dt cuts the energy error ~4x
    momentum = (g.mass[:, None, :, None] * g.vel).sum(axis=2)  # (S, T, 3)
    assert np.abs(momentum).max() < 1e-10
    com = (g.mass[:, None, :, None] * g.pos).sum(axis=2) / g.mass.sum(axis=1)[:, None, None]
    assert np.abs(com).max() < 1e-10


def test_energy_gravity_closed_form_two_bodies():
    pos = np.array([[[0.0, 0.0, 0.0], [0.3, 0.4, 0.0]]])  # r = 0.5
    vel = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    mass = np.array([[2.0, 3.0]])
    # K = ½·2·1 = 1, U = −2·3/sqrt(0.25 + 0.01)
    expected = 1.0 - 6.0 / math.sqrt(0.26)
    np.testing.assert_allclose(energy_gravity(pos, vel, mass, 0.1), [expected])


# --------------------------------------------------------------------------- graph, splits, errors


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(11)
    pos = rng.standard_normal((3, 7, 3))
    k = 3
    edges = knn_graph(pos, k)
    assert edges.shape == (3, 7 * k, 2) and edges.dtype == np.int64
    for s in range(3):
        for node in range(7):
            others = [j for j in range(7) if j != node]
            dist = {j: math.dist(pos[s, node], pos[s, j]) for j in others}
            expected = sorted(others, key=lambda j: dist[j])[:k]
            rows = edges[s, node * k : (node + 1) * k]
            assert rows[:, 1].tolist() == [node] * k
            assert rows[:, 0].tolist() == expected
    assert not np.any(edges[..., 0] == edges[..., 1])


def test_generate_split_cuts_input_and_target_frames():
    cfg = ChargedConfig(num_steps=100, save_every=2)  # 50 frames
    split = NBodySplit("tiny", 4, 9)
    arrays = generate_split(split, cfg)
    tr = simulate_charged(4, cfg, seed=9)
    assert arrays.name == "tiny"
    np.testing.assert_array_equal(arrays.pos_in, tr.pos[:, INPUT_FRAME])
    np.testing.assert_array_equal(arrays.vel_in, tr.vel[:, INPUT_FRAME])
    np.testing.assert_array_equal(arrays.target_pos, tr.pos[:, TARGET_FRAME])
    np.testing.assert_array_equal(arrays.charge, tr.charge)
    assert arrays.mass is None
    assert arrays.pos_in.shape == (4, 5, 3) and arrays.charge.shape == (4, 5)
    assert arrays.horizon == pytest.approx(10 * cfg.dt_frame)

    grav = generate_split(split, GravityConfig(num_particles=6, num_steps=50, save_every=1))
    assert grav.charge is None and grav.mass.shape == (4, 6)


def test_standard_charged_splits():
    names = [s.name for s in STANDARD_CHARGED_SPLITS]
    assert names == ["train", "valid", "test"]
    assert [s.num_sims for s in STANDARD_CHARGED_SPLITS] == [3000, 2000, 2000]
    assert len({s.seed for s in STANDARD_CHARGED_SPLITS}) == 3


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ChargedConfig(num_steps=150, save_every=100), "multiple of save_every"),
        (lambda: ChargedConfig(dt=0.0), "dt must be"),
        (lambda: ChargedConfig(max_force=-1.0), "max_force"),
        (lambda: GravityConfig(softening=-0.1), "softening"),
        (lambda: simulate_charged(0), "num_sims"),
        (lambda: simulate_gravity(2, GravityConfig(num_particles=1)), "num_particles"),
        (lambda: knn_graph(np.zeros((1, 4, 3)), 4), r"k must be an integer in \[1, N-1\]"),
        (lambda: knn_graph(np.zeros((4, 3)), 2), r"pos must be \(S, N, 3\)"),
        (
            lambda: energy_charged(np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), np.zeros((2, 4))),
            "charge must be",
        ),
        (
            lambda: generate_split(NBodySplit("x", 1, 0), ChargedConfig(num_steps=20, save_every=1)),
            r"generate_split\[x\]",
        ),
    ],
)
def test_bad_input_gives_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- EGNN's data set

EGNN_REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "nbody" / "egnn_reference.json"


def test_standard_frames_are_the_reference_steps_3100_to_4100():
    cfg = ChargedConfig()
    assert INPUT_FRAME * cfg.save_every == 3100 and TARGET_FRAME * cfg.save_every == 4100


def test_egnn_stream_reproduces_the_reference_systems():
    """The first training systems of EGNN's data set, as EGNN's own generator wrote them (fixture)."""
    ref = json.loads(EGNN_REFERENCE.read_text())["systems"]
    states = egnn_initial_states(blocks=(("train", len(ref)),))["train"]
    traj = integrate_charged(states)
    for k, system in enumerate(ref):
        np.testing.assert_array_equal(traj.charge[k], system["charge"])
        # the reference's saved frame f is step 100 (f + 1): our frame f + 1
        np.testing.assert_allclose(traj.pos[k, INPUT_FRAME], system["pos_frame30"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(traj.vel[k, INPUT_FRAME], system["vel_frame30"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(traj.pos[k, TARGET_FRAME], system["pos_frame40"], rtol=0, atol=1e-7)


def test_egnn_stream_blocks_are_consecutive_and_heads_are_stable():
    blocks = (("train", 6), ("valid", 3), ("test", 2))
    states = egnn_initial_states(blocks=blocks)
    assert {name: len(st) for name, st in states.items()} == dict(blocks)
    # a block's states do not depend on how long the *later* blocks are
    shorter = egnn_initial_states(blocks=(("train", 6), ("valid", 2)))
    np.testing.assert_array_equal(shorter["valid"].pos, states["valid"].pos[:2])
    # but they do depend on the earlier ones: valid follows all of train
    moved = egnn_initial_states(blocks=(("train", 5), ("valid", 3)))
    assert not np.allclose(moved["valid"].pos, states["valid"].pos)
    for st in states.values():
        assert set(np.unique(st.charge)) <= {-1.0, 1.0}
        np.testing.assert_allclose(np.linalg.norm(st.vel, axis=-1), 0.5)
    assert dict(EGNN_STREAM_BLOCKS) == {"train": 10000, "valid": 2000, "test": 2000}


def test_integrate_charged_rejects_mismatched_states():
    bad = ChargedInitialState(np.ones((2, 4)), np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="initial state"):
        integrate_charged(bad, SHORT_CHARGED)


def test_generate_split_from_initial_states_matches_integration():
    states = egnn_initial_states(SHORT_CHARGED, blocks=(("train", 4),))["train"]
    arrays = generate_split(NBodySplit("train", 4, 0), SHORT_CHARGED, 5, 15, initial=states)
    traj = integrate_charged(states, SHORT_CHARGED)
    np.testing.assert_array_equal(arrays.pos_in, traj.pos[:, 5])
    np.testing.assert_array_equal(arrays.target_pos, traj.pos[:, 15])
    with pytest.raises(ValueError, match="initial states"):
        generate_split(NBodySplit("train", 3, 0), SHORT_CHARGED, 5, 15, initial=states)
