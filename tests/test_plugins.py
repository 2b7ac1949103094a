"""Plug-ins: a data set from another package, installed with pip into a temporary folder, lifts through the
command line exactly like a built-in one; a broken plug-in is one line naming its package.

The plug-in is the real package ``tests/plugins/empcn-pointclouds`` (pyproject + module), following
docs/architecture.md's recipe "Adding a plug-in"; every command runs in a fresh process whose
``PYTHONPATH`` holds the folder pip installed it into.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugins" / "empcn-pointclouds"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in installed by pip into a folder of its own (built from a copy: pip builds in the source tree),
    offline and without build isolation: with the setuptools of the test environment (the ``test`` extra)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "empcn-pointclouds"
    shutil.copytree(PLUGIN, source)
    target = tmp / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (target / "empcn_pointclouds-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def run(path: Path, *args: object, python: str | None = None) -> subprocess.CompletedProcess:
    """``python -m empcn ARGS`` (or ``python -c CODE``) with ``path`` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO)]), "OMP_NUM_THREADS": "1"}
    command = ["-c", python] if python is not None else ["-m", "empcn", *map(str, args)]
    return subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=600)


def one_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_a_plug_in_data_set_lifts_like_a_built_in_one(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "clouds.h5"
    lift = ["lift", "--dataset", "pointclouds", "--samples", "40", "--no-progress"]
    done = run(site, *lift, "--shard-size", "16", "--workers", "2", "--out", out)
    assert done.returncode == 0 and f"wrote {out}: 40 samples in 3 shards" in done.stdout, done.stderr
    verified = run(site, "cache", "verify", out)
    assert verified.returncode == 0 and "ok:" in verified.stdout, verified.stderr

    # the rest in one process (the same command line, in-process): listing, help, resume, misuse,
    # --cache-dir, what the cache holds, and predict's hook lifting a cloud file as the cache was lifted
    check = f"""
import json, numpy as np
from pathlib import Path
from typer.testing import CliRunner
from empcn import open_cache
from empcn.cli import app
from empcn.lift.datasets import dataset
def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])
listed = cli("datasets")
assert listed.exit_code == 0, listed.output
assert "pointclouds  (plug-in empcn-pointclouds 0.1.0, empcn_pointclouds.dataset:SPEC; task scalar" in listed.output
assert "qm9  (built-in" in listed.output and "--min-points INT" in listed.output
shown = " ".join(cli("lift", "--dataset", "pointclouds", "--help").output.split())
for text in ("Options of --dataset pointclouds:", "--samples INT", "[default: 200]", "[default: 5 points]",
             "--cache-dir DIR", "[default: data/pointclouds.h5]", "[default: 64 samples]", "--resume"):
    assert text in shown, text
assert "--strict" not in shown and "--limit" not in shown
out, tmp = Path({str(out)!r}), Path({str(tmp_path)!r})
lift = {lift!r}
shards = sorted(out.with_name("clouds.shards").glob("shard-*.h5"))
stamps = [p.stat().st_mtime_ns for p in shards]
again = cli(*lift, "--shard-size", "16", "--workers", "1", "--out", out, "--resume")
assert again.exit_code == 0 and [p.stat().st_mtime_ns for p in shards] == stamps, again.output  # all reused
refused = cli(*lift, "--limit", "3", "--out", tmp / "x.h5")
assert refused.exit_code == 2 and refused.output.startswith(
    "error: --limit is not an option of --dataset pointclouds") and len(refused.output.splitlines()) == 1, refused.output
first, second = cli(*lift, "--cache-dir", tmp / "team"), cli(*lift, "--cache-dir", tmp / "team")
assert first.exit_code == 0 and "wrote" in first.output, first.output
assert second.exit_code == 0 and "reusing" in second.output and "wrote" not in second.output, second.output

cache = open_cache(out)
m = cache.manifest
assert m["dataset"] == "pointclouds" and "task" not in m and m["targets"]["names"] == ["rg"], m
assert m["plugin"] == {{"distribution": "empcn-pointclouds", "version": "0.1.0",
                       "entry_point": "empcn_pointclouds.dataset:SPEC"}}, m["plugin"]
assert sum(m["splits"]["counts"].values()) == 40 and m["fields"]["sample/y"].startswith("(S, 1)")
for i in range(len(cache)):
    s = cache[i]
    pos = s["pos"].astype(np.float64)
    assert [tuple(r) for r in s["rings"]] == [(0, 1, 2, 3)] and 5 <= len(pos) <= 12
    assert abs(s["sample/y"][0, 0] - np.sqrt(((pos - pos.mean(0)) ** 2).sum(1).mean())) < 1e-5
hook = dataset("pointclouds").predict
s = cache[7]
np.save(tmp / "c7.npy", s["pos"])
(tmp / "c7.json").write_text(json.dumps({{"points": s["pos"].tolist()}}))
(tmp / "bad.json").write_text(json.dumps({{"points": [[0, 0, 0]]}}))
for name in ("c7.npy", "c7.json"):
    (label, item), = hook.read(tmp / name)
    new = hook.lift(item, m["params"], label)
    for key in ("edges/index", "rings/area", "rings/perimeter", "nbr/0_2/index", "nbr/1_1_lower/dist", "nodes/pos"):
        assert np.array_equal(new[key], s[key]), key
(label, item), = hook.read(tmp / "bad.json")
assert isinstance(item, Exception) and "bad.json" in str(item) and "N >= 4" in str(item), item
print("ok")
"""
    checked = run(site, python=check)
    assert checked.returncode == 0 and checked.stdout.strip().endswith("ok"), checked.stdout[-2000:] + checked.stderr[-3000:]


def test_a_broken_plug_in_is_one_line_naming_its_package(tmp_path: Path) -> None:
    """An installed distribution (what pip writes: a module and a dist-info folder) with bad entry points."""
    site = tmp_path / "site"
    (site / "empcn_broken").mkdir(parents=True)
    (site / "empcn_broken" / "__init__.py").write_text("NOT_A_SPEC = 42\n")
    info = site / "empcn_broken-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: empcn-broken\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text(
        "[empcn.datasets]\nmissing = empcn_broken.gone:SPEC\nnotaspec = empcn_broken:NOT_A_SPEC\n"
        "qm9 = empcn_broken:NOT_A_SPEC\n"
    )
    missing = run(site, "lift", "--dataset", "missing", "--out", tmp_path / "m.h5")
    assert missing.returncode == 2
    line = one_error(missing)
    assert "'missing' (plug-in empcn-broken)" in line and "cannot be loaded from empcn_broken.gone:SPEC" in line
    wrong = run(site, "lift", "--dataset", "notaspec", "--out", tmp_path / "n.h5")
    assert wrong.returncode == 2 and "(plug-in empcn-broken)" in one_error(wrong)
    assert "is not a valid data set: expected an empcn.lift.spec.DatasetSpec, got int" in one_error(wrong)
    listed = run(site, "datasets")
    assert listed.returncode == 1 and "qm9  (built-in" in listed.stdout  # the built-in wins its name
    problems = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(problems) == 3 and all("empcn-broken" in p for p in problems), listed.stderr
    assert any(p.startswith("note: ignored plug-in empcn-broken 0.2's entry point 'qm9 = ") for p in problems)
    assert not list(tmp_path.glob("*.h5"))
