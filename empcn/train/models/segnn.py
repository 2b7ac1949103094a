"""SEGNN (Brandstetter, Hesselink, van der Pol, Bekkers, Welling; ICLR 2022, arXiv 2110.02905).

Steerable E(3)-equivariant message passing on e3nn irreps. Two models share one core:

* :class:`SEGNN` — QM9: an invariant ``0e`` readout, ``forward(batch) -> (B,)``.
* :class:`SEGNNDynamics` — N-body (SEGNN_G+P): a ``1o`` displacement added to the input positions,
  ``forward(batch) -> (N, 3)``.

Notation: ``h_i`` steerable node features of irreps ``V = n×0e + n×1o + n×2e + …`` up to ``lmax``
(the paper's weight-balanced irreps, :func:`balanced_irreps`); ``Y(r)`` the real spherical harmonics
of the unit vector ``r/‖r‖`` up to ``lmax_attr``, normalised per task as the reference code does
(``attr_normalization``: "integral", ``∫ Yˡ·Yˡ dΩ = 1`` so ``Y⁰ = 1/√(4π)``, for the position models;
"component", ``Y⁰ = 1`` and ``‖Yˡ‖² = 2l + 1``, for QM9); ``⊗_a`` a Clebsch–Gordan tensor product with
learned path weights, conditioned on the attribute ``a`` (:class:`SteerableLinear`); ``σ`` the gated
non-linearity (SiLU on the scalars, sigmoid gates on the non-scalars). With ``x_i`` the positions and
pairs ``(j → i)``, ``r_ij`` the relative vector (``relative_vector``: ``x_j − x_i`` as the reference
code for the position models; QM9's invariant output does not depend on its sign)::

    a_ij = Y(r_ij)                                        edge attribute
    a_i  = mean_j a_ij  [+ Y(v_i)  N-body, G+P]           node attribute, 0e component set to 1
    h_i⁰ = W_emb ⊗_{a_i} f_i
    m_ij = σ(W_m2 ⊗_{a_ij} σ(W_m1 ⊗_{a_ij} [h_i ‖ h_j ‖ ‖r_ij‖ (‖ s_i s_j)]))
    m_i  = agg_j m_ij                                     sum (the paper, default) or mean
    h_i' = h_i + W_u2 ⊗_{a_i} σ(W_u1 ⊗_{a_i} [h_i ‖ m_i])  residual update

QM9 readout: ``y = MLP(pool_i W_p2 ⊗_{a_i} σ(W_p1 ⊗_{a_i} h_i))`` with ``W_p2`` onto ``hidden×0e``,
pool mean (the paper) or sum, MLP = [Linear, SiLU, Linear] in float32. N-body readout:
``x_i' = x_i + W_p2 ⊗_{a_i} σ(W_p1 ⊗_{a_i} h_i)`` with ``W_p2`` onto ``1x1o``, its weights
initialised at ``output_init_scale`` of the usual scale (1, as the reference code; runs saved before
the option existed started at 1e-3).

Inputs ``f_i``: QM9 ``node_feat`` as ``F×0e``; N-body ``[x_i − x̄_g (1o), v_i (1o), ‖v_i‖ (0e)]``
with ``x̄_g`` the centroid of the particle's *graph* (never a per-node mean: the reference code
subtracts the mean of each particle's three coordinates, which is not equivariant — its issue #12).
Graphs: QM9 the radius graph of the atoms (``cutoff`` Å, the paper's 2 Å; 0 = fully connected);
N-body the fully connected graph of each system (as the other position models) or both directions of
``batch.edge_index``. Invariants are computed from positions, never read from the batch. Both models run in the parameters' dtype even inside a bf16 autocast region (e3nn's tensor
products do not support autocast).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from e3nn import o3
from e3nn.nn import Dropout as IrrepDropout
from torch import Tensor, nn

from empcn.train.batch import ComplexBatch
from empcn.train.fully_connected import fully_connected_pairs
from empcn.train.models.base import ModelConfig
from empcn.train.models.dynamics_inputs import node_scalar, position_model_fields, velocity
from empcn.train.models.layers import (
    check_dropout,
    check_node_features,
    check_sizes,
    full_precision,
    in_param_dtype,
    mlp,
    scatter_mean,
    scatter_sum,
)

Aggregation = Literal["mean", "sum"]
AttrNormalization = Literal["integral", "component"]
RelativeVector = Literal["x_j-x_i", "x_i-x_j"]

__all__ = ["SEGNN", "SEGNNConfig", "SEGNNDynamics", "SEGNNDynamicsConfig", "SteerableLinear", "balanced_irreps"]


# ----------------------------------------------------------------------------------------------
# irreps


def sh_irreps(lmax: int) -> o3.Irreps:
    """``1x0e + 1x1o + 1x2e + …`` up to ``lmax``: the irreps of the spherical harmonics (parity (−1)ˡ)."""
    return o3.Irreps.spherical_harmonics(lmax)


def _sh_paths(lmax: int, lmax_attr: int) -> int:
    """Number of CG paths ``l1 ⊗ l2 → l`` (``l1, l ≤ lmax``, ``l2 ≤ lmax_attr``) that keep parity (−1)ˡ."""
    return sum(
        1
        for l1 in range(lmax + 1)
        for l2 in range(lmax_attr + 1)
        for lo in range(lmax + 1)
        if abs(l1 - l2) <= lo <= l1 + l2 and (l1 + l2 + lo) % 2 == 0
    )


def balanced_irreps(hidden: int, lmax: int, lmax_attr: int) -> o3.Irreps:
    """The paper's weight-balanced hidden irreps ``n×0e + n×1o + … + n×lmax``.

    ``n`` is the smallest multiplicity for which a tensor product ``V ⊗ Y(lmax_attr) → V`` has at least
    as many weights (``n² × paths``) as a ``hidden × hidden`` linear layer of scalars.
    """
    paths = _sh_paths(lmax, lmax_attr)
    n = max(1, math.isqrt(hidden * hidden // paths))
    while n * n * paths < hidden * hidden:
        n += 1
    return o3.Irreps([(n, (l, (-1) ** l)) for l in range(lmax + 1)])


def _check_irreps_config(
    name: str, hidden: int, layers: int, lmax: int, lmax_attr: int, dropout: float, agg: str, normalization: str
) -> None:
    check_sizes(name, hidden=hidden, layers=layers)
    check_dropout(name, dropout)
    if not 0 <= lmax <= 4 or not 1 <= lmax_attr <= 4:
        raise ValueError(f"{name}: lmax must be in 0..4 and lmax_attr in 1..4, got lmax={lmax}, lmax_attr={lmax_attr}")
    if agg not in ("mean", "sum"):
        raise ValueError(f"{name}: aggregation must be 'mean' or 'sum', got {agg!r}")
    if normalization not in ("integral", "component"):
        raise ValueError(f"{name}: attr_normalization must be 'integral' or 'component', got {normalization!r}")


# ----------------------------------------------------------------------------------------------
# configs


@dataclass(frozen=True)
class SEGNNConfig(ModelConfig):
    """SEGNN for graph-level invariant regression (QM9). Defaults: the paper's QM9 model.

    ``hidden``: the scalar width whose weight budget the steerable irreps match (:func:`balanced_irreps`);
    ``lmax`` / ``lmax_attr``: orders of the hidden features / the attributes (paper: 2 / 3);
    ``cutoff``: radius graph in Å (paper: 2 Å; 0 = all atom pairs); ``aggregation`` of messages
    (paper: sum); ``pool`` over atoms before the head (paper: mean). Dropout drops whole irreps.
    ``attr_normalization``: of the spherical-harmonic attributes (the reference's QM9 code: "component").
    ``optimize_einsums``: e3nn's contraction-order search at build time (~2 s per model, ~20 % faster
    training steps on CPU; the same function either way — tests build without it).
    """

    INPUT_FIELDS: ClassVar[dict[str, str]] = {"node": "in_node_features"}

    in_node_features: int = 15
    hidden: int = 128
    layers: int = 7
    lmax: int = 2
    lmax_attr: int = 3
    cutoff: float = 2.0
    aggregation: Aggregation = "sum"
    pool: Aggregation = "mean"
    dropout: float = 0.0
    optimize_einsums: bool = True
    attr_normalization: AttrNormalization = "component"

    def __post_init__(self) -> None:
        _check_irreps_config(
            "SEGNNConfig",
            self.hidden,
            self.layers,
            self.lmax,
            self.lmax_attr,
            self.dropout,
            self.aggregation,
            self.attr_normalization,
        )
        check_sizes("SEGNNConfig", in_node_features=self.in_node_features)
        if not (math.isfinite(self.cutoff) and self.cutoff >= 0):
            raise ValueError(f"SEGNNConfig: cutoff must be ≥ 0 Å (0 = fully connected), got {self.cutoff}")
        if self.pool not in ("mean", "sum"):
            raise ValueError(f"SEGNNConfig: pool must be 'mean' or 'sum', got {self.pool!r}")


@dataclass(frozen=True)
class SEGNNDynamicsConfig(ModelConfig):
    """SEGNN_G+P for position prediction (N-body, MoCap). Defaults: the paper's charged N-body model
    (4 layers, hidden 64, ``lmax`` 1, ``lmax_attr`` 1, no normalisation) in the reference code's conventions.

    ``velocity_attr``: add ``Y(v_i)`` to the node attributes (the "physical" P of G+P).
    ``use_node_scalar``: the product ``s_i s_j`` (charges; masses for gravity) as a message invariant.
    ``connectivity``: ``"full"`` = all particle pairs, ``"complex"`` = both directions of ``edge_index``.
    ``aggregation``: of the messages at the receiver, ``"sum"`` (the reference) or ``"mean"``.
    ``attr_normalization``: of ``Y``, ``"integral"`` (the reference's N-body code) or ``"component"``
    (``√(4π)`` times larger).
    ``relative_vector``: ``r_ij`` of the pair ``(j → i)``, ``"x_j-x_i"`` (the reference) or ``"x_i-x_j"``.
    It changes the function: the node attribute adds ``Y(v_i)`` to the mean of ``Y(r_ij)``, and the
    odd orders of ``Y(r_ij)`` change sign with ``r_ij``, those of ``Y(v_i)`` do not.
    ``output_init_scale``: the output product ``W_p2`` starts at this fraction of the usual
    initialisation (1: the reference; 1e-3 starts the model near ``x' = x``).
    ``optimize_einsums``: as in :class:`SEGNNConfig`.

    Runs saved before ``attr_normalization``, ``relative_vector`` and ``output_init_scale`` existed
    trained with component normalisation, ``x_i − x_j`` and an output scale of 1e-3
    (:data:`SAVED_WITHOUT`; their saved ``aggregation`` is ``"mean"``). The trainer clips no gradient
    norm for this model by default (:data:`DEFAULT_CLIP`, the reference does not clip).
    """

    SAVED_WITHOUT: ClassVar[dict[str, object]] = {
        "attr_normalization": "component",
        "relative_vector": "x_i-x_j",
        "output_init_scale": 1e-3,
    }
    DEFAULT_CLIP: ClassVar[float] = 0.0

    hidden: int = 64
    layers: int = 4
    lmax: int = 1
    lmax_attr: int = 1
    aggregation: Aggregation = "sum"
    velocity_attr: bool = True
    use_node_scalar: bool = True
    connectivity: Literal["full", "complex"] = "full"
    dropout: float = 0.0
    optimize_einsums: bool = True
    attr_normalization: AttrNormalization = "integral"
    relative_vector: RelativeVector = "x_j-x_i"
    output_init_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_irreps_config(
            "SEGNNDynamicsConfig",
            self.hidden,
            self.layers,
            self.lmax,
            self.lmax_attr,
            self.dropout,
            self.aggregation,
            self.attr_normalization,
        )
        if self.connectivity not in ("full", "complex"):
            raise ValueError(
                f"SEGNNDynamicsConfig: connectivity must be 'full' or 'complex', got {self.connectivity!r}"
            )
        if self.relative_vector not in ("x_j-x_i", "x_i-x_j"):
            raise ValueError(
                f"SEGNNDynamicsConfig: relative_vector must be 'x_j-x_i' or 'x_i-x_j', got {self.relative_vector!r}"
            )
        if not (math.isfinite(self.output_init_scale) and self.output_init_scale > 0):
            raise ValueError(f"SEGNNDynamicsConfig: output_init_scale must be positive, got {self.output_init_scale}")

    def reads_fields(self) -> tuple[str | tuple[str, ...], ...]:
        return position_model_fields(self.use_node_scalar)


# ----------------------------------------------------------------------------------------------
# building blocks


@functools.cache
def _second_moment_scale(name: str) -> float:
    """``1 / sqrt(E[f(z)²])`` for ``z ~ N(0, 1)`` (Gauss–Hermite quadrature): keeps unit-variance inputs
    at unit second moment through the activation ``f`` (``"silu"`` or ``"sigmoid"``), as e3nn's gates do."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    f = nn.functional.silu(z) if name == "silu" else torch.sigmoid(z)
    return float(1.0 / np.sqrt(float((torch.as_tensor(weights) * f * f).sum()) / np.sqrt(2.0 * np.pi)))


class GatedNonlinearity(nn.Module):
    """σ on ``[scalars ‖ gates ‖ gated]``: ``c₁·SiLU(scalars) ‖ c₂·sigmoid(gate_k) · gated_k``.

    One ``0e`` gate per non-scalar irrep ``k`` of ``gated`` (each of its ``2l + 1`` components is scaled
    by the same invariant, so the map is equivariant); ``c₁, c₂`` normalise the second moment.
    Input ``(M, num_scalars + num_gates + gated.dim)`` → ``(M, num_scalars + gated.dim)``.
    """

    def __init__(self, num_scalars: int, gated: o3.Irreps) -> None:
        super().__init__()
        self.num_scalars = num_scalars
        self.num_gates = gated.num_irreps
        self.blocks = [(mul, ir.dim) for mul, ir in gated]
        self.c_silu = _second_moment_scale("silu")
        self.c_sigmoid = _second_moment_scale("sigmoid")

    def forward(self, x: Tensor) -> Tensor:
        k, g = self.num_scalars, self.num_gates
        out = [self.c_silu * nn.functional.silu(x[:, :k])]
        gates = self.c_sigmoid * torch.sigmoid(x[:, k : k + g])
        start, gate_start = k + g, 0
        for mul, dim in self.blocks:  # one block per order l (≤ lmax + 1 blocks)
            block = x[:, start : start + mul * dim].reshape(-1, mul, dim)
            gate = gates[:, gate_start : gate_start + mul].unsqueeze(-1)
            out.append((gate * block).reshape(-1, mul * dim))
            start, gate_start = start + mul * dim, gate_start + mul
        return torch.cat(out, dim=-1)


def _constants_after_loading(module: SteerableLinear, _keys: object) -> None:
    """A checkpoint saved in float32 holds float32-rounded CG constants: recompute them once loaded."""
    module._exact_constants()


class SteerableLinear(nn.Module):
    """``W ⊗_a x``: a fully connected CG tensor product of ``x`` with the attribute ``a``, plus a bias on
    the ``0e`` outputs; with ``gate`` the gated non-linearity σ follows (:class:`GatedNonlinearity`).

    ``x: (M, irreps_in.dim)``, ``a: (M, irreps_attr.dim)`` → ``(M, irreps_out.dim)``; ``irreps_out``
    lists its ``0e`` block first. With a gate the product maps onto ``scalars + gates + gated`` (one
    ``0e`` gate per non-scalar irrep of ``irreps_out``). Weights: e3nn's default initialisation and path
    normalisation, initialised and scaled as ``nn.Linear`` (:meth:`_linear_init`). ``optimize``: let
    e3nn choose the einsum contraction order at build time (~0.1 s per product, faster steps).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_attr: o3.Irreps,
        irreps_out: o3.Irreps,
        gate: bool,
        optimize: bool = False,
    ) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        num_scalars = sum(m for m, ir in irreps_out if ir.l == 0)
        first = irreps_out[: len([1 for _, ir in irreps_out if ir.l == 0])]
        if first.dim != num_scalars or any(ir != o3.Irrep("0e") for _, ir in first):
            raise ValueError(f"SteerableLinear: irreps_out {irreps_out} must list its (0e) scalars first")
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        self.gate = GatedNonlinearity(num_scalars, gated) if gate else None
        tp_out = (first + o3.Irreps(f"{gated.num_irreps}x0e") + gated) if gate and gated.num_irreps else irreps_out
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_attr, tp_out, _optimize_einsums=optimize)
        self.num_scalars = num_scalars + (gated.num_irreps if gate else 0)  # the leading 0e block gets the bias
        self.bias = nn.Parameter(torch.zeros(self.num_scalars)) if self.num_scalars else None
        self.irreps_out = irreps_out
        self.register_buffer("rescale", self._linear_init(tp_out), persistent=False)
        self.register_load_state_dict_post_hook(_constants_after_loading)

    def _linear_init(self, tp_out: o3.Irreps) -> Tensor:
        """Initialise like ``nn.Linear`` (the paper's code): each path weight ~ U(±1/√k) with k the fan-in
        (Σ mul₁·mul₂ over the paths) of its output block, and the product scaled by √k per block, so
        outputs start at a third of the input variance and Adam's steps act at nn.Linear's scale.
        Returns the ``(tp_out.dim,)`` per-component factor √k (1 for blocks no path reaches)."""
        fan_in = [0] * len(tp_out)
        for ins in self.tp.instructions:
            fan_in[ins.i_out] += self.tp.irreps_in1[ins.i_in1].mul * self.tp.irreps_in2[ins.i_in2].mul
        with torch.no_grad():
            for weight, ins in zip(self.tp.weight_views(), self.tp.instructions):
                weight.uniform_(-1.0, 1.0).div_(math.sqrt(fan_in[ins.i_out]))
            if self.bias is not None:
                k = fan_in[0] if fan_in and fan_in[0] else 1
                self.bias.uniform_(-1.0, 1.0).div_(math.sqrt(k))
        scale = [math.sqrt(k) if k else 1.0 for k in fan_in]
        return torch.cat([torch.full((mul * ir.dim,), f) for (mul, ir), f in zip(tp_out, scale)])

    def _apply(self, fn, recurse=True):
        """After every ``.to`` / ``.double()``: the CG constants recomputed in float64 and cast, so a
        model built (or trained) in float32 and cast to float64 is equivariant to float64 precision."""
        out = super()._apply(fn, recurse)
        self._exact_constants()
        return out

    def _exact_constants(self) -> None:
        with torch.no_grad():
            for name, buf in self.tp.named_buffers():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith("_w3j_"):
                    l1, l2, l3 = (int(k) for k in leaf[len("_w3j_") :].split("_"))
                    buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(buf.dtype))

    def forward(self, x: Tensor, attr: Tensor) -> Tensor:
        out = self.tp(x, attr) * self.rescale
        if self.bias is not None:
            k = self.num_scalars
            out = torch.cat([out[:, :k] + self.bias, out[:, k:]], dim=-1)
        return self.gate(out) if self.gate is not None else out


class SEGNNLayer(nn.Module):
    """One message → aggregate → residual-update layer (the module docstring's ``m_ij``, ``m_i``, ``h_i'``)."""

    def __init__(
        self,
        hidden: o3.Irreps,
        edge_attr: o3.Irreps,
        node_attr: o3.Irreps,
        num_invariants: int,
        aggregation: Aggregation,
        dropout: float,
        optimize: bool = False,
    ) -> None:
        super().__init__()
        message_in = hidden + hidden + o3.Irreps(f"{num_invariants}x0e")
        self.message_1 = SteerableLinear(message_in, edge_attr, hidden, gate=True, optimize=optimize)
        self.message_2 = SteerableLinear(hidden, edge_attr, hidden, gate=True, optimize=optimize)
        self.update_1 = SteerableLinear(hidden + hidden, node_attr, hidden, gate=True, optimize=optimize)
        self.update_2 = SteerableLinear(hidden, node_attr, hidden, gate=False, optimize=optimize)
        self.dropout = IrrepDropout(hidden, dropout) if dropout > 0 else nn.Identity()
        self.aggregation = aggregation

    def forward(self, h: Tensor, pairs: Tensor, edge_attr: Tensor, node_attr: Tensor, invariants: Tensor) -> Tensor:
        """``h: (N, V)``, ``pairs: (P, 2)`` [sender j, receiver i], ``edge_attr: (P, A)``, ``node_attr: (N, A)``,
        ``invariants: (P, k)`` → ``h': (N, V)``."""
        send, recv = pairs[:, 0], pairs[:, 1]
        m = self.message_1(torch.cat([h[recv], h[send], invariants], dim=-1), edge_attr)
        m = self.message_2(m, edge_attr)
        reduce = scatter_mean if self.aggregation == "mean" else scatter_sum
        agg = reduce(m, recv, h.shape[0])
        update = self.update_2(self.update_1(torch.cat([h, agg], dim=-1), node_attr), node_attr)
        return h + self.dropout(update)


class SEGNNCore(nn.Module):
    """Embedding, ``layers`` SEGNN layers and the node-level pre-readout ``W_p2 ⊗ σ(W_p1 ⊗ h)``."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        hidden: int,
        layers: int,
        lmax: int,
        lmax_attr: int,
        num_invariants: int,
        aggregation: Aggregation,
        dropout: float,
        optimize: bool,
        attr_normalization: AttrNormalization,
    ) -> None:
        super().__init__()
        self.irreps_hidden = hid = balanced_irreps(hidden, lmax, lmax_attr)
        self.irreps_attr = attr = sh_irreps(lmax_attr)
        self.attr_normalization = attr_normalization
        self.embed = SteerableLinear(irreps_in, attr, hid, gate=False, optimize=optimize)
        self.layers = nn.ModuleList(
            SEGNNLayer(hid, attr, attr, num_invariants, aggregation, dropout, optimize) for _ in range(layers)
        )
        self.pre_1 = SteerableLinear(hid, attr, hid, gate=True, optimize=optimize)
        self.pre_2 = SteerableLinear(hid, attr, irreps_out, gate=False, optimize=optimize)

    def edge_attributes(self, rel: Tensor) -> Tensor:
        """``Y(r)`` of vectors ``rel: (M, 3)`` → ``(M, A)`` in the core's normalisation (a zero vector gives
        ``[Y⁰, 0, …]``)."""
        return o3.spherical_harmonics(self.irreps_attr, rel, normalize=True, normalization=self.attr_normalization)

    def forward(self, f: Tensor, pairs: Tensor, edge_attr: Tensor, node_attr: Tensor, invariants: Tensor) -> Tensor:
        h = self.embed(f, node_attr)
        for layer in self.layers:
            h = layer(h, pairs, edge_attr, node_attr, invariants)
        return self.pre_2(self.pre_1(h, node_attr), node_attr)


def _node_attributes(edge_attr: Tensor, recv: Tensor, num_nodes: int, extra: Tensor | None) -> Tensor:
    """``mean_j a_ij (+ extra)`` with the 0e component set to 1 (isolated nodes too)."""
    attr = scatter_mean(edge_attr, recv, num_nodes)
    if extra is not None:
        attr = attr + extra
    return torch.cat([torch.ones_like(attr[:, :1]), attr[:, 1:]], dim=-1)


# ----------------------------------------------------------------------------------------------
# models


def radius_pairs(pos: Tensor, node_graph: Tensor, cutoff: float) -> Tensor:
    """Ordered pairs ``(j, i)``, ``i ≠ j``, of the same graph with ``‖x_i − x_j‖ < cutoff`` (0: all pairs)."""
    pairs = fully_connected_pairs(node_graph)
    if cutoff <= 0:
        return pairs
    dist = torch.linalg.vector_norm(pos[pairs[:, 1]] - pos[pairs[:, 0]], dim=-1)
    return pairs[dist < cutoff]


class SEGNN(nn.Module):
    """SEGNN's QM9 model: ``forward(batch) -> (B,)`` invariant predictions (see the module docstring).

    Reads ``batch.node_feat``, ``batch.pos``, ``batch.node_graph``.
    """

    def __init__(self, config: SEGNNConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.core = SEGNNCore(
            o3.Irreps(f"{config.in_node_features}x0e"),
            o3.Irreps(f"{h}x0e"),
            h,
            config.layers,
            config.lmax,
            config.lmax_attr,
            1,
            config.aggregation,
            config.dropout,
            config.optimize_einsums,
            config.attr_normalization,
        )
        self.head = mlp([h, h, 1])

    def forward(self, batch: ComplexBatch) -> Tensor:
        check_node_features(batch, self.config.in_node_features, "SEGNN")
        with full_precision(batch.pos):  # e3nn's tensor products do not run under autocast
            return self._forward(batch)

    def _forward(self, batch: ComplexBatch) -> Tensor:
        pos = batch.pos
        pairs = radius_pairs(pos, batch.node_graph, self.config.cutoff)
        rel = pos[pairs[:, 1]] - pos[pairs[:, 0]]
        edge_attr = self.core.edge_attributes(rel)
        node_attr = _node_attributes(edge_attr, pairs[:, 1], batch.num_nodes, None)
        dist = torch.linalg.vector_norm(rel, dim=-1, keepdim=True)
        node_out = in_param_dtype(self.core(batch.node_feat, pairs, edge_attr, node_attr, dist), self.head)
        reduce = scatter_mean if self.config.pool == "mean" else scatter_sum
        return self.head(reduce(node_out, batch.node_graph, batch.num_graphs)).squeeze(-1)


class SEGNNDynamics(nn.Module):
    """SEGNN_G+P for N-body: ``forward(batch) -> (N, 3)`` predicted positions ``x + Δ`` (module docstring).

    Reads ``batch.pos``, the fields ``nodes/vel`` (required) and ``nodes/charge`` / ``nodes/mass`` (when
    ``use_node_scalar``), ``batch.node_graph`` and, for ``connectivity="complex"``, ``batch.edge_index``.
    """

    def __init__(self, config: SEGNNDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        invariants = 2 if config.use_node_scalar else 1
        self.core = SEGNNCore(
            o3.Irreps("1x1o + 1x1o + 1x0e"),
            o3.Irreps("1x1o"),
            config.hidden,
            config.layers,
            config.lmax,
            config.lmax_attr,
            invariants,
            config.aggregation,
            config.dropout,
            config.optimize_einsums,
            config.attr_normalization,
        )
        if config.output_init_scale != 1.0:
            with torch.no_grad():
                self.core.pre_2.tp.weight.mul_(config.output_init_scale)

    #: the tensor-only method ``--compile`` compiles whole (:func:`~empcn.train.models.layers.use_compiled_messages`)
    compiled_stack = "layer_stack"

    def pairs(self, batch: ComplexBatch) -> Tensor:
        if self.config.connectivity == "full":
            return fully_connected_pairs(batch.node_graph)
        e = batch.edge_index
        return torch.cat([e, e.flip(1)], dim=0)

    def forward(self, batch: ComplexBatch) -> Tensor:
        with full_precision(batch.pos):  # e3nn's tensor products do not run under autocast
            return self._forward(batch)

    def _forward(self, batch: ComplexBatch) -> Tensor:
        pos, vel = batch.pos, velocity(batch, "SEGNNDynamics")
        pairs = self.pairs(batch)
        send, recv = pairs[:, 0], pairs[:, 1]
        rel = pos[send] - pos[recv] if self.config.relative_vector == "x_j-x_i" else pos[recv] - pos[send]
        edge_attr = self.core.edge_attributes(rel)
        vel_attr = self.core.edge_attributes(vel) if self.config.velocity_attr else None
        node_attr = _node_attributes(edge_attr, recv, batch.num_nodes, vel_attr)
        invariants = [torch.linalg.vector_norm(rel, dim=-1, keepdim=True)]
        if self.config.use_node_scalar:
            s = node_scalar(batch, "SEGNNDynamics")
            invariants.append((s[recv] * s[send]).unsqueeze(-1))
        centroid = scatter_mean(pos, batch.node_graph, batch.num_graphs)[batch.node_graph]  # per graph, never per node
        speed = torch.linalg.vector_norm(vel, dim=-1, keepdim=True)
        f = torch.cat([pos - centroid, vel, speed], dim=-1)
        return self.layer_stack(pos, f, pairs, edge_attr, node_attr, torch.cat(invariants, dim=-1))

    def layer_stack(
        self, pos: Tensor, f: Tensor, pairs: Tensor, edge_attr: Tensor, node_attr: Tensor, invariants: Tensor
    ) -> Tensor:
        """``x + Δ`` from the inputs ``f: (N, 7)``, ``pairs: (P, 2)``, the attributes and ``invariants: (P, k)``.

        Tensors in, tensors out, no host synchronisation: the unit ``--compile`` compiles whole (on
        CPU with one thread ≈2× faster steps than eager, after ≈2 min of compilation).
        """
        return pos + self.core(f, pairs, edge_attr, node_attr, invariants)
