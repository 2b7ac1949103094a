"""Shared building blocks of the models: MLPs, gated messages, scatter sums, neighbourhood access.

The fixed embeddings of invariants live in :mod:`empcn.train.models.embedding`.

Everything here is torch-native (``index_add_``), dtype-agnostic (works in float32 and float64:
buffers follow ``module.to(dtype)``) and vectorised over cells and pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from empcn.schema import RING_KIND
from empcn.train.batch import ComplexBatch


def mlp(dims: Sequence[int], *, final_activation: bool = False) -> nn.Sequential:
    """``Linear → SiLU → … → Linear`` through ``dims`` (at least 2); SiLU after the last too if asked."""
    if len(dims) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(dims)}")
    layers: list[nn.Module] = []
    for k in range(len(dims) - 1):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2 or final_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def position_weight_mlp(hidden: int) -> nn.Sequential:
    """``[Linear, SiLU, Linear → 1]``: a per-pair weight of an equivariant position step (EGNN's φ_x).

    The last layer has no bias and starts near zero (Xavier gain 1e-3), so the first position steps
    are small, as in EGNN's code.
    """
    last = nn.Linear(hidden, 1, bias=False)
    nn.init.xavier_uniform_(last.weight, gain=1e-3)
    return nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), last)


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum the rows of ``src: (P, D)`` into ``(dim_size, D)`` at rows ``index: (P,)``."""
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of the rows of ``src`` per target row (0 where a row receives nothing)."""
    total = scatter_sum(src, index, dim_size)
    count = torch.bincount(index, minlength=dim_size).clamp_min(1).to(src.dtype)
    return total / count.view((-1,) + (1,) * (src.dim() - 1))


class GatedMessage(nn.Module):
    """``m = [Linear, SiLU, Linear, SiLU](x)``, ``e = sigmoid(Linear(m))``; returns ``e·m``.

    The soft edge gate of EGNN's QM9 model (its "attention") and of EMPSN/EMPCN.
    ``x: (P, in_dim)`` → ``(P, out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, gate: bool = True) -> None:
        super().__init__()
        self.net = mlp([in_dim, out_dim, out_dim], final_activation=True)
        self.gate = nn.Linear(out_dim, 1) if gate else None
        self.compiled = False  # pairwise through the compiled pair_messages (use_compiled_messages)

    def forward(self, x: Tensor) -> Tensor:
        return gate_messages(self.net(x), *self._gate_params())

    def pairwise(self, h_recv: Tensor, h_send: Tensor, recv: Tensor, send: Tensor, extra: Tensor) -> Tensor:
        """``forward(cat[h_recv[recv], h_send[send], extra])`` computed with the first Linear split by block.

        ``W·[a ‖ b ‖ c] = W_a a + W_b b + W_c c``: the receiver and sender blocks are projected once per
        *cell* (``h_recv: (n_σ, A)``, ``h_send: (n_τ, B)``) and then gathered by ``recv, send: (P,)``,
        instead of once per pair; ``extra: (P, C)`` holds the per-pair inputs (``A + B + C = in_dim``).
        The same function and parameters as :meth:`forward`, with far fewer FLOPs on dense relations.
        With ``compiled`` set (``--compile``, :func:`use_compiled_messages`) the per-pair part runs as one
        ``torch.compile``d kernel chain (gathers, sums, SiLUs and gate fused; the same function).
        """
        first, second = cast(nn.Linear, self.net[0]), cast(nn.Linear, self.net[2])
        w, a, b = first.weight, h_recv.shape[1], h_send.shape[1]
        if a + b + extra.shape[1] != w.shape[1]:
            raise ValueError(
                f"GatedMessage: inputs of widths {a} + {b} + {extra.shape[1]} for a first layer of width {w.shape[1]}"
            )
        recv_proj = nn.functional.linear(h_recv, w[:, :a], first.bias)
        send_proj = nn.functional.linear(h_send, w[:, a : a + b])
        fn = _compiled_pair_messages() if self.compiled else pair_messages
        return fn(
            recv_proj, send_proj, recv, send, extra, w[:, a + b :], second.weight, second.bias, *self._gate_params()
        )

    def _gate_params(self) -> tuple[Tensor | None, Tensor | None]:
        return (None, None) if self.gate is None else (self.gate.weight, self.gate.bias)


def gate_messages(m: Tensor, gate_w: Tensor | None, gate_b: Tensor | None) -> Tensor:
    """``e·m`` with the soft edge gate ``e = sigmoid(W_g m + b_g)``; ``m`` itself without a gate."""
    if gate_w is None:
        return m
    return torch.sigmoid(nn.functional.linear(m, gate_w, gate_b)) * m


def pair_messages(
    recv_proj: Tensor,
    send_proj: Tensor,
    recv: Tensor,
    send: Tensor,
    extra: Tensor,
    w_extra: Tensor,
    w2: Tensor,
    b2: Tensor,
    gate_w: Tensor | None,
    gate_b: Tensor | None,
) -> Tensor:
    """The per-pair part of :meth:`GatedMessage.pairwise`: ``pre = P_r[recv] + P_s[send] + W_c·extra``,
    ``m = SiLU(W_2 SiLU(pre) + b_2)``, ``e·m`` with ``e = sigmoid(W_g m + b_g)`` (no gate: ``m``).

    ``recv_proj: (n_σ, H)``, ``send_proj: (n_τ, H)`` (first Linear per cell, its bias in ``recv_proj``),
    ``recv, send: (P,)``, ``extra: (P, C)`` → ``(P, H)``. A free function of tensors only, so that one
    compiled graph serves every GatedMessage of a model.
    """
    pre = recv_proj.index_select(0, recv) + send_proj.index_select(0, send) + nn.functional.linear(extra, w_extra)
    return gate_messages(nn.functional.silu(nn.functional.linear(nn.functional.silu(pre), w2, b2)), gate_w, gate_b)


_COMPILED: list = []


def _compiled_pair_messages():
    """:func:`pair_messages` under ``torch.compile`` (dynamic pair counts), built on first use."""
    if not _COMPILED:
        _COMPILED.append(torch.compile(pair_messages, dynamic=True))
    return _COMPILED[0]


def use_compiled_messages(model: nn.Module, enabled: bool = True) -> int:
    """Switch ``model`` to its compiled form (or back to eager); returns how many GatedMessages it has.

    Three forms, by what the model offers:

    * ``compiled_stack`` (the position models: a method name): that tensor-only method — the whole layer
      stack, after the per-batch preparation (pairs, checks, ring plan) that synchronises with the host —
      is compiled as one graph (``fullgraph``; static shapes while batches keep their shape, as N-body's
      and MoCap's do, dynamic after a change). Its GatedMessages stay eager inside: the graph fuses them.
    * ``compiled_units()`` (EGNN's and EMPCN's QM9 layers: messages, scatter and update) are compiled
      whole (``nn.Module.compile``, dynamic shapes: molecules vary per batch), and
    * otherwise every :class:`GatedMessage` runs its per-pair part through the compiled :func:`pair_messages`.

    Parameters, state dict and function are unchanged.
    """
    if enabled:  # one graph per (layer shape, gate, dtype, grad mode): more than dynamo's default 8
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    stack = getattr(model, "compiled_stack", None)
    count = 0
    for module in model.modules():
        if isinstance(module, GatedMessage):
            module.compiled = enabled and stack is None
            count += 1
    if stack is not None:
        if enabled:
            eager = getattr(type(model), stack).__get__(model)
            setattr(model, stack, torch.compile(eager, fullgraph=True))
        else:
            model.__dict__.pop(stack, None)
    units = getattr(model, "compiled_units", None)
    for unit in units() if units is not None else ():
        if enabled:
            unit.compile(dynamic=True)
        else:
            unit._compiled_call_impl = None
    return count


@contextlib.contextmanager
def full_precision(like: Tensor) -> Iterator[None]:
    """Autocast off inside: readouts sum many cells into one number, which bf16 (8 significant bits)
    would round to ~0.4 % — tens of meV on QM9 energies. Use with :func:`in_param_dtype`."""
    device_type = like.device.type
    if torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


def in_param_dtype(x: Tensor, module: nn.Module) -> Tensor:
    """``x`` cast to the dtype of ``module``'s parameters (float32 after a bf16 autocast region)."""
    return x.to(next(module.parameters()).dtype)


def pair_position_step(
    pairs: Tensor,
    num_nodes: int,
    diff: Tensor,
    m: Tensor,
    coord_mlp: nn.Module,
    coord_agg: str,
    rel_vel: Tensor | None = None,
    rel_vel_mlp: nn.Module | None = None,
) -> Tensor:
    """``agg_j [(x_i − x_j) φ_x(m_ij) (+ (v_i − v_j) φ_w(m_ij))]``: the pairwise part of an EGNN-style
    position update, ``(num_nodes, 3)``; the caller scales it by C and adds it to x.

    ``pairs: (P, 2)`` [sender j, receiver i]; ``diff: (P, 3)`` x_i − x_j; ``m: (P, H)`` the pair messages;
    ``rel_vel: (P, 3)`` v_i − v_j, read when ``rel_vel_mlp`` (φ_w) is given; ``coord_agg``: ``"mean"``
    or ``"sum"`` over each receiver's pairs.
    """
    trans = diff * coord_mlp(m)
    if rel_vel_mlp is not None:
        if rel_vel is None:
            raise ValueError("pair_position_step: rel_vel_mlp given without rel_vel")
        trans = trans + rel_vel * rel_vel_mlp(m)
    reduce = scatter_mean if coord_agg == "mean" else scatter_sum
    return reduce(trans, pairs[:, 1], num_nodes)


def pool_sum(src: Tensor, graph: Tensor, num_graphs: int) -> Tensor:
    """Sum-pool cell features ``src: (n, D)`` into ``(num_graphs, D)`` by graph index ``graph: (n,)``."""
    return scatter_sum(src, graph, num_graphs)


def check_node_features(batch: ComplexBatch, expected: int, model: str) -> None:
    """Raise a one-line error when ``batch.node_feat`` has the wrong width."""
    if batch.node_feat.dim() != 2 or batch.node_feat.shape[1] != expected:
        raise ValueError(
            f"{model}: batch.node_feat has shape {tuple(batch.node_feat.shape)}, the config expects "
            f"in_node_features={expected}"
        )


def check_sizes(name: str, **sizes: int) -> None:
    """Raise if any of the named sizes is < 1."""
    for key, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name}: {key} must be ≥ 1, got {value}")


