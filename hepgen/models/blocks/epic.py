"""EPiC layers (Buhmann et al., arXiv:2301.08128): particles plus one global vector.

The global vector is updated from itself and the mean and (scaled) sum of the
particles; each particle is then updated from itself and the global vector. Cost is
linear in the number of particles; the sum pooling carries the multiplicity.
"""

from __future__ import annotations

import torch
from torch import nn


class EPiCLayer(nn.Module):
    def __init__(self, l_dim: int, global_dim: int, hidden: int, max_particles: int = 150, cond_dim: int = 0):
        super().__init__()
        self.max_particles = max_particles
        self.glob = nn.Sequential(
            nn.Linear(2 * l_dim + global_dim + cond_dim, hidden), nn.LeakyReLU(0.01), nn.Linear(hidden, global_dim)
        )
        self.local = nn.Sequential(
            nn.Linear(l_dim + global_dim + cond_dim, hidden), nn.LeakyReLU(0.01), nn.Linear(hidden, l_dim)
        )

    def forward(self, x, g, mask, cond=None):
        m = mask[..., None].to(x.dtype)
        n = m.sum(1).clamp(min=1)
        c = [] if cond is None else [cond]
        pooled = [(x * m).sum(1) / n, (x * m).sum(1) / self.max_particles]
        g = g + self.glob(torch.cat([*pooled, g, *c], -1))
        B, N, _ = x.shape
        g_exp = [g[:, None].expand(B, N, -1)] + ([] if cond is None else [cond[:, None].expand(B, N, -1)])
        x = (x + self.local(torch.cat([x, *g_exp], -1))) * m
        return x, g
