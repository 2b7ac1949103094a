"""Full EMPCN of dimension 2 predicting N-body positions (Kovač et al. 2024, arXiv 2406.03145, N-body appendix).

Six communications 0→0, 0→1, 1→0, 1→1, 1→2, 2→1 of the layer core
(:class:`~empcn.train.models.cell_layer.CellLayer`); only node–node messages move positions. By default
with two velocity extensions of empcn's (:class:`EMPCNDynamicsConfig`). Every invariant is recomputed
from the current positions in every layer (the stored ``edge_len``, ``ring_*``, ``nbr_dist`` are never
read). ``forward(batch) -> (N, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

import torch
from torch import Tensor, nn

from empcn import geometry
from empcn.schema import EDGE_LOWER, EDGE_UPPER, NODE_NODE
from empcn.train.batch import ComplexBatch
from empcn.train.models.cell_layer import CellLayer
from empcn.train.models.dynamics_inputs import CoordAgg, DynamicsConfig, scalar_products, speed, velocity
from empcn.train.models.embedding import InvariantEmbeddingConfig
from empcn.train.models.layers import (
    mlp,
    neighbourhood_index,
    neighbourhood_ranks,
    pair_position_step,
    position_weight_mlp,
)

EDGE_ADJACENCIES = (EDGE_LOWER, EDGE_UPPER)


@dataclass(frozen=True)
class EMPCNDynamicsConfig(DynamicsConfig, InvariantEmbeddingConfig):
    """Full EMPCN of dimension 2 for N-body positions. Defaults: the EMPCN paper's N-body setting
    (4 layers, hidden 66, dropout 0.2, Gaussian Fourier features of the invariants) **plus two
    velocity extensions of empcn's**, both on: the paper's model as described tests at 0.0059 on the
    standard charged set, against its published 0.0046; with both extensions 0.0040–0.0043
    (BENCHMARKS.md). ``velocity_invariants=False, velocity_messages=False`` is the paper's model.

    ``edge_adjacency``: the 1→1 relation(s), a subset of ``("1_1_lower", "1_1_upper")``; default upper
    adjacency (edges of a common ring), as CW networks and EMPCN's main text keep boundary + upper
    adjacency. On the fully connected 5-body complex with all triangles the two relations are the same
    pairs; on a kNN complex upper adjacency is the sparser one.
    The shared fields: :class:`~empcn.train.models.dynamics_inputs.DynamicsConfig` (``use_node_scalar``:
    ``s_i s_j`` into node–node messages and edge inputs).
    ``velocity_invariants`` (empcn extension; False = the paper): node–node messages also read the
    input velocities through ``⟨v⁰_i − v⁰_j, u_ij⟩`` (closing speed along the unit vector
    ``u_ij = (x_i − x_j)/‖x_i − x_j‖`` of the current positions) and ``‖v⁰_i − v⁰_j‖``, E(n)-invariant.
    ``velocity_messages`` (empcn extension, on here; False = the paper): the position update also moves
    each particle along the relative input velocities.
    Invariant embedding fields: :class:`~empcn.train.models.embedding.InvariantEmbeddingConfig`
    (``fourier_scale`` in inverse simulation units; 0.1, see docs/models.md: at σ = 1 the features
    oscillate several times per unit of distance and the model overfits the 3,000 training systems).
    """

    hidden: int = 66
    dropout: float = 0.2
    velocity_messages: bool = True
    fourier_scale: float = 0.1
    edge_adjacency: tuple[str, ...] = (EDGE_UPPER,)
    velocity_invariants: bool = True

    # what a saved config (checkpoint) that lacks a field was trained with: before these fields existed
    # the model had no velocity extensions, so an old run must not pick up today's defaults
    SAVED_WITHOUT: ClassVar[dict[str, object]] = {"velocity_invariants": False, "velocity_messages": False}

    def __post_init__(self) -> None:
        self.check_dynamics("EMPCNDynamicsConfig")
        self.check_embedding("EMPCNDynamicsConfig")
        bad = [a for a in self.edge_adjacency if a not in EDGE_ADJACENCIES]
        if bad or len(set(self.edge_adjacency)) != len(self.edge_adjacency):
            raise ValueError(
                f"EMPCNDynamicsConfig: edge_adjacency must be distinct names from {EDGE_ADJACENCIES}, "
                f"got {self.edge_adjacency}"
            )

    @property
    def communications(self) -> tuple[str, ...]:
        """The neighbourhood names messages pass over: 0→0, 0→1, 1→0, 1→1, 1→2, 2→1."""
        return (NODE_NODE, "0_1", "1_0") + tuple(self.edge_adjacency) + ("1_2", "2_1")

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
    if NODE_NODE not in communications:
        raise ValueError("layer_plan: the node-node communication '0_0' moves positions and must be present")
    plan: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
    update: set[int] = set()
    for _ in range(layers):
        comms = tuple(a for a in communications if a == NODE_NODE or neighbourhood_ranks(a)[1] in update)
        plan.append((comms, tuple(sorted(update))))
        read = {0} | update | {r for a in comms for r in neighbourhood_ranks(a)}
        update = read
    plan.reverse()
    return plan


@dataclass
class _Geometry:
    """Invariants of every cell at positions x (recomputed each layer)."""

    edge_len: Tensor  # (E,)
    ring_scalars: Tensor  # (R, 3) [radius, perimeter, size]: EMPCN's N-body ring invariants
    bary: tuple[Tensor, Tensor, Tensor]  # nodes, edge midpoints, ring barycentres

    @staticmethod
    def of(x: Tensor, edge_index: Tensor, plan: geometry.RingPlan) -> _Geometry:
        ring = geometry.planned_ring_geometry(x, plan)
        return _Geometry(
            edge_len=geometry.edge_lengths(x, edge_index),
            ring_scalars=torch.stack([ring.radius, ring.perimeter, ring.size], dim=-1),
            bary=geometry.cell_barycentres(x, edge_index, ring),
        )

    def pair_dist(self, name: str, idx: Tensor) -> Tensor:
        s, r = neighbourhood_ranks(name)
        return geometry.pair_distances(self.bary[s], self.bary[r], idx)


class EMPCNDynamicsLayer(CellLayer):
    """One EMPCN layer (:class:`~empcn.train.models.cell_layer.CellLayer`: message, gate, aggregate, update
    of ``update_ranks``) with an EGNN-style position update from the node–node messages::

        x'_i = x_i + φ_v(h_i) v⁰_i + C · agg_j [(x_i − x_j) φ_x(m_ij) + (v⁰_i − v⁰_j) φ_w(m_ij)]

    (m_ij: the 0→0 messages; the φ_w term only with ``velocity_messages``).
    """

    def __init__(
        self,
        hidden: int,
        communications: tuple[str, ...],
        update_ranks: tuple[int, ...],
        inv_dims: dict[str, int],
        residual: bool,
        dropout: float,
        coord_agg: CoordAgg,
        coord_weight: float,
        velocity_messages: bool = False,
    ) -> None:
        super().__init__(hidden, communications, inv_dims, update_ranks, residual, dropout)
        self.coord_agg = coord_agg
        self.coord_weight = coord_weight
        self.coord_mlp = position_weight_mlp(hidden)
        self.vel_mlp = mlp([hidden, hidden, 1])
        self.rel_vel_mlp = position_weight_mlp(hidden) if velocity_messages else None

    def forward(
        self,
        h: dict[int, Tensor],
        x: Tensor,
        vel: Tensor,
        nbr: dict[str, Tensor],
        inv: dict[str, Tensor],
        rel_vel: Tensor | None = None,
    ) -> tuple[dict[int, Tensor], Tensor]:
        """``h[r]: (n_r, H)``, ``x, vel: (N, 3)``, ``nbr[A]: (P_A, 2)``, ``inv[A]: (P_A, d_A)`` → ``(h', x')``.

        ``rel_vel: (P_00, 3)`` ``v⁰_i − v⁰_j`` of the 0→0 pairs, read when the layer has ``velocity_messages``.
        ``h'`` holds only the updated ranks.
        """
        m = self.messages(h, nbr, inv)
        pairs = nbr[NODE_NODE]
        step = pair_position_step(
            pairs,
            x.shape[0],
            x.index_select(0, pairs[:, 1]) - x.index_select(0, pairs[:, 0]),
            m[NODE_NODE],
            self.coord_mlp,
            self.coord_agg,
            rel_vel,
            self.rel_vel_mlp,
        )
        x_new = x + self.coord_weight * step + self.vel_mlp(h[0]) * vel
        return self.updated(h, nbr, m), x_new


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
        emb = config.embedding

        self.emb_node_pair = emb(1, seed=1)
        self.emb_edge = emb(1, seed=2)
        self.emb_edge_pair = emb(3, seed=3)
        self.emb_edge_ring = emb(4, seed=4)
        self.emb_ring = emb(3, seed=5)
        scalar = 1 if config.use_node_scalar else 0
        inv_dims = {
            NODE_NODE: self.emb_node_pair.out_dim + scalar + (2 if config.velocity_invariants else 0),
            "0_1": self.emb_edge.out_dim,
            "1_0": self.emb_edge.out_dim,
            "1_2": self.emb_edge_ring.out_dim,
            "2_1": self.emb_edge_ring.out_dim,
            **{a: self.emb_edge_pair.out_dim for a in config.edge_adjacency},
        }
        self.plan = layer_plan(config.communications, config.layers)
        self.input_ranks = tuple(
            sorted({r for a in self.plan[0][0] for r in neighbourhood_ranks(a)} | {0} | set(self.plan[0][1]))
        )
        self.embed = nn.ModuleDict({"0": nn.Linear(1, h)})
        if 1 in self.input_ranks:
            self.embed["1"] = nn.Linear(self.emb_edge.out_dim + scalar, h)
        if 2 in self.input_ranks:
            self.embed["2"] = nn.Linear(self.emb_ring.out_dim, h)
        self.layers = nn.ModuleList(
            EMPCNDynamicsLayer(
                h,
                comms,
                ranks,
                inv_dims,
                config.residual,
                config.dropout,
                config.coord_agg,
                config.coord_weight,
                config.velocity_messages,
            )
            for comms, ranks in self.plan
        )

    def _invariants(
        self,
        geo: _Geometry,
        x: Tensor,
        pair_vel: Tensor | None,
        nbr: dict[str, Tensor],
        comms: tuple[str, ...],
        pair_scalar: Tensor | None,
    ) -> dict[str, Tensor]:
        """Per communication, the embedded invariants of positions ``x``; ``pair_vel``: ``v⁰_i − v⁰_j``
        of the 0→0 pairs when ``velocity_invariants`` (fixed input velocities, so computed once)."""
        inv: dict[str, Tensor] = {}
        for a in comms:
            idx = nbr[a]
            send, recv = idx[:, 0], idx[:, 1]
            if a == NODE_NODE:
                diff = x.index_select(0, recv) - x.index_select(0, send)
                d = torch.linalg.vector_norm(diff, dim=-1, keepdim=True)
                parts = [self.emb_node_pair(d)] + ([pair_scalar] if pair_scalar is not None else [])
                if pair_vel is not None:
                    closing = (pair_vel[:, :3] * diff).sum(dim=-1, keepdim=True) / d.clamp_min(1e-6)
                    parts += [closing, pair_vel[:, 3:]]
                inv[a] = torch.cat(parts, dim=-1)
            elif a == "0_1":
                inv[a] = self.emb_edge(geo.edge_len.index_select(0, recv).unsqueeze(-1))
            elif a == "1_0":
                inv[a] = self.emb_edge(geo.edge_len.index_select(0, send).unsqueeze(-1))
            elif a in EDGE_ADJACENCIES:
                ell = geo.edge_len
                inv[a] = self.emb_edge_pair(
                    torch.stack([ell.index_select(0, recv), ell.index_select(0, send), geo.pair_dist(a, idx)], dim=-1)
                )
            elif a == "1_2":
                inv[a] = self.emb_edge_ring(
                    torch.cat(
                        [geo.ring_scalars.index_select(0, recv), geo.edge_len.index_select(0, send)[:, None]], dim=-1
                    )
                )
            elif a == "2_1":
                inv[a] = self.emb_edge_ring(
                    torch.cat(
                        [geo.ring_scalars.index_select(0, send), geo.edge_len.index_select(0, recv)[:, None]], dim=-1
                    )
                )
            else:  # pragma: no cover - the config validates the names
                raise ValueError(f"EMPCNDynamics: no invariants defined for {a!r}")
        return inv

    def forward(self, batch: ComplexBatch) -> Tensor:
        name = "EMPCNDynamics"
        vel = velocity(batch, name)
        nbr = {a: neighbourhood_index(batch, a, name) for a in self.config.communications}
        pair_scalar = edge_scalar = None
        if self.config.use_node_scalar:
            pair_scalar = scalar_products(batch, nbr[NODE_NODE], name)
            edge_scalar = scalar_products(batch, batch.edge_index, name)
        # input velocities are fixed, so their pair differences are computed once per forward
        pair_vel = dv = None
        if self.config.velocity_invariants or self.config.velocity_messages:
            dv = vel[nbr[NODE_NODE][:, 1]] - vel[nbr[NODE_NODE][:, 0]]  # v⁰_i − v⁰_j per 0→0 pair: (P, 3)
            if self.config.velocity_invariants:  # [v⁰_i − v⁰_j ‖ ‖v⁰_i − v⁰_j‖]: (P, 4)
                pair_vel = torch.cat([dv, torch.linalg.vector_norm(dv, dim=-1, keepdim=True)], dim=-1)
        x = batch.pos
        plan = geometry.ring_plan(batch.ring_node, batch.ring_of, batch.num_rings, pos=x)
        geo = _Geometry.of(x, batch.edge_index, plan)
        h: dict[int, Tensor] = {0: self.embed["0"](speed(vel))}
        if "1" in self.embed:
            parts = [self.emb_edge(geo.edge_len.unsqueeze(-1))] + ([edge_scalar] if edge_scalar is not None else [])
            h[1] = self.embed["1"](torch.cat(parts, dim=-1))
        if "2" in self.embed:
            h[2] = self.embed["2"](self.emb_ring(geo.ring_scalars))
        return self.layer_stack(h, x, vel, nbr, batch.edge_index, plan, geo, pair_vel, dv, pair_scalar)

    #: the tensor-only method ``--compile`` compiles whole (:func:`~empcn.train.models.layers.use_compiled_messages`)
    compiled_stack = "layer_stack"

    def layer_stack(
        self,
        h: dict[int, Tensor],
        x: Tensor,
        vel: Tensor,
        nbr: dict[str, Tensor],
        edge_index: Tensor,
        plan: geometry.RingPlan,
        geo: _Geometry,
        pair_vel: Tensor | None,
        dv: Tensor | None,
        pair_scalar: Tensor | None,
    ) -> Tensor:
        """The layers from the input features ``h[r]``, positions and velocities ``x⁰, v⁰: (N, 3)``, the
        neighbourhoods ``nbr``, the topology (``edge_index``, the rings' :class:`~empcn.geometry.RingPlan`)
        and the input positions' geometry ``geo`` → ``(N, 3)``; invariants recomputed from every later
        layer's input positions. Tensors in, tensors out, no host synchronisation: the unit ``--compile``
        compiles whole.
        """
        for k, layer in enumerate(cast("Sequence[EMPCNDynamicsLayer]", self.layers)):
            if k > 0:
                geo = _Geometry.of(x, edge_index, plan)  # invariants of the updated positions
            inv = self._invariants(geo, x, pair_vel, nbr, layer.communications, pair_scalar)
            h, x = layer(h, x, vel, nbr, inv, dv)
        return x
