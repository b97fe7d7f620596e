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


def ensemble_gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """Sum over members of weight * mean_i (|grad critic(x_hat_i)| - 1)^2, with one
    interpolation weight per point; real, fake (R, B, F), critic -> (R, B, 1). The same
    penalty as :func:`hepgen.models.blocks.gan.gradient_penalty` for each member."""
    eps = torch.rand(*real.shape[:2], 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return weight * ((grad.norm(dim=-1) - 1) ** 2).mean(1).sum()


__all__ = ["EnsembleLinear", "ensemble_gradient_penalty", "ensemble_mlp"]
