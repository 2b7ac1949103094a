"""What every model config tells the train stage about its model (the registry asks these methods).

A model config is a frozen, validated dataclass deriving from :class:`ModelConfig`. The trainer never
inspects a config's fields or a model's name: it asks the config which neighbourhoods the model
reads and hands it the input widths a cache provides.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="ModelConfig")


class ModelConfig:
    """Mixin of the model config dataclasses.

    ``SAVED_WITHOUT``: values of fields added after runs were saved without them (see
    :mod:`empcn.train.saved`). ``INPUT_FIELDS``: ``{"node" | "edge": field}`` — the config fields
    that take the width of the cache's node / edge features (none: the model builds its own inputs).
    ``DEFAULT_CLIP``: the trainer's maximum gradient norm for this model when ``--clip`` is not given
    (0 = none); a run records the value it used in its ``config.json``.
    """

    SAVED_WITHOUT: ClassVar[dict[str, Any]] = {}
    INPUT_FIELDS: ClassVar[dict[str, str]] = {}
    DEFAULT_CLIP: ClassVar[float] = 10.0
    #: The bool field that switches a model's per-node scalar input (charges, masses) on, if it has one.
    NODE_SCALAR_FIELD: ClassVar[str] = "use_node_scalar"

    def reads(self) -> tuple[str, ...]:
        """Names of the neighbourhoods (``ComplexBatch.nbr``) the model reads; only those are collated."""
        return ()

    def with_inputs(self: C, node_features: int, edge_features: int, node_scalar: bool = True) -> C:
        """This config with the input widths a cache provides (``edge_features`` 0: no edge input).

        ``node_scalar`` False: the cache has no per-node scalar (no charges or masses, e.g. MoCap), so a
        model with a :attr:`NODE_SCALAR_FIELD` switch gets it turned off.
        """
        widths = {"node": node_features, "edge": edge_features}
        changes: dict[str, Any] = {name: widths[kind] for kind, name in self.INPUT_FIELDS.items()}
        if not node_scalar and self.NODE_SCALAR_FIELD in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            changes[self.NODE_SCALAR_FIELD] = False
        return replace(self, **changes) if changes else self  # type: ignore[type-var]
