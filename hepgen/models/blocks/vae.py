"""Conditional beta-VAE with a Bernoulli decoder (the VAE of CaloINN's VAE+INN, seed 002 L959-972).

The idea: the VAE compresses a normalised shower (each voxel a fraction of its layer's
energy, in [0, 1]) into a small latent space; an INN then learns the latent together
with the energy variables, and the decoder maps INN samples back to showers.

* Encoder: an MLP of (shower features, condition) -> (mu, log sigma^2) of a Gaussian
  p(z | x) (seed 002 L961: "We assume a Gaussian distribution for the encoder").
* Decoder: an MLP of (z, condition) -> logits; lambda = sigmoid(logits) is the mean of a
  Bernoulli likelihood D(x | lambda) = lambda^x (1 - lambda)^(1 - x) (eq. 4.7, L963). The
  thesis prefers it to a Gaussian decoder (which misses the shower geometry and the
  low-energy region) and to the continuous Bernoulli (unstable, as the normalised
  deposits sit close to zero); lambda itself is the prediction for each voxel (L970).
* Both are conditioned on the incident energy and the energy variables (L959, L972).
* :func:`beta_vae_loss`: the negative of eq. 4.8 (L967), the Bernoulli log-likelihood of
  one reparametrised draw z ~ N(mu, sigma) plus beta x the analytic KL divergence to
  N(0, 1), with beta = 1e-9 in the thesis.

The layer-kernel (convolution-like) encoder of DS2 (L974) is not built here; the MLP
serves every geometry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hepgen.errors import OptionError
from hepgen.models.blocks.mlp import mlp


class LatentVAE(nn.Module):
    """What every conditional VAE of hepgen shares on top of its ``encode`` and
    ``decode_logits``: the Bernoulli mean, one reparametrised pass and the standardisation
    of the latent by the ``latent_mean`` / ``latent_std`` buffers (set after training from
    the encoded training set)."""

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """lambda(z) in (0, 1), the Bernoulli mean used as the voxel prediction."""
        return torch.sigmoid(self.decode_logits(z, cond))

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        """One reparametrised pass: (decoder logits, mu, logvar)."""
        mu, logvar = self.encode(x, cond)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode_logits(z, cond), mu, logvar

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def unstandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean


class ConditionalVAE(LatentVAE):
    """Gaussian encoder q(z | x, c) and Bernoulli decoder p(x | z, c), both MLPs.

    Args:
        features: the length of a shower vector (voxels).
        condition: the length of the condition (E_inc and the energy variables).
        latent: the latent dimension (seed 002 Table B.2: 50 for DS1 and DS2, 300 for DS3).
        hidden: hidden widths of the encoder; the decoder mirrors them
            (Table B.2: 5000, 1000, 500 for DS1).

    The buffers ``latent_mean`` / ``latent_std`` hold the statistics of the encoder means
    on the training set once the VAE is trained: the INN learns the standardised latent
    (:meth:`standardise`), the sampler undoes it (:meth:`unstandardise`).
    """

    def __init__(self, features: int, condition: int, latent: int = 50, hidden=(5000, 1000, 500)):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if latent < 1 or not hidden or min(hidden) < 1:
            raise OptionError(f"vae: latent and hidden sizes must be positive, got latent {latent}, hidden {hidden}")
        self.latent = int(latent)
        self.encoder = mlp([features + condition, *hidden, 2 * self.latent])
        self.decoder = mlp([self.latent + condition, *hidden[::-1], features])
        self.register_buffer("latent_mean", torch.zeros(self.latent))
        self.register_buffer("latent_std", torch.ones(self.latent))

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z | x, cond); the log-variance is clamped to [-30, 20]."""
        mu, logvar = self.encoder(torch.cat([x, cond], -1)).chunk(2, -1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, cond], -1))

def beta_vae_loss(logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The beta-VAE loss of seed 002 eq. 4.8 (L967), to minimise; per shower, batch mean.

    Args:
        logits: decoder outputs (B, D); lambda = sigmoid(logits).
        target: the normalised shower x in [0, 1] (B, D).
        mu, logvar: the encoder's Gaussian (B, latent).
        beta: weight of the KL term (1e-9 in the thesis).

    Returns (loss, reconstruction, kl): reconstruction = -sum_v [x log lambda +
    (1 - x) log(1 - lambda)] (binary cross-entropy, computed from the logits for
    stability), kl = -1/2 sum_k [1 + log sigma_k^2 - mu_k^2 - sigma_k^2], and
    loss = reconstruction + beta kl.
    """
    recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1).mean()
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(-1)).mean()
    return recon + beta * kl, recon, kl


__all__ = ["ConditionalVAE", "LatentVAE", "beta_vae_loss"]
