"""Team sharing: the cache fingerprint, ``lift --cache-dir`` (reuse, atomic, concurrent), read-only caches, ``cache ls``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from helpers import OPLS_ENERGY, invoke, rdkit_ligands

from empcn.cache import cache_fingerprint, lift_fingerprint, open_cache, verify_cache
from empcn.lift.datasets import lift_unclaimed
from empcn.lift.molecules import MoleculesLiftConfig
from empcn.lift.output import claim_output, lock_path
from empcn.lift.shared import entry_in

REPO = Path(__file__).resolve().parents[1]


def lift_args(source: Path, *extra: object) -> list[object]:
    return [
        "lift",
        "--dataset",
        "molecules",
        "--source",
        source,
        "--targets",
        OPLS_ENERGY,
        "--workers",
        "1",
        "--no-progress",
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and mtime (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_fingerprint_is_source_parameters_and_format(tmp_path: Path) -> None:
    sdf = tmp_path / "cdk2.sdf"
    shutil.copy(rdkit_ligands("cdk2"), sdf)
    config = MoleculesLiftConfig(source=sdf, targets=OPLS_ENERGY, out=tmp_path / "a.h5", progress=False)
    before = lift_fingerprint("molecules", config.source_info()["fingerprint"], config.recorded_params())
    r = invoke(*lift_args(sdf, "--out", tmp_path / "a.h5"))
    assert r.exit_code == 0, r.output
    assert cache_fingerprint(open_cache(tmp_path / "a.h5").manifest) == before  # known before lifting
    info = invoke("cache", "info", tmp_path / "a.h5")
    assert f"fingerprint {before}" in info.stdout
    # same source and parameters elsewhere, with other workers: the same fingerprint; a parameter or a byte: another
    assert invoke(*lift_args(sdf, "--out", tmp_path / "b" / "b.h5", "--workers", "2")).exit_code == 0
    assert cache_fingerprint(open_cache(tmp_path / "b" / "b.h5").manifest) == before
    assert invoke(*lift_args(sdf, "--out", tmp_path / "c.h5", "--seed", "3")).exit_code == 0
    assert cache_fingerprint(open_cache(tmp_path / "c.h5").manifest) != before
    sdf.write_text(sdf.read_text().replace("-78.6454", "-78.6455", 1))
    changed = MoleculesLiftConfig(source=sdf, targets=OPLS_ENERGY, out=tmp_path / "d.h5", progress=False)
    assert lift_fingerprint("molecules", changed.source_info()["fingerprint"], changed.recorded_params()) != before
    assert lift_fingerprint("molecules", config.source_info()["fingerprint"], config.recorded_params(), 1) != before


def test_cache_dir_reuses_a_verified_cache_and_relifts_a_damaged_one(tmp_path: Path) -> None:
    team = tmp_path / "team"
    r = invoke(*lift_args(rdkit_ligands("cdk2"), "--cache-dir", team))
    assert r.exit_code == 0, r.output
    entries = sorted(team.glob("*.h5"))
    assert len(entries) == 1 and entries[0].name.startswith("molecules-")
    fp = cache_fingerprint(open_cache(entries[0]).manifest)
    assert entries[0] == entry_in(team, "molecules", fp)
    before = snapshot(team)
    r = invoke(*lift_args(rdkit_ligands("cdk2"), "--cache-dir", team))
    assert r.exit_code == 0, r.output
    reuse = [line for line in r.stdout.splitlines() if line.startswith("reusing")]
    assert len(reuse) == 1 and str(entries[0]) in reuse[0] and fp[:16] in reuse[0]
    assert snapshot(team) == before  # nothing written
    # another parameter: a second cache beside the first
    assert invoke(*lift_args(rdkit_ligands("cdk2"), "--cache-dir", team, "--seed", "1")).exit_code == 0
    assert len(list(team.glob("*.h5"))) == 2
    # a damaged shard is not reused: the lift writes it again
    shard = next((team / (entries[0].stem + ".shards")).glob("shard-*.h5"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert not verify_cache(entries[0]).ok
    r = invoke(*lift_args(rdkit_ligands("cdk2"), "--cache-dir", team))
    assert r.exit_code == 0 and "reusing" not in r.stdout and verify_cache(entries[0]).ok
    r = invoke(*lift_args(rdkit_ligands("cdk2"), "--cache-dir", team, "--out", tmp_path / "x.h5"))
    assert r.exit_code == 2 and "--cache-dir" in r.stderr
    # cache ls: dataset, fingerprint, parameters, size, date of each
    ls = invoke("cache", "ls", "--cache-dir", team, "--json")
    assert ls.exit_code == 0, ls.output
    rows = json.loads(ls.stdout)
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in team.glob("*.h5"))
    for row in rows:
        m = open_cache(team / row["file"]).manifest
        assert row["dataset"] == "molecules" and row["fingerprint"] == cache_fingerprint(m)
        assert row["params"] == m["params"] and row["samples"] == 47 and row["bytes"] > 0 and "UTC" in row["date"]
    text = invoke("cache", "ls", "--cache-dir", team).stdout.splitlines()
    assert len(text) == 2 and all("molecules" in line and "MiB" in line and "seed=" in line for line in text)
    (team / "garbage.h5").write_bytes(b"not hdf5")
    listed = invoke("cache", "ls", "--cache-dir", team)
    assert listed.exit_code == 0 and "garbage.h5  unreadable:" in listed.stdout and len(listed.stdout.splitlines()) == 3


def _lift_process(source: Path, team: Path, log: Path) -> subprocess.Popen:
    """``empcn lift --cache-dir team`` in another process, its stdout and stderr in ``log``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [
        sys.executable,
        "-m",
        "empcn",
        *[str(a) for a in lift_args(source, "--cache-dir", team, "--shard-size", "64")],
    ]
    return subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def test_a_lift_waits_for_another_writing_the_same_cache_then_reuses_it(tmp_path: Path) -> None:
    from dataclasses import replace

    team = tmp_path / "team"
    team.mkdir()
    config = MoleculesLiftConfig(source=rdkit_ligands("cdk2"), targets=OPLS_ENERGY, shard_size=64, progress=False)
    fp = lift_fingerprint("molecules", config.source_info()["fingerprint"], config.recorded_params())
    entry = entry_in(team, "molecules", fp)
    log = tmp_path / "other.log"
    with claim_output(entry):  # this test is the first writer; the other process must wait for it
        other = _lift_process(rdkit_ligands("cdk2"), team, log)
        deadline = time.monotonic() + 120
        while "waiting" not in log.read_text() and other.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "waiting for another lift" in log.read_text(), log.read_text()
        lift_unclaimed(replace(config, out=entry))
    assert other.wait(timeout=120) == 0, log.read_text()
    said = log.read_text()
    assert f"reusing {entry}" in said and "wrote" not in said  # it lifted nothing
    assert sorted(p.name for p in team.iterdir()) == [entry.name, entry.stem + ".shards"]
    assert verify_cache(entry).ok


