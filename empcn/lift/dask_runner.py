"""Shard tasks on a Dask cluster: ``empcn lift … --scheduler local`` or ``--scheduler tcp://host:8786``.

An alternative executor of :func:`empcn.lift.pipeline.run_shards`, not a second driver: the client
(the ``empcn lift`` process) reads the source, plans the same :class:`~empcn.lift.pipeline.ShardTask`
list as ever and, when every task is done, writes the manifest and the entry file itself. Here

* the shard builder (with the items it closes over) is pickled and sent to every worker once
  (``scatter(broadcast=True)``), so workers never read the source;
* each Dask task builds one shard and writes it as the forked workers do
  (:func:`~empcn.lift.pipeline.build_and_write`): under a temporary name ``.shard-NNNNN.h5.*.tmp`` in
  the cache's ``.shards/`` folder, renamed into place when complete, then its ``.sha256``;
* a task whose worker dies (killed, out of memory, machine lost) is re-run on another worker by the
  scheduler (up to ``distributed.scheduler.allowed-failures`` times); one that raised an unexpected
  error (an I/O error of a shared file system) is retried :data:`RETRIES` times; an error of the data
  (``--strict``) is not retried but stops the lift: the tasks not yet started see a stop file and
  return, the running ones are waited for, so no worker writes after ``empcn lift`` has returned.
  The bytes of a shard depend only on its task, so a re-run writes the same file, and the temporary
  files of killed attempts are removed once no task runs;
* workers on other machines must see the cache's folder at the same path (a shared file system) and
  run the same empcn, numpy, h5py, torch (and RDKit) as the client: both are checked before the first
  task, each with a one-line error.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empcn import files
from empcn.lift.pipeline import BuildFn, LiftError, ShardJob, ShardResult, build_and_write, created_by

LOCAL = "local"
RETRIES = 2  # extra runs of a task that raised an unexpected exception
CONNECT_TIMEOUT_S = 10  # to reach a scheduler, and for its first worker to connect


@dataclass(frozen=True)
class _Failed:
    """A task's error of the data itself (retrying cannot help): the one-line message."""

    message: str


def _run_task(build: BuildFn, job: ShardJob, stop: str) -> ShardResult | _Failed:
    """On a worker: one shard (see :func:`~empcn.lift.pipeline.build_and_write`), unless the file
    ``stop`` exists (another task failed: the lift is over)."""
    from empcn.cache import CacheError
    from empcn.lift.pipeline import _init_worker

    _init_worker()
    folder = Path(job[1]).parent
    if not folder.is_dir():
        return _Failed(
            f"Dask worker on {socket.gethostname()} cannot see the cache's folder {folder}: "
            "--out must be on a file system every worker shares"
        )
    if os.path.exists(stop):
        return _Failed("stopped: another shard failed")
    try:
        return build_and_write(job, build)
    except (LiftError, CacheError) as exc:
        return _Failed(str(exc))


def _probe(probe: str, token: str, versions: Sequence[str]) -> dict[str, Any]:
    """On a worker: whether it reads ``token`` from the file ``probe``, and its library versions."""
    try:
        seen = Path(probe).read_text() == token and os.access(Path(probe).parent, os.W_OK | os.X_OK)
    except OSError:
        seen = False
    return {"host": socket.gethostname(), "folder": seen, "versions": created_by(versions)}


