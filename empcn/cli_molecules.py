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
) -> tuple[Path, bool]:
    """Build the config from CLI options and lift (into ``cache_dir`` when given) → ``(entry file, reused)``."""
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
    return lift_here_or_shared(
        cache_dir, "molecules", config, lift_molecules, lift_unclaimed, lambda: config.source_info()["fingerprint"]
    )


def lift_here_or_shared(
    cache_dir: Path | None, dataset: str, config: Any, lift: Callable[[Any], Path], lift_unclaimed: Callable[[Any], Path],
    source_fp: Callable[[], str],
) -> tuple[Path, bool]:
    """``(entry file, reused)``: ``lift(config)`` at its ``out``, or with ``--cache-dir`` the shared folder's
    cache of the same fingerprint (:func:`empcn.lift.shared.lift_shared`, lifting there when there is none),
    saying what it does on stdout. ``source_fp`` is only called for the shared folder."""
    if cache_dir is None:
        return lift(config), False
    from empcn.lift.shared import lift_shared

    return lift_shared(
        Path(cache_dir), dataset, config.recorded_params(), source_fp(),
        lambda entry: lift_unclaimed(replace(config, out=entry)), say=typer.echo,
    )
