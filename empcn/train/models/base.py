"""What every model config tells the train stage about its model (the registry asks these methods).

A model config is a frozen, validated dataclass deriving from :class:`ModelConfig`. The trainer never
inspects a config's fields or a model's name: it asks the config which neighbourhoods the model
reads and hands it the input widths a cache provides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="ModelConfig")


class ModelConfig:
    """Mixin of the model config dataclasses.

    ``SAVED_WITHOUT``: values of fields added after runs were saved without them (see
    :mod:`empcn.train.saved`). ``INPUT_FIELDS``: ``{"node" | "edge" | "cell_kind": field}`` — the config
    fields that take the width of the cache's node / edge features, and the number of 2-cell kinds it
    records (``rings/kind``; 0 when it records none) (none: the model builds its own inputs).
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

    def reads_fields(self) -> tuple[str | tuple[str, ...], ...]:
        """Stored fields the model reads beside the cell complex (schema names, ``ComplexBatch.field``).

        Each entry is a field the cache must store, or a tuple of alternatives of which it must store
        one (e.g. a charge or a mass per node). Only these (and the task's targets) are collated; a
        cache without them is refused before training starts.
        """
        return ()

    def with_inputs(
        self: C, node_features: int, edge_features: int, node_scalar: bool = True, cell_kinds: int = 0
    ) -> C:
        """This config with the input widths a cache provides (``edge_features`` 0: no edge input).

        ``node_scalar`` False: the cache has no per-node scalar (no charges or masses, e.g. MoCap), so a
        model with a :attr:`NODE_SCALAR_FIELD` switch gets it turned off.
        """
        widths = {"node": node_features, "edge": edge_features, "cell_kind": cell_kinds}
        changes: dict[str, Any] = {name: widths[kind] for kind, name in self.INPUT_FIELDS.items()}
        if not node_scalar and self.NODE_SCALAR_FIELD in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            changes[self.NODE_SCALAR_FIELD] = False
        return replace(self, **changes) if changes else self  # type: ignore[type-var]


def field_names(wanted: Iterable[str | tuple[str, ...]]) -> tuple[str, ...]:
    """Every field name of ``wanted`` (:meth:`ModelConfig.reads_fields` entries), alternatives included, in order."""
    out: dict[str, None] = {}
    for entry in wanted:
        out.update(dict.fromkeys((entry,) if isinstance(entry, str) else tuple(entry)))
    return tuple(out)


def missing_fields(wanted: Iterable[str | tuple[str, ...]], stored: Iterable[str]) -> list[str]:
    """The entries of ``wanted`` that ``stored`` does not satisfy, as text ("nodes/charge or nodes/mass")."""
    have = set(stored)
    missing = []
    for entry in wanted:
        names = (entry,) if isinstance(entry, str) else tuple(entry)
        if not any(name in have for name in names):
            missing.append(" or ".join(names))
    return missing
