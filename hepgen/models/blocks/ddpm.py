"""Denoising diffusion (DDPM) with a cosine schedule and v-prediction, for masked point clouds.

Ho et al. (arXiv:2006.11239) with the cosine noise schedule of Nichol & Dhariwal
(arXiv:2102.09672) and the v-parametrisation of Salimans & Ho (arXiv:2202.00512),
as seed 004 uses them (L690-937): T steps, alpha_bar(t) = f(t)/f(0) with
f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 8e-3, beta_t = 1 - alpha_bar_t/alpha_bar_{t-1}
clipped at 0.999. The forward process is closed-form,

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,

the network predicts v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 and the loss
is the masked MSE on v. Sampling is ancestral (T network evaluations) or DDIM
(Song et al., arXiv:2010.02502; deterministic, any subset of the steps), which is the
few-step sampler. Padded points stay zero throughout.

Written here because no maintained library implements masked point-cloud diffusion
(``diffusers`` targets images and is not installed); the schedule and samplers are a
few lines each.
"""

from __future__ import annotations

import math

import torch

from hepgen.errors import OptionError


def cosine_alpha_bar(T: int, s: float = 8e-3, max_beta: float = 0.999) -> torch.Tensor:
    """alpha_bar_t for t = 0..T (alpha_bar_0 = 1), betas clipped at ``max_beta``."""
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2
    ab = f / f[0]
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    return torch.cat([ab.new_ones(1), torch.cumprod(1 - betas, 0)])


class Diffusion:
    """The schedule, loss and samplers of a v-prediction DDPM (see the module docstring).

    Args:
        steps: T, the number of diffusion steps (seed 004: 512).
        s: the cosine schedule's offset.
        max_beta: the clip of beta_t.
    """

    def __init__(self, steps: int = 512, s: float = 8e-3, max_beta: float = 0.999):
        self.T = int(steps)
        self.alpha_bar = cosine_alpha_bar(self.T, s, max_beta).float()

    def _ab(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alpha_bar.to(like.device)[t].view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t given x_0 (closed form), t in 1..T."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def loss(self, net, x0: torch.Tensor, mask: torch.Tensor, cond=None) -> torch.Tensor:
        m = mask[..., None].to(x0.dtype)
        t = torch.randint(1, self.T + 1, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0) * m
        xt = self.q_sample(x0, t, eps) * m
        ab = self._ab(t, x0)
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        pred = net(t.float() / self.T, xt, mask, cond)
        return (((pred - v) ** 2) * m).sum() / (m.sum() * x0.shape[-1])

    def _x0_eps(self, net, xt, t_int, mask, cond):
        ab = self._ab(torch.full((len(xt),), t_int, device=xt.device, dtype=torch.long), xt)
        v = net(torch.full((len(xt),), t_int / self.T, device=xt.device), xt, mask, cond)
        x0 = ab.sqrt() * xt - (1 - ab).sqrt() * v
        eps = (1 - ab).sqrt() * xt + ab.sqrt() * v
        return x0, eps

    @torch.no_grad()
    def sample(self, net, noise: torch.Tensor, mask: torch.Tensor, cond=None, method: str = "ancestral",
               steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_0 from x_T = ``noise``: ``ancestral`` (all T steps) or ``ddim`` with ``steps`` steps."""
        m = mask[..., None].to(noise.dtype)
        x = noise * m
        if method == "ancestral":
            ab = self.alpha_bar.to(noise.device)
            for t in range(self.T, 0, -1):
                x0, _ = self._x0_eps(net, x, t, mask, cond)
                a_t, a_prev = ab[t], ab[t - 1]
                beta = 1 - a_t / a_prev
                mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
                if t > 1:
                    var = beta * (1 - a_prev) / (1 - a_t)
                    z = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
                    x = (mean + var.sqrt() * z) * m
                else:
                    x = mean * m
            return x
        if method == "ddim":
            k = int(steps or 8)
            if not 1 <= k <= self.T:
                raise OptionError(f"DDIM steps must lie in 1..{self.T}, got {k}")
            times = torch.linspace(self.T, 0, k + 1).round().long().tolist()
            ab = self.alpha_bar.to(noise.device)
            for t, t_next in zip(times[:-1], times[1:]):
                x0, eps = self._x0_eps(net, x, t, mask, cond)
                x = (ab[t_next].sqrt() * x0 + (1 - ab[t_next]).sqrt() * eps) * m
            return x
        raise OptionError(f"unknown diffusion sampler {method!r}; choose ancestral or ddim")
