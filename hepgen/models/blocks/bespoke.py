"""Bespoke non-stationary ODE solvers for a frozen flow-matching model (seed 002 L1210-1250).

A solver of n steps is a set of learned coefficients (Shaul et al., "Bespoke
Non-Stationary Solvers", arXiv:2403.01329): with time points 0 = t_0 < ... < t_{n-1} < 1
and velocities V_j = v(t_j, x_j),

    x_{i+1} = a_i x_0 + sum_{j <= i} b_ij V_j ,

so each step may combine all earlier velocities. Initialised as the Euler solver
(t_j = j/n, a_i = 1, b_ij = 1/n) and trained on the frozen model to reproduce the end
point of a many-step reference solve from the same noise (mean squared error), it keeps
the quality of the reference at a handful of function evaluations (n NFE).

Written here because no library implements these solvers for arbitrary torch models;
the reference solves use ``torchdiffeq`` through :func:`hepgen.models.blocks.cfm.integrate`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm


class BespokeSolver(nn.Module):
    """n-step non-stationary solver; ``forward(velocity, x0, cond)`` returns x(1)."""

    def __init__(self, steps: int):
        super().__init__()
        if steps < 1:
            raise ValueError("a bespoke solver needs at least one step")
        self.steps = steps
        self.dt_logits = nn.Parameter(torch.zeros(steps))  # softmax -> step sizes (time points)
        self.a = nn.Parameter(torch.ones(steps))
        self.b = nn.Parameter(torch.tril(torch.full((steps, steps), 1.0 / steps)))

    def times(self) -> torch.Tensor:
        dt = torch.softmax(self.dt_logits, 0)
        return torch.cat([dt.new_zeros(1), torch.cumsum(dt, 0)[:-1]])

    def forward(self, velocity: Callable, x0: torch.Tensor, cond=None) -> torch.Tensor:
        t = self.times()
        b = torch.tril(self.b)
        x, vs = x0, []
        for i in range(self.steps):
            vs.append(velocity(t[i].expand(x0.shape[0]), x, cond))
            x = self.a[i] * x0 + sum(b[i, j] * vs[j] for j in range(i + 1))
        return x

    @property
    def function_evaluations(self) -> int:
        return self.steps


def euler(velocity: Callable, x0: torch.Tensor, cond=None, steps: int = 8) -> torch.Tensor:
    """Plain Euler from t=0 to 1 (what an untrained bespoke solver equals)."""
    x = x0
    for i in range(steps):
        x = x + velocity(torch.full((len(x0),), i / steps, device=x0.device), x, cond) / steps
    return x


def train_bespoke(velocity: Callable, x0: torch.Tensor, target: torch.Tensor, cond=None, steps: int = 8,
                  iterations: int = 200, batch_size: int = 64, lr: float = 5e-3, seed: int = 0,
                  progress: bool = True) -> BespokeSolver:
    """Fit a :class:`BespokeSolver` to map noise ``x0`` onto the reference end points ``target``.

    ``target`` holds many-step solutions (e.g. midpoint with 100 steps) of the frozen
    ``velocity`` from ``x0`` with condition ``cond`` (a tensor or a tuple of tensors with the
    same first dimension, or None); they are computed once by the caller, so each
    iteration costs only the solver's own ``steps`` evaluations.
    """
    solver = BespokeSolver(steps).to(x0.device)
    opt = torch.optim.Adam(solver.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(range(iterations), desc=f"bespoke solver ({steps} steps)", disable=not progress)
    for _ in bar:
        idx = torch.randperm(len(x0), generator=gen)[:batch_size].to(x0.device)
        c = None if cond is None else (tuple(t[idx] for t in cond) if isinstance(cond, tuple) else cond[idx])
        loss = ((solver(velocity, x0[idx], c) - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(mse=loss.item())
    return solver.eval()
