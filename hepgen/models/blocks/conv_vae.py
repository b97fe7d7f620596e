"""Convolutional beta-VAE of a calorimeter grid: the autoencoder of latent CaloDREAM (laViT).

The idea (seed 002 L1122-1140, Table B.6): a highly granular shower lies on a manifold
of much lower dimension than its voxel grid, so the expensive generative network can work
on a compressed latent grid instead. The encoder is a short series of 3D convolutions
whose first one downsamples the (layer, alpha, r) grid; a 1x1x1 convolution to a
bottleneck of two channels gives the Gaussian (mu, sigma) of each latent cell. The decoder
mirrors it with transposed convolutions and ends in a sigmoid: lambda, the mean of a
Bernoulli likelihood of the normalised voxels x in [0, 1] (each voxel's fraction of its
layer's energy), the prediction of each voxel. A separate network embeds the energy
condition (E_inc and the layer energies) and modulates every hidden convolution (a
per-channel scale and shift, FiLM). The loss is
:func:`hepgen.models.blocks.vae.beta_vae_loss` with beta = 1e-6 (Table B.6).

DS2 (45 x 16 x 9 = 6480 voxels, Table B.6): channels (64, 64, 2), kernels and strides
(3, 2, 1) then (1, 1, 1), paddings (0, 1, 0) then 0, so the bottleneck is 2 x 15 x 9 x 9 =
2430 values, a reduction by F ~ 2.7. Other grids take their own kernel/stride/padding.

Written with ``torch.nn`` layers because no kept library offers a conditional 3D
convolutional VAE; it shares the interface (encode / decode / standardise) of
:class:`hepgen.models.blocks.vae.ConditionalVAE` (:class:`hepgen.models.blocks.vae.LatentVAE`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hepgen.errors import OptionError
from hepgen.models.blocks.vae import LatentVAE


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvVAE3D(LatentVAE):
    """Conditional 3D convolutional VAE of a (layers, alpha, r) grid.

    Args:
        shape: the grid (D, H, W), e.g. (45, 16, 9) for DS2.
        condition: length of the condition vector.
        channels: hidden channels of the blocks, the last one the bottleneck's (Table B.6:
            (64, 64, 2)).
        kernel, stride, padding: of the first (downsampling) convolution; the further
            blocks are 1 x 1 x 1.
        cond_dim: width of the condition embedding.
    """

    def __init__(self, shape, condition: int, channels=(64, 64, 2), kernel=(3, 2, 1), stride=(3, 2, 1),
                 padding=(0, 1, 0), cond_dim: int = 64):
        super().__init__()
        shape, kernel, stride, padding = (tuple(int(v) for v in a) for a in (shape, kernel, stride, padding))
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise OptionError(f"conv VAE: channels must be >= 2 positive sizes, got {channels}")
        self.shape = shape
        self.latent_shape = (channels[-1], *(_out_size(s, k, st, p) for s, k, st, p in zip(shape, kernel, stride, padding)))
        # the decoder's transposed convolution must land exactly on the grid again
        back = tuple((o - 1) * st - 2 * p + k for o, st, p, k in zip(self.latent_shape[1:], stride, padding, kernel))
        extra = tuple(s - b for s, b in zip(shape, back))
        if any(e < 0 or e >= max(st, 1) for e, st in zip(extra, stride)):
            raise OptionError(f"conv VAE: kernel {kernel}, stride {stride}, padding {padding} do not tile the grid {shape}")
        self.latent = math.prod(self.latent_shape)
        hidden = channels[:-1]
        self.cond = nn.Sequential(nn.Linear(condition, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim), nn.SiLU())
        self.enc = nn.ModuleList([nn.Conv3d(1, hidden[0], kernel, stride, padding)] +
                                 [nn.Conv3d(a, b, 1) for a, b in zip(hidden[:-1], hidden[1:])])
        self.enc_out = nn.Conv3d(hidden[-1], 2 * channels[-1], 1)
        self.dec_in = nn.Conv3d(channels[-1], hidden[-1], 1)
        self.dec = nn.ModuleList([nn.Conv3d(b, a, 1) for a, b in zip(hidden[:-1], hidden[1:])][::-1])
        self.dec_out = nn.ConvTranspose3d(hidden[0], 1, kernel, stride, padding, output_padding=extra)
        widths = [*hidden, hidden[-1], *hidden[:-1][::-1]]
        self.film = nn.ModuleList(nn.Linear(cond_dim, 2 * w) for w in widths)
        for f in self.film:  # start as the identity modulation
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)
        self.act = nn.SiLU()
        self.register_buffer("latent_mean", torch.zeros(self.latent))
        self.register_buffer("latent_std", torch.ones(self.latent))

    def _modulate(self, h: torch.Tensor, k: int, e: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film[k](e).chunk(2, -1)
        return self.act(h * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None])

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2), each flattened layer-major to (B, latent) (see :attr:`grid_shape`),
        of q(r | x, cond) for flat x (B, voxels)."""
        e = self.cond(cond)
        h = x.reshape(len(x), 1, *self.shape)
        for k, conv in enumerate(self.enc):
            h = self._modulate(conv(h), k, e)
        mu, logvar = self.enc_out(h).chunk(2, 1)
        return self._flat(mu), self._flat(logvar).clamp(-30.0, 20.0)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """The latent as a (D' x C, H', W') grid: each latent layer's C channels next to each
        other, so a patch of (k C, 1, 1) holds k layers of every channel (laViT's (3, 1, 1)
        patches of the two-channel bottleneck are (6, 1, 1) here)."""
        c, d, h, w = self.latent_shape
        return (d * c, h, w)

    def _flat(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, D, H, W) -> (B, D C H W), layer-major
        return z.permute(0, 2, 1, 3, 4).flatten(1)

    def _unflat(self, z: torch.Tensor) -> torch.Tensor:
        c, d, h, w = self.latent_shape
        return z.reshape(len(z), d, c, h, w).permute(0, 2, 1, 3, 4)

    def decode_logits(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        e = self.cond(cond)
        k = len(self.enc)
        h = self._modulate(self.dec_in(self._unflat(z)), k, e)
        for conv in self.dec:
            k += 1
            h = self._modulate(conv(h), k, e)
        return self.dec_out(h).flatten(1)


__all__ = ["ConvVAE3D"]
