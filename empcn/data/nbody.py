"""N-body simulators: raw trajectories for the equivariant-dynamics benchmarks.

Two systems, both in 3-D, simulated with numpy and vectorised over simulations: all ``S``
simulations advance together, one Python iteration per time step (no loop over simulations or
particles). Everything is float64 and seeded with ``np.random.default_rng(seed)``. Units are
dimensionless (unit masses, k = G = 1); time is in the same units as ``dt``.

Charged particles (``simulate_charged``)
    ``N = 5`` particles with charges ``q_i = ±1`` (equal probability) and unit masses. Coulomb
    force on particle i::

        F_i = Σ_{j≠i} k q_i q_j (x_i − x_j) / ‖x_i − x_j‖³        (k = 1; like charges repel)

    Each Cartesian component of the net force ``F_i`` is clipped to ``[−max_force, max_force]``
    (100 by default) to tame close encounters; clipping breaks Newton's third law, so momentum is
    only conserved in simulations where no component is clipped. Potential energy
    ``U = Σ_{i<j} k q_i q_j / r_ij``. Initial positions ``~ N(0, pos_std²)`` per coordinate
    (``pos_std = 1``), initial velocities of norm ``vel_norm = 0.5`` in uniformly random
    directions, no walls or box. Integrator (the reference's, see below): symplectic Euler in
    kick-drift order, i.e. a leapfrog whose stored velocities lag the positions by half a step::

        v_{n+1} = v_n + dt · F(x_n)          (unit mass)
        x_{n+1} = x_n + dt · v_{n+1}

    It is symplectic (bounded energy error; momentum conserved to rounding when unclipped) but the energy
    evaluated from the stored ``(x_n, v_n)`` pair carries an O(dt) oscillation.
    ``dt = 0.001``, ``num_steps = 5000``, a frame saved every ``save_every = 100`` steps: frame
    ``t`` is the state ``(x_n, v_n)`` after ``n = t · save_every`` steps, frames ``0 .. 49``, so
    frame 0 is the initial condition and the last frame is step 4900 (the integration stops
    there; nothing after the last saved frame is computed).

Gravity (``simulate_gravity``)
    ``N = 100`` bodies, ``G = 1``, unit masses, Plummer softening ``ε = 0.1``::

        F_i = Σ_{j≠i} G m_i m_j (x_j − x_i) / (‖x_j − x_i‖² + ε²)^{3/2}
        U   = − Σ_{i<j} G m_i m_j / sqrt(‖x_j − x_i‖² + ε²)

    Positions and velocities ``~ N(0, 1)`` per coordinate, then moved to the centre-of-mass frame
    (centre of mass at the origin, zero total momentum). No clipping. Kick-drift-kick leapfrog
    (velocity Verlet; second order, symplectic, velocities synchronised with positions)::

        v_{n+½} = v_n + (dt/2) a(x_n)
        x_{n+1} = x_n + dt v_{n+½}
        v_{n+1} = v_{n+½} + (dt/2) a(x_{n+1})

    Same ``dt`` and frame saving as the charged system. The O(N²) pairwise tensor is
    ``(N, N, 3)`` per simulation, so simulations are processed in chunks of at most
    ``GravityConfig.chunk_bytes`` of scratch memory (8 MiB by default: about 20 simulations at
    N = 100, which stays cache-friendly; larger chunks are slower).

Relation to the reference data (EGNN, Satorras et al. 2021, arXiv 2102.09844, appendix; its
``n_body_system/dataset/synthetic_sim.py`` extends Kipf et al.'s NRI ``ChargedParticlesSim`` to
3-D). That code was read only to match the setting; nothing here is copied from it.

Matches:
    5 particles; charges drawn from {−1, 0, +1} with probabilities (½, 0, ½) there, i.e. ±1 with
    equal probability as here; k = 1 and the same force sign convention; positions ``N(0, 1)``
    (their ``loc_std · (n/5)^{1/3}`` is 1 for n = 5); velocities Gaussian directions scaled to
    norm 0.5; per-component clipping of the net force at ``0.1 / dt = 100``; ``dt = 0.001``;
    5000 steps with a frame every 100; the same kick-then-drift update (their first "half step
    leapfrog" kick is in fact a full ``dt`` kick, which is what makes it symplectic Euler); no
    observation noise; 3000 / 2000 / 2000 train / valid / test simulations and a horizon of
    1000 steps between input and target frame.

Reproduced exactly (the default of ``empcn lift --dataset nbody``):
    * Initial states. :func:`egnn_initial_states` replays the reference's random stream (numpy's
      legacy ``RandomState`` seeded 43; per simulation the charges, positions, velocity directions
      and two discarded noise arrays; 10,000 training then 2,000 validation then 2,000 test
      simulations, of which the papers keep the first 3,000 training ones). Integrated here, the
      stored frames equal the reference's to ~1e-10 (rounding differences grow through close
      encounters; the worst of 30 simulations checked differed by 4e-6, far below float32).
    * Frames. The reference writes its first saved state at step 100 (its frame counter starts at 0
      and the initial state is overwritten), so its "frames 30 → 40" are steps 3100 → 4100. Here
      frame t is exactly step 100·t (50 frames, frame 0 = initial state), so the standard task is
      ``INPUT_FRAME = 31 → TARGET_FRAME = 41``.

Deliberate differences:
    * No box. The reference reflects only the *initial* positions off walls at ±5 (its in-loop
      wall clamp is commented out; NRI's 2-D original keeps it); that affects a coordinate with
      probability ~6e-7 and none of the 5,000 simulations the papers use. Here there are no walls.
    * Pair distances are computed from explicit differences, not from ``|a|² + |b|² − 2a·b``,
      which avoids cancellation for close pairs (the source of the ~1e-10 differences above).
    * :func:`simulate_charged` with a seed (``--initial-states seeded``, and the tests) draws each
      split from its own ``default_rng`` (PCG64) stream, all initial conditions at once: the same
      distribution, not the same systems.

The gravity system has no counterpart in the reference; its setting is the one given above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ChargedConfig",
    "GravityConfig",
    "Trajectories",
    "NBodySplit",
    "SplitArrays",
    "STANDARD_CHARGED_SPLITS",
    "INPUT_FRAME",
    "TARGET_FRAME",
    "simulate_charged",
    "integrate_charged",
    "charged_initial_state",
    "egnn_initial_states",
    "ChargedInitialState",
    "EGNN_STREAM_SEED",
    "EGNN_STREAM_BLOCKS",
    "simulate_gravity",
    "energy_charged",
    "energy_gravity",
    "knn_graph",
    "generate_split",
]

INPUT_FRAME = 31
"""Default input frame of the standard task: step 3100, the reference's saved "frame 30"."""
TARGET_FRAME = 41
"""Default target frame of the standard task: step 4100 (1000 steps after the input), the reference's "frame 40"."""


