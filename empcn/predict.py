"""``empcn predict RUN FILE…``: a trained model's prediction for new inputs, e.g. molecules as .xyz or .sdf files.

A use case of both stages: the run's data set reads the files and lifts them as its cache was lifted
(its spec's :class:`~empcn.lift.spec.PredictHook`, with the parameters the cache recorded), and the
trained model predicts (:func:`empcn.train.evaluate.load_trained`). It lives beside the CLI, not in
:mod:`empcn.train`, so the train stage stays free of RDKit and the lift.

A molecule the lift refuses (a single atom, atoms at one point, …) is refused here too. Every
prediction says whether the molecule lies outside what the model was trained on
(:mod:`empcn.train.domain`: atom count, atoms per element, bond lengths); a run saved before its
training domain was recorded predicts without that check and says so (``checked`` false).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from empcn.cache import Sample
from empcn.elements import element_name
from empcn.errors import EmpcnError
from empcn.lift.datasets import dataset
from empcn.schema import EDGE_INDEX, EDGE_LENGTH, NODE_Z
from empcn.train.collate import collate
from empcn.train.domain import TrainingDomain
from empcn.train.evaluate import TrainedModel, load_trained
from empcn.train.precision import autocast


class PredictError(EmpcnError):
    """A molecule file or run that cannot be predicted; the message names it and the reason."""


@dataclass(frozen=True)
class Prediction:
    """The model's value for one file, in ``unit`` (the manifest's unit and convention for ``target``).

    ``outside``: every way the molecule lies outside the training molecules (empty: within them);
    ``checked``: False when the input is a molecule and the run recorded no training domain (saved by
    an earlier version); inputs without atoms (a plug-in's point clouds) have no domain to check.
    """

    file: str
    target: str
    value: float
    unit: str
    outside: tuple[str, ...] = ()
    checked: bool = True

    def line(self) -> str:
        flag = f"  [outside the training data: {'; '.join(self.outside)}]" if self.outside else ""
        return f"{self.file}  {self.value:.6g} {self.unit}{flag}"


@dataclass(frozen=True)
class Failure:
    """A file that could not be predicted, and why (one line naming the file)."""

    file: str
    error: str


def predict_files(
    run_dir: Path,
    files: Sequence[Path],
    device: str = "auto",
    batch_size: int = 64,
    trained: TrainedModel | None = None,
) -> list[Prediction | Failure]:
    """One result per file, in order: a :class:`Prediction` in the run's target unit, or a :class:`Failure`.

    A bad file (unreadable, malformed, an element the model never saw, not liftable) fails alone; the
    others are still predicted. A run that cannot predict from files at all raises PredictError. The
    run's data set reads and lifts the files (its spec's ``predict`` hook).
    """
    if trained is None:
        from empcn.train.checkpoint import best_or_last

        trained = load_trained(Path(run_dir), best_or_last(Path(run_dir))[0], device=device)
    meta = trained.meta
    domain = TrainingDomain.from_dict(meta.domain)
    try:
        trained.task.check_predict(str(run_dir), meta.dataset or "N-body")
    except EmpcnError as exc:  # the task's one line: its runs are scored with evaluate
        raise PredictError(str(exc)) from None
    try:
        hook = dataset(meta.dataset or "qm9", meta.plugin("dataset")).predict
    except EmpcnError as exc:  # a plug-in data set that is not installed here, or broken
        raise PredictError(f"{run_dir}: {exc}") from None
    if hook is None:
        raise PredictError(f"{run_dir}: data set {meta.dataset!r} does not say how to read new inputs for predict")
    species = set(meta.species)
    labels: list[str] = []
    results: list[Prediction | Failure | None] = []
    good: list[tuple[int, Sample]] = []

    def check_elements(label: str, z: object) -> None:
        unknown = sorted(set(z.tolist()) - species)  # type: ignore[attr-defined]
        if unknown:
            raise PredictError(
                f"{label}: element {', '.join(element_name(e) for e in unknown)} is not among those the "
                f"model knows ({', '.join(element_name(e) for e in sorted(species))})"
            )

    for f in files:
        for label, item in hook.read(Path(f)):
            labels.append(label)
            results.append(None)
            try:
                if isinstance(item, Exception):
                    raise item
                z = getattr(item, "z", None)
                if z is not None and len(z) < 2:  # as the lift refuses it (empcn.data.molecules, empcn.lift.sdf)
                    raise PredictError(f"{label}: a single atom has no 3-D structure to lift")
                sample = hook.lift(item, meta.lift_params, label)
                if NODE_Z in sample:  # atoms: only elements the model has an embedding for
                    check_elements(label, sample[NODE_Z])
                good.append((len(results) - 1, sample))
            except EmpcnError as exc:
                results[-1] = Failure(label, str(exc))
    spec = trained.input_spec
    task = trained.task
    with torch.enable_grad() if task.eval_needs_grad else torch.no_grad():
        for a in range(0, len(good), batch_size):
            chunk = good[a : a + batch_size]
            cpu_batch = collate([s for _, s in chunk], spec)
            with autocast(trained.device, trained.dtype, trained.config.amp):
                out = trained.model(cpu_batch.to(trained.device, trained.dtype))
            for (k, sample), v in zip(chunk, task.predictions(out, cpu_batch)):  # the task's unit
                atoms = NODE_Z in sample  # the training domain describes molecules: nothing to check otherwise
                outside = (
                    ()
                    if domain is None or not atoms
                    else tuple(domain.outside(sample[NODE_Z], sample[EDGE_INDEX], sample[EDGE_LENGTH]))
                )
                checked = domain is not None or not atoms
                results[k] = Prediction(labels[k], task.target, v, task.prediction_unit, outside, checked)
    return [r for r in results if r is not None]
