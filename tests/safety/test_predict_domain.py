"""`empcn predict` says when a molecule lies outside what the model was trained on, and refuses what `lift` refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from helpers import invoke
from safety_helpers import copy_run

from empcn.cache import open_cache
from empcn.train.checkpoint import BEST, load_checkpoint
from empcn.train.dataset import CacheLayout

WATER = [("O", 0.0, 0.0, 0.0), ("H", 0.957, 0.0, 0.0), ("H", -0.240, 0.927, 0.0)]  # Å


def xyz(path: Path, atoms: list[tuple[str, float, float, float]], scale: float = 1.0) -> Path:
    lines = [f"{e} {x * scale:.5f} {y * scale:.5f} {z * scale:.5f}" for e, x, y, z in atoms]
    path.write_text(f"{len(atoms)}\n{path.stem}\n" + "\n".join(lines) + "\n")
    return path


def alkane(carbons: int) -> list[tuple[str, float, float, float]]:
    """A zig-zag C_nH_2n+2 chain: C–C 1.54 Å, C–H 1.09 Å."""
    atoms = [("C", 1.26 * i, 0.44 * (-1) ** i, 0.0) for i in range(carbons)]
    for i in range(carbons):
        y = 0.44 * (-1) ** i + 0.63 * (-1) ** i
        atoms += [("H", 1.26 * i, y, 0.89), ("H", 1.26 * i, y, -0.89)]
    atoms += [("H", -1.09, 0.44, 0.0), ("H", 1.26 * (carbons - 1) + 1.09, 0.44 * (-1) ** (carbons - 1), 0.0)]
    return atoms


def test_the_training_domain_is_the_statistics_of_the_train_molecules(qm9_cache: Path) -> None:
    from empcn.train.domain import TrainingDomain, training_domain

    layout = CacheLayout.read(qm9_cache)
    train = layout.split("train")
    domain = training_domain(layout, train)
    cache = open_cache(qm9_cache)
    sizes, most, bonds = [], {}, {}
    for index in train.tolist():  # the brute-force reference, molecule by molecule
        s = cache[index]
        z = s["z"].astype(int)
        sizes.append(len(z))
        for e in set(z.tolist()):
            most[e] = max(most.get(e, 0), int((z == e).sum()))
        for (i, j), length in zip(s["edges"].tolist(), s["edges/length"].tolist()):
            key = tuple(sorted((int(z[i]), int(z[j]))))
            lo, hi = bonds.get(key, (np.inf, -np.inf))
            bonds[key] = (min(lo, length), max(hi, length))
    assert domain == TrainingDomain(len(train), (min(sizes), max(sizes)), most, bonds)
    assert TrainingDomain.from_dict(domain.to_dict()) == domain


def test_predict_flags_molecules_outside_the_training_data(tiny_run: Path, tmp_path: Path) -> None:
    files = [
        xyz(tmp_path / "water.xyz", WATER),
        xyz(tmp_path / "water_nm.xyz", WATER, 0.1),
        xyz(tmp_path / "alkane.xyz", alkane(100)),
        xyz(tmp_path / "lone.xyz", [("C", 0.0, 0.0, 0.0)]),
    ]
    result = invoke("predict", tiny_run, *files, "--device", "cpu", "--json")
    assert result.exit_code == 2  # the lone atom
    from empcn.train.domain import TrainingDomain

    domain = TrainingDomain.from_dict(load_checkpoint(tiny_run / BEST)["meta"]["domain"])
    assert domain is not None and domain.molecules > 200
    water, water_nm, long_chain, lone = json.loads(result.stdout)
    assert lone == {"file": str(files[3]), "error": f"{files[3]}: a single atom has no 3-D structure to lift"}
    assert water["outside"] == [] and water["checked"] is True
    shortest, longest = domain.bonds[(1, 8)]
    assert water_nm["outside"] == [f"a H–O bond of 0.0957 Å (trained on {shortest:.3g}–{longest:.3g} Å)"]
    lo, hi = domain.atoms
    assert long_chain["outside"][:3] == [
        f"302 atoms (trained on {lo}–{hi})",
        f"202 H atoms (trained on at most {domain.elements[1]})",
        f"100 C atoms (trained on at most {domain.elements[6]})",
    ]
    assert result.stderr.strip() == f"error: {files[3]}: a single atom has no 3-D structure to lift"
    lines = invoke("predict", tiny_run, *files[:3], "--device", "cpu").stdout.splitlines()
    assert lines[0].endswith(" meV") and "[outside the training data: a H–O bond of 0.0957 Å" in lines[1]
    assert "[outside the training data: 302 atoms" in lines[2]


def test_a_run_saved_without_a_domain_still_predicts_and_says_so(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    state = torch.load(run / BEST, weights_only=True)
    del state["meta"]["domain"]  # as runs saved by earlier versions
    torch.save(state, run / BEST)
    water = xyz(tmp_path / "water.xyz", WATER)
    result = invoke("predict", run, water, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.stdout)
    assert only["checked"] is False and only["outside"] == [] and np.isfinite(only["value"])
    assert result.stderr.startswith(f"note: {run} was saved without statistics of its training data")
