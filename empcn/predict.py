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

from empcn.cache import Sample
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


@dataclass(frozen=True)
class Failure:
    """A file that could not be predicted, and why (one line naming the file)."""

    file: str
    error: str


def predict_files(
    run_dir: Path, files: Sequence[Path], device: str = "auto", batch_size: int = 64, trained: TrainedModel | None = None
) -> list[Prediction | Failure]:
    """One result per file, in order: a :class:`Prediction` in the run's target unit, or a :class:`Failure`.

    A bad file (unreadable, malformed, an element the model never saw, not liftable) fails alone; the
    others are still predicted. A run that cannot predict molecules at all raises PredictError.
    """
    trained = trained or load_trained(Path(run_dir), device=device)
    meta = trained.meta
    if trained.task.kind != "scalar":
        raise PredictError(
            f"{run_dir}: a positions run ({meta.dataset or 'N-body'}); `empcn predict` takes runs trained on "
            f"QM9 targets (score it with `empcn evaluate {run_dir}`)"
        )
    if meta.dataset not in ("qm9", ""):
        raise PredictError(f"{run_dir}: predict reads molecules, but this run was trained on {meta.dataset!r}")
    species = set(meta.species)
    results: list[Prediction | Failure | None] = [None] * len(files)
    good: list[tuple[int, Sample]] = []
    for k, f in enumerate(files):
        try:
            mol = read_molecule(Path(f))
            unknown = sorted(set(mol.z.tolist()) - species)
            if unknown:
                raise PredictError(
                    f"{mol.path}: element {', '.join(element_name(z) for z in unknown)} is not among those the "
                    f"model knows ({', '.join(element_name(z) for z in sorted(species))})"
                )
            good.append((k, lift_like_cache([mol], meta.lift_params)[0]))
        except (BadMoleculeFile, LiftFailed, PredictError) as exc:
            results[k] = Failure(str(f), str(exc))
    spec = replace(trained.spec, target_index=None)
    with torch.no_grad():
        for a in range(0, len(good), batch_size):
            chunk = good[a : a + batch_size]
            cpu_batch = collate([s for _, s in chunk], spec)
            with autocast(trained.device, trained.dtype, trained.config.amp):
                out = trained.model(cpu_batch.to(trained.device, trained.dtype))
            for (k, _), v in zip(chunk, trained.task.value(out, cpu_batch).tolist()):  # target unit (+ atom reference)
                results[k] = Prediction(str(files[k]), meta.target, v, meta.unit)
    return [r for r in results if r is not None]
