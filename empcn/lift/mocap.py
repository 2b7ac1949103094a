"""Lift CMU motion capture: (start pose → pose 0.25 s later) samples → skeleton complexes → HDF5 shards.

One sample per (trial, start frame) of the protocol (:mod:`empcn.data.mocap`). Every sample has the
same complex, built from the ASF skeleton once:

* **0-cells**: the 31 joints in depth-first hierarchy order (``nodes/pos`` at the start frame,
  ``nodes/vel``, ``nodes/target_pos``; float32, ASF units and ASF units per 1/120 s);
* **1-cells**: the bones (30) plus, with ``edges="gmn"`` (default), the 2-hop pairs of the skeleton
  (35: GMN's graph, 65 pairs), plus every boundary pair of a 2-cell that is neither (14 for the
  paper's cells), so that each 2-cell is bounded by 1-cells as a CW complex needs;
  ``edges/kind`` says which (0 bone, 1 two-hop, 2 added boundary pair);
* **2-cells**: with ``cells="paper"`` (default) the nine hand-made cells of the EMPCN paper's MoCap
  experiment (:data:`PAPER_CELLS`, cyclic vertex order as the paper lists them); ``"none"``: none.

Neighbourhoods and invariants come from :func:`empcn.lift.assemble.complex_shard`, as for QM9 and
N-body. The samples are stored train, valid, test (contiguous; ``cache.splits``); there is no
per-node scalar (no charges or masses), so position models run without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from empcn.data.asf import Skeleton
from empcn.data.mocap import (
    SPLIT_NAMES,
    MocapProtocol,
    MocapSource,
    ProtocolSamples,
    default_source,
    draw_samples,
    find_source,
    read_trials,
    split_trials,
)
from empcn.lift import pipeline
from empcn.lift.groups import packaged_cells
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option

if TYPE_CHECKING:
    from empcn.cache import ShardContent

__all__ = [
    "PAPER_CELLS",
    "SPEC",
    "MocapLiftConfig",
    "SkeletonComplex",
    "build_shard",
    "lift_mocap",
    "skeleton_complex",
]

EdgeKind = Literal["gmn", "bones"]
CellChoice = Literal["paper", "none"]
VelocityKind = Literal["causal", "forward"]

UNITS = "ASF length units"
EDGE_BONE, EDGE_TWO_HOP, EDGE_BOUNDARY = 0, 1, 2

#: The 2-cells of the EMPCN paper's MoCap experiment, by joint index (cyclic order as printed there),
#: read from the package's cells file ``empcn/data/mocap_paper_cells.json`` (which also names the joints
#: of each cell in CMU's depth-first hierarchy; checked against the skeleton by the tests).
PAPER_CELLS_FILE = "mocap_paper_cells.json"
PAPER_CELLS: tuple[tuple[int, ...], ...] = packaged_cells(PAPER_CELLS_FILE).cells or ()
CMU_JOINTS: tuple[str, ...] = (
    "root",
    "lhipjoint",
    "lfemur",
    "ltibia",
    "lfoot",
    "ltoes",
    "rhipjoint",
    "rfemur",
    "rtibia",
    "rfoot",
    "rtoes",
    "lowerback",
    "upperback",
    "thorax",
    "lowerneck",
    "upperneck",
    "head",
    "lclavicle",
    "lhumerus",
    "lradius",
    "lwrist",
    "lhand",
    "lfingers",
    "lthumb",
    "rclavicle",
    "rhumerus",
    "rradius",
    "rwrist",
    "rhand",
    "rfingers",
    "rthumb",
)


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class MocapLiftConfig(LiftConfig):
    """Every parameter of a MoCap lift (all but the source path and the run options recorded).

    ``source``: a folder of one ``.asf`` and its ``.amc`` trials (None: the built-in CMU subject-35
    walks at 30 Hz, :func:`empcn.data.mocap.default_source`'s ``amc30/``); ``trials``: file names,
    stems or globs (None: all ``.amc``); ``protocol``: frame rate, the task in seconds, the trial
    split and its seed.
    """

    DATASET = "mocap"
    SHARD_SIZE = 1000
    TAKES_STRICT = False  # a trial too short for the protocol is skipped with its reason, always

    source: Path | None = None
    trials: tuple[str, ...] | None = None
    protocol: MocapProtocol = field(default_factory=MocapProtocol)
    edges: EdgeKind = "gmn"
    cells: CellChoice = "paper"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.protocol, MocapProtocol):
            raise self.bad(f"protocol must be a MocapProtocol, got {type(self.protocol).__name__}")
        if self.edges not in get_args(EdgeKind):
            raise self.bad(f"edges must be 'gmn' or 'bones', got {self.edges!r}")
        if self.cells not in get_args(CellChoice):
            raise self.bad(f"cells must be 'paper' or 'none', got {self.cells!r}")

    @property
    def folder(self) -> Path:
        """The source folder: ``source``, or the built-in subject-35 walks at 30 Hz."""
        return Path(self.source) if self.source is not None else default_source() / "amc30"

    def mocap_source(self) -> MocapSource:
        """The skeleton and the trials selected (MocapError for a missing folder or a pattern matching nothing)."""
        return find_source(self.folder, self.trials)

    def recorded_params(self) -> dict[str, Any]:
        """The parameters that change the bytes of the cache (``trials``: the files read, by name)."""
        p = self.protocol
        return {
            "fps": p.fps,
            "trials": [path.name for path in self.mocap_source().trials],
            "trial_split": list(p.trial_split),
            "seed": p.seed,
            "window_s": p.window,
            "horizon_s": p.horizon,
            "train_samples": p.train_samples,
            "velocity": p.velocity,
            "velocity_unit_s": p.velocity_unit,
            "edges": self.edges,
            "cells": self.cells,
            "shard_size": self.shard_size,
        }

    def source_info(self) -> dict[str, Any]:
        """The folder and the fingerprint of the skeleton and every trial read."""
        # the folder's own name, not its path: the same files give the same bytes wherever they lie
        return {
            "kind": "asf-amc-folder",
            "name": Path(self.folder).resolve().name,
            "fingerprint": self.mocap_source().fingerprint(),
        }

    @classmethod
    def from_options(cls, values: Any, **run: Any) -> MocapLiftConfig:
        """The config of ``empcn lift --dataset mocap``'s options: ``fps`` (default 120 Hz, CMU's; 30 Hz for
        the built-in source), ``trial_split``, ``velocity`` and ``seed`` make the protocol."""
        values = dict(values)
        protocol = {k: values.pop(k) for k in ("fps", "trial_split", "velocity", "seed") if values.get(k) is not None}
        protocol.setdefault("fps", 120.0 if values.get("source") is not None else 30.0)
        try:
            values["protocol"] = MocapProtocol(**protocol)
        except ValueError as exc:
            raise pipeline.LiftError(str(exc)) from None
        return cls(**values, **run)


# ----------------------------------------------------------------------------------------------
# the complex of a skeleton (the same for every sample)


@dataclass(frozen=True)
class SkeletonComplex:
    """edge_index: (E, 2) int64 i < j sorted; edge_kind: (E,) uint8; rings: vertex tuples (cyclic);
    ring_edge: (sum of ring sizes,) int64 edge joining slot k to slot k+1 of each ring."""

    edge_index: np.ndarray
    edge_kind: np.ndarray
    rings: tuple[tuple[int, ...], ...]
    ring_edge: np.ndarray


def skeleton_complex(skeleton: Skeleton, edges: EdgeKind = "gmn", cells: CellChoice = "paper") -> SkeletonComplex:
    """The 1- and 2-cells of ``skeleton`` (see the module docstring); LiftError if the paper's cells
    do not fit it (they need CMU's 31-joint hierarchy)."""
    n = skeleton.num_joints
    adj = np.zeros((n, n), dtype=bool)
    bones = skeleton.bone_pairs()
    adj[bones[:, 0], bones[:, 1]] = adj[bones[:, 1], bones[:, 0]] = True
    kind = np.full((n, n), -1, dtype=np.int64)
    kind[adj] = EDGE_BONE
    if edges == "gmn":
        two = (adj.astype(np.int64) @ adj.astype(np.int64) > 0) & ~adj
        np.fill_diagonal(two, False)
        kind[two] = EDGE_TWO_HOP
    rings: tuple[tuple[int, ...], ...] = ()
    if cells == "paper":
        if tuple(skeleton.names) != CMU_JOINTS:
            raise pipeline.LiftError(
                f"{skeleton.path}: the paper's 2-cells are defined on CMU's 31-joint hierarchy "
                f"({len(skeleton.names)} joints here, or a different order); use cells='none'"
            )
        rings = PAPER_CELLS
        for ring in rings:
            for a, b in zip(ring, ring[1:] + ring[:1]):
                if kind[a, b] < 0:
                    kind[a, b] = kind[b, a] = EDGE_BOUNDARY
    i, j = np.nonzero(np.triu(kind >= 0, k=1))  # sorted by (i, j)
    edge_index = np.stack([i, j], axis=1).astype(np.int64)
    lookup = np.full((n, n), -1, dtype=np.int64)
    lookup[i, j] = lookup[j, i] = np.arange(len(i))
    ring_edge = np.array([lookup[a, b] for r in rings for a, b in zip(r, r[1:] + r[:1])], dtype=np.int64)
    return SkeletonComplex(edge_index, kind[i, j].astype(np.uint8), rings, ring_edge)


# ----------------------------------------------------------------------------------------------
# worker side: one shard


@dataclass(frozen=True)
class MocapItems:
    """The protocol's samples and the skeleton's complex (the same for every sample)."""

    samples: ProtocolSamples
    complex: SkeletonComplex


def build_shard(items: MocapItems, config: MocapLiftConfig, start: int, stop: int) -> ShardContent:
    """Samples [start, stop) as one shard (the same complex for every sample)."""
    from empcn.lift.assemble import SampleCells, complex_shard

    samples, cx = items.samples, items.complex
    per = [
        SampleCells(
            pos=samples.pos[g],
            edge_index=cx.edge_index,
            rings=cx.rings,
            ring_edge=cx.ring_edge,
            node_arrays={
                "vel": samples.vel[g].astype(np.float32),
                "target_pos": samples.target_pos[g].astype(np.float32),
            },
            edge_arrays={"kind": cx.edge_kind},
        )
        for g in range(start, stop)
    ]
    per_sample = {
        "id": np.arange(start, stop, dtype=np.int64),
        "split": samples.split[start:stop],
        "trial": samples.trial[start:stop],
        "start": samples.start[start:stop],
        "frame": samples.frame[start:stop],
    }
    content = complex_shard(per, per_sample)
    content.attrs["skipped"] = []
    content.attrs["summary"] = {}
    return content


# ----------------------------------------------------------------------------------------------
# reader and finish


@dataclass(frozen=True)
class _Read:
    """What finish needs of the reading: the skeleton, its file's name and the trials of each split."""

    skeleton: Skeleton
    asf_name: str
    trial_splits: dict[str, list[str]]


def read(config: MocapLiftConfig) -> LiftInput:
    """Read the trials, skip those too short for the protocol, split them, draw the protocol's samples."""
    folder = config.folder
    source = config.mocap_source()
    skeleton, trials = read_trials(source)
    protocol = config.protocol
    usable = [t for t in trials if len(t.positions) >= protocol.min_frames]
    skipped = [
        {
            "id": t.name,
            "reason": f"{len(t.positions)} frames, fewer than the {protocol.min_frames} "
            f"({protocol.window} s of start frames + {protocol.horizon} s) the protocol needs",
        }
        for t in trials
        if len(t.positions) < protocol.min_frames
    ]
    if not usable:
        longest = max(len(t.positions) for t in trials)
        raise pipeline.LiftError(
            f"{folder}: no trial has the {protocol.min_frames} frames ({protocol.window} s + {protocol.horizon} s at "
            f"{protocol.fps:g} Hz) the protocol needs (the longest has {longest}); is --fps right?"
        )
    splits = split_trials([t.name for t in usable], protocol)
    samples = draw_samples(usable, splits, protocol)
    cx = skeleton_complex(skeleton, config.edges, config.cells)
    return LiftInput(
        MocapItems(samples, cx), len(samples.pos), skipped=skipped, context=_Read(skeleton, source.asf.name, splits)
    )


def lift_mocap(config: MocapLiftConfig) -> Path:
    """Read the trials, draw the protocol's samples, lift them, write shards + entry (:func:`empcn.lift.datasets.lift`)."""
    from empcn.lift.datasets import lift

    return lift(config, SPEC)[0]


def finish(
    config: MocapLiftConfig, lifted: LiftInput, results: Sequence[pipeline.ShardResult]
) -> pipeline.LiftedSplits:
    """The trial split, the target, the motion and the skeleton's cells."""
    samples, cx = lifted.items.samples, lifted.items.complex
    skeleton, asf_name, trial_splits = lifted.context.skeleton, lifted.context.asf_name, lifted.context.trial_splits
    p = config.protocol
    splits = {name: np.flatnonzero(samples.split == code).astype(np.int64) for code, name in enumerate(SPLIT_NAMES)}
    h = p.horizon_frames
    names = skeleton.names
    velocity = (
        "causal backward difference (x[s] - x[s-1]) * fps * velocity_unit_s"
        if p.velocity == "causal"
        else "forward difference (x[s+1] - x[s]) * fps * velocity_unit_s, as GMN/CSMPN/EMPCN"
    )
    manifest = {
        "units": UNITS,
        "target": {
            "field": "nodes/target_pos",
            "inputs": ["nodes/pos", "nodes/vel"],
            "node_scalar": None,
            "horizon": h / p.fps,
            "horizon_requested_s": p.horizon,
            "horizon_frames": h,
            "units": UNITS,
            "loss": "MSE of the predicted joint positions (the papers print MSE x 1e-2, ASF units^2)",
        },
        "motion": {
            "fps": p.fps,
            "skeleton": asf_name,
            "length_unit": f"ASF ':units length {skeleton.length_unit:g}' (CMU: 1 unit = 1/{skeleton.length_unit:g} inch)",
            "joints": list(names),
            "parents": skeleton.parents.tolist(),
            "window_s": p.window,
            "window_frames": p.window_frames,
            "start_frames": [int(p.first_start), int(p.window_frames - 1)],
            "start_frames_doc": "0-based frame indices of each trial (sample/start); sample/frame is the AMC frame number",
            "velocity": p.velocity,
            "velocity_unit_s": p.velocity_unit,
            "velocity_definition": velocity,
            "velocity_units": _vel_units(p),
            "train_samples": int(len(splits["train"])),
            "train_draw": "distinct (trial, start) pairs of the train trials, numpy default_rng([seed, 1]).choice",
        },
        "splits": {
            "scheme": "trial",
            "seed": p.seed,
            "permutation": "numpy default_rng([seed, 0]).permutation of the sorted usable trial names",
            "trial_split": list(p.trial_split),
            "trials": {name: list(trial_splits[name]) for name in SPLIT_NAMES},
            "trial_names": list(samples.trial_names),
            "order": list(SPLIT_NAMES),
            "codes": {name: code for code, name in enumerate(SPLIT_NAMES)},
            "counts": {name: int(len(idx)) for name, idx in splits.items()},
            "datasets": {name: f"splits/{name}" for name in splits},
            "defined_over": "samples of the trials of each split; train draws, valid/test take every start frame",
        },
        "cells": {
            "ranks": {
                "0": f"nodes ({skeleton.num_joints} joints, depth-first order of :hierarchy)",
                "1": "bones"
                + (" + 2-hop pairs (GMN)" if config.edges == "gmn" else "")
                + (" + 2-cell boundary pairs that are neither" if cx.rings else ""),
                "2": "the EMPCN paper's nine MoCap cells" if cx.rings else "none",
            },
            "edges_by_kind": {
                kind: int(np.sum(cx.edge_kind == code))
                for code, kind in ((EDGE_BONE, "bone"), (EDGE_TWO_HOP, "two_hop"), (EDGE_BOUNDARY, "boundary"))
            },
            "rings": [{"joints": list(r), "names": [names[v] for v in r]} for r in cx.rings],
            "edges_per_sample": {str(len(cx.edge_index)): int(len(samples.pos))},
            "rings_per_sample": {str(len(cx.rings)): int(len(samples.pos))},
        },
    }
    return pipeline.LiftedSplits(splits, manifest, fields=_field_docs(p))


def _vel_units(p: MocapProtocol) -> str:
    one_frame = " (one frame at CMU's 120 Hz)" if p.velocity_unit == 1 / 120 else ""
    return f"{UNITS} per {p.velocity_unit:.6g} s{one_frame}"


def _field_docs(p: MocapProtocol) -> dict[str, str | None]:
    """The fields of a MoCap cache, in its units."""
    return {
        "sample/id": "(S,) int64 index of the sample in the cache",
        "sample/split": "(S,) uint8 split of the sample, codes in splits.codes",
        "sample/trial": "(S,) int64 trial of the sample, index into splits.trial_names",
        "sample/start": "(S,) int64 0-based start frame within its trial",
        "sample/frame": "(S,) int64 AMC frame number of the start frame",
        "nodes/pos": f"(N, 3) float32 joint positions at the start frame, {UNITS}",
        "nodes/vel": f"(N, 3) float32 joint velocities at the start frame, {_vel_units(p)} (motion.velocity_definition)",
        "nodes/target_pos": f"(N, 3) float32 joint positions target.horizon seconds later, {UNITS}",
        "edges/kind": "(E,) uint8 0 bone, 1 two-hop pair, 2 boundary pair of a 2-cell that is neither",
    }


def parse_triple(text: str) -> tuple[int, int, int]:
    """``"11,6,6"`` → (11, 6, 6); ValueError with the reason."""
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"takes three positive integers TRAIN,VALID,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def parse_trials(text: str) -> tuple[str, ...] | None:
    """``"train_01, train_0[2-4]"`` → the names and patterns (None: none named, i.e. all)."""
    return tuple(t.strip() for t in text.split(",") if t.strip()) or None


_PROTOCOL = MocapProtocol()  # the defaults --help shows

SPEC = DatasetSpec(
    config=MocapLiftConfig,
    summary="CMU motion capture: a skeleton's joint positions 0.25 s ahead",
    options=(
        Option(
            "source",
            "A folder of one .asf skeleton and its .amc trials.",
            Path,
            default="the built-in CMU subject 35 walks at 30 Hz",
            metavar="FOLDER",
        ),
        Option(
            "fps",
            "Frame rate of the .amc files.",
            float,
            default="120 Hz (CMU's); 30 Hz for the built-in source",
            unit="Hz",
        ),
        Option(
            "trials",
            "Comma-separated .amc names, stems or globs to use (too-short trials are skipped).",
            parse_trials,
            default="all",
            metavar="NAMES",
        ),
        Option(
            "trial-split",
            "Trials per split TRAIN,VALID,TEST (a seeded permutation of the sorted names).",
            parse_triple,
            default=",".join(map(str, _PROTOCOL.trial_split)),
            metavar="TRAIN,VALID,TEST",
        ),
        Option(
            "split-seed",
            "Seed of the trial split and of the choice of training samples.",
            int,
            default=str(_PROTOCOL.seed),
            minimum=0,
            field="seed",
        ),
        Option(
            "velocity",
            "Input velocity (ASF units per 1/120 s): causal from x[s]-x[s-1], or forward from "
            "x[s+1]-x[s] as the papers.",
            get_args(VelocityKind),
            default=_PROTOCOL.velocity,
        ),
    ),
    read=read,
    build_shard=build_shard,
    finish=finish,
    fields=(
        "sample/id",
        "sample/split",
        "sample/trial",
        "sample/start",
        "sample/frame",
        "nodes/vel",
        "nodes/target_pos",
        "edges/kind",
    ),
    task="positions",
)
