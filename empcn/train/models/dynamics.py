"""Position-predicting models for N-body dynamics: ``forward(batch) -> (N, 3)`` predicted positions.

Three models, all E(n)-equivariant in positions and velocities (rotations, reflections; positions
also translate, velocities do not) and equivariant to relabelling the particles:

* :class:`EGNNDynamics` — EGNN's N-body model (Satorras et al. 2021, arXiv 2102.09844): 4 layers of
  :class:`~empcn.train.models.egnn.EGNNLayer` with the velocity term on the fully connected graph.
* :class:`EMPCNDynamics` — full EMPCN of dimension 2 (Kovač et al. 2024, arXiv 2406.03145, N-body
  appendix): six communications 0→0, 0→1, 1→0, 1→1, 1→2, 2→1; only node–node messages move positions.
  By default with two velocity extensions of empcn's (:class:`EMPCNDynamicsConfig`).
* :class:`DecoupledDynamics` — the EGNN above plus ring → node messages (decoupled EMPCN).

**Invariants are never read from the batch.** Every model computes all geometric quantities it uses
(pair distances, edge lengths, ring radius/perimeter, barycentre distances) from positions with
:mod:`empcn.geometry` — from the input positions in the first layer and from the *updated* positions
in every later one — so the stored ``edge_len``, ``ring_*`` and ``nbr_dist`` of a
:class:`~empcn.train.batch.ComplexBatch` are ignored (tests replace them with garbage). Inputs read:
``pos``, ``vel`` (required), ``node_scalar`` (charges; masses for gravity), ``node_graph``, and the
topology (``edge_index``, ring slots, ``nbr`` index pairs).

Every model drops the parts of its last layers whose output nothing reads (the final node-feature
update, the ring features of the last layer, …), so every parameter receives a gradient and the
parameter counts are those of the computation actually performed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from empcn.train.models.base import ModelConfig
from empcn import geometry
from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.models.decoupled import RingLayer
from empcn.train.models.egnn import EGNNLayer
from empcn.train.models.layers import (
    EmbeddingKind,
    GatedMessage,
    check_dropout,
    check_sizes,
    invariant_embedding,
    mlp,
    neighbourhood_ranks,
    pair_position_step,
    position_weight_mlp,
    scatter_sum,
)

CoordAgg = Literal["mean", "sum"]
Connectivity = Literal["full", "complex"]
EDGE_ADJACENCIES = ("1_1_lower", "1_1_upper")

__all__ = [
    "EGNNDynamics",
    "EGNNDynamicsConfig",
    "EMPCNDynamics",
    "EMPCNDynamicsConfig",
    "DecoupledDynamics",
    "DecoupledDynamicsConfig",
    "gated_message",
    "layer_plan",
]


# ----------------------------------------------------------------------------------------------
# shared helpers


def _check_common(name: str, hidden: int, layers: int, dropout: float, coord_agg: str) -> None:
    check_sizes(name, hidden=hidden, layers=layers)
    check_dropout(name, dropout)
    if coord_agg not in ("mean", "sum"):
        raise ValueError(f"{name}: coord_agg must be 'mean' or 'sum', got {coord_agg!r}")


def _velocity(batch: ComplexBatch, model: str) -> Tensor:
    """``batch.vel: (N, 3)`` or a one-line error."""
    vel = batch.vel
    if vel is None or vel.shape != batch.pos.shape:
        got = None if vel is None else tuple(vel.shape)
        raise ValueError(f"{model}: batch.vel must be (N, 3) = {tuple(batch.pos.shape)} input velocities, got {got}")
    return vel


def _node_scalar(batch: ComplexBatch, model: str) -> Tensor:
    """``(N,)`` per-particle scalar (charge or mass) from ``batch.node_scalar: (N, 1)``, or a one-line error."""
    s = batch.node_scalar
    if s is None or s.shape[0] != batch.num_nodes or s.numel() != batch.num_nodes:
        got = None if s is None else tuple(s.shape)
        raise ValueError(
            f"{model}: batch.node_scalar must hold one charge (or mass) per node, shape ({batch.num_nodes}, 1), "
            f"got {got}; set use_node_scalar=False to ignore it"
        )
    return s.reshape(-1)


def _speed(vel: Tensor) -> Tensor:
    """EGNN's N-body node feature ‖v_i‖: ``(N, 1)``."""
    return torch.linalg.vector_norm(vel, dim=-1, keepdim=True)


