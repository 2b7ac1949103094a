"""Acclaim ASF skeletons (CMU motion capture) and their forward kinematics, vectorised over frames.

An ASF file declares ``:units`` (length scale, angle unit), the ``:root`` (channel ``order``, the
rotation order of its ``axis``, rest ``position`` and ``orientation``), one ``begin … end`` block per
bone in ``:bonedata`` (``name``, unit ``direction`` in world coordinates at rest, ``length``,
``axis`` angles with their rotation order, ``dof`` channels, ``limits``) and the ``:hierarchy``
(``parent child child …`` lines). Positions stay in the file's length units ("ASF units"; CMU:
``length 0.45``, i.e. 1 unit = 1/0.45 inch); angles are converted to radians here.

Forward kinematics (the Acclaim convention). For a bone b with parent p, axis rotation C_b and the
rotation M_b(t) of its AMC channels at frame t::

    R_b(t) = R_p(t) · C_b · M_b(t) · C_b⁻¹
    x_b(t) = x_p(t) + length_b · R_b(t) · direction_b

with R_root = C_root · M_root · C_root⁻¹ and x_root = the root's translation channels (the ASF
``position`` where a translation channel is absent). A rotation "a b c XYZ" is applied X first:
Rz(c)·Ry(b)·Rx(a); channel rotations likewise in the order of the dof list. Joint b is the end point
of bone b; joints are numbered in the depth-first order of ``:hierarchy`` (root 0, then each
parent's children in the order the hierarchy lists them). The loop runs over the 30 bones, every
matrix product over all frames at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empcn.errors import EmpcnError

__all__ = [
    "Bone",
    "MocapError",
    "Skeleton",
    "axis_rotation",
    "forward_kinematics",
    "read_asf",
]

ROTATION_CHANNELS = ("rx", "ry", "rz")
TRANSLATION_CHANNELS = ("tx", "ty", "tz")
CHANNELS = ROTATION_CHANNELS + TRANSLATION_CHANNELS + ("l",)


class MocapError(EmpcnError, ValueError):
    """An ASF or AMC file that cannot be read; one line naming the file and line."""


@dataclass(frozen=True)
class Bone:
    """One ASF bone. direction: (3,) unit vector at rest (world frame); length in ASF units;
    axis: (3,) radians with ``axis_order`` (e.g. "XYZ"); dof: channel names ("rx", "ry", "rz", …) in
    AMC order; limits: (len(dof), 2) in the file's units (radians for angles here)."""

    name: str
    id: int
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dof: tuple[str, ...]
    limits: np.ndarray


@dataclass(frozen=True)
class Skeleton:
    """A parsed ASF file.

    ``names``: joint names in depth-first hierarchy order ("root" first); ``parents``: (J,) int64
    parent joint of every joint (-1 for the root); ``bones``: name → :class:`Bone` (not the root);
    ``root_order``: the root's AMC channels (e.g. ("tx", "ty", "tz", "rx", "ry", "rz"));
    ``root_axis``: rotation order of the root's orientation; ``root_position``/``root_orientation``:
    (3,) rest values (ASF units, radians); ``length_unit``: the ``:units length`` value;
    ``angle_unit``: "deg" or "rad" (the unit AMC angles are read in).
    """

    path: str
    names: tuple[str, ...]
    parents: np.ndarray
    bones: dict[str, Bone]
    root_order: tuple[str, ...]
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    length_unit: float
    angle_unit: str

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def channels(self, name: str) -> tuple[str, ...]:
        """The AMC channels of joint ``name`` (root: its ``order``; a bone without dofs: ())."""
        return self.root_order if name == "root" else self.bones[name].dof

    def bone_pairs(self) -> np.ndarray:
        """(J-1, 2) int64 [parent, child] joint index of every bone, in joint order."""
        child = np.arange(1, self.num_joints)
        return np.stack([self.parents[1:], child], axis=1).astype(np.int64)

    def rest_offsets(self) -> np.ndarray:
        """(J, 3) float64 length · direction of every bone (row 0, the root, is zero)."""
        out = np.zeros((self.num_joints, 3))
        for j, name in enumerate(self.names[1:], start=1):
            b = self.bones[name]
            out[j] = b.length * b.direction
        return out


# ----------------------------------------------------------------------------------------------
# rotations


