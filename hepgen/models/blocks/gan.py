"""GAN objectives and critic helpers.

* LSGAN (Mao et al.): critic pushes real scores to 1 and fake to 0, the generator
  pushes fake scores to 1;
* WGAN-GP (Gulrajani et al.): Wasserstein critic with a gradient penalty on random
  interpolates (masked point clouds interpolate particle by particle);
* mean-field / feature matching (seed 000 eq. 5.13): squared distance between the
  batch means of the critic's final mean field for real and generated clouds;
* weight normalisation of every linear layer of a critic (torch's parametrisation).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def lsgan_critic_loss(real_score, fake_score):
    return 0.5 * ((real_score - 1) ** 2).mean() + 0.5 * (fake_score**2).mean()


def lsgan_generator_loss(fake_score):
    return 0.5 * ((fake_score - 1) ** 2).mean()


def wgan_critic_loss(real_score, fake_score):
    return fake_score.mean() - real_score.mean()


def wgan_generator_loss(fake_score):
    return -fake_score.mean()


def gradient_penalty(critic, real, fake, mask, weight: float = 10.0):
    """weight * (|grad critic(x_hat)| - 1)^2 at random interpolates x_hat of real and fake
    (one interpolation weight per sample, for clouds (B, N, F) and grids (B, ...) alike);
    ``mask`` is passed on to ``critic`` (a cloud's mask or a grid's condition). The critic
    may return its scores (B,) or a tuple whose first entry they are (the jet critics)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score = critic(x_hat, mask)
    if isinstance(score, (tuple, list)):  # a tensor's [0] would keep only the first sample's score
        score = score[0]
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)
    return weight * ((norm - 1) ** 2).mean()


def mean_field_matching(real_field, fake_field):
    return ((real_field.mean(0) - fake_field.mean(0)) ** 2).sum()


GAN_LOSSES = {
    "lsgan": (lsgan_critic_loss, lsgan_generator_loss),
    "wgan-gp": (wgan_critic_loss, wgan_generator_loss),
}


def weight_normalise(module: nn.Module) -> nn.Module:
    """Apply weight normalisation to every nn.Linear inside ``module`` (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, weight_norm(child))
        else:
            weight_normalise(child)
    return module
