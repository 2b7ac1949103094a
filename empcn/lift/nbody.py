"""Lift N-body simulations: (input frame → target frame) samples → CW-complexes → HDF5 shards + manifest.

One sample per simulation. Its 0-cells are the particles at the input frame (``nodes/pos``) with
their velocities (``nodes/vel``), charges (``nodes/charge``, charged system) or masses
(``nodes/mass``, gravity) and the positions to predict (``nodes/target_pos``, the target frame), all
float32 in simulation units. Its 1-cells are the edges of a graph on the particles and its 2-cells
the triangles (3-cliques) of that graph:

* ``cells="full"`` (charged default): the fully connected graph, i.e. 10 edges and 10 triangles for 5
  bodies (the chordless cycles of K5 are exactly its triangles; see docs/datasets.md, "N-body");
* ``cells="knn"`` (gravity default): the symmetrised k-nearest-neighbour graph of the input
  positions (an edge where either particle is among the other's k nearest, k = 6), computed from
  the stored float32 positions so a reader can rebuild it.

Neighbourhoods and invariants come from :func:`empcn.lift.assemble.complex_shard`, exactly as for
QM9. The splits are simulated first (one numpy process per split, each with its own seed), the cache
holds the samples of every split in config order (train, valid, test by default), and
``cache.splits[name]`` maps each split to its contiguous sample range.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from empcn.data import nbody as sim
from empcn.data.nbody import (
    INPUT_FRAME,
    STANDARD_CHARGED_SPLITS,
    TARGET_FRAME,
    ChargedConfig,
    GravityConfig,
    NBodySplit,
    SplitArrays,
)
from empcn.lift import pipeline
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option

if TYPE_CHECKING:
    from empcn.cache import ShardContent

__all__ = [
    "NBodyCells",
    "NBodyLiftConfig",
    "NBodySamples",
    "SPEC",
    "build_shard",
    "full_adjacency",
    "gather_samples",
    "graph_cells",
    "knn_adjacency",
    "lift_nbody",
    "simulate_splits",
    "source_fingerprint",
    "system_cells",
]


SystemKind = Literal["charged", "gravity"]
CellKind = Literal["full", "knn"]
InitialStates = Literal["egnn", "seeded"]

UNITS = "simulation units"
_KNN_CHUNK = 64  # samples per knn_graph call: its (S, N, N, 3) float64 scratch stays ~15 MB at N = 100
_EDGE_BLOCK = 1 << 16  # edges per block of the (E, N) common-neighbour mask in the triangle search


# ----------------------------------------------------------------------------------------------
# configuration


def standard_splits(sizes: tuple[int, int, int] | None = None) -> tuple[NBodySplit, ...]:
    """The standard train/valid/test splits (seeds as STANDARD_CHARGED_SPLITS), optionally resized."""
    if sizes is None:
        return STANDARD_CHARGED_SPLITS
    return tuple(NBodySplit(s.name, int(n), s.seed) for s, n in zip(STANDARD_CHARGED_SPLITS, sizes))


@dataclass(frozen=True)
class NBodyLiftConfig(LiftConfig):
    """Every parameter of an N-body lift (all but the run options recorded in the manifest).

    ``splits``: simulated in this order; their samples are stored in this order too.
    ``simulator``: ``None`` = the system's default :class:`ChargedConfig` / :class:`GravityConfig`
    (a shorter config makes fast tests). ``cells``: ``None`` = ``"full"`` for charged, ``"knn"`` for
    gravity. ``k``: neighbours per particle for ``"knn"``. ``max_ring``: 3 = triangles become 2-cells,
    anything below 3 = no 2-cells (longer chordless cycles are not supported).
    """

    DATASET = "nbody"
    SHARD_SIZE = 1000
    TAKES_STRICT = False  # simulated: every sample is lifted

    system: SystemKind = "charged"
    splits: tuple[NBodySplit, ...] = STANDARD_CHARGED_SPLITS
    simulator: ChargedConfig | GravityConfig | None = None
    frame_in: int = INPUT_FRAME
    frame_target: int = TARGET_FRAME
    cells: CellKind | None = None
    k: int = 6
    max_ring: int = 3
    initial_states: InitialStates | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = self.bad
        if self.system not in get_args(SystemKind):
            raise bad(f"system must be 'charged' or 'gravity', got {self.system!r}")
        want = ChargedConfig if self.system == "charged" else GravityConfig
        if self.simulator is not None and not isinstance(self.simulator, want):
            raise bad(f"system {self.system!r} needs a {want.__name__}, got {type(self.simulator).__name__}")
        if self.cells not in (None, *get_args(CellKind)):
            raise bad(f"cells must be 'full' or 'knn', got {self.cells!r}")
        if not self.splits:
            raise bad("splits must name at least one split")
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise bad(f"split names must be distinct non-empty strings, got {names}")
        for s in self.splits:
            if not isinstance(s.num_sims, (int, np.integer)) or isinstance(s.num_sims, bool) or s.num_sims < 1:
                raise bad(f"split {s.name!r}: num_sims must be a positive integer, got {s.num_sims!r}")
        if self.initial_states not in (None, *get_args(InitialStates)):
            raise bad(f"initial_states must be 'egnn' or 'seeded', got {self.initial_states!r}")
        if self.initial_source == "egnn":
            if self.system != "charged":
                raise bad("initial_states 'egnn' exists only for the charged system (EGNN's data set)")
            blocks = dict(sim.EGNN_STREAM_BLOCKS)
            for s in self.splits:
                if s.name not in blocks or s.num_sims > blocks[s.name]:
                    raise bad(
                        f"split {s.name!r} with {s.num_sims} simulations is not part of EGNN's stream "
                        f"(blocks {blocks}); use initial_states='seeded' (--initial-states seeded)"
                    )
        frames = self.simulator_config.num_frames
        if not 0 <= self.frame_in < self.frame_target < frames:
            raise bad(f"need 0 <= frame_in ({self.frame_in}) < frame_target ({self.frame_target}) < {frames} frames")
        n = self.simulator_config.num_particles
        if self.cell_kind == "knn" and not (isinstance(self.k, (int, np.integer)) and 1 <= self.k <= n - 1):
            raise bad(f"k must be an integer in [1, {n - 1}] for {n} particles, got {self.k!r}")
        if not isinstance(self.max_ring, (int, np.integer)) or self.max_ring > 3:
            raise bad(f"max_ring must be an integer <= 3 (3 = triangles, < 3 = no 2-cells), got {self.max_ring!r}")

    @property
    def simulator_config(self) -> ChargedConfig | GravityConfig:
        """The simulator configuration in effect."""
        if self.simulator is not None:
            return self.simulator
        return ChargedConfig() if self.system == "charged" else GravityConfig()

    @property
    def initial_source(self) -> InitialStates:
        """Where the initial states come from ("egnn" or "seeded")."""
        if self.initial_states is not None:
            return self.initial_states
        return "egnn" if self.system == "charged" else "seeded"

    @property
    def cell_kind(self) -> CellKind:
        """The 1-cell graph in effect ("full" or "knn")."""
        if self.cells is not None:
            return self.cells
        return "full" if self.system == "charged" else "knn"

    def recorded_params(self) -> dict[str, Any]:
        """The parameters that change the bytes of the cache."""
        return {
            "system": self.system,
            "splits": [asdict(s) for s in self.splits],
            "initial_states": self.initial_source,
            "simulator": asdict(self.simulator_config),
            "frame_in": self.frame_in,
            "frame_target": self.frame_target,
            "cells": self.cell_kind,
            "k": self.k if self.cell_kind == "knn" else None,
            "max_ring": self.max_ring,
            "shard_size": self.shard_size,
        }

    def source_info(self) -> dict[str, Any]:
        """The simulator the data comes from and its fingerprint (:func:`source_fingerprint`)."""
        return {
            "kind": "simulation",
            "name": f"empcn.data.nbody.{_simulate_name(self)}",
            "fingerprint": source_fingerprint(self),
        }

    def progress_label(self) -> str:
        return f"lift nbody ({self.system})"


# ----------------------------------------------------------------------------------------------
# cells (vectorised over systems)


@dataclass(frozen=True)
class NBodyCells:
    """Edges and triangles of S graphs, CSR by system, indices local to each system.

    edge_index: (E, 2) int64, i < j, sorted lexicographically within a system; edge_offsets (S+1,).
    triangles: (T, 3) int64 vertices i < j < k in cyclic order, sorted lexicographically;
    triangle_edges: (T, 3) int64 local edges (i,j), (j,k), (k,i) — the edge leaving each vertex slot;
    triangle_offsets (S+1,).
    """

    edge_index: np.ndarray
    edge_offsets: np.ndarray
    triangles: np.ndarray
    triangle_edges: np.ndarray
    triangle_offsets: np.ndarray


def full_adjacency(num_systems: int, num_particles: int) -> np.ndarray:
    """(S, N, N) bool: every pair of distinct particles."""
    adj = np.ones((num_systems, num_particles, num_particles), dtype=bool)
    adj[:, np.arange(num_particles), np.arange(num_particles)] = False
    return adj


def knn_adjacency(pos: np.ndarray, k: int) -> np.ndarray:
    """(S, N, N) bool symmetric: i ~ j when either is among the other's k nearest (``knn_graph``'s ties)."""
    s, n, _ = pos.shape
    adj = np.zeros((s, n, n), dtype=bool)
    for lo in range(0, s, _KNN_CHUNK):
        hi = min(s, lo + _KNN_CHUNK)
        rows = sim.knn_graph(pos[lo:hi], k)  # (chunk, N k, 2) [neighbour, node]
        system = np.repeat(np.arange(lo, hi), rows.shape[1])
        adj[system, rows[..., 0].ravel(), rows[..., 1].ravel()] = True
    return adj | adj.transpose(0, 2, 1)


def graph_cells(adj: np.ndarray, max_ring: int = 3) -> NBodyCells:
    """Edges (i < j) and, if ``max_ring >= 3``, triangles of the S graphs ``adj: (S, N, N)`` bool symmetric."""
    s, n, _ = adj.shape
    sys_, i, j = np.nonzero(np.triu(adj, k=1))  # C order: sorted by (system, i, j)
    edge_offsets = _offsets(np.bincount(sys_, minlength=s))
    edge_index = np.stack([i, j], axis=1).astype(np.int64)
    if max_ring < 3 or sys_.size == 0:
        empty = np.zeros((0, 3), dtype=np.int64)
        return NBodyCells(edge_index, edge_offsets, empty, empty, np.zeros(s + 1, dtype=np.int64))
    key = (sys_ * n + i) * n + j  # ascending: the lookup table of (system, i, j) -> global edge
    later = np.arange(n)[None, :]
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for lo in range(0, key.size, _EDGE_BLOCK):
        hi = min(key.size, lo + _EDGE_BLOCK)
        common = adj[sys_[lo:hi], i[lo:hi]] & adj[sys_[lo:hi], j[lo:hi]] & (later > j[lo:hi, None])
        e, third = np.nonzero(common)  # sorted by edge then third vertex
        found.append((e + lo, third))
    e = np.concatenate([f[0] for f in found])
    third = np.concatenate([f[1] for f in found]).astype(np.int64)
    ts, ti, tj = sys_[e], i[e], j[e]
    e_jk = np.searchsorted(key, (ts * n + tj) * n + third)
    e_ik = np.searchsorted(key, (ts * n + ti) * n + third)
    local = lambda g: g - edge_offsets[ts]  # noqa: E731  global -> per-system edge index
    return NBodyCells(
        edge_index=edge_index,
        edge_offsets=edge_offsets,
        triangles=np.stack([ti, tj, third], axis=1).astype(np.int64),
        triangle_edges=np.stack([local(e), local(e_jk), local(e_ik)], axis=1).astype(np.int64),
        triangle_offsets=_offsets(np.bincount(ts, minlength=s)),
    )


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def system_cells(pos32: np.ndarray, kind: CellKind, k: int, max_ring: int) -> NBodyCells:
    """The cells of S systems at positions ``pos32: (S, N, 3)`` (the stored float32 values)."""
    s, n, _ = pos32.shape
    if kind == "full":
        adj = full_adjacency(s, n)
    else:
        adj = knn_adjacency(pos32.astype(np.float64), k)
    return graph_cells(adj, max_ring)


# ----------------------------------------------------------------------------------------------
# samples (the arrays of every split, concatenated in config order)


@dataclass(frozen=True)
class NBodySamples:
    """All samples of a lift. pos/vel/target_pos: (S, N, 3) float32; scalar: (S, N) float32 charge or mass;
    split: (S,) uint8 code (position of the split in the config); sim: (S,) int64 index in its split."""

    pos: np.ndarray
    vel: np.ndarray
    scalar: np.ndarray
    target_pos: np.ndarray
    split: np.ndarray
    sim: np.ndarray
    horizon: float


def simulate_splits(config: NBodyLiftConfig) -> list[SplitArrays]:
    """Simulate every split (in parallel over splits when ``workers > 1``); raises LiftError on blow-up."""
    simulator = config.simulator_config
    jobs: list[tuple[NBodySplit, sim.ChargedInitialState | None]] = [(s, None) for s in config.splits]
    if config.initial_source == "egnn":
        assert isinstance(simulator, ChargedConfig)
        states = sim.egnn_initial_states(simulator)
        jobs = [(s, states[s.name].head(s.num_sims)) for s in config.splits]
    run = partial(_generate, config=simulator, frame_in=config.frame_in, frame_target=config.frame_target)
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(config.splits),
            desc=f"simulate {config.system}",
            unit="split",
            file=sys.stderr,
            dynamic_ncols=True,
        )
    out: list[SplitArrays] = []
    try:
        if config.workers > 1 and len(config.splits) > 1:
            with mp.get_context("fork").Pool(
                min(config.workers, len(config.splits)), initializer=pipeline.quiet_signals
            ) as pool:  # Ctrl-C: one line
                for arrays in pipeline.as_they_come(pool.imap(run, jobs)):
                    out.append(arrays)
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                out.append(run(job))
                if bar is not None:
                    bar.update(1)
    except FloatingPointError as exc:
        raise pipeline.LiftError(f"nbody lift: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    return out


def _generate(
    job: tuple[NBodySplit, sim.ChargedInitialState | None],
    config: ChargedConfig | GravityConfig,
    frame_in: int,
    frame_target: int,
) -> SplitArrays:
    split, initial = job
    return sim.generate_split(split, config, frame_in, frame_target, initial=initial)


def gather_samples(arrays: Sequence[SplitArrays]) -> NBodySamples:
    """Concatenate the splits (float64 simulation output → float32 stored values)."""

    def cat(get) -> np.ndarray:
        return np.concatenate([get(a) for a in arrays]).astype(np.float32)

    return NBodySamples(
        pos=cat(lambda a: a.pos_in),
        vel=cat(lambda a: a.vel_in),
        scalar=cat(lambda a: a.charge if a.charge is not None else a.mass),
        target_pos=cat(lambda a: a.target_pos),
        split=np.concatenate([np.full(len(a.pos_in), c, dtype=np.uint8) for c, a in enumerate(arrays)]),
        sim=np.concatenate([np.arange(len(a.pos_in), dtype=np.int64) for a in arrays]),
        horizon=float(arrays[0].horizon),
    )


# ----------------------------------------------------------------------------------------------
# worker side: one shard


def build_shard(samples: NBodySamples, config: NBodyLiftConfig, start: int, stop: int) -> ShardContent:
    """Samples [start, stop) as one shard (cells, neighbourhoods, invariants, per-node arrays)."""
    from empcn.lift.assemble import SampleCells, complex_shard

    scalar_name = "charge" if config.system == "charged" else "mass"
    cells = system_cells(samples.pos[start:stop], config.cell_kind, config.k, config.max_ring)
    per: list[SampleCells] = []
    for s in range(stop - start):
        g = start + s
        ea, eb = cells.edge_offsets[s], cells.edge_offsets[s + 1]
        ta, tb = cells.triangle_offsets[s], cells.triangle_offsets[s + 1]
        per.append(
            SampleCells(
                pos=samples.pos[g],
                edge_index=cells.edge_index[ea:eb],
                rings=[tuple(t) for t in cells.triangles[ta:tb].tolist()],
                ring_edge=cells.triangle_edges[ta:tb].reshape(-1),
                node_arrays={
                    "vel": samples.vel[g],
                    scalar_name: samples.scalar[g],
                    "target_pos": samples.target_pos[g],
                },
            )
        )
    per_sample = {
        "id": np.arange(start, stop, dtype=np.int64),
        "split": samples.split[start:stop],
        "sim": samples.sim[start:stop],
    }
    content = complex_shard(per, per_sample)
    content.attrs["skipped"] = []
    content.attrs["summary"] = {
        "edges_per_sample": _histogram(np.diff(cells.edge_offsets)),
        "rings_per_sample": _histogram(np.diff(cells.triangle_offsets)),
    }
    return content


def _histogram(counts: np.ndarray) -> dict[str, int]:
    values, freq = np.unique(counts, return_counts=True)
    return {str(int(v)): int(f) for v, f in zip(values, freq)}


# ----------------------------------------------------------------------------------------------
# driver


def source_fingerprint(config: NBodyLiftConfig) -> str:
    """sha256 over the simulator config, the split seeds and sizes, and the simulator's version.

    The simulator is identified by :data:`empcn.data.nbody.SIMULATOR_VERSION`, an explicit number
    bumped when the physics or a random stream changes, never by its source text: editing a comment
    changes no cache, and --resume still never mixes shards across a change of the simulated data.
    """
    blob = {
        "system": config.system,
        "simulator": asdict(config.simulator_config),
        "splits": [asdict(s) for s in config.splits],
        "initial_states": config.initial_source,
        "simulator_version": sim.SIMULATOR_VERSION,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode("utf-8")).hexdigest()


def read(config: NBodyLiftConfig) -> LiftInput:
    """Simulate the splits (a failed simulation leaves an old cache intact: nothing is written yet)."""
    samples = gather_samples(simulate_splits(config))
    return LiftInput(samples, len(samples.pos))


def lift_nbody(config: NBodyLiftConfig) -> Path:
    """Simulate the splits, lift every simulation to a complex, write shards + entry (:func:`empcn.lift.datasets.lift`)."""
    from empcn.lift.datasets import lift

    return lift(config, SPEC)[0]


def _simulate_name(config: NBodyLiftConfig) -> str:
    """The simulator function the data came from (EGNN's stream: integrated from its initial states)."""
    if config.initial_source == "egnn":
        return "integrate_charged"
    return "simulate_charged" if config.system == "charged" else "simulate_gravity"


def _splits(config: NBodyLiftConfig, samples: NBodySamples) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    splits: dict[str, np.ndarray] = {}
    ranges: dict[str, list[int]] = {}
    start = 0
    for split in config.splits:
        stop = start + split.num_sims
        splits[split.name] = np.arange(start, stop, dtype=np.int64)
        ranges[split.name] = [start, stop]
        start = stop
    assert start == len(samples.pos)
    info = {
        "scheme": "simulation",
        "order": [s.name for s in config.splits],
        "ranges": ranges,
        **_stream_info(config),
        "codes": {s.name: code for code, s in enumerate(config.splits)},
        "counts": {name: int(len(idx)) for name, idx in splits.items()},
        "datasets": {name: f"splits/{name}" for name in splits},
        "defined_over": (
            "one sample per simulation; each split is the head of the block of the same name in EGNN's stream"
            if config.initial_source == "egnn"
            else "one sample per simulation; each split is its own simulation stream (seed)"
        ),
    }
    return splits, info


def _stream_info(config: NBodyLiftConfig) -> dict[str, Any]:
    """How the initial states were drawn, for the manifest."""
    if config.initial_source == "egnn":
        return {
            "initial_states": "egnn",
            "stream": {
                "generator": "numpy legacy RandomState (MT19937), EGNN's draw order",
                "seed": sim.EGNN_STREAM_SEED,
                "blocks": dict(sim.EGNN_STREAM_BLOCKS),
            },
        }
    return {"initial_states": "seeded", "seeds": {s.name: s.seed for s in config.splits}}


def finish(
    config: NBodyLiftConfig, lifted: LiftInput, results: Sequence[pipeline.ShardResult]
) -> pipeline.LiftedSplits:
    """Contiguous split ranges, the simulator's description, the target and the cell summary."""
    samples: NBodySamples = lifted.items
    splits, split_info = _splits(config, samples)
    simulator = config.simulator_config
    scalar = "charge" if config.system == "charged" else "mass"
    simulate = _simulate_name(config)
    graph = (
        "the fully connected graph (every pair of particles)"
        if config.cell_kind == "full"
        else f"the symmetrised {config.k}-nearest-neighbour graph of the input positions"
    )
    manifest = {
        "simulator": {
            "system": config.system,
            "function": f"empcn.data.nbody.{simulate}",
            "config": asdict(simulator),
            **_stream_info(config),
            "num_particles": simulator.num_particles,
            "dt_frame": simulator.dt_frame,
            "frame_in": config.frame_in,
            "frame_target": config.frame_target,
            "step_in": config.frame_in * simulator.save_every,
            "step_target": config.frame_target * simulator.save_every,
            "horizon": samples.horizon,
        },
        "units": UNITS,
        "target": {
            "field": "nodes/target_pos",
            "inputs": ["nodes/pos", "nodes/vel", f"nodes/{scalar}"],
            "horizon": samples.horizon,
            "units": UNITS,
            "loss": "MSE of the predicted positions",
        },
        "splits": split_info,
        "cells": {
            "ranks": {
                "0": f"nodes ({simulator.num_particles} particles)",
                "1": f"edges of {graph}",
                "2": "triangles (3-cliques) of the edge graph" if config.max_ring >= 3 else "none",
            },
            "edges_per_sample": pipeline.merge_counts(results, "edges_per_sample"),
            "rings_per_sample": pipeline.merge_counts(results, "rings_per_sample"),
        },
    }
    return pipeline.LiftedSplits(splits, manifest, fields=_field_docs(scalar))


def _field_docs(scalar: str) -> dict[str, str | None]:
    """The fields of an N-body cache (``None``: the other system's per-node scalar, not stored)."""
    other = "mass" if scalar == "charge" else "charge"
    return {
        f"nodes/{other}": None,
        "sample/id": "(S,) int64 index of the sample in the cache",
        "sample/split": "(S,) uint8 split of the sample, codes in splits.codes",
        "sample/sim": "(S,) int64 index of the simulation within its split's stream",
        "nodes/pos": f"(N, 3) float32 positions at the input frame, {UNITS}",
        "nodes/vel": f"(N, 3) float32 velocities at the input frame, {UNITS}",
        f"nodes/{scalar}": f"(N,) float32 particle {scalar}, {UNITS}",
        "nodes/target_pos": f"(N, 3) float32 positions at the target frame, {UNITS}",
    }


def parse_sims(text: str) -> tuple[NBodySplit, ...]:
    """``"3000,2000,2000"`` → the standard splits with these sizes; ValueError with the reason."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"takes three positive integers TRAIN,VALID,TEST, got {text!r}")
    return standard_splits(parts)  # type: ignore[arg-type]


SPEC = DatasetSpec(
    config=NBodyLiftConfig,
    summary="N-body: simulated charged 5-body or 100-body gravity systems, positions 1,000 steps ahead",
    options=(
        Option("system", "charged 5-body (EGNN's) or 100-body gravity.", get_args(SystemKind)),
        Option(
            "sims",
            "Simulations per split TRAIN,VALID,TEST.",
            parse_sims,
            default="3000,2000,2000",
            metavar="TRAIN,VALID,TEST",
            field="splits",
        ),
        Option(
            "initial-states",
            "egnn = the systems of EGNN's data set (charged only; at most 10000,2000,2000 "
            "simulations), seeded = one random stream per split.",
            get_args(InitialStates),
            default="egnn for charged, seeded for gravity",
        ),
    ),
    read=read,
    build_shard=build_shard,
    finish=finish,
    fields=("sample/id", "sample/split", "sample/sim", "nodes/vel", "nodes/charge", "nodes/mass", "nodes/target_pos"),
    task="positions",
)
