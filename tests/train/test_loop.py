"""The training loop on a real lifted cache: run folder, exact resume, divergence, refused caches, limits."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from empcn.cache import open_cache
from empcn.train import loop
from empcn.train.checkpoint import RunMeta, load_checkpoint
from empcn.train.config import TrainConfig
from empcn.train.evaluate import evaluate_run
from empcn.train.loop import TrainError, TrainingDiverged, train
from empcn.train.metrics import read_records


def small(cache: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        cache=str(cache),
        target="U0",
        model="empcn",
        out=str(out),
        epochs=2,
        batch_size=32,
        hidden=16,
        layers=2,
        progress=False,
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def finished(qm9_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    # the papers' plain mean/MAD (U0's default atom reference: tests/train/test_reference.py)
    config = small(qm9_cache, tmp_path_factory.mktemp("runs") / "u0-empcn", target_reference="none")
    return config, train(config)


def copy_cache(src: Path, dst_dir: Path) -> Path:
    shutil.copytree(src.parent, dst_dir)
    return dst_dir / src.name


# ----------------------------------------------------------------------------------------------


def test_a_run_leaves_a_complete_folder(finished, qm9_cache: Path) -> None:
    config, result = finished
    run = Path(config.out)
    manifest = open_cache(qm9_cache).manifest
    unit = manifest["targets"]["units"]["U0"]
    assert {"config.json", "last.pt", "best.pt", "metrics.jsonl", "learning_curve.png", "result.json"} <= {
        p.name for p in run.iterdir()
    }
    assert TrainConfig.load(run) == config.resolved()
    records = read_records(run)
    assert [r.epoch for r in records] == [1, 2]
    assert all(r.unit == unit and np.isfinite(r.valid_error) and r.throughput > 0 for r in records)
    assert records[0].lr > records[1].lr >= 0  # cosine decay over the run's steps
    assert records[-1].best_valid_error == min(r.valid_error for r in records)
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((run / "result.json").read_text())
    assert saved["unit"] == unit and saved["stopped"] == "completed" and saved["epochs_run"] == 2
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == result.best_epoch == min(records, key=lambda r: r.valid_error).epoch
    # the test MAE the run reports is what `empcn evaluate` measures on best.pt
    again = evaluate_run(run, "test", device="cpu")
    assert again.unit == unit and again.samples == len(open_cache(qm9_cache).splits["test"])
    assert again.value == pytest.approx(result.test_error, rel=1e-12)
    meta = RunMeta.from_dict(best["meta"])
    assert (meta.task_record["mean"], meta.task_record["mad"]) == (
        manifest["targets"]["train_mean"]["U0"],
        manifest["targets"]["train_mad"]["U0"],
    )
    assert meta.neighbourhoods.keys() == set(meta.model_config["neighbourhoods"])


def test_resume_continues_exactly(qm9_cache: Path, tmp_path: Path) -> None:
    """2 epochs straight == 1 epoch, stop, resume, 1 epoch: identical weights and optimiser state (dropout on)."""
    kw = dict(model="decoupled", dropout=0.2, seed=5)
    straight = small(qm9_cache, tmp_path / "straight", **kw)
    split = small(qm9_cache, tmp_path / "split", **kw)
    train(straight)
    train(split, stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "split" / "result.json").exists()
    train(split, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a["state"] == b["state"] and a["scheduler"] == b["scheduler"]
    ra, rb = read_records(tmp_path / "straight"), read_records(tmp_path / "split")
    assert [(r.epoch, r.train_loss, r.valid_error) for r in ra] == [(r.epoch, r.train_loss, r.valid_error) for r in rb]


class _PoisonAfter(torch.nn.Module):
    """Wraps a model; from the ``n``-th training forward call on, its output is NaN."""

    def __init__(self, inner: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, batch):
        out = self.inner(batch)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


@pytest.mark.parametrize("poison_at", ["epoch2", "epoch1"])
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    qm9_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, poison_at: str
) -> None:
    from empcn.train.models import registry

    config = small(qm9_cache, tmp_path / "run", epochs=3)
    steps = len(open_cache(qm9_cache).splits["train"]) // 32 + 1
    n = steps + 2 if poison_at == "epoch2" else 1
    real = registry.build_model
    monkeypatch.setattr(
        registry, "build_model", lambda name, cfg=None, task=None: _PoisonAfter(real(name, cfg, task), n)
    )
    with pytest.raises(TrainingDiverged) as info:
        train(config)
    message = str(info.value)
    assert "\n" not in message and "non-finite loss" in message
    if poison_at == "epoch2":
        assert "epoch 2" in message and "last.pt (epoch 1)" in message
        assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
        assert [r.epoch for r in read_records(tmp_path / "run")] == [1]
    else:
        assert "epoch 1" in message and "no checkpoint was written" in message
        assert not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "result.json").exists()


def test_another_format_version_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "cache")
    with h5py.File(entry, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(TrainError, match="format version 99") as info:
        train(small(entry, tmp_path / "run"))
    assert str(entry) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_a_cache_failing_its_checksums_is_refused(qm9_cache: Path, tmp_path: Path) -> None:
    entry = copy_cache(qm9_cache, tmp_path / "cache")
    shard = entry.parent / open_cache(entry).manifest["shards"][1]["file"]
    with open(shard, "ab") as f:
        f.write(b"\0")
    with pytest.raises(TrainError, match="sha256") as info:
        train(small(entry, tmp_path / "run"))
    assert str(shard) in str(info.value) and "\n" not in str(info.value)


def test_time_limit_stops_cleanly_and_tests_the_best_epoch(qm9_cache: Path, tmp_path: Path) -> None:
    result = train(small(qm9_cache, tmp_path / "run", epochs=50, time_limit=1e-6))
    assert result.stopped == "time_limit" and result.epochs_run == 1 and result.best_epoch == 1
    assert np.isfinite(result.test_error)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["stopped"] == "time_limit"
    records = read_records(tmp_path / "run")
    assert len(records) == 1 and records[0].partial


def test_valid_every_scores_the_valid_split_every_n_epochs_and_at_the_last(qm9_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(small(qm9_cache, run, epochs=5, valid_every=2, hidden=8, layers=1, limit_batches=2))
    records = read_records(run)
    assert [r.epoch for r in records] == [1, 2, 3, 4, 5]
    validated = [r.epoch for r in records if np.isfinite(r.valid_error)]
    assert validated == [2, 4, 5]  # every 2nd epoch and the last
    assert result.best_epoch in validated
    best = min((r for r in records if r.epoch in validated), key=lambda r: r.valid_error)
    assert result.best_epoch == best.epoch and records[-1].best_valid_error == best.valid_error
    # the checkpoint of the best epoch is what is tested: evaluate reproduces the run's test figure
    assert evaluate_run(run, "test").value == pytest.approx(result.test_error, rel=1e-9)
    # a run-control option: a resumed (extended) run may validate at another interval
    config = TrainConfig.load(run)
    extended = train(replace(config, epochs=7, valid_every=1), resume=True)
    assert [r.epoch for r in read_records(run) if np.isfinite(r.valid_error)] == [2, 4, 5, 6, 7]
    assert extended.epochs_run >= 1
    with pytest.raises(Exception, match="valid.every"):
        TrainConfig(cache="x", valid_every=0)


def test_train_size_trains_on_a_seeded_subset_normalised_over_it(qm9_cache: Path, tmp_path: Path) -> None:
    config = small(qm9_cache, tmp_path / "run", train_size=40, epochs=1, seed=11, target_reference="none")
    trainer = loop.Trainer(config)
    cache = open_cache(qm9_cache)
    sub = trainer.train_stream.indices
    assert len(sub) == 40 and np.isin(sub, cache.splits["train"]).all()
    y = np.array([cache[int(i)]["y"]["U0"] for i in sub])
    assert trainer.task.mean == pytest.approx(y.mean(), rel=1e-12)
    assert trainer.task.mad == pytest.approx(np.abs(y - y.mean()).mean(), rel=1e-12)
    assert len(trainer.train_stream) == 2  # ceil(40 / 32)
    trainer.run()
    assert (
        RunMeta.from_dict(load_checkpoint(tmp_path / "run" / "best.pt")["meta"]).task_record["mean"]
        == trainer.task.mean
    )


def test_run_folder_clashes_and_bad_options_are_one_line_errors(finished, qm9_cache: Path, tmp_path: Path) -> None:
    config, _ = finished
    with pytest.raises(TrainError, match="already holds a run"):
        train(config)
    with pytest.raises(TrainError, match="nothing to resume"):
        train(small(qm9_cache, tmp_path / "empty"), resume=True)
    with pytest.raises(TrainError, match="not in this cache") as info:
        train(small(qm9_cache, tmp_path / "x", target="nonsense"))
    assert "U0" in str(info.value) and str(qm9_cache) in str(info.value)


def test_resume_with_more_epochs_extends_a_finished_run(qm9_cache: Path, tmp_path: Path, capsys) -> None:
    """Constant schedule: 1 epoch, finished, then --epochs 2 == 2 epochs straight (weights and records)."""
    from empcn.train.config import ConfigError, merge_for_resume

    kw = dict(model="egnn", schedule="constant", seed=3, train_size=10**6)
    straight = small(qm9_cache, tmp_path / "straight", **kw)
    train(straight)
    assert "exceeds the train split" in capsys.readouterr().out  # a too large --train-size is said, not hidden
    short = small(qm9_cache, tmp_path / "short", epochs=1, **kw)
    assert train(short).stopped == "completed"
    saved = TrainConfig.load(tmp_path / "short")
    with pytest.raises(ConfigError, match="keeps its config"):
        merge_for_resume(saved, {"lr": 0.1})
    with pytest.raises(ConfigError, match="--epochs 0"):
        merge_for_resume(saved, {"epochs": 0})
    longer = merge_for_resume(saved, {"epochs": 2})
    result = train(longer, resume=True)
    assert result.epochs_run == 2 and TrainConfig.load(tmp_path / "short").epochs == 2
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "short" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    ra, rb = read_records(tmp_path / "straight"), read_records(tmp_path / "short")
    assert [(r.epoch, r.train_loss, r.valid_error) for r in ra] == [(r.epoch, r.train_loss, r.valid_error) for r in rb]


@pytest.mark.parametrize("target, lr", [("U0", 5e-4), ("gap", 1e-3)])
def test_papers_protocol_is_the_plain_command(target: str, lr: float) -> None:
    """`empcn train --target T --model egnn --target-reference none` is EGNN's QM9 protocol: nothing else to set."""
    config = TrainConfig(cache="data/qm9.h5", target=target, model="egnn", target_reference="none").resolved()
    assert (config.epochs, config.batch_size, config.schedule, config.lr) == (1000, 96, "cosine", lr)
    assert config.train_size is None and config.target_reference == "none"
    assert (config.hidden, config.layers) == (128, 7)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_fused_adam_takes_the_steps_of_plain_adam(
    qm9_cache: Path, tmp_path: Path, dtype: torch.dtype, tol: float
) -> None:
    """The loop's one-kernel Adam (``make_optimizer``) moves a real model's parameters as plain Adam's
    per-parameter loop does, and a plain Adam's saved state (a run of an older release) continues in it."""
    trainer = loop.Trainer(small(qm9_cache, tmp_path / "run", dtype=str(dtype).split(".")[1]))
    model = trainer.model
    twin = copy.deepcopy(model)
    fused = loop.make_optimizer(model, lr=1e-3, weight_decay=1e-4)
    plain = torch.optim.Adam(twin.parameters(), lr=1e-3, weight_decay=1e-4, foreach=False)
    assert fused.defaults["fused"] is True
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(p.shape, generator=gen, dtype=dtype) for p in model.parameters()] for _ in range(5)]
    for step, g in enumerate(grads):
        for opt, m in ((fused, model), (plain, twin)):
            for p, gi in zip(m.parameters(), g):
                p.grad = gi.clone()
            opt.step()
        if step == 2:  # an older run's state continues in the fused optimiser
            fused = loop.make_optimizer(model, lr=1e-3, weight_decay=1e-4)
            fused.load_state_dict(copy.deepcopy(plain.state_dict()))
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()
