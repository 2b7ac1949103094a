"""Charged particles: clipped Coulomb forces, seeded initial states, symplectic-Euler integration (physics: the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empcn.data.nbody.config import ChargedConfig, Trajectories, _check_finite, _check_num_sims


class _CoulombForce:
    """Clipped Coulomb forces for S simulations at once, scratch buffers preallocated.

    Layout is particle-major, simulation-minor: positions ``(N, 3·S)`` so every numpy call works
    on long contiguous rows. Pair differences ``x_i − x_j`` (pairs i<j) are row subtractions; the
    net force on particle ``a`` is the sum of its N − 1 pair forces, added one after another in the
    order of the other particle (``b = 0, 1, …``, skipping ``a``; ``x − F`` for ``x + (−F)``, the
    same rounding).

    Only elementwise numpy operations (each one IEEE rounding, whatever the CPU's vector width)
    feed the trajectories: no BLAS product, ``einsum`` or reduction, whose summation order — and so
    whose rounding, which 5,000 chaotic steps amplify — depends on the CPU's kernels. The same
    configuration gives the same bits on any x86-64 or ARM machine.
    """

    def __init__(self, charge: np.ndarray, coulomb_k: float, max_force: float | None) -> None:
        num_sims, n = charge.shape  # charge: (S, N)
        i, j = np.triu_indices(n, k=1)
        p = i.size
        # pairs (a, ·) are consecutive rows: first[a] .. first[a] + n − 1 − a
        self.first = [int(np.searchsorted(i, a)) for a in range(n)]
        # the net force on particle a: its pair forces in order of the other particle b, each row of
        # the pair (a, b) with + when a < b (a is the pair's i) and − when b < a (a is its j)
        pair = np.zeros((n, n), dtype=np.int64)
        pair[i, j] = pair[j, i] = np.arange(p)
        self.plan = [[(int(pair[a, b]), a < b) for b in range(n) if b != a] for a in range(n)]
        # k q_i q_j per pair and simulation: (P, S)
        self.kqq = coulomb_k * charge[:, i].T * charge[:, j].T
        self.max_force = max_force
        self.diff = np.empty((p, 3 * num_sims))
        self.sq = np.empty_like(self.diff)
        self.r2 = np.empty((p, num_sims))
        self.scale = np.empty((p, num_sims))
        self.force = np.empty((n, 3 * num_sims))
        self.shape3 = (p, 3, num_sims)

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        """pos: (N, 3·S) → net force (N, 3·S), a reused buffer."""
        diff, sq, r2, scale, n = self.diff, self.sq, self.r2, self.scale, len(pos)
        for a in range(n - 1):  # x_a − x_b for every b > a, one broadcast subtraction
            np.subtract(pos[a], pos[a + 1 :], out=diff[self.first[a] : self.first[a] + n - 1 - a])
        np.multiply(diff, diff, out=sq)
        sq3 = sq.reshape(self.shape3)
        np.add(sq3[:, 0], sq3[:, 1], out=r2)
        np.add(r2, sq3[:, 2], out=r2)
        np.sqrt(r2, out=scale)
        np.multiply(scale, r2, out=scale)  # r³
        np.divide(self.kqq, scale, out=scale)  # k q_i q_j / r³
        diff3 = diff.reshape(self.shape3)
        np.multiply(diff3, scale[:, None, :], out=diff3)  # pair force on i (−on j)
        for a, terms in enumerate(self.plan):  # N − 1 terms per particle, added in a fixed order
            out = self.force[a]
            (row, plus), rest = terms[0], terms[1:]
            np.copyto(out, diff[row]) if plus else np.negative(diff[row], out=out)
            for row, plus in rest:
                (np.add if plus else np.subtract)(out, diff[row], out=out)
        if self.max_force is not None:
            np.clip(self.force, -self.max_force, self.max_force, out=self.force)
        return self.force


@dataclass(frozen=True)
class ChargedInitialState:
    """Initial conditions of S charged systems: charge (S, N) in {−1, +1}; pos, vel (S, N, 3); float64."""

    charge: np.ndarray
    pos: np.ndarray
    vel: np.ndarray

    def __len__(self) -> int:
        return int(self.charge.shape[0])

    def head(self, count: int) -> ChargedInitialState:
        """The first ``count`` systems."""
        return ChargedInitialState(self.charge[:count], self.pos[:count], self.vel[:count])


def charged_initial_state(num_sims: int, config: ChargedConfig = ChargedConfig(), seed: int = 0) -> ChargedInitialState:
    """Draw ``num_sims`` initial states from ``np.random.default_rng(seed)``: all charges, then all
    positions, then all velocity directions (so a split is one vectorised draw)."""
    _check_num_sims("charged_initial_state", num_sims)
    s, n = int(num_sims), config.num_particles
    rng = np.random.default_rng(seed)
    charge = rng.integers(0, 2, size=(s, n)).astype(np.float64) * 2.0 - 1.0
    pos0 = rng.standard_normal((s, n, 3)) * config.pos_std
    direction = rng.standard_normal((s, n, 3))
    return ChargedInitialState(charge, pos0, _scale_to_norm(direction, config.vel_norm))


def _scale_to_norm(direction: np.ndarray, norm: float) -> np.ndarray:
    """Rescale every ``(…, 3)`` vector to length ``norm`` (its squared length summed x, y, z in that order,
    elementwise: the same bits on any CPU)."""
    x, y, z = direction[..., 0], direction[..., 1], direction[..., 2]
    return direction * (norm / np.sqrt(x * x + y * y + z * z))[..., None]


def simulate_charged(num_sims: int, config: ChargedConfig = ChargedConfig(), seed: int = 0) -> Trajectories:
    """Simulate ``num_sims`` charged-particle systems; see the module docstring for the physics.

    Returns pos/vel (S, T, N, 3) with T = ``config.num_frames`` and charge (S, N) in {−1, +1}.
    About 0.2 µs per simulation-step for N = 5 on one core: the standard 7000-simulation set
    takes ~6.5 s (benchmarks/nbody_generate.py).
    """
    _check_num_sims("simulate_charged", num_sims)
    return integrate_charged(charged_initial_state(num_sims, config, seed), config, f"seed {seed}")


def integrate_charged(
    initial: ChargedInitialState, config: ChargedConfig = ChargedConfig(), label: str = "given initial state"
) -> Trajectories:
    """Integrate charged systems from ``initial`` (frame 0); ``label`` names them in errors."""
    s, n = len(initial), config.num_particles
    if initial.charge.shape != (s, n) or initial.pos.shape != (s, n, 3) or initial.vel.shape != (s, n, 3):
        raise ValueError(
            f"integrate_charged: initial state must be charge (S, {n}), pos/vel (S, {n}, 3) for "
            f"{n} particles, got {initial.charge.shape}, {initial.pos.shape}, {initial.vel.shape}"
        )
    charge = np.asarray(initial.charge, dtype=np.float64)
    pos0 = np.asarray(initial.pos, dtype=np.float64)
    vel0 = np.asarray(initial.vel, dtype=np.float64)

    frames = config.num_frames
    pos_out = np.empty((s, frames, n, 3))
    vel_out = np.empty((s, frames, n, 3))
    pos_out[:, 0], vel_out[:, 0] = pos0, vel0

    # internal layout (N, 3, S), flattened to (N, 3·S) for the force kernel
    x = np.ascontiguousarray(pos0.transpose(1, 2, 0))
    v = np.ascontiguousarray(vel0.transpose(1, 2, 0))
    xf, vf = x.reshape(n, 3 * s), v.reshape(n, 3 * s)
    force = _CoulombForce(charge, config.coulomb_k, config.max_force)
    step = np.empty_like(xf)
    dt = config.dt
    with np.errstate(divide="ignore", invalid="ignore"):
        for frame in range(1, frames):
            for _ in range(config.save_every):
                f = force(xf)
                np.multiply(f, dt, out=step)
                np.add(vf, step, out=vf)  # kick: v_{n+1} = v_n + dt F(x_n)
                np.multiply(vf, dt, out=step)
                np.add(xf, step, out=xf)  # drift: x_{n+1} = x_n + dt v_{n+1}
            pos_out[:, frame] = x.transpose(2, 0, 1)
            vel_out[:, frame] = v.transpose(2, 0, 1)
    _check_finite("integrate_charged", label, pos_out, vel_out)
    return Trajectories(pos=pos_out, vel=vel_out, charge=charge, mass=None, dt_frame=config.dt_frame)
