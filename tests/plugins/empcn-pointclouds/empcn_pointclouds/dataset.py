"""``empcn lift --dataset pointclouds``: random point clouds with one hand-made 2-cell each.

A sample is a cloud of ``min_points``–``max_points`` points drawn from a standard normal in 3-D.

* 0-cells: the points (``nodes/pos``, unit-free "length units");
* 2-cell: the cycle 0 → 1 → 2 → 3 over the cloud's first four points (its vertices in that order);
* 1-cells: the four edges of that cycle and, for every other point, the edge to its nearest point,
  so that the complex is connected.

Target (``sample/y``, one column ``rg``): the radius of gyration ``sqrt(mean_i |x_i − x̄|²)``, an
E(3)-invariant graph-level scalar. Splits: a seeded random 0.8 / 0.1 / 0.1 cut.

``empcn predict RUN cloud.npy|cloud.json`` reads a new cloud ((N, 3) array, or JSON ``{"points":
[[x, y, z], …]}``; its first four points make the 2-cell) and lifts it as the cache was lifted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empcn.errors import EmpcnError
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, Option, PredictHook

GENERATOR_VERSION = 1  # bumped when the clouds drawn for a seed change
UNITS = "length units"
RING = (0, 1, 2, 3)


class BadCloud(EmpcnError, ValueError):
    """A point-cloud file that cannot be read or lifted (the message names the file and the reason)."""


@dataclass(frozen=True)
class PointCloudConfig(LiftConfig):
    """Every parameter of a point-cloud lift (those that change the bytes are recorded)."""

    DATASET = "pointclouds"
    SHARD_SIZE = 64
    TAKES_STRICT = False  # drawn clouds are always liftable

    samples: int = 200
    seed: int = 0
    min_points: int = 5
    max_points: int = 12

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("samples", "seed", "min_points", "max_points"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise self.bad(f"{name} must be a non-negative integer, got {value!r}")
        if self.samples < 10:
            raise self.bad(f"samples must be at least 10 (every split gets one), got {self.samples}")
        if not 4 <= self.min_points <= self.max_points:
            raise self.bad(f"need 4 <= min_points <= max_points, got {self.min_points} and {self.max_points}")

    def recorded_params(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "seed": self.seed,
            "points": [self.min_points, self.max_points],
            "shard_size": self.shard_size,
        }

    def source_info(self) -> dict[str, Any]:
        blob = {
            "generator": GENERATOR_VERSION,
            "samples": self.samples,
            "seed": self.seed,
            "points": [self.min_points, self.max_points],
        }
        digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        return {"kind": "generated", "name": "empcn_pointclouds.dataset.random_clouds", "fingerprint": digest}


@dataclass(frozen=True)
class Clouds:
    """All clouds: ``pos`` (P, 3) float64 concatenated, ``offsets`` (S + 1,) into it."""

    pos: np.ndarray
    offsets: np.ndarray

    def __getitem__(self, s: int) -> np.ndarray:
        return self.pos[self.offsets[s] : self.offsets[s + 1]]


def random_clouds(config: PointCloudConfig) -> Clouds:
    """The clouds of ``config``: point counts, then all points, from ``default_rng(seed)``."""
    rng = np.random.default_rng(config.seed)
    counts = rng.integers(config.min_points, config.max_points + 1, size=config.samples)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Clouds(rng.standard_normal((int(offsets[-1]), 3)), offsets)


def radius_of_gyration(pos: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((pos - pos.mean(axis=0)) ** 2, axis=1))))


def cloud_cells(pos: np.ndarray) -> Any:
    """The cells of one cloud (see the module docstring) as :class:`empcn.lift.assemble.SampleCells`."""
    from empcn.lift.assemble import SampleCells

    n = len(pos)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    others = np.arange(len(RING), n)
    nearest = np.argmin(dist[others], axis=1)
    cycle = np.array([(a, b) for a, b in zip(RING, RING[1:] + RING[:1])])
    pairs = np.concatenate([cycle, np.stack([others, nearest], axis=1)])
    edges = np.unique(np.sort(pairs, axis=1), axis=0)  # i < j, sorted
    lookup = {(int(i), int(j)): k for k, (i, j) in enumerate(edges)}
    ring_edge = np.array([lookup[(min(a, b), max(a, b))] for a, b in cycle], dtype=np.int64)
    return SampleCells(pos=pos, edge_index=edges.astype(np.int64), rings=[RING], ring_edge=ring_edge)


# ----------------------------------------------------------------------------------------------
# reader, shard builder, finish


def read(config: PointCloudConfig) -> LiftInput:
    clouds = random_clouds(config)
    return LiftInput(clouds, config.samples)


def build_shard(clouds: Clouds, config: PointCloudConfig, start: int, stop: int) -> Any:
    from empcn.lift.assemble import complex_shard

    cells = [cloud_cells(clouds[s]) for s in range(start, stop)]
    y = np.array([[radius_of_gyration(clouds[s])] for s in range(start, stop)], dtype=np.float64).reshape(-1, 1)
    content = complex_shard(cells, {"id": np.arange(start, stop, dtype=np.int64), "y": y})
    sizes, counts = np.unique(np.diff(clouds.offsets[start : stop + 1]), return_counts=True)
    content.attrs["skipped"] = []
    content.attrs["summary"] = {"points": {str(int(k)): int(v) for k, v in zip(sizes, counts)}}
    return content


def finish(config: PointCloudConfig, lifted: LiftInput, results: list[Any]) -> Any:
    from empcn.lift.pipeline import LiftedSplits, concat_sample_arrays, merge_counts
    from empcn.lift.splits import random_splits, target_statistics

    fractions = (0.8, 0.1, 0.1)
    ys = concat_sample_arrays(results, "y", np.zeros((0, 1)))
    splits = random_splits(len(ys), fractions, config.seed)
    stats = target_statistics(ys[splits["train"]], ("rg",))
    manifest = {
        "splits": {
            "scheme": "random",
            "seed": config.seed,
            "fractions": list(fractions),
            "counts": {k: int(len(v)) for k, v in splits.items()},
            "datasets": {k: f"splits/{k}" for k in splits},
        },
        "targets": {
            "names": ["rg"],
            "units": {"rg": UNITS},
            "train_mean": stats["mean"],
            "train_mad": stats["mad"],
            "convention": "radius of gyration sqrt(mean |x - mean x|^2) of the cloud's points",
        },
        "cells": {
            "ranks": {
                "0": "nodes (points)",
                "1": "edges (the 2-cell's boundary, each other point to its nearest)",
                "2": "rings (the cycle 0-1-2-3)",
            },
            "points_per_sample": merge_counts(results, "points"),
        },
    }
    fields = {
        "sample/id": "(S,) int64 index of the cloud",
        "sample/y": "(S, 1) float64 radius of gyration of the cloud (targets.names)",
        "nodes/pos": f"(N, 3) float32 positions of the points, {UNITS}",
    }
    return LiftedSplits(splits, manifest, fields=fields)


# ----------------------------------------------------------------------------------------------
# empcn predict: new clouds, lifted as the cache was


def read_cloud(path: Path) -> list[tuple[str, Any]]:
    """One cloud per file: ``(label, (N, 3) float64 points)``, or the BadCloud saying why not."""
    label = str(path)
    try:
        if path.suffix.lower() == ".npy":
            points = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            points = np.asarray(data["points"] if isinstance(data, dict) else data, dtype=np.float64)
        else:
            raise BadCloud(f"{label}: not a point cloud (.npy or .json)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, BadCloud):
            return [(label, exc)]
        return [(label, BadCloud(f"{label}: cannot read ({type(exc).__name__}: {exc})"))]
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < len(RING) or not np.isfinite(points).all():
        return [(label, BadCloud(f"{label}: need an (N, 3) array of finite points with N >= 4, got {points.shape}"))]
    return [(label, points)]


def lift_cloud(points: np.ndarray, params: Any, label: str) -> Any:
    from empcn.lift.assemble import single_sample

    return single_sample(cloud_cells(points))


SPEC = DatasetSpec(
    config=PointCloudConfig,
    summary="Random point clouds with one hand-made 2-cell each; target: the radius of gyration",
    options=(
        Option("samples", "Clouds to draw.", int, minimum=10),
        Option("seed", "Seed of the clouds and of the split.", int, minimum=0),
        Option("min-points", "Fewest points of a cloud.", int, unit="points", minimum=4),
        Option("max-points", "Most points of a cloud.", int, unit="points", minimum=4),
    ),
    read=read,
    build_shard=build_shard,
    finish=finish,
    fields=("sample/id", "sample/y"),
    task="scalar",
    predict=PredictHook(
        'point clouds as .npy ((N, 3) arrays) or .json ({"points": [[x, y, z], …]}) files', read_cloud, lift_cloud
    ),
)
