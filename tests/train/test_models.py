"""Models of the train stage: symmetry (E(3), permutations), batching, gradients, parameter split."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import synthetic as S
import torch
from helpers import assert_close, orthogonal_maps

from empcn.errors import RegistryError
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.models import (
    MODELS,
    DecoupledConfig,
    DecoupledEMPCN,
    EGNNConfig,
    EGNNLayer,
    EMPCNConfig,
    build_model,
    config_class,
)
from empcn.train.models.segnn import SEGNNConfig

SMALL = {
    "egnn": EGNNConfig(hidden=16, layers=2),
    "empcn": EMPCNConfig(hidden=16, layers=2, inv_size=8),
    "decoupled": DecoupledConfig(hidden=16, ring_hidden=8, layers=2, inv_size=8),
    "segnn": SEGNNConfig(hidden=12, layers=2, lmax=2, lmax_attr=2, optimize_einsums=False),
}
NAMES = sorted(MODELS)


def small_model(name: str, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = SMALL[name]
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    return build_model(name, cfg).double().eval()


@pytest.fixture(scope="module")
def molecules() -> list[S.Molecule]:
    """Synthetic complexes plus real QM9 molecules (ethanol, cyclopropane, bicyclo[2.1.0]pentane)."""
    return S.synthetic_molecules(seed=0) + [S.qm9_molecule(i) for i in (14, 16, 162)]


# ---------------------------------------------------------------- test helper sanity (real chemistry)


def test_qm9_molecules_lift_to_known_chemistry(molecules):
    ethanol, cyclopropane, bicyclopentane = molecules[4:]
    assert len(ethanol.bonds) == 8 and ethanol.rings == []  # C2H5OH
    assert len(cyclopropane.bonds) == 9 and [len(r) for r in cyclopropane.rings] == [3]  # C3H6
    assert len(bicyclopentane.bonds) == 14  # C5H8: 6 C-C + 8 C-H
    assert sorted(len(r) for r in bicyclopentane.rings) == [3, 4]  # fused 3- and 4-ring; the 5-cycle has a chord
    batch = S.lift(bicyclopentane)
    assert batch.nbr["2_2_lower"].shape[0] == 2  # the two rings share one edge, both directions


# ---------------------------------------------------------------- fully connected pairs


def brute_force_pairs(node_graph: torch.Tensor) -> set[tuple[int, int]]:
    g = node_graph.tolist()
    return {(i, j) for i, j in itertools.permutations(range(len(g)), 2) if g[i] == g[j]}


@pytest.mark.parametrize("sizes", [[1], [3], [5, 1, 4], [2, 0, 7, 3], [0, 0, 6]])
def test_fully_connected_pairs_matches_brute_force(sizes):
    node_graph = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    shuffled = node_graph[torch.randperm(node_graph.numel(), generator=torch.Generator().manual_seed(1))]
    for graph in (node_graph, shuffled):
        pairs = fully_connected_pairs(graph)
        assert pairs.dtype == torch.long and pairs.shape == (sum(n * (n - 1) for n in sizes), 2)
        as_set = {tuple(p) for p in pairs.tolist()}
        assert len(as_set) == pairs.shape[0]  # no duplicates
        assert as_set == brute_force_pairs(graph)


def test_fully_connected_pairs_edge_cases():
    assert fully_connected_pairs(torch.zeros(0, dtype=torch.long)).shape == (0, 2)
    with pytest.raises(ValueError, match="1-D long"):
        fully_connected_pairs(torch.zeros(3))
    with pytest.raises(ValueError, match="negative"):
        fully_connected_pairs(torch.tensor([0, -1]))


# ---------------------------------------------------------------- invariance


@pytest.mark.parametrize("name", NAMES)
def test_invariant_under_e3(name, molecules):
    model = small_model(name)
    base = model(S.collate([S.lift(m) for m in molecules]))
    assert base.shape == (len(molecules),) and base.dtype == torch.float64
    for label, matrix, shift in orthogonal_maps(seed=3):
        moved = model(S.collate([S.lift(S.transformed(m, matrix, shift)) for m in molecules]))
        assert_close(moved, base), label


@pytest.mark.parametrize("name", NAMES)
def test_invariant_under_relabelling(name, molecules):
    model = small_model(name)
    gen = torch.Generator().manual_seed(7)
    for mol in molecules:
        batch = S.lift(mol)
        assert_close(model(S.relabel(batch, gen)), model(batch))


def test_egnn_not_invariant_to_non_isometries(molecules):
    """Guard against a vacuous invariance test: a shear changes the output."""
    model = small_model("egnn")
    shear = torch.tensor([[1.0, 0.7, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    base = model(S.lift(molecules[0]))
    sheared = model(S.lift(S.transformed(molecules[0], shear, torch.zeros(3, dtype=torch.float64))))
    assert float((base - sheared).detach().abs().max()) > 1e-6


# ---------------------------------------------------------------- batching, numerics, gradients


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_each_complex_alone(name, molecules):
    model = small_model(name)
    singles = [S.lift(m) for m in molecules]
    alone = torch.cat([model(b) for b in singles])
    for order in ([0, 2], [3, 1], [5, 4, 2], list(range(len(singles)))):
        together = model(S.collate([singles[k] for k in order]))
        assert_close(together, alone[order])


@pytest.mark.parametrize("name", NAMES)
def test_ringless_batch(name, molecules):
    model = small_model(name)
    tree = S.lift(molecules[2])
    assert tree.num_rings == 0
    out = model(tree)
    assert out.shape == (1,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64(name, molecules):
    model = small_model(name)
    batch = S.collate([S.lift(m) for m in molecules])
    ref = model(batch)
    out = model.float()(batch.to("cpu", torch.float32))
    assert out.dtype == torch.float32
    assert_close(out.double(), ref, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_keeps_the_readout_in_float32(name, molecules):
    """Message passing may run in bf16; the per-graph sums and the head must not (they set the MAE floor)."""
    model = small_model(name).float()
    batch = S.collate([S.lift(m) for m in molecules]).to("cpu", torch.float32)
    seen: list[torch.dtype] = []
    heads = [m for n, m in model.named_modules() if n.split(".")[-1] in ("graph_dec", "head")]
    assert heads
    for head in heads:
        head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert out.dtype == torch.float32 and seen and set(seen) == {torch.float32}
    assert_close(out.double(), model(batch).double(), rtol=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradients_everywhere(name, molecules):
    model = small_model(name).train()
    batch = S.collate([S.lift(m) for m in molecules])
    model(batch).pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().max()) > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_dropout_is_active_in_training_only(name, molecules):
    model = small_model(name, dropout=0.5)
    batch = S.collate([S.lift(m) for m in molecules])
    assert_close(model(batch), model(batch))  # eval: deterministic
    model.train()
    torch.manual_seed(1)
    a = model(batch)
    torch.manual_seed(2)
    assert float((a - model(batch)).detach().abs().max()) > 0


# ---------------------------------------------------------------- the coordinate-updating EGNN layer


@pytest.mark.parametrize("use_velocity,coord_agg", [(False, "mean"), (True, "mean"), (True, "sum")])
def test_egnn_layer_coordinates_are_equivariant(use_velocity, coord_agg, molecules):
    torch.manual_seed(0)
    layer = EGNNLayer(16, edge_attr_dim=1, update_coords=True, use_velocity=use_velocity, coord_agg=coord_agg)
    layer = layer.double()
    with torch.no_grad():  # a visible coordinate step (the default init makes it ~1e-3)
        layer.coord_mlp[-1].weight.mul_(300.0)
    batch = S.collate([S.lift(m) for m in molecules[:4]])
    pairs = fully_connected_pairs(batch.node_graph)
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(batch.num_nodes, 16, generator=gen, dtype=torch.float64)
    vel = torch.randn(batch.num_nodes, 3, generator=gen, dtype=torch.float64) if use_velocity else None
    attr = torch.randn(pairs.shape[0], 1, generator=gen, dtype=torch.float64)
    h1, x1 = layer(h, batch.pos, pairs, attr, vel)
    assert float((x1 - batch.pos).detach().abs().max()) > 1e-3  # the layer really moves the points
    for label, matrix, shift in orthogonal_maps(seed=11):
        v = None if vel is None else vel @ matrix.T
        h2, x2 = layer(h, batch.pos @ matrix.T + shift, pairs, attr, v)
        assert_close(h2, h1), label
        assert_close(x2, x1 @ matrix.T + shift), label
    # permutation equivariance of both outputs
    perm = torch.randperm(batch.num_nodes, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    order = torch.randperm(pairs.shape[0], generator=gen)
    h3, x3 = layer(h[perm], batch.pos[perm], inv[pairs[order]], attr[order], None if vel is None else vel[perm])
    assert_close(h3, h1[perm])
    assert_close(x3, x1[perm])


def test_egnn_layer_rejects_missing_inputs():
    layer = EGNNLayer(4, edge_attr_dim=2, update_coords=True, use_velocity=True).double()
    pairs = torch.tensor([[0, 1], [1, 0]])
    h, x = torch.zeros(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="edge_attr"):
        layer(h, x, pairs)
    with pytest.raises(ValueError, match="vel"):
        layer(h, x, pairs, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="use_velocity"):
        EGNNLayer(4, use_velocity=True)


# ---------------------------------------------------------------- configuration and sizes


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_decoupled_default_split_is_75_25():
    model = build_model("decoupled", DecoupledConfig())
    assert isinstance(model, DecoupledEMPCN)
    egnn_part, cell_part = model.parameter_split()
    assert egnn_part + cell_part == param_count(model)
    assert 0.73 <= egnn_part / (egnn_part + cell_part) <= 0.77
    # the node part is exactly EGNN's QM9 model at the same sizes
    assert egnn_part == param_count(build_model("egnn", EGNNConfig()))


def test_empcn_neighbourhood_subsets_and_edge_features(molecules):
    batch = S.lift(molecules[3], edge_feat_seed=0)
    for hoods, ranks in [(("0_0",), (0,)), (("0_1", "1_0"), (0, 1)), (("2_0", "0_2", "2_2_lower"), (0, 2))]:
        cfg = EMPCNConfig(hidden=8, layers=1, inv_size=4, neighbourhoods=hoods)
        assert cfg.ranks == ranks
        assert torch.isfinite(build_model("empcn", cfg).double()(batch)).all()
    with_feat = EMPCNConfig(hidden=8, layers=1, inv_size=4, in_edge_features=S.NUM_EDGE_FEATURES)
    model = build_model("empcn", with_feat).double()
    out = model(batch)
    other = S.lift(molecules[3], edge_feat_seed=1)
    assert float((model(other) - out).detach().abs().max()) > 0  # the bond features are read
    with pytest.raises(ValueError, match="edge_feat"):
        model(S.lift(molecules[3]))


def test_rbf_embedding_variant(molecules):
    model = small_model("empcn", inv_embedding="rbf")
    batch = S.collate([S.lift(m) for m in molecules])
    matrix, shift = orthogonal_maps(seed=4)[3][1:]
    moved = S.collate([S.lift(S.transformed(m, matrix, shift)) for m in molecules])
    assert_close(model(moved), model(batch))


def test_clear_errors(molecules):
    batch = S.lift(molecules[0])
    for name in NAMES:
        wrong = small_model(name, in_node_features=7)
        with pytest.raises(ValueError, match="in_node_features=7"):
            wrong(batch)
    del batch.nbr["2_2_lower"]
    with pytest.raises(ValueError, match="no neighbourhood '2_2_lower'"):
        small_model("empcn")(batch)
    with pytest.raises(RegistryError, match="unknown model 'gcn'"):
        build_model("gcn", EGNNConfig())
    with pytest.raises(TypeError, match="EMPCNConfig"):
        build_model("empcn", EGNNConfig())
    with pytest.raises(ValueError, match="bad neighbourhood"):
        EMPCNConfig(neighbourhoods=("0_3",))
    with pytest.raises(ValueError, match="dropout"):
        DecoupledConfig(dropout=1.0)


def test_registry_defaults():
    for name in NAMES:
        cfg = config_class(name)()
        assert (cfg.hidden, cfg.layers) == ((56, 7) if name == "empcn" else (128, 7))
        assert type(build_model(name).config) is type(cfg)


def test_egnn_on_bond_graph(molecules):
    model = small_model("egnn", connectivity="bonds")
    singles = [S.lift(m) for m in molecules]
    batch = S.collate(singles)
    out = model(batch)
    assert_close(out, torch.cat([model(b) for b in singles]))
    assert_close(model(S.relabel(singles[3], torch.Generator().manual_seed(0))), out[3:4])
    matrix, shift = orthogonal_maps(seed=8)[3][1:]
    assert_close(model(S.collate([S.lift(S.transformed(m, matrix, shift)) for m in molecules])), out)
    full = small_model("egnn")  # same weights (same seed), other graph: other output
    assert float((full(batch) - out).detach().abs().max()) > 1e-6
