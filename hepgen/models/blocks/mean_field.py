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

Sampling goes further (:meth:`MeanFieldBody.forward_inference`, used whenever autograd is
off). Every linear map between per-jet quantities is folded into the weights once: the
query projection into the keys (``mean field @ M1`` gives the head-folded keys of all heads
in one product), the value projection, output projection and omega's attention columns
into one matrix ``M3`` (the pooled particles of all heads -> omega's pre-activation), and
every term that depends only on the particle count or the condition into per-jet biases
computed once per pass. Per particle and block this leaves five dense products and two
activations. The particle-wise tensors are written into workspace buffers kept between
calls: on one thread, new megabyte-sized tensors cost a page fault per 4 kB (session 9: a
fifth of the generator's time), the mask is added to the logits as a bias (-inf), and
padded particles are zeroed once per block so they stay finite. It equals the training path
to float rounding (tested); the output tensors are new, never workspace.
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
        """The weight matrices of the fused path as views: phi and psi split into their
        per-particle and per-jet columns, keys and values per head. (Sampling through the
        body uses :meth:`folded_weights`, which are cached.)"""
        H, heads, L = self.hidden, self.heads, self.l_dim
        d = H // heads
        w_phi, w_in, w_psi = self.phi[0].weight, self.attn.in_proj_weight, self.psi[0].weight
        return dict(phi_x=w_phi[:, :L], phi_c=w_phi[:, L:], query=w_in[:H],
                    key=w_in[H : 2 * H].view(heads, d, H), value=w_in[2 * H :].view(heads, d, H),
                    psi_h=w_psi[:, :H], psi_c=w_psi[:, H:])

    @torch.no_grad()
    def folded_weights(self) -> dict[str, torch.Tensor]:
        """The weights of :meth:`MeanFieldBody.forward_inference` (module docstring): cached
        until a parameter changes (training step, ``load_state_dict``, ``.to``)."""
        params = self.__dict__.get("_param_list")
        if params is None:  # parameters keep their identity (``.to`` and loading work in place)
            params = self.__dict__["_param_list"] = tuple(self.parameters())
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self.__dict__.get("_folded_key") == key:
            return self._folded
        H, heads, L, C = self.hidden, self.heads, self.l_dim, self.cond_dim
        d = H // heads
        scale = 1.0 / math.sqrt(d)
        wq, wk, wv = (w.view(heads, d, H) for w in self.attn.in_proj_weight.split(H))
        bq, _, bv = self.attn.in_proj_bias.split(H)
        # keys of the query: kq[b, k, i] = sum_d q[b, k, d] wk[k, d, i], q = mf @ wq^T + bq
        m1 = torch.einsum("kdj,kdi->jki", wq, wk).reshape(H, heads * H) * scale
        c1 = torch.einsum("kd,kdi->ki", bq.view(heads, d), wk).reshape(heads * H) * scale
        # omega's attention columns after the output projection after the values
        w_om = self.omega[0].weight
        om_att, om_mf, om_n, om_c = w_om.split([H, H, 2, C], dim=1)
        wo = self.attn.out_proj.weight
        m2 = torch.einsum("kdi,okd->kio", wv, wo.view(H, heads, d)).reshape(heads * H, H)
        c2 = wo @ bv + self.attn.out_proj.bias
        psi_h, psi_mf, psi_c = self.psi[0].weight.split([H, H, C], dim=1)
        phi_x, phi_c = self.phi[0].weight.split([L, C], dim=1)
        f = dict(phi=phi_x.T.contiguous(), b_phi=self.phi[0].bias.contiguous(),
                 mf=torch.cat([m1, om_mf.T], 1).contiguous(), b_mf=torch.cat([c1, torch.zeros_like(c1[:H])]),
                 m3=(m2 @ om_att.T).contiguous(),
                 # omega's per-jet bias: counts, condition, and the constant of the attention
                 static_om=torch.cat([om_n, om_c], 1).T.contiguous(), b_om=self.omega[0].bias + om_att @ c2,
                 psi_h=psi_h.T.contiguous(), psi_mf=psi_mf.T.contiguous(), b_psi=self.psi[0].bias.contiguous(),
                 psi_out=self.psi[2].weight.T.contiguous(), b_out=self.psi[2].bias.contiguous())
        if C:
            f.update(phi_c=phi_c.T.contiguous(), psi_c=psi_c.T.contiguous())
        self._folded, self._folded_key = f, key
        return f

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
    """alpha embedding, mean field initialised by sum pooling, ``num_blocks`` MDMA blocks.

    ``forward(x, mask, cond, cond_in_input=True)`` feeds alpha with the particles and the
    condition (as a velocity field sees its time embedding) without forming the
    concatenation: ``in_dim`` counts both. Without autograd the pass is
    :meth:`forward_inference` (module docstring).
    """

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

    #: workspace tensors above this many elements are not kept between calls
    WORKSPACE_LIMIT = 1 << 25

    def embed(self, x, mask, cond=None, cond_in_input=False):
        """alpha of the particles (and the condition, with ``cond_in_input``), masked."""
        if cond_in_input:
            w_x, w_c = self.alpha.weight.split([x.shape[-1], cond.shape[-1]], dim=1)
            x = nn.functional.linear(x, w_x) + nn.functional.linear(cond, w_c, self.alpha.bias)[:, None, :]
        else:
            x = self.alpha(x)
        return x * mask[..., None]

    def forward(self, x, mask, cond=None, cond_in_input=False):
        if not torch.is_grad_enabled() and all(b.fused for b in self.blocks):
            return self.forward_inference(x, mask, cond, cond_in_input)
        n = mask.sum(1)
        x = self.embed(x, mask, cond, cond_in_input)
        # sum pooling, scaled by the maximal multiplicity so the count stays visible
        mean_field = self.init_field(x.sum(1) / self.max_particles)
        for block in self.blocks:
            x, mean_field = block(x, mean_field, mask, n, cond)
        return x, mean_field

    def _workspace(self, name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        numel = math.prod(shape)
        ws = self.__dict__.setdefault("_workspaces", {})
        buf = ws.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            if numel <= self.WORKSPACE_LIMIT:
                ws[name] = buf
        return buf[:numel].view(shape)

    @torch.no_grad()
    def forward_inference(self, x, mask, cond=None, cond_in_input=False):
        """The forward pass for sampling: folded weights and workspace buffers (module
        docstring); equal to :meth:`forward` to float rounding."""
        B, N = mask.shape
        m = mask[..., None].to(x.dtype)
        x = self.embed(x, mask, cond, cond_in_input).reshape(B * N, -1)
        mean_field = self.init_field(x.view(B, N, -1).sum(1) / self.max_particles)
        counts = count_features(mask.sum(1), self.max_particles).to(x.dtype)
        static = counts if cond is None else torch.cat([counts, cond], -1)
        neg = torch.zeros(B, N, 1, dtype=x.dtype, device=x.device).masked_fill_(~mask[..., None], float("-inf"))
        F = nn.functional
        L = x.shape[-1]
        for i, block in enumerate(self.blocks):
            w = block.folded_weights()
            H, heads = block.hidden, block.heads
            slope = block.phi[1].negative_slope
            h = self._workspace("h", (B * N, H), x)
            if cond is None:
                torch.addmm(w["b_phi"], x, w["phi"], out=h)
            else:
                torch.mm(x, w["phi"], out=h)
                h.view(B, N, H).add_(torch.addmm(w["b_phi"], cond, w["phi_c"])[:, None, :])
            F.leaky_relu_(h, slope)
            h3 = h.view(B, N, H)
            kq_mf = torch.addmm(w["b_mf"], mean_field, w["mf"], out=self._workspace("kq", (B, (heads + 1) * H), x))
            kq = kq_mf[:, : heads * H].view(B, heads, H)
            logits = torch.baddbmm(neg, h3, kq.transpose(1, 2), out=self._workspace("logits", (B, N, heads), x))
            weights = torch.softmax(logits, dim=1, out=self._workspace("weights", (B, N, heads), x))
            pooled = torch.bmm(weights.transpose(1, 2), h3, out=self._workspace("pooled", (B, heads, H), x))
            pooled = pooled.view(B, heads * H)
            om = torch.addmm(torch.addmm(w["b_om"], static, w["static_om"]), pooled, w["m3"]).add_(kq_mf[:, heads * H :])
            mean_field = F.leaky_relu_(om, block.omega[1].negative_slope)
            if block.gate is not None:
                mean_field = mean_field * torch.sigmoid(block.gate(static))
            per_jet = torch.addmm(w["b_psi"], mean_field, w["psi_mf"])
            if cond is not None:
                per_jet.addmm_(cond, w["psi_c"])
            u = self._workspace("u", (B * N, H), x)
            torch.mm(h, w["psi_h"], out=u)
            F.leaky_relu_(u.view(B, N, H).add_(per_jet[:, None, :]), block.psi[1].negative_slope)
            last = i == len(self.blocks) - 1
            out = torch.empty(B * N, L, dtype=x.dtype, device=x.device) if last else \
                self._workspace("x" + "ab"[i % 2], (B * N, L), x)
            torch.addmm(w["b_out"], u, w["psi_out"], out=out).add_(x)
            if not isinstance(block.norm, nn.Identity):
                out = block.norm(out) if last else out.copy_(block.norm(out))
            x = out.view(B, N, L).mul_(m).view(B * N, L)
        return x.view(B, N, L), mean_field
