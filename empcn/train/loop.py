"""The training loop of ``empcn train``: cache → shards → batches → model → checkpoints and metrics.

The cache's manifest picks the task (:data:`empcn.train.tasks.TASKS`,
:class:`~empcn.train.tasks.base.Task`): scalar targets (QM9: L1 loss on ``(y − atom reference −
mean)/MAD``, MAE), positions (N-body: MSE of the predicted positions, no normalisation) or a
plug-in's. The task owns the loss, the metric and its unit and the fields a batch carries for it;
``--model`` names a model of :data:`empcn.train.models.registry.MODELS`, which gives the
implementation for that task. The loop itself is the same for every task and model. Per run: Adam
with a cosine or constant learning-rate schedule over all optimiser steps, gradient-norm clipping, the validation metric after every epoch,
the test metric at the best validation epoch. Files in the run folder (rank 0 only): ``config.json``,
``last.pt``/``best.pt``, ``metrics.jsonl``, ``learning_curve.png`` (redrawn at most every
:data:`PLOT_EVERY_S` seconds and at the end), ``result.json``, ``parity_test.png`` (the best epoch
on the test split; single-process runs), and with ``--tensorboard`` TensorBoard event files in
``tensorboard/`` (:mod:`empcn.train.tensorboard`).

Never imports the lift stage (``empcn.lift``, ``empcn.data``, RDKit): training reads cached complexes only
(``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empcn import schema
from empcn.cache import CacheError, verify_cache
from empcn.errors import EmpcnError, RegistryError
from empcn.files import WriteError
from empcn.train import metrics as metrics_io
from empcn.train.checkpoint import (
    BEST,
    LAST,
    RunMeta,
    capture_rng,
    load_checkpoint,
    restore_rng,
    resume_from,
    save_checkpoint,
)
from empcn.train.collate import CollateSpec, manifest_species
from empcn.train.config import ScheduleChoice, TrainConfig
from empcn.train.dataset import CacheLayout, ShardStream, make_loader, subset_of_split
from empcn.train.distributed import (
    DistEnv,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
    wrap_model,
)
from empcn.train.evaluate import task_error
from empcn.train.models.base import field_names, missing_fields
from empcn.train.models.registry import ModelChoice, resolve, saved_config
from empcn.train.precision import DTYPES, autocast
from empcn.train.run_lock import RunFolderBusy, RunFolderLock
from empcn.train.tasks.base import Task, TaskError, task_for_cache, task_from_meta

#: Seconds between two redraws of ``learning_curve.png`` (drawing costs ~0.1–0.3 s; N-body epochs ~1 s).
PLOT_EVERY_S = 60.0


class TrainError(EmpcnError):
    """A run that cannot start or go on (bad option, unusable cache, run folder clash); one line."""


class TrainingDiverged(TrainError):
    """The loss or the gradient became NaN/inf; the checkpoints on disk are from the last good epoch."""


@dataclass
class RunState:
    """Progress of a run: finished epochs, optimiser steps, best validation metric (task unit) and its epoch."""

    epoch: int = 0
    step: int = 0
    best_valid: float = math.inf
    best_epoch: int = 0


# ----------------------------------------------------------------------------------------------
# set-up helpers


def build_model_config(
    config: TrainConfig,
    spec: CollateSpec,
    has_edge_order: bool,
    model: ModelChoice,
    has_node_scalar: bool = True,
    cell_kinds: int = 0,
) -> Any:
    """The model's config dataclass for this run: the model's defaults with the cache's input widths and the run's sizes.

    ``model``: the registry's model for the run's task. ``has_edge_order``: the cache stores
    ``edges/order`` (bond orders), which a model with an edge input then reads as a one-hot unless
    ``--no-edge-features``. ``has_node_scalar``: the cache stores charges or masses
    (:data:`~empcn.schema.NODE_SCALAR_FIELDS`); without them (MoCap) a position model is built
    without its node-scalar input. ``cell_kinds``: the 2-cell kinds the cache records
    (``manifest.cells.kinds`` beside ``rings/kind``; 0 when none), a one-hot ring input of models that take one.
    """
    from empcn.train.models.registry import config_for_run

    edge_width = spec.edge_features if config.edge_features and has_edge_order else 0
    try:
        return config_for_run(
            model.name,
            spec.node_features,
            edge_width,
            hidden=config.hidden,
            layers=config.layers,
            dropout=config.dropout,
            options=config.model_options,
            node_scalar=has_node_scalar,
            task=model.task,
            cell_kinds=cell_kinds,
        )
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def _plugins(model: ModelChoice, task: Task, manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``RunMeta.plugins``: the distribution and version of the model, task and data set (as the cache's
    manifest recorded it) when they come from plug-ins."""
    from empcn.train.tasks import TASKS

    out = {"model": model.plugin()} if model.plugin() else {}
    origin = TASKS.origin(task.kind)
    if origin.kind == "plugin":
        out["task"] = {"distribution": origin.distribution or "", "version": origin.version or ""}
    lifted_by = manifest.get("plugin")
    if isinstance(lifted_by, dict) and lifted_by.get("distribution"):
        version = str(lifted_by.get("version") or "")
        out["dataset"] = {"distribution": str(lifted_by["distribution"]), "version": version}
    return out


