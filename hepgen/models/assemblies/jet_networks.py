"""Networks of the jet point-cloud models (seed 000 ch. 5), assembled from blocks.

Every generator maps noise (B, N, 3) and a mask (B, N) to particles (B, N, 3) in the
preprocessed space; every critic maps particles and mask to (score (B,), summary
(B, H)); every velocity field maps (t (B,), x_t, mask) to a velocity (B, N, 3).
Hyperparameter names follow the thesis tables (``l_dim``, ``hidden``, ``heads``,
``num_blocks``; ``_gen`` for the generator).
"""

from __future__ import annotations

import torch
from torch import nn

from hepgen.models.blocks.embeddings import CosineTimeEmbedding
from hepgen.models.blocks.epic import EPiCLayer
from hepgen.models.blocks.gan import weight_normalise
from hepgen.models.blocks.mean_field import MeanFieldBody
from hepgen.models.blocks.transformer import ClassToken, TransformerBlock

FEATURES = 3


def _head(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


class MDMAGenerator(nn.Module):
    """Noise -> alpha -> mean-field blocks -> beta (seed 000 Fig. 5.14 middle)."""

    def __init__(self, l_dim_gen=16, hidden_gen=48, heads_gen=16, num_blocks_gen=7, max_particles=150, **_):
        super().__init__()
        self.body = MeanFieldBody(FEATURES, l_dim_gen, hidden_gen, heads_gen, num_blocks_gen, max_particles=max_particles)
        self.beta = nn.Linear(l_dim_gen, FEATURES)

    def forward(self, z, mask):
        x, _ = self.body(z, mask)
        return self.beta(x) * mask[..., None]


class MDMACritic(nn.Module):
    """Same body, MLP on the final mean field; returns (score, mean field). Weight-normalised."""

    def __init__(self, l_dim=16, hidden=64, heads=16, num_blocks=2, max_particles=150, **_):
        super().__init__()
        self.body = MeanFieldBody(FEATURES, l_dim, hidden, heads, num_blocks, max_particles=max_particles)
        self.head = _head(hidden)
        weight_normalise(self)

    def forward(self, x, mask):
        _, mean_field = self.body(x, mask)
        return self.head(mean_field)[:, 0], mean_field


class _TimeVelocity(nn.Module):
    """A velocity field from a particle body: the cosine time embedding is appended to every
    particle and given to the body as its condition; beta maps back to the features."""

    def __init__(self, body: nn.Module, l_dim: int, time_dim: int):
        super().__init__()
        self.time = CosineTimeEmbedding(time_dim)
        self.body = body
        self.beta = nn.Linear(l_dim, FEATURES)

    def forward(self, t, x, mask, cond=None):
        temb = self.time(t)
        h, _ = self.body(x, mask, temb, cond_in_input=True)
        return self.beta(h) * mask[..., None]


class MDMAVelocity(_TimeVelocity):
    """MDMA-Flow: the blocks see a cosine time embedding (seed 000 Fig. 5.16)."""

    def __init__(self, l_dim=128, hidden=256, heads=16, num_blocks=8, time_dim=16, max_particles=150, norm=True, **_):
        super().__init__(MeanFieldBody(FEATURES + time_dim, l_dim, hidden, heads, num_blocks, cond_dim=time_dim,
                                       max_particles=max_particles, norm=norm), l_dim, time_dim)


class EPiCBody(nn.Module):
    def __init__(self, in_dim, l_dim, global_dim, hidden, num_layers, max_particles, cond_dim=0):
        super().__init__()
        self.max_particles = max_particles
        self.alpha = nn.Linear(in_dim, l_dim)
        self.init_global = nn.Linear(2 * l_dim, global_dim)
        self.layers = nn.ModuleList(
            EPiCLayer(l_dim, global_dim, hidden, max_particles, cond_dim) for _ in range(num_layers)
        )

    def forward(self, x, mask, cond=None, cond_in_input=False):
        """``cond_in_input``: alpha sees the condition appended to every particle."""
        m = mask[..., None].to(x.dtype)
        if cond_in_input:
            x = torch.cat([x, cond[:, None].expand(-1, x.shape[1], -1)], -1)
        x = self.alpha(x) * m
        g = self.init_global(torch.cat([x.sum(1) / m.sum(1).clamp(min=1), x.sum(1) / self.max_particles], -1))
        for layer in self.layers:
            x, g = layer(x, g, mask, cond)
        return x, g


class EPiCGenerator(nn.Module):
    """EPiC-GAN generator (arXiv:2301.08128): particles and a global latent vector."""

    def __init__(self, l_dim_gen=128, global_dim=10, hidden_gen=128, num_blocks_gen=6, max_particles=150, **_):
        super().__init__()
        self.body = EPiCBody(FEATURES, l_dim_gen, global_dim, hidden_gen, num_blocks_gen, max_particles)
        self.beta = nn.Linear(l_dim_gen, FEATURES)

    def forward(self, z, mask):
        x, _ = self.body(z, mask)
        return self.beta(x) * mask[..., None]


class EPiCCritic(nn.Module):
    def __init__(self, l_dim=128, global_dim=10, hidden=128, num_blocks=3, max_particles=150, **_):
        super().__init__()
        self.body = EPiCBody(FEATURES, l_dim, global_dim, hidden, num_blocks, max_particles)
        self.head = _head(global_dim)
        weight_normalise(self)

    def forward(self, x, mask):
        _, g = self.body(x, mask)
        return self.head(g)[:, 0], g


class EPiCVelocity(_TimeVelocity):
    """EPiC-FM (Buhmann et al., arXiv:2310.00049): EPiC layers as the velocity field of
    conditional flow matching. The time enters as a cosine embedding appended to the
    particle inputs and given to every layer's global and local update (the paper feeds
    t to each layer as well); the layers are those of EPiC-GAN
    (:mod:`hepgen.models.blocks.epic`)."""

    def __init__(self, l_dim=128, global_dim=16, hidden=128, num_blocks=6, time_dim=16, max_particles=150, **_):
        super().__init__(EPiCBody(FEATURES + time_dim, l_dim, global_dim, hidden, num_blocks, max_particles,
                                  cond_dim=time_dim), l_dim, time_dim)


class TransformerGenerator(nn.Module):
    """TGAN generator / TNF post-processor: alpha, masked transformer blocks, beta."""

    def __init__(self, l_dim_gen=16, hidden_gen=256, heads_gen=16, num_blocks_gen=4, residual=False, **_):
        super().__init__()
        self.residual = residual
        self.alpha = nn.Linear(FEATURES, l_dim_gen)
        self.blocks = nn.ModuleList(TransformerBlock(l_dim_gen, hidden_gen, heads_gen) for _ in range(num_blocks_gen))
        self.beta = nn.Linear(l_dim_gen, FEATURES)

    def forward(self, z, mask):
        x = self.alpha(z) * mask[..., None]
        for block in self.blocks:
            x = block(x, mask)
        out = self.beta(x)
        return (z + out if self.residual else out) * mask[..., None]


class TransformerCritic(nn.Module):
    """Transformer critic with a class token (seed 000 Fig. 5.8 right)."""

    def __init__(self, l_dim=16, hidden=256, heads=16, num_blocks=4, **_):
        super().__init__()
        self.alpha = nn.Linear(FEATURES, l_dim)
        self.token = ClassToken(l_dim)
        self.blocks = nn.ModuleList(TransformerBlock(l_dim, hidden, heads) for _ in range(num_blocks))
        self.head = _head(l_dim)

    def forward(self, x, mask):
        h, m = self.token(self.alpha(x), mask)
        for block in self.blocks:
            h = block(h, m)
        return self.head(h[:, 0])[:, 0], h[:, 0]


class FlatFlow(nn.Module):
    """NF / NF(c): an RQS coupling flow on the flattened, padded cloud (P x 3 features),
    optionally conditioned on the (standardised) relative jet mass (seed 000 sec. 5.4.1)."""

    def __init__(self, max_particles=30, transforms=25, bins=6, hidden=128, layers=3, conditional=False, **_):
        super().__init__()
        from hepgen.models.blocks.flows import rqs_coupling_flow

        self.num_particles = max_particles
        self.conditional = conditional
        self.flow = rqs_coupling_flow(max_particles * FEATURES, 1 if conditional else 0, transforms, bins, hidden, layers)

    def _dist(self, context):
        return self.flow(context[:, None] if self.conditional else None)

    def log_prob(self, x, context=None):
        return self._dist(context).log_prob(x.flatten(1))

    def rsample(self, num: int, context=None):
        d = self._dist(context)
        x = d.rsample() if self.conditional else d.rsample((num,))
        return x.reshape(num, self.num_particles, FEATURES)


class TNFGenerator(nn.Module):
    """TNF: a frozen NF prior whose samples a transformer post-processor corrects (seed 000
    sec. 5.4.4). The prior's network config travels in ``prior_network`` so a saved TNF
    loads without the prior's run folder; its weights are part of this module's."""

    def __init__(self, prior_network: dict, l_dim_gen=16, hidden_gen=256, heads_gen=16, num_blocks_gen=4, **_):
        super().__init__()
        self.prior = FlatFlow(**prior_network)
        self.prior.requires_grad_(False)
        self.post = TransformerGenerator(l_dim_gen, hidden_gen, heads_gen, num_blocks_gen, residual=True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.prior.eval()  # frozen
        return self

    def forward(self, z, mask):
        with torch.no_grad():
            x0 = self.prior.rsample(z.shape[0])[:, : z.shape[1]]
        return self.post(x0, mask)


class ShapeEncoder(TransformerCritic):
    """The permutation-invariant "shape" network of PF / APF: the TGAN critic's body with a
    ``shape_dim``-dimensional output instead of a score (seed 000 footnote 9, L2236)."""

    def __init__(self, shape_dim=10, l_dim=16, hidden=256, heads=16, num_blocks=4, **_):
        super().__init__(l_dim, hidden, heads, num_blocks)
        self.head = nn.Linear(l_dim, shape_dim)

    def forward(self, x, mask):
        h, m = self.token(self.alpha(x), mask)
        for block in self.blocks:
            h = block(h, m)
        return self.head(h[:, 0])


class PointFlowNet(nn.Module):
    """IPF / PF / APF (seed 000 sec. 5.4.2): one RQS flow applied to every particle alone.

    The idea is de Finetti's: an exchangeable cloud is a mixture of clouds of independent
    points, p(X) = int p(z) prod_i p(x_i | z) dz. The IPF drops z (``shape_dim=0``): every
    particle is an independent draw of the same 3-dim flow, so no correlation between
    particles can be learned -- the baseline the seed shows. The PF (PointFlow, Yang et al.
    arXiv:1906.12320) conditions the flow on z = Omega(X) from a permutation-invariant
    :class:`ShapeEncoder`; the APF trains Omega adversarially as well (the module's job).

    Sampling needs draws of z: the network keeps a ring buffer of the latents of the last
    ``bank_size`` training jets (encoded by this very network; the trainer fills it) and
    samples a Gaussian KDE of them (Scott's bandwidth). The bank is module extra state, so
    it travels with the weights and the checkpoint but is not averaged by the EMA.

    Args:
        shape_dim: latent size (0: IPF; seed: 10).
        transforms, bins, hidden, layers: the per-particle RQS coupling flow (seed 000
            Table 5.1, the VNF's).
        l_dim, hidden_shape, heads, num_blocks: the shape encoder (the TGAN critic's sizes).
        bank_size: latents kept for sampling z.
    """

    def __init__(self, shape_dim=0, transforms=25, bins=6, hidden=128, layers=3, l_dim=16, hidden_shape=256,
                 heads=16, num_blocks=4, bank_size=10_000, **_):
        super().__init__()
        from hepgen.models.blocks.flows import rqs_coupling_flow

        self.shape_dim = int(shape_dim)
        self.flow = rqs_coupling_flow(FEATURES, self.shape_dim, transforms, bins, hidden, layers)
        self.encoder = ShapeEncoder(self.shape_dim, l_dim, hidden_shape, heads, num_blocks) if self.shape_dim else None
        self.bank = torch.zeros(int(bank_size), max(self.shape_dim, 1))
        self.bank_filled = 0
        self.bank_pos = 0

    # the latent bank: extra state (saved, loaded, never averaged)
    def get_extra_state(self):
        return {"bank": self.bank[: self.bank_filled].clone(), "pos": self.bank_pos, "size": len(self.bank)}

    def set_extra_state(self, state):
        self.bank = torch.zeros(int(state["size"]), max(self.shape_dim, 1))
        self.bank_filled = len(state["bank"])
        self.bank[: self.bank_filled] = state["bank"]
        self.bank_pos = int(state["pos"])

    def encode(self, x, mask):
        """z = Omega(X) (B, shape_dim), or None for the IPF."""
        return None if self.encoder is None else self.encoder(x, mask)

    @torch.no_grad()
    def remember(self, z: torch.Tensor) -> None:
        """Write the latents of a batch into the ring buffer."""
        if z is None:
            return
        z = z.detach().float().cpu()[: len(self.bank)]
        idx = (self.bank_pos + torch.arange(len(z))) % len(self.bank)
        self.bank[idx] = z
        self.bank_pos = int((self.bank_pos + len(z)) % len(self.bank))
        self.bank_filled = min(len(self.bank), self.bank_filled + len(z))

    def sample_latent(self, num: int, device=None) -> torch.Tensor:
        """``num`` draws of the Gaussian KDE of the bank (global torch RNG)."""
        if not self.bank_filled:
            raise RuntimeError("the latent bank is empty: the network has not seen training jets")
        bank = self.bank[: self.bank_filled].double()
        n, d = bank.shape
        factor = n ** (-1.0 / (d + 4))  # Scott's rule
        cov = torch.cov(bank.T).reshape(d, d) + 1e-9 * torch.eye(d, dtype=bank.dtype)
        chol = torch.linalg.cholesky(cov)
        z = bank[torch.randint(n, (num,))] + factor * torch.randn(num, d, dtype=bank.dtype) @ chol.T
        return z.float().to(device)

    def _flow(self, z, shape):
        """The flow over particles of ``shape`` = (B, N), each given its jet's z."""
        if z is None:
            return self.flow()
        return self.flow(z[:, None, :].expand(*shape, -1))

    def log_prob(self, x, mask, z=None):
        """Sum of the particles' log-densities per jet (B,); padded particles excluded."""
        lp = self._flow(z, x.shape[:2]).log_prob(x)
        return (lp * mask).sum(1)

    def forward(self, noise, mask):
        """Sampling: base noise (B, N, 3) -> particles, z drawn from the bank's KDE."""
        z = self.sample_latent(len(noise), noise.device) if self.encoder is not None else None
        x = self._flow(z, noise.shape[:2]).transform.inv(noise)
        return x * mask[..., None]
