"""Geometric invariants: closed forms, real QM9 rings, E(3) invariance, dtypes, empty inputs, gradients."""

from __future__ import annotations

import ast
import csv
import json
import math

import numpy as np
import pytest
import torch
from helpers import qm9pack_csv

from empcn.geometry import (
    RingGeometry,
    cell_barycentres,
    edge_lengths,
    pair_distances,
    planned_ring_geometry,
    ring_geometry,
    ring_plan,
)

QM9_CSV = qm9pack_csv()


def regular_polygon(n: int, side: float, z: float = 0.0) -> torch.Tensor:
    """(n, 3) float64 vertices of a regular n-gon of side ``side`` in cyclic order."""
    circum = side / (2 * math.sin(math.pi / n))
    t = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([circum * torch.cos(t), circum * torch.sin(t), torch.full_like(t, z)], dim=1)


def rings_of(*positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Concatenate rings given as (g, 3) vertex arrays: pos, ring_node, ring_of, R."""
    pos = torch.cat(positions)
    sizes = torch.tensor([p.shape[0] for p in positions])
    ring_of = torch.repeat_interleave(torch.arange(len(positions)), sizes)
    return pos, torch.arange(pos.shape[0]), ring_of, len(positions)


def random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def heron(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Triangle area from its corners by Heron's formula (independent of the cross product)."""
    x, y, z = np.linalg.norm(b - a), np.linalg.norm(c - b), np.linalg.norm(a - c)
    s = (x + y + z) / 2
    return math.sqrt(max(s * (s - x) * (s - y) * (s - z), 0.0))


def fan_area(vertices: np.ndarray) -> float:
    c = vertices.mean(0)
    g = len(vertices)
    return sum(heron(c, vertices[k], vertices[(k + 1) % g]) for k in range(g))


def chair_cyclohexane(bond: float = 1.53, tetra_deg: float = 111.0) -> np.ndarray:
    """Chair C6 ring: alternating ±h out of the mean plane, every C–C = ``bond``, every C–C–C = ``tetra_deg``."""
    # Vertices at angle 60°·k on a circle of radius r, z = ±h. Solve for r, h from bond and angle.
    theta = math.radians(tetra_deg)
    # |x_k − x_{k+1}|² = r² + 4h² = bond², |x_k − x_{k+2}|² = 3r² = 2 bond²(1 − cos θ)
    r = math.sqrt(2 * bond**2 * (1 - math.cos(theta)) / 3)
    h = math.sqrt((bond**2 - r**2) / 4)
    k = np.arange(6)
    return np.stack([r * np.cos(k * np.pi / 3), r * np.sin(k * np.pi / 3), h * (-1.0) ** k], axis=1)


# ---------------------------------------------------------------- closed forms


def test_edge_lengths_345() -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 12.0]], dtype=torch.float64)
    e = torch.tensor([[0, 1], [1, 2], [0, 2]])
    torch.testing.assert_close(edge_lengths(pos, e), torch.tensor([5.0, 12.0, 13.0], dtype=torch.float64))


