"""AnomalyCLR and DarkCLR: a transformer encoder trained contrastively, and its losses
(seed 002 sec. 5.3, L1557-1812; Fig. 5.13; Tables B.10, B.11).

The encoder f maps a set of objects (the reconstructed objects of an event, or the
constituents of a jet) to a representation z (L1656-1662):

    embedding (linear, per object) -> N transformer encoder blocks (multi-head
    self-attention + feed-forward, padded objects masked with -inf before the softmax)
    -> sum over the unmasked objects -> head (an MLP) -> z

Zero-pT objects are padding: masked in the attention and left out of the aggregation
(L1660). The loss compares z of an event with z' of its physical augmentation (positive
pair) and z* of its anomaly augmentation (anomaly pair), with the cosine similarity s:

* :func:`clr_loss` -- the plain contrastive (SimCLR / NT-Xent) loss, no anomaly pairs;
* :func:`anomclr_loss` -- L_AnomCLR, eq. (5.9): the anomaly pair enters the numerator,
  ``-log exp([s(z_i, z'_i) - s(z_i, z*_i)] / tau) / sum_{j != i} [exp(s(z_i, z_j) / tau)
  + exp(s(z_i, z'_j) / tau)]``;
* :func:`anomclr_plus_loss` -- L+_AnomCLR, eq. (5.10): positive pairs only,
  ``[s(z_i, z*_i) - s(z_i, z'_i)] / tau`` (tau = 1: no trade-off left), linear in the batch;
* :func:`norm_penalty` -- DarkCLR's regulariser (L1698-1700): the mean L2 norm of the
  background representations, added so that a large ||z|| means "unlike the background"
  and s_CLR = ||z|| (eq. 5.11) can serve as an anomaly score.

:class:`RepresentationAE` is the score's autoencoder (L1681-1683): 5 layers 256-128-64-32-16
with LeakyReLU, a 5-dim bottleneck, a mirrored decoder, the MSE as the score.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CLREncoder(nn.Module):
    """The CLR transformer encoder f (seed 002 Fig. 5.13).

    Args:
        input_dim: features per object (AnomalyCLR: pT, eta, phi + a 4-dim one-hot of MET, e,
            mu, jet = 7; DarkCLR: pT, eta, phi = 3).
        model_dim: embedding dimension d_r (Table B.10: 160; B.11: 128).
        ff_dim: feed-forward hidden dimension of each block (160; 512).
        output_dim: dimension of z, the head's output (160; 512).
        heads: attention heads (4).
        layers: transformer encoder blocks N (B.11: 4).
        head_layers: linear layers of the head MLP (2).
        dropout: dropout in the blocks (0.1).
    """

    def __init__(self, input_dim: int, model_dim: int = 160, ff_dim: int = 160, output_dim: int = 160,
                 heads: int = 4, layers: int = 4, head_layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Linear(input_dim, model_dim)
        block = nn.TransformerEncoderLayer(model_dim, heads, ff_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        mods: list[nn.Module] = []
        for i in range(head_layers):
            mods.append(nn.Linear(model_dim, model_dim if i < head_layers - 1 else output_dim))
            if i < head_layers - 1:
                mods.append(nn.ReLU())
        self.head = nn.Sequential(*mods)

    def aggregate(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, model_dim) sum of the block outputs over the unmasked objects (the
        representation before the head)."""
        h = self.encoder(self.embed(x), src_key_padding_mask=~mask)
        return (h * mask[..., None]).sum(1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z (B, output_dim) of objects ``x`` (B, M, input_dim) with ``mask`` (B, M) True for
        real objects (each row needs at least one)."""
        return self.head(self.aggregate(x, mask))


def _sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def anomclr_plus_loss(z: torch.Tensor, z_pos: torch.Tensor, z_anom: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """L+_AnomCLR, seed 002 eq. (5.10): mean over the batch of [s(z_i, z*_i) - s(z_i, z'_i)] / tau.

    Args:
        z, z_pos, z_anom: (B, d) representations of the events, their physical and their
            anomaly augmentations.
        tau: temperature (1: the seed drops it, L1592).
    """
    return ((_sim(z, z_anom) - _sim(z, z_pos)) / tau).mean()


def anomclr_loss(z: torch.Tensor, z_pos: torch.Tensor, z_anom: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """L_AnomCLR, seed 002 eq. (5.9), averaged over the batch.

    ``-[s(z_i, z'_i) - s(z_i, z*_i)] / tau + log sum_{j != i} [exp(s(z_i, z_j) / tau) +
    exp(s(z_i, z'_j) / tau)]``.

    Args:
        z, z_pos, z_anom: (B, d) representations (B >= 2).
        tau: temperature.
    """
    zn, pn = F.normalize(z, dim=-1, eps=1e-8), F.normalize(z_pos, dim=-1, eps=1e-8)
    s_zz = zn @ zn.T / tau
    s_zp = zn @ pn.T / tau
    off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    neg = torch.cat([s_zz.masked_fill(~off, float("-inf")), s_zp.masked_fill(~off, float("-inf"))], dim=1)
    num = (_sim(z, z_pos) - _sim(z, z_anom)) / tau
    return (torch.logsumexp(neg, dim=1) - num).mean()


def clr_loss(z: torch.Tensor, z_pos: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """The plain contrastive loss (SimCLR NT-Xent, seed 002 sec. 3.2, eq. before L752):
    ``-log exp(s(z_i, z'_i) / tau) / sum_{j != i} [exp(s(z_i, z_j) / tau) + exp(s(z_i, z'_j) / tau)]``
    (the denominator of eq. 5.9), symmetrised over z and z'.

    Args:
        z, z_pos: (B, d) representations of events and of their physical augmentations.
        tau: temperature.
    """
    def one(a, b):
        an, bn = F.normalize(a, dim=-1, eps=1e-8), F.normalize(b, dim=-1, eps=1e-8)
        off = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
        neg = torch.cat([(an @ an.T / tau).masked_fill(~off, float("-inf")),
                         (an @ bn.T / tau).masked_fill(~off, float("-inf"))], dim=1)
        return (torch.logsumexp(neg, dim=1) - _sim(a, b) / tau).mean()

    return 0.5 * (one(z, z_pos) + one(z_pos, z))


def norm_penalty(*zs: torch.Tensor) -> torch.Tensor:
    """DarkCLR's norm regulariser (seed 002 L1698-1700): the mean L2 norm of the background
    representations ``zs`` (the events and their physical augmentations)."""
    return torch.cat([z.norm(dim=-1) for z in zs]).mean()


LOSSES = ("anomclr+", "anomclr", "clr")


def contrastive_loss(name: str, z, z_pos, z_anom, tau: float) -> torch.Tensor:
    """The loss ``name`` of :data:`LOSSES` (anomclr+: eq. 5.10; anomclr: eq. 5.9; clr: no
    anomaly pairs)."""
    if name == "anomclr+":
        return anomclr_plus_loss(z, z_pos, z_anom, tau)
    if name == "anomclr":
        return anomclr_loss(z, z_pos, z_anom, tau)
    if name == "clr":
        return clr_loss(z, z_pos, tau)
    raise ValueError(f"unknown CLR loss {name!r}; choose one of {', '.join(LOSSES)}")


class RepresentationAE(nn.Module):
    """The AnomalyCLR score's autoencoder (seed 002 L1681-1683): encoder layers ``hidden``
    (256-128-64-32-16) with LeakyReLU, a linear bottleneck (5), the mirrored decoder; the
    per-event MSE is the anomaly score. Inputs are standardised with the training set's
    mean and standard deviation (buffers, saved with the model).

    Args:
        input_dim: dimension of the input (the CLR representation, or the flattened raw
            preprocessed event for the AE-on-raw-data baseline).
        hidden: encoder widths.
        bottleneck: latent dimension.
    """

    def __init__(self, input_dim: int, hidden=(256, 128, 64, 32, 16), bottleneck: int = 5):
        super().__init__()
        enc: list[nn.Module] = []
        d = input_dim
        for h in hidden:
            enc += [nn.Linear(d, h), nn.LeakyReLU()]
            d = h
        enc.append(nn.Linear(d, bottleneck))
        dec: list[nn.Module] = []
        d = bottleneck
        for h in reversed(hidden):
            dec += [nn.Linear(d, h), nn.LeakyReLU()]
            d = h
        dec.append(nn.Linear(d, input_dim))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))

    def fit_scaling(self, x: torch.Tensor, standardise: bool = True) -> None:
        """Set the input scaling from the training inputs ``x`` (identity if not ``standardise``)."""
        if standardise:
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0).clamp_min(1e-6))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) mean squared reconstruction error of the (scaled) inputs: the anomaly score."""
        u = (x - self.mean) / self.std
        return ((self.decoder(self.encoder(u)) - u) ** 2).mean(-1)


__all__ = ["CLREncoder", "anomclr_plus_loss", "anomclr_loss", "clr_loss", "norm_penalty", "contrastive_loss",
           "LOSSES", "RepresentationAE"]
