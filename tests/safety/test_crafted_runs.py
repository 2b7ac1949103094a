"""A crafted run folder is refused before memory is spent on it; a run has one configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from helpers import error_line, invoke
from safety_helpers import copy_run

from empcn.train.checkpoint import BEST, LAST


def craft(path: Path, change) -> None:
    """Rewrite the checkpoint ``path`` with ``change(state)`` applied."""
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def wider(state: dict, hidden: int = 6000) -> None:
    state["meta"]["model_config"]["hidden"] = hidden


def test_a_checkpoint_whose_config_does_not_fit_its_weights_builds_nothing(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    craft(run / BEST, wider)  # EGNN at width 6000: a 1.1 GiB model for weights of width 8
    code = (
        "import resource, sys; from helpers import invoke;"
        "r = invoke('evaluate', sys.argv[1], '--no-plot', '--device', 'cpu'); print(r.exit_code); print(r.stderr);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    )
    tests = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=300, cwd=tests
    )
    code_line, err, *_, peak = proc.stdout.strip().splitlines()
    assert code_line == "2" and err == (
        f"error: {run / BEST}: its weights do not fit its model config (embed.weight: saved [8, 15], its config "
        "makes [6000, 15]); the checkpoint is damaged or was edited"
    ), proc.stdout + proc.stderr[-2000:]
    assert int(peak) < 1024, f"peak memory {peak} MiB: the model was built"


def test_resume_refuses_a_checkpoint_whose_config_does_not_fit_its_weights(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    craft(run / LAST, wider)
    result = invoke("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert result.exit_code == 2 and "its weights do not fit its model config (embed.weight" in error_line(result)


def test_a_config_json_that_disagrees_with_the_checkpoint_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["hidden"] = 1_000_000_000
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("train", "--resume", run, "--no-progress")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {run / 'config.json'}: hidden 1000000000 differs from 8 in {run / LAST}, which the run's weights "
        "were trained with; a run has one configuration (restore config.json)"
    )
    config["hidden"], config["lr"] = 8, 0.5
    (run / "config.json").write_text(json.dumps(config))
    assert "lr 0.5 differs from 0.0005" in error_line(invoke("train", "--resume", run, "--no-progress"))
    config["lr"] = 0.0005
    (run / "config.json").write_text(json.dumps(config))  # restored: the run resumes
    assert invoke("train", "--resume", run, "--epochs", "3", "--no-progress").exit_code == 0


def test_every_registered_model_is_checked_without_being_built() -> None:
    """The shape check sees the models of the registry on torch's meta device (no memory), e3nn's too
    (SEGNN's position model: its constructor computes constants with real tensors; its QM9 model is
    left out only because building it takes ~15 s)."""
    from empcn.train.models.registry import build_model, builtin_variants, config_class
    from empcn.train.saved_checks import expected_shapes

    for name, task in builtin_variants():
        if (name, task) == ("segnn", "scalar"):
            continue
        config = config_class(name, task)()
        built = {k: tuple(t.shape) for k, t in build_model(name, config, task).state_dict().items()}
        assert expected_shapes(name, dict(config.__dict__), task) == built, (name, task)
        if name != "segnn":
            huge = expected_shapes(name, dict(config.__dict__, hidden=100_000), task)
            assert huge is not None and max(max(s, default=0) for s in huge.values()) >= 100_000, (name, task)
