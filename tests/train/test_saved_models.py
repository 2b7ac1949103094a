"""Runs outlive releases: models saved by an earlier release rebuild and compute the same function today.

``tests/fixtures/models/saved_models.pt`` (see its ``make_fixtures.py``) holds, for every built-in
model and task it serves, under the name runs of that release recorded (``egnn`` for EGNN's QM9 model,
``egnn_dynamics`` for its position model, …), the config dict and state dict a run saved, the float64
batch it ran on and its output. Today's code must rebuild each model from the saved config (``model_from_saved``: the
"field added later" rule included), load the weights with ``strict=True`` (same parameter names and
shapes) and return the same output; a refactor that renames a module or changes the function fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import assert_close
from synthetic import batch_from_dict

from empcn.train.models.registry import LEGACY_NAMES, builtin_variants, model_from_saved, saved_name

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "saved_models.pt"


@pytest.fixture(scope="module")
def saved() -> dict:
    return torch.load(FIXTURE, weights_only=True)


SAVED_NAMES = sorted(saved_name(name, task) for name, task in builtin_variants())


def test_every_built_in_model_and_task_has_a_saved_form(saved):
    assert set(saved["models"]) == set(SAVED_NAMES)
    assert set(LEGACY_NAMES) <= set(SAVED_NAMES)


@pytest.mark.parametrize("name", SAVED_NAMES)
def test_saved_model_rebuilds_and_computes_the_same(saved, name):
    entry = saved["models"][name]
    model = model_from_saved(name, entry["config"]).double().eval()  # a plain name: its scalar model
    missing, unexpected = model.load_state_dict(entry["state_dict"], strict=True)
    assert not missing and not unexpected
    assert [k for k, _ in model.state_dict().items()] == list(entry["state_dict"])  # same order: optimiser state
    batch = batch_from_dict(saved["batches"][entry["batch"]])
    with torch.no_grad():
        out = model(batch)
    assert out.shape == entry["output"].shape
    assert_close(out, entry["output"], rtol=1e-10)