def _index(batch: ComplexBatch, name: str, model: str) -> Tensor:
    """``batch.nbr[name]: (P, 2)`` [sender, receiver] (distances are recomputed, never read)."""
    idx = batch.nbr.get(name)
    if idx is None or idx.dim() != 2 or idx.shape[1] != 2:
        raise ValueError(f"{model}: the batch has no neighbourhood {name!r} (it has {sorted(batch.nbr)})")
    return idx


def gated_message(msg: GatedMessage, h_recv: Tensor, h_send: Tensor, recv: Tensor, send: Tensor, inv: Tensor) -> Tensor:
    """``msg(cat[h_recv[recv], h_send[send], inv])`` computed with the first Linear split by input block.

    ``W·[a ‖ b ‖ c] = W_a a + W_b b + W_c c``: the receiver and sender blocks are projected once per
    *cell* (``h_recv: (n_σ, H)``, ``h_send: (n_τ, H)``) and then gathered, instead of once per pair —
    the same function and parameters as :class:`GatedMessage`, with ~2× fewer FLOPs on dense relations.
    """
    first = msg.net[0]
    w, hid = first.weight, h_recv.shape[1]
    pre = (
        nn.functional.linear(h_recv, w[:, :hid], first.bias)[recv]
        + nn.functional.linear(h_send, w[:, hid : 2 * hid])[send]
        + nn.functional.linear(inv, w[:, 2 * hid :])
    )
    m = msg.net[1:](pre)  # SiLU, Linear, SiLU
    if msg.gate is None:
        return m
    return torch.sigmoid(msg.gate(m)) * m


def _drop_node_update(layer: EGNNLayer) -> EGNNLayer:
    """Remove φ_h from an EGNN layer whose node-feature output nothing reads (the last layer)."""
    layer.node_in = None
    layer.node_out = None
    return layer


def _pairs(batch: ComplexBatch, connectivity: Connectivity) -> Tensor:
    if connectivity == "full":
        return fully_connected_pairs(batch.node_graph)
    e = batch.edge_index
    return torch.cat([e, e.flip(1)], dim=0)


def _egnn_edge_attr(batch: ComplexBatch, pairs: Tensor, use_scalar: bool, model: str) -> Tensor:
    """EGNN's N-body edge attribute: ``[s_i s_j, ‖x⁰_i − x⁰_j‖²]`` (input positions; no product if not use_scalar)."""
    send, recv = pairs[:, 0], pairs[:, 1]
    d0 = batch.pos[recv] - batch.pos[send]
    parts = [(d0 * d0).sum(dim=-1, keepdim=True)]
    if use_scalar:
        s = _node_scalar(batch, model)
        parts.insert(0, (s[recv] * s[send]).unsqueeze(-1))
    return torch.cat(parts, dim=-1)


def _egnn_stack(
    hidden: int, layers: int, edge_attr_dim: int, attention: bool, residual: bool, dropout: float,
    coord_agg: CoordAgg, coord_weight: float, velocity_messages: bool,
) -> nn.ModuleList:
    """``layers`` coordinate-and-velocity EGNN layers; the last has no node update."""
    stack = nn.ModuleList(
        EGNNLayer(
            hidden, edge_attr_dim=edge_attr_dim, attention=attention, residual=residual, dropout=dropout,
            update_coords=True, use_velocity=True, coord_agg=coord_agg, coord_weight=coord_weight,
            velocity_messages=velocity_messages,
        )
        for _ in range(layers)
    )
    _drop_node_update(stack[-1])
    return stack


# ----------------------------------------------------------------------------------------------
# EGNN


