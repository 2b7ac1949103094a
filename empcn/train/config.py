"""``TrainConfig``: every option of ``empcn train``, saved as ``config.json`` in the run folder.

A run folder is reproducible from its ``config.json`` alone; ``--resume`` reloads it and only the
*run-control* options (:data:`RUN_CONTROL`: cache location, run folder, time limit, device, workers,
progress bar, cache check) may differ on the command line, because the others change what is computed.

Light on purpose (standard library only): the CLI imports it before deciding whether to start torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

DeviceChoice = Literal["auto", "cpu", "cuda"]
DtypeChoice = Literal["float32", "float64"]

#: Options a resumed run may change: they do not change the numbers it computes.
#: ``cache`` may move (a resumed run checks the cache's fingerprint instead), ``out`` is the folder resumed.
RUN_CONTROL: frozenset[str] = frozenset({"cache", "out", "time_limit", "device", "workers", "progress", "verify"})

#: EGNN trains the orbital energies with lr 1e-3 and everything else with 5e-4 (arXiv 2102.09844).
_HIGH_LR_TARGETS = frozenset({"gap", "homo", "lumo"})

CONFIG_FILE = "config.json"


class ConfigError(ValueError):
    """An option value that cannot be used; one-line message naming the option."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Units: ``lr`` per step, ``time_limit`` minutes.

    ``None`` means "the default that fits": ``out`` → ``runs/<target>-<model>``; ``hidden``/``layers``
    → the model's own defaults (the QM9 settings of its paper); ``lr`` → 1e-3 for gap/homo/lumo,
    5e-4 otherwise (EGNN). :meth:`resolved` fills them in before a run starts, so a saved
    ``config.json`` never holds ``None`` for those.

    Normalisation: the loss is L1 on ``(y − mean)/MAD``. With the whole train split the manifest's
    ``targets.train_mean/train_mad`` are used; with ``train_size`` they are recomputed over the
    subset actually trained on (as EGNN/Cormorant do when subsampling), so no statistic of unseen
    labels leaks into the model.

    ``time_limit``: checked after every optimiser step; when it runs out mid-epoch the epoch ends
    there (``partial`` in ``metrics.jsonl``), is validated and checkpointed as done, and the run
    tests its best epoch. A resumed run starts at the next epoch with a fresh time budget.

    ``amp``: bf16 autocast on CUDA. bf16 keeps 8 significant bits, so a normalised output near 1 is
    resolved to ~0.008·MAD (≈ 60 meV for U0, MAD ≈ 8 eV) unless the model pools and reads out in
    float32; use ``--no-amp`` when chasing MAEs of a few meV.
    """

    cache: str
    target: str
    model: str = "empcn"
    out: str | None = None
    epochs: int = 1000
    batch_size: int = 96
    hidden: int | None = None
    layers: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-12
    clip: float = 10.0  # max global gradient norm; 0 = no clipping
    dropout: float = 0.0
    seed: int = 0
    train_size: int | None = None  # first N of a seeded permutation of the train split
    time_limit: float | None = None  # minutes of wall time, then stop cleanly
    device: DeviceChoice = "auto"
    dtype: DtypeChoice = "float32"
    amp: bool = True  # bf16 autocast on CUDA (never on CPU)
    edge_features: bool = True  # EMPCN: bond-order one-hot as edge input when the cache has it
    workers: int = 0  # DataLoader worker processes per rank
    buffer_shards: int = 4  # shards shuffled together (memory: this many shards per worker)
    limit_batches: int | None = None  # at most this many batches per epoch and split (smoke tests)
    verify: bool = True  # check the cache's checksums before training
    progress: bool = True  # tqdm bar per epoch

    def __post_init__(self) -> None:
        def need(ok: bool, option: str, what: str, value: Any) -> None:
            if not ok:
                raise ConfigError(f"--{option.replace('_', '-')} must be {what}, got {value!r}")

        need(bool(self.cache), "cache", "a path", self.cache)
        need(bool(self.target), "target", "a target name", self.target)
        need(self.epochs >= 1, "epochs", "≥ 1", self.epochs)
        need(self.batch_size >= 1, "batch_size", "≥ 1", self.batch_size)
        for name in ("hidden", "layers", "train_size", "limit_batches"):
            value = getattr(self, name)
            need(value is None or value >= 1, name, "≥ 1", value)
        need(self.lr is None or (math.isfinite(self.lr) and self.lr > 0), "lr", "positive", self.lr)
        need(self.weight_decay >= 0, "weight_decay", "≥ 0", self.weight_decay)
        need(self.clip >= 0, "clip", "≥ 0", self.clip)
        need(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        need(self.time_limit is None or self.time_limit > 0, "time_limit", "positive (minutes)", self.time_limit)
        need(self.device in ("auto", "cpu", "cuda"), "device", "auto, cpu or cuda", self.device)
        need(self.dtype in ("float32", "float64"), "dtype", "float32 or float64", self.dtype)
        need(self.workers >= 0, "workers", "≥ 0", self.workers)
        need(self.seed >= 0, "seed", "≥ 0", self.seed)
        need(self.buffer_shards >= 1, "buffer_shards", "≥ 1", self.buffer_shards)

    # -- defaults -----------------------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """This config with every ``None`` default filled in (see the class docstring)."""
        changes: dict[str, Any] = {}
        if self.out is None:
            changes["out"] = str(Path("runs") / f"{self.target}-{self.model}")
        if self.lr is None:
            changes["lr"] = 1e-3 if self.target in _HIGH_LR_TARGETS else 5e-4
        if self.hidden is None or self.layers is None:
            from empcn.train.models.registry import config_class

            try:
                defaults = config_class(self.model)()
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if self.hidden is None:
                changes["hidden"] = int(defaults.hidden)
            if self.layers is None:
                changes["layers"] = int(defaults.layers)
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
    def from_dict(data: dict[str, Any], where: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}")
        try:
            return TrainConfig(**data)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def save(self, run_dir: Path) -> Path:
        """Write ``config.json`` into ``run_dir`` (atomically) and return its path."""
        import os

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / CONFIG_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json() + "\n")
        os.replace(tmp, path)
        return path

    @staticmethod
    def load(run_dir: Path) -> "TrainConfig":
        """The config saved in ``run_dir``; ConfigError naming the file when absent or malformed."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.exists():
            raise ConfigError(f"{path}: no such file (is {run_dir} a run folder of `empcn train`?)")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable run config ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a JSON object")
        return TrainConfig.from_dict(data, where=str(path))


def merge_for_resume(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with the run-control options of ``given`` applied.

    ``given`` holds the options the user typed (name → value, ``None`` = not given). Any other
    option that differs from the saved value is refused: a resumed run continues *exactly*.
    """
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        current = getattr(saved, name)
        if name in RUN_CONTROL:
            changes[name] = value
        elif value != current:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {value} differs from the resumed run's {current}; a resumed run keeps its config")
    return replace(saved, **changes) if changes else saved
