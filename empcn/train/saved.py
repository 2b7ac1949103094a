"""Reading dataclasses saved by older versions of empcn: the "field added later" rule, in one place.

Runs outlive releases: a model config or a run's metadata saved before a field existed lacks it. The
loader gives such a field the value its class lists in ``SAVED_WITHOUT`` (the behaviour from before
the field existed) when there is one, else the field's default (a default that reproduces the old
behaviour). JSON lists come back as tuples where the field's default is a tuple. A field a saved dict
names but the class does not know, or a required field it lacks, is an error (the run is from a newer
or a broken empcn).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from empcn.errors import EmpcnError

T = TypeVar("T")


class SavedFormError(EmpcnError, ValueError):
    """A saved dict that does not describe an instance of the class; one-line message."""


def load_saved(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from ``values`` as saved by this or an older empcn."""
    if not isinstance(values, dict):
        raise SavedFormError(f"{cls.__name__}: expected a saved dict, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SavedFormError(f"{cls.__name__}: unknown saved field(s) {', '.join(unknown)} (saved by a newer empcn?)")
    saved_without: dict[str, Any] = dict(getattr(cls, "SAVED_WITHOUT", {}))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in values:
            value = values[name]
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs[name] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        elif name in saved_without:
            kwargs[name] = saved_without[name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SavedFormError(f"{cls.__name__}: the saved form lacks the required field {name!r}")
    return cls(**kwargs)
