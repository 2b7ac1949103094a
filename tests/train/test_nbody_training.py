"""Training and evaluating the N-body position models on a real (short) lifted charged 5-body cache.

The cache is the production lift (:func:`empcn.lift.nbody.lift_nbody`) of short simulations: 500
steps, input frame 2 → target frame 4 (200 steps ahead), 100 / 40 / 40 systems.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import error_line
from typer.testing import CliRunner

from empcn.cache import open_cache
from empcn.cli import app
from empcn.data.nbody import ChargedConfig, NBodySplit
from empcn.lift.nbody import NBodyLiftConfig, lift_nbody
from empcn.train import loop
from empcn.train.checkpoint import RunMeta, load_checkpoint
from empcn.train.collate import collate
from empcn.train.config import TrainConfig
from empcn.train.dataset import subset_of_split
from empcn.train.evaluate import evaluate_run, load_trained
from empcn.train.loop import TrainError, train
from empcn.train.metrics import read_records, read_result
from empcn.train.tasks.positions import PositionTask
from empcn.train.tasks.scalar import scalar_defaults

SIM = ChargedConfig(num_steps=500, save_every=100)
SPLITS = (NBodySplit("train", 100, 11), NBodySplit("valid", 40, 12), NBodySplit("test", 40, 13))
runner = CliRunner()


@pytest.fixture(scope="module")
def nbody_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nbody") / "nbody.h5"
    return lift_nbody(
        NBodyLiftConfig(
            out=out, splits=SPLITS, simulator=SIM, frame_in=2, frame_target=4, shard_size=64, workers=1, progress=False
        )
    )


def tiny(cache: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        cache=str(cache),
        model="egnn",
        out=str(out),
        epochs=2,
        batch_size=20,
        hidden=16,
        layers=2,
        lr=1e-3,
        progress=False,
    )
    return replace(base, **changes)


def split_arrays(cache_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, 5, 3) input and target positions of a split, read straight from the cache."""
    cache = open_cache(cache_path)
    idx = cache.splits[split]
    pos = np.stack([cache[int(i)]["pos"] for i in idx]).astype(np.float64)
    target = np.stack([cache[int(i)]["target_pos"] for i in idx]).astype(np.float64)
    return pos, target


def hand_mse(model: torch.nn.Module, cache_path: Path, split: str, spec) -> float:
    """MSE of ``model`` on a split: one batch of every sample of the split, mean over particles × coordinates."""
    cache = open_cache(cache_path)
    batch = collate([cache[int(i)] for i in cache.splits[split]], spec)
    model.eval()
    with torch.no_grad():
        pred = model(batch.to("cpu", torch.float32)).double().numpy()
    _, target = split_arrays(cache_path, split)
    return float(((pred - target.reshape(-1, 3)) ** 2).mean())


