"""Command-line interface: ``empcn lift | datasets | train | evaluate | predict | cache info | cache verify | cache ls``.

Heavy imports (RDKit, torch models) happen inside the commands that need them, so ``empcn train``
never imports the lift stage and ``empcn cache info`` starts quickly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from empcn.errors import EmpcnError
from empcn.train.commands import fail, one_line  # typer only at import time


class _Commands(TyperGroup):
    """The command group that turns every error a user can cause (:class:`EmpcnError`) into one line.

    This is the one place the CLI catches them: a command lets them rise, and ``empcn`` prints
    ``error: <message>`` on stderr and exits with status 2 (on a torchrun rank other than 0 the line names the rank).
    """

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except EmpcnError as exc:
            fail(one_line(exc))


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="E(n)-equivariant message passing on cell complexes.",
)
cache_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect and check lifted caches.")
app.add_typer(cache_app, name="cache")


def _print_version(value: bool) -> None:
    """``--version``: print the installed distribution's version and exit."""
    if value:
        from importlib.metadata import version

        typer.echo(f"empcn {version('empcn')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """E(n)-equivariant message passing on cell complexes."""


#: ``lift`` reads its own command line: ``--dataset`` decides which options the rest may hold.
_RAW_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@app.command(context_settings=_RAW_ARGS, add_help_option=False)
def lift(ctx: typer.Context) -> None:
    """Lift raw data to cell complexes and write the HDF5 cache: `empcn lift --dataset NAME [OPTIONS]`.

    Each data set takes its own options (`empcn lift --dataset NAME --help`, `empcn datasets`); any other is refused.
    """
    from empcn.cli_lift import run_lift

    run_lift(ctx.args)


@app.command("datasets")
def datasets(
    names: Optional[list[str]] = typer.Argument(None, help="Data sets to describe (default: all)."),
) -> None:
    """The data sets `empcn lift --dataset NAME` can lift (built-in and plug-ins), where each comes from, its options."""
    from empcn.cli_lift import run_datasets

    run_datasets(names or [])


@cache_app.command("info")
def cache_info(
    path: Path = typer.Argument(..., help="Entry file of a cache, e.g. data/qm9.h5."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
) -> None:
    """What a cache holds: counts, cells per rank, parameters, splits, targets, size."""
    import json

    from empcn.cache import CacheError, cache_fingerprint, cache_size_bytes, missing_shards, open_cache

    try:
        cache = open_cache(path)
        size = cache_size_bytes(path)
        missing = missing_shards(path)
    except CacheError as exc:
        fail(str(exc))
    m = cache.manifest
    if json_out:
        typer.echo(json.dumps(m, indent=1, sort_keys=True))
        if missing:
            fail(f"{missing[0]}: missing shard; the cache is incomplete (lift it again)", code=1)
        return
    counts = m["counts"]
    lines = [
        f"cache       {path}  (format {m['format']} v{m['format_version']}, dataset {m['dataset']})",
        f"source      {m['source']['name']}  [{m['source']['kind']}]  {m['source']['fingerprint'][:23]}…",
        f"fingerprint {cache_fingerprint(m)}  (source, lift parameters, format: `lift --cache-dir` shares by it)",
        "created by  " + ", ".join(f"{k} {v}" for k, v in sorted(m.get("created_by", {}).items())),
        f"samples     {counts['samples']}  in {len(m['shards'])} shards, {size / 2**20:.1f} MiB on disk",
        f"cells       rank 0: {counts.get('nodes', 0)}   rank 1: {counts.get('edges', 0)}   "
        f"rank 2: {counts.get('rings', 0)}",
    ]
    cells = m.get("cells", {})
    if cells.get("ring_sizes"):
        lines.append("ring sizes  " + "  ".join(f"{s}:{n}" for s, n in cells["ring_sizes"].items()))
    if "bond_fallback_samples" in cells:
        lines.append(f"bonds       from coordinates (SMILES mismatch) in {cells['bond_fallback_samples']} samples")
    if m.get("elements"):
        from empcn.elements import SYMBOLS

        atoms = m["elements"].get("atoms", {})
        lines.append(
            "elements    "
            + "  ".join(f"{SYMBOLS[int(z)]}:{atoms.get(str(z), 0)}" for z in m["elements"]["vocabulary"])
            + "  (the vocabulary of node features)"
        )
    nbr = {k.split("/", 1)[1]: v for k, v in counts.items() if k.startswith("nbr/")}
    if nbr:
        lines.append("neighbours  " + "  ".join(f"{k}:{v}" for k, v in sorted(nbr.items())))
    lines.append("params      " + "  ".join(f"{k}={v}" for k, v in sorted(m.get("params", {}).items())))
    sp = m.get("splits", {})
    if sp:
        lines.append(
            f"splits      {sp.get('scheme')}: " + "  ".join(f"{k} {v}" for k, v in sp.get("counts", {}).items())
        )
    tg = m.get("targets")
    if tg:
        lines.append("targets     " + "  ".join(f"{n} [{tg['units'][n]}]" for n in tg["names"]))
    skipped = m.get("skipped", [])
    lines.append(f"skipped     {len(skipped)}")
    for s in skipped[:10]:
        lines.append(f"            id {s.get('id')}: {s.get('reason')}")
    if len(skipped) > 10:
        lines.append(f"            … {len(skipped) - 10} more (--json lists all)")
    typer.echo("\n".join(lines))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        fail(f"{missing[0]}: missing shard{more}; the cache is incomplete (lift it again)", code=1)


@cache_app.command("ls")
def cache_ls(
    cache_dir: Path = typer.Option(..., help="A folder of shared caches (as written by `lift --cache-dir`)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List the caches of a folder: dataset, fingerprint, parameters, size, date (entry file's mtime, UTC)."""
    import datetime
    import json

    from empcn.cache import CacheError, cache_fingerprint, cache_size_bytes, open_cache

    if not cache_dir.is_dir():
        fail(f"{cache_dir}: no such folder")
    rows = []
    for entry in sorted(cache_dir.glob("*.h5")):
        try:
            m = open_cache(entry).manifest
            size = cache_size_bytes(entry)
        except CacheError as exc:
            rows.append({"file": entry.name, "error": str(exc)})
            continue
        when = datetime.datetime.fromtimestamp(entry.stat().st_mtime, datetime.timezone.utc)
        rows.append(
            {
                "file": entry.name,
                "dataset": m.get("dataset"),
                "fingerprint": cache_fingerprint(m),
                "samples": m["counts"]["samples"],
                "params": m.get("params", {}),
                "source": m.get("source", {}).get("name"),
                "bytes": size,
                "date": when.strftime("%Y-%m-%d %H:%M UTC"),
            }
        )
    if json_out:
        typer.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    if not rows:
        typer.echo(f"{cache_dir}: no caches")
    for r in rows:
        if "error" in r:
            typer.echo(f"{r['file']}  unreadable: {r['error']}")
            continue
        params = " ".join(f"{k}={v}" for k, v in sorted(r["params"].items()))
        typer.echo(
            f"{r['file']}  {r['dataset']}  {r['fingerprint'][:16]}  {r['samples']} samples  "
            f"{r['bytes'] / 2**20:.1f} MiB  {r['date']}  source {r['source']}  {params}"
        )


@cache_app.command("verify")
def cache_verify(path: Path = typer.Argument(..., help="Entry file of a cache.")) -> None:
    """Check every shard's sha256 and structure; exit 1 on any fault."""
    from empcn.cache import verify_cache

    report = verify_cache(path, progress=sys.stderr.isatty())
    for line in report.problems:
        typer.echo(f"FAULT {line}", err=True)
    for line in report.notes:
        typer.echo(f"note: {line}", err=True)
    if report.ok:
        typer.echo(f"ok: {path}: {report.shards_checked} shards verified")
    else:
        typer.echo(f"{path}: {len(report.problems)} fault(s)", err=True)
        raise typer.Exit(1)


from empcn.train import commands  # noqa: E402  (typer only at import time; torch inside the commands)

commands.register(app)


@app.command("predict")
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `empcn train`."),
    files: list[Path] = typer.Argument(
        ...,
        help="Inputs as the run's data set reads them: molecules as .xyz files (raw QM9 or plain XYZ) or SD "
        "files (.sdf) for QM9 and molecules runs; a plug-in data set's own files (`empcn datasets` says which).",
    ),
    device: commands.DeviceChoice = typer.Option(commands.DeviceChoice.auto, help="auto: CUDA when available."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list: per file its value, or its error."),
) -> None:
    """Predict with a trained run for each input file: `file  value unit` per line (`--json` for a list).

    A bad file gets its own `error:` line on stderr and the exit status is 2; the others are still predicted.
    """
    from empcn.predict import Failure, predict_files

    results = predict_files(run, files, device.value)
    failures = [r for r in results if isinstance(r, Failure)]
    if any(not getattr(r, "checked", True) for r in results):
        typer.echo(
            f"note: {run} was saved without statistics of its training data: the molecules are not checked "
            "against what the model was trained on (runs trained with this version record them)",
            err=True,
        )
    if json_out:
        import dataclasses
        import json

        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    else:
        for r in results:
            if not isinstance(r, Failure):
                typer.echo(r.line())
    for failure in failures:
        typer.echo("error: " + commands.one_line(ValueError(failure.error)), err=True)
    if failures:
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
