"""Models and tasks from another package: entry points, saved runs that name their plug-in, and its absence.

``tests/plugins/sumnet`` is a plug-in package as a user writes one (docs/architecture.md, "Adding a
plug-in"): a model (``sumnet``, serving the scalar task) and a task (``scalar_l2``: scalar targets with
an L2 loss, trained by every scalar model). It is installed for real — ``pip install --no-deps
--no-build-isolation --target`` into a temporary folder — and used from ``python -m empcn`` subprocesses
with that folder on ``PYTHONPATH``: trained, evaluated and predicted like a built-in, on the tests' real
QM9 cache. Then, with a ``PYTHONPATH`` without it, evaluating its runs fails in one line that names the
missing package. The in-process tests register a model at run time (:meth:`Registry.register`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import error_line, invoke, pip_install_copy
from torch import nn

from empcn.cache import open_cache, write_entry
from empcn.errors import RegistryError
from empcn.train.config import TrainConfig
from empcn.train.evaluate import evaluate_run, load_trained
from empcn.train.loop import TrainError, train
from empcn.train.metrics import read_records
from empcn.train.models.base import ModelConfig
from empcn.train.models.registry import MODELS, Implementation, ModelSpec

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "sumnet"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "qm9"
QUICK = ["--epochs", "1", "--hidden", "8", "--batch-size", "64", "--no-progress", "--device", "cpu"]


# ----------------------------------------------------------------------------------------------
# a real plug-in package, through entry points


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in installed into a folder of its own (from a copy: the build leaves files beside its source)."""
    target = pip_install_copy(PLUGIN, tmp_path_factory.mktemp("plugin"))
    assert (target / "empcn_sumnet" / "model.py").is_file()
    return target


