"""Progressive distillation of a v-prediction DDPM into a few-step deterministic sampler.

The idea (Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion
Models", arXiv:2202.00512): a *student*, initialised as the teacher, learns to take in
one DDIM step the path the teacher takes in two. After a round the student becomes the
teacher and the number of steps halves again: 64 -> 32 -> 16 -> 8 in three rounds, each a
fraction of the original training. This is the limit seed 004 names for its hit-cloud
DDPM (hundreds of network evaluations per jet) and the issue's "distilled sampler of at
most 8 steps".

One update of a round with K student steps on the DDIM grid t_0 = T > t_1 > ... > t_K = 0
(``Diffusion.sample(method="ddim", steps=K)`` uses the same grid): draw a training cloud
x, a step i and noise; x_t = alpha_t x + sigma_t eps at t = t_i; the teacher makes two DDIM
steps t_i -> t_mid -> t_{i+1} (t_mid the midpoint of the 2K grid) to x''. The student's
target is the x_0 whose single DDIM step from x_t lands on x'':

    x0_target = (x'' - (sigma'' / sigma_t) x_t) / (alpha'' - (sigma'' / sigma_t) alpha_t)

(x0_target = x'' on the last step), and the loss is the masked MSE between the student's
x_0 prediction and it, weighted by max(SNR_t, 1) (the paper's truncated-SNR weighting).

Written here because no maintained library distils masked point-cloud diffusion
(``diffusers`` has no point-cloud pipelines and is not installed); it is a few lines on
top of :class:`hepgen.models.blocks.ddpm.Diffusion`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from hepgen.errors import OptionError
from hepgen.models.blocks.ddpm import Diffusion


def ddim_grid(diffusion: Diffusion, steps: int) -> list[int]:
    """The integer times of a ``steps``-step DDIM solve (as ``Diffusion.sample`` uses them)."""
    return torch.linspace(diffusion.T, 0, steps + 1).round().long().tolist()


def _ddim_step(net, diffusion: Diffusion, x, t: int, t_next: int, mask, cond):
    x0, eps = diffusion._x0_eps(net, x, t, mask, cond)
    ab = diffusion.alpha_bar.to(x.device)
    return (ab[t_next].sqrt() * x0 + (1 - ab[t_next]).sqrt() * eps) * mask[..., None].to(x.dtype), x0


def distill_round(teacher, diffusion: Diffusion, x0: torch.Tensor, mask: torch.Tensor, steps: int,
                  iterations: int = 1000, batch_size: int = 64, lr: float = 1e-4, seed: int = 0,
                  progress: bool = False, cond: torch.Tensor | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Distil the ``2 * steps``-step DDIM sampler of ``teacher`` into a ``steps``-step student.

    Args:
        teacher: the v-prediction network (t / T, x_t, mask, cond) -> v; left unchanged.
        diffusion: its schedule.
        x0, mask: training clouds in the network's (scaled) space and their masks.
        steps: the student's DDIM steps (the teacher takes twice as many).
        iterations, batch_size, lr: Adam optimisation of the student.
        seed: seeds the batches, steps and noise.
        cond: the per-cloud condition of a conditioned network (indexed like ``x0``), or None.

    Returns the student (a copy of the teacher, trained) and its loss per iteration.
    """
    if steps < 1 or 2 * steps > diffusion.T:
        raise OptionError(f"distillation: {steps} student steps need 1 <= 2 x steps <= T = {diffusion.T}")
    from tqdm.auto import tqdm

    fine = ddim_grid(diffusion, 2 * steps)
    student = copy.deepcopy(teacher).train()
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    ab = diffusion.alpha_bar
    losses = []
    for _ in tqdm(range(iterations), desc=f"distilling to {steps} steps", disable=not progress):
        idx = torch.randint(0, len(x0), (batch_size,), generator=gen)
        x, m = x0[idx], mask[idx]
        c = cond[idx] if cond is not None else None
        width = max(int(m.sum(1).max()), 1)
        x, m = x[:, :width], m[:, :width]
        mf = m[..., None].to(x.dtype)
        i = int(torch.randint(0, steps, (1,), generator=gen))
        t, t_mid, t_next = fine[2 * i], fine[2 * i + 1], fine[2 * i + 2]
        eps = torch.randn(x.shape, generator=gen) * mf
        xt = (ab[t].sqrt() * x + (1 - ab[t]).sqrt() * eps) * mf
        with torch.no_grad():
            x_mid, _ = _ddim_step(teacher, diffusion, xt, t, t_mid, m, c)
            x_end, _ = _ddim_step(teacher, diffusion, x_mid, t_mid, t_next, m, c)
            if t_next == 0:
                target = x_end
            else:
                ratio = (1 - ab[t_next]).sqrt() / (1 - ab[t]).sqrt()
                target = (x_end - ratio * xt) / (ab[t_next].sqrt() - ratio * ab[t].sqrt())
        pred, _ = diffusion._x0_eps(student, xt, t, m, c)
        weight = float(max(ab[t] / (1 - ab[t]), 1.0))
        loss = weight * (((pred - target) ** 2) * mf).sum() / (mf.sum() * x.shape[-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    return student.eval(), losses


def progressive_distillation(net, diffusion: Diffusion, x0: torch.Tensor, mask: torch.Tensor, start_steps: int = 64,
                             final_steps: int = 8, iterations: int = 1000, batch_size: int = 64, lr: float = 1e-4,
                             seed: int = 0, progress: bool = False,
                             cond: torch.Tensor | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """Halve the DDIM steps of ``net`` from ``start_steps`` down to ``final_steps`` (both
    powers-of-two apart), one :func:`distill_round` per halving.

    Returns the final student and one record per round (student steps, first and last
    mean loss of the round).
    """
    rounds = np.log2(start_steps / final_steps)
    if final_steps < 1 or start_steps <= final_steps or rounds != int(rounds):
        raise OptionError(f"distillation: start steps {start_steps} must be final steps {final_steps} times 2^k, k >= 1")
    teacher, report = net, []
    steps = start_steps
    for r in range(int(rounds)):
        steps //= 2
        teacher, losses = distill_round(teacher, diffusion, x0, mask, steps, iterations, batch_size, lr,
                                        seed=seed + r, progress=progress, cond=cond)
        k = max(1, len(losses) // 10)
        report.append({"steps": steps, "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:]))})
    return teacher, report


__all__ = ["ddim_grid", "distill_round", "progressive_distillation"]
