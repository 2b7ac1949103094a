"""``--compile``: the torch.compiled models (pair messages, whole layers, the position models' whole
layer stack) compute the same function as the eager path.

The oracle is the eager model itself (``GatedMessage.pairwise`` → :func:`pair_messages`), on the real
float64 batches of ``tests/fixtures/models/saved_models.pt``: outputs and every parameter's gradient
must agree to float64 rounding. A short ``empcn train --compile`` run checks the wiring through the loop.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import assert_close
from synthetic import batch_from_dict

from empcn.train.batch import ComplexBatch
from empcn.train.config import TrainConfig
from empcn.train.loop import Trainer
from empcn.train.metrics import read_records
from empcn.train.models.layers import GatedMessage, use_compiled_messages
from empcn.train.models.registry import builtin_variants, model_from_saved, saved_name

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "saved_models.pt"
#: SEGNN's QM9 model has nothing compiled (its messages are e3nn tensor products, not gated MLP messages);
#: its position model compiles its layer stack like the other position models.
COMPILED_MODELS = sorted(
    saved_name(name, task) for name, task in builtin_variants() if saved_name(name, task) != "segnn"
)


@pytest.fixture(scope="module")
def saved() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def output_and_grads(model: torch.nn.Module, batch: ComplexBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(batch)
    (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", COMPILED_MODELS)
def test_compiled_messages_compute_the_eager_function(saved, name: str) -> None:
    entry = saved["models"][name]
    model = model_from_saved(name, entry["config"]).double()
    model.load_state_dict(entry["state_dict"], strict=True)
    model.eval()  # dropout off: the same function twice
    batch = batch_from_dict(saved["batches"][entry["batch"]])
    eager_out, eager_grads = output_and_grads(model, batch)
    stack = getattr(model, "compiled_stack", None)  # the position models: their layer stack as one graph
    messages = sum(isinstance(m, GatedMessage) for m in model.modules())
    assert use_compiled_messages(model) == messages and (messages > 0 or stack is not None)
    assert stack is None or stack in vars(model)
    try:
        out, grads = output_and_grads(model, batch)
    finally:
        use_compiled_messages(model, enabled=False)
    assert stack is None or stack not in vars(model)  # back to the eager method
    assert_close(out, eager_out, rtol=1e-10)
    assert len(grads) == len(eager_grads)
    for g, e in zip(grads, eager_grads):
        assert_close(g, e, rtol=1e-9)
    assert list(model.state_dict()) == list(entry["state_dict"])  # nothing renamed: checkpoints unchanged


def test_train_compile_takes_the_eager_runs_steps(qm9_cache: Path, tmp_path: Path) -> None:
    base = TrainConfig(
        cache=str(qm9_cache),
        target="U0",
        model="egnn",
        out=str(tmp_path / "eager"),
        epochs=1,
        batch_size=32,
        hidden=16,
        layers=2,
        limit_batches=3,
        progress=False,
        dtype="float64",
    )
    Trainer(base).run()
    Trainer(replace(base, out=str(tmp_path / "compiled"), compile=True)).run()
    eager, compiled = read_records(tmp_path / "eager"), read_records(tmp_path / "compiled")
    assert TrainConfig.load(tmp_path / "compiled").compile is True
    assert compiled[0].train_loss == pytest.approx(eager[0].train_loss, rel=1e-9)
    assert compiled[0].valid_error == pytest.approx(eager[0].valid_error, rel=1e-9)


def test_compile_on_several_cpu_threads_says_what_it_costs(qm9_cache: Path, tmp_path: Path, capsys) -> None:
    """With several torch threads Inductor's CPU scatters use atomic adds (docs/models.md): the run says so."""
    base = TrainConfig(
        cache=str(qm9_cache),
        target="U0",
        model="egnn",
        out=str(tmp_path / "one"),
        epochs=1,
        hidden=16,
        layers=2,
        progress=False,
        compile=True,
    )
    Trainer(base)  # the test session runs one torch thread
    assert "atomic adds" not in capsys.readouterr().out
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Trainer(replace(base, out=str(tmp_path / "two")))
    finally:
        torch.set_num_threads(before)
    assert "--compile on CPU with 2 torch threads" in capsys.readouterr().out