@dataclass(frozen=True)
class EGNNDynamicsConfig(ModelConfig):
    """EGNN for N-body position prediction. Defaults: EGNN's N-body model (4 layers, hidden 64, no
    attention gate, residual ("recurrent") node updates, mean coordinate aggregation, C = 1).

    ``use_node_scalar``: put ``s_i s_j`` (charge product; mass product for gravity) into the edge
    attribute. ``connectivity``: ``"full"`` = all particle pairs (the paper), ``"complex"`` = both
    directions of ``batch.edge_index`` (e.g. the kNN graph of a gravity cache).
    ``velocity_messages`` (an empcn extension, off = the paper): positions also move along the relative
    input velocities, ``+ C · mean_j (v⁰_i − v⁰_j) φ_w(m_ij)``, as in :class:`EMPCNDynamicsConfig`.
    """


    hidden: int = 64
    layers: int = 4
    attention: bool = False
    residual: bool = True
    dropout: float = 0.0
    coord_agg: CoordAgg = "mean"
    coord_weight: float = 1.0
    use_node_scalar: bool = True
    connectivity: Connectivity = "full"
    velocity_messages: bool = False

    def __post_init__(self) -> None:
        _check_common("EGNNDynamicsConfig", self.hidden, self.layers, self.dropout, self.coord_agg)
        if self.connectivity not in ("full", "complex"):
            raise ValueError(f"EGNNDynamicsConfig: connectivity must be 'full' or 'complex', got {self.connectivity!r}")


