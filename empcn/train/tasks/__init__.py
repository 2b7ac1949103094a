"""Tasks: what a run learns and how it is scored, chosen by the cache's manifest (``task``).

:data:`TASKS` (entry-point group ``empcn.tasks``) names them: ``"scalar"`` — graph-level scalar
targets with normalisation and an optional atom reference (:mod:`.scalar`; a manifest without a
``task`` key is scalar) — and ``"positions"`` — every node's position at a target frame
(:mod:`.positions`). A task is a :class:`~empcn.train.tasks.base.Task` subclass: it owns its loss,
metric and unit, the fields a batch must carry, what it records in a run, its option defaults and
what ``evaluate``/``predict`` print and plot; the loop has no task branches.
"""

from __future__ import annotations

from typing import Any

from empcn.registry import Registry


def _check_task(obj: Any) -> Any:
    from empcn.train.tasks.base import Task

    if not (isinstance(obj, type) and issubclass(obj, Task)):
        raise TypeError(f"expected a subclass of empcn.train.tasks.base.Task, got {obj!r}")
    if not isinstance(getattr(obj, "kind", None), str) or not obj.kind:
        raise ValueError(f"{obj.__name__} sets no `kind` (the name runs and manifests record)")
    if obj.model_task is not None and not isinstance(obj.model_task, str):
        raise ValueError(f"{obj.__name__}.model_task must be a task name or None, got {obj.model_task!r}")
    return obj


TASKS: Registry[Any] = Registry(
    "task",
    "empcn.tasks",
    {"scalar": "empcn.train.tasks.scalar:ScalarTask", "positions": "empcn.train.tasks.positions:PositionTask"},
    check=_check_task,
)

#: The task of a cache whose manifest names none (QM9 and own-molecule caches).
DEFAULT_TASK = "scalar"
