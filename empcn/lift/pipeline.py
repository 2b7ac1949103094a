"""Dataset-independent lift machinery: shard tasks in worker processes, atomic shards, resume, the entry file.

A lift is a list of :class:`ShardTask` (fixed ranges of input items, independent of the number of
workers, so the bytes of every shard are the same whatever ``--workers``). Each task is built into a
:class:`~empcn.cache.ShardContent` by a dataset-specific function and written by the worker that
built it. The entry file is written last: until it exists nothing looks like a complete cache.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empcn import cache as cache_format
from empcn.errors import EmpcnError


class LiftError(EmpcnError):
    """The lift cannot go on (bad source, bad molecule in --strict mode). One-line message."""


@dataclass(frozen=True)
class ShardTask:
    """Input items [start, stop) become shard ``index``."""

    index: int
    start: int
    stop: int


@dataclass
class ShardResult:
    """What the entry file needs to know of one written shard."""

    index: int
    file: str  # path relative to the entry file's folder
    sha256: str
    bytes: int
    num_samples: int
    counts: dict[str, int]  # rows per group
    skipped: list[dict[str, Any]]
    summary: dict[str, Any]  # dataset-specific per-shard statistics (JSON-able)
    sample_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # the "sample" group, for splits/stats
    reused: bool = False


BuildFn = Callable[[ShardTask], cache_format.ShardContent]

_WORKER_BUILD: BuildFn | None = None


def plan_shards(num_items: int, shard_size: int) -> list[ShardTask]:
    """Split ``num_items`` input items into consecutive tasks of ``shard_size`` (the last one shorter)."""
    if shard_size < 1:
        raise LiftError(f"shard size must be positive, got {shard_size}")
    return [
        ShardTask(k, start, min(start + shard_size, num_items))
        for k, start in enumerate(range(0, max(num_items, 1), shard_size))
        if start < num_items or (num_items == 0 and k == 0)
    ]


def _result_from_content(
    task: ShardTask, path: Path, rel: str, digest: str, content: cache_format.ShardContent, reused: bool
) -> ShardResult:
    return ShardResult(
        index=task.index,
        file=rel,
        sha256=digest,
        bytes=path.stat().st_size,
        num_samples=content.num_samples,
        counts={g: int(grp.offsets[-1]) for g, grp in content.groups.items()},
        skipped=list(content.attrs.get("skipped", [])),
        summary=dict(content.attrs.get("summary", {})),
        sample_arrays=dict(content.groups[cache_format.SAMPLE_GROUP].arrays),
        reused=reused,
    )


def _try_reuse(path: Path, rel: str, task: ShardTask, lift_key: str) -> ShardResult | None:
    """A shard from an earlier, interrupted run of the same lift, if it is provably intact.

    Intact = its bytes hash to the digest recorded when it was written (``shard-NNNNN.h5.sha256``),
    it passes the structural checks and carries this lift's key and input range. Anything else is
    rebuilt, so a damaged shard never makes it into a new manifest.
    """
    if not path.exists():
        return None
    recorded = cache_format.recorded_digest(path)
    if recorded is None:
        return None
    try:
        content = cache_format.read_shard(path, sha256=recorded, version=cache_format.FORMAT_VERSION)
        cache_format.check_shard_content(content, str(path))
    except cache_format.CacheError:
        return None
    if content.attrs.get("lift_key") != lift_key or content.attrs.get("input_range") != [task.start, task.stop]:
        return None
    return _result_from_content(task, path, rel, recorded, content, reused=True)


ShardJob = tuple[
    ShardTask, str, str, str, bool
]  # task, shard path, path relative to the entry's folder, lift key, resume


def _build_and_write(args: ShardJob) -> ShardResult:
    assert _WORKER_BUILD is not None
    return build_and_write(args, _WORKER_BUILD)


def build_and_write(args: ShardJob, build: BuildFn) -> ShardResult:
    """One shard: reused (on resume) or built by ``build`` and written atomically with its digest."""
    task, path_s, rel, lift_key, resume = args
    path = Path(path_s)
    if resume:
        reused = _try_reuse(path, rel, task, lift_key)
        if reused is not None:
            return reused
    content = build(task)
    content.attrs["lift_key"] = lift_key
    content.attrs["input_range"] = [task.start, task.stop]
    cache_format.digest_path(path).unlink(missing_ok=True)
    digest = cache_format.write_shard(path, content)
    cache_format.write_digest(path, digest)
    return _result_from_content(task, path, rel, digest, content, reused=False)


def _init_worker(parent: int | None = None) -> None:
    """Worker set-up: one torch thread; in a forked worker, die with the parent (Linux), quietly."""
    import torch

    torch.set_num_threads(1)
    if parent is not None:
        quiet_signals()
        _die_with_parent(parent)


def quiet_signals() -> None:
    """A forked worker ignores Ctrl-C: the terminal sends SIGINT to the whole process group, and the
    parent alone answers it, in one line, by ending the pool (SIGTERM to the workers, which raise
    nothing into a lock they may hold) and removing the temporary files they leave
    (:func:`empcn.lift.output.claim_output`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (a killed lift leaves no workers)."""
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def as_they_come(results: Any) -> Any:
    """The items of a pool's ``imap`` iterator, waited for in short slices: a Ctrl-C that the kernel
    delivers to one of the pool's helper threads still interrupts this (main) thread, which a wait
    without a timeout would sleep through for ever."""
    while True:
        try:
            yield results.next(timeout=0.2)
        except mp.TimeoutError:
            continue
        except StopIteration:
            return


def run_shards(
    entry: Path,
    tasks: Sequence[ShardTask],
    build: BuildFn,
    lift_key: str,
    workers: int,
    resume: bool,
    progress: bool,
    desc: str,
    scheduler: str | None = None,
    versions: Sequence[str] = (),
) -> list[ShardResult]:
    """Build and write every shard (in ``workers`` forked processes, or on Dask), in task order.

    ``build`` runs in the workers; it and the data it closes over are inherited by fork, never
    pickled. With ``scheduler`` (``"local"`` or a Dask scheduler's address) the tasks run on a Dask
    cluster instead (:mod:`empcn.lift.dask_runner`; ``build`` is pickled and sent to each worker once,
    whose library ``versions`` must match this process's).
    """
    global _WORKER_BUILD
    folder = cache_format.shard_dir(entry)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            t,
            str(folder / cache_format.shard_name(t.index)),
            f"{folder.name}/{cache_format.shard_name(t.index)}",
            lift_key,
            resume,
        )
        for t in tasks
    ]
    total_items = sum(t.stop - t.start for t in tasks)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_items, desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True)
    results: list[ShardResult] = []
    _WORKER_BUILD = build
    try:
        if scheduler is not None:
            from empcn.lift import dask_runner

            def done(res: ShardResult) -> None:
                if bar is not None:
                    bar.update(tasks[res.index].stop - tasks[res.index].start)

            results = dask_runner.run_on_dask(scheduler, workers, jobs, build, folder, versions, done)
        elif workers <= 1 or len(jobs) <= 1:
            _init_worker()
            for job in jobs:
                results.append(_build_and_write(job))
                if bar is not None:
                    bar.update(job[0].stop - job[0].start)
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),)) as pool:
                for res in as_they_come(pool.imap(_build_and_write, jobs, chunksize=1)):
                    results.append(res)
                    if bar is not None:
                        task = tasks[res.index]
                        bar.update(task.stop - task.start)
    finally:
        _WORKER_BUILD = None
        if bar is not None:
            bar.close()
    # shards of an earlier, larger lift of the same name would be stale: remove them
    keep = {cache_format.shard_name(t.index) for t in tasks}
    for stale in folder.glob("shard-*.h5"):
        if stale.name not in keep:
            stale.unlink()
            cache_format.digest_path(stale).unlink(missing_ok=True)
    return results


def assemble_manifest(
    results: Sequence[ShardResult], base: dict[str, Any], extra_skipped: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The entry file's manifest: ``base`` (dataset, params, source, …) plus shard list, counts, skips."""
    start = 0
    shards = []
    for r in results:
        shards.append({"file": r.file, "samples": [start, start + r.num_samples], "sha256": r.sha256, "bytes": r.bytes})
        start += r.num_samples
    counts: dict[str, int] = {"samples": start}
    for r in results:
        for g, n in r.counts.items():
            if g != cache_format.SAMPLE_GROUP:
                counts[g] = counts.get(g, 0) + n
    skipped = list(extra_skipped) + [s for r in results for s in r.skipped]
    manifest = dict(base)
    manifest.update(
        {
            "format": cache_format.FORMAT_NAME,
            "format_version": cache_format.FORMAT_VERSION,
            "shards": shards,
            "counts": counts,
            "skipped": skipped,
        }
    )
    return manifest


def lift_key_of(params: dict[str, Any], source_fingerprint: str, version: str) -> str:
    """Identifies a lift: shards carrying another key are never reused by --resume."""
    import hashlib

    writer = {"format_version": cache_format.FORMAT_VERSION, "compression": cache_format.compression_settings()}
    blob = json.dumps(
        {"params": params, "source": source_fingerprint, "version": version, "writer": writer}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def check_scheduler(value: str | None) -> str | None:
    """``None``, ``"local"`` or a Dask scheduler address (``tcp://host:8786``); LiftError otherwise."""
    import re

    if value is None or value == "local" or re.fullmatch(r"[a-z][a-z0-9+]*://[^\s/]+", value):
        return value
    raise LiftError(f"--scheduler takes 'local' or a Dask scheduler address such as tcp://host:8786, got {value!r}")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# ----------------------------------------------------------------------------------------------
# the driver every data set's lift runs through


@dataclass(frozen=True)
class LiftJob:
    """What a data set hands :func:`run_lift`: its items, how to build a shard of them, what identifies it.

    ``params``: every parameter that changes the cache's bytes (recorded as ``manifest["params"]``);
    ``source``: ``{"kind", "name", "fingerprint"}`` of the raw input; ``build``: items
    ``[task.start, task.stop)`` → shard content (runs in the workers); ``versions``: extra modules
    whose versions the manifest records (QM9: ``("rdkit",)``); ``scheduler``: run the shard tasks
    on Dask (:mod:`empcn.lift.dask_runner`) instead of forked worker processes.
    """

    dataset: str
    out: Path
    num_items: int
    build: BuildFn
    params: dict[str, Any]
    source: dict[str, Any]
    shard_size: int
    workers: int = 1
    resume: bool = False
    progress: bool = True
    desc: str = ""
    versions: tuple[str, ...] = ()
    scheduler: str | None = None  # None: forked workers; "local" or "tcp://host:8786": Dask


def run_options(config: Any) -> dict[str, Any]:
    """The :class:`LiftJob` fields that every data set's lift config holds under the same names: where
    to write and how to run (``out``, ``shard_size``, ``workers``, ``scheduler``, ``resume``,
    ``progress``), none of which changes the cache's bytes."""
    return {
        "out": Path(config.out),
        "shard_size": config.shard_size,
        "workers": config.workers,
        "scheduler": config.scheduler,
        "resume": config.resume,
        "progress": config.progress,
    }


@dataclass(frozen=True)
class LiftedSplits:
    """A data set's part of the manifest, made from the written shards.

    ``splits``: split name → sample indices; ``manifest``: dataset-specific manifest entries
    (``splits`` info, ``targets`` or ``task``, ``cells``, …); ``fields``: the field docs that differ
    from :data:`empcn.schema.FIELD_DOCS` (a value ``None`` removes a field the data set does not store);
    ``skipped``: input items dropped before the shards were built (the reader's skips).
    """

    splits: dict[str, np.ndarray]
    manifest: dict[str, Any]
    fields: dict[str, str | None] = field(default_factory=dict)
    skipped: Sequence[dict[str, Any]] = ()


def run_lift(job: LiftJob, finish: Callable[[list[ShardResult]], LiftedSplits]) -> Path:
    """Build and write every shard of ``job``, then the entry file; returns the entry file's path.

    The skeleton shared by all data sets: remove an old entry file (an interrupted re-lift must not
    leave it pointing at new shards), shards in worker processes (reused on ``resume`` when their
    lift key matches), ``finish`` (splits, statistics, dataset-specific manifest), then the manifest's
    common part (dataset, versions, source, params, neighbourhoods, fields, shard list) and the entry
    file, written last.
    """
    from empcn import __version__
    from empcn.schema import FIELD_DOCS, neighbourhood_docs

    out = Path(job.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    key = lift_key_of(job.params, str(job.source.get("fingerprint", "")), __version__)
    results = run_shards(
        out,
        plan_shards(job.num_items, job.shard_size),
        build=job.build,
        lift_key=key,
        workers=job.workers,
        resume=job.resume,
        progress=job.progress,
        desc=job.desc or f"lift {job.dataset}",
        scheduler=job.scheduler,
        versions=job.versions,
    )
    lifted = finish(results)
    fields_doc = {k: v for k, v in {**FIELD_DOCS, **lifted.fields}.items() if v is not None}
    base = {
        "dataset": job.dataset,
        "created_by": created_by(job.versions),
        "source": dict(job.source),
        "params": job.params,
        **lifted.manifest,
        "neighbourhoods": neighbourhood_docs(),
        "fields": fields_doc,
    }
    manifest = assemble_manifest(results, base, extra_skipped=lifted.skipped)
    cache_format.write_entry(out, manifest, lifted.splits, [r.file for r in results])
    return out


def created_by(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of empcn and of the libraries that shaped a cache's bytes (numpy, h5py, torch, ``extra``)."""
    import importlib

    import h5py
    import torch

    from empcn import __version__

    versions = {
        "empcn": __version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "torch": torch.__version__.split("+")[0],
    }
    for name in extra:
        versions[name] = str(importlib.import_module(name).__version__)
    return versions


def merge_counts(results: Sequence[ShardResult], key: str) -> dict[str, int]:
    """Sum over shards of the per-shard histogram ``summary[key]`` (``{value: count}``), sorted by value."""
    total: dict[str, int] = {}
    for r in results:
        for value, n in r.summary.get(key, {}).items():
            total[value] = total.get(value, 0) + int(n)
    return dict(sorted(total.items(), key=lambda kv: int(kv[0])))


def concat_sample_arrays(results: Sequence[ShardResult], name: str, empty: np.ndarray) -> np.ndarray:
    """The ``sample/<name>`` arrays of all shards in order (``empty`` when there are no shards)."""
    return np.concatenate([r.sample_arrays[name] for r in results]) if results else empty
