"""Few-step students of trained flow-matching models (jets, events): bespoke solvers.

A CFM model samples by solving an ODE; a good solve needs 16-32 network evaluations
(NFE). A *bespoke solver* (Shaul et al., arXiv:2403.01329; :mod:`hepgen.models.blocks.bespoke`)
is a student with a handful of parameters -- its time points and the weights with which
each step combines the velocities seen so far -- trained on the frozen network to land
where a many-step reference solve from the same noise lands. It costs minutes on a CPU
(no network is retrained) and samples with ``steps`` NFE.

``fit_jet_solvers`` / ``fit_event_solvers`` write ``solvers.pt`` into the run folder;
``hepgen sample RUN --solver bespoke --steps K`` then uses it, and ``set_default`` makes it
the run's sampler. (Calorimeter runs fit theirs at the end of training,
:func:`hepgen.training.calo.fit_bespoke_solvers`; ddpm-hits distils,
:mod:`hepgen.training.distill`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from hepgen.config import to_plain
from hepgen.errors import OptionError
from hepgen.models.blocks.bespoke import train_bespoke
from hepgen.models.blocks.cfm import integrate


def _noise(surrogate, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and masks as the sampler draws them: multiplicities from the KDE, sorted so
    batches of neighbours share one width."""
    rng = np.random.default_rng(seed)
    n = np.sort(surrogate.multiplicity.sample(num, rng))
    P = surrogate.num_particles
    mask = torch.arange(P)[None, :] < torch.as_tensor(n)[:, None]
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num, P, 3, generator=gen) * mask[..., None], mask


def fit_jet_solvers(run: str | Path, steps=(2, 4), pairs: int = 2048, reference: dict | None = None,
                    iterations: int = 400, batch_size: int = 128, seed: int = 0, set_default: int | None = None,
                    progress: bool = True) -> dict[int, dict]:
    """Train one bespoke solver per entry of ``steps`` for the CFM run folder ``run``.

    Args:
        run: a run folder (or shipped folder) of a flow-matching jet model.
        steps: solver steps (= NFE) of each student.
        pairs: noise / reference end-point pairs to train on.
        reference: the teacher's solve, default midpoint with 32 steps.
        iterations, batch_size: optimisation of each solver (Adam).
        set_default: make the student with this many steps the run's sampler.

    Returns {steps: {"mse": final training MSE, "reference": reference}} and writes
    ``solvers.pt`` (and the sampler into ``config.yaml`` with ``set_default``).
    """
    from hepgen.models.assemblies.jets import JetSurrogate

    run = Path(run)
    surrogate = JetSurrogate.load(run)
    if surrogate.family != "cfm":
        raise OptionError(f"{run}: bespoke solvers need a flow-matching model, not {surrogate.cfg['model']}")
    reference = dict(reference or {"method": "midpoint", "steps": 32})
    net = surrogate.network.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x0, mask = _noise(surrogate, pairs, seed)
    with torch.no_grad():
        target = torch.cat([integrate(net, x0[i:i + 512], mask[i:i + 512], **reference)
                            for i in range(0, pairs, 512)])

    def velocity(t, x, m):
        return net(t, x, m) * m[..., None]

    solvers, report = {}, {}
    for k in steps:
        solver = train_bespoke(velocity, x0, target, mask, steps=int(k), iterations=iterations,
                               batch_size=min(batch_size, pairs), seed=seed, progress=progress)
        with torch.no_grad():
            mse = float(((solver(velocity, x0[:512], mask[:512]) - target[:512]) ** 2).mean())
        solvers[int(k)] = solver.state_dict()
        report[int(k)] = {"mse": mse, "reference": reference}
    existing = torch.load(run / "solvers.pt", weights_only=True) if (run / "solvers.pt").exists() else {}
    torch.save({**existing, **solvers}, run / "solvers.pt")
    if set_default is not None:
        if int(set_default) not in {**existing, **solvers}:
            raise OptionError(f"no bespoke solver with {set_default} steps to make the default")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["sampler"] = {"method": "bespoke", "steps": int(set_default)}
        (run / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return report


def _set_default_solver(run: Path, steps: int, available) -> None:
    if int(steps) not in available:
        raise OptionError(f"no bespoke solver with {steps} steps to make the default")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["sampler"] = {**cfg.get("sampler", {}), "method": "bespoke", "steps": int(steps)}
    (run / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))


def fit_event_solvers(run: str | Path, steps=(1, 2), pairs: int = 4096, reference: dict | None = None,
                      iterations: int = 400, batch_size: int = 256, seed: int = 0, set_default: int | None = None,
                      progress: bool = True) -> dict[int, dict]:
    """Bespoke solvers for the ``event-cflow`` run ``run`` (issue 16: the default sampler
    with one or two network evaluations instead of 16).

    The pairs are what the sampler meets: count vectors from the run's alias sampler,
    noise on the MET + object tokens (padded to the largest event, masked), and the
    teacher's end points (``reference``, default midpoint with 32 steps) from the same
    noise. Arguments as :func:`fit_jet_solvers`; returns {steps: {"mse", "reference"}}.
    """
    from hepgen.models.assemblies.events import EventSurrogate

    run = Path(run)
    surrogate = EventSurrogate.load(run, device="cpu")
    if surrogate.cfg["model"] != "event-cflow":
        raise OptionError(f"{run}: bespoke solvers need a flow-matching model, not {surrogate.cfg['model']}")
    reference = dict(reference or {"method": "midpoint", "steps": 32})
    net = surrogate.networks["velocity"].eval()
    for p in net.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(seed)
    # count vectors (and for a multi-process model each pair's process) as the sampler draws them
    counts, c = surrogate.draw_conditions(pairs, rng)
    total = counts.sum(1)
    width = int(total.max()) + 1
    mask = torch.zeros(pairs, width, dtype=torch.bool)
    mask[:, 0] = True
    mask[:, 1:] = torch.arange(width - 1)[None, :] < torch.as_tensor(total)[:, None]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(pairs, width, 4, generator=gen) * mask[..., None]
    with torch.no_grad():
        target = torch.cat([surrogate.solve(x0[i:i + 512], mask[i:i + 512], c[i:i + 512], **reference)
                            for i in range(0, pairs, 512)])
    solvers, report = {}, {}
    for k in steps:
        solver = train_bespoke(surrogate.velocity, x0, target, (mask, c), steps=int(k), iterations=iterations,
                               batch_size=min(batch_size, pairs), seed=seed, progress=progress)
        with torch.no_grad():
            end = solver(surrogate.velocity, x0[:512], (mask[:512], c[:512]))
            mse = float(((end - target[:512]) ** 2).sum() / (mask[:512].sum() * 4))
        solvers[int(k)] = solver
        report[int(k)] = {"mse": mse, "reference": reference}
    surrogate.solvers = {**surrogate.solvers, **solvers}
    surrogate.save(run)
    if set_default is not None:
        _set_default_solver(run, set_default, surrogate.solvers)
    return report
