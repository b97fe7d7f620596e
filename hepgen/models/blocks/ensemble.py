"""Ensembles: R independent copies of a small network trained in one pass.

Idea: a study that repeats a training on R independent data sets (the seed's amplification
study: 100 training sets, each with its own GAN) can train all R networks at once. Each
linear layer holds R weight matrices and maps R batches with one batched product,
(R, B, in) x (R, in, out) -> (R, B, out). At the toy studies' batch of 10 points a single
network is all overhead (tens of microseconds per operation for a few thousand
multiply-adds); R networks in one product cost little more than one. Activations and
dropout act elementwise and need nothing special; the members' losses are summed, so each
member receives the gradient of its own loss, and an elementwise optimiser (Adam) with a
shared step counter and schedule updates each member exactly as it would alone. Only the
random streams differ from R separate runs.

Why hand-written: ``torch.func.stack_module_state`` with ``vmap`` batches forward passes,
but the seed's GAN needs a gradient penalty (``torch.autograd.grad`` with
``create_graph=True``), which ``vmap`` does not support; a batched layer keeps plain
autograd and every optimiser.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers: x (R, B, inputs) -> (R, B, outputs).

    Initialised like ``nn.Linear`` (uniform in +-1/sqrt(inputs) for weights and biases), each
    member from the global torch generator in turn.

    Args:
        members: the number R of independent layers.
        inputs, outputs: features in and out of each.
    """

    def __init__(self, members: int, inputs: int, outputs: int):
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(members, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, outputs).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        r, i, o = self.weight.shape
        return f"members={r}, inputs={i}, outputs={o}"


def ensemble_mlp(members: int, inputs: int, outputs: int, hidden: int = 64, layers: int = 3,
                 act: type[nn.Module] = nn.LeakyReLU, dropout: float = 0.0) -> nn.Sequential:
    """:func:`hepgen.studies.toys.mlp` with :class:`EnsembleLinear` layers: ``members``
    independent MLPs of ``layers`` hidden layers of ``hidden`` units, on inputs (R, B, inputs)."""
    mods: list[nn.Module] = []
    n = inputs
    for _ in range(layers):
        mods += [EnsembleLinear(members, n, hidden), act()]
        if dropout:
            mods.append(nn.Dropout(dropout))
        n = hidden
    mods.append(EnsembleLinear(members, n, outputs))
    return nn.Sequential(*mods)


class MaskedEnsembleLinear(EnsembleLinear):
    """:class:`EnsembleLinear` whose weights are multiplied by a fixed (inputs, outputs) 0/1
    mask, the same for every member (the connectivity of a MADE layer)."""

    def __init__(self, members: int, mask: torch.Tensor):
        super().__init__(members, *mask.shape)
        self.register_buffer("mask", mask.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight * self.mask)


def _made_masks(order: torch.Tensor, hidden: int, layers: int) -> list[torch.Tensor]:
    """MADE connectivity (Germain et al., arXiv:1502.03509) for inputs taken in ``order``:
    output i (shift and log-scale of feature i) sees only the features before it."""
    d = len(order)
    degree_in = torch.empty(d, dtype=torch.long)
    degree_in[order] = torch.arange(d)
    degrees = [degree_in] + [torch.arange(hidden) % max(d - 1, 1) for _ in range(layers)]
    masks = [(degrees[k + 1][None, :] >= degrees[k][:, None]) for k in range(layers)]
    out = torch.cat([degree_in, degree_in])
    masks.append(out[None, :] > degrees[-1][:, None])
    return masks


class EnsembleMAF(nn.Module):
    """``members`` independent masked autoregressive flows with affine MADE blocks.

    Idea: the density of x (R, B, D) is that of z = f_K o ... o f_1 (x) under a standard
    normal, with f_k(x)_i = (x_i - mu_i(x_<i)) exp(-s_i(x_<i)) and the features' order
    reversed from block to block (Papamakarios et al., "Masked Autoregressive Flow",
    arXiv:1705.07057). The density needs one pass per block; sampling needs D passes per
    block (D is small here). The log-scales are softly clamped to +-``clamp``.

    Why hand-written: R separate ``zuko.flows.MAF`` cost R times the (overhead-dominated)
    step of one tiny flow; the seed's OnlineFlow ensemble (20 flows of 5 blocks, 2 x 32, on
    4 dimensions) trains all members in one batched step this way.

    Arguments:
        members: the number R of flows.
        features: D.
        blocks: MADE transforms; hidden, layers: their hidden width and depth.
        clamp: bound of the log-scales.
    """

    def __init__(self, members: int, features: int, blocks: int = 5, hidden: int = 32, layers: int = 2,
                 clamp: float = 3.0):
        super().__init__()
        self.features, self.clamp = features, clamp
        self.orders = []
        self.blocks = nn.ModuleList()
        for k in range(blocks):
            order = torch.arange(features) if k % 2 == 0 else torch.arange(features).flip(0)
            self.orders.append(order)
            mods: list[nn.Module] = []
            for i, mask in enumerate(_made_masks(order, hidden, layers)):
                if i:
                    mods.append(nn.LeakyReLU())
                mods.append(MaskedEnsembleLinear(members, mask))
            self.blocks.append(nn.Sequential(*mods))

    def _params(self, block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = block(x).chunk(2, -1)
        return shift, self.clamp * torch.tanh(raw / self.clamp)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of each member's flow: x (R, B, D) -> (R, B)."""
        ladj = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for block in self.blocks:
            shift, log_scale = self._params(block, x)
            x = (x - shift) * torch.exp(-log_scale)
            ladj = ladj - log_scale.sum(-1)
        return ladj - 0.5 * (x ** 2).sum(-1) - 0.5 * self.features * math.log(2 * math.pi)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` points of each member: (R, num, D)."""
        members = self.blocks[0][0].weight.shape[0]
        z = torch.randn(members, num, self.features, generator=generator)
        for block in reversed(self.blocks):
            x = torch.zeros_like(z)
            for _ in range(self.features):  # feature i is exact after i + 1 passes
                shift, log_scale = self._params(block, x)
                x = z * torch.exp(log_scale) + shift
            z = x
        return z


def ensemble_gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """Sum over members of weight * mean_i (|grad critic(x_hat_i)| - 1)^2, with one
    interpolation weight per point; real, fake (R, B, F), critic -> (R, B, 1). The same
    penalty as :func:`hepgen.models.blocks.gan.gradient_penalty` for each member."""
    eps = torch.rand(*real.shape[:2], 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.norm(dim=-1) - 1) ** 2).mean(1).sum()


__all__ = ["EnsembleLinear", "EnsembleMAF", "MaskedEnsembleLinear", "ensemble_gradient_penalty", "ensemble_mlp"]
