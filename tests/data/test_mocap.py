"""CMU motion capture reader: ASF skeleton, AMC frames, forward kinematics, the protocol, bad files.

Real data throughout: CMU subject 35 as the package finds it (the built-in copy, or $EMPCN_MOCAP_DIR;
missing data fails the tests, it does not skip them).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from empcn.data.amc import joint_positions, read_amc
from empcn.data.asf import MocapError, axis_rotation, forward_kinematics, read_asf
from empcn.data.mocap import (
    MocapProtocol,
    Trial,
    default_source,
    draw_samples,
    find_source,
    frames_of,
    split_trials,
)


@pytest.fixture(scope="module")
def folder() -> Path:
    path = default_source()
    assert (path / "35.asf").is_file() and (path / "35_01.amc").is_file() and (path / "amc30").is_dir(), path
    return path


@pytest.fixture(scope="module")
def skeleton(folder):
    return read_asf(folder / "35.asf")


@pytest.fixture(scope="module")
def walk120(folder, skeleton):
    return read_amc(folder / "35_01.amc", skeleton)


def test_the_hierarchy_gives_31_joints_in_depth_first_order(skeleton):
    names = skeleton.names
    assert len(names) == 31 and names[0] == "root"
    assert names[1:6] == ("lhipjoint", "lfemur", "ltibia", "lfoot", "ltoes")
    assert names[6:11] == ("rhipjoint", "rfemur", "rtibia", "rfoot", "rtoes")
    assert names[11:17] == ("lowerback", "upperback", "thorax", "lowerneck", "upperneck", "head")
    assert names[17:24] == ("lclavicle", "lhumerus", "lradius", "lwrist", "lhand", "lfingers", "lthumb")
    assert names[24:31] == ("rclavicle", "rhumerus", "rradius", "rwrist", "rhand", "rfingers", "rthumb")
    parent = dict(zip(names, (names[p] if p >= 0 else None for p in skeleton.parents)))
    assert parent["lthumb"] == "lwrist" and parent["lfingers"] == "lhand" and parent["rclavicle"] == "thorax"
    assert all(skeleton.parents[j] < j for j in range(1, 31))  # depth-first: parents come first


def test_asf_fields_are_read_with_units_axes_dofs_and_limits(skeleton):
    assert skeleton.length_unit == 0.45 and skeleton.angle_unit == "deg"
    assert skeleton.root_order == ("tx", "ty", "tz", "rx", "ry", "rz") and skeleton.root_axis == "XYZ"
    femur = skeleton.bones["lfemur"]
    assert femur.length == 7.41015 and femur.dof == ("rx", "ry", "rz") and femur.axis_order == "XYZ"
    np.testing.assert_allclose(femur.axis, np.deg2rad([0, 0, 20]))
    np.testing.assert_allclose(femur.limits, np.deg2rad([[-160, 20], [-70, 70], [-60, 70]]))
    assert skeleton.bones["lhipjoint"].dof == () and skeleton.bones["lclavicle"].dof == ("ry", "rz")
    assert np.isclose(np.linalg.norm(skeleton.bones["lfoot"].direction), 1.0)


def test_bone_lengths_are_constant_over_all_frames(folder, skeleton, walk120):
    for motion in (walk120, read_amc(folder / "amc30" / "train_05.amc", skeleton)):
        x = joint_positions(skeleton, motion)
        lengths = np.linalg.norm(x[:, 1:] - x[:, skeleton.parents[1:]], axis=-1)  # (T, 30)
        want = np.array([skeleton.bones[n].length for n in skeleton.names[1:]])
        np.testing.assert_allclose(lengths, np.broadcast_to(want, lengths.shape), rtol=1e-12, atol=1e-12)


def test_all_zero_angles_give_the_rest_pose(skeleton):
    zero = {name: np.zeros((2, len(skeleton.channels(name)))) for name in skeleton.names}
    x = forward_kinematics(skeleton, zero)
    # the rest pose, accumulated from the file's numbers: left ankle = lhipjoint + lfemur + ltibia
    ankle = (
        2.63917 * np.array([0.673618, -0.716094, 0.182886]) / np.linalg.norm([0.673618, -0.716094, 0.182886])
        + 7.41015 * np.array([0.34202, -0.939693, 0]) / np.linalg.norm([0.34202, -0.939693, 0])
        + 7.92551 * np.array([0.34202, -0.939693, 0]) / np.linalg.norm([0.34202, -0.939693, 0])
    )
    np.testing.assert_allclose(x[0, 3], ankle, atol=1e-12)
    offsets = x[0, 1:] - x[0, skeleton.parents[1:]]
    for j, name in enumerate(skeleton.names[1:]):
        bone = skeleton.bones[name]
        np.testing.assert_allclose(offsets[j], bone.length * bone.direction, atol=1e-12)
    np.testing.assert_array_equal(x[0, 0], 0.0)


def test_the_120hz_trial_equals_the_30hz_file_at_every_4th_frame(folder, skeleton, walk120):
    m30 = read_amc(folder / "amc30" / "train_01.amc", skeleton)
    assert walk120.num_frames == 358 and m30.num_frames == 90
    np.testing.assert_array_equal(m30.frames, np.arange(1, 91))
    np.testing.assert_array_equal(walk120.frames[::4], np.arange(1, 359, 4))
    for name, values in m30.channels.items():  # the two files list the bones in different orders
        np.testing.assert_array_equal(values, walk120.channels[name][::4], err_msg=name)
    np.testing.assert_allclose(joint_positions(skeleton, m30), joint_positions(skeleton, walk120)[::4], atol=1e-12)


def test_a_hand_checked_knee_rotation(skeleton):
    """ltibia (axis 0 0 20 XYZ, direction (sin 20°, −cos 20°, 0)) bent 90° about its local x.

    C = Rz(20°), so R = C Rx(90°) C⁻¹ turns by 90° about C·x̂ = (cos 20°, sin 20°, 0), which is
    perpendicular to the shin: the shin then points along (cos20, sin20, 0) × (sin20, −cos20, 0) = −z.
    """
    zero = {name: np.zeros((1, len(skeleton.channels(name)))) for name in skeleton.names}
    bent = {k: v.copy() for k, v in zero.items()}
    bent["ltibia"][0, 0] = np.pi / 2
    rest, x = forward_kinematics(skeleton, zero)[0], forward_kinematics(skeleton, bent)[0]
    np.testing.assert_allclose(x[:3], rest[:3], atol=1e-12)  # root, hip, knee do not move
    np.testing.assert_allclose(x[3], rest[2] + 7.92551 * np.array([0.0, 0.0, -1.0]), atol=1e-5)
    np.testing.assert_allclose(x[6:], rest[6:], atol=1e-12)  # nothing else moves
    # the foot turns rigidly with the shin: Rx(90°) about the knee's axis
    r = axis_rotation(np.deg2rad([0, 0, 20]), "XYZ") @ axis_rotation([np.pi / 2, 0, 0], "XYZ")
    r = r @ axis_rotation(np.deg2rad([0, 0, 20]), "XYZ").T
    np.testing.assert_allclose(x[4] - x[3], r @ (rest[4] - rest[3]), atol=1e-12)


def test_rotation_order_is_first_letter_first():
    a = np.deg2rad([10.0, 20.0, 30.0])
    xyz = axis_rotation(a, "XYZ")
    rz = axis_rotation([0, 0, a[2]], "XYZ")
    ry = axis_rotation([0, a[1], 0], "XYZ")
    rx = axis_rotation([a[0], 0, 0], "XYZ")
    np.testing.assert_allclose(xyz, rz @ ry @ rx, atol=1e-15)
    np.testing.assert_allclose(axis_rotation(a[::-1], "ZYX"), rx @ ry @ rz, atol=1e-15)
    np.testing.assert_allclose(rx @ np.array([0, 1.0, 0]), [0, np.cos(a[0]), np.sin(a[0])], atol=1e-15)


# ---------------------------------------------------------------- the protocol


def test_the_30hz_folder_keeps_its_23_walks_by_length(folder, skeleton):
    source = find_source(folder / "amc30")
    protocol = MocapProtocol(fps=30)
    assert (protocol.window_frames, protocol.horizon_frames, protocol.min_frames) == (75, 8, 83)
    assert (MocapProtocol().window_frames, MocapProtocol().horizon_frames) == (300, 30)
    lengths = {p.stem: read_amc(p, skeleton).num_frames for p in source.trials}
    long_enough = {n for n, t in lengths.items() if t >= protocol.min_frames}
    walks = {f"train_{k:02d}" for k in (*range(1, 17), *range(26, 32))} | {"test_02"}  # its README's list
    assert long_enough == walks


def _fake_trials(n: int, frames: int) -> list[Trial]:
    rng = np.random.default_rng(5)
    return [Trial(f"t{k:02d}", rng.normal(size=(frames, 4, 3)), np.arange(1, frames + 1)) for k in range(n)]


def test_split_by_trial_is_seeded_and_samples_follow_the_protocol():
    trials = _fake_trials(8, 100)
    protocol = MocapProtocol(fps=30, trial_split=(4, 2, 2), train_samples=50, seed=3)
    splits = split_trials([t.name for t in trials], protocol)
    assert splits == split_trials([t.name for t in reversed(trials)], protocol)
    assert splits != split_trials([t.name for t in trials], MocapProtocol(fps=30, trial_split=(4, 2, 2), seed=4))
    assert sorted(sum(splits.values(), [])) == [t.name for t in trials]
    s = draw_samples(trials, splits, protocol)
    counts = np.bincount(s.split)
    assert counts.tolist() == [50, 2 * 74, 2 * 74]  # causal: start frames 1..74
    assert s.start.min() == 1 and s.start.max() == 74
    names = np.array(s.trial_names)[s.trial]
    for code, split in enumerate(("train", "valid", "test")):
        assert set(names[s.split == code]) <= set(splits[split])
    by = {t.name: t.positions for t in trials}
    k = 17
    x = by[names[k]]
    np.testing.assert_array_equal(s.pos[k], x[s.start[k]])
    np.testing.assert_array_equal(s.target_pos[k], x[s.start[k] + 8])
    np.testing.assert_allclose(s.vel[k], (x[s.start[k]] - x[s.start[k] - 1]) * 30 / 120)
    fwd = draw_samples(trials, splits, MocapProtocol(fps=30, trial_split=(4, 2, 2), velocity="forward"))
    assert fwd.start.min() == 0
    j = int(np.flatnonzero(fwd.split == 1)[3])
    xf = by[np.array(fwd.trial_names)[fwd.trial[j]]]
    np.testing.assert_allclose(fwd.vel[j], (xf[fwd.start[j] + 1] - xf[fwd.start[j]]) * 30 / 120)
    assert frames_of(0.25, 30) == 8 and frames_of(0.25, 120) == 30


# ---------------------------------------------------------------- bad files


def _edited(src: Path, dst: Path, edit) -> Path:
    dst.write_text(edit(src.read_text()))
    return dst


def _line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    hits = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def _one_line_error(call, path: Path, line: int, words: str) -> None:
    with pytest.raises(MocapError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: "), message
    assert re.search(words, message), message


def test_malformed_amc_files_give_one_line_errors(folder, skeleton, tmp_path):
    src = folder / "amc30" / "train_01.amc"
    text = src.read_text()
    # a frame without its lfemur line: reported at that frame's number line
    bad = _edited(src, tmp_path / "missing.amc", lambda t: t.replace("lfemur -27.2247 -5.87922 -8.40911\n", ""))
    frame2 = bad.read_text().splitlines().index("2") + 1
    _one_line_error(lambda: read_amc(bad, skeleton), bad, frame2, "frame 2 has no line for bone 'lfemur'")
    # wrong number of values
    bad = _edited(src, tmp_path / "count.amc", lambda t: t.replace("rtibia 25.6934\n", "rtibia 25.6934 1.0\n", 1))
    _one_line_error(lambda: read_amc(bad, skeleton), bad, _line_of(bad, "rtibia 25.6934 1.0"), "has 2 values.*needs 1")
    # non-numeric value
    bad = _edited(src, tmp_path / "text.amc", lambda t: t.replace("ltibia 22.5608\n", "ltibia 22.5x08\n", 1))
    _one_line_error(lambda: read_amc(bad, skeleton), bad, _line_of(bad, "22.5x08"), "'22.5x08' is not a number")
    # unknown bone
    bad = _edited(src, tmp_path / "unknown.amc", lambda t: t.replace("lfingers", "lfinger", 1))
    _one_line_error(lambda: read_amc(bad, skeleton), bad, _line_of(bad, "lfinger "), "unknown bone 'lfinger'")
    # truncated in the middle of the last frame, and in the middle of a line
    lines = text.splitlines(keepends=True)
    bad = tmp_path / "short.amc"
    bad.write_text("".join(lines[:-5]))
    _one_line_error(lambda: read_amc(bad, skeleton), bad, len(lines) - 5, "truncated file: the last frame 90")
    cut = tmp_path / "cut.amc"
    assert lines[-1].split()[0] == "rthumb" and len(lines[-1].split()) == 3
    cut.write_text("".join(lines[:-1]) + lines[-1][:14])  # "rthumb 8.79861", cut mid-line
    _one_line_error(lambda: read_amc(cut, skeleton), cut, len(lines), "truncated file: bone 'rthumb' has 1 values")


def test_malformed_asf_files_give_one_line_errors(folder, tmp_path):
    src = folder / "35.asf"
    bad = _edited(src, tmp_path / "len.asf", lambda t: t.replace("length 7.41015", "length seven", 1))
    _one_line_error(lambda: read_asf(bad), bad, _line_of(bad, "length seven"), "'seven' is not a number")
    bad = _edited(src, tmp_path / "hier.asf", lambda t: t.replace("lhand lfingers", "lhand lfinger", 1))
    _one_line_error(lambda: read_asf(bad), bad, _line_of(bad, "lhand lfinger"), "unknown bone 'lfinger'")
    text = src.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.asf"
    cut.write_text("".join(text[:40]))
    _one_line_error(lambda: read_asf(cut), cut, 40, "truncated file")
    bad = _edited(src, tmp_path / "axis.asf", lambda t: t.replace("axis 0 0 20  XYZ", "axis 0 0 20  XYQ", 1))
    _one_line_error(lambda: read_asf(bad), bad, _line_of(bad, "XYQ"), "rotation order 'XYQ'")


def test_a_missing_source_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(MocapError, match="no such folder"):
        find_source(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MocapError, match="no .asf skeleton"):
        find_source(tmp_path / "empty")
    monkeypatch.setenv("EMPCN_MOCAP_DIR", str(tmp_path / "gone"))
    with pytest.raises(MocapError, match="EMPCN_MOCAP_DIR"):
        default_source()
