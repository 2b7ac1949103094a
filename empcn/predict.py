"""``empcn predict RUN FILE…``: a trained model's prediction for molecules given as .xyz files.

A use case of both stages: the raw reader (:mod:`empcn.data.xyz`: raw QM9 or plain XYZ), the lift
of single molecules (:mod:`empcn.lift.molecule`, with the parameters the run's cache recorded), and
the trained model (:func:`empcn.train.evaluate.load_trained`). It lives beside the CLI, not in
:mod:`empcn.train`, so the train stage stays free of RDKit and the lift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from empcn.data.xyz import BadMoleculeFile, element_name, read_molecule
from empcn.lift.molecule import LiftFailed, lift_like_cache
from empcn.train.collate import collate
from empcn.train.evaluate import TrainedModel, load_trained
from empcn.train.precision import autocast


class PredictError(Exception):
    """A molecule file or run that cannot be predicted; the message names it and the reason."""


@dataclass(frozen=True)
class Prediction:
    """The model's value for one file, in ``unit`` (the manifest's unit and convention for ``target``)."""

    file: str
    target: str
    value: float
    unit: str

    def line(self) -> str:
        return f"{self.file}  {self.value:.6g} {self.unit}"


def predict_files(
    run_dir: Path, files: Sequence[Path], device: str = "auto", batch_size: int = 64, trained: TrainedModel | None = None
) -> list[Prediction]:
    """One prediction per file (in order), in the run's target unit. PredictError names a bad file."""
    trained = trained or load_trained(Path(run_dir), device=device)
    meta = trained.meta
    if trained.task.kind != "scalar":
        raise PredictError(
            f"{run_dir}: a positions run ({meta.dataset or 'N-body'}); `empcn predict` takes runs trained on "
            f"QM9 targets (score it with `empcn evaluate {run_dir}`)"
        )
    if meta.dataset not in ("qm9", ""):
        raise PredictError(f"{run_dir}: predict reads molecules, but this run was trained on {meta.dataset!r}")
    try:
        molecules = [read_molecule(Path(f)) for f in files]
    except BadMoleculeFile as exc:
        raise PredictError(str(exc)) from None
    species = set(meta.species)
    for mol in molecules:
        unknown = sorted(set(mol.z.tolist()) - species)
        if unknown:
            raise PredictError(
                f"{mol.path}: element {', '.join(element_name(z) for z in unknown)} is not among those the model "
                f"knows ({', '.join(element_name(z) for z in sorted(species))})"
            )
    try:
        samples = lift_like_cache(molecules, meta.lift_params)
    except LiftFailed as exc:
        raise PredictError(str(exc)) from None
    spec = replace(trained.spec, target_index=None)
    values: list[float] = []
    with torch.no_grad():
        for a in range(0, len(samples), batch_size):
            batch = collate(samples[a : a + batch_size], spec).to(trained.device, trained.dtype)
            with autocast(trained.device, trained.dtype, trained.config.amp):
                out = trained.model(batch)
            values.extend((out.double().cpu() * meta.mad + meta.mean).tolist())
    return [Prediction(m.path, meta.target, v, meta.unit) for m, v in zip(molecules, values)]
