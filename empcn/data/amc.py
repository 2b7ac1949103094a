"""Acclaim AMC motions: the channel values of every frame, checked against their ASF skeleton.

An AMC file is a header (``#`` comments, ``:FULLY-SPECIFIED``, ``:DEGREES`` or ``:RADIANS``) and
then frames: a line holding the frame number, followed by one line ``<bone> <values…>`` for every
bone that has dofs, in any order, with as many values as the bone's ``dof`` list (the root: its
``order``). Bones without dofs are absent. Frames are numbered consecutively (CMU: from 1).

Every fault is a :class:`~empcn.data.asf.MocapError` ``"<file>:<line>: <reason>"``: an unknown
bone, a bone given twice in a frame, a wrong number of values, a value that is not a finite
number, a frame that lacks a bone, a frame number out of sequence, a truncated file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empcn.data.asf import ROTATION_CHANNELS, MocapError, Skeleton, forward_kinematics

__all__ = ["Motion", "read_amc", "joint_positions"]


@dataclass(frozen=True)
class Motion:
    """The frames of one AMC file. ``frames``: (T,) int64 frame numbers as written;
    ``channels``: joint name → (T, number of dofs) float64, angles in radians, translations in ASF units."""

    path: str
    frames: np.ndarray
    channels: dict[str, np.ndarray]

    @property
    def num_frames(self) -> int:
        return int(len(self.frames))


def read_amc(path: Path | str, skeleton: Skeleton) -> Motion:
    """Parse the AMC file ``path`` of ``skeleton``; MocapError naming file and line on any fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MocapError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raw = text.splitlines()
    last_line = len(raw)

    def error(line: int, reason: str) -> MocapError:
        return MocapError(f"{path}:{line}: {reason}")

    wanted = {name: skeleton.channels(name) for name in skeleton.names}
    needed = [name for name, dof in wanted.items() if dof]
    degrees = skeleton.angle_unit == "deg"
    values: dict[str, list[list[float]]] = {name: [] for name in needed}
    frames: list[int] = []
    frame_line = 0
    in_frame: dict[str, int] = {}

    def close_frame(at_end: bool) -> None:
        if not frames:
            return
        absent = [name for name in needed if name not in in_frame]
        if not absent:
            return
        if at_end:
            raise error(
                last_line,
                f"truncated file: the last frame {frames[-1]} (line {frame_line}) ends after "
                f"{len(in_frame)} of {len(needed)} bones (no {absent[0]!r})",
            )
        raise error(frame_line, f"frame {frames[-1]} has no line for bone {absent[0]!r}")

    for number, line in enumerate(raw, start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].startswith(":"):
            if frames:
                raise error(number, f"header keyword {words[0]!r} after the first frame")
            key = words[0].upper()
            if key == ":DEGREES":
                degrees = True
            elif key == ":RADIANS":
                degrees = False
            continue
        if len(words) == 1 and words[0].isdigit():
            close_frame(at_end=False)
            frame = int(words[0])
            if frames and frame != frames[-1] + 1:
                raise error(number, f"frame {frame} follows frame {frames[-1]} (frames must be consecutive)")
            frames.append(frame)
            frame_line = number
            in_frame = {}
            continue
        name = words[0]
        if not frames:
            raise error(number, f"{line.strip()[:40]!r} before the first frame number")
        if name not in wanted:
            raise error(number, f"unknown bone {name!r} (not in {Path(skeleton.path).name})")
        if name in in_frame:
            raise error(number, f"bone {name!r} given twice in frame {frames[-1]} (first on line {in_frame[name]})")
        dof = wanted[name]
        given = words[1:]
        if len(given) != len(dof):
            truncated = "truncated file: " if number == last_line and len(given) < len(dof) else ""
            raise error(
                number,
                f"{truncated}bone {name!r} has {len(given)} values, its dof list ({' '.join(dof) or 'none'}) "
                f"needs {len(dof)}",
            )
        row = []
        for word in given:
            try:
                v = float(word)
            except ValueError:
                raise error(number, f"bone {name!r}: {word!r} is not a number") from None
            if not math.isfinite(v):
                raise error(number, f"bone {name!r}: {word!r} is not a finite number")
            row.append(v)
        in_frame[name] = number
        if dof:
            values[name].append(row)
    if not frames:
        raise error(last_line, "truncated file: no frames")
    close_frame(at_end=True)
    scale = math.pi / 180.0 if degrees else 1.0
    channels: dict[str, np.ndarray] = {}
    for name in needed:
        arr = np.asarray(values[name], dtype=np.float64).reshape(len(frames), len(wanted[name]))
        rot = np.array([ch in ROTATION_CHANNELS for ch in wanted[name]])
        arr[:, rot] *= scale
        channels[name] = arr
    return Motion(path=str(path), frames=np.asarray(frames, dtype=np.int64), channels=channels)


def joint_positions(skeleton: Skeleton, motion: Motion) -> np.ndarray:
    """(T, J, 3) float64 joint positions of every frame of ``motion`` (ASF units, hierarchy order)."""
    return forward_kinematics(skeleton, motion.channels)
