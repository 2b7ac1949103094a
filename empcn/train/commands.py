"""``empcn train | evaluate``: the typer commands of the train stage (``predict`` is in :mod:`empcn.cli`).

:func:`register` adds them to the CLI app. This module imports only typer at import time (the CLI
loads it for every command); torch, the models and the data path are imported inside the commands.
Errors a user can fix print one line (``error: …``) and exit with status 2; a diverged run exits 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn, Optional

import typer

from empcn import choices
from empcn.train.models.registry import LEGACY_NAMES, MODELS  # names only: no model (and no torch) is imported here

ScheduleChoice = choices.choice_enum("ScheduleChoice", choices.ScheduleChoice)
DeviceChoice = choices.choice_enum("DeviceChoice", choices.DeviceChoice)
DtypeChoice = choices.choice_enum("DtypeChoice", choices.DtypeChoice)
SplitName = choices.choice_enum("SplitName", choices.SplitName)
TargetReferenceChoice = choices.choice_enum("TargetReferenceChoice", choices.TargetReference)


def _model_help() -> str:
    return (
        f"Model to train: {', '.join(MODELS.names())} (default: empcn); the cache's task picks the model's "
        "variant (on a positions cache the position-predicting one). `empcn models` lists them."
    )


def _complete_model(incomplete: str) -> list[str]:
    return [name for name in MODELS.names() if name.startswith(incomplete)]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a DataLoader worker's wrapped traceback → its last line)."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        head, sep, tail = last.partition(": ")
        text = tail if sep and "." in head and " " not in head else last
    return " ".join(text.split())


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one ``error:`` line on stderr (naming the rank under torchrun) and exit with ``code``."""
    prefix = f"error (rank {_rank()}): " if _rank() else "error: "
    typer.echo(prefix + " ".join(str(message).split()), err=True)
    raise typer.Exit(code)


