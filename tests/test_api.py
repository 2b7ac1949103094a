"""The public Python API (``import empcn``): light to import, and its functions do what the CLI does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import empcn

CACHE = Path(__file__).parent / "fixtures" / "runs" / "caches" / "nbody.h5"


def test_import_is_light() -> None:
    """``import empcn`` loads neither torch, h5py nor any extra's package; names resolve on first use."""
    code = (
        "import sys, empcn; heavy = ('torch', 'h5py', 'rdkit', 'torch_geometric', 'toponetx', 'ase', 'tensorboard'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for name in empcn.__all__:
        assert getattr(empcn, name) is not None


def test_loader_model_fit_evaluate(tmp_path: Path) -> None:
    """A DataLoader over a split feeds a model built by name; fit calls back per epoch and evaluate agrees."""
    cache = empcn.open_cache(CACHE)
    loader = empcn.DataLoader(CACHE, "train", batch_size=4, shuffle=True)
    batch = next(iter(loader))
    assert isinstance(batch, empcn.ComplexBatch)
    model = empcn.build_model("egnn", CACHE, hidden=8, layers=1)
    assert sum(p.numel() for p in model.parameters()) > 0
    seen = []
    result = empcn.fit(
        CACHE, model="egnn", out=tmp_path / "run", epochs=2, hidden=8, layers=1, device="cpu", callback=seen.append
    )
    assert [r.epoch for r in seen] == [1, 2]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    evaluated = empcn.evaluate(tmp_path / "run")
    assert evaluated.samples == cache.manifest["splits"]["counts"]["test"]
    assert abs(evaluated.value - result.test_error) <= 1e-6 * max(1.0, abs(result.test_error))


def test_missing_extra_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """Asking for TensorBoard without its package names the extra, before any run folder is made."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    try:
        empcn.fit(
            CACHE, model="egnn", out=tmp_path / "run", epochs=1, hidden=8, layers=1, device="cpu", tensorboard=True
        )
    except empcn.MissingExtra as exc:
        assert "empcn[tensorboard]" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("fit with tensorboard=True ran without TensorBoard")
    assert not (tmp_path / "run").exists()


def test_tensorboard_events_match_metrics(tmp_path: Path) -> None:
    """--tensorboard writes event files beside metrics.jsonl; read back, they hold the same numbers."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = empcn.fit(
        CACHE, model="egnn", out=tmp_path / "run", epochs=2, hidden=8, layers=1, device="cpu", tensorboard=True
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("loss/train")
    assert [e.step for e in loss] == [r["epoch"] for r in records]
    assert [e.value for e in loss] == [pytest.approx(r["train_loss"], rel=1e-6) for r in records]
    test = events.Scalars(f"{result.metric}/test")
    assert test[-1].value == pytest.approx(result.test_error, rel=1e-6)