def test_two_concurrent_lifts_give_one_intact_cache(tmp_path: Path) -> None:
    team = tmp_path / "team"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_lift_process(rdkit_ligands("egfr"), team, log) for log in logs]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [log.read_text() for log in logs]
    said = [log.read_text() for log in logs]
    assert sum("reusing" in text for text in said) == 1, said  # one lifted, the other reused its cache
    entries = list(team.glob("*.h5"))
    assert len(entries) == 1 and verify_cache(entries[0]).ok
    # nothing else: no temporary files, no lock left, one shard folder with the manifest's shards
    folder = team / (entries[0].stem + ".shards")
    assert sorted(p.name for p in team.iterdir()) == sorted([entries[0].name, folder.name])
    shards = {s["file"].split("/")[-1] for s in open_cache(entries[0]).manifest["shards"]}
    assert {p.name for p in folder.iterdir()} == shards | {f"{n}.sha256" for n in shards}
    assert not lock_path(entries[0]).exists()


def test_a_read_only_copy_is_fully_usable(tmp_path: Path) -> None:
    lifted = tmp_path / "lift" / "cdk2.h5"
    assert invoke(*lift_args(rdkit_ligands("cdk2"), "--out", lifted, "--fractions", "0.6,0.2,0.2")).exit_code == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy2(lifted, shared / lifted.name)
    shutil.copytree(lifted.with_name("cdk2.shards"), shared / "cdk2.shards")
    for path in [*shared.rglob("*"), shared]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    entry = shared / lifted.name
    before = snapshot(shared)
    try:
        assert invoke("cache", "verify", entry).exit_code == 0
        info = invoke("cache", "info", entry)
        assert info.exit_code == 0 and "47" in info.stdout
        assert invoke("cache", "ls", "--cache-dir", shared).exit_code == 0
        run = tmp_path / "run"
        r = invoke(
            "train",
            "--cache",
            entry,
            "--target",
            "energy",
            "--model",
            "egnn",
            "--out",
            run,
            "--hidden",
            "16",
            "--layers",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--no-progress",
            "--device",
            "cpu",
        )
        assert r.exit_code == 0, r.output
        r = invoke("evaluate", run, "--device", "cpu")
        assert r.exit_code == 0 and "test MAE" in r.stdout, r.output
        # the same in another process, with HDF5 file locking left at its default
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("HDF5_USE_FILE_LOCKING", None)
        code = f"from empcn import open_cache; c = open_cache({str(entry)!r}); print(sum(len(s['z']) for s in c))"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and int(out.stdout) == open_cache(lifted).manifest["counts"]["nodes"], out.stderr
        # no lock files, no writes: every name, size and mtime as before (root ignores the mode, so check it)
        assert snapshot(shared) == before
    finally:
        for path in [shared, *shared.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_qm9_fingerprint_is_known_before_the_lift_and_shared_by_cache_dir(qm9_cache: Path, tmp_path: Path) -> None:
    from empcn.data.qm9 import source_fingerprint
    from empcn.lift.qm9 import QM9LiftConfig

    params = QM9LiftConfig(limit=300, shard_size=128).recorded_params()
    assert cache_fingerprint(open_cache(qm9_cache).manifest) == lift_fingerprint(
        "qm9", source_fingerprint(None), params
    )
    args = ["lift", "--dataset", "qm9", "--limit", "40", "--cache-dir", tmp_path, "--workers", "1", "--no-progress"]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "wrote" in first.stdout and "reusing" in second.stdout and "wrote" not in second.stdout
    assert len(list(tmp_path.glob("qm9-*.h5"))) == 1
