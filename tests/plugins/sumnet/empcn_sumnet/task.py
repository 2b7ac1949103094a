"""The ``scalar_l2`` task: empcn's scalar targets trained with a squared (L2) loss instead of L1.

Everything else — the target column, the normalisation and atom reference, the MAE it reports, what
``evaluate`` and ``predict`` print — is the scalar task's, and every model that serves the scalar task
trains this one (``model_task``). A cache asks for it with ``"task": "scalar_l2"`` in its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from empcn.train.batch import ComplexBatch
from empcn.train.tasks.base import loss_dtype
from empcn.train.tasks.scalar import ScalarTask


@dataclass(frozen=True)
class ScalarL2Task(ScalarTask):
    """Loss ``mean((pred − (y − ref − mean)/MAD)²)``; metric MAE in the target's unit, as the scalar task."""

    kind: ClassVar[str] = "scalar_l2"
    loss_name: ClassVar[str] = "L2 (normalised)"
    model_task: ClassVar[str | None] = "scalar"

    def loss(self, pred: Tensor, batch: ComplexBatch) -> Tensor:
        dtype = loss_dtype(pred)
        ref = self.reference_values(batch)
        y = self.targets(batch) if ref is None else self.targets(batch) - ref
        y = ((y - self.mean) / self.mad).to(device=pred.device, dtype=dtype)
        return ((pred.to(dtype) - y) ** 2).mean()
