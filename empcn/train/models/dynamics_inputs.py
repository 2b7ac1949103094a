"""Position-predicting models for N-body dynamics (``forward(batch) -> (N, 3)``): what they read, and the
checks their configs share.

Three models, all E(n)-equivariant in positions and velocities (rotations, reflections; positions
also translate, velocities do not) and equivariant to relabelling the particles:

* :class:`~empcn.train.models.egnn_dynamics.EGNNDynamics` — EGNN's N-body model (Satorras et al. 2021, arXiv 2102.09844): 4 layers of
  :class:`~empcn.train.models.egnn.EGNNLayer` with the velocity term on the fully connected graph.
* :class:`~empcn.train.models.empcn_dynamics.EMPCNDynamics` — full EMPCN of dimension 2 (Kovač et al. 2024, arXiv 2406.03145, N-body
  appendix): six communications 0→0, 0→1, 1→0, 1→1, 1→2, 2→1; only node–node messages move positions.
  By default with two velocity extensions of empcn's (its config).
* :class:`~empcn.train.models.decoupled_dynamics.DecoupledDynamics` — the EGNN above plus ring → node messages (decoupled EMPCN).

**Invariants are never read from the batch.** Every model computes all geometric quantities it uses
(pair distances, edge lengths, ring radius/perimeter, barycentre distances) from positions with
:mod:`empcn.geometry` — from the input positions in the first layer and from the *updated* positions
in every later one — so the stored ``edge_len``, ``ring_*`` and ``nbr_dist`` of a
:class:`~empcn.train.batch.ComplexBatch` are ignored (tests replace them with garbage). Inputs read:
``pos``, the field ``nodes/vel`` (required), a per-node scalar (``nodes/charge``; ``nodes/mass`` for
gravity, :data:`empcn.schema.NODE_SCALAR_FIELDS`), ``node_graph``, and the topology (``edge_index``,
ring slots, ``nbr`` index pairs).

Every model drops the parts of its last layers whose output nothing reads (the final node-feature
update, the ring features of the last layer, …), so every parameter receives a gradient and the
parameter counts are those of the computation actually performed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from empcn import schema
from empcn.train.batch import ComplexBatch
from empcn.train.models.base import ModelConfig
from empcn.train.models.layers import check_dropout, check_sizes

CoordAgg = Literal["mean", "sum"]
Connectivity = Literal["full", "complex"]


@dataclass(frozen=True)
class DynamicsConfig(ModelConfig):
    """The fields every position-predicting model's config shares (a config re-declares a field to
    change its default), and their checks.

    ``hidden``, ``layers``, ``residual`` (``h + Δh`` node updates), ``dropout`` (on the updates).
    The EGNN-style position step ``x' = x + φ_v(h) v⁰ + C · agg_j [(x_i − x_j) φ_x(m_ij)
    (+ (v⁰_i − v⁰_j) φ_w(m_ij))]``: ``coord_agg`` — agg is the mean (EGNN's N-body code) or the sum
    over a particle's pairs; ``coord_weight`` — C. ``use_node_scalar``: feed ``s_i s_j`` (charge
    product; mass product for gravity) into the pair inputs. ``velocity_messages`` (an empcn extension):
    the φ_w term — positions also move along the relative input velocities, a second equivariant
    vector per pair beside ``x_i − x_j`` (velocities rotate, do not translate).
    """

    hidden: int = 64
    layers: int = 4
    residual: bool = True
    dropout: float = 0.0
    coord_agg: CoordAgg = "mean"
    coord_weight: float = 1.0
    use_node_scalar: bool = True
    velocity_messages: bool = False

    def check_dynamics(self, name: str) -> None:
        """Raise a one-line ValueError naming ``name``: sizes ≥ 1, dropout in [0, 1), ``coord_agg`` mean
        or sum, a finite ``coord_weight``."""
        check_sizes(name, hidden=self.hidden, layers=self.layers)
        check_dropout(name, self.dropout)
        if self.coord_agg not in ("mean", "sum"):
            raise ValueError(f"{name}: coord_agg must be 'mean' or 'sum', got {self.coord_agg!r}")
        if not math.isfinite(self.coord_weight):
            raise ValueError(f"{name}: coord_weight must be finite, got {self.coord_weight}")

    def reads_fields(self) -> tuple[str | tuple[str, ...], ...]:
        return position_model_fields(self.use_node_scalar)


def position_model_fields(use_node_scalar: bool) -> tuple[str | tuple[str, ...], ...]:
    """What a position model reads beside the complex: the input velocities and, when it uses one, a
    per-node scalar (a charge or a mass)."""
    return (schema.NODE_VEL, schema.NODE_SCALAR_FIELDS) if use_node_scalar else (schema.NODE_VEL,)


def velocity(batch: ComplexBatch, model: str) -> Tensor:
    """``(N, 3)`` input velocities (the field ``nodes/vel``), or a one-line error."""
    vel = batch.fields.get(schema.NODE_VEL)
    if vel is None or vel.shape != batch.pos.shape:
        got = None if vel is None else tuple(vel.shape)
        raise ValueError(
            f"{model}: the batch field {schema.NODE_VEL!r} must be (N, 3) = {tuple(batch.pos.shape)} input "
            f"velocities, got {got}"
        )
    return vel


def node_scalar(batch: ComplexBatch, model: str) -> Tensor:
    """``(N,)`` per-particle scalar: the first of :data:`empcn.schema.NODE_SCALAR_FIELDS` the batch
    carries (a charge, or a mass for gravity), or a one-line error."""
    s = next((batch.fields[k] for k in schema.NODE_SCALAR_FIELDS if k in batch.fields), None)
    if s is None or s.shape[0] != batch.num_nodes or s.numel() != batch.num_nodes:
        got = None if s is None else tuple(s.shape)
        raise ValueError(
            f"{model}: the batch must carry one charge (or mass) per node ({' or '.join(schema.NODE_SCALAR_FIELDS)}, "
            f"{batch.num_nodes} values), got {got}; set use_node_scalar=False to ignore it"
        )
    return s.reshape(-1)


def speed(vel: Tensor) -> Tensor:
    """EGNN's N-body node feature ‖v_i‖: ``(N, 1)``."""
    return torch.linalg.vector_norm(vel, dim=-1, keepdim=True)


def scalar_products(batch: ComplexBatch, pairs: Tensor, model: str) -> Tensor:
    """``s_i s_j: (P, 1)`` of the pairs ``(P, 2)`` (charge product; mass product for gravity)."""
    s = node_scalar(batch, model)
    return (s[pairs[:, 0]] * s[pairs[:, 1]]).unsqueeze(-1)
