"""Vision transformer over 3D voxel grids with adaLN conditioning (CaloDREAM shape network).

The shower (layers, alpha, r) grid is cut into non-overlapping 3D patches, each patch
is embedded linearly, a learnable position embedding is added, and transformer blocks
whose layer norms are modulated by the condition (adaLN-Zero: shift, scale and a gate per
sub-layer, predicted from the condition embedding and initialised to the identity;
Peebles & Xie, DiT) process the tokens; a final modulated projection returns the patch
values (seed 002 sec. 4.3, Table B.4). The attention itself is
``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by a condition vector."""

    def __init__(self, dim: int, heads: int, cond_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s1, c1, g1, s2, c2, g2 = self.ada(cond).chunk(6, dim=-1)
        b, n, d = x.shape
        h = _modulate(self.norm1(x), s1, c1)
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + g1[:, None] * self.proj(a)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), s2, c2))


class PatchViT3D(nn.Module):
    """Maps (B, D, H, W) grids and a condition (B, cond_dim) to (B, D, H, W) outputs.

    ``patch`` must divide the grid ``shape``; ``cond_dim`` is the size of the condition
    embedding the caller provides (time, incident energy, layer energies ...).
    """

    def __init__(self, shape: tuple[int, int, int], patch: tuple[int, int, int], dim: int = 128, depth: int = 4,
                 heads: int = 4, cond_dim: int = 128, mlp_ratio: float = 4.0):
        super().__init__()
        for s, p in zip(shape, patch):
            if s % p:
                raise ValueError(f"patch {patch} does not divide the grid {shape}")
        self.shape, self.patch = tuple(shape), tuple(patch)
        self.grid = tuple(s // p for s, p in zip(shape, patch))
        self.patch_size = math.prod(patch)
        n_tokens = math.prod(self.grid)
        self.embed = nn.Linear(self.patch_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, cond_dim, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        self.out = nn.Linear(dim, self.patch_size)
        for layer in (self.final_ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        (gd, gh, gw), (pd, ph, pw) = self.grid, self.patch
        x = x.reshape(b, gd, pd, gh, ph, gw, pw).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, gd * gh * gw, pd * ph * pw)

    def unpatchify(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        (gd, gh, gw), (pd, ph, pw) = self.grid, self.patch
        x = t.reshape(b, gd, gh, gw, pd, ph, pw).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, *self.shape)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.patchify(x)) + self.pos
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.final_ada(cond).chunk(2, dim=-1)
        return self.unpatchify(self.out(_modulate(self.norm(h), shift, scale)))
