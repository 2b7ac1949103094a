"""N-body position models: E(3) and permutation equivariance, recomputed invariants, batching, gradients.

Batches come from real (short) charged and gravity simulations through the production path:
``empcn.lift.nbody.build_shard`` (cells, neighbourhoods, stored invariants) → ``sample_from_shard``
→ ``empcn.train.collate.collate`` → float64.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import assert_close, orthogonal_maps

from empcn import geometry
from empcn.cache import sample_from_shard
from empcn.data.nbody import ChargedConfig, GravityConfig, NBodySplit, generate_split
from empcn.lift.complex import NEIGHBOURHOODS
from empcn.lift.nbody import NBodyLiftConfig, NBodySamples, build_shard
from empcn.train.batch import ComplexBatch
from empcn.train.collate import CollateSpec, collate
from empcn.train.models.decoupled_dynamics import DecoupledDynamicsConfig
from empcn.train.models.egnn_dynamics import EGNNDynamicsConfig
from empcn.train.models.empcn_dynamics import EMPCNDynamicsConfig, layer_plan
from empcn.train.models.layers import GatedMessage
from empcn.train.models.registry import build_model, builtin_variants, config_class, saved_name
from empcn.train.models.segnn import SEGNNDynamicsConfig

RTOL = 1e-9
POSITION_FIELDS = ("nodes/vel", "nodes/charge", "nodes/mass", "nodes/target_pos")
SPEC = CollateSpec(
    neighbourhoods={s.name: (s.sender_rank, s.receiver_rank) for s in NEIGHBOURHOODS}, fields=POSITION_FIELDS
)
CHARGED = ChargedConfig(num_steps=300, save_every=100)
GRAVITY = GravityConfig(num_particles=12, num_steps=20, save_every=10)
SMALL = {
    "egnn_dynamics": EGNNDynamicsConfig(hidden=16, layers=3),
    "empcn_dynamics": EMPCNDynamicsConfig(hidden=16, layers=4, inv_size=8),
    "decoupled_dynamics": DecoupledDynamicsConfig(hidden=16, ring_hidden=8, layers=3, inv_size=8),
    "segnn_dynamics": SEGNNDynamicsConfig(hidden=12, layers=2, optimize_einsums=False),
}
NAMES = sorted(saved_name(name, task) for name, task in builtin_variants() if task == "positions")
real_edge, real_ring, real_bary = geometry.edge_lengths, geometry.planned_ring_geometry, geometry.cell_barycentres


def small_model(name: str, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = replace(SMALL[name], **changes) if changes else SMALL[name]
    model = build_model(name, cfg).double().eval()
    with torch.no_grad():  # φ_x, φ_w start at ~1e-3 scale: enlarge them so the position messages matter in tests
        for module in model.modules():
            for name_ in ("coord_mlp", "rel_vel_mlp"):
                weight_mlp = getattr(module, name_, None)
                if isinstance(weight_mlp, torch.nn.Sequential):
                    weight_mlp[-1].weight.mul_(300.0)
    return model


def lifted(pos, vel, scalar, target, system: str = "charged", k: int = 4) -> list:
    """Samples as ``empcn.open_cache`` would return them, without writing files."""
    n = len(pos)
    samples = NBodySamples(
        pos=np.asarray(pos, np.float32),
        vel=np.asarray(vel, np.float32),
        scalar=np.asarray(scalar, np.float32),
        target_pos=np.asarray(target, np.float32),
        split=np.zeros(n, np.uint8),
        sim=np.arange(n),
        horizon=1.0,
    )
    if system == "charged":
        cfg = NBodyLiftConfig(
            system="charged", splits=(NBodySplit("train", n, 0),), simulator=CHARGED, frame_in=1, frame_target=2
        )
    else:
        cfg = NBodyLiftConfig(
            system="gravity", splits=(NBodySplit("train", n, 0),), simulator=GRAVITY, frame_in=0, frame_target=1, k=k
        )
    content = build_shard(samples, cfg, 0, n)
    return [sample_from_shard(content, r) for r in range(n)]


def to_batch(samples: list) -> ComplexBatch:
    return collate(samples, SPEC).to("cpu", torch.float64)


@pytest.fixture(scope="module")
def charged() -> dict[str, np.ndarray]:
    a = generate_split(NBodySplit("train", 5, 11), CHARGED, frame_in=1, frame_target=2)
    return {"pos": a.pos_in, "vel": a.vel_in, "scalar": a.charge, "target": a.target_pos}


@pytest.fixture(scope="module")
def gravity() -> dict[str, np.ndarray]:
    a = generate_split(NBodySplit("train", 3, 12), GRAVITY, frame_in=0, frame_target=1)
    return {"pos": a.pos_in, "vel": a.vel_in, "scalar": a.mass, "target": a.target_pos}


@pytest.fixture(scope="module")
def batch(charged) -> ComplexBatch:
    return to_batch(lifted(**charged))


def with_fields(batch: ComplexBatch, **changes) -> ComplexBatch:
    """``batch`` with the fields ``nodes/<name>`` of ``changes`` replaced (``None``: removed)."""
    fields = {**batch.fields, **{f"nodes/{k}": v for k, v in changes.items()}}
    return replace(batch, fields={k: v for k, v in fields.items() if v is not None})


def moved(batch: ComplexBatch, matrix: torch.Tensor, shift: torch.Tensor) -> ComplexBatch:
    """Positions and targets map by x → Rx + t, velocities by v → Rv (they do not translate)."""
    moved_pos = replace(batch, pos=batch.pos @ matrix.T + shift)
    return with_fields(
        moved_pos,
        vel=batch.field("nodes/vel") @ matrix.T,
        target_pos=batch.field("nodes/target_pos") @ matrix.T + shift,
    )


# ---------------------------------------------------------------- symmetries


@pytest.mark.parametrize("name", NAMES)
def test_positions_are_e3_equivariant(name, batch):
    model = small_model(name)
    base = model(batch)
    assert base.shape == (batch.num_nodes, 3) and base.dtype == torch.float64
    for label, matrix, shift in orthogonal_maps(seed=3):
        assert_close(model(moved(batch, matrix, shift)), base @ matrix.T + shift), label


@pytest.mark.parametrize("name", NAMES)
def test_not_equivariant_to_non_isometries(name, batch):
    """Guard against vacuous tests: a shear of the inputs does not shear the output."""
    model = small_model(name)
    shear = torch.tensor([[1.0, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = model(moved(batch, shear, torch.zeros(3, dtype=torch.float64)))
    assert float((out - model(batch) @ shear.T).detach().abs().max()) > 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_relabelling_particles_permutes_the_prediction(name, charged):
    """The complex is rebuilt from permuted particles (edges, rings, neighbourhoods all renumbered)."""
    model = small_model(name)
    rng = np.random.default_rng(5)
    for s in range(3):
        one = {k: v[s : s + 1] for k, v in charged.items()}
        perm = rng.permutation(5)
        permuted = {k: v[:, perm] for k, v in one.items()}
        base = model(to_batch(lifted(**one)))
        assert_close(model(to_batch(lifted(**permuted))), base[torch.from_numpy(perm)])


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_each_system_alone(name, charged):
    model = small_model(name)
    samples = lifted(**charged)
    alone = torch.cat([model(to_batch([s])) for s in samples])
    for order in ([0, 3], [4, 1, 2], [0, 1, 2, 3, 4]):
        together = model(to_batch([samples[k] for k in order]))
        assert_close(together, torch.cat([alone[5 * k : 5 * k + 5] for k in order]))


# ---------------------------------------------------------------- invariants come from positions


def garbage_invariants(batch: ComplexBatch) -> ComplexBatch:
    gen = torch.Generator().manual_seed(0)
    noise = lambda t: torch.rand(t.shape, generator=gen, dtype=t.dtype) * 50  # noqa: E731
    return replace(
        batch,
        edge_len=noise(batch.edge_len),
        ring_area=noise(batch.ring_area),
        ring_perimeter=noise(batch.ring_perimeter),
        ring_radius=noise(batch.ring_radius),
        ring_size=noise(batch.ring_size),
        nbr_dist={k: noise(v) for k, v in batch.nbr_dist.items()},
    )


@pytest.mark.parametrize("name", NAMES)
def test_stored_invariants_are_never_read(name, batch):
    """Every invariant is computed from positions, so garbage in the stored ones changes nothing at all."""
    model = small_model(name)
    assert torch.equal(model(garbage_invariants(batch)), model(batch))


def test_empcn_recomputes_cell_geometry_from_each_layers_positions(batch, monkeypatch):
    """Layer k's edge lengths, ring geometry and barycentres are those of layer k−1's output positions."""
    model = small_model("empcn_dynamics")
    seen: dict[str, list[torch.Tensor]] = {"edge": [], "ring": [], "bary": []}
    monkeypatch.setattr(geometry, "edge_lengths", lambda x, e: seen["edge"].append(x) or real_edge(x, e))
    monkeypatch.setattr(geometry, "planned_ring_geometry", lambda x, p: seen["ring"].append(x) or real_ring(x, p))
    monkeypatch.setattr(geometry, "cell_barycentres", lambda x, *a: seen["bary"].append(x) or real_bary(x, *a))
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o[1])) for layer in model.layers]
    final = model(batch)
    for hook in hooks:
        hook.remove()
    expected = [batch.pos] + outputs[:-1]
    for key, xs in seen.items():
        assert len(xs) == len(model.layers), key
        for x, want in zip(xs, expected):
            assert torch.equal(x, want), key
    assert torch.equal(outputs[-1], final)
    assert all(float((a - b).detach().abs().max()) > 1e-6 for a, b in zip(expected, expected[1:]))  # positions do move


def test_decoupled_ring_invariants_follow_the_moving_positions(batch, monkeypatch):
    model = small_model("decoupled_dynamics")
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(geometry, "planned_ring_geometry", lambda x, p: seen.append(x) or real_ring(x, p))
    model(batch)
    assert len(seen) == SMALL["decoupled_dynamics"].layers - 1  # the last layer has no ring part
    assert torch.equal(seen[0], batch.pos) and float((seen[1] - seen[0]).detach().abs().max()) > 1e-6


# ---------------------------------------------------------------- gravity / kNN complexes


@pytest.mark.parametrize("name", NAMES)
def test_gravity_knn_complex(name, gravity):
    """kNN cells (edges vary per system): equivariant and batch-consistent; masses are the node scalars."""
    samples = lifted(**gravity, system="gravity", k=4)
    batch = to_batch(samples)
    masses = torch.cat([torch.as_tensor(s["nodes/mass"], dtype=batch.pos.dtype) for s in samples])
    assert torch.equal(batch.field("nodes/mass"), masses) and not batch.has("nodes/charge") and batch.num_rings > 0
    changes = {"connectivity": "complex"} if name == "egnn_dynamics" else {}
    model = small_model(name, **changes)
    base = model(batch)
    matrix, shift = orthogonal_maps(seed=9)[3][1:]
    assert_close(model(moved(batch, matrix, shift)), base @ matrix.T + shift)
    assert_close(torch.cat([model(to_batch([s])) for s in samples]), base)


def test_empcn_edge_adjacency_choices_coincide_on_the_full_five_body_complex(batch):
    """On K5 with all triangles, lower and upper edge adjacency are the same pairs: same output."""
    upper = small_model("empcn_dynamics")
    lower = small_model("empcn_dynamics", edge_adjacency=("1_1_lower",))
    lower.load_state_dict({k.replace("1_1_upper", "1_1_lower"): v for k, v in upper.state_dict().items()})
    assert_close(lower(batch), upper(batch))


# ---------------------------------------------------------------- numerics, gradients, structure


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_and_are_finite(name, batch):
    model = small_model(name, dropout=0.1).train()
    torch.manual_seed(0)
    loss = (model(batch) - batch.field("nodes/target_pos")).pow(2).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert float(p.grad.abs().max()) > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64(name, batch):
    model = small_model(name)
    ref = model(batch)
    out = model.float()(batch.to("cpu", torch.float32))
    assert out.dtype == torch.float32
    assert_close(out.double(), ref, rtol=1e-4)


def test_gated_message_pairwise_equals_the_concatenated_form():
    torch.manual_seed(0)
    msg = GatedMessage(2 * 6 + 5, 6).double()
    gen = torch.Generator().manual_seed(1)
    h_r = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    h_s = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    recv, send = torch.tensor([0, 0, 3, 2, 1]), torch.tensor([6, 2, 2, 0, 5])
    inv = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    assert_close(msg.pairwise(h_r, h_s, recv, send, inv), msg(torch.cat([h_r[recv], h_s[send], inv], -1)))
    wide = GatedMessage(6 + 3 + 5, 6).double()  # blocks of different widths (ring and node features)
    g = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    assert_close(wide.pairwise(h_r, g, recv, send, inv), wide(torch.cat([h_r[recv], g[send], inv], -1)))
    with pytest.raises(ValueError, match="widths 6 \\+ 6 \\+ 5 for a first layer of width 14"):
        wide.pairwise(h_r, h_s, recv, send, inv)


def test_layer_plan_updates_only_what_later_layers_read():
    comms = ("0_0", "0_1", "1_0", "1_1_upper", "1_2", "2_1")
    assert layer_plan(comms, 4) == [
        (comms, (0, 1, 2)),
        (("0_0", "0_1", "1_0", "1_1_upper", "2_1"), (0, 1)),
        (("0_0", "1_0"), (0,)),
        (("0_0",), ()),
    ]
    assert layer_plan(comms, 1) == [(("0_0",), ())]


def test_decoupled_node_part_is_the_egnn_model():
    dec = build_model("decoupled_dynamics")
    egnn = build_model("egnn_dynamics")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    node, ring = dec.parameter_split()
    assert node == count(egnn) and node + ring == count(dec) and ring > 0


def test_registry_defaults_are_the_papers_settings_and_empcns_velocity_extensions():
    assert {n: (config_class(n)().hidden, config_class(n)().layers) for n in NAMES} == {
        "decoupled_dynamics": (64, 4),
        "egnn_dynamics": (64, 4),
        "empcn_dynamics": (66, 4),
        "segnn_dynamics": (64, 4),
    }
    assert config_class("empcn_dynamics")().dropout == 0.2
    # EGNN stays EGNN's model; EMPCN adds empcn's two velocity extensions (docs/models.md)
    assert not EGNNDynamicsConfig().velocity_messages and not DecoupledDynamicsConfig().velocity_messages
    assert EMPCNDynamicsConfig().velocity_invariants and EMPCNDynamicsConfig().velocity_messages
    assert EMPCNDynamicsConfig().communications == ("0_0", "0_1", "1_0", "1_1_upper", "1_2", "2_1")


def test_clear_errors(batch):
    with pytest.raises(ValueError, match="the batch field 'nodes/vel' must be"):
        small_model("egnn_dynamics")(with_fields(batch, vel=None))
    with pytest.raises(ValueError, match="one charge \\(or mass\\) per node"):
        small_model("empcn_dynamics")(with_fields(batch, charge=None))
    no_nbr = replace(batch, nbr={k: v for k, v in batch.nbr.items() if k != "1_2"})
    with pytest.raises(ValueError, match="no neighbourhood '1_2'"):
        small_model("empcn_dynamics")(no_nbr)
    with pytest.raises(ValueError, match="edge_adjacency"):
        EMPCNDynamicsConfig(edge_adjacency=("2_2_lower",))
    with pytest.raises(ValueError, match="coord_agg"):
        EGNNDynamicsConfig(coord_agg="max")
    assert all(dataclasses.is_dataclass(config_class(n)) for n in NAMES)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("empcn_dynamics", {"velocity_invariants": False, "velocity_messages": False}),
        ("empcn_dynamics", {"velocity_messages": False}),
        ("empcn_dynamics", {"velocity_invariants": False}),
        ("egnn_dynamics", {"velocity_messages": True}),
        ("decoupled_dynamics", {"velocity_messages": True}),
    ],
    ids=["empcn-paper", "empcn-invariants-only", "empcn-messages-only", "egnn-messages", "decoupled-messages"],
)
def test_velocity_options_keep_every_symmetry(batch, charged, name, options):
    """Every combination of the velocity extensions (EMPCN's default has both; the paper's model neither):
    E(3)-equivariant (positions and velocities rotate, only positions translate), permutation-equivariant,
    every parameter used."""
    model = small_model(name, **options)
    base = model(batch)
    for label, matrix, shift in orthogonal_maps(seed=4):
        assert_close(model(moved(batch, matrix, shift)), base @ matrix.T + shift), label
    one = {k: v[:1] for k, v in charged.items()}
    perm = np.random.default_rng(2).permutation(5)
    assert_close(
        model(to_batch(lifted(**{k: v[:, perm] for k, v in one.items()})))[:5],
        model(to_batch(lifted(**one)))[torch.from_numpy(perm)],
    )
    model.train()
    model(batch).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["empcn_dynamics", "egnn_dynamics", "decoupled_dynamics"])
def test_velocity_messages_only_add_the_relative_velocity_step(batch, name):
    """With φ_w's last layer zeroed the extended model is the plain one with the same weights; with φ_w
    non-zero the relative input velocities move the predicted positions."""
    extended, plain = small_model(name, velocity_messages=True), small_model(name, velocity_messages=False)
    state = {k: v for k, v in extended.state_dict().items() if "rel_vel_mlp" not in k}
    assert plain.load_state_dict(state, strict=True) is not None
    moved_by_term = extended(batch)
    with torch.no_grad():
        for module in extended.modules():
            if getattr(module, "rel_vel_mlp", None) is not None:
                module.rel_vel_mlp[-1].weight.zero_()
    assert_close(extended(batch), plain(batch))
    assert not torch.allclose(moved_by_term, plain(batch))
