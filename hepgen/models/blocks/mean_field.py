"""Mean-field attention: the MDMA block (Kaech thesis, seed 000 ch. 5.5, Fig. 5.14-5.16).

Instead of self-attention (cost O(n^2)), every block lets the particles update one
*mean field* by cross-attention with a single query, then lets the mean field update
every particle independently (cost O(n)):

1. phi: particles (l_dim) -> keys/values (hidden);
2. cross-attention with the mean field as the only query (padded particles masked);
3. Omega: the attended field, the previous field, the particle count n (and an
   optional condition such as a time embedding) -> the new mean field; with
   ``gated=True`` the new field is multiplied by sigmoid(Omega_c(n, condition)), the
   gated linear unit of the calorimeter version (seed 000 eq. 6.5);
4. psi: each particle together with the new mean field (and the condition) -> a
   residual update of the particle; padded particles stay zero.

Shapes: particles (B, N, l_dim), mean field (B, hidden), mask (B, N) with True for
real particles, n (B,), condition (B, C).

Speed: with one query per jet the general attention kernel (``nn.MultiheadAttention``)
spends most of its time on head reshapes of many narrow heads (width 3-4). The fused
path computes the same attention from the same parameters without ever forming the keys
and values of the particles. With one query q per head, the logit of particle i is
q . (W_k h_i + b_k) = (W_k^T q) . h_i + const, so the query is folded into the key
projection once per jet (the constant cancels in the softmax); since the attention
weights sum to one, the attended value is W_v (sum_i w_i h_i) + b_v, so the particles are
pooled first and projected once per jet. Per particle this costs 2 x heads x hidden
multiply-adds instead of 2 x hidden^2 for keys and values (a third of it for the
generator, a sixteenth for the flow). The per-jet parts of phi and psi (condition, mean
field) are likewise applied once per jet instead of once per particle, by splitting their
weight matrices, and every bias rides in a fused matrix product. It equals the plain path
to float rounding (tested) and is used unless ``fused=False``; the parameters and state
dicts are those of the plain block, so trained weights load into either.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def count_features(n: torch.Tensor, max_particles: int) -> torch.Tensor:
    """Encode the particle count as (n / max, log(n) / log(max)), shape (B, 2)."""
    n = n.to(torch.float32).clamp(min=1)
    return torch.stack([n / max_particles, torch.log(n) / math.log(max(max_particles, 2))], dim=-1)


class MeanFieldBlock(nn.Module):
    """One mean-field aggregation block (see the module docstring)."""

    def __init__(
        self,
        l_dim: int,
        hidden: int,
        heads: int,
        cond_dim: int = 0,
        max_particles: int = 150,
        norm: bool = False,
        dropout: float = 0.0,
        gated: bool = False,
    ):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.max_particles = max_particles
        self.phi = nn.Sequential(nn.Linear(l_dim + cond_dim, hidden), nn.LeakyReLU(0.2))
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True, dropout=dropout)
        self.omega = nn.Sequential(nn.Linear(2 * hidden + 2 + cond_dim, hidden), nn.LeakyReLU(0.2))
        self.psi = nn.Sequential(
            nn.Linear(hidden + hidden + cond_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, l_dim),
        )
        self.norm = nn.LayerNorm(l_dim) if norm else nn.Identity()
        self.gate = nn.Linear(2 + cond_dim, hidden) if gated else None
        self.l_dim, self.hidden, self.heads, self.cond_dim = l_dim, hidden, heads, cond_dim
        self.fused = True

    def forward(self, x, mean_field, mask, n, cond=None):
        if self.fused and (self.attn.dropout == 0 or not self.training):
            return self.forward_fused(x, mean_field, mask, n, cond)
        return self.forward_plain(x, mean_field, mask, n, cond)

    def _split_weights(self) -> dict[str, torch.Tensor]:
        """The weight matrices of the fused path: phi and psi split into their per-particle
        and per-jet columns, keys and values per head. Contiguous copies are cached for
        sampling (no autograd) until a parameter changes; with autograd they are views."""
        H, heads, L = self.hidden, self.heads, self.l_dim
        d = H // heads
        params = (self.phi[0].weight, self.attn.in_proj_weight, self.psi[0].weight)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if not torch.is_grad_enabled() and getattr(self, "_split_key", None) == key:
            return self._split
        w_phi, w_in, w_psi = params
        split = dict(phi_x=w_phi[:, :L], phi_c=w_phi[:, L:], query=w_in[:H],
                     key=w_in[H : 2 * H].view(heads, d, H), value=w_in[2 * H :].view(heads, d, H),
                     psi_h=w_psi[:, :H], psi_c=w_psi[:, H:])
        if not torch.is_grad_enabled():
            self._split = {k: v.contiguous() for k, v in split.items()}
            self._split_key = key
            return self._split
        return split

    def forward_fused(self, x, mean_field, mask, n, cond=None):
        """The block with keys and values folded into per-jet products (module docstring)."""
        B, N, _ = x.shape
        H, heads = self.hidden, self.heads
        d = H // heads
        F = nn.functional
        w = self._split_weights()
        b_phi, b_in = self.phi[0].bias, self.attn.in_proj_bias
        if cond is None:
            h = F.linear(x, w["phi_x"], b_phi)
        else:  # the condition's share of phi, once per jet
            h = F.linear(x, w["phi_x"]) + F.linear(cond, w["phi_c"], b_phi)[:, None, :]
        # without autograd (sampling) the elementwise steps work in place: they are a third
        # of the block's time at the generator's widths
        inplace = not torch.is_grad_enabled()
        h = F.leaky_relu_(h, self.phi[1].negative_slope) if inplace else self.phi[1](h)
        q = torch.addmm(b_in[:H], mean_field, w["query"].T).view(B, heads, d) * (1.0 / math.sqrt(d))
        # logits = (W_k^T q) . h per head: (B, heads, N); q . b_k is constant over particles
        key_of_query = torch.einsum("bhd,hdi->bhi", q, w["key"])
        logits = torch.bmm(key_of_query, h.transpose(1, 2))
        logits = (logits.masked_fill_ if inplace else logits.masked_fill)(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        pooled = torch.bmm(weights, h)  # (B, heads, hidden): sum_i w_i h_i
        attended = torch.einsum("bhi,hdi->bhd", pooled, w["value"]).reshape(B, H)
        attended = self.attn.out_proj(attended + b_in[2 * H :])
        c = [] if cond is None else [cond]
        counts = count_features(n, self.max_particles)
        mean_field = self.omega(torch.cat([attended, mean_field, counts, *c], -1))
        if self.gate is not None:
            mean_field = mean_field * torch.sigmoid(self.gate(torch.cat([counts, *c], -1)))
        per_jet = F.linear(torch.cat([mean_field, *c], -1), w["psi_c"], self.psi[0].bias)  # (B, hidden)
        u = F.linear(h, w["psi_h"])
        if inplace:
            u = F.leaky_relu_(u.add_(per_jet[:, None, :]), self.psi[1].negative_slope)
            x = self.norm(self.psi[2](u).add_(x)).mul_(mask[..., None])
        else:
            u = self.psi[1](u + per_jet[:, None, :])
            x = self.norm(x + self.psi[2](u)) * mask[..., None]
        return x, mean_field

    def forward_plain(self, x, mean_field, mask, n, cond=None):
        """The block as written in the thesis, through ``nn.MultiheadAttention``."""
        B, N, _ = x.shape
        c_part = [] if cond is None else [cond[:, None, :].expand(B, N, cond.shape[-1])]
        h = self.phi(torch.cat([x, *c_part], dim=-1))
        attended, _ = self.attn(mean_field[:, None, :], h, h, key_padding_mask=~mask, need_weights=False)
        c = [] if cond is None else [cond]
        counts = count_features(n, self.max_particles)
        mean_field = self.omega(torch.cat([attended[:, 0], mean_field, counts, *c], -1))
        if self.gate is not None:
            mean_field = mean_field * torch.sigmoid(self.gate(torch.cat([counts, *c], -1)))
        update = self.psi(torch.cat([h, mean_field[:, None, :].expand(B, N, -1), *c_part], dim=-1))
        x = self.norm(x + update) * mask[..., None]
        return x, mean_field


class MeanFieldBody(nn.Module):
    """alpha embedding, mean field initialised by sum pooling, ``num_blocks`` MDMA blocks."""

    def __init__(
        self,
        in_dim: int,
        l_dim: int,
        hidden: int,
        heads: int,
        num_blocks: int,
        cond_dim: int = 0,
        max_particles: int = 150,
        norm: bool = False,
        gated: bool = False,
    ):
        super().__init__()
        self.max_particles = max_particles
        self.alpha = nn.Linear(in_dim, l_dim)
        self.init_field = nn.Linear(l_dim, hidden)
        self.blocks = nn.ModuleList(
            MeanFieldBlock(l_dim, hidden, heads, cond_dim, max_particles, norm, gated=gated) for _ in range(num_blocks)
        )

    def forward(self, x, mask, cond=None):
        n = mask.sum(1)
        x = self.alpha(x) * mask[..., None]
        # sum pooling, scaled by the maximal multiplicity so the count stays visible
        mean_field = self.init_field(x.sum(1) / self.max_particles)
        for block in self.blocks:
            x, mean_field = block(x, mean_field, mask, n, cond)
        return x, mean_field
