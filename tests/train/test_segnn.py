"""SEGNN (arXiv 2110.02905): irreps and parity, the radius graph, symmetries in float64 on real QM9
molecules and real charged N-body systems, the N-body model against a restatement of the reference
code's equations, a short real N-body training, runs saved before today's defaults, and the CLI
(train, evaluate, resume) on both kinds of cache.

The registry-wide suites (``test_models.py``, ``test_dynamics_models.py``) run SEGNN through the
checks every model passes (E(3) and permutation symmetry, batching, float32/float64, bf16 autocast,
gradients, dropout); this file holds what is particular to a steerable model.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from e3nn import o3
from helpers import assert_close, orthogonal_maps, random_rotation
from typer.testing import CliRunner

from empcn.cache import open_cache
from empcn.cli import app
from empcn.data.nbody import ChargedConfig, NBodySplit
from empcn.lift.nbody import NBodyLiftConfig, lift_nbody
from empcn.train.batch import ComplexBatch
from empcn.train.checkpoint import load_checkpoint
from empcn.train.collate import CollateSpec, collate
from empcn.train.config import TrainConfig
from empcn.train.evaluate import evaluate_run, load_trained
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.loop import Trainer, train
from empcn.train.metrics import read_records
from empcn.train.models.registry import build_model
from empcn.train.models.segnn import (
    SEGNN,
    SEGNNConfig,
    SEGNNDynamics,
    SEGNNDynamicsConfig,
    SteerableLinear,
    balanced_irreps,
    radius_pairs,
    sh_irreps,
)

runner = CliRunner()
SIM = ChargedConfig(num_steps=500, save_every=100)
SPLITS = (NBodySplit("train", 100, 21), NBodySplit("valid", 20, 22), NBodySplit("test", 20, 23))
SPEC = CollateSpec(neighbourhoods={}, fields=("nodes/vel", "nodes/charge", "nodes/target_pos"))


@pytest.fixture(scope="module")
def nbody_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production lift of short charged 5-body simulations: frame 2 → frame 4 (200 steps ahead)."""
    out = tmp_path_factory.mktemp("nbody-segnn") / "nbody.h5"
    return lift_nbody(
        NBodyLiftConfig(
            out=out, splits=SPLITS, simulator=SIM, frame_in=2, frame_target=4, shard_size=64, workers=1, progress=False
        )
    )


def split_batch(cache_path: Path, split: str, count: int | None = None) -> ComplexBatch:
    cache = open_cache(cache_path)
    idx = cache.splits[split][:count]
    return collate([cache[int(i)] for i in idx], SPEC)


@pytest.fixture(scope="module")
def systems(nbody_cache: Path) -> ComplexBatch:
    """Six real charged systems, float64."""
    return split_batch(nbody_cache, "train", 6).to("cpu", torch.float64)


@pytest.fixture(scope="module")
def molecules(qm9_cache: Path) -> ComplexBatch:
    """Eight real QM9 molecules of the lifted test cache, float64."""
    cache = open_cache(qm9_cache)
    return collate([cache[i] for i in range(8)], CollateSpec(neighbourhoods={}, fields=("sample/y",))).to(
        "cpu", torch.float64
    )


def dynamics(**changes) -> SEGNNDynamics:
    """A small N-body SEGNN, float64 (at the default output scale its displacements are of O(1), so the
    symmetry checks see them)."""
    torch.manual_seed(0)
    return SEGNNDynamics(SEGNNDynamicsConfig(hidden=12, layers=2, optimize_einsums=False, **changes)).double().eval()


#: The conventions of runs saved before the reference's became the defaults.
OLD_CONVENTIONS = {"aggregation": "mean", "attr_normalization": "component", "relative_vector": "x_i-x_j"}


def qm9_model(batch: ComplexBatch, **changes) -> SEGNN:
    torch.manual_seed(0)
    cfg = SEGNNConfig(in_node_features=batch.node_feat.shape[1], hidden=12, layers=2, optimize_einsums=False, **changes)
    return SEGNN(cfg).double().eval()


def moved(batch: ComplexBatch, matrix: torch.Tensor, shift: torch.Tensor) -> ComplexBatch:
    fields = {**batch.fields, **({"nodes/vel": batch.field("nodes/vel") @ matrix.T} if batch.has("nodes/vel") else {})}
    return replace(batch, pos=batch.pos @ matrix.T + shift, fields=fields)