@pytest.fixture(scope="module")
def finished(nbody_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    config = tiny(nbody_cache, tmp_path_factory.mktemp("runs") / "nbody-egnn")
    return config, train(config)


# ----------------------------------------------------------------------------------------------
# defaults, models, folders


def test_positions_defaults_follow_the_papers(nbody_cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for typed, registry in (("empcn", "empcn"), ("egnn", "egnn"), ("egnn_dynamics", "egnn")):
        trainer = loop.Trainer(TrainConfig(cache=str(nbody_cache), model=typed, progress=False))
        cfg = trainer.config
        assert trainer.model_name == registry and (trainer.meta.model, trainer.meta.task) == (registry, "positions")
        assert type(trainer.model).__name__ == {"empcn": "EMPCNDynamics", "egnn": "EGNNDynamics"}[registry]
        assert cfg.target is None and isinstance(trainer.task, PositionTask)
        assert cfg.out == str(Path("runs") / f"nbody-{registry}")
        assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.schedule, cfg.amp) == (
            10_000,
            100,
            5e-4,
            1e-12,
            "constant",
            False,
        )
        assert trainer.optimizer.param_groups[0]["lr"] == 5e-4
        if typed == "empcn":
            assert (cfg.hidden, cfg.layers, cfg.dropout) == (66, 4, 0.2)
            assert trainer.model_config.dropout == 0.2
        else:
            assert (cfg.hidden, cfg.layers) == (64, 4)
        assert TrainConfig.load(Path(cfg.out)) == cfg  # config.json written with every default filled in
    assert TrainConfig(cache="x", target="U0").resolved() == TrainConfig(cache="x", target="U0").resolved(
        scalar_defaults("U0", "empcn")
    )


def test_train_size_takes_the_first_n_of_a_seeded_permutation(nbody_cache: Path, tmp_path: Path) -> None:
    trainer = loop.Trainer(tiny(nbody_cache, tmp_path / "run", train_size=60, seed=5))
    train_split = open_cache(nbody_cache).splits["train"]
    expected = np.sort(train_split[np.random.default_rng(5).permutation(len(train_split))[:60]])
    assert np.array_equal(trainer.train_stream.indices, expected)
    assert np.array_equal(trainer.train_stream.indices, subset_of_split(train_split, 60, 5))
    assert set(trainer.meta.task_record) == {"target", "unit", "horizon"}  # positions are not normalised


# ----------------------------------------------------------------------------------------------
# the run


def test_a_run_leaves_a_complete_folder_with_mse(finished, nbody_cache: Path) -> None:
    config, result = finished
    run = Path(config.out)
    assert {"config.json", "last.pt", "best.pt", "metrics.jsonl", "learning_curve.png", "result.json"} <= {
        p.name for p in run.iterdir()
    }
    records = read_records(run)
    assert [r.epoch for r in records] == [1, 2]
    assert all(r.metric == "MSE" and r.unit == "(simulation units)²" and np.isfinite(r.valid_error) for r in records)
    saved = json.loads((run / "result.json").read_text())
    assert saved["metric"] == "MSE" and "test_mse" in saved and "test_mae" not in saved
    assert saved["test_mse"] == result.test_error and read_result(run) == result
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert "valid_mse" in line and "valid_mae" not in line
    meta = RunMeta.from_dict(load_checkpoint(run / "best.pt")["meta"])
    assert (meta.model, meta.task) == ("egnn", "positions")
    assert meta.task_record == {"target": "positions", "unit": "(simulation units)²", "horizon": 200}


def test_the_training_loss_is_the_mse_of_positions(nbody_cache: Path, tmp_path: Path) -> None:
    """With a learning rate of 1e-12 the model stays its initial self: epoch 1's loss = its train-split MSE."""
    trainer = loop.Trainer(tiny(nbody_cache, tmp_path / "run", epochs=1, lr=1e-12))
    initial = copy.deepcopy(trainer.model)
    trainer.run()
    loss = read_records(tmp_path / "run")[0].train_loss
    expected = hand_mse(initial, nbody_cache, "train", trainer.spec)  # equal batches: mean of batch MSEs
    assert loss == pytest.approx(expected, rel=1e-5)


def test_evaluate_reproduces_the_test_mse(finished, nbody_cache: Path) -> None:
    config, result = finished
    run = Path(config.out)
    again = evaluate_run(run, "test", device="cpu")
    assert (again.metric, again.unit, again.target, again.samples) == ("MSE", "(simulation units)²", "positions", 40)
    assert again.value == pytest.approx(result.test_error, rel=1e-12)
    trained = load_trained(run, device="cpu")
    assert again.value == pytest.approx(hand_mse(trained.model, nbody_cache, "test", trained.spec), rel=1e-5)
    cli = runner.invoke(app, ["evaluate", str(run), "--split", "test"])
    assert cli.exit_code == 0 and cli.stdout.startswith("test MSE ") and "(simulation units)²" in cli.stdout
    js = json.loads(runner.invoke(app, ["evaluate", str(run), "--json"]).stdout)
    assert js["metric"] == "MSE" and js["mse"] == pytest.approx(result.test_error, rel=1e-12)


def test_resume_continues_exactly(nbody_cache: Path, tmp_path: Path) -> None:
    config = tiny(nbody_cache, tmp_path / "a", epochs=3, dropout=0.1)
    whole = train(config)
    split = replace(config, out=str(tmp_path / "b"))
    assert train(split, stop_after_epoch=1).stopped == "interrupted"
    resumed = train(split, resume=True)
    ra, rb = read_records(tmp_path / "a"), read_records(tmp_path / "b")
    assert [(r.epoch, r.train_loss, r.valid_error) for r in ra] == [(r.epoch, r.train_loss, r.valid_error) for r in rb]
    assert resumed.test_error == whole.test_error


def test_compile_takes_the_eager_runs_steps(nbody_cache: Path, tmp_path: Path) -> None:
    """``--compile`` (the position models' whole layer stack as one graph; the decoupled model's has the
    ring plan inside) through the loop: the same losses and validation errors as eager, in float64, over
    steps of training (every model's compiled forward and gradients: tests/train/test_compiled.py)."""
    base = tiny(nbody_cache, tmp_path / "eager", model="decoupled", dtype="float64", epochs=2)
    train(base)
    train(replace(base, out=str(tmp_path / "compiled"), compile=True))
    eager, compiled = read_records(tmp_path / "eager"), read_records(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 2
    for e, c in zip(eager, compiled):
        assert c.train_loss == pytest.approx(e.train_loss, rel=1e-9)
        assert c.valid_error == pytest.approx(e.valid_error, rel=1e-9)


def test_a_short_run_beats_positions_that_do_not_move(nbody_cache: Path, tmp_path: Path) -> None:
    """30 epochs on 100 systems: test MSE below MSE(x_in, x_target), the 'nothing moves' baseline."""
    pos, target = split_arrays(nbody_cache, "test")
    baseline = float(((pos - target) ** 2).mean())
    result = train(tiny(nbody_cache, tmp_path / "run", epochs=30, lr=3e-3, schedule="cosine"))
    assert result.test_error < 0.5 * baseline, (result.test_error, baseline)


# ----------------------------------------------------------------------------------------------
# mistakes


def test_wrong_task_options_are_one_line_errors(finished, nbody_cache: Path, qm9_cache: Path, tmp_path: Path) -> None:
    config, _ = finished
    r = runner.invoke(
        app,
        [
            "train",
            "--cache",
            str(qm9_cache),
            "--target",
            "U0",
            "--model",
            "empcn_dynamics",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert r.exit_code == 2 and "predicts positions" in error_line(r)
    r = runner.invoke(
        app, ["train", "--cache", str(qm9_cache), "--target", "U0", "--model", "gcn", "--out", str(tmp_path / "a")]
    )
    assert r.exit_code == 2 and "unknown model 'gcn'; known: egnn, empcn, decoupled, segnn" in error_line(r)
    r = runner.invoke(app, ["train", "--cache", str(nbody_cache), "--target", "U0", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--target U0 does not apply" in error_line(r) and str(nbody_cache) in error_line(r)
    r = runner.invoke(app, ["train", "--cache", str(qm9_cache), "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--target is required" in error_line(r)
    r = runner.invoke(app, ["predict", config.out, str(tmp_path / "x.xyz")])
    assert r.exit_code == 2 and "positions run" in error_line(r)
    r = runner.invoke(app, ["evaluate", config.out, "--cache", str(qm9_cache)])
    assert r.exit_code == 2 and "not a positions cache" in error_line(r)
    with pytest.raises(TrainError, match="predicts positions"):
        train(TrainConfig(cache=str(qm9_cache), target="U0", model="decoupled_dynamics", out=str(tmp_path / "d")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_model_options_reach_the_model_and_the_checkpoint(nbody_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "vel"
    args = [
        "train",
        "--cache",
        str(nbody_cache),
        "--model",
        "empcn",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--layers",
        "2",
        "--batch-size",
        "20",
        "--no-progress",
        "--model-option",
        "velocity_messages=false",
        "--model-option",
        "inv_size=4",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["model_options"] == ["velocity_messages=false", "inv_size=4"]
    trained = load_trained(out)
    assert trained.config.model_options == ("velocity_messages=false", "inv_size=4")
    assert trained.meta.model_config["velocity_messages"] is False and trained.meta.model_config["inv_size"] == 4
    assert trained.model.config.velocity_messages is False and trained.model.config.velocity_invariants is True
    assert runner.invoke(app, ["evaluate", str(out), "--split", "test"]).exit_code == 0
    r = runner.invoke(app, ["train", "--resume", str(out), "--model-option", "velocity_messages=true"])
    assert r.exit_code == 2 and "keeps its config" in error_line(r)
    r = runner.invoke(
        app,
        [
            "train",
            "--cache",
            str(nbody_cache),
            "--model",
            "empcn",
            "--out",
            str(tmp_path / "bad"),
            "--model-option",
            "fourier_scale=big",
        ],
    )
    assert r.exit_code == 2 and "fourier_scale=big: expected a number" in error_line(r)


def test_a_run_saved_before_a_model_field_existed_keeps_its_model(nbody_cache: Path, tmp_path: Path) -> None:
    """Runs saved by an older empcn lack today's fields (here EMPCN's velocity extensions, on by default
    now): evaluate and --resume rebuild the model the run was trained with, not today's defaults."""
    out = tmp_path / "old"
    paper = ("velocity_invariants=false", "velocity_messages=false")
    train(replace(tiny(nbody_cache, out), model="empcn", hidden=8, model_options=paper), stop_after_epoch=1)
    before = evaluate_run(out, "test", device="cpu").value
    # rewrite the run as the empcn before these fields would have saved it
    config = json.loads((out / "config.json").read_text())
    config["model_options"] = []
    (out / "config.json").write_text(json.dumps(config))
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(out / name)
        state["config"]["model_options"] = []  # the run's one configuration, as config.json above
        for field in ("velocity_invariants", "velocity_messages"):
            del state["meta"]["model_config"][field]
        torch.save(state, out / name)
    assert evaluate_run(out, "test", device="cpu").value == before
    r = runner.invoke(app, ["train", "--resume", str(out)])
    assert r.exit_code == 0, r.stderr
    assert [rec.epoch for rec in read_records(out)] == [1, 2]
    resumed = load_trained(out, "last.pt")
    assert resumed.meta.model_config["velocity_messages"] is False and resumed.model.config.velocity_invariants is False
    assert resumed.meta.model_config["velocity_invariants"] is False