def check_dropout(name: str, p: float) -> None:
    """Raise unless 0 ≤ p < 1."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {p}")


def check_ring_kinds(name: str, kinds: int) -> None:
    """Raise unless ``kinds`` (the width of a ring-kind one-hot, 0 = none) is an integer ≥ 0."""
    if not isinstance(kinds, int) or isinstance(kinds, bool) or kinds < 0:
        raise ValueError(f"{name}: ring_kinds must be an integer ≥ 0, got {kinds!r}")


def ring_kind_onehot(batch: ComplexBatch, kinds: int, user: str) -> Tensor:
    """``(R, kinds)`` float one-hot of each ring's stored kind (``rings/kind``); ValueError for a kind ≥ ``kinds``."""
    kind = batch.field(RING_KIND, user).long()
    if kind.numel() and int(kind.max()) >= kinds:
        raise ValueError(f"{user}: a ring of kind {int(kind.max())}, the model knows {kinds} kinds")
    return torch.nn.functional.one_hot(kind, kinds).float()


def neighbourhood_ranks(name: str) -> tuple[int, int]:
    """``"<sender>_<receiver>[_<relation>]"`` → ``(sender rank, receiver rank)``, ranks in {0, 1, 2}."""
    parts = name.split("_")
    if len(parts) not in (2, 3) or not all(p in ("0", "1", "2") for p in parts[:2]):
        raise ValueError(f"bad neighbourhood name {name!r}; expected '<sender>_<receiver>[_<relation>]' with ranks 0-2")
    return int(parts[0]), int(parts[1])


