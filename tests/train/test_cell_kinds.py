"""Models on a cache whose 2-cells have kinds (rings and functional groups): the kind one-hot, E(3)
invariance, batched = per sample, saved runs without the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import orthogonal_maps

from empcn.cache import open_cache
from empcn.train.collate import CollateSpec, collate
from empcn.train.models import DecoupledConfig, EMPCNConfig, build_model
from empcn.train.models.registry import saved_config

NAMES = ("empcn", "decoupled")


@pytest.fixture(scope="module")
def group_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from empcn.lift.qm9 import QM9LiftConfig, lift_qm9

    out = tmp_path_factory.mktemp("groups") / "qm9-groups.h5"
    return lift_qm9(QM9LiftConfig(out=out, limit=200, workers=1, progress=False, cells=("rings,groups",)))


@pytest.fixture(scope="module")
def kinds(group_cache: Path) -> int:
    return len(open_cache(group_cache).manifest["cells"]["kinds"])


@pytest.fixture(scope="module")
def samples(group_cache: Path) -> list:
    """Six molecules: ring cells and group cells of at least two kinds between them, and one with none."""
    everything = list(open_cache(group_cache))
    mixed = [s for s in everything if len(set(s["rings/kind"].tolist())) >= 2][:3]
    ringed = [s for s in everything if 0 in s["rings/kind"].tolist()][:2]
    bare = [s for s in everything if len(s["rings/kind"]) == 0][:1]
    assert len(mixed) == 3 and len(ringed) == 2 and len(bare) == 1
    return mixed + ringed + bare


def small(name: str, spec: CollateSpec, kinds: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {
        "empcn": EMPCNConfig(
            in_node_features=spec.node_features,
            in_edge_features=spec.edge_features,
            hidden=16,
            layers=2,
            ring_kinds=kinds,
        ),
        "decoupled": DecoupledConfig(
            in_node_features=spec.node_features, hidden=16, ring_hidden=8, layers=2, ring_kinds=kinds
        ),
    }[name]
    model = build_model(name, config).double().eval()
    with torch.no_grad():  # a kind weight large enough that a wrong kind would show
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    return model


def spec_of(cache: Path, model) -> CollateSpec:
    return CollateSpec.from_manifest(open_cache(cache).manifest, tuple(model.config.reads_fields()))


@pytest.mark.parametrize("name", NAMES)
def test_kinds_batched_invariant_and_used(name, group_cache, kinds, samples):
    base_spec = CollateSpec.from_manifest(open_cache(group_cache).manifest)
    model = small(name, base_spec, kinds)
    assert model.config.reads_fields() == ("rings/kind",)
    spec = spec_of(group_cache, model)
    with torch.no_grad():
        batch = collate(samples, spec).to("cpu", torch.float64)
        together = model(batch)
        alone = torch.cat([model(collate([s], spec).to("cpu", torch.float64)) for s in samples])
        torch.testing.assert_close(together, alone, rtol=1e-10, atol=1e-10)
        for label, matrix, shift in orthogonal_maps(seed=5):
            moved = dataclasses.replace(batch, pos=batch.pos @ matrix.T + shift)
            torch.testing.assert_close(model(moved), together, rtol=1e-9, atol=1e-9, msg=label)
        relabelled = dict(batch.fields)
        relabelled["rings/kind"] = (batch.fields["rings/kind"].long() + 1) % kinds
        changed = model(dataclasses.replace(batch, fields=relabelled))
    assert float((changed - together)[:5].abs().min()) > 1e-6  # molecules with cells see their kinds
    assert float((changed - together)[5].abs()) < 1e-12  # the molecule without cells does not


@pytest.mark.parametrize(("name", "cls"), [("empcn", EMPCNConfig), ("decoupled", DecoupledConfig)])
def test_saved_config_without_ring_kinds(name, cls):
    saved = {k: v for k, v in dataclasses.asdict(cls()).items() if k != "ring_kinds"}
    config = saved_config(name, saved)
    assert config.ring_kinds == 0 and config.reads_fields() == ()
    with pytest.raises(ValueError, match="ring_kinds must be an integer"):
        cls(ring_kinds=-1)