def without(batch: ComplexBatch, *names: str) -> ComplexBatch:
    return replace(batch, fields={k: v for k, v in batch.fields.items() if k not in names})


def nodes_of(batch: ComplexBatch, nodes: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-node fields of ``batch`` at ``nodes``."""
    return {k: v[nodes] for k, v in batch.fields.items() if k.startswith("nodes/")}


def permuted(batch: ComplexBatch, perm: torch.Tensor) -> ComplexBatch:
    """The nodes listed in the order ``perm`` (only the fields SEGNN reads)."""
    return replace(
        batch,
        pos=batch.pos[perm],
        node_feat=batch.node_feat[perm],
        node_graph=batch.node_graph[perm],
        fields={**batch.fields, **nodes_of(batch, perm)},
    )


# ---------------------------------------------------------------- irreps, parity, graph


@pytest.mark.parametrize(
    ("hidden", "lmax", "lmax_attr", "expected"),
    [
        (64, 1, 1, "32x0e+32x1o"),  # the paper's N-body model
        (128, 2, 3, "36x0e+36x1o+36x2e"),  # the paper's QM9 model
    ],
)
def test_balanced_irreps_spend_the_weights_of_a_scalar_layer(hidden, lmax, lmax_attr, expected):
    irreps = balanced_irreps(hidden, lmax, lmax_attr)
    assert irreps == o3.Irreps(expected)
    attr = sh_irreps(lmax_attr)
    count = lambda ir: o3.FullyConnectedTensorProduct(ir, attr, ir).weight_numel  # noqa: E731
    n = irreps[0].mul
    smaller = o3.Irreps([(n - 1, ir) for _, ir in irreps])
    assert count(smaller) < hidden * hidden <= count(irreps)  # the smallest n reaching hidden² weights


def test_parity_1o_flips_and_1e_does_not():
    """Inverting space (x → −x) flips a 1o output and leaves a 1e output (a cross product) unchanged."""
    torch.manual_seed(0)
    attr = sh_irreps(1)
    to_1o = SteerableLinear(o3.Irreps("2x1o"), attr, o3.Irreps("1x1o"), gate=False).double()
    to_1e = SteerableLinear(o3.Irreps("2x1o"), attr, o3.Irreps("1x1e"), gate=False).double()
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    r = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    a = o3.spherical_harmonics(attr, r, normalize=True, normalization="component")
    a_inv = o3.spherical_harmonics(attr, -r, normalize=True, normalization="component")
    assert_close(to_1o(-v, a_inv), -to_1o(v, a))
    assert_close(to_1e(-v, a_inv), to_1e(v, a))
    assert float(to_1e(v, a).detach().abs().max()) > 1e-3  # not vacuous
    rot = random_rotation(torch.Generator().manual_seed(2))
    for layer in (to_1o, to_1e):  # both rotate as vectors
        assert_close(
            layer(v @ torch.block_diag(rot, rot).T, a @ torch.block_diag(torch.ones(1, 1, dtype=rot.dtype), rot).T),
            layer(v, a) @ rot.T,
        )


def test_radius_graph_is_the_pairs_within_the_cutoff(molecules):
    pos, graph = molecules.pos, molecules.node_graph
    full = fully_connected_pairs(graph)
    dist = torch.linalg.vector_norm(pos[full[:, 1]] - pos[full[:, 0]], dim=-1)
    pairs = radius_pairs(pos, graph, 2.0)
    assert torch.equal(pairs, full[dist < 2.0]) and 0 < len(pairs) < len(full)
    assert torch.equal(radius_pairs(pos, graph, 0.0), full)
    assert torch.bincount(pairs[:, 1], minlength=molecules.num_nodes).min() >= 1  # every atom has a bonded neighbour


# ---------------------------------------------------------------- QM9: invariance with the paper's orders


def test_qm9_prediction_is_invariant_under_e3_and_permutations(molecules):
    """The paper's lmax 2 / lmax_attr 3 / 2 Å radius graph on real molecules, float64."""
    model = qm9_model(molecules)
    base = model(molecules)
    assert base.shape == (molecules.num_graphs,) and base.dtype == torch.float64
    for label, matrix, shift in orthogonal_maps(seed=5):
        assert_close(model(moved(molecules, matrix, shift)), base), label
    perm = torch.randperm(molecules.num_nodes, generator=torch.Generator().manual_seed(3))
    assert_close(model(permuted(molecules, perm)), base)
    shear = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert (
        float((model(moved(molecules, shear, torch.zeros(3, dtype=torch.float64))) - base).detach().abs().max()) > 1e-6
    )


def test_qm9_cutoff_and_pooling_options(molecules):
    full = qm9_model(molecules, cutoff=0.0, pool="sum", aggregation="mean")
    base = full(molecules)
    matrix, shift = orthogonal_maps(seed=6)[3][1:]
    assert_close(full(moved(molecules, matrix, shift)), base)
    assert float((base - qm9_model(molecules)(molecules)).detach().abs().max()) > 1e-6  # the options change the model


# ---------------------------------------------------------------- N-body: equivariance of the 1o displacement


@pytest.mark.parametrize("changes", [{}, {"velocity_attr": False, "use_node_scalar": False}, OLD_CONVENTIONS])
def test_nbody_positions_are_e3_equivariant(systems, changes):
    model = dynamics(**changes)
    base = model(systems)
    assert base.shape == (systems.num_nodes, 3) and base.dtype == torch.float64
    assert float((base - systems.pos).detach().abs().mean()) > 0.01  # the displacement is not negligible
    for label, matrix, shift in orthogonal_maps(seed=7):
        assert_close(model(moved(systems, matrix, shift)), base @ matrix.T + shift), label
    inversion = -torch.eye(3, dtype=torch.float64)  # parity: the displacement is 1o, it flips
    assert_close(model(moved(systems, inversion, torch.zeros(3, dtype=torch.float64))), -base)
    perm = torch.randperm(systems.num_nodes, generator=torch.Generator().manual_seed(4))
    assert_close(model(permuted(systems, perm)), base[perm])


def test_nbody_centres_each_system_on_its_own_centroid(systems):
    """Translating one system of a batch moves only its predictions, by the same shift (per-graph centring)."""
    model = dynamics()
    base = model(systems)
    shift = torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64)
    one = systems.node_graph == 2
    pos = systems.pos.clone()
    pos[one] += shift
    out = model(replace(systems, pos=pos))
    assert_close(out[one], base[one] + shift)
    assert_close(out[~one], base[~one])


