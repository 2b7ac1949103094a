"""``empcn lift --dataset NAME …`` and ``empcn datasets``: the command line of the data-set registry.

``--dataset`` is read first (default ``qm9``); the rest of the command line is then parsed by a click
command built from that data set's :class:`~empcn.lift.spec.DatasetSpec`: its own options and the run
options every data set takes, nothing else. An option of another data set, a bad value, a missing
required option or a config the data set refuses is one ``error:`` line with exit status 2.

Imported by the ``lift`` and ``datasets`` commands only (the CLI's other commands never load the lift).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import typer

from empcn.errors import EmpcnError
from empcn.lift.datasets import DATASETS, dataset, lift
from empcn.lift.spec import DatasetSpec, Option
from empcn.train.commands import fail  # the one `error:` line of every command

DEFAULT_DATASET = "qm9"


# ----------------------------------------------------------------------------------------------
# a data set's options as click options


class _Parsed(click.ParamType):
    """A value read by the option's own parse function (ValueError → a one-line error naming the option)."""

    def __init__(self, option: Option) -> None:
        self.name = option.metavar or "TEXT"
        self._parse = option.kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(" ".join(str(exc).split()), param, ctx)


def _param_type(option: Option) -> click.ParamType:
    kind = option.kind
    if isinstance(kind, tuple):
        return click.Choice(kind)
    if kind is int:
        return click.IntRange(min=int(option.minimum)) if option.minimum is not None else click.INT
    if kind is float:
        return click.FloatRange(min=option.minimum) if option.minimum is not None else click.FLOAT
    if kind is Path:
        return click.Path(path_type=Path)
    if kind is str:
        return click.STRING
    return _Parsed(option)


def _shown_default(spec: DatasetSpec, option: Option) -> str:
    default = spec.option_default(option)
    try:
        float(default)
    except ValueError:
        return default
    return f"{default} {option.unit}".rstrip()


def _click_option(spec: DatasetSpec, option: Option) -> click.Option:
    shown = _shown_default(spec, option)
    text = option.help + (f" ({option.unit})" if option.unit and not shown else "")
    text += f"  [default: {shown}]" if shown else "  [required]" if option.required else ""
    if option.kind is bool:
        return click.Option([f"--{option.name}/--no-{option.name}", option.param], default=None, help=text)
    metavar = option.metavar or (
        None
        if isinstance(option.kind, tuple)
        else option.kind.__name__.upper()
        if isinstance(option.kind, type)
        else "TEXT"
    )
    return click.Option(
        [option.flag, option.param],
        type=_param_type(option),
        default=None,
        help=text,
        metavar=metavar,
        multiple=option.multiple,
    )


def origin_of(name: str) -> str:
    """Where data set ``name`` comes from, in words: ``built-in`` or ``plug-in <package> <version>``."""
    origin = DATASETS.origin(name)
    return "built-in" if origin.kind == "builtin" else origin.describe()


class _LiftCommand(click.Command):
    """``empcn lift --dataset NAME``: help in two sections, the data set's options and the run options."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.own = [_click_option(spec, o) for o in spec.options]
        self.run = [_click_option(spec, o) for o in spec.run_options]
        chooser = click.Option(
            ["--dataset", "dataset"],
            default=spec.name,
            metavar="NAME",
            help=f"The data set to lift (`empcn datasets` lists them).  [default: {DEFAULT_DATASET}]",
        )
        super().__init__(
            "lift",
            params=[chooser, *self.own, *self.run],
            add_help_option=True,
            help=f"{spec.summary}.\n\nLifts it to cell complexes and writes the HDF5 cache (task: {spec.task}).",
            options_metavar=f"--dataset {spec.name} [OPTIONS]",
        )

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The data sets to choose from (only for --help: finding plug-ins reads every installed package's metadata)."""
        names = ", ".join(f"{n} ({origin_of(n)})" for n in DATASETS.names())
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(f"Data sets: {names}. `empcn lift --dataset NAME --help` shows NAME's options.")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections = (
            ("Options", [self.params[0]]),
            (f"Options of --dataset {self.spec.name}", self.own),
            ("Run options (every data set)", [*self.run, self.get_help_option(ctx)]),
        )
        for title, params in sections:
            rows = [r for r in (p.get_help_record(ctx) for p in params if p is not None) if r is not None]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _option_flags(name: str) -> set[str]:
    """Every flag ``empcn lift --dataset name`` takes (empty when the data set cannot be loaded)."""
    try:
        spec = dataset(name)
    except EmpcnError:
        return set()
    flags = set()
    for option in (*spec.options, *spec.run_options):
        flags |= {option.flag, f"--no-{option.name}"} if option.kind is bool else {option.flag}
    return flags