def neighbourhood_index(batch: ComplexBatch, name: str, model: str) -> Tensor:
    """``batch.nbr[name]: (P, 2)`` long [sender, receiver], or a one-line error naming what is missing."""
    idx = batch.nbr.get(name)
    if idx is None:
        raise ValueError(f"{model}: the batch has no neighbourhood {name!r} (it has {sorted(batch.nbr)})")
    if idx.dim() != 2 or idx.shape[1] != 2:
        raise ValueError(f"{model}: neighbourhood {name!r} has index shape {tuple(idx.shape)}; expected (P, 2)")
    return idx


def get_neighbourhood(batch: ComplexBatch, name: str, model: str) -> tuple[Tensor, Tensor]:
    """``(batch.nbr[name]: (P, 2) long, batch.nbr_dist[name]: (P,))`` or a one-line error naming what is missing.

    Models that recompute distances from positions read the index alone (:func:`neighbourhood_index`).
    """
    idx = neighbourhood_index(batch, name, model)
    dist = batch.nbr_dist.get(name)
    if dist is None:
        raise ValueError(
            f"{model}: the batch has no distances of neighbourhood {name!r} (it has {sorted(batch.nbr_dist)})"
        )
    if dist.shape != (idx.shape[0],):
        raise ValueError(
            f"{model}: neighbourhood {name!r} has {idx.shape[0]} pairs but distance shape {tuple(dist.shape)}"
        )
    return idx, dist