@pytest.mark.parametrize("a", [1.0, 1.39, 2.5])
def test_regular_polygons_closed_form(a: float) -> None:
    hexagon = regular_polygon(6, a)
    square = regular_polygon(4, a) + torch.tensor([10.0, 0.0, 0.0], dtype=torch.float64)
    triangle = regular_polygon(3, a) + torch.tensor([0.0, -7.0, 3.0], dtype=torch.float64)
    pos, ring_node, ring_of, r = rings_of(hexagon, square, triangle)
    geo = ring_geometry(pos, ring_node, ring_of, r)

    assert isinstance(geo, RingGeometry)
    expect_area = [3 * math.sqrt(3) / 2 * a**2, a**2, math.sqrt(3) / 4 * a**2]
    expect_perimeter = [6 * a, 4 * a, 3 * a]
    expect_radius = [a, a * math.sqrt(2) / 2, a / 2]
    f64 = dict(dtype=torch.float64)
    torch.testing.assert_close(geo.area, torch.tensor(expect_area, **f64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(geo.perimeter, torch.tensor(expect_perimeter, **f64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(geo.radius, torch.tensor(expect_radius, **f64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(geo.size, torch.tensor([6.0, 4.0, 3.0], **f64))
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, -7.0, 3.0]], **f64)
    torch.testing.assert_close(geo.barycentre, centres, rtol=0, atol=1e-12)


def test_non_planar_chair_area_is_sum_of_fan_triangles() -> None:
    chair = chair_cyclohexane()
    pos = torch.from_numpy(chair)
    geo = ring_geometry(pos, torch.arange(6), torch.zeros(6, dtype=torch.long), 1)
    assert geo.area.item() == pytest.approx(fan_area(chair), rel=1e-12)
    # puckering makes the fan area differ from the planar hexagon of the same side
    assert geo.area.item() != pytest.approx(3 * math.sqrt(3) / 2 * 1.53**2, rel=1e-3)
    assert geo.perimeter.item() == pytest.approx(6 * 1.53, rel=1e-12)
    # 1,4 distance (the largest) = 2r
    assert geo.radius.item() == pytest.approx(0.5 * np.linalg.norm(chair[0] - chair[3]), rel=1e-12)


def test_vertex_order_matters_through_slots_not_node_ids() -> None:
    """The ring follows slot order: the same hexagon listed with shuffled node ids is unchanged."""
    hexagon = regular_polygon(6, 1.0)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])  # node perm[k] holds vertex k
    pos = torch.empty_like(hexagon)
    pos[perm] = hexagon
    geo = ring_geometry(pos, perm, torch.zeros(6, dtype=torch.long), 1)
    assert geo.area.item() == pytest.approx(3 * math.sqrt(3) / 2, rel=1e-12)
    assert geo.perimeter.item() == pytest.approx(6.0, rel=1e-12)


# ---------------------------------------------------------------- real QM9 rings


def _qm9_rows(indices: set[int]) -> dict[int, tuple[list[str], np.ndarray]]:
    rows: dict[int, tuple[list[str], np.ndarray]] = {}
    with QM9_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            idx = int(row["Index"])
            if idx in indices:
                rows[idx] = (ast.literal_eval(row["Elements"]), np.array(json.loads(row["XYZ_Ang"])))
            if len(rows) == len(indices) or idx > max(indices):
                break
    return rows


def _carbon_cycle(elements: list[str], xyz: np.ndarray) -> list[int]:
    """Cyclic order of a 6-carbon ring from C–C distances (< 1.7 Å)."""
    carbons = [i for i, el in enumerate(elements) if el == "C"]
    bonded = {i: [j for j in carbons if j != i and np.linalg.norm(xyz[i] - xyz[j]) < 1.7] for i in carbons}
    assert all(len(v) == 2 for v in bonded.values()), "expected a single 6-carbon ring"
    cycle = [carbons[0], bonded[carbons[0]][0]]
    while len(cycle) < len(carbons):
        cycle.append(next(j for j in bonded[cycle[-1]] if j != cycle[-2]))
    return cycle


@pytest.fixture(scope="module")
def qm9_rings() -> dict[str, tuple[np.ndarray, list[int]]]:
    rows = _qm9_rows({214, 658})  # 214 benzene C1=CC=CC=C1, 658 cyclohexane C1CCCCC1
    return {name: (rows[i][1], _carbon_cycle(*rows[i])) for name, i in (("benzene", 214), ("cyclohexane", 658))}


def test_qm9_benzene_is_a_regular_hexagon(qm9_rings) -> None:
    xyz, cycle = qm9_rings["benzene"]
    pos = torch.from_numpy(xyz)
    geo = ring_geometry(pos, torch.tensor(cycle), torch.zeros(6, dtype=torch.long), 1)
    bonds = np.linalg.norm(xyz[cycle] - xyz[np.roll(cycle, -1)], axis=1)
    assert 1.38 < bonds.mean() < 1.41  # aromatic C–C, Å
    a = bonds.mean()
    assert geo.area.item() == pytest.approx(3 * math.sqrt(3) / 2 * a**2, rel=1e-3)
    assert geo.perimeter.item() == pytest.approx(bonds.sum(), rel=1e-12)
    assert geo.radius.item() == pytest.approx(a, rel=1e-3)
    np.testing.assert_allclose(geo.barycentre[0].numpy(), xyz[cycle].mean(0), atol=1e-12)


def test_qm9_cyclohexane_chair_area(qm9_rings) -> None:
    xyz, cycle = qm9_rings["cyclohexane"]
    geo = ring_geometry(torch.from_numpy(xyz), torch.tensor(cycle), torch.zeros(6, dtype=torch.long), 1)
    assert geo.area.item() == pytest.approx(fan_area(xyz[cycle]), rel=1e-10)
    # the chair is puckered: out-of-plane deviations of alternating sign
    ring = xyz[cycle] - xyz[cycle].mean(0)
    normal = np.linalg.svd(ring)[2][-1]
    heights = ring @ normal
    assert np.all(np.abs(heights) > 0.2) and np.all(np.sign(heights) == -np.sign(np.roll(heights, 1)))


# ---------------------------------------------------------------- symmetry


def _irregular_rings(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Random positions, some edges and three rings (sizes 5, 3, 7) sharing nodes, float64."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(12, 3, generator=g, dtype=torch.float64) * 2
    ring_node = torch.tensor([0, 1, 2, 3, 4, 4, 3, 5, 6, 7, 8, 9, 10, 11, 2])
    ring_of = torch.tensor([0] * 5 + [1] * 3 + [2] * 7)
    edge_index = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [0, 4], [4, 5], [6, 11]])
    return pos, edge_index, ring_node, ring_of, 3


