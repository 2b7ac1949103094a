"""The ``positions`` task (N-body, MoCap; manifest ``task: "positions"``): every node's position at a
target frame, predicted from the input frame.

Loss and metric are the MSE against ``nodes/target_pos``, averaged over nodes and coordinates (as
EGNN and EMPCN report it), in (length unit)²; no normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from empcn import schema
from empcn.cache import CacheError
from empcn.train.config import TaskDefaults
from empcn.train.tasks.base import Task, TaskError, loss_dtype

if TYPE_CHECKING:
    from empcn.train.batch import ComplexBatch

POSITIONS = "positions"  # the task's name, and its target's
SIMULATION_UNITS = "simulation units"


def positions_defaults(dataset: str, model: str) -> TaskDefaults:
    """N-body (EGNN and EMPCN papers): 10,000 epochs, batch 100, Adam 5e-4 constant, no autocast.

    The papers train with a constant learning rate (EGNN: 10,000 epochs; EMPCN does not state its
    epochs). No bf16 autocast by default: it resolves positions to ~0.4 % of their size, which is
    visible at the MSEs of ~0.005 the papers report.
    """
    return TaskDefaults(POSITIONS, dataset, model, 10_000, 100, 5e-4, "constant", False)


@dataclass(frozen=True)
class PositionTask(Task):
    """Positions at the target frame: loss and metric MSE over nodes and coordinates, (length unit)².

    ``horizon``: simulation steps (N-body) or frames (MoCap) between input and target frame (0 when
    unknown), for log lines.
    """

    kind: ClassVar[str] = POSITIONS
    metric: ClassVar[str] = "MSE"
    loss_name: ClassVar[str] = "MSE"
    sample_noun: ClassVar[str] = "systems"
    fields: ClassVar[tuple[str, ...]] = (schema.NODE_TARGET_POS,)

    target: str = POSITIONS
    unit: str = f"({SIMULATION_UNITS})²"
    horizon: int = 0

    @classmethod
    def for_cache(cls, manifest: dict[str, Any], path: str, target: str | None) -> PositionTask:
        if target is not None:
            raise TaskError(
                f"{path}: --target {target} does not apply: this cache's task is positions "
                f"(the model predicts {schema.NODE_TARGET_POS}); leave --target out"
            )
        sim = manifest.get("simulator", {})
        horizon = int(sim.get("step_target", 0)) - int(sim.get("step_in", 0))
        if not sim:  # recorded data (MoCap): frames between input and target
            horizon = int(manifest.get("target", {}).get("horizon_frames", 0))
        units = str(manifest.get("units", SIMULATION_UNITS))
        return cls(unit=f"({units})²", horizon=max(horizon, 0))

    def check_cache(self, manifest: dict[str, Any], path: str) -> None:
        if manifest.get("task") != POSITIONS:
            raise CacheError(f"{path}: not a positions cache (its manifest's task is {manifest.get('task')!r})")

    def defaults(self, model: str, dataset: str) -> TaskDefaults:
        return positions_defaults(dataset or "nbody", model)

    def _target(self, batch: ComplexBatch) -> Tensor:
        target = batch.field(schema.NODE_TARGET_POS, "positions")
        if target.shape != batch.pos.shape:
            raise TaskError(f"the batch's {schema.NODE_TARGET_POS} has shape {tuple(target.shape)}, not (N, 3)")
        return target

    def loss(self, pred: Tensor, batch: ComplexBatch) -> Tensor:
        dtype = loss_dtype(pred)
        target = self._target(batch).to(device=pred.device, dtype=dtype)
        return ((pred.to(dtype) - target) ** 2).mean()

    def error_sum(self, pred: Tensor, batch: ComplexBatch) -> tuple[float, int]:
        diff = pred.detach().double().cpu() - self._target(batch).double()
        return float((diff * diff).sum()), int(diff.numel())

    def describe(self) -> str:
        return f"positions {self.horizon} steps ahead" if self.horizon else "positions"

    def pairs(self, pred: Tensor, batch: ComplexBatch) -> tuple[Tensor, Tensor]:
        return self._target(batch).double().reshape(-1), pred.detach().double().cpu().reshape(-1)

    def parity_labels(self) -> tuple[str, str]:
        return f"{self.target} (coordinates)", f"{self.target} [{self.prediction_unit}]"

    @property
    def prediction_unit(self) -> str:
        return self.unit.removeprefix("(").removesuffix(")²")

    def predictions(self, pred: Tensor, batch: ComplexBatch) -> list[Any]:
        """Every sample's predicted node positions, ``[[x, y, z], …]`` in :attr:`prediction_unit`."""
        out = pred.detach().double().cpu()
        counts = batch.node_graph.bincount(minlength=batch.num_graphs).tolist()
        return [part.tolist() for part in out.split(counts)]
