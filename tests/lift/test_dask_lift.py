"""Lifting on Dask (``empcn lift --scheduler``): the same bytes as one process, killed workers, checks."""

from __future__ import annotations

import dataclasses
import filecmp
import os
import time
from pathlib import Path

import pytest
from helpers import with_unparsable_smiles
from typer.testing import CliRunner

from empcn import cache as cache_format
from empcn.cli import app
from empcn.data import qm9 as qm9_source
from empcn.lift import dask_runner, pipeline
from empcn.lift.qm9 import QM9LiftConfig, lift_qm9


def reference_params(qm9_cache: Path) -> tuple[int, int]:
    """(limit, shard size) of the session's one-process ``qm9_cache``: the lift each test repeats on Dask."""
    params = cache_format.open_cache(qm9_cache).manifest["params"]
    return params["limit"], params["shard_size"]


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of 2 worker processes, reached by its tcp:// address like a remote one."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def cache_files(entry: Path) -> list[Path]:
    """The entry file and everything in its shard folder, relative to the entry's folder."""
    folder = cache_format.shard_dir(entry)
    return [Path(entry.name)] + sorted(p.relative_to(entry.parent) for p in folder.iterdir())


def assert_same_cache(a: Path, b: Path) -> None:
    """Byte-identical entry files and shards (and digests), and nothing else beside them."""
    files = cache_files(a)
    assert cache_files(b) == files
    assert len(files) == 1 + 2 * len(cache_format.open_cache(a).manifest["shards"])
    for rel in files:
        assert filecmp.cmp(a.parent / rel, b.parent / rel, shallow=False), rel
    assert sorted(p.name for p in b.parent.iterdir()) == [b.name, cache_format.shard_dir(b).name]


def test_local_cluster_of_two_workers_writes_the_single_process_bytes(qm9_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "dask" / "qm9.h5"
    limit, shard_size = reference_params(qm9_cache)
    res = CliRunner().invoke(
        app,
        [
            "lift",
            "--dataset",
            "qm9",
            "--limit",
            str(limit),
            "--shard-size",
            str(shard_size),
            "--scheduler",
            "local",
            "--workers",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {out}: {limit} samples in 3 shards" in res.output
    assert_same_cache(qm9_cache, out)


def _kill_worker_once(build: pipeline.BuildFn, marker: str, folder: str, index: int) -> pipeline.BuildFn:
    """``build``, but the first time shard ``index`` is built its worker starts writing it and is killed."""

    def build_or_die(task: pipeline.ShardTask):
        content = build(task)
        if task.index == index and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            half = cache_format.temporary_beside(Path(folder) / cache_format.shard_name(index))
            half.write_bytes(b"\x89HDF\r\n\x1a\n half a shard")  # as a worker killed mid-write leaves it
            os.kill(os.getpid(), 9)
        return content

    return build_or_die


def test_a_killed_worker_s_task_is_rerun_and_the_cache_is_identical(
    qm9_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster
) -> None:
    out = tmp_path / "killed" / "qm9.h5"
    marker = tmp_path / "killed-worker-pid"
    real_run_lift = pipeline.run_lift

    def run_lift(job: pipeline.LiftJob, finish):
        build = _kill_worker_once(job.build, str(marker), str(cache_format.shard_dir(job.out)), index=1)
        return real_run_lift(dataclasses.replace(job, build=build), finish)

    monkeypatch.setattr(pipeline, "run_lift", run_lift)
    limit, shard_size = reference_params(qm9_cache)
    entry = lift_qm9(
        QM9LiftConfig(
            out=out, limit=limit, shard_size=shard_size, workers=2, scheduler=cluster.scheduler_address, progress=False
        )
    )
    killed = int(marker.read_text())
    assert killed != os.getpid()
    with pytest.raises(ProcessLookupError):  # the worker that built shard 1 first is gone
        os.kill(killed, 0)
    assert entry == out and cache_format.verify_cache(out).ok
    assert_same_cache(qm9_cache, out)  # no half-written shard survives


def test_an_error_of_the_data_stops_the_lift_with_its_message(tmp_path: Path, monkeypatch, cluster) -> None:
    monkeypatch.setattr(qm9_source, "read_qm9", with_unparsable_smiles(qm9_source.read_qm9))
    out = tmp_path / "s.h5"
    with pytest.raises(pipeline.LiftError, match="^molecule 4: "):
        lift_qm9(
            QM9LiftConfig(
                out=out, limit=20, shard_size=10, strict=True, scheduler=cluster.scheduler_address, progress=False
            )
        )
    assert not out.exists() and not list(tmp_path.glob("**/.*.tmp"))
    time.sleep(1)  # no worker still writes: what is there is complete shards with their digests, kept for --resume
    for shard in cache_format.shard_dir(out).glob("*"):
        assert shard.name.startswith("shard-"), shard
        if shard.suffix == ".h5":
            assert cache_format.recorded_digest(shard) == cache_format.sha256_file(shard)
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_shard_bytes_do_not_depend_on_who_holds_the_datasets(qm9_cache: Path, tmp_path: Path, monkeypatch) -> None:
    """Dask's sampling profiler can keep a just-written dataset alive a little longer; HDF5 then places
    its chunks later in the file unless the writer flushes them itself."""
    shard = cache_format.shard_dir(qm9_cache) / cache_format.shard_name(0)
    content = cache_format.read_shard(shard)
    plain = cache_format.write_shard(tmp_path / "plain.h5", content)
    held = []
    real = cache_format._write_array

    def write_and_hold(group, name, array):
        ds = real(group, name, array)
        held.append(ds)  # as a profiler's captured frame would
        return ds

    monkeypatch.setattr(cache_format, "_write_array", write_and_hold)
    assert cache_format.write_shard(tmp_path / "held.h5", content) == plain == cache_format.sha256_file(shard)
    assert held


class _ElsewhereClient:
    """A client whose one worker sees another file system: the probe file is not where it looks."""

    def run(self, fn, probe: str, token: str, versions):
        return {"tcp://10.0.0.7:4242": fn(probe + ".elsewhere", token, versions)}


class _OtherVersionsClient:
    def run(self, fn, probe: str, token: str, versions):
        answer = fn(probe, token, versions)
        answer["versions"] = {**answer["versions"], "h5py": "0.0.1"}
        return {"tcp://10.0.0.8:4242": answer}


def test_workers_that_do_not_share_the_folder_or_the_versions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        pipeline.LiftError,
        match=r"^Dask worker tcp://10\.0\.0\.7:4242 on .* cannot see the cache's "
        r"folder .*: --out must be on a file system every worker shares",
    ):
        dask_runner.check_workers(_ElsewhereClient(), tmp_path, ("rdkit",))
    with pytest.raises(pipeline.LiftError, match=r"runs other versions: h5py 0\.0\.1 \(here "):
        dask_runner.check_workers(_OtherVersionsClient(), tmp_path, ())
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_bad_or_unreachable_scheduler_is_one_line(tmp_path: Path, monkeypatch) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["lift", "--limit", "20", "--out", str(tmp_path / "q.h5"), "--scheduler", "host:8786"])
    assert res.exit_code == 2 and "error: --scheduler takes 'local' or a Dask scheduler address" in res.output
    monkeypatch.setattr(dask_runner, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(pipeline.LiftError, match=r"^--scheduler tcp://127\.0\.0\.1:9: cannot reach a Dask scheduler"):
        lift_qm9(QM9LiftConfig(out=tmp_path / "q.h5", limit=20, scheduler="tcp://127.0.0.1:9", progress=False))
    assert list(tmp_path.iterdir()) == []