def _check_cache(layout: CacheLayout, config: TrainConfig, env: DistEnv) -> None:
    """Refuse a cache failing its checksums (rank 0 verifies, every rank gets the verdict)."""
    problems: list[str] = []
    if config.verify and env.is_main:
        problems = verify_cache(layout.path).problems
    problems = broadcast_object(problems, env)
    if problems:
        more = f" (and {len(problems) - 1} more; see `empcn cache verify {layout.path}`)" if len(problems) > 1 else ""
        raise TrainError(f"refusing cache: {problems[0]}{more}")


def _unwritable(run_dir: Path) -> str | None:
    """Why a run folder cannot be written (a file in its path, no permission), or None. Creates nothing."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == run_dir else f"is under {existing}, a file, not a folder"
        return f"--out {run_dir}: cannot write a run there: it {what}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {run_dir}: cannot write into {existing} (permission denied)"
    return None


def _cosine(total_steps: int):
    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))

    return factor


def _constant(step: int) -> float:
    return 1.0


def lr_factor(schedule: ScheduleChoice, total_steps: int):
    """Multiplier of the peak learning rate at each optimiser step: cosine to 0 over ``total_steps``, or 1."""
    return _cosine(total_steps) if schedule == "cosine" else _constant


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam over ``model``'s parameters, as one fused kernel per step (``fused=True``; CPU and CUDA).

    The same update as the per-parameter loop of plain Adam (equal to float rounding;
    ``tests/train/test_loop.py``), in one pass over all parameters instead of ~10 small operations per
    parameter tensor: 3.1 → 0.6 ms per step for the N-body EGNN's 58 tensors on one CPU thread.
    """
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Log:
    """Prints one line per event on rank 0 (through tqdm so a progress bar is not torn)."""

    def __init__(self, env: DistEnv) -> None:
        self.enabled = env.is_main

    def __call__(self, message: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# the run


class Trainer:
    """One training run (one process of it under torchrun). ``Trainer(config).run()``.

    ``resume``: continue the run in ``config.out`` from its ``last.pt``. ``stop_after_epoch``: end
    this invocation after finishing that epoch, as if interrupted (for tests and wall-time slots).
    ``on_epoch``: called on rank 0 with each epoch's :class:`~empcn.train.metrics.EpochRecord` once it
    is written and checkpointed (``empcn.fit``'s callback; an exception it raises ends the run, which
    stays resumable from that epoch).
    """

    def __init__(
        self,
        config: TrainConfig,
        resume: bool = False,
        env: DistEnv | None = None,
        stop_after_epoch: int | None = None,
        on_epoch: Callable[[metrics_io.EpochRecord], Any] | None = None,
    ) -> None:
        self.env = env or init_distributed(config.device)
        try:
            self.layout = CacheLayout.read(config.cache)
        except CacheError as exc:
            raise TrainError(str(exc)) from None
        manifest = self.layout.manifest
        try:
            self.task: Task = task_for_cache(manifest, config.cache, config.target)
            self.model_choice: ModelChoice = resolve(config.model, self.task.models_serve())
            defaults = self.task.defaults(self.model_choice.name, str(manifest.get("dataset", "")))
        except (TaskError, RegistryError) as exc:
            raise TrainError(str(exc)) from None
        self.model_name = self.model_choice.name  # the registry name
        self.config = config.resolved(defaults)
        self.resume = resume
        self.stop_after_epoch = stop_after_epoch
        self.on_epoch = on_epoch
        self._tensorboard: Any = None  # rank 0's TensorBoardLog while the run goes (--tensorboard)
        self.run_dir = self.config.run_dir
        self.log = _Log(self.env)
        self.device = self.env.device
        self.dtype = DTYPES[self.config.dtype]
        self._lock: RunFolderLock | None = None  # rank 0's hold on the run folder, from set-up to the run's end
        self._created_run_dir = False
        self._best_missing = False
        try:
            self._setup()
        except BaseException:
            self._let_go(failed=True)
            raise

    def _let_go(self, failed: bool = False) -> None:
        """Release the run folder's writer lock; after a failed set-up, remove the folder if this run made
        it and left nothing but the lock file in it."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        lock.release()
        if failed and self._created_run_dir:
            from empcn.train.run_lock import LOCK_FILE

            if {p.name for p in self.run_dir.iterdir()} <= {LOCK_FILE}:
                (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
                self.run_dir.rmdir()

    def close(self) -> None:
        """Let go of the run folder (``run()`` does this when it ends; a trainer that is never run may)."""
        self._let_go()

    # -- set-up ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, env, task = self.config, self.env, self.task
        if cfg.tensorboard and env.is_main:  # before the run folder is touched: one line naming the extra
            from empcn.train.tensorboard import check_available

            check_available()
        self._check_run_folder()
        _check_cache(self.layout, cfg, env)
        manifest = self.layout.manifest
        stored = self.layout.stored_fields()
        missing = missing_fields(task.fields, stored)
        if missing:
            raise TrainError(f"{cfg.cache}: has no field {', '.join(missing)} (the {task.kind} task's target)")
        base_spec = CollateSpec.from_manifest(manifest)
        base_spec = replace(base_spec, species=manifest_species(manifest))  # node features from the vocabulary
        _seed_everything(cfg.seed)
        self.model_config = build_model_config(
            cfg,
            base_spec,
            schema.EDGE_ORDER in stored,
            self.model_choice,
            has_node_scalar=any(k in stored for k in schema.NODE_SCALAR_FIELDS),
            cell_kinds=len(manifest.get("cells", {}).get("kinds", ())) if schema.RING_KIND in stored else 0,
        )
        # read once; _check_run_folder has made sure it exists when resuming
        resume_path = resume_from(self.run_dir) if self.resume else None
        resume_state = load_checkpoint(resume_path, map_location="cpu") if resume_path is not None else None
        if resume_state is not None:
            self._check_saved(resume_path, resume_state)
            # the run's own model, not today's defaults (a default may have changed since it started)
            saved = RunMeta.from_dict(resume_state["meta"])
            if (saved.model, saved.task) == (self.model_name, task.kind):  # the same model variant
                self.model_config = saved_config(
                    saved.model, saved.model_config, task.models_serve(), saved.plugin("model")
                )
        wanted = self.model_config.reads()
        missing = [n for n in wanted if n not in base_spec.neighbourhoods]
        if missing:
            raise TrainError(f"{cfg.cache}: has no neighbourhood {', '.join(missing)} (needed by --model {cfg.model})")
        missing = missing_fields(self.model_config.reads_fields(), stored)
        if missing:
            raise TrainError(f"{cfg.cache}: has no field {', '.join(missing)} (needed by --model {cfg.model})")
        self.spec = replace(
            base_spec,
            neighbourhoods={n: base_spec.neighbourhoods[n] for n in wanted},
            fields=field_names((*task.fields, *self.model_config.reads_fields())),
        )

        try:
            train_idx = subset_of_split(self.layout.split("train"), cfg.train_size, cfg.seed)
        except CacheError as exc:
            raise TrainError(str(exc)) from None
        if cfg.train_size is not None and cfg.train_size > len(train_idx):
            self.log(
                f"--train-size {cfg.train_size} exceeds the train split's {len(train_idx)} samples: "
                f"training on all {len(train_idx)}"
            )
        if len(train_idx) < env.world_size:
            raise TrainError(
                f"{cfg.cache}: the train split has {len(train_idx)} samples, fewer than {env.world_size} ranks"
            )
        try:
            self.task = task = task.normalised(
                self.layout, train_idx, str(cfg.target_reference), tuple(self.spec.species)
            )
        except TaskError as exc:
            raise TrainError(str(exc)) from None
        self.train_idx = train_idx
        self.baselines: dict[str, Any] = {}
        self.unit = task.unit

        common: dict[str, Any] = dict(
            batch_size=cfg.batch_size,
            buffer_shards=cfg.buffer_shards,
            limit_batches=cfg.limit_batches,
            rank=env.rank,
            world_size=env.world_size,
        )
        self.train_stream = ShardStream(
            self.layout, train_idx, self.spec, shuffle=True, seed=cfg.seed, drop_remainder=True, **common
        )
        self.eval_streams = {
            name: ShardStream(self.layout, self.layout.split(name), self.spec, shuffle=False, **common)
            for name in ("valid", "test")
            if name in self.layout.splits
        }
        if "valid" not in self.eval_streams:
            raise TrainError(f"{cfg.cache}: has no 'valid' split")
        self.train_loader = make_loader(self.train_stream, cfg.workers)
        self.eval_loaders = {name: make_loader(s, cfg.workers) for name, s in self.eval_streams.items()}

        from empcn.train.models.registry import build_model

        self.model = build_model(self.model_name, self.model_config, task.models_serve())
        self.model.to(device=self.device, dtype=self.dtype)
        if cfg.compile:
            from empcn.train.models.layers import use_compiled_messages

            use_compiled_messages(self.model)
            if self.device.type == "cpu" and torch.get_num_threads() > 1:
                self.log(
                    f"note: --compile on CPU with {torch.get_num_threads()} torch threads: the compiled scatters "
                    "use atomic adds and gain less than with one thread per process (QM9: slower than eager; "
                    "OMP_NUM_THREADS=1, docs/models.md 'Threads on CPU')"
                )
        self.ddp_model = wrap_model(self.model, env)
        self.parameters = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.optimizer = make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.steps_per_epoch = len(self.train_stream)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(cfg.schedule, self.total_steps))
        self.meta = RunMeta(
            model=self.model_name,
            model_config=asdict(self.model_config),
            task=task.kind,
            task_record=task.record(),
            neighbourhoods=dict(self.spec.neighbourhoods),
            species=tuple(self.spec.species),
            charge_power=self.spec.charge_power,
            dataset=str(manifest.get("dataset", "")),
            lift_params=dict(manifest.get("params", {})),
            cache_path=str(Path(cfg.cache).resolve()),
            cache_fingerprint=self.layout.fingerprint(),
            plugins=_plugins(self.model_choice, task, manifest),
            domain=self._training_domain(),
        )
        self.state = RunState()
        self._last_plot = -math.inf
        if resume_state is not None:
            self._load_last(resume_state, resume_path)
            if env.is_main and TrainConfig.load(self.run_dir).epochs != cfg.epochs:
                cfg.save(self.run_dir)  # --epochs extended the run
                self.log(f"extending {self.run_dir} to {cfg.epochs} epochs")
        elif env.is_main:
            cfg.save(self.run_dir)
        barrier(env)

    def _training_domain(self) -> dict[str, Any]:
        """What ``predict`` checks molecules against (:mod:`empcn.train.domain`): statistics of the
        molecules trained on; empty for a positions cache."""
        from empcn.train.domain import training_domain

        if self.task.kind != "scalar":
            return {}
        domain = training_domain(self.layout, self.train_idx)
        return domain.to_dict() if domain is not None else {}

    def _check_run_folder(self) -> None:
        """Rank 0 takes the run folder's writer lock and looks (before anyone writes there), every rank
        gets its verdict."""
        problem = None
        if self.env.is_main:
            last = self.run_dir / LAST
            problem = _unwritable(self.run_dir) or self._hold_run_folder()
            if problem is None and self.resume and resume_from(self.run_dir) is None:
                problem = f"{self.run_dir}: nothing to resume (no {LAST})"
            elif problem is None and not self.resume and (last.exists() or (self.run_dir / BEST).exists()):
                # a folder whose run never finished an epoch may be reused
                problem = (
                    f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                    "or choose another --out"
                )
        problem = broadcast_object(problem, self.env)
        if problem:
            raise TrainError(problem)

    def _hold_run_folder(self) -> str | None:
        """Take the run folder's writer lock (:mod:`empcn.train.run_lock`), creating the folder when
        needed; why not, when another process writes there or the lock file cannot be made."""
        try:
            if not self.run_dir.exists():
                self.run_dir.mkdir(parents=True)
                self._created_run_dir = True
            self._lock = RunFolderLock(self.run_dir)
        except (RunFolderBusy, WriteError) as exc:
            return str(exc)
        except OSError as exc:
            return f"--out {self.run_dir}: cannot write a run there ({exc.strerror or exc})"
        return None

    def _check_saved(self, path: Path, state: dict[str, Any]) -> None:
        """Refuse a checkpoint whose config disagrees with ``config.json`` or whose weights do not fit its
        model config, before any model is built from it (:mod:`empcn.train.saved_checks`)."""
        from empcn.train.config import CONFIG_FILE
        from empcn.train.saved_checks import check_config_agrees, check_weights_fit

        try:
            if "config" in state:
                check_config_agrees(self.run_dir / CONFIG_FILE, self.config, path, state["config"])
            saved = RunMeta.from_dict(state["meta"])
            check_weights_fit(
                path, saved.model, saved.model_config, state["model"], task_from_meta(saved).models_serve()
            )
        except EmpcnError as exc:
            raise TrainError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainError(f"{path}: does not fit this empcn ({' '.join(str(exc).split())[:200]})") from None

    def _load_last(self, state: dict[str, Any], path: Path | None = None) -> None:
        """Continue from ``state``, the run's ``last.pt`` (or, when only it was written, ``best.pt``) as
        read by :func:`load_checkpoint`."""
        path = path or self.run_dir / LAST
        saved = RunMeta.from_dict(state["meta"])
        if saved.cache_fingerprint != self.meta.cache_fingerprint:
            raise TrainError(
                f"{self.config.cache}: not the cache run {self.run_dir} was trained on (fingerprint differs)"
            )
        if (saved.model, saved.task) != (self.meta.model, self.meta.task):
            raise TrainError(f"{path}: its model differs from the run config's")
        saved_model = saved_config(saved.model, saved.model_config, self.task.models_serve())
        saved = replace(saved, model_config=asdict(saved_model))
        if saved.model_config != self.meta.model_config:
            raise TrainError(f"{path}: its model differs from the run config's")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = RunState(**state["state"])
        if not saved.domain and self.meta.domain:  # a run saved before the domain was recorded gets it now
            saved = replace(saved, domain=self.meta.domain)
        self.task = self.task.restored(saved.task_record)  # keeps the normalisation the run started with
        self.meta = replace(saved, task_record=self.task.record())  # saved in today's form from now on
        restore_rng(state["rng"])
        if self.env.is_main:
            try:
                metrics_io.truncate_records(self.run_dir, self.state.epoch)
            except metrics_io.MetricsError as exc:
                raise TrainError(str(exc)) from None
        self.log(
            f"resuming {self.run_dir} after epoch {self.state.epoch} (step {self.state.step})"
            + (f" from {path.name} ({LAST} is missing)" if path.name != LAST else "")
        )
        # A run stopped while writing best.pt (a full disk, before best.pt was written ahead of last.pt)
        # has no best model: the resumed run makes its latest state the best so far (see _run).
        self._best_missing = self.state.best_epoch > 0 and not (self.run_dir / BEST).exists()

    # -- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": asdict(self.state),
            "epoch": self.state.epoch,
            "config": self.config.to_dict(),
            "meta": self.meta.to_dict(),
            "rng": capture_rng(),
        }

    def _save(self, improved: bool) -> None:
        """``best.pt`` (when improved) and then ``last.pt`` of the current state.

        In this order a failure between the two (a full disk) leaves ``last.pt`` one epoch behind a newer
        ``best.pt``, from which the run resumes and redoes that epoch exactly, and never a ``best_epoch``
        in ``last.pt`` whose ``best.pt`` was not written.
        """
        if not self.env.is_main:
            return
        state = self._checkpoint_state()
        if improved:
            save_checkpoint(self.run_dir / BEST, state)
        save_checkpoint(self.run_dir / LAST, state)

    # -- one epoch ------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, deadline: float | None) -> tuple[float, int, float, bool]:
        """Train one epoch → (mean task loss over all ranks, samples over all ranks, seconds, cut short)."""
        cfg, env = self.config, self.env
        self.train_stream.set_epoch(epoch)
        self.ddp_model.train()
        from tqdm import tqdm

        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=True if not (cfg.progress and env.is_main) else None,  # None: off when not a TTY
            file=sys.stderr,
            dynamic_ncols=True,
        )
        totals = torch.zeros(2, dtype=torch.float64)  # Σ loss·n, n
        cut = False
        start = time.perf_counter()
        params = [p for p in self.model.parameters() if p.requires_grad]
        for batch in self.train_loader:
            gpu_batch = batch.to(self.device, self.dtype)
            with autocast(self.device, self.dtype, bool(cfg.amp)):
                pred = self.ddp_model(gpu_batch)
            loss = self.task.loss(pred, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip else math.inf, foreach=True)
            loss_value = float(loss.detach())
            if not (math.isfinite(loss_value) and math.isfinite(float(norm))):
                bar.close()
                raise TrainingDiverged(self._diverged_message(epoch, loss_value, float(norm)))
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            n = batch.num_graphs
            totals[0] += loss_value * n
            totals[1] += n
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4g}")
            if deadline is not None:
                flag = torch.tensor([float(time.monotonic() > deadline)], device=self.device)
                if float(all_reduce_max(flag, env)) > 0:
                    cut = True
                    break
        bar.close()
        seconds = time.perf_counter() - start
        if env.distributed:
            totals = totals.to(self.device)
            all_reduce_sum(totals, env)
            totals = totals.cpu()
        count = int(totals[1])
        return (float(totals[0] / count) if count else float("nan")), count, seconds, cut

    def _diverged_message(self, epoch: int, loss: float, norm: float) -> str:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
        if self.state.epoch > 0:
            kept = f"kept the last good checkpoint {self.run_dir / LAST} (epoch {self.state.epoch})"
        else:
            kept = "no checkpoint was written"
        return (
            f"training diverged: non-finite {what} at epoch {epoch}, step {self.state.step + 1}; "
            f"stopped and {kept} (try a lower --lr or --clip)"
        )

    def evaluate(self, split: str, pairs: list | None = None) -> tuple[float, int]:
        """The task's metric (MAE or MSE, task unit) and sample count of the current model on ``split``, all ranks.

        ``pairs``: collects this rank's (true, predicted) values (:func:`task_error`)."""
        return task_error(
            self.model,
            self.eval_loaders[split],
            self.device,
            self.dtype,
            bool(self.config.amp),
            self.task,
            self.env,
            pairs=pairs,
        )

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> metrics_io.RunResult:
        """Train the remaining epochs, then test at the best one.

        On CPU, denormal floats are flushed to zero while it runs: Adam's second moments of tiny
        gradients otherwise become denormal and slow every step down ~15x (measured on EGNN).
        """
        flush = self.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            return self._run()
        except WriteError as exc:
            kept = resume_from(self.run_dir)
            then = (
                f"the run keeps its checkpoint {kept.name}: free space or fix the folder, then "
                f"`empcn train --resume {self.run_dir}`"
                if kept is not None
                else "no checkpoint was written"
            )
            raise TrainError(f"{exc} ({then})") from None
        finally:
            if flush:
                torch.set_flush_denormal(False)
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
            self._let_go()

    def _run(self) -> metrics_io.RunResult:
        cfg, env = self.config, self.env
        started = time.monotonic()
        deadline = started + cfg.time_limit * 60.0 if cfg.time_limit is not None else None
        task = self.task
        if cfg.tensorboard and env.is_main:
            from empcn.train.tensorboard import TensorBoardLog

            self._tensorboard = TensorBoardLog(self.run_dir, resume_after=self.state.epoch)
        if self.state.epoch == 0:
            self.log(
                f"training {self.model_name} ({self.parameters:,} parameters) on {task.describe()} "
                f"[{task.metric}, {self.unit}] from {cfg.cache}: {len(self.train_stream.indices)} train "
                f"{task.sample_noun}, {self.steps_per_epoch} batches/epoch"
                f"{f' x {env.world_size} ranks' if env.distributed else ''}, lr {cfg.lr:g} {cfg.schedule}, "
                f"device {self.device}"
            )
            if task.normalisation():
                self.log(task.normalisation())
        if env.is_main:  # trivial predictors to read the metric against (QM9: train mean, atom-count fit)
            splits = {name: self.layout.split(name) for name in self.eval_streams}
            self.baselines = task.baselines(self.layout, self.train_idx, splits, tuple(self.spec.species))
            if self.state.epoch == 0 and "valid" in self.baselines:
                self.log(self.baselines["valid"].line(self.unit))
        if self._best_missing:  # every rank scores, rank 0 writes
            valid = self.evaluate("valid")[0]
            self.log(
                f"{self.run_dir / BEST} (epoch {self.state.best_epoch}) is missing: epoch {self.state.epoch} "
                f"(valid {task.metric} {valid:.5g} {self.unit}) is the best so far"
            )
            self.state.best_valid, self.state.best_epoch = valid, self.state.epoch
            if env.is_main:
                save_checkpoint(self.run_dir / BEST, self._checkpoint_state())
            self._best_missing = False
            barrier(env)
        stopped = "completed"
        for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
            loss, count, seconds, cut = self._train_epoch(epoch, deadline)
            out_of_time = cut or (deadline is not None and time.monotonic() > deadline)
            ending = (
                epoch == cfg.epochs
                or out_of_time
                or (self.stop_after_epoch is not None and epoch >= self.stop_after_epoch)
            )
            validated = ending or epoch % cfg.valid_every == 0
            valid = self.evaluate("valid")[0] if validated else math.nan
            improved = validated and (valid < self.state.best_valid or self.state.best_epoch == 0)
            self.state.epoch = epoch
            if improved:
                self.state.best_valid, self.state.best_epoch = valid, epoch
            record = metrics_io.EpochRecord(
                epoch=epoch,
                lr=float(self.optimizer.param_groups[0]["lr"]),
                train_loss=loss,
                valid_error=valid,
                best_valid_error=self.state.best_valid,
                unit=self.unit,
                time_s=seconds,
                throughput=count / seconds if seconds > 0 else 0.0,
                steps=self.state.step,
                partial=cut,
                metric=task.metric,
            )
            if env.is_main:  # the record first: a resume drops records after its checkpoint's epoch
                metrics_io.append_record(self.run_dir, record)
                if self._tensorboard is not None:
                    self._tensorboard.epoch(record)
            self._save(improved)
            if env.is_main:
                self._plot(force=epoch == cfg.epochs)
            self.log(
                f"epoch {epoch}/{cfg.epochs}  loss {loss:.5g}  "
                + (f"valid {task.metric} {valid:.5g} {self.unit}  " if validated else "")
                + (f"(best {self.state.best_valid:.5g} @ {self.state.best_epoch})  " if self.state.best_epoch else "")
                + f"{record.throughput:.0f} {task.sample_noun}/s  {seconds:.1f} s"
            )
            if self.on_epoch is not None and env.is_main:
                self.on_epoch(record)
            barrier(env)
            if out_of_time:  # decided before validating, so the last epoch of a run is always validated
                stopped = "time_limit"
                self.log(f"time limit of {cfg.time_limit:g} min reached after epoch {epoch}")
                break
            if self.stop_after_epoch is not None and epoch >= self.stop_after_epoch and epoch < cfg.epochs:
                stopped = "interrupted"
                break
        if env.is_main:
            self._plot(force=True)
        return self._finish(stopped, time.monotonic() - started)

    def _plot(self, force: bool) -> None:
        """Redraw ``learning_curve.png`` when forced, on the first epoch, or :data:`PLOT_EVERY_S` after the last."""
        now = time.monotonic()
        if force or now - self._last_plot >= PLOT_EVERY_S:
            metrics_io.plot_learning_curve(self.run_dir)
            self._last_plot = time.monotonic()

    def _finish(self, stopped: str, wall: float) -> metrics_io.RunResult:
        """The test metric at the best validation epoch; ``result.json``."""
        barrier(self.env)
        test = float("nan")
        if stopped != "interrupted" and "test" in self.eval_loaders:
            best = load_checkpoint(self.run_dir / BEST, map_location="cpu")
            self.model.load_state_dict(best["model"])
            # one process sees the whole split: it draws the test parity plot as `empcn evaluate` would
            pairs: list | None = [] if self.env.is_main and not self.env.distributed else None
            test, n_test = self.evaluate("test", pairs)
            if pairs is not None:
                from empcn.train.evaluate import EvalResult, write_parity

                task = self.task
                write_parity(
                    self.run_dir,
                    EvalResult(
                        str(self.run_dir),
                        "test",
                        task.target,
                        task.unit,
                        task.metric,
                        test,
                        n_test,
                        self.state.best_epoch,
                        task.sample_noun,
                    ),
                    pairs,
                    task,
                )
        metric = self.task.metric
        result = metrics_io.RunResult(
            target=self.task.target,
            unit=self.unit,
            model=self.config.model,
            epochs_run=self.state.epoch,
            best_epoch=self.state.best_epoch,
            best_valid_error=self.state.best_valid,
            test_error=test,
            stopped=stopped,
            wall_time_s=wall,
            parameters=self.parameters,
            metric=metric,
            baselines={name: b.to_dict() for name, b in self.baselines.items()},
        )
        if stopped == "interrupted":
            self.log(f"stopped after epoch {self.state.epoch}; continue with --resume {self.run_dir}")
            return result
        if self.env.is_main:
            metrics_io.write_result(self.run_dir, result)
            if self._tensorboard is not None:
                self._tensorboard.result(result)
        versus = ""
        if "test" in self.baselines:
            b = self.baselines["test"]
            versus = f" [test baselines: {b.brief()}]"
        self.log(
            f"test {metric} {test:.5g} {self.unit} at best epoch {self.state.best_epoch} "
            f"(valid {self.state.best_valid:.5g} {self.unit}){versus}; run folder {self.run_dir}"
        )
        return result


def train(
    config: TrainConfig,
    resume: bool = False,
    env: DistEnv | None = None,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[metrics_io.EpochRecord], Any] | None = None,
) -> metrics_io.RunResult:
    """Run (or resume) training; the process group is left when done. Raises TrainError on bad input.

    ``on_epoch``: called on rank 0 with every epoch's record (:class:`Trainer`)."""
    own_env = env is None
    trainer_env = env or init_distributed(config.device)
    try:
        return Trainer(
            config, resume=resume, env=trainer_env, stop_after_epoch=stop_after_epoch, on_epoch=on_epoch
        ).run()
    except WriteError as exc:  # while setting the run up (config.json); run() words its own
        raise TrainError(str(exc)) from None
    finally:
        if own_env:
            shutdown_quietly(trainer_env)


def shutdown_quietly(env: DistEnv) -> None:
    """Leave the process group; after an error on one rank the barrier may fail — then just destroy."""
    try:
        shutdown(env)
    except Exception:  # noqa: BLE001
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
