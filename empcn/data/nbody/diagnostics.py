"""Diagnostics of simulated trajectories: total energies per frame (tests and benchmarks check conservation)."""

from __future__ import annotations

import numpy as np


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


def energy_charged(pos: np.ndarray, vel: np.ndarray, charge: np.ndarray, coulomb_k: float = 1.0) -> np.ndarray:
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
