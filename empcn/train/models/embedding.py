"""Fixed (parameter-free) embeddings of scalar invariants, and the one config block that chooses them.

EMPCN-style models condition every message on E(n)-invariant scalars (distances, lengths, areas, …).
Those enter through a fixed embedding γ: random Gaussian Fourier features or a Gaussian radial basis.
:class:`InvariantEmbeddingConfig` holds the four fields that choose γ; every model config that embeds
invariants derives from it and builds each γ with :meth:`InvariantEmbeddingConfig.embedding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

EmbeddingKind = Literal["fourier", "rbf"]
EMBEDDING_KINDS: tuple[str, ...] = ("fourier", "rbf")


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of Tancik et al. (2020): ``[v, cos 2πBv, sin 2πBv]``.

    ``B: (num_frequencies, in_dim)`` is drawn once from ``N(0, scale²)`` with a private generator
    seeded by ``seed`` (so building a model does not consume the global RNG) and kept as a buffer
    (saved with the state dict, cast with the module). ``scale`` is in inverse units of the
    invariants (1/Å for QM9 distances): ``scale = 1`` resolves features over ~1 Å.
    """

    def __init__(
        self,
        in_dim: int,
        num_frequencies: int = 16,
        scale: float = 1.0,
        include_input: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.freq: Tensor
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freq", torch.randn(num_frequencies, in_dim, generator=gen) * scale)
        self.in_dim = in_dim
        self.include_input = include_input
        self.out_dim = 2 * num_frequencies + (in_dim if include_input else 0)

    def forward(self, v: Tensor) -> Tensor:
        """``v: (..., in_dim)`` → ``(..., out_dim)``."""
        proj = 2.0 * math.pi * (v @ self.freq.t())
        parts = [v] if self.include_input else []
        parts += [torch.cos(proj), torch.sin(proj)]
        return torch.cat(parts, dim=-1)


class GaussianRBF(nn.Module):
    """Gaussian radial basis per input channel: ``exp(-((v_d − μ_k)/w)²)``, μ_k evenly on [0, max_value].

    Width ``w`` = the spacing of the centres. Output ``(..., in_dim · num_centres [+ in_dim])``.
    """

    def __init__(self, in_dim: int, num_centres: int = 16, max_value: float = 10.0, include_input: bool = True) -> None:
        super().__init__()
        if num_centres < 2:
            raise ValueError(f"GaussianRBF needs at least 2 centres, got {num_centres}")
        if not max_value > 0:
            raise ValueError(f"GaussianRBF needs max_value > 0, got {max_value}")
        self.centres: Tensor
        self.register_buffer("centres", torch.linspace(0.0, max_value, num_centres))
        self.width = max_value / (num_centres - 1)
        self.in_dim = in_dim
        self.include_input = include_input
        self.out_dim = in_dim * num_centres + (in_dim if include_input else 0)

    def forward(self, v: Tensor) -> Tensor:
        """``v: (..., in_dim)`` → ``(..., out_dim)``."""
        rbf = torch.exp(-(((v.unsqueeze(-1) - self.centres) / self.width) ** 2)).flatten(-2)
        return torch.cat([v, rbf], dim=-1) if self.include_input else rbf


@dataclass(frozen=True)
class InvariantEmbeddingConfig:
    """How a model embeds its scalar invariants (a block of fields shared by the EMPCN-style configs).

    ``inv_embedding``: ``"fourier"`` — :class:`GaussianFourierFeatures`, ``inv_size`` frequencies drawn
    with standard deviation ``fourier_scale`` (inverse units of the invariants); ``"rbf"`` —
    :class:`GaussianRBF`, ``inv_size`` Gaussians on [0, ``rbf_max``] per invariant. Both keep the raw
    invariants beside their features. A config overrides a default by re-declaring the field.
    """

    inv_embedding: EmbeddingKind = "fourier"
    inv_size: int = 16
    fourier_scale: float = 1.0
    rbf_max: float = 10.0

    def check_embedding(self, model: str) -> None:
        """Raise a one-line ValueError naming ``model`` for a field the embedding cannot use."""
        if self.inv_embedding not in EMBEDDING_KINDS:
            raise ValueError(f"{model}: inv_embedding must be one of {EMBEDDING_KINDS}, got {self.inv_embedding!r}")
        if self.inv_size < (2 if self.inv_embedding == "rbf" else 1):
            raise ValueError(
                f"{model}: inv_size must be ≥ {2 if self.inv_embedding == 'rbf' else 1}, got {self.inv_size}"
            )
        if self.inv_embedding == "rbf" and not self.rbf_max > 0:
            raise ValueError(f"{model}: rbf_max must be > 0, got {self.rbf_max}")

    def embedding(self, in_dim: int, seed: int) -> GaussianFourierFeatures | GaussianRBF:
        """γ for ``in_dim`` invariants; ``seed`` draws the Fourier frequencies (one seed per kind of
        invariant, so that two embeddings of one model differ). ``.out_dim`` gives its width."""
        if self.inv_embedding == "fourier":
            return GaussianFourierFeatures(in_dim, self.inv_size, self.fourier_scale, include_input=True, seed=seed)
        if self.inv_embedding == "rbf":
            return GaussianRBF(in_dim, self.inv_size, self.rbf_max, include_input=True)
        raise ValueError(f"unknown invariant embedding {self.inv_embedding!r}; expected one of {EMBEDDING_KINDS}")
