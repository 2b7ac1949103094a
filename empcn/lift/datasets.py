"""The data sets ``empcn lift`` knows, and the one way every data set is lifted.

:data:`DATASETS` maps a name to its :class:`~empcn.lift.spec.DatasetSpec`: the built-ins below
(imported on first use), plug-ins of other packages (entry point group ``empcn.datasets``) and entries
registered at run time (:class:`empcn.registry.Registry`). :func:`lift` runs any of them: ``--out`` checked
and locked (or the shared folder of ``--cache-dir``, reused by fingerprint), the data set's reader, its
shard builder in workers or on Dask, its finish, the manifest and entry file
(:func:`empcn.lift.pipeline.run_lift`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from empcn.errors import RegistryError
from empcn.lift.spec import DatasetSpec, LiftConfig, LiftInput, check_spec
from empcn.registry import Registry

#: Names → data sets. A built-in is one module holding its ``SPEC``.
DATASETS: Registry[DatasetSpec] = Registry(
    "data set",
    "empcn.datasets",
    {
        "qm9": "empcn.lift.qm9:SPEC",
        "nbody": "empcn.lift.nbody:SPEC",
        "mocap": "empcn.lift.mocap:SPEC",
        "molecules": "empcn.lift.molecules:SPEC",
    },
    check=check_spec,
)


def dataset(name: str, distribution: str | None = None) -> DatasetSpec:
    """The spec registered as ``name``; RegistryError (one line) for an unknown name or a broken plug-in.

    ``distribution``: the plug-in package a cache or run says ``name`` came from (named when it is missing).
    """
    spec = DATASETS.get(name, distribution)
    if spec.name != name:
        where = DATASETS.origin(name).describe()
        raise RegistryError(
            f"data set {name!r} ({where}): its config says it is {spec.name!r} ({spec.config.__name__}"
            ".DATASET); the two names must agree"
        )
    return spec


def spec_of(config: LiftConfig) -> DatasetSpec:
    """The registered spec whose config ``config`` is."""
    spec = dataset(config.DATASET)
    if not isinstance(config, spec.config):
        raise TypeError(f"{type(config).__name__} is not data set {spec.name!r}'s config ({spec.config.__name__})")
    return spec


# ----------------------------------------------------------------------------------------------
# the driver


def lift(config: LiftConfig, spec: DatasetSpec | None = None, say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Lift ``config`` → ``(entry file, reused)``; ``spec``: its data set (default: the registered one).

    ``--out`` is checked and locked before the source is read (:func:`empcn.lift.output.claim_output`).
    With ``config.cache_dir`` the cache is the shared folder's one of this lift's fingerprint: reused
    when it verifies, else lifted there (:func:`empcn.lift.shared.lift_shared`, which says on ``say``
    what it does). Raises an :class:`~empcn.errors.EmpcnError` (one line) on bad input.
    """
    spec = spec or spec_of(config)
    if config.cache_dir is None:
        from empcn.lift.output import claim_output

        with claim_output(Path(config.out)):  # type: ignore[arg-type]
            return lift_unclaimed(config, spec), False
    from empcn.lift.shared import lift_shared

    source = config.source_info()
    return lift_shared(
        config.cache_dir,
        spec.name,
        config.recorded_params(),
        source["fingerprint"],
        lambda entry: lift_unclaimed(replace(config, out=entry, cache_dir=None), spec, source),
        say=say,
    )


def lift_unclaimed(
    config: LiftConfig, spec: DatasetSpec | None = None, source: Mapping[str, Any] | None = None
) -> Path:
    """The lift into ``config.out``, whose lock the caller holds; returns the entry file.

    ``source``: :meth:`~empcn.lift.spec.LiftConfig.source_info`, when the caller has it already.
    """
    from empcn.lift import pipeline

    spec = spec or spec_of(config)
    source = dict(source) if source is not None else config.source_info()
    lifted = spec.read(config)
    if not isinstance(lifted, LiftInput):
        raise TypeError(f"data set {spec.name!r}: read returned {type(lifted).__name__}, not a LiftInput")
    job = pipeline.LiftJob(
        dataset=spec.name,
        num_items=int(lifted.num_items),
        build=partial(_build, spec.name, spec.build_shard, spec.fields, lifted.items, config),
        params=config.recorded_params(),
        source=source,
        **pipeline.run_options(config),
        desc=config.progress_label(),
        versions=spec.versions,
    )
    return pipeline.run_lift(job, partial(_finish, spec, config, lifted))


def _build(
    name: str, build_shard: Callable[..., Any], fields: tuple[str, ...], items: Any, config: LiftConfig, task: Any
) -> Any:
    """One shard of ``items`` (in a worker: what it needs only, as Dask pickles it), holding only ``fields``."""
    from empcn.lift.assemble import undeclared_fields
    from empcn.lift.pipeline import LiftError

    content = build_shard(items, config, task.start, task.stop)
    extra = undeclared_fields(content, fields)
    if extra:
        raise LiftError(f"data set {name!r} wrote {', '.join(extra)}, which its spec's fields do not declare")
    return content


def _plugin_of(spec: DatasetSpec) -> dict[str, Any] | None:
    """``{"distribution", "version", "entry_point"}`` when ``spec`` is the registered plug-in of its name."""
    if spec.name not in DATASETS or DATASETS.origin(spec.name).kind != "plugin" or DATASETS.get(spec.name) is not spec:
        return None
    origin = DATASETS.origin(spec.name)
    return {"distribution": origin.distribution, "version": origin.version, "entry_point": origin.target}


def _finish(spec: DatasetSpec, config: LiftConfig, lifted: LiftInput, results: list[Any]) -> Any:
    """The data set's finish, plus what the spec says: the task and the documentation of every field written."""
    from empcn.lift.assemble import field_docs
    from empcn.lift.pipeline import LiftedSplits, LiftError

    done = spec.finish(config, lifted, results)
    if not isinstance(done, LiftedSplits):
        raise TypeError(f"data set {spec.name!r}: finish returned {type(done).__name__}, not a LiftedSplits")
    manifest = dict(done.manifest)
    if "task" in manifest:
        raise LiftError(f"data set {spec.name!r}: its finish sets manifest['task']; the spec's task names it")
    if spec.task != "scalar":  # a manifest without "task" is a scalar cache (QM9's bytes since format 1)
        manifest["task"] = spec.task
    plugin = _plugin_of(spec)
    if plugin is not None:  # who can read such a cache: the package to install
        manifest["plugin"] = plugin
    try:
        fields = field_docs(spec.fields, done.fields)
    except ValueError as exc:
        raise LiftError(f"data set {spec.name!r}: {exc}") from None
    return replace(done, manifest=manifest, fields=fields, skipped=[*lifted.skipped, *done.skipped])