def _elementary(axis: str, angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation by ``angle`` (radians, any shape) about "X", "Y" or "Z"."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "X": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "Y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "Z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matmul3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for (stacks of) 3×3 matrices, each entry summed over k = 0, 1, 2 in that order with
    elementwise operations: the same bits on any CPU (numpy's ``@`` calls BLAS, whose kernels round
    differently from one CPU to another), so a MoCap lift gives the same cache everywhere."""
    return a[..., :, 0:1] * b[..., 0:1, :] + a[..., :, 1:2] * b[..., 1:2, :] + a[..., :, 2:3] * b[..., 2:3, :]


def axis_rotation(angles: np.ndarray, order: str) -> np.ndarray:
    """(..., 3, 3) rotation applying ``angles[..., k]`` about axis ``order[k]`` first to last.

    ``axis_rotation([a, b, c], "XYZ") = Rz(c) · Ry(b) · Rx(a)`` (radians).
    """
    angles = np.asarray(angles, dtype=np.float64)
    out = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3)).copy()
    for k, ax in enumerate(order):
        out = matmul3(_elementary(ax, angles[..., k]), out)
    return out


def channel_rotation(values: np.ndarray, dof: tuple[str, ...]) -> np.ndarray:
    """(T, 3, 3) rotation of a bone's AMC channels ``values: (T, len(dof))`` (radians), dof order."""
    t = values.shape[0]
    out = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
    for k, ch in enumerate(dof):
        if ch in ROTATION_CHANNELS:
            out = matmul3(_elementary(ch[1].upper(), values[:, k]), out)
    return out


# ----------------------------------------------------------------------------------------------
# forward kinematics


def forward_kinematics(skeleton: Skeleton, channels: dict[str, np.ndarray]) -> np.ndarray:
    """(T, J, 3) float64 joint positions (ASF units) of T frames, joints in ``skeleton.names`` order.

    ``channels``: joint name → (T, len(skeleton.channels(name))) values, angles in **radians**
    (:func:`empcn.data.amc.read_amc` converts); bones without dofs may be absent.
    """
    root = np.asarray(channels["root"], dtype=np.float64)
    t = root.shape[0]
    order = skeleton.root_order
    pos = np.zeros((t, skeleton.num_joints, 3))
    rot = np.zeros((t, skeleton.num_joints, 3, 3))
    trans = np.broadcast_to(skeleton.root_position, (t, 3)).copy()
    for k, ch in enumerate(order):
        if ch in TRANSLATION_CHANNELS:
            trans[:, TRANSLATION_CHANNELS.index(ch)] = root[:, k]
    c_root = axis_rotation(skeleton.root_orientation, skeleton.root_axis)
    pos[:, 0] = trans
    rot[:, 0] = matmul3(matmul3(c_root, channel_rotation(root, order)), c_root.T)
    for j, name in enumerate(skeleton.names[1:], start=1):
        bone = skeleton.bones[name]
        p = int(skeleton.parents[j])
        c = axis_rotation(bone.axis, bone.axis_order)
        values = channels.get(name)
        if bone.dof and values is None:
            raise KeyError(f"forward_kinematics: no channels for bone {name!r}")
        m = channel_rotation(np.asarray(values, dtype=np.float64), bone.dof) if bone.dof else np.eye(3)
        rot[:, j] = matmul3(rot[:, p], matmul3(matmul3(c, m), c.T))
        r, d = rot[:, j], bone.direction
        pos[:, j] = pos[:, p] + bone.length * (r[:, :, 0] * d[0] + r[:, :, 1] * d[1] + r[:, :, 2] * d[2])
    return pos


# ----------------------------------------------------------------------------------------------
# reading


class _Lines:
    """The non-empty, comment-free lines of a file with their 1-based numbers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise MocapError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self.items = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(text.splitlines(), start=1)]
        self.items = [(n, w) for n, w in self.items if w]
        self.pos = 0
        self.last = len(text.splitlines())

    def error(self, line: int, reason: str) -> MocapError:
        return MocapError(f"{self.path}:{line}: {reason}")

    def peek(self) -> tuple[int, list[str]] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def next(self, what: str) -> tuple[int, list[str]]:
        item = self.peek()
        if item is None:
            raise self.error(self.last, f"truncated file: ends inside {what}")
        self.pos += 1
        return item


def _floats(lines: _Lines, line: int, words: list[str], n: int, what: str) -> np.ndarray:
    if len(words) < n:
        raise lines.error(line, f"{what} needs {n} numbers, got {len(words)}")
    try:
        return np.array([float(w) for w in words[:n]])
    except ValueError:
        bad = next(w for w in words[:n] if not _is_number(w))
        raise lines.error(line, f"{what}: {bad!r} is not a number") from None


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _order(lines: _Lines, line: int, word: str) -> str:
    order = word.upper()
    if len(order) != 3 or sorted(order) != ["X", "Y", "Z"]:
        raise lines.error(line, f"rotation order {word!r} is not a permutation of XYZ")
    return order


def read_asf(path: Path | str) -> Skeleton:
    """Parse an ASF file; :class:`MocapError` ``"<file>:<line>: <reason>"`` on anything malformed."""
    lines = _Lines(Path(path))
    units = {"length": 1.0, "angle": "deg"}
    root: dict[str, object] = {
        "order": ("tx", "ty", "tz", "rx", "ry", "rz"),
        "axis": "XYZ",
        "position": np.zeros(3),
        "orientation": np.zeros(3),
    }
    raw_bones: list[tuple[int, dict[str, object]]] = []
    hierarchy: list[tuple[int, list[str]]] = []
    seen: set[str] = set()
    while lines.peek() is not None:
        n, words = lines.next("the file")
        key = words[0].lower()
        if not key.startswith(":"):
            raise lines.error(n, f"expected a ':section' keyword, got {words[0]!r}")
        seen.add(key)
        if key == ":units":
            while (it := lines.peek()) is not None and not it[1][0].startswith(":"):
                m, w = lines.next(":units")
                if w[0] == "length":
                    units["length"] = float(_floats(lines, m, w[1:], 1, "units length")[0])
                elif w[0] == "angle":
                    if len(w) < 2 or w[1].lower() not in ("deg", "rad"):
                        raise lines.error(m, "units angle must be 'deg' or 'rad'")
                    units["angle"] = w[1].lower()
        elif key == ":root":
            while (it := lines.peek()) is not None and not it[1][0].startswith(":"):
                m, w = lines.next(":root")
                field = w[0].lower()
                if field == "order":
                    order = tuple(x.lower() for x in w[1:])
                    bad = [x for x in order if x not in ROTATION_CHANNELS + TRANSLATION_CHANNELS]
                    if bad or len(set(order)) != len(order):
                        raise lines.error(m, f"root order {' '.join(w[1:])!r} is not a list of distinct TX..RZ")
                    root["order"] = order
                elif field == "axis":
                    root["axis"] = _order(lines, m, w[1] if len(w) > 1 else "")
                elif field in ("position", "orientation"):
                    root[field] = _floats(lines, m, w[1:], 3, f"root {field}")
        elif key == ":bonedata":
            while (it := lines.peek()) is not None and not it[1][0].startswith(":"):
                m, w = lines.next(":bonedata")
                if w[0].lower() != "begin":
                    raise lines.error(m, f"expected 'begin' of a bone, got {w[0]!r}")
                raw_bones.append((m, _bone_block(lines)))
        elif key == ":hierarchy":
            m, w = lines.next(":hierarchy")
            if w[0].lower() != "begin":
                raise lines.error(m, f"expected 'begin' after :hierarchy, got {w[0]!r}")
            while True:
                m, w = lines.next(":hierarchy")
                if w[0].lower() == "end":
                    break
                hierarchy.append((m, w))
        else:  # :version, :name, :documentation, … : skip their lines
            while (it := lines.peek()) is not None and not it[1][0].startswith(":"):
                lines.next(key)
    for need in (":bonedata", ":hierarchy"):
        if need not in seen:
            raise lines.error(lines.last, f"truncated file: no {need} section")
    angle = 1.0 if units["angle"] == "rad" else np.pi / 180.0
    bones = _make_bones(lines, raw_bones, angle)
    names, parents = _depth_first(lines, hierarchy, bones)
    missing = sorted(set(bones) - set(names))
    if missing:
        raise lines.error(hierarchy[-1][0] if hierarchy else lines.last, f"bone {missing[0]!r} is not in :hierarchy")
    return Skeleton(
        path=str(path),
        names=tuple(names),
        parents=np.asarray(parents, dtype=np.int64),
        bones=bones,
        root_order=tuple(root["order"]),  # type: ignore[arg-type]
        root_axis=str(root["axis"]),
        root_position=np.asarray(root["position"], dtype=np.float64),
        root_orientation=np.asarray(root["orientation"], dtype=np.float64) * angle,
        length_unit=float(units["length"]),
        angle_unit=str(units["angle"]),
    )


def _bone_block(lines: _Lines) -> dict[str, object]:
    """The fields of one ``begin … end`` bone block (the ``begin`` already read)."""
    out: dict[str, object] = {}
    while True:
        n, w = lines.next("a bone block (no 'end')")
        field = w[0].lower()
        if field == "end":
            return out
        if field == "begin" or field.startswith(":"):
            raise lines.error(n, f"bone block without 'end' (found {w[0]!r})")
        if field == "id":
            out["id"] = (n, w[1:])
        elif field == "name":
            if len(w) < 2:
                raise lines.error(n, "bone name missing")
            out["name"] = (n, w[1])
        elif field == "direction":
            out["direction"] = (n, _floats(lines, n, w[1:], 3, "bone direction"))
        elif field == "length":
            out["length"] = (n, _floats(lines, n, w[1:], 1, "bone length"))
        elif field == "axis":
            if len(w) != 5:
                raise lines.error(n, f"bone axis needs 3 angles and a rotation order, got {len(w) - 1} words")
            out["axis"] = (n, _floats(lines, n, w[1:4], 3, "bone axis"), _order(lines, n, w[4]))
        elif field == "dof":
            dof = tuple(x.lower() for x in w[1:])
            bad = [x for x in dof if x not in CHANNELS]
            if bad or len(set(dof)) != len(dof):
                raise lines.error(n, f"dof {' '.join(w[1:])!r}: channels must be distinct rx ry rz tx ty tz l")
            out["dof"] = (n, dof)
        elif field == "limits":
            rows = [(n, w[1:])]
            count = len(out.get("dof", (0, ()))[1])  # type: ignore[arg-type]
            while len(rows) < count:
                rows.append(lines.next("bone limits"))
            out["limits"] = (n, [_limit(lines, m, x) for m, x in rows])


def _limit(lines: _Lines, line: int, words: list[str]) -> tuple[float, float]:
    text = " ".join(words).replace("(", " ").replace(")", " ").split()
    values = []
    for word in text:
        if word.lower() in ("inf", "+inf", "-inf"):
            values.append(float(word))
        elif _is_number(word):
            values.append(float(word))
        else:
            raise lines.error(line, f"limits: {word!r} is not a number")
    if len(values) != 2:
        raise lines.error(line, f"limits need (min max), got {len(values)} numbers")
    return values[0], values[1]


def _make_bones(lines: _Lines, raw: list[tuple[int, dict[str, object]]], angle: float) -> dict[str, Bone]:
    bones: dict[str, Bone] = {}
    for begin, fields in raw:
        for need in ("name", "direction", "length", "axis"):
            if need not in fields:
                raise lines.error(begin, f"bone block has no {need!r}")
        n_name, name = fields["name"]  # type: ignore[misc]
        if name in bones or name == "root":
            raise lines.error(n_name, f"bone {name!r} defined twice")
        n_dir, direction = fields["direction"]  # type: ignore[misc]
        dx, dy, dz = (float(v) for v in direction)
        norm = math.sqrt(dx * dx + dy * dy + dz * dz)  # not np.linalg.norm: BLAS rounds per CPU
        if not np.isfinite(norm) or norm == 0.0:
            raise lines.error(n_dir, f"bone {name!r}: direction has zero length")
        _, length = fields["length"]  # type: ignore[misc]
        _, axis, order = fields["axis"]  # type: ignore[misc]
        dof = fields.get("dof", (0, ()))[1]  # type: ignore[index]
        limits_raw = fields.get("limits", (0, [(-np.inf, np.inf)] * len(dof)))  # type: ignore[arg-type]
        n_lim, lim = limits_raw  # type: ignore[misc]
        if len(lim) != len(dof):
            raise lines.error(n_lim, f"bone {name!r}: {len(lim)} limits for {len(dof)} dofs")
        scale = np.array([angle if ch in ROTATION_CHANNELS else 1.0 for ch in dof])
        ident = fields.get("id", (0, ["0"]))[1]  # type: ignore[index]
        bones[name] = Bone(
            name=name,
            id=int(ident[0]) if ident and ident[0].lstrip("-").isdigit() else 0,
            direction=np.asarray(direction, dtype=np.float64) / norm,
            length=float(length[0]),
            axis=np.asarray(axis, dtype=np.float64) * angle,
            axis_order=order,
            dof=tuple(dof),
            limits=np.asarray(lim, dtype=np.float64).reshape(-1, 2) * scale[:, None],
        )
    return bones


def _depth_first(
    lines: _Lines, hierarchy: list[tuple[int, list[str]]], bones: dict[str, Bone]
) -> tuple[list[str], list[int]]:
    """Joint names in depth-first order of ``:hierarchy`` and each one's parent index."""
    children: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for n, words in hierarchy:
        parent, kids = words[0], words[1:]
        for name in (parent, *kids):
            if name != "root" and name not in bones:
                raise lines.error(n, f"unknown bone {name!r} in :hierarchy")
        if parent in children:
            raise lines.error(n, f"{parent!r} has two lines in :hierarchy")
        for kid in kids:
            if kid in has_parent or kid == "root":
                raise lines.error(n, f"bone {kid!r} has two parents in :hierarchy")
            has_parent.add(kid)
        children[parent] = kids
    names: list[str] = []
    parents: list[int] = []
    stack: list[tuple[str, int]] = [("root", -1)]
    while stack:
        name, parent = stack.pop()
        index = len(names)
        names.append(name)
        parents.append(parent)
        stack.extend((kid, index) for kid in reversed(children.get(name, [])))
    return names, parents
