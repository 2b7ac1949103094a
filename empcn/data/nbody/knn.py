"""k-nearest-neighbour graphs of point sets (the gravity system's 1-cells)."""

from __future__ import annotations

import numpy as np


def knn_graph(pos: np.ndarray, k: int) -> np.ndarray:
    """Directed k-nearest-neighbour edges for S point sets, no self loops.

    pos: (S, N, 3). Returns (S, N·k, 2) int64 rows ``[neighbour, node]``: node-major (rows
    ``node·k .. node·k + k − 1`` belong to ``node``), neighbours by increasing distance, ties
    broken by lower index.
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"knn_graph: pos must be (S, N, 3), got shape {pos.shape}")
    s, n, _ = pos.shape
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"knn_graph: k must be an integer in [1, N-1] = [1, {n - 1}], got {k!r}")
    diff = pos[:, None, :, :] - pos[:, :, None, :]
    dx, dy, dz = diff[..., 0], diff[..., 1], diff[..., 2]
    d2 = dx * dx + dy * dy + dz * dz  # elementwise, x, y, z in order: the same bits on any CPU (no einsum)
    d2.reshape(s, n * n)[:, :: n + 1] = np.inf
    neighbours = np.argsort(d2, axis=-1, kind="stable")[..., :k]  # (S, N, k)
    nodes = np.broadcast_to(np.arange(n)[None, :, None], neighbours.shape)
    return np.stack([neighbours, nodes], axis=-1).reshape(s, n * k, 2).astype(np.int64)
