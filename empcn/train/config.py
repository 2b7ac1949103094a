"""``TrainConfig``: every option of ``empcn train``, saved as ``config.json`` in the run folder.

A run folder is reproducible from its ``config.json`` alone; ``--resume`` reloads it and only the
*run-control* options (:data:`RUN_CONTROL`: cache location, run folder, time limit, device, workers,
progress bar, cache check, validation interval, compilation) may differ on the command line, because the others change what is computed.

Light on purpose (standard library only): the CLI imports it before deciding whether to start torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from empcn.choices import DeviceChoice, DtypeChoice, ScheduleChoice, TargetReference  # noqa: E402,F401  (re-exported)
from empcn.errors import EmpcnError

#: Options a resumed run may change: they do not change the numbers it computes.
#: ``cache`` may move (a resumed run checks the cache's fingerprint instead), ``out`` is the folder resumed.
RUN_CONTROL: frozenset[str] = frozenset(
    {"cache", "out", "time_limit", "device", "workers", "progress", "verify", "valid_every", "compile", "tensorboard"}
)

CONFIG_FILE = "config.json"


class ConfigError(EmpcnError, ValueError):
    """An option value that cannot be used; one-line message naming the option."""


@dataclass(frozen=True)
class TaskDefaults:
    """The defaults of the options that depend on what a cache asks to learn (its manifest's ``task``).

    Each task builds its own (:meth:`empcn.train.tasks.base.Task.defaults`). ``kind``: the task's
    registry name. ``name``: run-folder prefix (``runs/<name>-<model>``): the target for scalar
    targets (QM9), the data set for positions (``nbody``). ``model``: the registry name of ``--model``
    (its config for this task gives ``hidden``/``layers``/``dropout``). ``amp``: bf16 autocast on
    CUDA. ``reference``: the default ``--target-reference`` (the scalar task: ``atoms`` for the
    extensive QM9 targets).
    """

    kind: str  # the task's registry name
    name: str
    model: str
    epochs: int
    batch_size: int
    lr: float
    schedule: ScheduleChoice
    amp: bool
    reference: TargetReference = "none"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Units: ``lr`` per step, ``time_limit`` minutes.

    ``None`` means "the default that fits the task" (:class:`TaskDefaults`). Scalar targets (QM9):
    ``out`` → ``runs/<target>-<model>``, 1000 epochs, batch 96, ``lr`` 1e-3 for gap/homo/lumo and 5e-4
    otherwise (EGNN), cosine schedule, autocast on. Positions (a cache whose manifest says
    ``task: "positions"``, N-body): ``target`` must stay ``None``, ``out`` → ``runs/nbody-<model>``,
    10,000 epochs, batch 100, lr 5e-4 constant (the papers), autocast off. Both: ``hidden``/``layers``/
    ``dropout`` → the model's own defaults (EMPCN dynamics: hidden 66, 4 layers, dropout 0.2).
    :meth:`resolved` fills them in before a run starts, so a saved ``config.json`` never holds
    ``None`` for those (``target`` stays ``None`` for positions).

    ``schedule``: ``"cosine"`` decays the learning rate from ``lr`` to 0 over all ``epochs`` ×
    batches optimiser steps; ``"constant"`` keeps ``lr``.

    Normalisation: the loss is L1 on ``(y − mean)/MAD``. With the whole train split the manifest's
    ``targets.train_mean/train_mad`` are used; with ``train_size`` they are recomputed over the
    subset actually trained on (as EGNN/Cormorant do when subsampling), so no statistic of unseen
    labels leaks into the model.

    ``target_reference``: ``"atoms"`` first subtracts a per-element linear reference fitted by least
    squares on the molecules trained on (element counts → target, :mod:`empcn.train.reference`), and
    mean/MAD are those of the residual; ``"none"`` is the papers' plain mean/MAD. ``None``: ``atoms``
    for the extensive QM9 targets (alpha, zpve, U0, U, H, G, Cv), ``none`` for the others and for
    positions. A run saved before the option existed resumes as ``none`` (:data:`SAVED_WITHOUT`).

    ``valid_every``: the valid split is scored every N epochs (and at the last epoch, and when a time
    limit or an interruption ends the run), so the best epoch is one of those; the papers' long runs
    with few steps per epoch (MoCap: 2 batches) spend most of their time validating otherwise.
    Not validated epochs are written with a NaN valid metric. A run-control option: it may change on
    resume.

    ``time_limit``: checked after every optimiser step; when it runs out mid-epoch the epoch ends
    there (``partial`` in ``metrics.jsonl``), is validated and checkpointed as done, and the run
    tests its best epoch. A resumed run starts at the next epoch with a fresh time budget.

    ``compile``: the model runs through ``torch.compile``
    (:func:`empcn.train.models.layers.use_compiled_messages`: the position models' whole layer stack as
    one graph, EGNN's and EMPCN's QM9 layers one by one, elsewhere the gated pair messages), which fuses
    the elementwise work over the ``(pairs, hidden)`` tensors; the same function and parameters (tested
    against the eager path), so a run-control option. The first batches pay the compilation
    (≈20–60 s on CPU); gains are in BENCHMARKS.md ("Training throughput").

    ``clip``: the maximum global gradient norm, 0 = none; ``None``: the model's ``DEFAULT_CLIP`` (10 for
    every model but SEGNN on positions, which clips nothing, as its reference code). Runs saved before
    the per-model default recorded 10.

    ``tensorboard``: rank 0 also writes the epoch metrics as TensorBoard event files into
    ``RUN/tensorboard/`` (:mod:`empcn.train.tensorboard`; needs ``pip install 'empcn[tensorboard]'``).
    Off unless asked for, so a run folder does not depend on what happens to be installed; a
    run-control option.

    ``amp``: bf16 autocast on CUDA for message passing; every model pools and reads out in float32
    (bf16's 8 significant bits would otherwise resolve a normalised output only to ~0.008·MAD, ≈ 60
    meV for U0). ``--no-amp`` runs everything in float32.
    """

    cache: str
    target: str | None = None  # scalar column (QM9); None for a positions cache
    model: str = "empcn"
    out: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    hidden: int | None = None
    layers: int | None = None
    lr: float | None = None
    schedule: ScheduleChoice | None = None
    weight_decay: float = 1e-12
    clip: float | None = None  # max global gradient norm, 0 = no clipping; None: the model's DEFAULT_CLIP
    dropout: float | None = None
    seed: int = 0
    train_size: int | None = None  # first N of a seeded permutation of the train split
    time_limit: float | None = None  # minutes of wall time, then stop cleanly
    device: DeviceChoice = "auto"
    dtype: DtypeChoice = "float32"
    amp: bool | None = None  # bf16 autocast on CUDA (never on CPU)
    edge_features: bool = True  # EMPCN: bond-order one-hot as edge input when the cache has it
    workers: int = 0  # DataLoader worker processes per rank
    buffer_shards: int = 4  # shards shuffled together (memory: this many shards per worker)
    limit_batches: int | None = None  # at most this many batches per epoch and split (smoke tests)
    verify: bool = True  # check the cache's checksums before training
    progress: bool = True  # tqdm bar per epoch
    model_options: tuple[str, ...] = ()  # "KEY=VALUE" fields of the model's config (--model-option)
    target_reference: TargetReference | None = None  # "atoms" | "none"; None: the task's default
    valid_every: int = 1  # validate (and pick the best epoch) every N epochs, and always at the last
    compile: bool = False  # the model through torch.compile (the same function; needs a C++ compiler on CPU)
    tensorboard: bool = False  # also write TensorBoard event files to RUN/tensorboard (the tensorboard extra)

    #: Runs saved before ``target_reference`` existed trained on the plain mean/MAD.
    SAVED_WITHOUT: ClassVar[dict[str, Any]] = {"target_reference": "none"}

    def __post_init__(self) -> None:
        if not isinstance(self.model_options, tuple):  # a list after a JSON round trip
            object.__setattr__(self, "model_options", tuple(self.model_options))

        def need(ok: bool, option: str, what: str, value: Any) -> None:
            if not ok:
                raise ConfigError(f"--{option.replace('_', '-')} must be {what}, got {value!r}")

        need(bool(self.cache), "cache", "a path", self.cache)
        need(self.target is None or bool(self.target), "target", "a target name", self.target)
        for name in ("epochs", "batch_size", "hidden", "layers", "train_size", "limit_batches", "valid_every"):
            value = getattr(self, name)
            need(value is None or value >= 1, name, "≥ 1", value)
        need(self.lr is None or (math.isfinite(self.lr) and self.lr > 0), "lr", "positive", self.lr)
        need(self.weight_decay >= 0, "weight_decay", "≥ 0", self.weight_decay)
        need(self.clip is None or self.clip >= 0, "clip", "≥ 0", self.clip)
        need(self.dropout is None or 0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        need(self.schedule in (None, "cosine", "constant"), "schedule", "cosine or constant", self.schedule)
        need(self.time_limit is None or self.time_limit > 0, "time_limit", "positive (minutes)", self.time_limit)
        need(self.device in ("auto", "cpu", "cuda"), "device", "auto, cpu or cuda", self.device)
        need(self.dtype in ("float32", "float64"), "dtype", "float32 or float64", self.dtype)
        need(self.workers >= 0, "workers", "≥ 0", self.workers)
        need(self.seed >= 0, "seed", "≥ 0", self.seed)
        need(self.buffer_shards >= 1, "buffer_shards", "≥ 1", self.buffer_shards)
        need(
            self.target_reference in (None, "atoms", "none"), "target_reference", "atoms or none", self.target_reference
        )

    # -- defaults -----------------------------------------------------------------------------
    def resolved(self, task: TaskDefaults | None = None) -> TrainConfig:
        """This config with every ``None`` default filled in for ``task`` (see the class docstring).

        ``task`` ``None``: a scalar target (QM9) with ``--model`` as the registry name; ConfigError
        when ``target`` is not set either.
        """
        if task is None:
            if self.target is None:
                raise ConfigError("--target is required for a scalar-target cache (e.g. --target U0)")
            from empcn.train.tasks.scalar import scalar_defaults

            task = scalar_defaults(self.target, self.model)
        changes: dict[str, Any] = {}
        if self.out is None:
            changes["out"] = str(Path("runs") / f"{task.name}-{task.model}")
        for name in ("epochs", "batch_size", "lr", "schedule", "amp"):
            if getattr(self, name) is None:
                changes[name] = getattr(task, name)
        if self.target_reference is None:
            changes["target_reference"] = task.reference
        if self.hidden is None or self.layers is None or self.dropout is None or self.clip is None:
            from empcn.errors import RegistryError
            from empcn.train.models.registry import config_class

            try:
                defaults = config_class(task.model, task.kind)()
            except (RegistryError, ValueError) as exc:
                raise ConfigError(str(exc)) from None
            for name, cast in (("hidden", int), ("layers", int), ("dropout", float)):
                if getattr(self, name) is None and hasattr(defaults, name):  # a plug-in's model may lack one
                    changes[name] = cast(getattr(defaults, name))
            if self.clip is None:
                changes["clip"] = float(getattr(defaults, "DEFAULT_CLIP", 10.0))
        return replace(self, **changes) if changes else self

    @property
    def run_dir(self) -> Path:
        if self.out is None:
            raise ConfigError("the run folder is not set (call resolved() first)")
        return Path(self.out)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
        from empcn.train.saved import SavedFormError, load_saved

        try:
            return load_saved(TrainConfig, data)
        except (SavedFormError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def save(self, run_dir: Path) -> Path:
        """Write ``config.json`` into ``run_dir`` (atomically) and return its path."""
        from empcn.files import write_text_atomic

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(run_dir / CONFIG_FILE, self.to_json() + "\n")

    @staticmethod
    def load(run_dir: Path) -> TrainConfig:
        """The config saved in ``run_dir``; ConfigError naming the file when absent or malformed."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.exists():
            raise ConfigError(f"{path}: no such file (is {run_dir} a run folder of `empcn train`?)")
        from empcn.files import read_regular

        try:
            data = json.loads(read_regular(path, follow=True))  # a FIFO or device is refused, never read
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable run config ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a JSON object")
        return TrainConfig.from_dict(data, where=str(path))


def merge_for_resume(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with the run-control options of ``given`` applied.

    ``given`` holds the options the user typed (name → value, ``None`` = not given). Any other
    option that differs from the saved value is refused: a resumed run continues *exactly*. One
    exception: ``--epochs`` may grow, which extends a run (finished or not). A constant schedule then
    continues exactly as a longer run would have; a cosine schedule is re-planned over the new total
    of steps from the step the run has reached.
    """
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        current = getattr(saved, name)
        if name in RUN_CONTROL:
            changes[name] = value
        elif name == "epochs" and current is not None and value > current:
            changes[name] = value
        elif value != current:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the resumed run's {current}; a resumed run keeps its config"
            )
    return replace(saved, **changes) if changes else saved