# --------------------------------------------------------------------------- configuration


def _check_stepping(owner: str, num_particles: int, dt: float, num_steps: int, save_every: int) -> None:
    """Validate the fields shared by both configs; raise a one-line ValueError naming ``owner``."""
    if not isinstance(num_particles, (int, np.integer)) or num_particles < 2:
        raise ValueError(f"{owner}: num_particles must be an integer >= 2, got {num_particles!r}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"{owner}: dt must be a finite positive number, got {dt!r}")
    for name, value in (("num_steps", num_steps), ("save_every", save_every)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    if num_steps % save_every != 0:
        raise ValueError(
            f"{owner}: num_steps ({num_steps}) must be a multiple of save_every ({save_every})"
        )


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}: {name} must be a finite positive number, got {value!r}")


def _check_nonnegative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")


class _SavedFrames:
    """Frame bookkeeping shared by the simulator configs (which define dt, num_steps, save_every)."""

    dt: float
    num_steps: int
    save_every: int

    @property
    def num_frames(self) -> int:
        """Number of saved frames (frame 0 is the initial state)."""
        return self.num_steps // self.save_every

    @property
    def dt_frame(self) -> float:
        """Simulation time between consecutive saved frames."""
        return self.dt * self.save_every


@dataclass(frozen=True)
class ChargedConfig(_SavedFrames):
    """Charged-particle system (EGNN / NRI setting by default).

    ``num_frames = num_steps // save_every`` frames are saved, frame t at step ``t · save_every``.
    ``max_force``: per-component clip of the net force (None disables clipping).
    The force kernel is O(N³) per step (dense pair-incidence products), meant for small N.
    """

    num_particles: int = 5
    coulomb_k: float = 1.0
    dt: float = 0.001
    num_steps: int = 5000
    save_every: int = 100
    pos_std: float = 1.0
    vel_norm: float = 0.5
    max_force: float | None = 100.0

    def __post_init__(self) -> None:
        owner = "ChargedConfig"
        _check_stepping(owner, self.num_particles, self.dt, self.num_steps, self.save_every)
        _check_positive(owner, coulomb_k=self.coulomb_k, pos_std=self.pos_std)
        _check_nonnegative(owner, vel_norm=self.vel_norm)
        if self.max_force is not None and not (
            isinstance(self.max_force, (int, float)) and self.max_force > 0
        ):
            raise ValueError(f"{owner}: max_force must be positive or None, got {self.max_force!r}")


@dataclass(frozen=True)
class GravityConfig(_SavedFrames):
    """Softened self-gravitating system, kick-drift-kick leapfrog.

    ``chunk_bytes`` bounds the scratch memory of the O(N²) force evaluation: simulations are
    integrated in chunks of ``max(1, chunk_bytes // (40 N²))`` (five float64 ``(N, N)`` planes
    per simulation). It does not change the result.
    """

    num_particles: int = 100
    gravitational_constant: float = 1.0
    mass: float = 1.0
    softening: float = 0.1
    dt: float = 0.001
    num_steps: int = 5000
    save_every: int = 100
    pos_std: float = 1.0
    vel_std: float = 1.0
    chunk_bytes: int = 8 * 2**20

    def __post_init__(self) -> None:
        owner = "GravityConfig"
        _check_stepping(owner, self.num_particles, self.dt, self.num_steps, self.save_every)
        _check_positive(
            owner,
            gravitational_constant=self.gravitational_constant,
            mass=self.mass,
            pos_std=self.pos_std,
        )
        _check_nonnegative(owner, softening=self.softening, vel_std=self.vel_std)
        if not isinstance(self.chunk_bytes, (int, np.integer)) or self.chunk_bytes < 1:
            raise ValueError(f"{owner}: chunk_bytes must be a positive integer, got {self.chunk_bytes!r}")


@dataclass(frozen=True)
class Trajectories:
    """Saved frames of ``S`` simulations of ``N`` particles over ``T`` frames.

    pos, vel: (S, T, N, 3) float64; frame t is the state after ``t · save_every`` steps.
    charge: (S, N) float64 for the charged system, else None.
    mass: (S, N) float64 for the gravity system, else None.
    dt_frame: simulation time between saved frames.
    """

    pos: np.ndarray
    vel: np.ndarray
    charge: np.ndarray | None
    mass: np.ndarray | None
    dt_frame: float


# --------------------------------------------------------------------------- charged system


def _check_num_sims(fn: str, num_sims: int) -> None:
    if not isinstance(num_sims, (int, np.integer)) or isinstance(num_sims, bool) or num_sims < 1:
        raise ValueError(f"{fn}: num_sims must be a positive integer, got {num_sims!r}")


class _CoulombForce:
    """Clipped Coulomb forces for S simulations at once, scratch buffers preallocated.

    Layout is particle-major, simulation-minor: positions ``(N, 3·S)`` so every numpy call works
    on long contiguous rows. Pair differences come from one small matrix product with the
    ``(P, N)`` pair-incidence matrix ``D`` (row p = e_i − e_j for pair i<j), and forces are
    scattered back with ``Dᵀ``; this is exact (entries ±1/0) and far cheaper than fancy indexing.
    """

    def __init__(self, charge: np.ndarray, coulomb_k: float, max_force: float | None) -> None:
        num_sims, n = charge.shape  # charge: (S, N)
        i, j = np.triu_indices(n, k=1)
        p = i.size
        self.incidence = np.zeros((p, n))
        self.incidence[np.arange(p), i] = 1.0
        self.incidence[np.arange(p), j] = -1.0
        self.incidence_t = np.ascontiguousarray(self.incidence.T)
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
        diff, sq, r2, scale = self.diff, self.sq, self.r2, self.scale
        np.matmul(self.incidence, pos, out=diff)  # x_i − x_j per pair
        np.multiply(diff, diff, out=sq)
        sq3 = sq.reshape(self.shape3)
        np.add(sq3[:, 0], sq3[:, 1], out=r2)
        np.add(r2, sq3[:, 2], out=r2)
        np.sqrt(r2, out=scale)
        np.multiply(scale, r2, out=scale)  # r³
        np.divide(self.kqq, scale, out=scale)  # k q_i q_j / r³
        diff3 = diff.reshape(self.shape3)
        np.multiply(diff3, scale[:, None, :], out=diff3)  # pair force on i (−on j)
        np.matmul(self.incidence_t, diff, out=self.force)
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

    def head(self, count: int) -> "ChargedInitialState":
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
    """Rescale every ``(…, 3)`` vector to length ``norm``."""
    return direction * (norm / np.sqrt(np.einsum("...c,...c->...", direction, direction)))[..., None]


EGNN_STREAM_SEED = 43
"""Seed of EGNN's "nbody_small" generator run (``generate_dataset.py --seed 43 --sufix small``)."""
EGNN_STREAM_BLOCKS: tuple[tuple[str, int], ...] = (("train", 10000), ("valid", 2000), ("test", 2000))
"""Simulations that run draws, in order: 10,000 training (the papers keep the first 3,000), then
2,000 validation and 2,000 test simulations."""


def egnn_initial_states(
    config: ChargedConfig = ChargedConfig(),
    seed: int = EGNN_STREAM_SEED,
    blocks: tuple[tuple[str, int], ...] = EGNN_STREAM_BLOCKS,
) -> dict[str, ChargedInitialState]:
    """The initial states of EGNN's N-body data set, drawn in its generator's order.

    EGNN's generator seeds numpy's legacy global ``RandomState`` once and then, simulation after
    simulation and block after block (``blocks``), draws the charges as ``choice([−1, 0, 1],
    size=(N, 1), p=[½, 0, ½])``, the positions as ``randn(3, N) · pos_std`` and the velocity
    directions as ``randn(3, N)`` (coordinate-major), the latter rescaled to norm ``vel_norm``; after
    integrating it draws observation noise for its position and velocity arrays (``2 · 49 · 3 · N``
    normals, multiplied by a noise variance of 0), which advances the stream all the same. This
    replays that sequence with a ``RandomState(seed)`` of our own, so the returned states are the
    reference's to the last bit (``tests/data/test_nbody.py`` checks the first systems against values
    EGNN's own generator wrote). Only the draws are sequential (3 small calls per simulation, ~0.1 s for 14,000).
    Returns one :class:`ChargedInitialState` per block name.
    """
    n = config.num_particles
    rs = np.random.RandomState(seed)
    charge_values = np.array([-1.0, 0.0, 1.0])
    noise_draws = 2 * (config.num_frames - 1) * 3 * n  # its arrays hold frames 1 .. num_frames − 1
    out: dict[str, ChargedInitialState] = {}
    for name, count in blocks:
        _check_num_sims(f"egnn_initial_states[{name}]", count)
        charge = np.empty((count, n))
        pos = np.empty((count, n, 3))
        direction = np.empty((count, n, 3))
        for k in range(count):
            charge[k] = rs.choice(charge_values, size=(n, 1), p=[0.5, 0.0, 0.5])[:, 0]
            pos[k] = rs.randn(3, n).T * config.pos_std
            direction[k] = rs.randn(3, n).T
            rs.randn(noise_draws)  # the reference adds observation noise × 0 to its 2 trajectory arrays
        out[name] = ChargedInitialState(charge, pos, _scale_to_norm(direction, config.vel_norm))
    return out


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


def _check_finite(fn: str, label: str, pos: np.ndarray, vel: np.ndarray) -> None:
    bad = ~(np.isfinite(pos).all(axis=(1, 2, 3)) & np.isfinite(vel).all(axis=(1, 2, 3)))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise FloatingPointError(
            f"{fn} ({label}): non-finite state in {idx.size} simulation(s), first index {idx[0]} "
            "(two particles coincided; lower dt or enable force clipping)"
        )


# --------------------------------------------------------------------------- gravity system


class _PlummerAccel:
    """Softened gravitational accelerations for a chunk of simulations, buffers preallocated.

    Layout (N, 3, S): ``diff[i, j] = x_j − x_i`` is (N, N, 3, S). The self term is removed by
    setting the diagonal squared distance to +inf (works for zero softening too).
    """

    def __init__(self, mass: np.ndarray, gravitational_constant: float, softening: float) -> None:
        n, s = mass.shape  # mass: (N, S)
        self.mass = mass[None, :, :]  # m_j broadcast over i
        self.g = gravitational_constant
        self.eps2 = softening * softening
        self.diff = np.empty((n, n, 3, s))
        self.r2 = np.empty((n, n, s))
        self.tmp = np.empty((n, n, s))
        self.acc = np.empty((n, 3, s))
        self.n = n

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (N, 3, S) → accelerations (N, 3, S), a reused buffer."""
        diff, r2, tmp = self.diff, self.r2, self.tmp
        np.subtract(x[None, :, :, :], x[:, None, :, :], out=diff)
        np.multiply(diff[:, :, 0], diff[:, :, 0], out=r2)
        for c in (1, 2):
            np.multiply(diff[:, :, c], diff[:, :, c], out=tmp)
            np.add(r2, tmp, out=r2)
        np.add(r2, self.eps2, out=r2)
        r2.reshape(self.n * self.n, -1)[:: self.n + 1] = np.inf  # no self-interaction
        np.sqrt(r2, out=tmp)
        np.multiply(tmp, r2, out=tmp)  # (r² + ε²)^{3/2}
        np.divide(self.mass, tmp, out=tmp)  # m_j / (r² + ε²)^{3/2}
        np.multiply(diff, tmp[:, :, None, :], out=diff)
        np.sum(diff, axis=1, out=self.acc)
        np.multiply(self.acc, self.g, out=self.acc)
        return self.acc


def simulate_gravity(num_sims: int, config: GravityConfig = GravityConfig(), seed: int = 0) -> Trajectories:
    """Simulate ``num_sims`` softened gravitational N-body systems (module docstring: physics).

    Initial conditions for all simulations are drawn first (positions, then velocities) and moved
    to the centre-of-mass frame; integration then runs chunk by chunk to bound memory.
    Returns pos/vel (S, T, N, 3) and mass (S, N). Roughly 80 µs per simulation-step at N = 100,
    i.e. ~0.4 s per 5000-step simulation on one core.
    """
    _check_num_sims("simulate_gravity", num_sims)
    s, n = int(num_sims), config.num_particles
    rng = np.random.default_rng(seed)
    mass = np.full((s, n), float(config.mass))
    pos0 = rng.standard_normal((s, n, 3)) * config.pos_std
    vel0 = rng.standard_normal((s, n, 3)) * config.vel_std
    total = mass.sum(axis=1)[:, None, None]
    pos0 -= (mass[..., None] * pos0).sum(axis=1, keepdims=True) / total
    vel0 -= (mass[..., None] * vel0).sum(axis=1, keepdims=True) / total

    frames = config.num_frames
    pos_out = np.empty((s, frames, n, 3))
    vel_out = np.empty((s, frames, n, 3))
    pos_out[:, 0], vel_out[:, 0] = pos0, vel0
    chunk = max(1, min(s, config.chunk_bytes // (40 * n * n)))
    half_dt, dt = 0.5 * config.dt, config.dt
    for lo in range(0, s, chunk):
        hi = min(s, lo + chunk)
        x = np.ascontiguousarray(pos0[lo:hi].transpose(1, 2, 0))  # (N, 3, s)
        v = np.ascontiguousarray(vel0[lo:hi].transpose(1, 2, 0))
        accel = _PlummerAccel(
            np.ascontiguousarray(mass[lo:hi].T), config.gravitational_constant, config.softening
        )
        step = np.empty_like(x)
        a = accel(x)
        for frame in range(1, frames):
            for _ in range(config.save_every):
                np.multiply(a, half_dt, out=step)
                np.add(v, step, out=v)  # kick ½
                np.multiply(v, dt, out=step)
                np.add(x, step, out=x)  # drift
                a = accel(x)
                np.multiply(a, half_dt, out=step)
                np.add(v, step, out=v)  # kick ½
            pos_out[lo:hi, frame] = x.transpose(2, 0, 1)
            vel_out[lo:hi, frame] = v.transpose(2, 0, 1)
    _check_finite("simulate_gravity", f"seed {seed}", pos_out, vel_out)
    return Trajectories(pos=pos_out, vel=vel_out, charge=None, mass=mass, dt_frame=config.dt_frame)


# --------------------------------------------------------------------------- diagnostics


def _check_state(fn: str, pos: np.ndarray, vel: np.ndarray, per_particle: np.ndarray, what: str) -> None:
    if pos.ndim not in (3, 4) or pos.shape[-1] != 3:
        raise ValueError(f"{fn}: pos must be (S, N, 3) or (S, T, N, 3), got shape {pos.shape}")
    if vel.shape != pos.shape:
        raise ValueError(f"{fn}: vel shape {vel.shape} does not match pos shape {pos.shape}")
    expected = (pos.shape[0], pos.shape[-2])
    if per_particle.shape != expected:
        raise ValueError(f"{fn}: {what} must be (S, N) = {expected}, got shape {per_particle.shape}")


def _per_frame(fn, pos: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Apply ``fn(pos (S,N,3), vel (S,N,3)) -> (S,)`` per frame when pos is (S, T, N, 3)."""
    if pos.ndim == 3:
        return fn(pos, vel)
    return np.stack([fn(pos[:, t], vel[:, t]) for t in range(pos.shape[1])], axis=1)


def energy_charged(
    pos: np.ndarray, vel: np.ndarray, charge: np.ndarray, coulomb_k: float = 1.0
) -> np.ndarray:
    """Total energy ``½ Σ v² + Σ_{i<j} k q_i q_j / r_ij`` (unit masses).

    pos, vel: (S, N, 3) or (S, T, N, 3); charge: (S, N). Returns (S,) or (S, T).
    Memory is O(S N²) per frame (frames are processed one at a time).
    """
    pos, vel, charge = (np.asarray(a, dtype=np.float64) for a in (pos, vel, charge))
    _check_state("energy_charged", pos, vel, charge, "charge")
    i, j = np.triu_indices(pos.shape[-2], k=1)
    kqq = coulomb_k * charge[:, i] * charge[:, j]  # (S, P)

    def one(p: np.ndarray, v: np.ndarray) -> np.ndarray:
        r = np.sqrt(((p[:, i] - p[:, j]) ** 2).sum(-1))
        return 0.5 * (v * v).sum(axis=(1, 2)) + (kqq / r).sum(-1)

    return _per_frame(one, pos, vel)


def energy_gravity(
    pos: np.ndarray, vel: np.ndarray, mass: np.ndarray, softening: float, gravitational_constant: float = 1.0
) -> np.ndarray:
    """Total energy ``½ Σ m v² − Σ_{i<j} G m_i m_j / sqrt(r_ij² + ε²)`` (Plummer potential).

    pos, vel: (S, N, 3) or (S, T, N, 3); mass: (S, N). Returns (S,) or (S, T).
    """
    pos, vel, mass = (np.asarray(a, dtype=np.float64) for a in (pos, vel, mass))
    _check_state("energy_gravity", pos, vel, mass, "mass")
    i, j = np.triu_indices(pos.shape[-2], k=1)
    gmm = gravitational_constant * mass[:, i] * mass[:, j]  # (S, P)
    eps2 = float(softening) ** 2

    def one(p: np.ndarray, v: np.ndarray) -> np.ndarray:
        r = np.sqrt(((p[:, i] - p[:, j]) ** 2).sum(-1) + eps2)
        return 0.5 * (mass * (v * v).sum(-1)).sum(-1) - (gmm / r).sum(-1)

    return _per_frame(one, pos, vel)


def knn_graph(pos: np.ndarray, k: int) -> np.ndarray:
    """Directed k-nearest-neighbour edges for S point sets, no self loops.

    pos: (S, N, 3). Returns (S, N·k, 2) int64 rows ``[neighbour, node]``: node-major (rows
    ``node·k .. node·k + k − 1`` belong to ``node``), neighbours by increasing distance, ties
    broken by lower index.
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"knn_graph: pos must be (S, N, 3), got shape {pos.shape}")
    s, n, _ = pos.shape
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"knn_graph: k must be an integer in [1, N-1] = [1, {n - 1}], got {k!r}")
    diff = pos[:, None, :, :] - pos[:, :, None, :]
    d2 = np.einsum("sijc,sijc->sij", diff, diff)
    d2.reshape(s, n * n)[:, :: n + 1] = np.inf
    neighbours = np.argsort(d2, axis=-1, kind="stable")[..., :k]  # (S, N, k)
    nodes = np.broadcast_to(np.arange(n)[None, :, None], neighbours.shape)
    return np.stack([neighbours, nodes], axis=-1).reshape(s, n * k, 2).astype(np.int64)


# --------------------------------------------------------------------------- standard splits


@dataclass(frozen=True)
class NBodySplit:
    """A named split: how many simulations and the seed of its own random stream."""

    name: str
    num_sims: int
    seed: int


STANDARD_CHARGED_SPLITS: tuple[NBodySplit, ...] = (
    NBodySplit("train", 3000, 43),
    NBodySplit("valid", 2000, 44),
    NBodySplit("test", 2000, 45),
)
"""EGNN-sized charged splits. With the EGNN stream (the lift's default for the charged system) each
split is the first ``num_sims`` simulations of the block of the same name in
:data:`EGNN_STREAM_BLOCKS` and the seeds are not used; with seeded initial states (gravity, or
``--initial-states seeded``) seeds 43/44/45 give three independent streams."""


@dataclass(frozen=True)
class SplitArrays:
    """One split as (input frame → target frame) samples.

    pos_in, vel_in, target_pos: (S, N, 3) float64; charge (charged system) or mass (gravity):
    (S, N) float64, the other None. ``horizon`` is the simulation time from input to target.
    """

    name: str
    pos_in: np.ndarray
    vel_in: np.ndarray
    charge: np.ndarray | None
    mass: np.ndarray | None
    target_pos: np.ndarray
    horizon: float


def generate_split(
    split: NBodySplit,
    config: ChargedConfig | GravityConfig = ChargedConfig(),
    frame_in: int = INPUT_FRAME,
    frame_target: int = TARGET_FRAME,
    initial: ChargedInitialState | None = None,
) -> SplitArrays:
    """Simulate ``split`` with ``config`` (its type picks the system) and cut input/target frames.

    ``initial``: the split's initial states (charged only, e.g. from :func:`egnn_initial_states`);
    ``None`` draws them from ``split.seed``.
    """
    if isinstance(config, ChargedConfig):
        simulate = simulate_charged
    elif isinstance(config, GravityConfig):
        simulate = simulate_gravity
    else:
        raise TypeError(
            f"generate_split[{split.name}]: config must be ChargedConfig or GravityConfig, "
            f"got {type(config).__name__}"
        )
    frames = config.num_frames
    if not (0 <= frame_in < frame_target < frames):
        raise ValueError(
            f"generate_split[{split.name}]: need 0 <= frame_in ({frame_in}) < frame_target "
            f"({frame_target}) < num_frames ({frames})"
        )
    if initial is None:
        traj = simulate(split.num_sims, config, split.seed)
    elif isinstance(config, ChargedConfig):
        if len(initial) != split.num_sims:
            raise ValueError(
                f"generate_split[{split.name}]: {len(initial)} initial states for {split.num_sims} simulations"
            )
        traj = integrate_charged(initial, config, f"split {split.name}")
    else:
        raise TypeError(f"generate_split[{split.name}]: initial states are only supported for the charged system")
    return SplitArrays(
        name=split.name,
        pos_in=np.ascontiguousarray(traj.pos[:, frame_in]),
        vel_in=np.ascontiguousarray(traj.vel[:, frame_in]),
        charge=traj.charge,
        mass=traj.mass,
        target_pos=np.ascontiguousarray(traj.pos[:, frame_target]),
        horizon=(frame_target - frame_in) * traj.dt_frame,
    )
