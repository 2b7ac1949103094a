"""CMU motion capture as a motion-prediction task: source folders, trials, the papers' protocol in seconds.

The protocol of GMN / CSMPN / EMPCN (subject 35, walking), stated in seconds so that it holds at any
frame rate ``fps``:

* **trials** are split by trial (default 11 train / 6 valid / 6 test) with a seeded permutation of
  their sorted file names;
* **start frames** s lie within the first ``window`` seconds (2.5 s: 300 frames at 120 Hz, 75 at
  30 Hz), ``s ∈ [s₀, W)`` with ``W = round(window · fps)`` and ``s₀ = 1`` for the causal velocity
  (it needs frame s − 1), 0 for the forward one;
* **train** draws ``train_samples`` (200) distinct (trial, start) pairs of the train trials with the
  seed; **valid/test** take every start frame of every trial of theirs;
* **target** = the joint positions ``h = round(horizon · fps)`` frames later (0.25 s: 30 frames at
  120 Hz; 8 at 30 Hz, i.e. 0.2667 s, recorded as the real horizon);
* **input** = joint positions at s and the velocity in ASF units per ``velocity_unit`` seconds
  (default 1/120 s, one frame of CMU's capture): causal ``v = (x_s − x_{s−1}) · fps · velocity_unit``
  (default) or the papers' forward ``v = (x_{s+1} − x_s) · fps · velocity_unit``. At 120 Hz the
  forward one is exactly GMN's per-frame difference ``X[t+1] − X[t]``; at 30 Hz it is the same
  physical unit. (Per second, speeds of ~20–50 units make the EGNN-style models' speed embedding
  blow up at initialisation; per CMU frame they are ~0.1–0.4, the scale the papers trained on.)

A trial shorter than ``W + h`` frames cannot give these samples and is skipped with its reason (in
the built-in 30 Hz folder these are exactly the ten jogging trials, 1.2–1.5 s long).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empcn.data.amc import joint_positions, read_amc
from empcn.data.asf import MocapError, Skeleton, read_asf

__all__ = [
    "BUILTIN_ARCHIVE",
    "ENV_VAR",
    "MocapProtocol",
    "MocapSource",
    "ProtocolSamples",
    "Trial",
    "default_source",
    "draw_samples",
    "find_source",
    "frames_of",
    "read_trials",
    "split_trials",
]

ENV_VAR = "EMPCN_MOCAP_DIR"
#: CMU subject 35 inside the package (0.69 MB): ``35.asf``, ``35_01.amc`` (120 Hz), ``amc30/`` (33 trials at
#: 30 Hz + the skeleton) and a README with CMU's attribution and terms (also beside it, ``cmu_mocap_35.README.md``).
BUILTIN_ARCHIVE = Path(__file__).with_name("cmu_mocap_35.tar.xz")
SPLIT_NAMES = ("train", "valid", "test")


def default_source() -> Path:
    """The CMU subject-35 folder (``35.asf``, ``35_01.amc`` at 120 Hz, ``amc30/`` at 30 Hz) used when no
    source is given: ``$EMPCN_MOCAP_DIR`` if set (a folder of that layout), else the built-in copy,
    unpacked once into the user cache folder (:func:`empcn.data.packaged.unpacked`; never into the
    installed package). MocapError for a ``$EMPCN_MOCAP_DIR`` that is not a folder."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise MocapError(f"{path}: no such folder (from ${ENV_VAR})")
        return path
    from empcn.data.packaged import unpacked

    return unpacked(BUILTIN_ARCHIVE)


@dataclass(frozen=True)
class MocapSource:
    """A source folder: its one ``.asf`` skeleton and the selected ``.amc`` trials (sorted by name)."""

    folder: Path
    asf: Path
    trials: tuple[Path, ...]

    def fingerprint(self) -> str:
        """sha256 over (file name, sha256 of its bytes) of the skeleton and every selected trial."""
        h = hashlib.sha256()
        for path in (self.asf, *self.trials):
            h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
        return h.hexdigest()


