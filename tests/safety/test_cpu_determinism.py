"""Same input and parameters give the same bytes on any CPU: every data set lifted as on another machine.

Two processes lift each data set: one as this machine runs, one as a machine with other vector units
would — OpenBLAS's AVX2 kernels (``OPENBLAS_CORETYPE``; on this machine's AVX-512 the default is
another), torch's kernels without vector units (``ATEN_CPU_CAPABILITY=default``) and numpy's loops
without their AVX2/AVX-512 variants (``NPY_DISABLE_CPU_FEATURES``). Every file must be identical.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from helpers import rdkit_ligands

LIFTS = {  # small: a few simulations, a few hundred molecules, the shared MoCap source
    "qm9": ["--dataset", "qm9", "--limit", "200", "--shard-size", "100"],
    "nbody": ["--dataset", "nbody", "--sims", "20,5,5"],
    "mocap": ["--dataset", "mocap"],
}

#: Lifts every data set given, then simulates the gravity system briefly (its lift, 5,000 steps of 100
#: bodies, takes half a minute even for 3 simulations; the short run goes through the same code).
DRIVER = """
import sys
import numpy as np
from typer.testing import CliRunner
from empcn.cli import app
from empcn.data.nbody import GravityConfig, simulate_gravity
out, lifts = sys.argv[1], sys.argv[2:]
for spec in lifts:
    name, *args = spec.split(" ")
    result = CliRunner().invoke(app, ["lift", *args, "--out", f"{out}/{name}.h5", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
gravity = simulate_gravity(3, GravityConfig(num_steps=400, save_every=100), seed=1)
np.save(f"{out}/gravity-pos.npy", gravity.pos)
np.save(f"{out}/gravity-vel.npy", gravity.vel)
"""


def other_cpu() -> dict[str, str]:
    """The environment of a process that computes as a CPU with other vector units would."""
    import numpy as np

    features = np._core._multiarray_umath.__cpu_features__
    dispatched = [f for f in np._core._multiarray_umath.__cpu_dispatch__ if features.get(f)]
    env = {"ATEN_CPU_CAPABILITY": "default", "NPY_DISABLE_CPU_FEATURES": " ".join(dispatched)}
    if platform.machine() in ("x86_64", "AMD64"):
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        env["OPENBLAS_CORETYPE"] = "Haswell" if " avx2" in flags else "Nehalem"
    else:
        env["OPENBLAS_CORETYPE"] = "ARMV8"
    return env


def test_every_data_set_lifts_to_the_same_bytes_on_another_cpu(tmp_path: Path) -> None:
    lifts = dict(
        LIFTS,
        molecules=[
            "--dataset",
            "molecules",
            "--source",
            str(rdkit_ligands("cdk2")),
            "--targets",
            "energy=r_mmffld_Potential_Energy-OPLS_2005",
        ],
    )
    specs = [" ".join([name, *args]) for name, args in lifts.items()]
    runs = {}
    for label, extra in (("here", {}), ("other", other_cpu())):
        out = tmp_path / label
        out.mkdir()
        env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
        runs[label] = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(out), *specs],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
    for label, proc in runs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{label}: {err[-3000:]}"
    here = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*") if p.is_file())
    other = sorted(p.relative_to(tmp_path / "other") for p in (tmp_path / "other").rglob("*") if p.is_file())
    assert here == other and len(here) > 2 * len(lifts)
    differing = [str(p) for p in here if (tmp_path / "here" / p).read_bytes() != (tmp_path / "other" / p).read_bytes()]
    assert differing == [], f"bytes differ on another CPU: {differing}"