def test_nbody_batch_equals_each_system_alone(nbody_cache: Path):
    model = dynamics()
    cache = open_cache(nbody_cache)
    samples = [cache[int(i)] for i in cache.splits["valid"][:4]]
    alone = torch.cat([model(collate([s], SPEC).to("cpu", torch.float64)) for s in samples])
    for order in ([2, 0], [3, 1, 0, 2]):
        together = model(collate([samples[k] for k in order], SPEC).to("cpu", torch.float64))
        assert_close(together, torch.cat([alone[5 * k : 5 * k + 5] for k in order]))


def test_nbody_needs_velocities_and_charges(systems):
    with pytest.raises(ValueError, match="the batch field 'nodes/vel'"):
        dynamics()(without(systems, "nodes/vel"))
    with pytest.raises(ValueError, match="one charge \\(or mass\\) per node"):
        dynamics()(without(systems, "nodes/charge"))
    assert torch.isfinite(dynamics(use_node_scalar=False)(without(systems, "nodes/charge"))).all()
    with pytest.raises(ValueError, match="aggregation"):
        SEGNNDynamicsConfig(aggregation="max")
    with pytest.raises(ValueError, match="lmax"):
        SEGNNConfig(lmax_attr=0)


# ---------------------------------------------------------------- the reference code's equations


def second_moment_constant(f) -> float:
    """``1/√E[f(z)²]`` for ``z ~ N(0, 1)``, by the trapezoid rule on [−20, 20] (e3nn's gates normalise so)."""
    z = torch.linspace(-20.0, 20.0, 400_001, dtype=torch.float64)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(torch.trapezoid(f(z) ** 2 * density, z)) ** -0.5


