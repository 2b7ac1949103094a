"""``--model-option KEY=VALUE``: set any field of a model's config dataclass from the command line.

The model configs (``EMPCNDynamicsConfig``, ``EGNNConfig``, …) are typed dataclasses; this turns the
strings a user typed into typed changes of one of them, using the type of each field's default:
``bool`` (true/false/1/0/yes/no), ``int``, ``float``, ``str`` and ``tuple`` of strings (comma
separated). Width, depth and dropout have their own flags (``--hidden``, ``--layers``, ``--dropout``)
and input widths come from the cache, so those fields are refused here. Every error is one line
naming the option and what it accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any

from empcn.errors import EmpcnError

__all__ = ["ModelOptionError", "apply_model_options", "parse_model_options", "settable_fields"]

OWN_FLAGS = {"hidden": "--hidden", "layers": "--layers", "dropout": "--dropout"}
FROM_CACHE = ("in_node_features", "in_edge_features")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ModelOptionError(EmpcnError, ValueError):
    """A ``--model-option`` that names no field of the model's config or does not parse."""


def settable_fields(config: Any) -> list[str]:
    """Field names of the model config ``config`` that ``--model-option`` may set."""
    return [f.name for f in fields(config) if f.name not in OWN_FLAGS and f.name not in FROM_CACHE]


def _cast(key: str, text: str, default: Any) -> Any:
    where = f"--model-option {key}={text}"
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ModelOptionError(f"{where}: expected true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ModelOptionError(f"{where}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ModelOptionError(f"{where}: expected a number") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if isinstance(default, str) or default is None:
        return text
    raise ModelOptionError(f"{where}: fields of type {type(default).__name__} cannot be set from the command line")


def parse_model_options(config: Any, options: Sequence[str]) -> dict[str, Any]:
    """``["key=value", …]`` → ``{field: typed value}`` for the dataclass instance ``config``."""
    if not is_dataclass(config):
        raise TypeError(f"parse_model_options: {type(config).__name__} is not a dataclass")
    name = type(config).__name__
    allowed = settable_fields(config)
    changes: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ModelOptionError(f"--model-option {option!r}: expected KEY=VALUE")
        if key in OWN_FLAGS:
            raise ModelOptionError(f"--model-option {key}: use {OWN_FLAGS[key]}")
        if key in FROM_CACHE:
            raise ModelOptionError(f"--model-option {key}: set from the cache, not the command line")
        if key not in allowed:
            raise ModelOptionError(f"--model-option {key}: {name} has no such field (it has {', '.join(allowed)})")
        if key in changes:
            raise ModelOptionError(f"--model-option {key}: given twice")
        changes[key] = _cast(key, value, getattr(config, key))
    return changes


def apply_model_options(config: Any, options: Sequence[str]) -> Any:
    """``config`` with ``options`` applied; the config's own validation runs on the result."""
    changes = parse_model_options(config, options)
    if not changes:
        return config
    try:
        return replace(config, **changes)
    except (TypeError, ValueError) as exc:
        raise ModelOptionError(f"--model-option: {exc}") from None
