"""Numeric precision of a run: parameter dtypes by name and the bf16 autocast context."""

from __future__ import annotations

import contextlib

import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def autocast(device: torch.device, dtype: torch.dtype, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for float32 models when ``enabled``; nothing otherwise (never on CPU)."""
    if enabled and device.type == "cuda" and dtype == torch.float32:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
