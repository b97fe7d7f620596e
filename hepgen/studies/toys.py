"""Small building blocks shared by the toy studies (two moons, amplification).

* :func:`mlp` — the one fully connected backbone every toy model embeds (seed 000 L1311:
  "all models rely on the same NN architecture ... the only potential difference lies in
  the output layer");
* :class:`TimeMLP` — the backbone with the time as an extra input, the velocity / noise
  network of CFM, OT-CFM and DDPM;
* :func:`train_flow_matching` / :func:`sample_flow_matching` — (OT-)CFM on flat vectors through
  the project's :class:`hepgen.models.blocks.cfm.FlowMatching` (``torchcfm`` paths) and
  :func:`hepgen.models.blocks.cfm.integrate` (``torchdiffeq``), a cloud of one point;
* :func:`classifier_auc` — the binary classifier test (seed 000 sec. 4.8.2, L1955): an MLP
  separates two samples, its ROC AUC on held-out points (0.5 = indistinguishable);
* :func:`wasserstein1` — exact W1 between two point sets with POT (``ot.emd2``);
* :func:`adam` — the optimiser of every toy training (:func:`hepgen.training.optim.adam`,
  the fused ``torch.optim.Adam``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hepgen.training.optim import adam


def mlp(inputs: int, outputs: int, hidden: int = 64, layers: int = 3, act: type[nn.Module] = nn.LeakyReLU,
        dropout: float = 0.0, out_act: nn.Module | None = None) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` units with ``act`` (and ``dropout``) between them.

    Args:
        inputs, outputs: input and output features.
        hidden, layers: width and number of hidden layers.
        act: activation class; dropout: dropout after every hidden activation (0: none).
        out_act: an optional output activation module (e.g. ``nn.Sigmoid()``).
    """
    mods: list[nn.Module] = []
    n = inputs
    for _ in range(layers):
        mods += [nn.Linear(n, hidden), act()]
        if dropout:
            mods.append(nn.Dropout(dropout))
        n = hidden
    mods.append(nn.Linear(n, outputs))
    if out_act is not None:
        mods.append(out_act)
    return nn.Sequential(*mods)


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class TimeMLP(nn.Module):
    """The backbone with t in [0, 1] as one more input: v(t, x) or eps(t, x).

    The call follows the project's cloud blocks, ``net(t, x, mask, cond)`` with x (B, 1, F),
    so that :class:`FlowMatching`, :func:`integrate` and :class:`Diffusion` drive it unchanged.
    """

    def __init__(self, features: int, hidden: int = 64, layers: int = 3, act: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.net = mlp(features + 1, features, hidden, layers, act)

    def forward(self, t, x, mask=None, cond=None):
        flat = x.reshape(len(x), -1)
        t = torch.as_tensor(t, dtype=flat.dtype).reshape(-1)
        t = t.expand(len(flat)) if t.numel() == 1 else t
        return self.net(torch.cat([flat, t[:, None]], 1)).reshape(x.shape)


def train_flow_matching(data: np.ndarray, iterations: int, batch: int = 256, ot: bool = False, hidden: int = 64,
                        layers: int = 3, lr: float = 1e-3, seed: int = 0, net: nn.Module | None = None,
                        callback=None, checkpoint=None) -> nn.Module:
    """Train a velocity network on ``data`` (N, F) by CFM (``ot``: exact mini-batch OT pairing).

    Args:
        data: training points; iterations, batch: optimiser steps and batch size (batches drawn
            with replacement); ot: OT-CFM instead of CFM; hidden, layers: the :class:`TimeMLP`;
        lr: Adam's learning rate, cosine-annealed to zero; seed: torch seed; net: a network to
            train instead of a fresh :class:`TimeMLP`; callback: called with the step number;
        checkpoint: a :class:`hepgen.training.resume.LoopCheckpoint` that saves the training
            state and continues a killed run exactly (cleared at the end).
    """
    from hepgen.training.resume import LoopCheckpoint

    from hepgen.models.blocks.cfm import FlowMatching

    torch.manual_seed(seed)
    x = torch.as_tensor(data, dtype=torch.float32)
    net = net or TimeMLP(x.shape[1], hidden, layers)
    fm = FlowMatching(ot=ot)
    opt = adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(iterations, 1))
    mask = torch.ones(min(batch, len(x)), 1)
    ck = checkpoint or LoopCheckpoint(None)
    for step in range(ck.restore(net=net, opt=opt, sched=sched), iterations):
        ck.before(step)
        idx = torch.randint(0, len(x), (min(batch, len(x)),))
        loss = fm.loss(net, x[idx][:, None, :], mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if callback:
            callback(step)
    ck.clear()
    return net


@torch.no_grad()
def sample_flow_matching(net: nn.Module, n: int, features: int, steps: int = 100, seed: int = 0,
                         chunk: int = 50_000) -> np.ndarray:
    """``n`` samples: noise integrated from t = 0 to 1 with ``steps`` midpoint steps (seed 000 L1920: 100)."""
    from hepgen.models.blocks.cfm import integrate

    g = torch.Generator().manual_seed(seed)
    out = []
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        x0 = torch.randn(m, 1, features, generator=g)
        out.append(integrate(net, x0, torch.ones(m, 1), method="midpoint", steps=steps)[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0, features), np.float32)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties get mid ranks)."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def classifier_auc(a: np.ndarray, b: np.ndarray, iterations: int = 2000, batch: int = 512, hidden: int = 64,
                   layers: int = 3, lr: float = 2e-3, seed: int = 0, test_fraction: float = 0.3) -> float:
    """Binary classifier test: AUC of an MLP trained to tell ``a`` (label 1) from ``b`` (label 0).

    The samples are standardised together, split into train and test parts, the network
    trained by BCE, and the AUC taken on the test part. Reported symmetrically as
    max(AUC, 1 - AUC) so that 0.5 means indistinguishable.

    Args:
        a, b: the two samples (N, F); iterations, batch, lr: Adam training; hidden, layers: the
            MLP; seed: split and network seed; test_fraction: the held-out share of each sample.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x = np.concatenate([a, b]).astype(np.float32)
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))]).astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    perm = rng.permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    xt, yt = torch.as_tensor(x[train]), torch.as_tensor(y[train])
    net = mlp(x.shape[1], 1, hidden, layers)
    opt = adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    lossf = nn.BCEWithLogitsLoss()
    for _ in range(iterations):
        idx = torch.randint(0, len(xt), (batch,))
        loss = lossf(net(xt[idx])[:, 0], yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        s = net(torch.as_tensor(x[test]))[:, 0].numpy()
    auc = _auc(y[test], s)
    return max(auc, 1.0 - auc)


def wasserstein1(a: np.ndarray, b: np.ndarray, n: int = 3000, seed: int = 0) -> float:
    """Exact W1 (Euclidean ground cost) between ``n`` points of each sample, by POT's network simplex."""
    import ot

    rng = np.random.default_rng(seed)
    a = np.asarray(a, np.float64)[rng.choice(len(a), min(n, len(a)), replace=False)]
    b = np.asarray(b, np.float64)[rng.choice(len(b), min(n, len(b)), replace=False)]
    m = ot.dist(a, b, metric="euclidean")
    return float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), m, numItermax=10_000_000))
