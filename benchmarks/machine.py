"""One description of the machine for every benchmark row (CPU model, cores, GPU when used)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str = "cpu", cores_used: int | None = None) -> str:
    """E.g. ``AMD EPYC …, 2 cores (1 used)``; with ``device="cuda"`` the GPU's name first."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_name()}, {cores} cores" + (f" ({cores_used} used)" if cores_used else "")
    if device == "cuda":
        import torch

        text = f"{torch.cuda.get_device_name(0)} ({text})"
    return text
