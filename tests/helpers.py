"""Helpers shared by the test modules (importable as ``helpers``: ``pythonpath = tests`` in setup.cfg).

Installed data is found the way the package finds it (:func:`empcn.data.qm9.default_source`), so the
tests run from a clone at any path; a test whose data is missing fails, it does not skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch


def qm9pack_csv(part: int = 1) -> Path:
    """``qm9_part<part>.csv`` of the installed qm9pack, located as ``empcn lift`` locates it."""
    from empcn.data.qm9 import default_source

    path = default_source() / f"qm9_part{part}.csv"
    assert path.is_file(), f"{path}: qm9pack's CSV is missing (pip install qm9pack==1.0.3)"
    return path


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-9) -> None:
    """``max |a − b| ≤ rtol · max(|a|, |b|)`` (a relative bound on the largest entry)."""
    a, b = a.detach(), b.detach()
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    err = float((a - b).abs().max())
    assert err <= rtol * scale, f"max |diff| {err:.3e} > {rtol:.0e} × {scale:.3e}"


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    """A Haar-random proper rotation (3, 3) float64 (QR of a Gaussian matrix, det +1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    rot = q * torch.sign(torch.diagonal(r))
    if torch.det(rot) < 0:
        rot[:, 0] = -rot[:, 0]
    return rot


def orthogonal_maps(seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(label, matrix, shift)`` of a rotation, a reflection, a translation and both: x → x·Mᵀ + t."""
    gen = torch.Generator().manual_seed(seed)
    rot = random_rotation(gen)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    shift = 5.0 * torch.randn(3, generator=gen, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    return [
        ("rotation", rot, zero),
        ("reflection", mirror @ rot, zero),
        ("translation", eye, shift),
        ("rotoreflection+translation", rot @ mirror, shift),
    ]


#: RDKit's bundled 3-D ligand sets (inside the installed rdkit package), relative to RDConfig.RDContribDir.
RDKIT_LIGANDS = {
    "egfr": "PBF/testData/egfr.sdf",  # 365 ligands, OPLS energy tag
    "cdk2": "Fastcluster/testdata/cdk2.sdf",  # 47 ligands, OPLS energy tag
    "cmet": "FreeWilson/data/cmet_ligands.sdf",  # 24 ligands, experimental ΔG (r_exp_dg)
}
OPLS_ENERGY = "energy=r_mmffld_Potential_Energy-OPLS_2005"


def rdkit_ligands(name: str) -> Path:
    """One of RDKit's bundled ligand SD files; the test fails (never skips) when it is not there."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDContribDir) / RDKIT_LIGANDS[name]
    assert path.is_file(), f"{path}: RDKit's bundled ligand set is missing (a full rdkit wheel ships Contrib/)"
    return path


def invoke(*args: object):
    """``empcn ARGS`` through typer's CliRunner (stdout and stderr kept apart); arguments as strings."""
    from typer.testing import CliRunner

    from empcn.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The one ``error: …`` line a failed command printed on stderr (asserts there is exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def with_unparsable_smiles(read_qm9, index: int = 3):
    """A stand-in for ``empcn.data.qm9.read_qm9`` whose molecule ``index`` has a SMILES RDKit cannot parse."""

    def read(source, limit=None, strict=False):
        raw, skipped = read_qm9(source, limit=limit, strict=strict)
        smiles = list(raw.smiles)
        smiles[index] = "C1CC(("  # does not parse
        return type(raw)(**{**raw.__dict__, "smiles": smiles}), skipped

    return read


def pip_install_copy(package: Path, root: Path) -> Path:
    """Install the package folder ``package`` with pip into ``root/site`` and return that folder.

    Built from a copy under ``root`` (a build leaves files beside its source), offline and without build
    isolation: with the setuptools of the test environment (the ``test`` extra), dependencies not installed.
    """
    source = shutil.copytree(package, root / package.name)
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return target
