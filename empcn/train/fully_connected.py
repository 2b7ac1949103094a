"""Message pairs of the node graph: all ordered pairs within each graph (EGNN's fully connected graph) or the edges."""

from __future__ import annotations

import torch
from torch import Tensor


def fully_connected_pairs(node_graph: Tensor) -> Tensor:
    """Every ordered pair ``(j, i)``, ``i ≠ j``, of nodes of the same graph, as ``(P, 2)`` long.

    ``node_graph: (N,)`` long, the graph of every node (need not be sorted). Rows are
    ``[sender, receiver]`` like :attr:`ComplexBatch.nbr`; since both orders of every pair are present
    the convention only fixes the row order: graph by graph, lexicographic in (sender, receiver)
    after a stable sort of the nodes by graph. ``P = Σ_g n_g (n_g − 1)``.

    Built on ``node_graph``'s device with tensor arithmetic (one host sync for ``P``), no loop over
    graphs.
    """
    if node_graph.dim() != 1 or node_graph.dtype != torch.long:
        raise ValueError(
            f"fully_connected_pairs: node_graph must be a 1-D long tensor, got shape "
            f"{tuple(node_graph.shape)} dtype {node_graph.dtype}"
        )
    device = node_graph.device
    n = node_graph.numel()
    if n == 0:
        return torch.empty((0, 2), dtype=torch.long, device=device)
    if bool((node_graph < 0).any()):
        raise ValueError("fully_connected_pairs: node_graph has negative graph indices")
    order = torch.argsort(node_graph, stable=True)  # sorted position -> node
    g_sorted = node_graph[order]
    counts = torch.bincount(g_sorted)  # nodes per graph
    first = (torch.cumsum(counts, 0) - counts)[g_sorted]  # first sorted position of each node's graph
    size = counts[g_sorted]  # size of each node's graph
    total = int(size.sum())
    sender = torch.repeat_interleave(torch.arange(n, device=device), size, output_size=total)
    block_start = torch.repeat_interleave(torch.cumsum(size, 0) - size, size, output_size=total)
    receiver = first[sender] + (torch.arange(total, device=device) - block_start)
    keep = sender != receiver
    return torch.stack([order[sender[keep]], order[receiver[keep]]], dim=1)


def bond_pairs(edge_index: Tensor) -> Tensor:
    """Both directions of every edge ``edge_index: (E, 2)`` as message pairs ``(2E, 2)`` [sender, receiver]."""
    return torch.cat([edge_index, edge_index.flip(1)], dim=0)


def message_pairs(node_graph: Tensor, edge_index: Tensor, connectivity: str) -> Tensor:
    """The node-node message pairs of a model's ``connectivity``: ``"full"`` — every ordered pair of each
    graph (:func:`fully_connected_pairs`); ``"bonds"`` or ``"complex"`` — both directions of the edges
    (:func:`bond_pairs`; the two names are those the QM9 and the N-body configs saved)."""
    if connectivity == "full":
        return fully_connected_pairs(node_graph)
    if connectivity in ("bonds", "complex"):
        return bond_pairs(edge_index)
    raise ValueError(f"unknown connectivity {connectivity!r}; expected 'full', 'bonds' or 'complex'")
