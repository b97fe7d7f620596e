"""The plain multilayer perceptron the blocks and assemblies share."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], act=nn.SiLU) -> nn.Sequential:
    """Linear layers through ``sizes`` (input, hidden..., output) with ``act`` between them
    and none after the last."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


__all__ = ["mlp"]
