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

Modules (one job each): :mod:`.config` (settings and checks), :mod:`.charged` and :mod:`.gravity`
(the simulators), :mod:`.egnn_stream` (EGNN's random stream), :mod:`.splits` (the standard task),
:mod:`.diagnostics` (energies), :mod:`.knn` (neighbour graphs).
"""

from __future__ import annotations

from empcn.data.nbody.charged import ChargedInitialState, charged_initial_state, integrate_charged, simulate_charged
from empcn.data.nbody.config import INPUT_FRAME, TARGET_FRAME, ChargedConfig, GravityConfig, Trajectories
from empcn.data.nbody.diagnostics import energy_charged, energy_gravity
from empcn.data.nbody.egnn_stream import EGNN_STREAM_BLOCKS, EGNN_STREAM_SEED, egnn_initial_states
from empcn.data.nbody.gravity import simulate_gravity
from empcn.data.nbody.knn import knn_graph
from empcn.data.nbody.splits import STANDARD_CHARGED_SPLITS, NBodySplit, SplitArrays, generate_split

SIMULATOR_VERSION = 2
"""Version of the simulated data: bump it whenever the physics, the integrator, the frames, a random
stream or the rounding of any operation change what a given configuration produces. It (not the
source text) identifies the simulator in an N-body cache's fingerprint, so editing a comment changes
no cache; ``tests/data/test_nbody.py`` pins the generated data to EGNN's own generator, so a change
that forgets the bump fails there. 2: the charged forces are summed elementwise in a fixed order
(version 1 summed them with a BLAS product, whose rounding depended on the CPU), and squared
distances of the k-nearest-neighbour graphs are elementwise too: every array is the same on any CPU."""

__all__ = [
    "ChargedConfig",
    "GravityConfig",
    "Trajectories",
    "NBodySplit",
    "SplitArrays",
    "STANDARD_CHARGED_SPLITS",
    "INPUT_FRAME",
    "TARGET_FRAME",
    "SIMULATOR_VERSION",
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
