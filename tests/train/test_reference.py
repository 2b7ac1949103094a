"""The atom reference of extensive QM9 targets (:mod:`empcn.train.reference`) on real QM9 molecules:
the fit, the baselines in the log, target units in evaluate and predict, runs saved before it, the option."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from empcn.cache import open_cache
from empcn.cli import app
from empcn.predict import Prediction, predict_files
from empcn.train.checkpoint import BEST, LAST, RunMeta, load_checkpoint, save_checkpoint
from empcn.train.collate import QM9_SPECIES, CollateSpec, collate, species_counts
from empcn.train.config import CONFIG_FILE, ConfigError, TrainConfig, merge_for_resume
from empcn.train.dataset import CacheLayout
from empcn.train.evaluate import evaluate_run, load_trained
from empcn.train.loop import Trainer, train
from empcn.train.reference import baselines, fit_atom_counts, read_counts
from empcn.train.tasks.base import TaskError, task_from_meta
from empcn.train.tasks.positions import PositionTask

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qm9"


def small(cache: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        cache=str(cache),
        target="U0",
        model="egnn",
        out=str(out),
        epochs=2,
        batch_size=32,
        hidden=16,
        layers=2,
        progress=False,
    )
    return replace(base, **changes)


def counts_of(z) -> np.ndarray:
    """(5,) element counts of one molecule, H C N O F, counted here (not by the code under test)."""
    return np.array([np.count_nonzero(np.asarray(z) == s) for s in QM9_SPECIES], dtype=np.float64)


def table(cache_path: Path, indices, target: str = "U0") -> tuple[np.ndarray, np.ndarray]:
    """Element counts (n, 5) and the target (n,) of cache samples, read one by one through the public API."""
    cache = open_cache(cache_path)
    samples = [cache[int(i)] for i in indices]
    return np.stack([counts_of(s["z"]) for s in samples]), np.array([s["y"][target] for s in samples])


def lstsq_with_constant(counts: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The least-squares solution of y ≈ counts·c + b by the normal equations (not the code's lstsq)."""
    design = np.concatenate([counts, np.ones((len(y), 1))], axis=1)
    solution = np.linalg.solve(design.T @ design, design.T @ y)
    return solution[:-1], float(solution[-1])


# ----------------------------------------------------------------------------------------------
# the fit and the counts


def test_the_fit_recovers_known_per_element_energies() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 12, size=(300, 5)).astype(np.float64)
    energies = np.array([-2815.0, -6260.0, -4581.0, -4466.0, -4063.0])  # meV per atom, made up
    y = counts @ energies + 697.5
    fit = fit_atom_counts(counts, y, QM9_SPECIES)
    np.testing.assert_allclose(fit.coef, energies, rtol=1e-9)
    assert fit.intercept == pytest.approx(697.5, rel=1e-7)
    np.testing.assert_allclose(fit.predict(counts), y, rtol=1e-12)
    # an element absent from the molecules fitted on: exact on them, its coefficient 0 (minimum norm)
    counts[:, 4] = 0
    fit = fit_atom_counts(counts, counts @ energies + 697.5, QM9_SPECIES)
    np.testing.assert_allclose(fit.coef[:4], energies[:4], rtol=1e-9)
    assert abs(fit.coef[4]) < 1e-6
    with pytest.raises(ValueError, match="counts must be"):
        fit_atom_counts(counts[:, :3], y, QM9_SPECIES)


def test_counts_of_the_cache_and_of_a_batch_are_the_molecules_element_counts(qm9_cache: Path) -> None:
    layout = CacheLayout.read(qm9_cache)
    idx = layout.split("valid")[::-1].copy()  # descending: the result follows the order asked for
    assert len(np.unique(layout.shard_of(idx))) > 1  # across shards
    expected_counts, expected_y = table(qm9_cache, idx)
    counts, y = read_counts(layout, idx, layout.manifest["targets"]["names"].index("U0"), QM9_SPECIES)
    assert np.array_equal(counts, expected_counts) and np.array_equal(y, expected_y)
    cache = open_cache(qm9_cache)
    batch = collate([cache[int(i)] for i in idx[:40]], CollateSpec(neighbourhoods={}))
    assert torch.equal(species_counts(batch, CollateSpec(neighbourhoods={})), torch.from_numpy(expected_counts[:40]))


def test_on_real_qm9_the_atom_count_fit_is_far_below_the_mean(qm9_cache: Path) -> None:
    layout = CacheLayout.read(qm9_cache)
    train_idx, valid_idx = layout.split("train"), layout.split("valid")
    result = baselines(
        layout, train_idx, {"valid": valid_idx}, layout.manifest["targets"]["names"].index("U0"), QM9_SPECIES
    )["valid"]
    train_counts, train_y = table(qm9_cache, train_idx)
    counts, y = table(qm9_cache, valid_idx)
    coef, intercept = lstsq_with_constant(train_counts, train_y)
    assert result.samples == len(valid_idx)
    assert result.mean_mae == pytest.approx(np.abs(y - train_y.mean()).mean(), rel=1e-12)
    assert result.atoms_mae == pytest.approx(np.abs(y - counts @ coef - intercept).mean(), rel=1e-6)
    assert result.atoms_mae < 0.2 * result.mean_mae, result


