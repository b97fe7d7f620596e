"""Time embeddings for flow-matching and diffusion networks."""

from __future__ import annotations

import math

import torch
from torch import nn


class CosineTimeEmbedding(nn.Module):
    """t_emb,i = cos(t * f_i * pi) with f_i = 0 .. dim-1 (seed 000 eq. 5.14)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.arange(dim, dtype=torch.float32), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(t.reshape(-1, 1).float() * self.freqs * math.pi)


class FourierTimeEmbedding(nn.Module):
    """Random Fourier features [sin(2 pi w t), cos(2 pi w t)] with fixed Gaussian w."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("w", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * t.reshape(-1, 1).float() * self.w
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1)
