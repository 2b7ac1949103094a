"""Command-line interface: ``empcn lift | train | evaluate | predict | cache info | cache verify | cache ls``.

Heavy imports (RDKit, torch models) happen inside the commands that need them, so ``empcn train``
never imports the lift stage and ``empcn cache info`` starts quickly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer

from empcn import choices

app = typer.Typer(add_completion=False, no_args_is_help=True, help="E(n)-equivariant message passing on cell complexes.")
cache_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect and check lifted caches.")
app.add_typer(cache_app, name="cache")

Dataset = choices.choice_enum("Dataset", choices.Dataset)
RingChoice = choices.choice_enum("RingChoice", choices.RingKind)
SystemChoice = choices.choice_enum("SystemChoice", choices.SystemKind)
InitialChoice = choices.choice_enum("InitialChoice", choices.InitialStates)
SplitChoice = choices.choice_enum("SplitChoice", choices.SplitScheme)
VelocityChoice = choices.choice_enum("VelocityChoice", choices.VelocityKind)












def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    from empcn.cache import CacheError
    from empcn.data.asf import MocapError
    from empcn.data.qm9 import SourceError
    from empcn.files import WriteError
    from empcn.lift.pipeline import LiftError

    return (CacheError, SourceError, LiftError, MocapError, WriteError)


@app.command()
def lift(
    dataset: Dataset = typer.Option(Dataset.qm9, help="Which data set to lift."),
    source: Optional[Path] = typer.Option(
        None,
        help="Raw data: QM9 dsgdb9nsd.xyz.tar.bz2 or a folder of .xyz files (default: the qm9pack CSVs); MoCap: a "
        "folder of one .asf and its .amc trials (default: ../shared/data/cmu-mocap-35/amc30 at 30 Hz, or $EMPCN_MOCAP_DIR/amc30).",
    ),
    out: Optional[Path] = typer.Option(None, help="Entry file to write (default: data/<dataset>.h5)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Lift only the first N samples."),
    workers: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: all cores); with --scheduler local, "
                                         "the Dask cluster's worker processes."),
    scheduler: Optional[str] = typer.Option(
        None, help="Lift the shards on Dask: 'local' (a local cluster of --workers processes) or a scheduler's address, "
        "tcp://host:8786 (the workers must see --out's folder on a shared file system)."),
    rings: RingChoice = typer.Option(RingChoice.chordless, help="2-cells: chordless cycles, or RDKit's symmetrised SSSR."),
    max_ring: int = typer.Option(8, min=3, help="Largest ring (number of atoms) that becomes a 2-cell."),
    split: SplitChoice = typer.Option(SplitChoice.cormorant, help="QM9 split: cormorant (EGNN) or empsn."),
    shard_size: Optional[int] = typer.Option(None, min=1, help="Samples per shard file (QM9 4096, N-body and MoCap 1000)."),
    system: SystemChoice = typer.Option(SystemChoice.charged, help="N-body: charged 5-body or 100-body gravity."),
    sims: Optional[str] = typer.Option(
        None, help="N-body: simulations per split as TRAIN,VALID,TEST (default 3000,2000,2000)."
    ),
    initial_states: Optional[InitialChoice] = typer.Option(
        None,
        help="N-body initial states: egnn = the systems of EGNN's data set (charged default; at most "
        "10000,2000,2000 simulations), seeded = one random stream per split (gravity default).",
    ),
    fps: Optional[float] = typer.Option(
        None, min=1e-6, help="MoCap: frame rate of the .amc files in Hz (default 120, CMU's; 30 for the shared amc30 default)."
    ),
    trials: Optional[str] = typer.Option(
        None, help="MoCap: comma-separated .amc names, stems or globs to use (default: all; too-short trials are skipped)."
    ),
    trial_split: str = typer.Option("11,6,6", help="MoCap: trials per split TRAIN,VALID,TEST (seeded permutation)."),
    velocity: VelocityChoice = typer.Option(
        VelocityChoice.causal, help="MoCap input velocity (ASF units per 1/120 s): causal from x[s]-x[s-1], or forward from x[s+1]-x[s] as the papers."
    ),
    strict: bool = typer.Option(False, help="Stop at the first bad sample instead of skipping it."),
    resume: bool = typer.Option(False, help="Keep verified shards of an interrupted run with the same parameters."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    # --dataset molecules (users' own molecules) and --cache-dir (shared caches)
    targets: Optional[str] = typer.Option(
        None, help="molecules: targets as NAME[=SD_TAG],… (SD file) or CSV columns (XYZ folder; default all)."
    ),
    targets_csv: Optional[Path] = typer.Option(None, help="molecules: CSV of targets for a folder of XYZ files."),
    id_column: Optional[str] = typer.Option(
        None, help="molecules: CSV column matching the XYZ file names (default id), or the SD tag holding ids "
        "(default: the title line)."
    ),
    units: Optional[str] = typer.Option(None, help="molecules: units of the targets, NAME=UNIT,…"),
    fractions: str = typer.Option("0.8,0.1,0.1", help="molecules: random split fractions TRAIN,VALID,TEST."),
    seed: int = typer.Option(0, min=0, help="molecules: seed of the random split."),
    elements: Optional[str] = typer.Option(
        None, help="molecules: the element vocabulary, e.g. H,C,N,O,F,S,Cl,Br (default: the elements present); "
        "molecules with others are skipped."
    ),
    cache_dir: Optional[Path] = typer.Option(
        None, help="A shared folder of caches: reuse a verified cache with this lift's fingerprint, or lift into it."
    ),
) -> None:
    """Lift raw data to cell complexes and write the HDF5 cache."""
    from empcn.lift.pipeline import LiftError, check_scheduler, default_workers

    if cache_dir is not None and out is not None:
        fail("--out and --cache-dir exclude each other: --cache-dir names the cache by its fingerprint")
    if dataset is not Dataset.molecules:
        given = {"--targets": targets, "--targets-csv": targets_csv, "--id-column": id_column, "--units": units,
                 "--elements": elements, "--fractions": None if fractions == "0.8,0.1,0.1" else fractions,
                 "--seed": seed or None}
        named = [k for k, v in given.items() if v is not None]
        if named:
            fail(f"{', '.join(named)}: for --dataset molecules (your own molecules), not {dataset.value}")
    out = out or Path("data") / f"{dataset.value}.h5"
    n_workers = workers or default_workers()
    try:
        check_scheduler(scheduler)
    except LiftError as exc:
        fail(str(exc))
    reused = False
    try:
        if dataset is Dataset.molecules:
            from empcn.cli_molecules import lift_molecules_command

            path, reused = lift_molecules_command(
                source=source, out=out, targets=targets, targets_csv=targets_csv, id_column=id_column, units=units,
                fractions=fractions, seed=seed, elements=elements, rings=rings.value, max_ring=max_ring,
                shard_size=shard_size, workers=n_workers, strict=strict, resume=resume, progress=progress,
                cache_dir=cache_dir, scheduler=scheduler,
            )
            _print_summary(path, reused)
            return
        if dataset is Dataset.qm9:
            from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

            if source is not None and not source.exists():
                fail(f"{source}: no such file or folder")
            cfg = QM9LiftConfig(
                source=source,
                out=out,
                limit=limit,
                rings=rings.value,
                max_ring=max_ring,
                split=split.value,
                shard_size=shard_size or 4096,
                workers=n_workers,
                scheduler=scheduler,
                strict=strict,
                resume=resume,
                progress=progress,
            )
            from empcn.cli_molecules import lift_here_or_shared
            from empcn.data.qm9 import source_fingerprint
            from empcn.lift.qm9 import lift_unclaimed

            path, reused = lift_here_or_shared(cache_dir, "qm9", cfg, lift_qm9, lift_unclaimed,
                                               lambda: source_fingerprint(source))
        elif dataset is Dataset.nbody:
            if source is not None:
                fail("--source is for QM9; N-body systems are simulated (choose them with --system, --sims, "
                     "--initial-states)")
            from empcn.lift.nbody import NBodyLiftConfig, lift_nbody, standard_splits

            n_cfg = NBodyLiftConfig(
                system=system.value,
                out=out,
                splits=standard_splits(_parse_sims(sims)),
                initial_states=initial_states.value if initial_states is not None else None,
                shard_size=shard_size or 1000,
                workers=n_workers,
                scheduler=scheduler,
                resume=resume,
                progress=progress,
            )
            from empcn.cli_molecules import lift_here_or_shared
            from empcn.lift.nbody import lift_unclaimed as lift_nbody_unclaimed
            from empcn.lift.nbody import source_fingerprint as nbody_fingerprint

            path, reused = lift_here_or_shared(cache_dir, "nbody", n_cfg, lift_nbody, lift_nbody_unclaimed,
                                               lambda: nbody_fingerprint(n_cfg))
        else:
            path = _lift_mocap(source, out, fps, trials, trial_split, velocity.value, shard_size, n_workers, resume, progress,
                               scheduler)
    except _known_errors() as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        where = cache_dir if cache_dir is not None else out
        fail(f"interrupted: {where}: nothing complete was written (`empcn lift … --resume` keeps the shards already "
             "finished)", code=130)
    _print_summary(path, reused)


def _lift_mocap(
    source: Optional[Path], out: Path, fps: Optional[float], trials: Optional[str], trial_split: str, velocity: str,
    shard_size: Optional[int], workers: int, resume: bool, progress: bool, scheduler: Optional[str] = None,
) -> Path:
    from empcn.data.mocap import MocapProtocol
    from empcn.lift.mocap import MocapLiftConfig, lift_mocap

    split = _parse_sims(trial_split, "--trial-split")
    try:
        protocol = MocapProtocol(
            fps=fps if fps is not None else (120.0 if source is not None else 30.0),
            trial_split=split,  # type: ignore[arg-type]
            velocity=velocity,
        )
    except ValueError as exc:
        fail(str(exc))
    names = tuple(t.strip() for t in trials.split(",") if t.strip()) if trials is not None else None
    cfg = MocapLiftConfig(
        source=source, out=out, trials=names or None, protocol=protocol, shard_size=shard_size or 1000,
        workers=workers, resume=resume, progress=progress, scheduler=scheduler,
    )
    return lift_mocap(cfg)


def _parse_sims(text: Optional[str], option: str = "--sims") -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        fail(f"{option} takes three positive integers TRAIN,VALID,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def _print_summary(path: Path, reused: bool = False) -> None:
    from empcn.cache import cache_size_bytes, open_cache

    cache = open_cache(path)
    m = cache.manifest
    skipped = m.get("skipped", [])
    typer.echo(f"{'cache' if reused else 'wrote'} {path}: {len(cache)} samples in {cache.num_shards} shards, {cache_size_bytes(path) / 2**20:.1f} MiB")
    if skipped:
        first = skipped[0]
        typer.echo(f"skipped {len(skipped)} samples (first: id {first.get('id')}: {first.get('reason')}); see `empcn cache info`")


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
        lines.append("elements    " + "  ".join(f"{SYMBOLS[int(z)]}:{atoms.get(str(z), 0)}" for z in m["elements"]["vocabulary"])
                     + "  (the vocabulary of node features)")
    nbr = {k.split("/", 1)[1]: v for k, v in counts.items() if k.startswith("nbr/")}
    if nbr:
        lines.append("neighbours  " + "  ".join(f"{k}:{v}" for k, v in sorted(nbr.items())))
    lines.append("params      " + "  ".join(f"{k}={v}" for k, v in sorted(m.get("params", {}).items())))
    sp = m.get("splits", {})
    if sp:
        lines.append(f"splits      {sp.get('scheme')}: " + "  ".join(f"{k} {v}" for k, v in sp.get("counts", {}).items()))
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
        rows.append({
            "file": entry.name, "dataset": m.get("dataset"), "fingerprint": cache_fingerprint(m),
            "samples": m["counts"]["samples"], "params": m.get("params", {}), "source": m.get("source", {}).get("name"),
            "bytes": size, "date": when.strftime("%Y-%m-%d %H:%M UTC"),
        })
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
    files: list[Path] = typer.Argument(..., help="Molecules as .xyz files (raw QM9 or plain XYZ) or SD files (.sdf)."),
    device: commands.DeviceChoice = typer.Option(commands.DeviceChoice.auto, help="auto: CUDA when available."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list: per file its value, or its error."),
) -> None:
    """Predict the run's target for each molecule file: `file  value unit` per line (QM9 runs).

    A bad file gets its own `error:` line on stderr and the exit status is 2; the others are still predicted.
    """
    from empcn.predict import Failure, PredictError, predict_files

    try:
        results = predict_files(run, files, device.value)
    except (PredictError, *commands._user_errors()) as exc:
        commands._fail(commands.one_line(exc))
    failures = [r for r in results if isinstance(r, Failure)]
    if any(not getattr(r, "checked", True) for r in results):
        typer.echo(f"note: {run} was saved without statistics of its training data: the molecules are not checked "
                   "against what the model was trained on (runs trained with this version record them)",
                   err=True)
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