def empcn(*args: object, plugins: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m empcn ARGS`` in a fresh process; ``plugins``: a folder on its ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    if plugins is not None:
        env["PYTHONPATH"] = str(plugins)
    return subprocess.run(
        [sys.executable, "-m", "empcn", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd
    )


def one_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def l2_cache(qm9_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' QM9 cache, its manifest asking for the plug-in's task (as a data set of that package would)."""
    folder = Path(shutil.copytree(qm9_cache.parent, tmp_path_factory.mktemp("l2") / "cache"))
    entry = folder / qm9_cache.name
    cache = open_cache(entry)
    manifest = {**cache.manifest, "task": "scalar_l2"}
    write_entry(entry, manifest, cache.splits, [s["file"] for s in manifest["shards"]])
    return entry


def test_a_plug_in_model_and_task_train_evaluate_and_predict_like_built_ins(
    site: Path, qm9_cache: Path, l2_cache: Path, tmp_path: Path
) -> None:
    listed = empcn("models", plugins=site)
    assert listed.returncode == 0, listed.stderr
    assert "sumnet" in listed.stdout and "plug-in empcn-sumnet 0.2.0" in listed.stdout
    assert "sumnet" in empcn("train", "--help", plugins=site).stdout

    # the plug-in's model on a built-in task
    run = tmp_path / "homo-sumnet"
    done = empcn(
        "train", "--cache", qm9_cache, "--target", "homo", "--model", "sumnet", "--out", run, *QUICK, plugins=site
    )
    assert done.returncode == 0, done.stderr
    assert "training sumnet (" in done.stdout and "test MAE" in done.stdout
    meta = torch.load(run / "best.pt", weights_only=True)["meta"]
    assert (meta["model"], meta["task"]) == ("sumnet", "scalar")
    assert meta["plugins"] == {"model": {"distribution": "empcn-sumnet", "version": "0.2.0"}}
    evaluated = empcn("evaluate", run, "--json", plugins=site)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["mae"] == pytest.approx(json.loads((run / "result.json").read_text())["test_mae"], rel=1e-9)
    xyz = sorted(FIXTURES.glob("*.xyz"))[:3]
    predicted = empcn("predict", run, *xyz, plugins=site)
    assert predicted.returncode == 0, predicted.stderr
    assert [line.split()[0] for line in predicted.stdout.splitlines()] == [str(p) for p in xyz]
    assert all(line.endswith(" meV") for line in predicted.stdout.splitlines())

    # the plug-in's task, trained by a built-in model (its models are the scalar task's)
    l2 = tmp_path / "homo-egnn-l2"
    done = empcn(
        "train",
        "--cache",
        l2_cache,
        "--target",
        "homo",
        "--model",
        "egnn",
        "--layers",
        "1",
        "--out",
        l2,
        *QUICK,
        plugins=site,
    )
    assert done.returncode == 0, done.stderr
    meta = torch.load(l2 / "best.pt", weights_only=True)["meta"]
    assert (meta["model"], meta["task"]) == ("egnn", "scalar_l2")
    assert meta["plugins"] == {"task": {"distribution": "empcn-sumnet", "version": "0.2.0"}}
    assert "test MAE" in done.stdout  # the loss is the plug-in's; the MAE is reported as any scalar run's
    predicted = empcn("predict", l2, *xyz, plugins=site)  # a task deriving from the scalar one predicts as it does
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == len(xyz), predicted.stderr

    # uninstalled (a PYTHONPATH without it): each run says in one line which package it needs
    line = one_error(empcn("evaluate", run))
    assert "'sumnet' comes from the plug-in package 'empcn-sumnet'" in line and "pip install empcn-sumnet" in line
    line = one_error(empcn("evaluate", l2))
    assert "'scalar_l2' comes from the plug-in package 'empcn-sumnet'" in line
    line = one_error(empcn("train", "--cache", qm9_cache, "--target", "homo", "--model", "sumnet"))
    assert "unknown model 'sumnet'; known: egnn, empcn, decoupled, segnn" in line
    line = one_error(empcn("train", "--cache", l2_cache, "--target", "homo", "--out", tmp_path / "x"))
    assert "unknown task 'scalar_l2'" in line and str(l2_cache) in line


# ----------------------------------------------------------------------------------------------
# registered at run time


@dataclass(frozen=True)
class MeanConfig(ModelConfig):
    INPUT_FIELDS = {"node": "in_node_features"}

    in_node_features: int = 15


class MeanModel(nn.Module):
    """A linear function of the mean node features of each graph (no hidden width, no layers)."""

    def __init__(self, config: MeanConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.in_node_features, 1)

    def forward(self, batch) -> torch.Tensor:
        total = batch.node_feat.new_zeros(batch.num_graphs, batch.node_feat.shape[1])
        total.index_add_(0, batch.node_graph, batch.node_feat)
        count = torch.bincount(batch.node_graph, minlength=batch.num_graphs).clamp(min=1).unsqueeze(-1)
        return self.linear(total / count).squeeze(-1)


@pytest.fixture()
def mean_model():
    MODELS.register("mean", ModelSpec({"scalar": Implementation(MeanConfig, MeanModel)}))
    yield "mean"
    MODELS.unregister("mean")


def test_a_model_registered_at_run_time_trains_and_evaluates(mean_model: str, qm9_cache: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        cache=str(qm9_cache),
        target="homo",
        model=mean_model,
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=64,
        progress=False,
    )
    result = train(config)
    assert TrainConfig.load(tmp_path / "run").hidden is None  # the model has no width to default
    again = evaluate_run(tmp_path / "run", "test", device="cpu")
    assert np.isfinite(result.test_error) and again.value == pytest.approx(result.test_error, rel=1e-12)
    assert isinstance(load_trained(tmp_path / "run").model, MeanModel)
    resumed = train(replace(config, epochs=2), resume=True)
    assert resumed.epochs_run == 2 and [r.epoch for r in read_records(tmp_path / "run")] == [1, 2]
    with pytest.raises(TrainError, match="--hidden: model 'mean' has no hidden"):
        train(TrainConfig(cache=str(qm9_cache), target="homo", model=mean_model, hidden=8, out=str(tmp_path / "h")))


def test_a_model_must_serve_the_cache_s_task(mean_model: str, nbody_cache_path: Path, tmp_path: Path) -> None:
    r = invoke("train", "--cache", nbody_cache_path, "--model", mean_model, "--out", tmp_path / "run")
    line = error_line(r)
    assert r.exit_code == 2 and "--model mean does not serve this cache's task 'positions' (it serves scalar)" in line
    assert "models for positions: egnn, empcn, decoupled, segnn" in line


def test_help_and_the_models_command_list_every_registered_model(mean_model: str) -> None:
    help_text = " ".join(invoke("train", "--help").stdout.split())
    model_help = help_text[help_text.index("Model to train:") :]
    for name in ("egnn", "empcn", "decoupled", "segnn"):
        assert re.search(rf"\b{name}\b", model_help[:200]), model_help[:200]
    assert "_dynamics" not in help_text
    listed = invoke("models").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["egnn", "empcn", "decoupled", "segnn", "mean"]
    assert "tasks: scalar, positions" in listed[3] and "(built in)" in listed[3] and "(runtime)" in listed[4]


def test_broken_registrations_are_refused_in_one_line() -> None:
    with pytest.raises(RegistryError, match="not a valid model: expected an empcn.train.models.registry.ModelSpec"):
        MODELS.register("broken", object())
    with pytest.raises(RegistryError, match="is built in"):
        MODELS.register("egnn", ModelSpec({"scalar": Implementation(MeanConfig, MeanModel)}), replace=True)
    MODELS.register("plain", ModelSpec({"scalar": Implementation(dict, MeanModel)}))
    try:
        with pytest.raises(RegistryError, match="is not a dataclass deriving from ModelConfig"):
            from empcn.train.models.registry import resolve

            resolve("plain", "scalar")
    finally:
        MODELS.unregister("plain")


@pytest.fixture(scope="module")
def nbody_cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small positions cache (its task is all these tests need of it)."""
    from empcn.data.nbody import ChargedConfig
    from empcn.lift.nbody import NBodyLiftConfig, NBodySplit, lift_nbody

    return lift_nbody(
        NBodyLiftConfig(
            out=tmp_path_factory.mktemp("nbody") / "nbody.h5",
            splits=(NBodySplit("train", 8, 1), NBodySplit("valid", 4, 2), NBodySplit("test", 4, 3)),
            simulator=ChargedConfig(num_steps=200, save_every=100),
            frame_in=0,
            frame_target=1,
            workers=1,
            progress=False,
        )
    )


def test_the_plug_in_task_is_the_scalar_task_with_an_l2_loss(qm9_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its module, imported from the package's source: everything but the loss is the scalar task's."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    from empcn_sumnet.task import ScalarL2Task

    from empcn.train.collate import CollateSpec, collate
    from empcn.train.tasks.base import task_for_cache
    from empcn.train.tasks.scalar import ScalarTask

    cache = open_cache(qm9_cache)
    scalar = task_for_cache(cache.manifest, str(qm9_cache), "homo")
    assert isinstance(scalar, ScalarTask) and ScalarL2Task.models_serve() == "scalar"
    l2 = ScalarL2Task.for_cache(cache.manifest, str(qm9_cache), "homo")
    l2 = replace(l2, mean=-7000.0, mad=600.0)
    batch = collate([cache[i] for i in range(6)], CollateSpec(neighbourhoods={}, fields=ScalarL2Task.fields))
    pred = torch.linspace(-1.0, 1.0, 6)
    y = (l2.targets(batch) - l2.mean) / l2.mad
    assert float(l2.loss(pred, batch)) == pytest.approx(float(((pred.double() - y) ** 2).mean()), rel=1e-6)
    assert l2.error_sum(pred, batch) == replace(scalar, mean=-7000.0, mad=600.0).error_sum(pred, batch)
    assert l2.record()["target"] == "homo" and ScalarL2Task.from_record(l2.record()) == l2
