"""Differentiable jet observables for losses (torch versions of hepgen.metrics ones)."""

from __future__ import annotations

import torch


def relative_mass(particles: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """m / pT_jet of massless particles (B, N, 3) = (etarel, phirel, ptrel)."""
    eta, phi, pt = particles[..., 0], particles[..., 1], particles[..., 2]
    px, py = (pt * torch.cos(phi)).sum(-1), (pt * torch.sin(phi)).sum(-1)
    pz, e = (pt * torch.sinh(eta)).sum(-1), (pt * torch.cosh(eta)).sum(-1)
    return torch.sqrt(torch.clamp(e * e - px * px - py * py - pz * pz, min=eps))
