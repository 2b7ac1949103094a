"""EGNN's N-body data set: its generator's random stream replayed, so the initial states are the reference's."""

from __future__ import annotations

import numpy as np

from empcn.data.nbody.charged import ChargedInitialState, _scale_to_norm
from empcn.data.nbody.config import ChargedConfig, _check_num_sims

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
