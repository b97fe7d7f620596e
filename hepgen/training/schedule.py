"""Learning-rate schedules over a run's planned budget, shared by every trainer.

``training.schedule`` names the shape, as a factor on the configured learning rate at
optimiser step s of S planned steps (``training.schedule_epochs`` epochs, fixed when the
run starts so that ``--resume`` continues the same curve):

``constant``   1
``cosine``     linear warm-up over ``warmup`` x S steps, then cosine decay to
               ``final_lr_fraction`` (the public MDMA code: warm-up + cosine)
``one-cycle``  ``torch.optim.lr_scheduler.OneCycleLR``'s cosine shape: from max/25
               up to the maximum at ``warmup`` x S (default 0.3), down to max/1e4
               (CaloINN, seed 002 Table B.1)
``exponential`` ``lr_decay`` ** (completed epochs): the learning rate multiplied by
               ``lr_decay`` after every epoch (the BIB-AEs of seed 001 appendix A: 0.95
               for photons, 0.97 for pions)

The scheduler is a ``LambdaLR`` whose factor depends on the step count alone, so its
state in the Lightning checkpoint is just that count and resuming is exact. Past S the
factor stays at its final value.
"""

from __future__ import annotations

import math

import torch

from hepgen.errors import OptionError

SCHEDULES = ("constant", "cosine", "one-cycle", "exponential")


class ScheduleFactor:
    """Picklable factor(step) of a schedule (see the module docstring).

    Args:
        kind: ``constant``, ``cosine``, ``one-cycle`` or ``exponential``.
        total_steps: the planned number of optimiser steps S.
        warmup: the warm-up share of S (cosine default 0.02, one-cycle 0.3).
        final_lr_fraction: the cosine's end value as a share of the maximum.
        lr_decay: the exponential schedule's factor per epoch.
        steps_per_epoch: optimiser steps of one epoch (the exponential schedule's stair width).
    """

    def __init__(self, kind: str, total_steps: int, warmup: float | None = None, final_lr_fraction: float = 0.01,
                 lr_decay: float = 0.95, steps_per_epoch: int | None = None):
        if kind not in SCHEDULES:
            raise OptionError(f"training.schedule: unknown schedule {kind!r}; choose from {', '.join(SCHEDULES)}")
        self.kind = kind
        self.total = max(int(total_steps), 1)
        default = 0.3 if kind == "one-cycle" else 0.02
        self.warmup = max(int(round((default if warmup is None else float(warmup)) * self.total)), 0)
        self.final = float(final_lr_fraction)
        self.decay = float(lr_decay)
        if kind == "exponential" and not (0 < self.decay <= 1):
            raise OptionError(f"training.lr_decay must lie in (0, 1], got {lr_decay}")
        self.epoch_steps = max(int(steps_per_epoch or 1), 1)

    def __call__(self, step: int) -> float:
        s = min(int(step), self.total)
        if self.kind == "constant":
            return 1.0
        if self.kind == "exponential":
            return self.decay ** (s // self.epoch_steps)
        if self.kind == "cosine":
            if s < self.warmup:
                return (s + 1) / (self.warmup + 1)
            p = (s - self.warmup) / max(self.total - self.warmup, 1)
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * p))
        # one-cycle: OneCycleLR's defaults (div_factor 25, final_div_factor 1e4), cosine annealing
        start, end = 1 / 25, 1 / 25 / 1e4
        if s < self.warmup:
            p = s / max(self.warmup, 1)
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * p))
        p = (s - self.warmup) / max(self.total - self.warmup, 1)
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * p))


def make_scheduler(optimizer: torch.optim.Optimizer, training: dict, total_steps: int,
                   steps_per_epoch: int | None = None):
    """A per-step ``LambdaLR`` for ``optimizer`` from a run's ``training`` section, or
    None for the constant schedule. ``steps_per_epoch`` (optimiser steps of this optimiser
    per epoch) sets the exponential schedule's epochs; without it they are S divided by
    ``schedule_epochs``."""
    kind = str(training.get("schedule", "constant"))
    if not steps_per_epoch and training.get("schedule_epochs"):
        steps_per_epoch = max(int(round(total_steps / float(training["schedule_epochs"]))), 1)
    factor = ScheduleFactor(kind, total_steps, training.get("warmup"), float(training.get("final_lr_fraction", 0.01)),
                            float(training.get("lr_decay", 0.95)), steps_per_epoch)
    if kind == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def planned_steps(trainer, training: dict, steps_per_epoch: int | None = None) -> int:
    """Optimiser steps in the planned budget: ``schedule_epochs`` (else the trainer's
    ``max_epochs``) times the batches of one epoch.

    Give ``steps_per_epoch`` when it is known: Lightning's ``estimated_stepping_batches``
    sets up the training data loader before a checkpoint is restored, and a resumed run
    would then iterate the first epoch's order again."""
    if steps_per_epoch:
        epochs = training.get("schedule_epochs") or trainer.max_epochs
        return max(1, int(round(float(epochs) * int(steps_per_epoch))))
    total = int(trainer.estimated_stepping_batches)
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    epochs = training.get("schedule_epochs")
    if epochs and max_epochs:
        return max(1, int(round(total / max_epochs * float(epochs))))
    return max(1, total)
