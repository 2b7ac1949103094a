"""N-body simulator settings: frames of the standard task, the two systems' configs, trajectories, input checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INPUT_FRAME = 31
"""Default input frame of the standard task: step 3100, the reference's saved "frame 30"."""
TARGET_FRAME = 41
"""Default target frame of the standard task: step 4100 (1000 steps after the input), the reference's "frame 40"."""


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
        raise ValueError(f"{owner}: num_steps ({num_steps}) must be a multiple of save_every ({save_every})")


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
        if self.max_force is not None and not (isinstance(self.max_force, (int, float)) and self.max_force > 0):
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


def _check_num_sims(fn: str, num_sims: int) -> None:
    if not isinstance(num_sims, (int, np.integer)) or isinstance(num_sims, bool) or num_sims < 1:
        raise ValueError(f"{fn}: num_sims must be a positive integer, got {num_sims!r}")


def _check_finite(fn: str, label: str, pos: np.ndarray, vel: np.ndarray) -> None:
    bad = ~(np.isfinite(pos).all(axis=(1, 2, 3)) & np.isfinite(vel).all(axis=(1, 2, 3)))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise FloatingPointError(
            f"{fn} ({label}): non-finite state in {idx.size} simulation(s), first index {idx[0]} "
            "(two particles coincided; lower dt or enable force clipping)"
        )