@contextmanager
def _client(scheduler: str, workers: int) -> Iterator[Any]:
    """A Dask client of a new local cluster (``workers`` processes of one thread) or of ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise LiftError("--scheduler needs Dask: pip install 'empcn[dask]' (dask and distributed)") from None
    cluster = None
    try:
        if scheduler == LOCAL:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise LiftError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc})") from None
        try:
            if scheduler != LOCAL:
                try:
                    client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
                except TimeoutError:
                    raise LiftError(
                        f"--scheduler {scheduler}: no Dask worker connected within {CONNECT_TIMEOUT_S} s"
                    ) from None
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def check_workers(client: Any, folder: Path, versions: Sequence[str]) -> None:
    """LiftError unless every connected worker sees ``folder`` (a file written here) and runs our versions."""
    token = secrets.token_hex(16)
    probe = folder / f".dask-probe-{token[:8]}.tmp"  # a leftover of a killed lift is removed as any .tmp
    files.write_text_atomic(probe, token)
    try:
        try:
            answers = client.run(_probe, str(probe), token, list(versions))
        except Exception as exc:  # e.g. empcn not importable there: the probe cannot be unpickled
            raise LiftError(
                f"the Dask workers cannot run empcn ({type(exc).__name__}: {exc}); install the same "
                "empcn on every worker"
            ) from None
    finally:
        probe.unlink(missing_ok=True)
    ours = created_by(versions)
    for address, answer in sorted(answers.items()):
        if not answer["folder"]:
            raise LiftError(
                f"Dask worker {address} on {answer['host']} cannot see the cache's folder {folder}: "
                "--out must be on a file system every worker shares, at the same path"
            )
        if answer["versions"] != ours:
            diff = ", ".join(
                f"{k} {answer['versions'].get(k)} (here {v})" for k, v in ours.items() if answer["versions"].get(k) != v
            )
            raise LiftError(
                f"Dask worker {address} on {answer['host']} runs other versions: {diff}; the shards' bytes would differ"
            )


def run_on_dask(
    scheduler: str,
    workers: int,
    jobs: Sequence[ShardJob],
    build: BuildFn,
    folder: Path,
    versions: Sequence[str],
    done: Callable[[ShardResult], None],
) -> list[ShardResult]:
    """Run ``jobs`` as Dask tasks (``done`` is called as each finishes); the results in task order.

    Raises LiftError with a one-line message on the first task that fails for good. The lift then
    stops: a ``stop`` file in ``folder`` makes the tasks not yet started return at once, and the
    running ones are waited for, so that no worker writes into ``folder`` after this returns (the
    shards already written stay for ``--resume``).
    """
    from distributed import wait

    run = secrets.token_hex(4)
    stop = folder / f".dask-stop-{run}.tmp"
    try:
        with _client(scheduler, workers) as client:
            check_workers(client, folder, versions)
            build_ref = client.scatter(build, broadcast=True, hash=False)
            futures = [
                client.submit(
                    _run_task,
                    build_ref,
                    job,
                    str(stop),
                    key=f"empcn-shard-{job[0].index:05d}-{run}",
                    retries=RETRIES,
                    pure=False,
                )
                for job in jobs
            ]
            try:
                return _gather(futures, [job[0].index for job in jobs], done)
            except LiftError:
                stop.touch()
                wait(futures)
                raise
            finally:
                client.cancel(futures)
    finally:
        # killed attempts leave their temporary files; no task is running any more (a local cluster's
        # workers are gone), so none of them is being written
        stop.unlink(missing_ok=True)
        for leftover in folder.glob(".shard-*.tmp"):
            leftover.unlink(missing_ok=True)


def _gather(futures: Sequence[Any], indices: Sequence[int], done: Callable[[ShardResult], None]) -> list[ShardResult]:
    """The tasks' results in task order, as they finish; LiftError on the first that failed for good."""
    from distributed import KilledWorker, as_completed

    index_of = {f.key: i for f, i in zip(futures, indices)}
    results: dict[int, ShardResult] = {}
    for future in as_completed(futures):
        index = index_of[future.key]
        try:
            outcome = future.result()
        except KilledWorker as exc:
            raise LiftError(
                f"shard {index}: the Dask workers running it kept dying ({exc}); see the workers' logs (out of memory?)"
            ) from None
        except Exception as exc:
            raise LiftError(f"shard {index}: {type(exc).__name__}: {exc} (after {RETRIES + 1} tries)") from None
        if isinstance(outcome, _Failed):
            raise LiftError(outcome.message)
        results[index] = outcome
        done(outcome)
    return [results[i] for i in indices]
