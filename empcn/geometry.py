"""E(n)-invariant geometry of cells: edge lengths, ring area/perimeter/radius, cell barycentres.

The single definition used by ``empcn lift`` (CPU, float64, stored as float32) and by ``empcn train``
(any device, recomputed from moving positions for N-body / MoCap). Cells are read through their
barycentric subdivision, as in EMPCN (arXiv 2406.03145): a ring is the fan of triangles joining its
barycentre to each of its boundary edges, so its "area" is well defined even when it is not planar.

Everything is vectorised over cells (``index_add_`` / ``scatter_reduce_``), device- and dtype-agnostic
(outputs follow ``pos``), and differentiable with respect to ``pos``. Only torch is imported, so the
module is cheap to import from both stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "RingGeometry",
    "RingPlan",
    "cell_barycentres",
    "edge_lengths",
    "pair_distances",
    "planned_ring_geometry",
    "ring_geometry",
    "ring_plan",
]


def _check_pos(pos: Tensor) -> None:
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"geometry: pos must have shape (N, 3), got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"geometry: pos must be a floating tensor, got {pos.dtype}")


def _check_pairs(name: str, index: Tensor) -> None:
    if index.dim() != 2 or index.shape[1] != 2:
        raise ValueError(f"geometry: {name} must have shape (P, 2), got {tuple(index.shape)}")
    if index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"geometry: {name} must be an integer tensor, got {index.dtype}")


def _rows(t: Tensor, index: Tensor) -> Tensor:
    """``t[index]`` as ``index_select`` (the same values; its backward is a scatter-add, several times
    faster on CPU than advanced indexing's ``index_put_``)."""
    return t.index_select(0, index)


def edge_lengths(pos: Tensor, edge_index: Tensor) -> Tensor:
    """Length of every edge. ``pos: (N, 3)``, ``edge_index: (E, 2)`` node indices → ``(E,)``, unit of pos."""
    _check_pos(pos)
    _check_pairs("edge_index", edge_index)
    return torch.linalg.vector_norm(_rows(pos, edge_index[:, 1]) - _rows(pos, edge_index[:, 0]), dim=-1)


@dataclass
class RingGeometry:
    """Invariants of R rings (2-cells); every field follows the dtype/device of ``pos``."""

    barycentre: Tensor  # (R, 3) mean of the ring's vertices (equivariant, not invariant)
    area: Tensor  # (R,) Σ_k ½‖(x_k − c) × (x_{k+1} − c)‖, fan of triangles from the barycentre c
    perimeter: Tensor  # (R,) Σ_k ‖x_{k+1} − x_k‖ over the cyclic boundary
    radius: Tensor  # (R,) ½ · the largest distance between two vertices of the ring
    size: Tensor  # (R,) number of vertices, as a float


def _ring_slots(ring_of: Tensor, num_rings: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-ring sizes (R,) long, first slot of each ring (R,), and each slot's position in its ring (L,)."""
    sizes = torch.bincount(ring_of, minlength=num_rings)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(ring_of.shape[0], device=ring_of.device)
    return sizes, starts, slot - starts[ring_of]


def _validate_rings(pos: Tensor, ring_node: Tensor, ring_of: Tensor, num_rings: int) -> None:
    """Range and ordering checks of ring slots (they synchronise a GPU, hence optional in
    :func:`ring_geometry` and :func:`ring_plan`)."""
    if ring_node.dim() != 1 or ring_of.dim() != 1 or ring_node.shape != ring_of.shape:
        raise ValueError(
            "ring_geometry: ring_node and ring_of must be 1-D of equal length, got "
            f"{tuple(ring_node.shape)} and {tuple(ring_of.shape)}"
        )
    if ring_node.dtype != torch.int64 or ring_of.dtype != torch.int64:
        raise ValueError(f"ring_geometry: ring_node/ring_of must be int64, got {ring_node.dtype}/{ring_of.dtype}")
    if num_rings < 0:
        raise ValueError(f"ring_geometry: num_rings must be >= 0, got {num_rings}")
    if ring_of.numel() == 0:
        return
    if int(ring_of.min()) < 0 or int(ring_of.max()) >= num_rings:
        raise ValueError(f"ring_geometry: ring_of has ids outside [0, {num_rings})")
    if bool((ring_of[1:] < ring_of[:-1]).any()):
        raise ValueError("ring_geometry: ring_of must be non-decreasing (each ring's slots contiguous)")
    if int(ring_node.min()) < 0 or int(ring_node.max()) >= pos.shape[0]:
        raise ValueError(f"ring_geometry: ring_node has node indices outside [0, {pos.shape[0]})")


@dataclass
class RingPlan:
    """The topology part of :func:`ring_geometry`: index tensors that depend on the ring slots only, not
    on positions — built once per batch and reused by every layer that recomputes ring invariants from
    moved positions (and free of host synchronisation when reused, so a compiled layer stack can read it).
    """

    ring_node: Tensor  # (L,) node of each slot
    ring_of: Tensor  # (L,) ring of each slot
    num_rings: int
    sizes: Tensor  # (R,) long, vertices per ring
    succ: Tensor  # (L,) the next slot of the same ring (cyclic)
    first: Tensor  # (Q,) first slot of each unordered vertex pair within a ring
    second: Tensor  # (Q,) its second slot


def ring_plan(ring_node: Tensor, ring_of: Tensor, num_rings: int, *, pos: Tensor | None = None) -> RingPlan:
    """The :class:`RingPlan` of ring slots (``ring_node``, ``ring_of``: see :func:`ring_geometry`); with
    ``pos: (N, 3)`` the slots are first checked against it (ranges, ordering: a one-line ValueError)."""
    if pos is not None:
        _validate_rings(pos, ring_node, ring_of, num_rings)
    sizes, starts, k = _ring_slots(ring_of, num_rings)
    size_of = sizes[ring_of]
    succ = starts[ring_of] + torch.remainder(k + 1, size_of.clamp(min=1))
    # Unordered slot pairs (i, j), i < j, within each ring: slot i pairs with the g−1−k slots after it.
    after = size_of - 1 - k
    first = torch.repeat_interleave(torch.arange(ring_of.shape[0], device=ring_of.device), after)
    begin = torch.cumsum(after, 0) - after
    second = first + 1 + torch.arange(first.shape[0], device=ring_of.device) - begin[first]
    return RingPlan(
        ring_node=ring_node, ring_of=ring_of, num_rings=num_rings, sizes=sizes, succ=succ, first=first, second=second
    )


def ring_geometry(
    pos: Tensor, ring_node: Tensor, ring_of: Tensor, num_rings: int, *, validate: bool = True
) -> RingGeometry:
    """Barycentre, area, perimeter, radius and size of every ring.

    ``pos: (N, 3)``; ``ring_node: (L,)`` long, node of each ring-vertex slot in cyclic order, the slots of
    a ring contiguous; ``ring_of: (L,)`` long, ring of each slot (non-decreasing); ``num_rings`` R (rings
    without slots get zeros). The successor of a slot is the next slot of its ring, wrapping around.
    The radius uses only vertex pairs within a ring (Σ g(g−1)/2 distances, never N×N). Set
    ``validate=False`` on a GPU hot path once the indices are known to be well formed. The same as
    :func:`planned_ring_geometry` of :func:`ring_plan`.
    """
    _check_pos(pos)
    return planned_ring_geometry(pos, ring_plan(ring_node, ring_of, num_rings, pos=pos if validate else None))


def planned_ring_geometry(pos: Tensor, plan: RingPlan) -> RingGeometry:
    """:func:`ring_geometry` at positions ``pos: (N, 3)`` from a prepared :class:`RingPlan` (no checks, no
    host synchronisation: the per-layer form of models that move positions)."""
    ring_of, num_rings, succ = plan.ring_of, plan.num_rings, plan.succ
    x = _rows(pos, plan.ring_node)  # (L, 3)
    size = plan.sizes.to(pos.dtype)
    barycentre = pos.new_zeros(num_rings, 3).index_add_(0, ring_of, x) / size.clamp(min=1).unsqueeze(1)

    rel = x - _rows(barycentre, ring_of)
    fan = 0.5 * torch.linalg.vector_norm(torch.linalg.cross(rel, _rows(rel, succ), dim=-1), dim=-1)
    area = pos.new_zeros(num_rings).index_add_(0, ring_of, fan)

    side = torch.linalg.vector_norm(_rows(x, succ) - x, dim=-1)
    perimeter = pos.new_zeros(num_rings).index_add_(0, ring_of, side)

    diam = torch.linalg.vector_norm(_rows(x, plan.second) - _rows(x, plan.first), dim=-1)
    radius = 0.5 * pos.new_zeros(num_rings).scatter_reduce_(
        0, _rows(ring_of, plan.first), diam, "amax", include_self=True
    )

    return RingGeometry(barycentre=barycentre, area=area, perimeter=perimeter, radius=radius, size=size)


def cell_barycentres(pos: Tensor, edge_index: Tensor, ring_geometry: RingGeometry) -> tuple[Tensor, Tensor, Tensor]:
    """Barycentres per rank: nodes ``(N, 3)`` (= pos), edge midpoints ``(E, 3)``, ring barycentres ``(R, 3)``."""
    _check_pos(pos)
    _check_pairs("edge_index", edge_index)
    midpoints = 0.5 * (_rows(pos, edge_index[:, 0]) + _rows(pos, edge_index[:, 1]))
    return pos, midpoints, ring_geometry.barycentre


def pair_distances(sender_bary: Tensor, receiver_bary: Tensor, index: Tensor) -> Tensor:
    """``‖b_s − b_r‖`` for each ``[sender, receiver]`` row of ``index: (P, 2)`` → ``(P,)``.

    ``sender_bary`` / ``receiver_bary`` are the barycentres of the sender / receiver rank, e.g. from
    :func:`cell_barycentres` indexed by :class:`empcn.schema.NeighbourhoodSpec` ranks.
    """
    _check_pairs("index", index)
    return torch.linalg.vector_norm(_rows(sender_bary, index[:, 0]) - _rows(receiver_bary, index[:, 1]), dim=-1)
