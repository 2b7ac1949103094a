"""Shared fixtures: a real lifted QM9 cache of the first molecules, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

QM9_TEST_MOLECULES = 300


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The test models are tiny: intra-op threads only add overhead (and stall on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def qm9_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Entry file of a cache of the first 300 QM9 molecules (qm9pack CSVs), 3 shards of 128."""
    from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

    out = tmp_path_factory.mktemp("qm9cache") / "qm9.h5"
    return lift_qm9(QM9LiftConfig(out=out, limit=QM9_TEST_MOLECULES, shard_size=128, workers=1, progress=False))