class EGNNDynamics(nn.Module):
    """EGNN's N-body model. With pairs ``[j, i]`` and ``a_ij = [s_i s_j, ‖x⁰_i − x⁰_j‖²]``::

        h⁰_i = Linear(‖v⁰_i‖)
        m_ij = φ_e(h_i ‖ h_j ‖ ‖x_i − x_j‖² ‖ a_ij)
        x'_i = x_i + φ_v(h_i) v⁰_i + C · mean_j (x_i − x_j) φ_x(m_ij)
        h'_i = h_i + φ_h(h_i ‖ Σ_j m_ij)                       (not in the last layer)

    ``forward(batch) -> (N, 3)`` the positions after the last layer.
    """

    def __init__(self, config: EGNNDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(1, config.hidden)
        self.layers = _egnn_stack(
            config.hidden, config.layers, 2 if config.use_node_scalar else 1, config.attention, config.residual,
            config.dropout, config.coord_agg, config.coord_weight, config.velocity_messages,
        )

    def forward(self, batch: ComplexBatch) -> Tensor:
        vel = _velocity(batch, "EGNNDynamics")
        pairs = _pairs(batch, self.config.connectivity)
        attr = _egnn_edge_attr(batch, pairs, self.config.use_node_scalar, "EGNNDynamics")
        h, x = self.embed(_speed(vel)), batch.pos
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            m, diff = layer.edge_messages(h, x, pairs, attr)
            x_new = layer.coord_update(h, x, m, diff, pairs, vel)
            if k < last:
                h = layer.node_update(h, scatter_sum(m, pairs[:, 1], h.shape[0]))
            x = x_new
        return x


# ----------------------------------------------------------------------------------------------
# EMPCN


@dataclass(frozen=True)
class EMPCNDynamicsConfig(ModelConfig):
    """Full EMPCN of dimension 2 for N-body positions. Defaults: the EMPCN paper's N-body setting
    (4 layers, hidden 66, dropout 0.2, Gaussian Fourier features of the invariants) **plus two
    velocity extensions of empcn's**, both on: the paper's model as described tests at 0.0059 on the
    standard charged set, against its published 0.0046; with both extensions 0.0040–0.0043
    (BENCHMARKS.md). ``velocity_invariants=False, velocity_messages=False`` is the paper's model.

    ``edge_adjacency``: the 1→1 relation(s), a subset of ``("1_1_lower", "1_1_upper")``; default upper
    adjacency (edges of a common ring), as CW networks and EMPCN's main text keep boundary + upper
    adjacency. On the fully connected 5-body complex with all triangles the two relations are the same
    pairs; on a kNN complex upper adjacency is the sparser one.
    ``use_node_scalar``: feed ``s_i s_j`` (charge/mass product) into node–node messages and edge inputs.
    ``velocity_invariants`` (empcn extension; False = the paper): node–node messages also read the
    input velocities through ``⟨v⁰_i − v⁰_j, u_ij⟩`` (closing speed along the unit vector
    ``u_ij = (x_i − x_j)/‖x_i − x_j‖`` of the current positions) and ``‖v⁰_i − v⁰_j‖``, E(n)-invariant.
    ``velocity_messages`` (empcn extension; False = the paper): the position update also moves each
    particle along the relative input velocities, ``+ C · agg_j (v⁰_i − v⁰_j) φ_w(m_ij)`` — a second
    equivariant vector per pair beside ``x_i − x_j`` (velocities rotate, do not translate).
    Invariant embedding fields as in :class:`~empcn.train.models.empcn.EMPCNConfig`
    (``fourier_scale`` in inverse simulation units; 0.1, see docs/models.md: at σ = 1 the features
    oscillate several times per unit of distance and the model overfits the 3,000 training systems).
    """


    hidden: int = 66
    layers: int = 4
    edge_adjacency: tuple[str, ...] = ("1_1_upper",)
    residual: bool = True
    dropout: float = 0.2
    inv_embedding: EmbeddingKind = "fourier"
    inv_size: int = 16
    fourier_scale: float = 0.1
    rbf_max: float = 10.0
    coord_agg: CoordAgg = "mean"
    coord_weight: float = 1.0
    use_node_scalar: bool = True
    velocity_invariants: bool = True
    velocity_messages: bool = True

    # what a saved config (checkpoint) that lacks a field was trained with: before these fields existed
    # the model had no velocity extensions, so an old run must not pick up today's defaults
    SAVED_WITHOUT: ClassVar[dict[str, object]] = {"velocity_invariants": False, "velocity_messages": False}

    def __post_init__(self) -> None:
        _check_common("EMPCNDynamicsConfig", self.hidden, self.layers, self.dropout, self.coord_agg)
        check_sizes("EMPCNDynamicsConfig", inv_size=self.inv_size)
        bad = [a for a in self.edge_adjacency if a not in EDGE_ADJACENCIES]
        if bad or len(set(self.edge_adjacency)) != len(self.edge_adjacency):
            raise ValueError(
                f"EMPCNDynamicsConfig: edge_adjacency must be distinct names from {EDGE_ADJACENCIES}, "
                f"got {self.edge_adjacency}"
            )

    @property
    def communications(self) -> tuple[str, ...]:
        """The neighbourhood names messages pass over: 0→0, 0→1, 1→0, 1→1, 1→2, 2→1."""
        return ("0_0", "0_1", "1_0") + tuple(self.edge_adjacency) + ("1_2", "2_1")

    def reads(self) -> tuple[str, ...]:
        return self.communications


def layer_plan(communications: tuple[str, ...], layers: int) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Per layer: the communications to compute and the ranks whose features to update.

    The output is the positions after the last layer, which read only node features (via node–node
    messages and φ_v). Working backwards, layer l must update exactly the ranks some later layer reads:
    the last layer updates nothing, the one before only nodes, and so on. Layer l computes 0→0 (it
    moves positions) plus every communication into a rank it updates. ``communications`` must contain
    ``"0_0"``.
    """
    if "0_0" not in communications:
        raise ValueError("layer_plan: the node-node communication '0_0' moves positions and must be present")
    plan: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
    update: set[int] = set()
    for _ in range(layers):
        comms = tuple(a for a in communications if a == "0_0" or neighbourhood_ranks(a)[1] in update)
        plan.append((comms, tuple(sorted(update))))
        read = {0} | update | {r for a in comms for r in neighbourhood_ranks(a)}
        update = read
    plan.reverse()
    return plan


@dataclass
class _Geometry:
    """Invariants of every cell at positions x (recomputed each layer)."""

    edge_len: Tensor  # (E,)
    ring: geometry.RingGeometry
    bary: tuple[Tensor, Tensor, Tensor]  # nodes, edge midpoints, ring barycentres

    @staticmethod
    def of(batch: ComplexBatch, x: Tensor, validate: bool) -> "_Geometry":
        ring = geometry.ring_geometry(x, batch.ring_node, batch.ring_of, batch.num_rings, validate=validate)
        return _Geometry(
            edge_len=geometry.edge_lengths(x, batch.edge_index),
            ring=ring,
            bary=geometry.cell_barycentres(x, batch.edge_index, ring),
        )

    def ring_scalars(self) -> Tensor:
        """(R, 3) [radius, perimeter, size] (EMPCN's N-body ring invariants)."""
        return torch.stack([self.ring.radius, self.ring.perimeter, self.ring.size], dim=-1)

    def pair_dist(self, name: str, idx: Tensor) -> Tensor:
        s, r = neighbourhood_ranks(name)
        return geometry.pair_distances(self.bary[s], self.bary[r], idx)


class EMPCNDynamicsLayer(nn.Module):
    """One EMPCN layer with an EGNN-style position update from the node–node messages.

    For every communication A = (τ → σ) with pairs ``[τ, σ]`` and invariants ``Inv_A`` of the current
    positions: ``m_στ = e·[Linear, SiLU, Linear, SiLU]([h_σ ‖ h_τ ‖ Inv_A])``, and for each updated rank
    ``h'_σ = h_σ + [Linear, SiLU, Linear]([h_σ ‖ ⊕_A Σ_τ m_στ])``. Positions::

        x'_i = x_i + φ_v(h_i) v⁰_i + C · agg_j [(x_i − x_j) φ_x(m_ij) + (v⁰_i − v⁰_j) φ_w(m_ij)]

    (m_ij: the 0→0 messages; the φ_w term only with ``velocity_messages``).
    """

    def __init__(
        self, hidden: int, communications: tuple[str, ...], update_ranks: tuple[int, ...], inv_dims: dict[str, int],
        residual: bool, dropout: float, coord_agg: CoordAgg, coord_weight: float, velocity_messages: bool = False,
    ) -> None:
        super().__init__()
        self.communications = communications
        self.residual = residual
        self.coord_agg = coord_agg
        self.coord_weight = coord_weight
        self.message = nn.ModuleDict({a: GatedMessage(2 * hidden + inv_dims[a], hidden) for a in communications})
        self.incoming = {r: [a for a in communications if neighbourhood_ranks(a)[1] == r] for r in update_ranks}
        self.update = nn.ModuleDict(
            {str(r): mlp([hidden * (1 + len(names)), hidden, hidden]) for r, names in self.incoming.items()}
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.coord_mlp = position_weight_mlp(hidden)
        self.vel_mlp = mlp([hidden, hidden, 1])
        self.rel_vel_mlp = position_weight_mlp(hidden) if velocity_messages else None

    def forward(
        self, h: dict[int, Tensor], x: Tensor, vel: Tensor, nbr: dict[str, Tensor], inv: dict[str, Tensor],
        rel_vel: Tensor | None = None,
    ) -> tuple[dict[int, Tensor], Tensor]:
        """``h[r]: (n_r, H)``, ``x, vel: (N, 3)``, ``nbr[A]: (P_A, 2)``, ``inv[A]: (P_A, d_A)`` → ``(h', x')``.

        ``rel_vel: (P_00, 3)`` ``v⁰_i − v⁰_j`` of the 0→0 pairs, read when the layer has ``velocity_messages``.
        ``h'`` holds only the updated ranks.
        """
        agg: dict[str, Tensor] = {}
        m00 = None
        for a in self.communications:
            s, r = neighbourhood_ranks(a)
            send, recv = nbr[a][:, 0], nbr[a][:, 1]
            m = gated_message(self.message[a], h[r], h[s], recv, send, inv[a])
            if a == "0_0":
                m00 = m
            agg[a] = scatter_sum(m, recv, h[r].shape[0])
        assert m00 is not None
        pairs = nbr["0_0"]
        step = pair_position_step(
            pairs, x.shape[0], x[pairs[:, 1]] - x[pairs[:, 0]], m00, self.coord_mlp, self.coord_agg, rel_vel,
            self.rel_vel_mlp,
        )
        x_new = x + self.coord_weight * step + self.vel_mlp(h[0]) * vel
        out: dict[int, Tensor] = {}
        for r, names in self.incoming.items():
            delta = self.dropout(self.update[str(r)](torch.cat([h[r]] + [agg[a] for a in names], dim=-1)))
            out[r] = h[r] + delta if self.residual else delta
        return out, x_new


class EMPCNDynamics(nn.Module):
    """Full EMPCN (dimension 2) predicting positions. Per layer, from the current positions x:

    * 0→0 ``Inv = [γ(‖x_i − x_j‖) ‖ s_i s_j (‖ ⟨v⁰_i − v⁰_j, u_ij⟩ ‖ ‖v⁰_i − v⁰_j‖)]`` (the bracket:
      ``velocity_invariants``);  0→1, 1→0 ``Inv = γ(ℓ_e)`` (edge length);
    * 1→1 ``Inv = γ(ℓ_σ, ℓ_τ, ‖mid_σ − mid_τ‖)``;  1→2, 2→1 ``Inv = γ(radius_ρ, perimeter_ρ, size_ρ, ℓ_e)``;

    inputs ``h⁰(node) = Linear(‖v_i‖)``, ``h⁰(edge) = Linear(γ(ℓ_e) ‖ s_i s_j)``,
    ``h⁰(ring) = Linear(γ(radius, perimeter, size))`` (γ: fixed Fourier/RBF embeddings, one per kind of
    invariant). ``forward(batch) -> (N, 3)``. Layers follow :func:`layer_plan`.
    """

    def __init__(self, config: EMPCNDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden

        def emb(in_dim: int, seed: int) -> nn.Module:
            return invariant_embedding(
                config.inv_embedding, in_dim, config.inv_size, config.fourier_scale, config.rbf_max, seed
            )

        self.emb_node_pair = emb(1, seed=1)
        self.emb_edge = emb(1, seed=2)
        self.emb_edge_pair = emb(3, seed=3)
        self.emb_edge_ring = emb(4, seed=4)
        self.emb_ring = emb(3, seed=5)
        scalar = 1 if config.use_node_scalar else 0
        inv_dims = {
            "0_0": self.emb_node_pair.out_dim + scalar + (2 if config.velocity_invariants else 0),
            "0_1": self.emb_edge.out_dim,
            "1_0": self.emb_edge.out_dim,
            "1_2": self.emb_edge_ring.out_dim,
            "2_1": self.emb_edge_ring.out_dim,
            **{a: self.emb_edge_pair.out_dim for a in config.edge_adjacency},
        }
        self.plan = layer_plan(config.communications, config.layers)
        self.input_ranks = tuple(sorted({r for a in self.plan[0][0] for r in neighbourhood_ranks(a)} | {0}
                                        | set(self.plan[0][1])))
        self.embed = nn.ModuleDict({"0": nn.Linear(1, h)})
        if 1 in self.input_ranks:
            self.embed["1"] = nn.Linear(self.emb_edge.out_dim + scalar, h)
        if 2 in self.input_ranks:
            self.embed["2"] = nn.Linear(self.emb_ring.out_dim, h)
        self.layers = nn.ModuleList(
            EMPCNDynamicsLayer(
                h, comms, ranks, inv_dims, config.residual, config.dropout, config.coord_agg, config.coord_weight,
                config.velocity_messages,
            )
            for comms, ranks in self.plan
        )

    def _invariants(
        self, geo: _Geometry, x: Tensor, pair_vel: Tensor | None, nbr: dict[str, Tensor], comms: tuple[str, ...],
        pair_scalar: Tensor | None,
    ) -> dict[str, Tensor]:
        """Per communication, the embedded invariants of positions ``x``; ``pair_vel``: ``v⁰_i − v⁰_j``
        of the 0→0 pairs when ``velocity_invariants`` (fixed input velocities, so computed once)."""
        inv: dict[str, Tensor] = {}
        for a in comms:
            idx = nbr[a]
            send, recv = idx[:, 0], idx[:, 1]
            if a == "0_0":
                diff = x[recv] - x[send]
                d = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
                parts = [self.emb_node_pair(d)] + ([pair_scalar] if pair_scalar is not None else [])
                if pair_vel is not None:
                    closing = (pair_vel[:, :3] * diff).sum(dim=-1, keepdim=True) / d.clamp_min(1e-6)
                    parts += [closing, pair_vel[:, 3:]]
                inv[a] = torch.cat(parts, dim=-1)
            elif a == "0_1":
                inv[a] = self.emb_edge(geo.edge_len[recv].unsqueeze(-1))
            elif a == "1_0":
                inv[a] = self.emb_edge(geo.edge_len[send].unsqueeze(-1))
            elif a in EDGE_ADJACENCIES:
                ell = geo.edge_len
                inv[a] = self.emb_edge_pair(torch.stack([ell[recv], ell[send], geo.pair_dist(a, idx)], dim=-1))
            elif a == "1_2":
                inv[a] = self.emb_edge_ring(torch.cat([geo.ring_scalars()[recv], geo.edge_len[send, None]], dim=-1))
            elif a == "2_1":
                inv[a] = self.emb_edge_ring(torch.cat([geo.ring_scalars()[send], geo.edge_len[recv, None]], dim=-1))
            else:  # pragma: no cover - the config validates the names
                raise ValueError(f"EMPCNDynamics: no invariants defined for {a!r}")
        return inv

    def forward(self, batch: ComplexBatch) -> Tensor:
        name = "EMPCNDynamics"
        vel = _velocity(batch, name)
        nbr = {a: _index(batch, a, name) for a in self.config.communications}
        pair_scalar = edge_scalar = None
        if self.config.use_node_scalar:
            s = _node_scalar(batch, name)
            pair_scalar = (s[nbr["0_0"][:, 0]] * s[nbr["0_0"][:, 1]]).unsqueeze(-1)
            edge_scalar = (s[batch.edge_index[:, 0]] * s[batch.edge_index[:, 1]]).unsqueeze(-1)
        # input velocities are fixed, so their pair differences are computed once per forward
        pair_vel = dv = None
        if self.config.velocity_invariants or self.config.velocity_messages:
            dv = vel[nbr["0_0"][:, 1]] - vel[nbr["0_0"][:, 0]]  # v⁰_i − v⁰_j per 0→0 pair: (P, 3)
        if self.config.velocity_invariants:  # [v⁰_i − v⁰_j ‖ ‖v⁰_i − v⁰_j‖]: (P, 4)
            pair_vel = torch.cat([dv, torch.linalg.vector_norm(dv, dim=-1, keepdim=True)], dim=-1)
        x = batch.pos
        geo = _Geometry.of(batch, x, validate=True)
        h: dict[int, Tensor] = {0: self.embed["0"](_speed(vel))}
        if "1" in self.embed:
            parts = [self.emb_edge(geo.edge_len.unsqueeze(-1))] + ([edge_scalar] if edge_scalar is not None else [])
            h[1] = self.embed["1"](torch.cat(parts, dim=-1))
        if "2" in self.embed:
            h[2] = self.embed["2"](self.emb_ring(geo.ring_scalars()))
        for k, layer in enumerate(self.layers):
            if k > 0:
                geo = _Geometry.of(batch, x, validate=False)  # invariants of the updated positions
            inv = self._invariants(geo, x, pair_vel, nbr, layer.communications, pair_scalar)
            h, x = layer(h, x, vel, nbr, inv, dv)
        return x


# ----------------------------------------------------------------------------------------------
# decoupled


@dataclass(frozen=True)
class DecoupledDynamicsConfig(ModelConfig):
    """Decoupled EMPCN for N-body positions: :class:`EGNNDynamics`' node part (same defaults) plus
    ring features of width ``ring_hidden`` exchanging messages with their vertices.

    The papers do not run the decoupled model on N-body; ``ring_hidden = 32`` keeps the EGNN part
    identical to ``egnn_dynamics`` so the two differ only by the cellular part.
    ``velocity_messages``: as in :class:`EGNNDynamicsConfig`.
    """


    hidden: int = 64
    ring_hidden: int = 32
    layers: int = 4
    attention: bool = False
    residual: bool = True
    dropout: float = 0.0
    inv_embedding: EmbeddingKind = "fourier"
    inv_size: int = 16
    fourier_scale: float = 0.1
    rbf_max: float = 10.0
    coord_agg: CoordAgg = "mean"
    coord_weight: float = 1.0
    use_node_scalar: bool = True
    velocity_messages: bool = False

    def __post_init__(self) -> None:
        _check_common("DecoupledDynamicsConfig", self.hidden, self.layers, self.dropout, self.coord_agg)
        check_sizes("DecoupledDynamicsConfig", ring_hidden=self.ring_hidden, inv_size=self.inv_size)


class DecoupledDynamics(nn.Module):
    """EGNN over all particle pairs + ring → vertex messages (P relation), ring invariants from current x.

    Per layer l, with ring scalars ``c_ρ = [radius_ρ, perimeter_ρ, size_ρ]`` and ``d_ρi = ‖x_i − bary_ρ‖``
    of the layer's input positions, ``q_ρi = γ_q(c_ρ ‖ d_ρi)``::

        x'_i = EGNN position update (as EGNNDynamics)
        h'_i = h_i + [SiLU, Linear](Linear(h_i ‖ Σ_j m_ij) + W_r Σ_ρ e·φ(h_i ‖ g_ρ ‖ q_ρi))
        g'_ρ = g_ρ + MLP(g_ρ ‖ Σ_i e·φ(g_ρ ‖ h_i ‖ q_ρi)),    g⁰_ρ = Linear(γ_g(c_ρ))

    (:class:`~empcn.train.models.decoupled.RingLayer`). Only the first L−1 layers carry a ring part (the
    last layer's node features are never read) and only the first L−2 update ring features.
    """

    def __init__(self, config: DecoupledDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        h, hr = config.hidden, config.ring_hidden
        node_part = nn.Module()
        node_part.embed = nn.Linear(1, h)
        node_part.layers = _egnn_stack(
            h, config.layers, 2 if config.use_node_scalar else 1, config.attention, config.residual, config.dropout,
            config.coord_agg, config.coord_weight, config.velocity_messages,
        )
        self.node_part = node_part

        def emb(in_dim: int, seed: int) -> nn.Module:
            return invariant_embedding(
                config.inv_embedding, in_dim, config.inv_size, config.fourier_scale, config.rbf_max, seed
            )

        ring_part = nn.Module()
        ring_part.ring_inv = emb(3, seed=2)
        ring_part.pair_inv = emb(4, seed=3)
        n_ring = config.layers - 1
        ring_part.embed = nn.Linear(ring_part.ring_inv.out_dim, hr) if n_ring > 0 else None
        ring_part.layers = nn.ModuleList(
            RingLayer(h, hr, ring_part.pair_inv.out_dim, config.residual, update_rings=k < n_ring - 1,
                      dropout=config.dropout)
            for k in range(n_ring)
        )
        self.ring_part = ring_part

    def parameter_split(self) -> tuple[int, int]:
        """``(EGNN part, cellular part)`` trainable parameter counts."""
        count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
        return count(self.node_part), count(self.ring_part)

    def forward(self, batch: ComplexBatch) -> Tensor:
        name = "DecoupledDynamics"
        vel = _velocity(batch, name)
        pairs = fully_connected_pairs(batch.node_graph)
        attr = _egnn_edge_attr(batch, pairs, self.config.use_node_scalar, name)
        ring, node = batch.ring_of, batch.ring_node  # P(ρ): every (ring, vertex) slot
        np_, rp = self.node_part, self.ring_part
        h, x = np_.embed(_speed(vel)), batch.pos
        g = None
        n_ring = len(rp.layers)
        for k, layer in enumerate(np_.layers):
            m, diff = layer.edge_messages(h, x, pairs, attr)
            x_new = layer.coord_update(h, x, m, diff, pairs, vel)
            if k < n_ring:
                geo = geometry.ring_geometry(x, batch.ring_node, batch.ring_of, batch.num_rings, validate=k == 0)
                c = torch.stack([geo.radius, geo.perimeter, geo.size], dim=-1)
                if g is None:
                    g = rp.embed(rp.ring_inv(c))
                d = torch.linalg.vector_norm(x[node] - geo.barycentre[ring], dim=-1, keepdim=True)
                q = rp.pair_inv(torch.cat([c[ring], d], dim=-1))
                extra = rp.layers[k].node_term(h, g, ring, node, q)
                g = rp.layers[k].ring_step(h, g, ring, node, q)
                h = layer.node_update(h, scatter_sum(m, pairs[:, 1], h.shape[0]), extra)
            x = x_new  # n_ring = layers − 1: the last layer moves positions only
        return x
