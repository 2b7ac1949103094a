"""What a data set is, for the lift: a :class:`DatasetSpec` (one per data set, in the data set's own module).

A data set declares

* its **lift config**: a frozen dataclass deriving from :class:`LiftConfig` (the one block of run options
  every lift takes: ``out``, ``cache_dir``, ``shard_size``, ``workers``, ``scheduler``, ``strict``,
  ``resume``, ``progress``), validated in ``__post_init__``, with ``recorded_params()`` (every parameter
  that changes the cache's bytes) and ``source_info()`` (what is read, and its content fingerprint);
* its **command-line options** (:class:`Option`: name, type, unit, help; the default shown is the
  config's), which ``empcn lift --dataset NAME`` accepts, and no others;
* its **reader** (config → :class:`LiftInput`), **shard builder** (items ``[start, stop)`` → one shard)
  and **finish** (the written shards → splits and its part of the manifest), which
  :func:`empcn.lift.datasets.lift` runs through :func:`empcn.lift.pipeline.run_lift`;
* the **fields** it writes beside the complex's own (``"group/array"`` in the names of
  :mod:`empcn.schema`), its **task** (``"scalar"``: graph-level targets; ``"positions"``) and, optionally,
  how ``empcn predict`` reads and lifts new input files (:class:`PredictHook`).

Standard library only at import time (the CLI reads option declarations before choosing what to load).
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from empcn.errors import EmpcnError


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _lift_error(message: str) -> EmpcnError:
    from empcn.lift.pipeline import LiftError

    return LiftError(message)


@dataclass(frozen=True, kw_only=True)
class LiftConfig:
    """The run options every data set's lift config embeds (derive from it; they come after its own fields).

    ``out``: the entry file (None: ``data/<dataset>.h5``; with ``cache_dir``: named by the lift's
    fingerprint in that folder, so the two exclude each other). ``cache_dir``: a folder of caches shared by
    a team: reuse a verified cache with this lift's fingerprint, or lift into it. ``shard_size``: samples
    per shard file (None: the data set's :attr:`SHARD_SIZE`; recorded, it changes the bytes). ``workers``:
    processes building shards (with ``scheduler="local"``: the Dask cluster's). ``scheduler``: None (a
    pool of forked workers), ``"local"`` or a Dask scheduler's address. ``strict``: stop at the first bad
    sample instead of skipping it (data sets that take it: :attr:`TAKES_STRICT`). ``resume``:
    keep the verified shards of an interrupted lift with the same parameters. ``progress``: a progress bar.

    A subclass sets :attr:`DATASET` (its registry name), calls ``super().__post_init__()`` first and
    raises :meth:`bad` for a bad value of its own.
    """

    DATASET: ClassVar[str] = ""
    SHARD_SIZE: ClassVar[int] = 1000
    TAKES_STRICT: ClassVar[bool] = True

    out: Path | None = None
    cache_dir: Path | None = None
    shard_size: int | None = None
    workers: int = 1
    scheduler: str | None = None
    strict: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        from empcn.lift.pipeline import check_scheduler

        if self.out is not None and self.cache_dir is not None:
            raise self.bad("--out and --cache-dir exclude each other: --cache-dir names the cache by its fingerprint")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        else:
            object.__setattr__(
                self, "out", Path(self.out) if self.out is not None else Path("data") / f"{self.DATASET}.h5"
            )
        if self.shard_size is None:
            object.__setattr__(self, "shard_size", self.SHARD_SIZE)
        if not _is_int(self.shard_size) or self.shard_size < 1 or not _is_int(self.workers) or self.workers < 1:
            raise self.bad(
                f"shard_size and workers must be positive integers, got {self.shard_size!r} and {self.workers!r}"
            )
        if self.strict and not self.TAKES_STRICT:
            raise self.bad("strict does not apply to this data set (it takes no --strict)")
        check_scheduler(self.scheduler)

    def bad(self, reason: str) -> EmpcnError:
        """The one-line error for a bad parameter of this lift (a :class:`~empcn.lift.pipeline.LiftError`)."""
        return _lift_error(f"{self.DATASET} lift: {reason}")

    # ------------------------------------------------------------------------------------------
    # what a data set's config provides

    def recorded_params(self) -> dict[str, Any]:
        """Every parameter that changes the cache's bytes (``manifest["params"]``; JSON-able)."""
        raise NotImplementedError(f"{type(self).__name__}.recorded_params")

    def source_info(self) -> dict[str, Any]:
        """``{"kind", "name", "fingerprint"}`` of the raw input, known before it is read (``--cache-dir``)."""
        raise NotImplementedError(f"{type(self).__name__}.source_info")

    def progress_label(self) -> str:
        """The progress bar's label."""
        return f"lift {self.DATASET}"

    @classmethod
    def from_options(cls, values: Mapping[str, Any], **run: Any) -> LiftConfig:
        """The config of the command-line options given (``values``: field → value; run options in ``run``).

        A config whose fields are not its options one to one (MoCap's protocol) overrides this.
        """
        return cls(**values, **run)


@dataclass(frozen=True)
class Option:
    """One command-line option of a data set's lift: ``--<name>``, which sets the config field ``field``.

    ``kind``: the value's type: ``int``, ``float``, ``str``, ``Path``, ``bool`` (a ``--name/--no-name``
    flag), a tuple of choices, or a function text → value raising ValueError with the reason
    (``"11,6,6"`` → ``(11, 6, 6)``). ``default``: the default as ``--help`` shows it (empty: the config
    field's default); the config's default applies when the option is not given. ``unit``: of the value
    (Hz, atoms, s); ``minimum``: the smallest number accepted; ``metavar``: the value's name in ``--help``;
    ``required``: the lift cannot run without it. ``multiple``: the option may repeat; the field gets the
    tuple of its values.
    """

    name: str
    help: str
    kind: Any = str
    default: str = ""
    unit: str = ""
    minimum: float | None = None
    metavar: str = ""
    field: str = ""
    required: bool = False
    multiple: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", self.name or ""):
            raise ValueError(f"option name {self.name!r} is not of the form 'word[-word…]' (lower case)")
        if not self.field:
            object.__setattr__(self, "field", self.name.replace("-", "_"))
        if not (
            self.kind in (int, float, str, Path, bool)
            or callable(self.kind)
            or isinstance(self.kind, tuple)
            and self.kind
            and all(isinstance(c, str) for c in self.kind)
        ):
            raise ValueError(
                f"option --{self.name}: kind {self.kind!r} is not int, float, str, Path, bool, "
                "a tuple of choices or a parse function"
            )

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def param(self) -> str:
        """The option's name as a Python identifier (``max-ring`` → ``max_ring``)."""
        return self.name.replace("-", "_")


#: The run options on the command line (:class:`LiftConfig`'s fields); the data set fills in its defaults.
RUN_OPTIONS: tuple[Option, ...] = (
    Option("out", "Entry file to write (excludes --cache-dir).", Path, metavar="FILE"),
    Option(
        "cache-dir",
        "A shared folder of caches: reuse a verified cache with this lift's fingerprint, or lift "
        "into it (named <dataset>-<fingerprint>.h5).",
        Path,
        metavar="DIR",
    ),
    Option("shard-size", "Samples per shard file.", int, minimum=1, unit="samples"),
    Option(
        "workers",
        "Worker processes; with --scheduler local, the Dask cluster's worker processes.",
        int,
        default="all cores",
        minimum=1,
    ),
    Option(
        "scheduler",
        "Lift the shards on Dask: 'local' (a local cluster of --workers processes) or a scheduler's "
        "address, tcp://host:8786 (the workers must see --out's folder on a shared file system).",
        str,
        metavar="ADDRESS",
    ),
    Option("strict", "Stop at the first bad sample instead of skipping it.", bool),
    Option("resume", "Keep verified shards of an interrupted run with the same parameters.", bool),
    Option("progress", "Show a progress bar.", bool),
)


# ----------------------------------------------------------------------------------------------
# the reader's output and the predict hook


@dataclass(frozen=True)
class LiftInput:
    """What a data set's reader hands the driver.

    ``items``: what the shard builder reads (inherited by forked workers, pickled once for Dask);
    ``num_items``: how many items (shards cover ``[0, num_items)``); ``skipped``: input dropped before
    the shards (``{"id", "reason"}``, recorded in the manifest); ``context``: whatever ``finish`` needs
    besides the written shards (not sent to workers).
    """

    items: Any
    num_items: int
    skipped: Sequence[Mapping[str, Any]] = ()
    context: Any = None


@dataclass(frozen=True)
class PredictHook:
    """How ``empcn predict RUN FILE…`` reads new inputs of a data set and lifts them as the run's cache was.

    ``files``: what it reads, for messages ("molecules as .xyz or .sdf files"); ``read``: one file →
    ``(label, item)`` per sample in it, where ``item`` may be the :class:`~empcn.errors.EmpcnError` saying
    why that sample cannot be read; ``lift``: ``(item, the cache's manifest["params"], label)`` → a
    :class:`~empcn.cache.Sample` (:func:`empcn.lift.assemble.single_sample`), raising an ``EmpcnError``
    that names ``label`` when it cannot be lifted.
    """

    files: str
    read: Callable[[Path], list[tuple[str, Any]]]
    lift: Callable[[Any, Mapping[str, Any], str], Any]


# ----------------------------------------------------------------------------------------------
# the spec


@dataclass(frozen=True)
class DatasetSpec:
    """One data set of ``empcn lift --dataset NAME`` (see the module docstring).

    ``summary``: one line for ``empcn datasets`` and ``--help``. ``read``: config → :class:`LiftInput`
    (raise an ``EmpcnError`` for a bad source). ``build_shard``: ``(items, config, start, stop)`` →
    :class:`~empcn.cache.ShardContent` (runs in the workers; raise
    :class:`~empcn.lift.pipeline.LiftError` for a bad sample under ``config.strict``). ``finish``:
    ``(config, lift input, shard results)`` → :class:`~empcn.lift.pipeline.LiftedSplits` (splits,
    manifest part, field docs). ``fields``: the ``"group/array"`` fields its shards hold besides the
    complex's own (:data:`empcn.lift.assemble.COMPLEX_FIELDS`). ``task``: the train task of its caches
    (``"scalar"``: graph-level targets in ``sample/y``; ``"positions"``: ``nodes/target_pos``).
    ``versions``: libraries besides numpy/h5py/torch whose versions shape its bytes (recorded).
    """

    config: type[LiftConfig]
    summary: str
    options: tuple[Option, ...]
    read: Callable[[Any], LiftInput]
    build_shard: Callable[[Any, Any, int, int], Any]
    finish: Callable[[Any, LiftInput, list[Any]], Any]
    fields: tuple[str, ...]
    task: str = "scalar"
    versions: tuple[str, ...] = ()
    predict: PredictHook | None = None
    run_options: tuple[Option, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        cfg = self.config
        if not (isinstance(cfg, type) and issubclass(cfg, LiftConfig) and dataclasses.is_dataclass(cfg)):
            raise TypeError(f"config must be a dataclass deriving from empcn.lift.spec.LiftConfig, got {cfg!r}")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", cfg.DATASET or ""):
            raise ValueError(f"{cfg.__name__}.DATASET must be a lower-case name, got {cfg.DATASET!r}")
        for name in ("recorded_params", "source_info"):
            if getattr(cfg, name) is getattr(LiftConfig, name):
                raise TypeError(f"{cfg.__name__} does not define {name}()")
        for name in ("read", "build_shard", "finish"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable")
        if self.predict is not None and not isinstance(self.predict, PredictHook):
            raise TypeError(f"predict must be an empcn.lift.spec.PredictHook, got {type(self.predict).__name__}")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.task or ""):
            raise ValueError(f"task must be a task's name such as 'scalar' or 'positions', got {self.task!r}")
        names = [o.name for o in self.options]
        run_names = {o.name for o in RUN_OPTIONS} | {"dataset", "help"}
        if len(set(names)) != len(names) or run_names & set(names):
            raise ValueError(f"options must have distinct names other than the run options', got {names}")
        if not all(isinstance(o, Option) for o in self.options):
            raise TypeError("options must be empcn.lift.spec.Option values")
        init = {f.name for f in dataclasses.fields(cfg) if f.init}
        if cfg.from_options.__func__ is LiftConfig.from_options.__func__:  # type: ignore[attr-defined]
            unknown = [o.flag for o in self.options if o.field not in init]
            if unknown:
                raise ValueError(f"options {', '.join(unknown)} set no field of {cfg.__name__}")
        for f in self.fields:
            group, _, array = f.partition("/")
            if not group or not array:
                raise ValueError(f"field {f!r} is not 'group/array'")
        run = tuple(o for o in RUN_OPTIONS if o.name != "strict" or cfg.TAKES_STRICT)
        object.__setattr__(self, "run_options", run)

    @property
    def name(self) -> str:
        """The data set's name: its registry entry, ``manifest["dataset"]`` and ``--dataset`` value."""
        return self.config.DATASET

    def option_default(self, option: Option) -> str:
        """The default of ``option`` as ``--help`` shows it: its own text, else the config field's default."""
        if option.default:
            return option.default
        if option.name == "out":
            return f"data/{self.name}.h5"
        if option.name == "shard-size":
            return str(self.config.SHARD_SIZE)
        found = {f.name: f for f in dataclasses.fields(self.config)}.get(option.field)
        if found is None or found.default is dataclasses.MISSING:
            return ""
        value = found.default
        if value is None:
            return ""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, (tuple, list)):
            return ",".join(str(v) for v in value)
        return str(value)


def check_spec(obj: Any) -> DatasetSpec:
    """The registry's check: ``obj`` must be a :class:`DatasetSpec` (its own checks ran when it was made)."""
    if not isinstance(obj, DatasetSpec):
        raise TypeError(f"expected an empcn.lift.spec.DatasetSpec, got {type(obj).__name__}")
    return obj
