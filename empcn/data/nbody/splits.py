"""Standard splits of the N-body task: named simulation streams cut into (input frame → target frame) samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from empcn.data.nbody.charged import ChargedInitialState, integrate_charged, simulate_charged
from empcn.data.nbody.config import INPUT_FRAME, TARGET_FRAME, ChargedConfig, GravityConfig
from empcn.data.nbody.gravity import simulate_gravity


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
            f"generate_split[{split.name}]: config must be ChargedConfig or GravityConfig, got {type(config).__name__}"
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
