"""Collation of real cached molecules: batched forward = per-sample forwards; indices offset per graph."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from empcn.cache import open_cache
from empcn.train.batch import ComplexBatch
from empcn.train.collate import CollateSpec, collate
from empcn.train.models import DecoupledConfig, EGNNConfig, EMPCNConfig, build_model

NAMES = ("egnn", "empcn", "decoupled")


@pytest.fixture(scope="module")
def samples(qm9_cache: Path) -> list:
    """Eight cached molecules: the four with the most rings, then small ring-free ones (H and F included)."""
    cache = open_cache(qm9_cache)
    everything = list(cache)
    by_rings = sorted(range(len(everything)), key=lambda i: (-len(everything[i]["rings"]), i))
    ringless = [i for i in range(len(everything)) if not everything[i]["rings"]][:4]
    chosen = by_rings[:4] + ringless
    assert len(everything[chosen[0]]["rings"]) >= 2 and len(ringless) == 4
    return [everything[i] for i in chosen]


@pytest.fixture(scope="module")
def spec(qm9_cache: Path) -> CollateSpec:
    return CollateSpec.from_manifest(open_cache(qm9_cache).manifest, ("sample/y",))


def small(name: str, spec: CollateSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {
        "egnn": EGNNConfig(in_node_features=spec.node_features, hidden=16, layers=2),
        "empcn": EMPCNConfig(
            in_node_features=spec.node_features, in_edge_features=spec.edge_features, hidden=16, layers=2
        ),
        "decoupled": DecoupledConfig(in_node_features=spec.node_features, hidden=16, ring_hidden=8, layers=2),
    }[name]
    return build_model(name, config).double().eval()


@pytest.mark.parametrize("name", NAMES)
def test_batched_forward_equals_per_sample_forwards(name: str, samples: list, spec: CollateSpec) -> None:
    model = small(name, spec)
    with torch.no_grad():
        batched = model(collate(samples, spec).to("cpu", torch.float64))
        alone = torch.cat([model(collate([s], spec).to("cpu", torch.float64)) for s in samples])
        reversed_ = model(collate(samples[::-1], spec).to("cpu", torch.float64))
    assert batched.shape == (len(samples),)
    torch.testing.assert_close(batched, alone, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(reversed_.flip(0), alone, rtol=1e-10, atol=1e-10)


def _graph_of_rank(batch: ComplexBatch) -> dict[int, torch.Tensor]:
    return {0: batch.node_graph, 1: batch.edge_graph, 2: batch.ring_graph}


def test_indices_are_offset_into_their_own_graph(samples: list, spec: CollateSpec) -> None:
    batch = collate(samples, spec)
    g = _graph_of_rank(batch)
    assert batch.num_graphs == len(samples)
    # every edge joins two nodes of its own graph
    assert torch.equal(g[0][batch.edge_index[:, 0]], batch.edge_graph)
    assert torch.equal(g[0][batch.edge_index[:, 1]], batch.edge_graph)
    # ring slots: node and edge of the ring's graph; the slot's edge joins slot k and slot k+1
    ring_graph_of_slot = batch.ring_graph[batch.ring_of]
    assert torch.equal(g[0][batch.ring_node], ring_graph_of_slot)
    assert torch.equal(g[1][batch.ring_edge], ring_graph_of_slot)
    ends = torch.cumsum(batch.ring_size.long(), 0)
    starts = ends - batch.ring_size.long()
    nxt = torch.arange(len(batch.ring_node)) + 1
    wrap = nxt == ends[batch.ring_of]
    nxt[wrap] = starts[batch.ring_of][wrap]
    pair = torch.sort(torch.stack([batch.ring_node, batch.ring_node[nxt]], 1), 1).values
    assert torch.equal(torch.sort(batch.edge_index[batch.ring_edge], 1).values, pair)
    # every neighbourhood pair lies within one graph
    assert set(batch.nbr) == set(spec.neighbourhoods)
    for name, (rs, rr) in spec.neighbourhoods.items():
        idx = batch.nbr[name]
        assert len(idx) > 0, name
        assert torch.equal(g[rs][idx[:, 0]], g[rr][idx[:, 1]]), name


def test_collated_indices_minus_offsets_are_the_cached_ones(samples: list, spec: CollateSpec) -> None:
    batch = collate(samples, spec)
    counts = {
        0: torch.bincount(batch.node_graph, minlength=len(samples)),
        1: torch.bincount(batch.edge_graph, minlength=len(samples)),
        2: torch.bincount(batch.ring_graph, minlength=len(samples)),
    }
    first = {r: torch.cumsum(c, 0) - c for r, c in counts.items()}
    for k, s in enumerate(samples):
        e = batch.edge_index[batch.edge_graph == k] - first[0][k]
        np.testing.assert_array_equal(e.numpy(), s["edges"])
        for name, (rs, rr) in spec.neighbourhoods.items():
            idx = batch.nbr[name]
            mine = idx[_graph_of_rank(batch)[rr][idx[:, 1]] == k]
            local = torch.stack([mine[:, 0] - first[rs][k], mine[:, 1] - first[rr][k]], 1)
            np.testing.assert_array_equal(local.numpy(), s[f"nbr/{name}/index"])
        np.testing.assert_array_equal(batch.field("sample/y").numpy()[k], s["sample/y"][0])


def test_spec_limits_what_is_collated(samples: list, spec: CollateSpec) -> None:
    only = replace(spec, neighbourhoods={"2_0": spec.neighbourhoods["2_0"]}, fields=())
    batch = collate(samples, only)
    assert set(batch.nbr) == {"2_0"} and batch.fields == {} and not batch.has("sample/y")
    with pytest.raises(KeyError, match="the batch has no field 'sample/y'"):
        batch.field("sample/y")
    assert batch.node_feat.shape == (batch.num_nodes, spec.node_features)