# ----------------------------------------------------------------------------------------------
# a run with the reference


@pytest.fixture(scope="module")
def atoms_run(qm9_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """U0 trained 2 epochs with its default, the atom reference."""
    out = tmp_path_factory.mktemp("reference") / "u0-egnn"
    return out, train(small(qm9_cache, out))


def test_the_fit_is_stored_with_the_run(atoms_run, qm9_cache: Path) -> None:
    run, result = atoms_run
    assert TrainConfig.load(run).target_reference == "atoms"
    meta = RunMeta.from_dict(load_checkpoint(run / BEST)["meta"])
    task = task_from_meta(meta)
    assert task.reference_species == meta.species == QM9_SPECIES
    cache = open_cache(qm9_cache)
    counts, y = table(qm9_cache, cache.splits["train"])
    coef, _ = lstsq_with_constant(counts, y)
    np.testing.assert_allclose(task.reference, coef, rtol=1e-7)
    residual = y - counts @ coef
    assert task.mean == pytest.approx(residual.mean(), rel=1e-6)
    assert task.mad == pytest.approx(np.abs(residual - residual.mean()).mean(), rel=1e-6)
    # both baselines of the test split are in result.json, fitted on the train split
    test_counts, test_y = table(qm9_cache, cache.splits["test"])
    saved = json.loads((run / "result.json").read_text())["baselines"]
    assert saved["test"]["mean_mae"] == pytest.approx(np.abs(test_y - y.mean()).mean(), rel=1e-12)
    assert saved["test"]["atoms_mae"] == pytest.approx(np.abs(test_y - test_counts @ coef - task.mean).mean(), rel=1e-6)
    assert set(saved) == {"valid", "test"} and result.baselines == saved
    # a reference whose elements are not the model's is refused, not silently misapplied
    with pytest.raises(TaskError, match="atom reference counts elements"):
        task_from_meta(replace(meta, task_record={**meta.task_record, "reference_species": [1, 6, 7, 8, 17]}))
    # the run drew the parity plot of its test split at the best epoch
    from PIL import Image

    with Image.open(run / "parity_test.png") as image:
        fields = dict(item.split("=", 1) for item in image.info["Description"].split())
    assert fields["split"] == "test" and float(fields["value"]) == result.test_error
    assert int(fields["epoch"]) == result.best_epoch


def test_evaluate_and_predict_answer_in_the_target_unit(atoms_run, qm9_cache: Path) -> None:
    run, result = atoms_run
    trained = load_trained(run, device="cpu")
    task = trained.task
    per_element = dict(zip(task.reference_species, task.reference))
    cache = open_cache(qm9_cache)

    def independent(samples) -> np.ndarray:
        """The model's values in meV: output · MAD + mean + Σ over the atoms of their element's reference."""
        with torch.no_grad():
            batch = collate(samples, trained.input_spec).to("cpu", trained.dtype)
            out = trained.model(batch).double().numpy()
        return out * task.mad + task.mean + np.array([sum(per_element[int(z)] for z in s["z"]) for s in samples])

    samples = [cache[int(i)] for i in cache.splits["test"]]
    y = np.array([s["y"]["U0"] for s in samples])
    expected = np.abs(independent(samples) - y).mean()
    evaluated = evaluate_run(run, "test", device="cpu")
    assert evaluated.unit == "meV" and evaluated.value == pytest.approx(expected, rel=1e-6)
    assert result.test_error == pytest.approx(expected, rel=1e-6)
    assert evaluated.value < 0.2 * result.baselines["test"]["mean_mae"]  # meV of U0, not normalised units

    # predict: raw QM9 files of molecules in the cache give the value of their cached complex
    index_of = {int(cache[i]["id"]): i for i in range(len(cache))}
    files = [f for f in sorted(FIXTURES.glob("dsgdb9nsd_*.xyz")) if int(f.stem.split("_")[1]) in index_of]
    ids = [int(f.stem.split("_")[1]) for f in files]
    assert len(files) >= 3  # the others are molecules the lift excludes (uncharacterised)
    predictions = predict_files(run, files, device="cpu")
    values = independent([cache[index_of[i]] for i in ids])
    for p, v in zip(predictions, values):
        assert isinstance(p, Prediction) and p.unit == "meV"
        assert p.value == pytest.approx(v, rel=1e-5)  # positions rounded to float32 by the lift, as stored


# ----------------------------------------------------------------------------------------------
# runs saved before the reference existed


def _as_saved_before_the_reference(run: Path) -> None:
    """Remove every trace of the reference from a run folder, as an older empcn wrote it (its metadata
    held the task's fields itself, without the reference, nor the later ``noun``)."""
    for name in (LAST, BEST):
        state = load_checkpoint(run / name)
        meta = state["meta"]
        record = meta.pop("task_record")
        del meta["task"], meta["plugins"], state["config"]["target_reference"]
        meta.update({k: v for k, v in record.items() if k not in ("reference", "reference_species", "noun")})
        save_checkpoint(run / name, state)
    config = json.loads((run / CONFIG_FILE).read_text())
    del config["target_reference"]
    (run / CONFIG_FILE).write_text(json.dumps(config))


def test_a_run_saved_before_the_reference_evaluates_and_resumes_exactly_as_before(
    qm9_cache: Path, tmp_path: Path
) -> None:
    kw = dict(target_reference="none", seed=3)
    straight, old = small(qm9_cache, tmp_path / "straight", **kw), small(qm9_cache, tmp_path / "old", **kw)
    train(straight)
    train(old, stop_after_epoch=1)
    before = evaluate_run(tmp_path / "old", "valid", device="cpu")
    _as_saved_before_the_reference(tmp_path / "old")
    assert "reference" not in load_checkpoint(tmp_path / "old" / LAST)["meta"]
    after = evaluate_run(tmp_path / "old", "valid", device="cpu")
    assert after.value == before.value and after.samples == before.samples
    # U0's default is now the atom reference; the old run resumes with what it trained with
    resumed = merge_for_resume(TrainConfig.load(tmp_path / "old"), {})
    assert resumed.target_reference == "none"
    train(resumed, resume=True)
    a, b = load_checkpoint(tmp_path / "straight" / LAST), load_checkpoint(tmp_path / "old" / LAST)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert RunMeta.from_dict(b["meta"]).task_record["reference"] == []


# ----------------------------------------------------------------------------------------------
# the option


def test_the_option_and_its_defaults(qm9_cache: Path, tmp_path: Path, capsys) -> None:
    assert TrainConfig(cache="c", target="U0").resolved().target_reference == "atoms"
    assert TrainConfig(cache="c", target="gap").resolved().target_reference == "none"
    assert TrainConfig(cache="c", target="U0", target_reference="none").resolved().target_reference == "none"
    with pytest.raises(ConfigError, match="--target-reference must be atoms or none"):
        TrainConfig(cache="c", target="U0", target_reference="linear")
    with pytest.raises(TaskError, match="applies to scalar targets"):
        PositionTask().normalised(None, np.arange(3), "atoms")
    cli = CliRunner().invoke(
        app, ["train", "--cache", str(qm9_cache), "--target", "U0", "--target-reference", "linear"]
    )
    assert cli.exit_code == 2 and "linear" in cli.output

    # none: the papers' plain mean/MAD of the manifest; the log still states both baselines
    manifest = open_cache(qm9_cache).manifest
    trainer = Trainer(small(qm9_cache, tmp_path / "none", target_reference="none", epochs=1, limit_batches=1))
    assert trainer.task.reference == () and trainer.meta.task_record["reference_species"] == []
    assert trainer.task.mean == trainer.meta.task_record["mean"] == manifest["targets"]["train_mean"]["U0"]
    result = trainer.run()
    out = capsys.readouterr().out
    valid = result.baselines["valid"]
    assert f"predicting the train mean MAE {valid['mean_mae']:.5g} meV" in out
    assert (
        f"atom-count fit (least squares on the train molecules' element counts) MAE {valid['atoms_mae']:.5g} meV" in out
    )
    # asked for on an intensive target, it is fitted there too; a resumed run keeps its choice
    gap = Trainer(small(qm9_cache, tmp_path / "gap", target="gap", target_reference="atoms", epochs=1))
    assert len(gap.task.reference) == len(QM9_SPECIES) and gap.task.target == "gap"
    with pytest.raises(ConfigError, match="--target-reference atoms differs"):
        merge_for_resume(TrainConfig.load(tmp_path / "none"), {"target_reference": "atoms"})


# ----------------------------------------------------------------------------------------------
# the parity plot of `empcn evaluate`


def test_evaluate_draws_the_parity_plot_of_the_split(atoms_run, qm9_cache: Path) -> None:
    from PIL import Image

    run, _ = atoms_run
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    path = run / "parity_test.png"
    assert got["plot"] == str(path) and (run / "learning_curve.png").exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 300
        fields = dict(item.split("=", 1) for item in image.info["Description"].split())
    n_test = len(open_cache(qm9_cache).splits["test"])
    assert fields["split"] == "test" and fields["target"] == "U0" and fields["unit"] == "meV"
    assert int(fields["samples"]) == int(fields["points"]) == n_test
    assert float(fields["value"]) == got["mae"]
    # --no-plot draws none; a plot that cannot be written is a note, not a failed evaluation
    assert runner.invoke(app, ["evaluate", str(run), "--split", "valid", "--no-plot"]).exit_code == 0
    assert not (run / "parity_valid.png").exists()
    (run / "parity_valid.png").mkdir()
    blocked = evaluate_run(run, "valid", device="cpu", plot=True)
    assert blocked.plot == "" and "no parity plot" in blocked.note and np.isfinite(blocked.value)