def reference_block(layer: SteerableLinear, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
    """The reference's ``O3TensorProduct(SwishGate)`` with ``layer``'s weights: e3nn's fully connected
    product, divided per output slice by ``1/√fan_in`` (fan_in = Σ mul₁·mul₂ over the paths into it),
    a bias on the 0e outputs, then (with a gate) SiLU on the scalars and sigmoid(gate) × each gated irrep."""
    tp = layer.tp
    fan_in = [0] * len(tp.irreps_out)
    for ins in tp.instructions:
        fan_in[ins.i_out] += tp.irreps_in1[ins.i_in1].mul * tp.irreps_in2[ins.i_in2].mul
    assert all(fan_in)  # every output slice is reached (the reference would divide by zero)
    sqrt_k = torch.cat(
        [torch.full((mul * ir.dim,), 1.0 / math.sqrt(k), dtype=x.dtype) for (mul, ir), k in zip(tp.irreps_out, fan_in)]
    )
    out = tp(x, attr) / sqrt_k
    if layer.bias is not None:  # the 0e slices, in order
        bias_at = torch.cat(
            [torch.arange(sl.start, sl.stop) for (_, ir), sl in zip(tp.irreps_out, tp.irreps_out.slices()) if ir.l == 0]
        )
        out = out.index_add(1, bias_at, layer.bias.expand(len(out), -1))
    if layer.gate is None:
        return out
    scalars = sum(mul for mul, ir in layer.irreps_out if ir.l == 0)
    gated = o3.Irreps([(mul, ir) for mul, ir in layer.irreps_out if ir.l > 0])
    c_silu = second_moment_constant(torch.nn.functional.silu)
    c_sigmoid = second_moment_constant(torch.sigmoid)
    gates = c_sigmoid * torch.sigmoid(out[:, scalars : scalars + gated.num_irreps])
    parts, start, g = [c_silu * torch.nn.functional.silu(out[:, :scalars])], scalars + gated.num_irreps, 0
    for mul, ir in gated:
        for _ in range(mul):  # irrep by irrep, as e3nn's Gate
            parts.append(gates[:, g : g + 1] * out[:, start : start + ir.dim])
            start, g = start + ir.dim, g + 1
    return torch.cat(parts, dim=1)


def reference_segnn(model: SEGNNDynamics, batch: ComplexBatch) -> torch.Tensor:
    """SEGNN_G+P as Steerable-E3-GNN's ``nbody/train_nbody.py`` (``O3Transform``) and
    ``models/segnn/segnn.py`` compute it, on ``model``'s weights: PyG's ``edge_index`` (row 0 the
    sender j, row 1 the receiver i) over all ordered pairs of a system, ``r = x_j − x_i``, integral-normalised
    harmonics, node attribute = mean of the edge harmonics + Y(v) with its 0e entry set to 1, messages
    summed (``aggr="add"``), residual updates, ``x + Δ``. One deliberate difference: positions are
    centred on their system's centroid, not on the mean of each particle's three coordinates."""
    core = model.core
    pos, vel, graph = batch.pos, batch.field("nodes/vel"), batch.node_graph
    n = len(pos)
    src, dst = torch.nonzero((graph[:, None] == graph[None, :]) & ~torch.eye(n, dtype=torch.bool), as_tuple=True)
    rel = pos[src] - pos[dst]

    def harmonics(v: torch.Tensor) -> torch.Tensor:
        return o3.spherical_harmonics(core.irreps_attr, v, normalize=True, normalization="integral")

    def mean_at(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
        total = values.new_zeros(size, values.shape[1]).index_add(0, index, values)
        return total / torch.bincount(index, minlength=size).clamp(min=1).unsqueeze(1).to(values.dtype)

    edge_attr = harmonics(rel)
    node_attr = mean_at(edge_attr, dst, n) + harmonics(vel)
    node_attr[:, 0] = 1.0
    charges = batch.field("nodes/charge").reshape(-1)
    messages_extra = torch.cat([rel.norm(dim=1, keepdim=True), (charges[src] * charges[dst]).unsqueeze(1)], dim=1)
    centred = pos - mean_at(pos, graph, batch.num_graphs)[graph]
    h = reference_block(core.embed, torch.cat([centred, vel, vel.norm(dim=1, keepdim=True)], dim=1), node_attr)
    for layer in core.layers:
        m = reference_block(layer.message_1, torch.cat([h[dst], h[src], messages_extra], dim=1), edge_attr)
        m = reference_block(layer.message_2, m, edge_attr)
        aggregated = h.new_zeros(h.shape).index_add(0, dst, m)
        update = reference_block(layer.update_1, torch.cat([h, aggregated], dim=1), node_attr)
        h = h + reference_block(layer.update_2, update, node_attr)
    return pos + reference_block(core.pre_2, reference_block(core.pre_1, h, node_attr), node_attr)


def test_nbody_model_equals_the_reference_equations_on_real_systems(systems):
    """The default N-body SEGNN (the paper's 4 × 64, lmax 1) computes the reference code's function on six
    real charged systems, float64; each of the old conventions alone changes it. (Built in float64: a
    float32-built model keeps its per-block factors √k rounded to float32, ~1e-9 of the output.)"""
    torch.manual_seed(0)
    cfg = SEGNNDynamicsConfig(optimize_einsums=False)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = SEGNNDynamics(cfg).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    with torch.no_grad():
        expected = reference_segnn(model, systems)
        assert float((expected - systems.pos).abs().mean()) > 0.05  # displacements at the reference's scale
        assert_close(model(systems), expected, rtol=1e-10)
        for field, old in OLD_CONVENTIONS.items():
            other = SEGNNDynamics(replace(cfg, **{field: old})).double().eval()  # the same weights
            other.load_state_dict(model.state_dict())
            assert float((other(systems) - expected).abs().max()) > 1e-3, field


def test_the_gate_is_e3nns_gate_as_the_reference_uses_it():
    """The reference's gates are e3nn's ``Gate`` (scalars, gates, gated irreps in that order), whose SiLU and
    sigmoid are scaled by a second-moment constant e3nn estimates from 10⁶ samples; the model uses the
    exact constant, so the two agree to e3nn's sampling error."""
    from e3nn.nn import Gate

    reference = Gate("4x0e", [torch.nn.functional.silu], "2x0e", [torch.sigmoid], "2x1o")
    ours = SteerableLinear(o3.Irreps("4x0e + 2x1o"), sh_irreps(1), o3.Irreps("4x0e + 2x1o"), gate=True).gate
    x = torch.randn(50, 4 + 2 + 6, generator=torch.Generator().manual_seed(0))
    assert_close(ours(x), reference(x), rtol=2e-3)
    assert ours.c_silu == pytest.approx(second_moment_constant(torch.nn.functional.silu), rel=1e-9)
    assert ours.c_sigmoid == pytest.approx(second_moment_constant(torch.sigmoid), rel=1e-9)


# ---------------------------------------------------------------- training


def test_a_short_nbody_training_reduces_the_loss_and_stays_finite(nbody_cache: Path):
    """150 Adam steps (lr 2e-3, batch 20) on 100 real systems, float32: the loss falls, the test MSE
    ends below half of "nothing moves"."""
    torch.manual_seed(0)
    model = build_model("segnn_dynamics", SEGNNDynamicsConfig(hidden=16, layers=2, optimize_einsums=False))
    train_batch = split_batch(nbody_cache, "train")
    test_batch = split_batch(nbody_cache, "test")
    baseline = float((test_batch.pos - test_batch.field("nodes/target_pos")).pow(2).mean())  # nothing moves
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-12)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):  # 30 epochs × 5 batches = 150 steps
        order = torch.randperm(train_batch.num_graphs, generator=gen)
        for chunk in order.split(20):
            nodes = (chunk.unsqueeze(1) * 5 + torch.arange(5)).reshape(-1)
            batch = replace(
                train_batch,
                num_graphs=len(chunk),
                pos=train_batch.pos[nodes],
                fields=nodes_of(train_batch, nodes),
                node_graph=torch.arange(len(chunk)).repeat_interleave(5),
                node_feat=train_batch.node_feat[nodes],
            )
            loss = (model(batch) - batch.field("nodes/target_pos")).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert last < 0.5 * first, (first, last)
    model.eval()
    with torch.no_grad():
        test_mse = float((model(test_batch) - test_batch.field("nodes/target_pos")).pow(2).mean())
    assert test_mse < 0.5 * baseline, (test_mse, baseline)


