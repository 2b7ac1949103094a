"""``empcn predict RUN FILE…``: the trained model's prediction for molecules given as .xyz files.

Accepted files: the raw QM9 format (count line, ``gdb <id> …`` property line, ``El x y z charge``
lines, frequencies, SMILES, InChI) and plain XYZ (count line, comment line, ``El x y z`` lines; the
element may also be an atomic number). Each molecule is lifted on the fly exactly as the run's cache
was (``rings`` kind and ``max_ring`` from the cache manifest's ``params``): bonds from the SMILES
when the file has one (raw QM9), else perceived from the coordinates (covalent radii), then rings,
neighbourhoods and invariants through the same code as ``empcn lift``
(:func:`empcn.lift.assemble.complex_shard` + :func:`empcn.cache.sample_from_shard`).

This is the one module of :mod:`empcn.train` that imports the lift stage (RDKit) — lazily, inside
the functions that lift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empcn.train.evaluate import TrainedModel, autocast, load_trained


class PredictError(Exception):
    """A molecule file that cannot be predicted; the message names the file and the reason."""


@dataclass(frozen=True)
class Molecule:
    """One molecule read from a file: z (N,) uint8, pos (N, 3) float64 Å, SMILES ('' when unknown)."""

    path: str
    z: np.ndarray
    pos: np.ndarray
    smiles: str | None  # None for plain XYZ: bonds from coordinates


@dataclass(frozen=True)
class Prediction:
    """The model's value for one file, in ``unit`` (the manifest's unit and convention for ``target``)."""

    file: str
    target: str
    value: float
    unit: str

    def line(self) -> str:
        return f"{self.file}  {self.value:.6g} {self.unit}"


# ----------------------------------------------------------------------------------------------
# reading


def _atomic_number(token: str) -> int:
    if token.isdigit():
        z = int(token)
        if not 1 <= z <= 118:
            raise ValueError(f"atomic number {z} out of range")
        return z
    from rdkit import Chem

    symbol = token[:1].upper() + token[1:].lower()
    try:
        return int(Chem.GetPeriodicTable().GetAtomicNumber(symbol))
    except RuntimeError:
        raise ValueError(f"unknown element {token!r}") from None


def _element(z: int) -> str:
    """``"Cl (Z=17)"``-style name of an atomic number, for messages."""
    from rdkit import Chem

    return f"{Chem.GetPeriodicTable().GetElementSymbol(int(z))} (Z={int(z)})"


def parse_plain_xyz(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``(z, pos)`` of a one-molecule plain XYZ text; ValueError with a one-line reason."""
    lines = text.replace("*^", "e").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError("empty file")
    try:
        n = int(lines[0].split()[0]) if lines[0].split() else -1
    except ValueError:
        raise ValueError(f"first line {lines[0].strip()!r} is not an atom count") from None
    if n < 1:
        raise ValueError("the atom count must be positive")
    atoms = lines[2 : 2 + n]
    if len(atoms) < n:
        raise ValueError(f"atom count {n} but only {len(atoms)} atom lines")
    if any(line.strip() for line in lines[2 + n :]):
        raise ValueError(f"text after the {n} atom lines (multi-molecule XYZ files are not supported)")
    z = np.empty(n, dtype=np.uint8)
    pos = np.empty((n, 3), dtype=np.float64)
    for i, line in enumerate(atoms):
        tokens = line.split()
        if len(tokens) < 4:
            raise ValueError(f"atom line {i + 1} has {len(tokens)} fields, expected 'element x y z'")
        try:
            z[i] = _atomic_number(tokens[0])
            pos[i] = [float(t) for t in tokens[1:4]]
        except ValueError as exc:
            raise ValueError(f"atom line {i + 1}: {exc}") from None
    if not np.isfinite(pos).all():
        raise ValueError("non-finite coordinate")
    return z, pos


def read_molecule(path: Path) -> Molecule:
    """Read one .xyz file (raw QM9 or plain); PredictError naming the file when it cannot be used."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    lines = text.splitlines()
    try:
        if len(lines) > 1 and lines[1].split()[:1] == ["gdb"]:
            from empcn.data.qm9_xyz import BadXYZ, parse_xyz

            try:
                mol = parse_xyz(text)
            except BadXYZ as exc:
                raise ValueError(str(exc)) from None
            return Molecule(str(path), mol.z.astype(np.uint8), mol.pos, mol.smiles)
        z, pos = parse_plain_xyz(text)
    except ValueError as exc:
        raise PredictError(f"{path}: {exc}") from None
    return Molecule(str(path), z, pos, None)


# ----------------------------------------------------------------------------------------------
# lifting


def lift_molecules(molecules: Sequence[Molecule], lift_params: dict[str, Any]) -> list[Any]:
    """Cache-format samples of ``molecules``, lifted with the cache's ``rings``/``max_ring``."""
    from empcn.cache import sample_from_shard
    from empcn.lift.assemble import complex_shard
    from empcn.lift.bonds import BadMolecule
    from empcn.lift.qm9 import QM9LiftConfig, molecule_cells

    config = QM9LiftConfig(
        rings=lift_params.get("rings", "chordless"), max_ring=int(lift_params.get("max_ring", 8))
    )
    samples = []
    for mol in molecules:
        try:
            cells, _ = molecule_cells(mol.z, mol.pos, mol.smiles, config)
            content = complex_shard([cells], {"id": np.zeros(1, dtype=np.int64)})
        except (BadMolecule, ValueError) as exc:
            raise PredictError(f"{mol.path}: cannot lift ({' '.join(str(exc).split())})") from None
        samples.append(sample_from_shard(content, 0))
    return samples


# ----------------------------------------------------------------------------------------------
# predicting


def predict_files(
    run_dir: Path, files: Sequence[Path], device: str = "auto", batch_size: int = 64, trained: TrainedModel | None = None
) -> list[Prediction]:
    """One prediction per file (in order), in the run's target unit. PredictError names a bad file."""
    from empcn.train.collate import collate

    trained = trained or load_trained(Path(run_dir), device=device)
    meta = trained.meta
    if meta.dataset not in ("qm9", ""):
        raise PredictError(f"{run_dir}: predict reads molecules, but this run was trained on {meta.dataset!r}")
    molecules = [read_molecule(Path(f)) for f in files]
    species = set(meta.species)
    for mol in molecules:
        unknown = sorted(set(mol.z.tolist()) - species)
        if unknown:
            raise PredictError(
                f"{mol.path}: element {', '.join(_element(z) for z in unknown)} is not among those the model "
                f"knows ({', '.join(_element(z) for z in sorted(species))})"
            )
    samples = lift_molecules(molecules, meta.lift_params)
    spec = replace(trained.spec, target_index=None)
    values: list[float] = []
    with torch.no_grad():
        for a in range(0, len(samples), batch_size):
            batch = collate(samples[a : a + batch_size], spec).to(trained.device, trained.dtype)
            with autocast(trained.device, trained.dtype, trained.config.amp):
                out = trained.model(batch)
            values.extend((out.double().cpu() * meta.mad + meta.mean).tolist())
    return [Prediction(m.path, meta.target, v, meta.unit) for m, v in zip(molecules, values)]
