"""The closed sets of option values, defined once: the configs type their fields with these
``Literal`` types and the CLI builds its choice enums from them (:func:`choice_enum`). A data set's
lift choices live in its own module (its spec's options, :mod:`empcn.lift.spec`).

Standard library only: the CLI imports it before deciding which stage to load.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal, get_args

DeviceChoice = Literal["auto", "cpu", "cuda"]
DtypeChoice = Literal["float32", "float64"]
ScheduleChoice = Literal["cosine", "constant"]
SplitName = Literal["train", "valid", "test"]
TargetReference = Literal["atoms", "none"]
ModelName = Literal[
    "egnn", "empcn", "decoupled", "segnn", "egnn_dynamics", "empcn_dynamics", "decoupled_dynamics", "segnn_dynamics"
]


def choice_enum(name: str, literal: object) -> type[Enum]:
    """A ``str`` Enum whose members are the values of ``literal`` (typer shows and checks them)."""
    values = get_args(literal)
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]