@pytest.mark.parametrize("reflect", [False, True])
def test_invariance_and_equivariance_under_e3(reflect: bool) -> None:
    pos, edge_index, ring_node, ring_of, r = _irregular_rings(0)
    q = random_orthogonal(1 + reflect, reflect)
    t = torch.tensor([3.0, -1.5, 7.25], dtype=torch.float64)
    moved = pos @ q.T + t

    before = ring_geometry(pos, ring_node, ring_of, r)
    after = ring_geometry(moved, ring_node, ring_of, r)
    for name in ("area", "perimeter", "radius", "size"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(after.barycentre, before.barycentre @ q.T + t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(edge_lengths(moved, edge_index), edge_lengths(pos, edge_index), rtol=1e-12, atol=1e-12)

    bary_before = cell_barycentres(pos, edge_index, before)
    bary_after = cell_barycentres(moved, edge_index, after)
    for b0, b1 in zip(bary_before, bary_after):
        torch.testing.assert_close(b1, b0 @ q.T + t, rtol=1e-12, atol=1e-12)
    index = torch.tensor([[0, 0], [1, 2], [2, 1], [6, 0]])  # edge -> ring pairs
    torch.testing.assert_close(
        pair_distances(bary_after[1], bary_after[2], index),
        pair_distances(bary_before[1], bary_before[2], index),
        rtol=1e-12,
        atol=1e-12,
    )


def test_irregular_rings_match_direct_computation() -> None:
    pos, _, ring_node, ring_of, r = _irregular_rings(3)
    geo = ring_geometry(pos, ring_node, ring_of, r)
    x = pos.numpy()
    for k in range(r):
        v = x[ring_node[ring_of == k].numpy()]
        assert geo.area[k].item() == pytest.approx(fan_area(v), rel=1e-10)
        assert geo.perimeter[k].item() == pytest.approx(np.linalg.norm(v - np.roll(v, -1, 0), axis=1).sum(), rel=1e-12)
        diam = max(np.linalg.norm(v[i] - v[j]) for i in range(len(v)) for j in range(len(v)))
        assert geo.radius[k].item() == pytest.approx(diam / 2, rel=1e-12)


def test_a_ring_plan_reused_at_moved_positions_gives_their_geometry() -> None:
    """Models build the topology part once per batch and recompute the rest per layer: the same numbers
    as the one-call form at every positions, and the same gradient."""
    pos, _, ring_node, ring_of, r = _irregular_rings(4)
    plan = ring_plan(ring_node, ring_of, r)
    for step in range(3):
        x = (pos + 0.3 * step * torch.randn_like(pos)).requires_grad_(True)
        planned, direct = planned_ring_geometry(x, plan), ring_geometry(x, ring_node, ring_of, r)
        for name in ("barycentre", "area", "perimeter", "radius", "size"):
            assert torch.equal(getattr(planned, name), getattr(direct, name)), name
        g1 = torch.autograd.grad((planned.area + planned.radius).sum(), x)[0]
        g2 = torch.autograd.grad((direct.area + direct.radius).sum(), x)[0]
        assert torch.equal(g1, g2)


def test_cell_barycentres_and_pair_distances() -> None:
    a = 1.4
    hexagon = regular_polygon(6, a)
    edge_index = torch.tensor([[k, (k + 1) % 6] for k in range(6)])
    geo = ring_geometry(hexagon, torch.arange(6), torch.zeros(6, dtype=torch.long), 1)
    nodes, mids, rings = cell_barycentres(hexagon, edge_index, geo)
    assert nodes is hexagon
    torch.testing.assert_close(mids, (hexagon + hexagon.roll(-1, 0)) / 2)
    # node -> node over an edge = edge length; ring -> vertex = circumradius = a; edge -> ring = apothem
    torch.testing.assert_close(pair_distances(nodes, nodes, edge_index), edge_lengths(hexagon, edge_index))
    ring_to_vertex = pair_distances(rings, nodes, torch.stack([torch.zeros(6, dtype=torch.long), torch.arange(6)], 1))
    torch.testing.assert_close(ring_to_vertex, torch.full((6,), a, dtype=torch.float64))
    edge_to_ring = pair_distances(mids, rings, torch.stack([torch.arange(6), torch.zeros(6, dtype=torch.long)], 1))
    torch.testing.assert_close(edge_to_ring, torch.full((6,), a * math.sqrt(3) / 2, dtype=torch.float64))


# ---------------------------------------------------------------- dtypes, devices, empty, gradients


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_pos(dtype: torch.dtype, device: str) -> None:
    pos, edge_index, ring_node, ring_of, r = _irregular_rings(5)
    ref = ring_geometry(pos, ring_node, ring_of, r)
    p = pos.to(device=device, dtype=dtype)
    geo = ring_geometry(p, ring_node.to(device), ring_of.to(device), r)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for name in ("barycentre", "area", "perimeter", "radius", "size"):
        value = getattr(geo, name)
        assert value.dtype == dtype and value.device.type == device
        torch.testing.assert_close(value.cpu().double(), getattr(ref, name), **tol)
    lengths = edge_lengths(p, edge_index.to(device))
    assert lengths.dtype == dtype and lengths.device.type == device


def test_empty_inputs() -> None:
    pos = torch.randn(4, 3, dtype=torch.float64)
    none = torch.zeros(0, dtype=torch.long)
    geo = ring_geometry(pos, none, none, 0)
    for name, shape in (("barycentre", (0, 3)), ("area", (0,)), ("perimeter", (0,)), ("radius", (0,)), ("size", (0,))):
        assert getattr(geo, name).shape == shape
    no_edges = torch.zeros(0, 2, dtype=torch.long)
    assert edge_lengths(pos, no_edges).shape == (0,)
    nodes, mids, rings = cell_barycentres(pos, no_edges, geo)
    assert mids.shape == (0, 3) and rings.shape == (0, 3) and nodes.shape == (4, 3)
    assert pair_distances(pos, pos, no_edges).shape == (0,)
    # no nodes at all
    empty_pos = torch.zeros(0, 3)
    assert ring_geometry(empty_pos, none, none, 0).area.shape == (0,)
    assert edge_lengths(empty_pos, no_edges).shape == (0,)


def test_gradients_flow_and_match_finite_differences() -> None:
    pos, edge_index, ring_node, ring_of, r = _irregular_rings(7)
    pos = pos.clone().requires_grad_(True)
    geo = ring_geometry(pos, ring_node, ring_of, r)
    total = geo.area.sum() + geo.perimeter.sum() + geo.radius.sum() + edge_lengths(pos, edge_index).sum()
    total.backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()
    assert (pos.grad[ring_node].abs().sum(1) > 0).all()  # every ring vertex gets a gradient

    def invariants(p: torch.Tensor) -> torch.Tensor:
        g = ring_geometry(p, ring_node, ring_of, r)
        nodes, mids, rings = cell_barycentres(p, edge_index, g)
        d = pair_distances(mids, rings, torch.tensor([[0, 0], [5, 1], [6, 2]]))
        return torch.cat([g.area, g.perimeter, g.radius, edge_lengths(p, edge_index), d])

    assert torch.autograd.gradcheck(invariants, (pos.detach().clone().requires_grad_(True),))


def test_degenerate_ring_has_finite_gradient() -> None:
    """All vertices on a line: zero-area triangles must not give NaN gradients."""
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64, requires_grad=True)
    geo = ring_geometry(pos, torch.arange(3), torch.zeros(3, dtype=torch.long), 1)
    assert geo.area.item() == 0.0
    geo.area.sum().backward()
    assert torch.isfinite(pos.grad).all()


# ---------------------------------------------------------------- bad input


def test_bad_input_messages() -> None:
    pos = regular_polygon(6, 1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        ring_geometry(pos, torch.arange(6), torch.tensor([0, 0, 1, 1, 0, 0]), 2)
    with pytest.raises(ValueError, match="outside"):
        ring_geometry(pos, torch.arange(6), torch.zeros(6, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="node indices outside"):
        ring_geometry(pos, torch.arange(1, 7), torch.zeros(6, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"pos must have shape \(N, 3\)"):
        edge_lengths(pos[:, :2], torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"edge_index must have shape \(P, 2\)"):
        edge_lengths(pos, torch.tensor([0, 1]))
