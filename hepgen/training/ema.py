"""Exponential moving average of the weights, warm-started, for every trainer.

A plain EMA with decay d (``torch.optim.swa_utils.get_ema_multi_avg_fn``) copies the
weights at its first update and keeps a share d^k of them after k updates: with
d = 0.999, 68 % of the random initialisation after one epoch of 390 steps and 37 %
after 1000 steps, so early checkpoints sample from a mostly untrained network. The
warm EMA ramps the decay as

    d_k = min(d, (1 + k) / (10 + k))

(the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and of the
EMA used in many diffusion codes): the first updates follow the network closely, so the
share of the initial weights is prod_k d_k ~ 10 / (10 + k) early and decays like d^k
afterwards -- below 1 % within a few hundred steps.

``torch.optim.swa_utils.AveragedModel`` holds the copy, so its state (weights, buffers,
number of updates) is part of the Lightning checkpoint and resumes exactly.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def warm_decay(decay: float, num_updates: int) -> float:
    """The decay of update ``num_updates`` (0-based) of a warm EMA with final decay ``decay``."""
    return min(float(decay), (1.0 + num_updates) / (10.0 + num_updates))


def warm_ema(network: torch.nn.Module, decay: float | None) -> AveragedModel | None:
    """A warm EMA copy of ``network`` (None when ``decay`` is 0 or None).

    Args:
        network: the module whose weights are averaged; update with
            ``ema.update_parameters(network)`` after each optimiser step.
        decay: the final decay d (e.g. 0.999), reached after ~10/(1 - d) updates.
    """
    if not decay:
        return None
    decay = float(decay)

    @torch.no_grad()
    def update(averaged, current, num_averaged):
        d = warm_decay(decay, int(num_averaged))
        floating = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1.0 - d)
        for a, c in zip(averaged, current):  # integer / boolean buffers (masks, counters) are copied
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(network, multi_avg_fn=update, use_buffers=True)
