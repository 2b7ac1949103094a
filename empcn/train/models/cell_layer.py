"""The EMPCN layer core shared by the invariant (QM9) and the position-predicting (N-body) models.

One layer passes messages over named neighbourhoods of a cell complex (``"<sender>_<receiver>
[_<relation>]"``, ranks 0 nodes, 1 edges, 2 rings). For every neighbourhood A = (τ → σ) with pairs
``[τ, σ]`` and embedded invariants ``Inv_A(σ, τ)``::

    m_στ = [Linear, SiLU, Linear, SiLU]_A([h_σ ‖ h_τ ‖ Inv_A(σ, τ)])        (message)
    e_στ = sigmoid(Linear_A(m_στ))                                          (gate)
    agg_A(σ) = Σ_τ e_στ m_στ                                                (aggregate)
    h_σ' = h_σ + Dropout([Linear, SiLU, Linear]_r([h_σ ‖ ⊕_{A → r} agg_A(σ)]))   (update of rank r)

(without ``h_σ +`` when not residual). The first Linear of each message is evaluated per cell and
gathered (:meth:`~empcn.train.models.layers.GatedMessage.pairwise`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn

from empcn.train.models.layers import GatedMessage, mlp, neighbourhood_ranks, scatter_sum


class CellLayer(nn.Module):
    """Message → gate → aggregate → per-rank update over ``communications``.

    ``inv_dims[A]``: width of ``Inv_A``. ``update_ranks``: the ranks whose features this layer updates
    (in this order; each gets one update MLP over the neighbourhoods into it). A rank that receives no
    communication must not be listed.
    """

    def __init__(
        self,
        hidden: int,
        communications: tuple[str, ...],
        inv_dims: dict[str, int],
        update_ranks: Iterable[int],
        residual: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.communications = communications
        self.residual = residual
        self.message = nn.ModuleDict({a: GatedMessage(2 * hidden + inv_dims[a], hidden) for a in communications})
        self.incoming: dict[int, list[str]] = {
            r: [a for a in communications if neighbourhood_ranks(a)[1] == r] for r in update_ranks
        }
        empty = [r for r, names in self.incoming.items() if not names]
        if empty:
            raise ValueError(f"CellLayer: ranks {empty} are to be updated but receive none of {communications}")
        self.update = nn.ModuleDict(
            {str(r): mlp([hidden * (1 + len(names)), hidden, hidden]) for r, names in self.incoming.items()}
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def messages(self, h: dict[int, Tensor], nbr: dict[str, Tensor], inv: dict[str, Tensor]) -> dict[str, Tensor]:
        """Gated messages ``{A: (P_A, hidden)}``. ``h[r]: (n_r, hidden)``; ``nbr[A]: (P_A, 2)`` [sender,
        receiver]; ``inv[A]: (P_A, inv_dims[A])``."""
        out: dict[str, Tensor] = {}
        for a in self.communications:
            s, r = neighbourhood_ranks(a)
            send, recv = nbr[a][:, 0], nbr[a][:, 1]
            out[a] = cast(GatedMessage, self.message[a]).pairwise(h[r], h[s], recv, send, inv[a])
        return out

    def updated(self, h: dict[int, Tensor], nbr: dict[str, Tensor], m: dict[str, Tensor]) -> dict[int, Tensor]:
        """The new features of the updated ranks only, from the messages ``m`` of :meth:`messages`."""
        out: dict[int, Tensor] = {}
        for r, names in self.incoming.items():
            agg = [scatter_sum(m[a], nbr[a][:, 1], h[r].shape[0]) for a in names]
            delta = self.dropout(self.update[str(r)](torch.cat([h[r], *agg], dim=-1)))
            out[r] = h[r] + delta if self.residual else delta
        return out
