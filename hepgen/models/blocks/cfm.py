"""Conditional flow matching and ODE sampling.

Training pairs noise x0 ~ N(0, 1) with data x1 on the linear path
x_t = (1 - t) x0 + t x1 with target velocity x1 - x0 (Lipman et al.; Tong et al.),
optionally re-pairing the batch by exact mini-batch optimal transport (OT-CFM). The
path sampling and OT pairing come from ``torchcfm``; masking of padded particles is
ours. Sampling integrates the learned velocity with ``torchdiffeq``: fixed-grid Euler,
midpoint and RK4, or adaptive dopri5.
"""

from __future__ import annotations

from typing import Callable

import torch

from hepgen.errors import OptionError

#: velocity evaluations per step of each fixed-grid solver
SOLVER_NFE = {"euler": 1, "midpoint": 2, "rk4": 4}
SOLVERS = tuple(SOLVER_NFE) + ("dopri5",)


class FlowMatching:
    """Masked CFM loss for point clouds (B, N, F) with mask (B, N)."""

    def __init__(self, ot: bool = False, sigma: float = 0.0):
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )

        self.ot = ot
        self.matcher = (ExactOptimalTransportConditionalFlowMatcher if ot else ConditionalFlowMatcher)(sigma=sigma)

    def loss(self, velocity: Callable, x1: torch.Tensor, mask: torch.Tensor, cond=None) -> torch.Tensor:
        m = mask[..., None].to(x1.dtype)
        x0 = torch.randn_like(x1) * m
        t, xt, ut = self.matcher.sample_location_and_conditional_flow(x0, x1)
        if self.ot:  # re-paired noise must follow the data's padding
            xt, ut = xt * m, ut * m
        v = velocity(t, xt, mask, cond)
        return (((v - ut) ** 2) * m).sum() / (m.sum() * x1.shape[-1])


def integrate(
    velocity: Callable,
    x0: torch.Tensor,
    mask: torch.Tensor,
    cond=None,
    method: str = "midpoint",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> torch.Tensor:
    """Solve dx/dt = v(t, x) from t=0 (noise) to t=1 (data); padded entries stay zero."""
    from torchdiffeq import odeint

    if method not in SOLVERS:
        raise OptionError(f"unknown ODE solver {method!r}; choose from {', '.join(SOLVERS)}")
    if method != "dopri5" and steps < 1:
        raise OptionError(f"solver steps must be at least 1, got {steps}")
    m = mask[..., None].to(x0.dtype)

    def f(t, x):
        return velocity(t.expand(x.shape[0]), x, mask, cond) * m

    if method == "dopri5":
        t = torch.tensor([0.0, 1.0], device=x0.device)
        return odeint(f, x0 * m, t, method="dopri5", atol=atol, rtol=rtol)[-1]
    t = torch.linspace(0.0, 1.0, steps + 1, device=x0.device)
    return odeint(f, x0 * m, t, method=method)[-1]


def function_evaluations(method: str, steps: int) -> int | None:
    """Velocity evaluations of a fixed-grid solve (None for adaptive solvers)."""
    return SOLVER_NFE[method] * steps if method in SOLVER_NFE else None
