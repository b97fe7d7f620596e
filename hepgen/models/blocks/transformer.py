"""Masked transformer encoder blocks without positional encoding (permutation equivariant).

Used by TGAN/TNF (seed 000 L2290-2350): particle-wise phi, masked self-attention,
residual + LayerNorm, particle-wise psi, residual + LayerNorm. A critic prepends a
learnable class token whose final state is the jet summary.
"""

from __future__ import annotations

import torch
from torch import nn


class TransformerBlock(nn.Module):
    def __init__(self, l_dim: int, hidden: int, heads: int):
        super().__init__()
        self.phi = nn.Linear(l_dim, hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.out = nn.Linear(hidden, l_dim)
        self.norm1 = nn.LayerNorm(l_dim)
        self.psi = nn.Sequential(nn.Linear(l_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, l_dim))
        self.norm2 = nn.LayerNorm(l_dim)

    def forward(self, x, mask):
        h = self.phi(x)
        a, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        x = self.norm1(x + self.out(a))
        x = self.norm2(x + self.psi(x))
        return x * mask[..., None]


class ClassToken(nn.Module):
    """Prepends a learnable token (always unmasked) to a point cloud."""

    def __init__(self, l_dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.randn(1, 1, l_dim) * 0.02)

    def forward(self, x, mask):
        B = x.shape[0]
        x = torch.cat([self.token.expand(B, 1, -1), x], 1)
        mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], 1)
        return x, mask