def _not_an_option(spec: DatasetSpec, flag: str, possibilities: Sequence[str] | None) -> str:
    owners = [n for n in DATASETS.names() if n != spec.name and flag in _option_flags(n)]
    if owners:
        hint = f"; it is an option of --dataset {', '.join(owners)}"
    elif possibilities:
        hint = f"; did you mean {', '.join(sorted(possibilities))}?"
    else:
        hint = ""
    return (
        f"{flag} is not an option of --dataset {spec.name}{hint} (`empcn lift --dataset {spec.name} --help` lists them)"
    )


def dataset_named(args: Sequence[str]) -> str:
    """The value of the last ``--dataset`` in ``args`` (``--dataset X`` or ``--dataset=X``), else qm9."""
    name = DEFAULT_DATASET
    for k, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--dataset":
            if k + 1 >= len(args):
                fail("--dataset needs a name: " + ", ".join(DATASETS.names()))
            name = args[k + 1]
        elif arg.startswith("--dataset="):
            name = arg.partition("=")[2]
    return name


# ----------------------------------------------------------------------------------------------
# the commands


def run_lift(args: Sequence[str]) -> None:
    """``empcn lift ARGS``: parse with the chosen data set's options, lift, print what was written."""
    from click.core import ParameterSource

    spec = dataset(dataset_named(args))
    command = _LiftCommand(spec)
    try:
        ctx = command.make_context("empcn lift", list(args))
    except click.exceptions.Exit as exc:  # --help was printed
        raise typer.Exit(exc.exit_code) from None
    except click.NoSuchOption as exc:
        fail(_not_an_option(spec, exc.option_name, exc.possibilities))
    except click.ClickException as exc:
        fail(exc.format_message())
    given = {k for k in ctx.params if ctx.get_parameter_source(k) is ParameterSource.COMMANDLINE}
    for option in spec.options:
        if option.required and option.param not in given:
            fail(f"--dataset {spec.name} needs {option.flag}: {option.help}")
    values = {o.field: ctx.params[o.param] for o in spec.options if o.param in given}
    run = {o.field: ctx.params[o.param] for o in spec.run_options if o.param in given}
    config = None
    try:
        if "workers" not in run:
            from empcn.lift.pipeline import default_workers

            run["workers"] = default_workers()
        config = spec.config.from_options(values, **run)
        path, reused = lift(config, spec, say=typer.echo)
    except KeyboardInterrupt:  # Ctrl-C: one line (the workers are quiet, their temporary files removed)
        where = getattr(config, "cache_dir", None) or getattr(config, "out", None) or "the cache"
        fail(
            f"interrupted: {where}: nothing complete was written (`empcn lift … --resume` keeps the shards already "
            "finished)",
            code=130,
        )
    print_summary(path, reused)


def print_summary(path: Path, reused: bool = False) -> None:
    """``wrote <entry>: N samples in K shards, X MiB`` (``cache`` when reused) and the first skip."""
    from empcn.cache import cache_size_bytes, open_cache

    cache = open_cache(path)
    skipped = cache.manifest.get("skipped", [])
    typer.echo(
        f"{'cache' if reused else 'wrote'} {path}: {len(cache)} samples in {cache.num_shards} shards, "
        f"{cache_size_bytes(path) / 2**20:.1f} MiB"
    )
    if skipped:
        first = skipped[0]
        typer.echo(
            f"skipped {len(skipped)} samples (first: id {first.get('id')}: {first.get('reason')}); "
            "see `empcn cache info`"
        )


def describe(name: str) -> str:
    """One data set as ``empcn datasets`` shows it: name, origin, task, summary, its options (RegistryError if broken)."""
    spec = dataset(name)
    origin = DATASETS.origin(name)
    where = origin_of(name) + (f", {origin.target}" if origin.target else "")
    command = _LiftCommand(spec)
    ctx = click.Context(command, info_name="empcn lift")
    formatter = click.HelpFormatter()
    formatter.write_text(spec.summary)
    rows = [r for r in (p.get_help_record(ctx) for p in command.own) if r is not None]
    with formatter.indentation():
        formatter.write_dl(rows or [("(no options)", "")])
    predict = f"; predict: {spec.predict.files}" if spec.predict is not None else ""
    return f"{name}  ({where}; task {spec.task}{predict})\n{formatter.getvalue().rstrip()}"


def run_datasets(names: Sequence[str]) -> None:
    """``empcn datasets [NAME…]``: every registered data set (or those named) with its options."""
    broken = 0
    for name in names or DATASETS.names():
        try:
            typer.echo(describe(name) + "\n")
        except EmpcnError as exc:
            if names:
                fail(str(exc))
            typer.echo("error: " + " ".join(str(exc).split()), err=True)
            broken += 1
    if not names:
        for origin in DATASETS.shadowed():
            typer.echo(
                f"note: ignored {origin.describe()}'s entry point {origin.target!r}: the name is taken", err=True
            )
        run = ", ".join(o.flag for o in dataset(DEFAULT_DATASET).run_options)
        typer.echo(
            f"Run options of every data set: {run} (--strict where a data set skips bad samples); "
            "`empcn lift --dataset NAME --help` shows them with their defaults."
        )
    if broken:
        raise typer.Exit(1)