def train(
    cache: Optional[Path] = typer.Option(None, help="Entry file of a lifted cache, e.g. data/qm9.h5 or data/nbody.h5."),
    target: Optional[str] = typer.Option(
        None, help="Target column of a QM9 cache, e.g. U0, gap, homo (not for a positions cache such as N-body)."
    ),
    model: Optional[str] = typer.Option(None, help=_model_help(), autocompletion=_complete_model),
    out: Optional[Path] = typer.Option(
        None, help="Run folder (default: runs/<target>-<model>, N-body runs/nbody-<model>)."
    ),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder exactly where it stopped."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (default: QM9 1000, N-body 10000)."),
    batch_size: Optional[int] = typer.Option(
        None, min=1, help="Samples per batch and rank (default: QM9 96, N-body 100)."
    ),
    hidden: Optional[int] = typer.Option(None, min=1, help="Hidden width (default: the model's paper setting)."),
    layers: Optional[int] = typer.Option(None, min=1, help="Message-passing layers (default: the model's)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: 5e-4; 1e-3 for QM9 gap/homo/lumo)."),
    schedule: Optional[ScheduleChoice] = typer.Option(
        None, help="Learning-rate schedule over all steps (default: QM9 cosine, N-body constant as in the papers)."
    ),
    weight_decay: Optional[float] = typer.Option(None, help="Adam weight decay (default: 1e-12)."),
    clip: Optional[float] = typer.Option(
        None, help="Max gradient norm, 0 = off (default: the model's: 10; SEGNN on positions: off)."
    ),
    dropout: Optional[float] = typer.Option(None, help="Dropout probability (default: the model's; EMPCN N-body 0.2)."),
    seed: Optional[int] = typer.Option(None, help="Seed of initialisation, shuffling and --train-size (default: 0)."),
    train_size: Optional[int] = typer.Option(
        None,
        min=1,
        help="Train on the first N of a seeded permutation of the train split (QM9: mean/MAD over those N).",
    ),
    time_limit: Optional[float] = typer.Option(
        None, help="Stop cleanly after this many minutes, then test at the best epoch."
    ),
    device: Optional[DeviceChoice] = typer.Option(None, help="auto: CUDA when available (default: auto)."),
    dtype: Optional[DtypeChoice] = typer.Option(None, help="Parameter precision (default: float32)."),
    amp: Optional[bool] = typer.Option(
        None, "--amp/--no-amp", help="bf16 autocast on CUDA (default: QM9 on, N-body off)."
    ),
    edge_features: Optional[bool] = typer.Option(
        None, "--edge-features/--no-edge-features", help="EMPCN reads bond orders (default: on)."
    ),
    workers: Optional[int] = typer.Option(None, min=0, help="DataLoader worker processes per rank (default: 0)."),
    buffer_shards: Optional[int] = typer.Option(None, min=1, help="Shards shuffled together (default: 4)."),
    limit_batches: Optional[int] = typer.Option(
        None, min=1, help="At most N batches per epoch and split (smoke tests)."
    ),
    verify: Optional[bool] = typer.Option(
        None, "--verify/--no-verify", help="Check the cache's checksums first (default: on)."
    ),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar per epoch (default: on)."
    ),
    target_reference: Optional[TargetReferenceChoice] = typer.Option(
        None,
        help="QM9: atoms = fit a per-element reference (element counts → target) on the train molecules and learn "
        "the residual; none = the papers' plain mean/MAD (default: atoms for alpha, zpve, U0, U, H, G, Cv).",
    ),
    valid_every: Optional[int] = typer.Option(
        None,
        min=1,
        help="Validate every N epochs (and at the last); the best epoch is picked among those (default: 1).",
    ),
    compile: Optional[bool] = typer.Option(
        None,
        "--compile/--no-compile",
        help="Run the model through torch.compile (position models: the whole layer stack as one graph; QM9 models: "
        "their layers): the same function, faster (needs a C++ compiler on CPU; default: off).",
    ),
    tensorboard: Optional[bool] = typer.Option(
        None,
        "--tensorboard/--no-tensorboard",
        help="Also log the epoch metrics to TensorBoard event files in RUN/tensorboard (pip install "
        "'empcn[tensorboard]'; default: off).",
    ),
    model_option: Optional[list[str]] = typer.Option(
        None, help="KEY=VALUE: set a field of the model's config, e.g. fourier_scale=0.5 (repeatable; docs/models.md)."
    ),
) -> None:
    """Train a registered model (EGNN, EMPCN, decoupled EMPCN, SEGNN or a plug-in's) on a lifted cache
    (data-parallel under torchrun).

    The cache decides the task: QM9 (--target, MAE) or N-body positions (MSE, no --target).
    """
    from empcn.train.config import ConfigError, TrainConfig, merge_for_resume

    given = {
        "cache": str(cache) if cache is not None else None,
        "target": target,
        "model": model,
        "out": str(out) if out is not None else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "hidden": hidden,
        "layers": layers,
        "lr": lr,
        "schedule": schedule.value if schedule is not None else None,
        "weight_decay": weight_decay,
        "clip": clip,
        "dropout": dropout,
        "seed": seed,
        "train_size": train_size,
        "time_limit": time_limit,
        "device": device.value if device is not None else None,
        "dtype": dtype.value if dtype is not None else None,
        "amp": amp,
        "edge_features": edge_features,
        "workers": workers,
        "buffer_shards": buffer_shards,
        "limit_batches": limit_batches,
        "verify": verify,
        "progress": progress,
        "model_options": tuple(model_option) if model_option else None,
        "target_reference": target_reference.value if target_reference is not None else None,
        "valid_every": valid_every,
        "compile": compile,
        "tensorboard": tensorboard,
    }
    if model is not None and model not in MODELS and model not in LEGACY_NAMES:
        fail(str(MODELS.unknown(model)))
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise ConfigError(f"--out {out} and --resume {resume} name different run folders")
        given["out"] = str(resume)
        config = merge_for_resume(TrainConfig.load(resume), given)
    else:
        if cache is None:
            raise ConfigError(
                "--cache and --target are required (a positions cache such as N-body takes no --target), "
                "or --resume RUN_FOLDER"
            )
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})

    from empcn.train.loop import TrainingDiverged
    from empcn.train.loop import train as run_training

    try:
        run_training(config, resume=resume is not None)
    except TrainingDiverged as exc:  # exit status 1: the run is intact but did not learn (a user error is 2)
        fail(one_line(exc), code=1)


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `empcn train`."),
    split: SplitName = typer.Option(SplitName.test, help="Split of the cache to evaluate on."),
    cache: Optional[Path] = typer.Option(None, help="Cache to read (default: the run's)."),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, help="auto: CUDA when available."),
    batch_size: Optional[int] = typer.Option(
        None, min=1, help="Samples (molecules, systems) per batch (default: the run's)."
    ),
    workers: int = typer.Option(0, min=0, help="DataLoader worker processes."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    plot: bool = typer.Option(
        True, "--plot/--no-plot", help="Draw the parity plot (predicted vs true) into RUN/parity_<split>.png."
    ),
    poses: Optional[Path] = typer.Option(
        None, help="Positions runs: also draw a few samples of the split (input, true and predicted pose) to this PNG."
    ),
    pose_samples: int = typer.Option(4, min=1, help="Samples drawn by --poses."),
) -> None:
    """The run's metric on a split (MAE in the target's unit for QM9, MSE of positions for N-body and MoCap)
    and its parity plot."""
    from empcn.train.evaluate import evaluate_run

    result = evaluate_run(run, split.value, cache, device.value, batch_size, workers, plot=plot)
    if result.note:
        typer.echo(f"note: {result.note}", err=True)
    if json_out:
        import json

        typer.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        typer.echo(result.line())
    if poses is not None:
        from empcn.train.poses import draw_poses

        drawn = draw_poses(run, poses, split.value, pose_samples, cache, device.value)
        typer.echo(f"drew {split.value} samples to {drawn}", err=True)


def models() -> None:
    """List the registered models: the tasks each serves and where it comes from (built in, or a
    plug-in package and its version)."""
    from empcn.errors import RegistryError

    for name in MODELS.names():
        origin = MODELS.origin(name).describe().replace("builtin", "built in")
        try:
            spec = MODELS.get(name)
        except RegistryError as exc:
            typer.echo(f"{name:<12} ({origin}) unusable: {exc}")
            continue
        summary = f"  {spec.summary}" if spec.summary else ""
        typer.echo(f"{name:<12} tasks: {', '.join(spec.tasks):<18} ({origin}){summary}")
    for shadowed in MODELS.shadowed():
        typer.echo(f"ignored: {shadowed.target} of the plug-in {shadowed.distribution} (the name is taken)", err=True)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``models`` to ``app``."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("models")(models)
