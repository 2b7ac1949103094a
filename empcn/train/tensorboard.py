"""``empcn train --tensorboard``: the run's metrics also as TensorBoard event files, in ``RUN/tensorboard/``.

Opt-in (``TrainConfig.tensorboard``), so a run folder holds the same files whether or not the
``tensorboard`` package happens to be installed; asking for it without the package is a one-line error
before training starts (``pip install 'empcn[tensorboard]'``). Written by rank 0 only, like every file
of the run. TensorBoard's writer creates its event files itself, so they go in a subfolder the run
creates and checks: a ``tensorboard`` entry that is a link or a file (a run folder received from
someone else) is refused, never written through. A resumed run purges the events after its checkpoint's
epoch (TensorBoard's ``purge_step``), as ``metrics.jsonl`` is truncated.

Scalars per epoch (step = epoch): ``loss/train``, ``<metric>/valid`` (epochs validated),
``<metric>/best_valid``, ``lr``, ``throughput`` (samples/s), ``time/epoch_s``; at the end
``<metric>/test`` at the best epoch.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

from empcn.errors import EmpcnError
from empcn.train.metrics import EpochRecord, RunResult

FOLDER = "tensorboard"


class TensorBoardError(EmpcnError):
    """The run's TensorBoard folder cannot be used (a link or file in its place); one line."""


def log_folder(run_dir: Path) -> Path:
    """``RUN/tensorboard``, created as a real folder of the run (never through a link)."""
    folder = Path(run_dir) / FOLDER
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TensorBoardError(f"{folder}: cannot create the TensorBoard folder ({exc.strerror or exc})") from None
    mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
        raise TensorBoardError(f"{folder}: {what}, not the run's TensorBoard folder (remove it)")
    return folder


def check_available() -> None:
    """MissingExtra (one line) unless TensorBoard's writer can be imported."""
    from empcn.extras import require

    require("tensorboard", "--tensorboard")


class TensorBoardLog:
    """Rank 0's TensorBoard writer for a run: one :meth:`epoch` call per epoch record, :meth:`result` at the end."""

    def __init__(self, run_dir: Path, resume_after: int = 0) -> None:
        from empcn.extras import require

        writer = require("tensorboard", "--tensorboard").SummaryWriter
        # purge_step: events from an earlier invocation after the resumed checkpoint are dropped
        self._writer: Any = writer(str(log_folder(run_dir)), purge_step=resume_after + 1 if resume_after else None)

    def epoch(self, record: EpochRecord) -> None:
        w, step, metric = self._writer, record.epoch, record.metric
        w.add_scalar("loss/train", record.train_loss, step)
        if math.isfinite(record.valid_error):
            w.add_scalar(f"{metric}/valid", record.valid_error, step)
        if math.isfinite(record.best_valid_error):
            w.add_scalar(f"{metric}/best_valid", record.best_valid_error, step)
        w.add_scalar("lr", record.lr, step)
        w.add_scalar("throughput", record.throughput, step)
        w.add_scalar("time/epoch_s", record.time_s, step)
        w.flush()

    def result(self, result: RunResult) -> None:
        if math.isfinite(result.test_error):
            self._writer.add_scalar(f"{result.metric}/test", result.test_error, result.best_epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