def find_source(folder: Path | str, trials: tuple[str, ...] | None = None) -> MocapSource:
    """The skeleton and trials of ``folder``. ``trials``: file names, stems or glob patterns (default all
    ``*.amc``). MocapError (one line) for a missing folder, no/several ``.asf``, a pattern matching nothing."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise MocapError(f"{folder}: no such folder (a mocap source is a folder of one .asf and its .amc files)")
    asfs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".asf")
    if len(asfs) != 1:
        what = "no .asf skeleton" if not asfs else f"{len(asfs)} .asf files ({', '.join(p.name for p in asfs)})"
        raise MocapError(f"{folder}: {what}; a mocap source holds exactly one")
    amcs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".amc")
    if trials is not None:
        chosen: list[Path] = []
        for pattern in trials:
            hits = [p for p in amcs if fnmatch.fnmatch(p.name, pattern) or fnmatch.fnmatch(p.stem, pattern)]
            if not hits:
                raise MocapError(f"{folder}: no .amc file matches --trials {pattern!r}")
            chosen.extend(h for h in hits if h not in chosen)
        amcs = sorted(chosen)
    if not amcs:
        raise MocapError(f"{folder}: no .amc trials")
    return MocapSource(folder, asfs[0], tuple(amcs))


@dataclass(frozen=True)
class Trial:
    """One trial: ``name`` (file stem), ``positions``: (T, J, 3) float64 joints (ASF units),
    ``frames``: (T,) int64 AMC frame numbers."""

    name: str
    positions: np.ndarray
    frames: np.ndarray


def read_trials(source: MocapSource) -> tuple[Skeleton, list[Trial]]:
    """The skeleton and every selected trial through forward kinematics."""
    skeleton = read_asf(source.asf)
    trials = []
    for path in source.trials:
        motion = read_amc(path, skeleton)
        trials.append(Trial(path.stem, joint_positions(skeleton, motion), motion.frames))
    return skeleton, trials


def frames_of(seconds: float, fps: float) -> int:
    """``round(seconds · fps)``, halves up (0.25 s at 30 Hz = 8 frames)."""
    return int(math.floor(seconds * fps + 0.5))


@dataclass(frozen=True)
class MocapProtocol:
    """The task in seconds (see the module docstring). ``trial_split``: trials per split (train, valid,
    test); ``velocity``: "causal" or "forward"."""

    fps: float = 120.0
    window: float = 2.5
    horizon: float = 0.25
    train_samples: int = 200
    trial_split: tuple[int, int, int] = (11, 6, 6)
    seed: int = 0
    velocity: str = "causal"
    velocity_unit: float = 1.0 / 120.0

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"mocap protocol: {what}")

        need(math.isfinite(self.fps) and self.fps > 0, f"fps must be positive, got {self.fps!r}")
        need(self.velocity in ("causal", "forward"), f"velocity must be 'causal' or 'forward', got {self.velocity!r}")
        need(self.horizon_frames >= 1, f"horizon {self.horizon} s is under one frame at {self.fps} Hz")
        need(self.window_frames > self.first_start, f"window {self.window} s holds no start frame at {self.fps} Hz")
        need(self.train_samples >= 1, f"train_samples must be ≥ 1, got {self.train_samples!r}")
        need(
            len(self.trial_split) == 3 and min(self.trial_split) >= 1,
            f"trial_split needs three positive counts, got {self.trial_split!r}",
        )
        need(self.seed >= 0, f"seed must be ≥ 0, got {self.seed!r}")
        need(
            math.isfinite(self.velocity_unit) and self.velocity_unit > 0,
            f"velocity_unit must be positive seconds, got {self.velocity_unit!r}",
        )

    @property
    def horizon_frames(self) -> int:
        return frames_of(self.horizon, self.fps)

    @property
    def window_frames(self) -> int:
        return frames_of(self.window, self.fps)

    @property
    def first_start(self) -> int:
        return 1 if self.velocity == "causal" else 0

    @property
    def min_frames(self) -> int:
        """Frames a trial needs: the last start frame plus the horizon."""
        return self.window_frames + self.horizon_frames

    def starts(self) -> np.ndarray:
        """(n,) int64 the start frames (0-based) every trial offers."""
        return np.arange(self.first_start, self.window_frames, dtype=np.int64)


def split_trials(names: list[str], protocol: MocapProtocol) -> dict[str, list[str]]:
    """Split name → trial names (sorted): a ``seed`` permutation of the sorted names, cut 11/6/6."""
    names = sorted(names)
    if sum(protocol.trial_split) != len(names):
        raise MocapError(
            f"{len(names)} usable trials cannot be split {'/'.join(map(str, protocol.trial_split))} "
            "(choose the trials with --trials or the counts with --trial-split)"
        )
    perm = np.random.default_rng([protocol.seed, 0]).permutation(len(names))
    out: dict[str, list[str]] = {}
    start = 0
    for split, count in zip(SPLIT_NAMES, protocol.trial_split):
        out[split] = sorted(names[i] for i in perm[start : start + count])
        start += count
    return out


@dataclass(frozen=True)
class ProtocolSamples:
    """All samples, splits contiguous in train, valid, test order, each sorted by (trial, start).

    pos/vel/target_pos: (S, J, 3) float64 (ASF units; velocity ASF units per ``velocity_unit`` s);
    trial: (S,) int64 index into ``trial_names``; start: (S,) int64 0-based start frame;
    frame: (S,) int64 its AMC frame number; split: (S,) uint8 code (0 train, 1 valid, 2 test).
    """

    pos: np.ndarray
    vel: np.ndarray
    target_pos: np.ndarray
    trial: np.ndarray
    start: np.ndarray
    frame: np.ndarray
    split: np.ndarray
    trial_names: tuple[str, ...]


def draw_samples(trials: list[Trial], splits: dict[str, list[str]], protocol: MocapProtocol) -> ProtocolSamples:
    """The protocol's samples of ``trials`` (every trial at least ``protocol.min_frames`` long)."""
    by_name = {t.name: t for t in trials}
    names = tuple(sorted(by_name))
    starts = protocol.starts()
    h = protocol.horizon_frames
    rows: list[tuple[np.ndarray, np.ndarray, int]] = []  # (trial index, start, split code)
    for code, split in enumerate(SPLIT_NAMES):
        idx = np.repeat([names.index(n) for n in splits[split]], len(starts)).astype(np.int64)
        st = np.tile(starts, len(splits[split]))
        if split == "train" and protocol.train_samples < len(st):
            pick = np.random.default_rng([protocol.seed, 1]).choice(len(st), protocol.train_samples, replace=False)
            pick = np.sort(pick)  # (trial, start) order
            idx, st = idx[pick], st[pick]
        rows.append((idx, st, code))
    trial = np.concatenate([r[0] for r in rows])
    start = np.concatenate([r[1] for r in rows])
    split = np.concatenate([np.full(len(r[0]), r[2], dtype=np.uint8) for r in rows])
    pos = np.empty((len(trial), trials[0].positions.shape[1], 3))
    vel, target = np.empty_like(pos), np.empty_like(pos)
    frame = np.empty(len(trial), dtype=np.int64)
    for k, name in enumerate(names):  # one vectorised gather per trial
        where = np.flatnonzero(trial == k)
        if not len(where):
            continue
        x, s = by_name[name].positions, start[where]
        pos[where] = x[s]
        target[where] = x[s + h]
        if protocol.velocity == "causal":
            vel[where] = (x[s] - x[s - 1]) * (protocol.fps * protocol.velocity_unit)
        else:
            vel[where] = (x[s + 1] - x[s]) * (protocol.fps * protocol.velocity_unit)
        frame[where] = by_name[name].frames[s]
    return ProtocolSamples(pos, vel, target, trial, start, frame, split, names)