def tiny(cache: Path, out: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        cache=str(cache),
        model="segnn",
        out=str(out),
        epochs=2,
        batch_size=20,
        hidden=8,
        layers=2,
        lr=1e-3,
        progress=False,
        model_options=("optimize_einsums=false",),
    )
    return replace(base, **changes)


def test_cli_trains_and_evaluates_segnn_on_an_nbody_cache(nbody_cache: Path, tmp_path: Path):
    out = tmp_path / "nbody-segnn"
    r = runner.invoke(
        app,
        [
            "train",
            "--cache",
            str(nbody_cache),
            "--model",
            "segnn",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--layers",
            "2",
            "--batch-size",
            "20",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    trained = load_trained(out)
    assert (trained.meta.model, trained.meta.task) == ("segnn", "positions") and isinstance(
        trained.model, SEGNNDynamics
    )
    assert trained.model.config.hidden == 8 and trained.task.target == "positions"
    assert trained.model.config.optimize_einsums  # the default path
    saved = json.loads((out / "result.json").read_text())
    js = json.loads(runner.invoke(app, ["evaluate", str(out), "--json"]).stdout)
    assert js["metric"] == "MSE" and js["mse"] == pytest.approx(saved["test_mse"], rel=1e-12)
    assert math.isfinite(saved["test_mse"])
    r = runner.invoke(app, ["train", "--resume", str(out), "--no-progress"])
    assert r.exit_code == 0 and "resuming" in r.stdout


def test_an_interrupted_segnn_run_resumes_exactly(nbody_cache: Path, tmp_path: Path):
    config = tiny(nbody_cache, tmp_path / "a")
    whole = train(config)
    split = replace(config, out=str(tmp_path / "b"))
    assert train(split, stop_after_epoch=1).stopped == "interrupted"
    resumed = train(split, resume=True)
    ra, rb = read_records(tmp_path / "a"), read_records(tmp_path / "b")
    assert [(r.epoch, r.train_loss, r.valid_error) for r in ra] == [(r.epoch, r.train_loss, r.valid_error) for r in rb]
    assert resumed.test_error == whole.test_error
    assert evaluate_run(tmp_path / "b", "test", device="cpu").value == pytest.approx(whole.test_error, rel=1e-12)


def test_segnn_position_runs_clip_no_gradient_by_default(nbody_cache: Path, tmp_path: Path, qm9_cache: Path):
    """The reference clips nothing: SEGNN on a positions cache resolves --clip to 0 and records it;
    other models, and SEGNN on QM9, keep 10; an explicit --clip wins."""
    opts = ("optimize_einsums=false",)
    segnn = Trainer(
        TrainConfig(cache=str(nbody_cache), model="segnn", out=str(tmp_path / "s"), progress=False, model_options=opts)
    )
    assert segnn.config.clip == 0.0 and TrainConfig.load(tmp_path / "s").clip == 0.0
    egnn = TrainConfig(cache=str(nbody_cache), model="egnn", out=str(tmp_path / "e"), progress=False)
    assert Trainer(egnn).config.clip == 10.0
    clipped = TrainConfig(
        cache=str(nbody_cache), model="segnn", out=str(tmp_path / "c"), clip=5.0, progress=False, model_options=opts
    )
    assert Trainer(clipped).config.clip == 5.0
    assert TrainConfig(cache=str(qm9_cache), target="U0", model="segnn").resolved().clip == 10.0


def test_a_segnn_run_saved_before_the_reference_conventions_keeps_its_model(nbody_cache: Path, tmp_path: Path):
    """A run saved before attr_normalization, relative_vector and output_init_scale existed (mean
    aggregation recorded, gradients clipped at 10): evaluate gives the same numbers and --resume
    continues it with its own model and clipping, not today's defaults."""
    out = tmp_path / "old"
    old = [f"{k}={v}" for k, v in OLD_CONVENTIONS.items()] + ["output_init_scale=0.001"]
    config = tiny(nbody_cache, out, clip=10.0, model_options=("optimize_einsums=false", *old))
    train(config, stop_after_epoch=1)
    before = evaluate_run(out, "test", device="cpu").value
    saved = json.loads((out / "config.json").read_text())  # rewrite the run as the empcn before the fields saved it
    saved["model_options"] = ["optimize_einsums=false", "aggregation=mean"]
    (out / "config.json").write_text(json.dumps(saved))
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(out / name)
        state["config"]["model_options"] = saved["model_options"]  # the run's one configuration, as config.json
        for field in ("attr_normalization", "relative_vector", "output_init_scale"):
            del state["meta"]["model_config"][field]
        torch.save(state, out / name)
    assert evaluate_run(out, "test", device="cpu").value == before
    r = runner.invoke(app, ["train", "--resume", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [rec.epoch for rec in read_records(out)] == [1, 2] and TrainConfig.load(out).clip == 10.0
    resumed = load_trained(out, "last.pt").model.config
    assert (resumed.aggregation, resumed.attr_normalization, resumed.relative_vector, resumed.output_init_scale) == (
        "mean",
        "component",
        "x_i-x_j",
        1e-3,
    )


def test_cli_trains_segnn_on_qm9(qm9_cache: Path, tmp_path: Path):
    out = tmp_path / "u0-segnn"
    r = runner.invoke(
        app,
        [
            "train",
            "--cache",
            str(qm9_cache),
            "--target",
            "U0",
            "--model",
            "segnn",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--layers",
            "2",
            "--batch-size",
            "32",
            "--no-progress",
            "--model-option",
            "optimize_einsums=false",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "test MAE" in r.stdout and "meV" in r.stdout
    trained = load_trained(out)
    assert (trained.meta.model, trained.meta.task) == ("segnn", "scalar") and isinstance(trained.model, SEGNN)
    assert trained.model.config.cutoff == 2.0 and trained.model.config.lmax == 2
    assert trained.model.config.optimize_einsums is False
    js = json.loads(runner.invoke(app, ["evaluate", str(out), "--json"]).stdout)
    assert js["unit"] == "meV" and js["mae"] == pytest.approx(
        json.loads((out / "result.json").read_text())["test_mae"], rel=1e-12
    )
    # predict: an xyz file and the same molecule rotated and moved give the same value
    water = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
    rot = random_rotation(torch.Generator().manual_seed(8)).numpy()
    files = []
    for k, xyz in enumerate((water, water @ rot.T + np.array([1.5, -3.0, 0.25]))):
        path = tmp_path / f"water{k}.xyz"
        path.write_text(
            "3\nwater\n" + "".join(f"{el} {x:.10f} {y:.10f} {z:.10f}\n" for el, (x, y, z) in zip("OHH", xyz))
        )
        files.append(str(path))
    listed = json.loads(runner.invoke(app, ["predict", str(out), *files, "--json", "--device", "cpu"]).stdout)
    assert [d["unit"] for d in listed] == ["meV", "meV"] and math.isfinite(listed[0]["value"])
    assert listed[1]["value"] == pytest.approx(listed[0]["value"], rel=1e-5)  # float32 model


DDP_WORKER = """
import sys
import torch
from empcn.train.config import TrainConfig
from empcn.train.loop import Trainer, shutdown_quietly

cache, out, probe = sys.argv[1:4]
config = TrainConfig(cache=cache, model="segnn", out=out, epochs=1, batch_size=10, hidden=8, layers=2, lr=1e-3,
                     progress=False, seed=3, model_options=("optimize_einsums=false",))
trainer = Trainer(config)
result = trainer.run()
torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, f"{probe}/weights-{trainer.env.rank}.pt")
with open(f"{probe}/mse-{trainer.env.rank}.txt", "w") as f:
    f.write(repr(result.test_error))
shutdown_quietly(trainer.env)
"""


def test_two_gloo_ranks_train_the_same_segnn(nbody_cache: Path, tmp_path: Path):
    """DDP (gloo, CPU, 2 processes): both ranks end with identical SEGNN weights and the same test MSE."""
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    probe = tmp_path / "probe"
    probe.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(nbody_cache),
        str(tmp_path / "run"),
        str(probe),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = [torch.load(probe / f"weights-{r}.pt", weights_only=True) for r in range(2)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    mse = [float((probe / f"mse-{r}.txt").read_text()) for r in range(2)]
    assert mse[0] == mse[1] and math.isfinite(mse[0])
    assert [r.epoch for r in read_records(tmp_path / "run")] == [1]


def test_float32_weights_loaded_into_a_float64_model_stay_exactly_equivariant(systems):
    """A float32 state dict holds float32-rounded Clebsch–Gordan constants; loading recomputes them.
    (lmax 2: with lmax 1 every path is a scalar product e3nn writes without constants.)"""
    cfg = SEGNNDynamicsConfig(hidden=12, layers=2, lmax=2, lmax_attr=2, optimize_einsums=False)
    torch.manual_seed(0)
    saved = SEGNNDynamics(cfg).state_dict()
    assert any("_w3j_" in k and v.dtype == torch.float32 for k, v in saved.items())
    model = SEGNNDynamics(cfg).double().eval()
    model.load_state_dict(saved)
    base = model(systems)
    matrix, shift = orthogonal_maps(seed=10)[3][1:]
    assert_close(model(moved(systems, matrix, shift)), base @ matrix.T + shift, rtol=1e-12)
