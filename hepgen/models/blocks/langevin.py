"""Langevin Markov chains and a replay buffer: the sampler of an energy-based model.

An energy-based model p(x) = exp(-E(x)) / Z (seed 002 eq. 3.29) is trained with negative
samples from the model itself (eq. 3.34); they come from Langevin Markov chains (eq. 3.35)

    x_{t+1} = x_t - lambda grad_x E(x_t) + sigma eps_t,    eps_t ~ N(0, 1),

which sample p at the temperature T = sigma^2 / (2 lambda) (eq. 3.36); T < 1 puts more
weight on the drift than on the noise, so short chains reach the modes quickly (L663).
The stabilisers of seed 002 L1431 are options here: clipping of the gradient norm in each
step, a Metropolis-Hastings acceptance step (the Metropolis-adjusted Langevin algorithm,
MALA, for exp(-E / T)), noise annealing (the noise falls linearly to zero over the
chain), clamping of the state to a box (images: [0, 1]) and projection onto the unit
sphere (the NAE's latent chain, L1431, Appendix B).

The :class:`ReplayBuffer` keeps the final states of earlier chains; a new chain starts from
the buffer with probability ``replay_ratio`` (seed: 0.95) and from a fresh initial state
otherwise (persistent chains that still explore, L1431 and Appendix B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class ChainSettings:
    """One Langevin chain's settings (seed 002 Table 5.1).

    Args:
        steps: Langevin steps.
        step_size: lambda, the drift's factor.
        noise: sigma, the noise's standard deviation.
        metropolis: MALA acceptance step.
        anneal: noise falls linearly from sigma to 0 over the chain.
        clip_grad: largest norm of grad E per sample (None: no clipping).
        bounds: (lo, hi) box the states are clamped to (None: none).
        spherical: project every state onto the unit sphere.
    """

    steps: int = 30
    step_size: float = 50.0
    noise: float = 1e-4
    metropolis: bool = True
    anneal: bool = False
    clip_grad: float | None = None
    bounds: tuple[float, float] | None = None
    spherical: bool = False

    @property
    def temperature(self) -> float:
        """T = sigma^2 / (2 lambda) (seed 002 eq. 3.36)."""
        return self.noise ** 2 / (2 * self.step_size)


def _clip_norm(g: torch.Tensor, max_norm: float) -> torch.Tensor:
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-30)
    factor = (max_norm / norm).clamp(max=1.0)
    return g * factor.view(-1, *([1] * (g.dim() - 1)))


def _project(x: torch.Tensor, chain: ChainSettings) -> torch.Tensor:
    if chain.bounds is not None:
        x = x.clamp(chain.bounds[0], chain.bounds[1])
    if chain.spherical:
        x = x / x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return x


def _energy_and_grad(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chain: ChainSettings):
    x = x.detach().requires_grad_(True)
    e = energy(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    if chain.clip_grad is not None:
        g = _clip_norm(g, chain.clip_grad)
    return e.detach(), g.detach()


def langevin(energy: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, chain: ChainSettings,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Run a Langevin chain from ``x0`` on ``energy``; return the final states and statistics.

    The model's parameters get no gradients from the chain (only the states do).

    Args:
        energy: maps a batch of states (B, ...) to energies (B,).
        x0: the initial states.
        chain: the chain's settings.
        generator: random numbers of the noise and the acceptance step.

    Returns:
        ``(x, stats)`` with ``stats`` = ``{"energy_start", "energy_end", "acceptance"}``
        (batch means; acceptance 1 without the Metropolis step).
    """
    x = _project(x0.detach().clone(), chain)
    e, g = _energy_and_grad(energy, x, chain)
    e_start = float(e.mean())
    accepted, proposed = 0.0, 0
    temperature = max(chain.temperature, 1e-300)
    for t in range(chain.steps):
        sigma = chain.noise * (1 - t / max(chain.steps - 1, 1)) if chain.anneal else chain.noise
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * sigma
        y = _project(x - chain.step_size * g + noise, chain)
        e_y, g_y = _energy_and_grad(energy, y, chain)
        if chain.metropolis and sigma > 0:
            # MALA for exp(-E / T): log a = -(E(y) - E(x)) / T + log q(x | y) - log q(y | x)
            fwd = (y - x + chain.step_size * g).flatten(1).pow(2).sum(1)
            bwd = (x - y + chain.step_size * g_y).flatten(1).pow(2).sum(1)
            log_a = -(e_y - e) / temperature - (bwd - fwd) / (2 * sigma ** 2)
            u = torch.rand(len(x), generator=generator, dtype=log_a.dtype)
            accept = torch.log(u.clamp_min(1e-300)) < log_a
            shape = (-1,) + (1,) * (x.dim() - 1)
            x = torch.where(accept.view(shape), y, x)
            g = torch.where(accept.view(shape), g_y, g)
            e = torch.where(accept, e_y, e)
            accepted += float(accept.float().sum())
            proposed += len(accept)
        else:
            x, e, g = y, e_y, g_y
    stats = {"energy_start": e_start, "energy_end": float(e.mean()),
             "acceptance": accepted / proposed if proposed else 1.0}
    return x.detach(), stats


class ReplayBuffer:
    """The final states of earlier chains, drawn as starting points of new ones.

    Args:
        size: states kept (seed 002 Appendix B: 10000); the oldest are replaced first.
        replay_ratio: probability that a chain starts from the buffer (seed: 0.95).
    """

    def __init__(self, size: int = 10000, replay_ratio: float = 0.95):
        self.size = int(size)
        self.replay_ratio = float(replay_ratio)
        self.states: torch.Tensor | None = None
        self._next = 0

    def __len__(self) -> int:
        return 0 if self.states is None else len(self.states)

    def push(self, x: torch.Tensor) -> None:
        """Store the states ``x`` (B, ...), overwriting the oldest when full."""
        x = x.detach()
        if self.states is None:
            self.states = x[: self.size].clone()
            self._next = len(self.states) % self.size
            return
        for row in x:
            if len(self.states) < self.size:
                self.states = torch.cat([self.states, row[None]])
                self._next = len(self.states) % self.size
            else:
                self.states[self._next] = row
                self._next = (self._next + 1) % self.size

    def draw(self, n: int, fresh: Callable[[int], torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` starting states: from the buffer with probability ``replay_ratio`` each, else
        from ``fresh(k)``; all fresh while the buffer is empty."""
        if not len(self):
            return fresh(n)
        from_buffer = torch.rand(n, generator=generator) < self.replay_ratio
        out = fresh(n)
        k = int(from_buffer.sum())
        if k:
            idx = torch.randint(len(self), (k,), generator=generator)
            out[from_buffer] = self.states[idx].to(out.dtype)
        return out


__all__ = ["ChainSettings", "ReplayBuffer", "langevin"]
