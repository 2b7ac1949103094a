"""``empcn lift --dataset molecules`` and ``--cache-dir``: option parsing, kept apart from :mod:`empcn.cli`.

Heavy imports (RDKit) happen inside the functions, as in the CLI.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import typer


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → (0.8, 0.1, 0.1); ValueError with the reason."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ValueError(f"--fractions takes three numbers TRAIN,VALID,TEST, got {text!r}")
    return parts  # type: ignore[return-value]


def parse_elements(text: str | None) -> tuple[int, ...] | None:
    """``"H,C,N,O,Br"`` (symbols or atomic numbers) → atomic numbers; ValueError naming a bad one."""
    if text is None:
        return None
    from empcn.data.xyz import atomic_number

    out = []
    for token in (t.strip() for t in text.split(",")):
        if token:
            try:
                out.append(atomic_number(token))
            except ValueError as exc:
                raise ValueError(f"--elements: {exc}") from None
    if not out:
        raise ValueError("--elements names no element")
    return tuple(out)


def lift_molecules_command(
    *, source: Path | None, out: Path, cache_dir: Path | None, fractions: str, elements: str | None, **options: Any
) -> Path:
    """Build the config from CLI options and lift (into ``cache_dir`` when given); returns the entry file."""
    from empcn.lift.molecules import MoleculesLiftConfig, lift_molecules, lift_unclaimed
    from empcn.lift.pipeline import LiftError

    if source is None:
        raise LiftError("--dataset molecules needs --source: an SD file, or a folder of XYZ files with --targets-csv")
    try:
        frac = parse_fractions(fractions)
        els = parse_elements(elements)
    except ValueError as exc:
        raise LiftError(str(exc)) from None
    options["shard_size"] = options.get("shard_size") or 1024
    config = MoleculesLiftConfig(source=source, out=out, fractions=frac, elements=els, **options)
    if cache_dir is None:
        return lift_molecules(config), False
    return shared(cache_dir, "molecules", config.recorded_params(), config.source_info()["fingerprint"],
                  lambda entry: lift_unclaimed(replace(config, out=entry)))


def shared(
    cache_dir: Path, dataset: str, params: dict[str, Any], source_fp: str, lift: Callable[[Path], Path]
) -> tuple[Path, bool]:
    """:func:`empcn.lift.shared.lift_shared` (entry, reused), saying what it does on stdout."""
    from empcn.lift.shared import lift_shared

    return lift_shared(Path(cache_dir), dataset, params, source_fp, lift, say=typer.echo)
