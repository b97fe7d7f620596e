"""``hepgen study amplification``: GANplification, how many events a generative model is worth
(seed 001 ch. 5, L1574-1705), for the seed's GAN and, beyond the seed, a CFM model.

Toys (true densities known in closed form):

* ``camel`` (eq. 5.1.1, L1578): p(x) = N(4, 1)/2 + N(-4, 1)/2, 100 training points;
* ``ring`` (eq. 5.2.1-2, L1656-1660): r with p(r) = N_{4,1}(r) + N_{-4,1}(r), r >= 0 (the folded
  Gaussian |N(4, 1)|), phi uniform, trained in Cartesian (x, y); 100 points;
* ``sphere`` (eq. 5.3.1, L1686-1693): the same radius times a direction uniform on the 5-D unit
  sphere, trained in Cartesian coordinates; 500 points.

Quantile MSE (eq. 5.1.2-5.1.3, L1591-1601): the true distribution is divided into N_quant
regions of probability 1/N_quant each; for a sample with fractions x_j = n_j / n_total in them,
MSE = (1/N_quant) sum_j (x_j - 1/N_quant)^2. In more than one dimension the regions are the
products of the quantiles of each independent polar / hyperspherical coordinate (r, phi;
r, phi_1..phi_4, L1670 and L1697): q per direction gives q^d regions, the key used in
``metrics.json`` (e.g. "7776" = 6^5). Coordinates are mapped to [0, 1] by their true CDFs
(phi_k of the 5-sphere has density ~ sin^(4-k), a symmetric Beta in (1 - cos phi_k)/2).

Amplification factor (L1642): the GAN's quantile MSE, read at its plateau (the largest number
of generated events), is equated to the MSE a sample of n true events has; that n divided by
the training size is the factor ("equivalent to ~150 points ... factors 1.5, 2.8 and 6").
Instead of the seed's reference lines for 200, 300, 500, 1000 true points we use their exact
expectation, E[MSE_n] = (1 - 1/N_quant) / (N_quant n) for a multinomial sample, so

    amplification = (1 - 1/N_quant) / (N_quant * mean MSE_model) / n_train,

the mean over independent training sets (the seed: 100 sets, each with one fit and one GAN,
L1626). The training samples' own factor (≈ 1) is reported as the check of that expectation.
The parametric fit (eq. 5.1.4, L1607-1612, maximum likelihood of the 5-parameter two-Gaussian
mixture; for ring and sphere a folded Gaussian in r with the true angles) enters by the exact
fractions of the fitted density, the seed's flat line.

The GAN follows L1614-1624: a generator of 7 dense layers of 256 (ELU, dropout 0.5 kept on when
sampling) fed with 1000 uniform numbers in [-1, 1]; a discriminator with minibatch
discrimination (per-point embedding of x - B, 256-256-m, aggregated by the standard
deviation over the batch) followed by 7 dense layers of 256 with dropout 0.5 and LeakyReLU
(0.01), sigmoid output; a gradient penalty; the training data smeared by U[-0.1, 0.1]; Adam
(5e-5, betas 0.5, 0.9), 10,000 epochs at batch 10 with the rate times 0.9 every 1000 epochs.
The GANs of all training sets train together as one ensemble (``ensemble`` members per
vectorised training, :mod:`hepgen.models.blocks.ensemble`): each member is the seed's GAN on
its own set, with its own shuffling and noise; at batch 10 one network per pass is nearly all
per-operation overhead, so the seed's 100 x 10,000 epochs become one training of 100 members
(and a GPU's work of minutes). The CFM model (:func:`hepgen.studies.toys.train_flow_matching`)
gets the same number of batches, one training set after the other. ``--quick`` and the run options shrink the repetitions and epochs (and raise the
learning rates to match).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import betainc
from scipy.stats import norm
from torch import nn

from hepgen.models.blocks.ensemble import EnsembleLinear, ensemble_gradient_penalty, ensemble_mlp
from hepgen.studies.toys import adam, sample_flow_matching, train_flow_matching

TOYS = {"camel": dict(dim=1, n_train=100, quantiles=(10, 20, 50)),
        "ring": dict(dim=2, n_train=100, quantiles=(3, 5, 10)),
        "sphere": dict(dim=5, n_train=500, quantiles=(3, 4, 5, 6))}
FULL = dict(runs=100, epochs=10_000, batch=10, lr=5e-5, cfm_lr=1e-3, gen_sizes=(100, 300, 1000, 3000, 10_000,
                                                                               30_000, 100_000), ensemble=100)
QUICK = dict(runs=2, epochs=300, batch=10, lr=1e-3, cfm_lr=2e-3, gen_sizes=(100, 1000, 10_000, 30_000), ensemble=2)
MODELS = ("gan", "cfm")


def sample_truth(toy: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` true points of ``toy`` in Cartesian coordinates (n, dim)."""
    if toy == "camel":
        return (rng.normal(0, 1, n) + np.where(rng.random(n) < 0.5, 4.0, -4.0))[:, None]
    dim = TOYS[toy]["dim"]
    r = np.abs(rng.normal(4.0, 1.0, n))
    u = rng.standard_normal((n, dim))
    return r[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)


def _folded_cdf(r, mu=4.0, sigma=1.0):
    r = np.maximum(r, 0)
    return norm.cdf((r - mu) / sigma) - norm.cdf((-mu) / sigma) + norm.cdf((r + mu) / sigma) - norm.cdf(mu / sigma)


def uniform_coordinates(toy: str, x: np.ndarray) -> np.ndarray:
    """The true CDF of each independent coordinate (camel: x; ring: r, phi; sphere: r, phi_1..4)."""
    x = np.asarray(x, np.float64)
    if toy == "camel":
        return (0.5 * norm.cdf(x[:, 0] - 4) + 0.5 * norm.cdf(x[:, 0] + 4))[:, None]
    r = np.linalg.norm(x, axis=1)
    cols = [_folded_cdf(r)]
    d = x.shape[1]
    for k in range(d - 2):  # phi_k in [0, pi] with density ~ sin^(d-2-k)
        rest = np.linalg.norm(x[:, k:], axis=1)
        c = np.clip(x[:, k] / np.maximum(rest, 1e-300), -1, 1)
        a = (d - 1 - k) / 2
        cols.append(betainc(a, a, (1 - c) / 2))
    cols.append(np.mod(np.arctan2(x[:, -1], x[:, -2]), 2 * np.pi) / (2 * np.pi))
    return np.stack(cols, 1)


def quantile_mse(u: np.ndarray, q: int, dims=None) -> float:
    """Quantile MSE (eq. 5.1.3) of points with true-CDF coordinates ``u`` in q^len(dims) regions."""
    dims = list(range(u.shape[1])) if dims is None else list(dims)
    idx = np.zeros(len(u), np.int64)
    for k in dims:
        idx = idx * q + np.clip((u[:, k] * q).astype(np.int64), 0, q - 1)
    total = q ** len(dims)
    frac = np.bincount(idx, minlength=total) / max(len(u), 1)
    return float(((frac - 1.0 / total) ** 2).mean())


def equivalent_points(mse: float, regions: int) -> float:
    """n with E[MSE_n] = ``mse`` for n true points: (1 - 1/N) / (N mse)."""
    return (1 - 1 / regions) / (regions * max(mse, 1e-300))


def fit_mse(toy: str, train: np.ndarray, q: int, dims=None) -> float:
    """Quantile MSE of the parametric fit's exact fractions (eq. 5.1.4; r-only fit beyond 1-D)."""
    from scipy.optimize import minimize

    x = np.asarray(train, np.float64)
    dim = x.shape[1]
    dims = list(range(dim)) if dims is None else list(dims)
    edges_u = np.linspace(0, 1, q + 1)
    if toy == "camel":
        def nll(p):
            a = 1 / (1 + np.exp(-p[0]))
            pdf = a * norm.pdf(x[:, 0], p[1], np.exp(p[2])) + (1 - a) * norm.pdf(x[:, 0], p[3], np.exp(p[4]))
            return -np.log(np.maximum(pdf, 1e-300)).sum()

        p = minimize(nll, [0.0, 4.0, 0.0, -4.0, 0.0], method="Nelder-Mead", options={"maxiter": 5000}).x
        a = 1 / (1 + np.exp(-p[0]))
        # quantile edges of the truth in x, then the fitted probability between them
        from scipy.optimize import brentq

        true_cdf = lambda v: 0.5 * norm.cdf(v - 4) + 0.5 * norm.cdf(v + 4)
        xe = [-np.inf] + [brentq(lambda v: true_cdf(v) - t, -20, 20) for t in edges_u[1:-1]] + [np.inf]
        cdf = a * norm.cdf(xe, p[1], np.exp(p[2])) + (1 - a) * norm.cdf(xe, p[3], np.exp(p[4]))
        return float(((np.diff(cdf) - 1 / q) ** 2).mean())
    r = np.linalg.norm(x, axis=1)

    def nll(p):
        s = np.exp(p[1])
        return -np.log(np.maximum(norm.pdf(r, p[0], s) + norm.pdf(r, -p[0], s), 1e-300)).sum()

    p = minimize(nll, [4.0, 0.0], method="Nelder-Mead").x
    from scipy.optimize import brentq

    re = [0.0] + [brentq(lambda v: _folded_cdf(v) - t, 0, 30) for t in edges_u[1:-1]] + [np.inf]
    f_r = np.diff(_folded_cdf(np.array(re), p[0], np.exp(p[1])))
    frac = np.ones(1)
    for k in dims:  # independent directions: the product of the marginal fractions
        frac = np.outer(frac, f_r if k == 0 else np.full(q, 1 / q)).ravel()
    return float(((frac - 1 / len(frac)) ** 2).mean())


class MinibatchDiscriminator(nn.Module):
    """Discriminators with minibatch discrimination (seed 001 L1618-1620, Fig. 5.3), one per
    ensemble member: x (R, n, d) -> logits (R, n, 1); the sigmoid is in the loss."""

    def __init__(self, members: int, dim: int, m: int = 16, hidden: int = 256):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.01)
        self.phi = nn.Sequential(EnsembleLinear(members, dim, 256), act(), EnsembleLinear(members, 256, 256), act(),
                                 EnsembleLinear(members, 256, m))
        self.net = ensemble_mlp(members, dim + m, 1, hidden, 6, act=lambda: nn.LeakyReLU(0.01), dropout=0.5)

    def forward(self, x):
        R, n, d = x.shape
        diff = (x[:, :, None, :] - x[:, None, :, :]).reshape(R, n * n, d)  # x - B for every x of the batch
        feat = self.phi(diff).view(R, n, n, -1).std(2)  # permutation-invariant aggregation over the batch
        return self.net(torch.cat([x, feat], -1))


def train_gan(train: np.ndarray, epochs: int, batch: int = 10, lr: float = 5e-5, seed: int = 0, noise: int = 1000,
              progress: bool = False):
    """The seed's amplification GAN (module docstring) on each of the R training sets ``train``
    (R, n, d) at once, as an ensemble (:mod:`hepgen.models.blocks.ensemble`): every member has
    its own generator, discriminator, shuffling and noise, and learns from its own set only.
    Returns ``sample(n, seed) -> (R, n, d)``.

    Args:
        train: the training sets (R, n, d) (one set (n, d) is an ensemble of one); epochs,
            batch: passes over each shuffled set and batch size; lr: Adam's rate (times 0.9
            every tenth of the epochs); seed: torch seed; noise: the generator's uniform
            input size; progress: a bar over the epochs.
    """
    torch.manual_seed(seed)
    x = torch.as_tensor(np.asarray(train, np.float32))
    x = x[None] if x.dim() == 2 else x
    R, n, d = x.shape
    scale = (x.abs().amax((1, 2), keepdim=True) / 2).clamp(min=1e-12)  # per member, as one run alone
    x = x / scale
    gen = ensemble_mlp(R, noise, d, 256, 6, act=nn.ELU, dropout=0.5)
    disc = MinibatchDiscriminator(R, d)
    opt_g = adam(gen.parameters(), lr, betas=(0.5, 0.9))
    opt_d = adam(disc.parameters(), lr, betas=(0.5, 0.9))
    step = max(epochs // 10, 1)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step, 0.9) for o in (opt_g, opt_d)]
    sp = nn.functional.softplus
    smear = 0.1 / scale
    epochs_it = range(epochs)
    if progress:
        from tqdm import tqdm

        epochs_it = tqdm(epochs_it, desc=f"GAN x {R}", unit="epoch", leave=False)
    for _ in epochs_it:
        order = torch.rand(R, n).argsort(1)  # each member shuffles its own set
        for lo in range(0, n, batch):
            idx = order[:, lo : lo + batch]
            b = idx.shape[1]
            if b < 2:
                continue
            real = x.gather(1, idx[..., None].expand(-1, -1, d)) + (torch.rand(R, b, d) * 2 - 1) * smear
            fake = gen(torch.rand(R, b, noise) * 2 - 1)
            # each member's loss is a mean over its batch; the sum keeps the members apart
            loss_d = (sp(-disc(real)).mean((1, 2)) + sp(disc(fake.detach())).mean((1, 2))).sum()
            loss_d = loss_d + ensemble_gradient_penalty(disc, real, fake.detach(), weight=1.0)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = sp(-disc(gen(torch.rand(R, b, noise) * 2 - 1))).mean((1, 2)).sum()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        for s in scheds:
            s.step()

    def sample(num, s=0):
        g = torch.Generator().manual_seed(s)
        gen.train()  # dropout stays on when sampling (L1616)
        chunk = max(1, 200_000 // R)
        out = []
        with torch.no_grad():
            for lo in range(0, num, chunk):
                m = min(chunk, num - lo)
                out.append(gen(torch.rand(R, m, noise, generator=g) * 2 - 1) * scale)
        return torch.cat(out, 1).numpy()

    return sample


def train_cfm(train: np.ndarray, epochs: int, batch: int = 10, lr: float = 1e-3, seed: int = 0):
    """A CFM model (3 x 128 SiLU velocity net) on the same batches as the GAN; returns ``sample(n, seed)``."""
    x = np.asarray(train, np.float32)
    scale = float(x.std()) or 1.0
    iterations = epochs * int(np.ceil(len(x) / batch))
    net = train_flow_matching(x / scale, iterations, batch, hidden=128, layers=3, lr=lr, seed=seed)
    return lambda n, s=0: sample_flow_matching(net, n, x.shape[1], steps=50, seed=s) * scale


def _directions(toy: str) -> list[str]:
    return {"camel": ["x"], "ring": ["r", "phi"], "sphere": ["r", "phi1", "phi2", "phi3", "phi4"]}[toy]


def run(out: str | Path, quick: bool = False, seed: int = 0, toys=None, progress: bool = True, echo=print,
        models=MODELS, **overrides) -> dict:
    """For every toy and training set: fit, GAN, CFM; quantile MSEs; amplification factors; report.

    Args:
        out: output folder; quick: :data:`QUICK` instead of the seed's :data:`FULL`; seed: data and
            training seed; toys: toy names (default all of :data:`TOYS`); progress: a bar over the
            runs; echo: where to print; models: a subset of :data:`MODELS`;
            overrides: configuration entries (``runs``, ``epochs``, ...).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**(QUICK if quick else FULL), **{k: v for k, v in overrides.items() if v is not None}}
    toys = list(toys or TOYS)
    chosen = tuple(models)
    t0 = time.perf_counter()
    metrics: dict = {}
    curves: dict = {}
    for toy in toys:
        spec = TOYS[toy]
        n_train, dim = spec["n_train"], spec["dim"]
        keys = [(q, str(q ** dim)) for q in spec["quantiles"]]
        q_dir = 10
        ref = uniform_coordinates(toy, sample_truth(toy, 200_000, np.random.default_rng(seed + 99)))
        mse = {m: {k: {M: [] for M in cfg["gen_sizes"]} for _, k in keys} for m in chosen}
        mse_dir = {m: {dname: [] for dname in _directions(toy)} for m in (*chosen, "train", "fit")}
        mse_train = {k: [] for _, k in keys}
        mse_fit = {k: [] for _, k in keys}
        t_toy = time.perf_counter()
        it = range(cfg["runs"])
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=toy, leave=False)
        trains = []
        for run_i in range(cfg["runs"]):
            rng = np.random.default_rng(seed * 1000 + run_i + 17 * len(toy))
            train = sample_truth(toy, n_train, rng)
            trains.append(train)
            u_train = uniform_coordinates(toy, train)
            for q, k in keys:
                mse_train[k].append(quantile_mse(u_train, q))
                mse_fit[k].append(fit_mse(toy, train, q))
            for j, dname in enumerate(_directions(toy)):
                mse_dir["train"][dname].append(quantile_mse(u_train, q_dir, [j]))
                mse_dir["fit"][dname].append(fit_mse(toy, train, q_dir, [j]) if j == 0 or toy == "camel"
                                             else 0.0)

        def score(m, big):
            big = big[np.isfinite(big).all(1)]
            u_big = uniform_coordinates(toy, big)
            for M in cfg["gen_sizes"]:
                for q, k in keys:
                    mse[m][k][M].append(quantile_mse(u_big[:M], q))
            for j, dname in enumerate(_directions(toy)):
                mse_dir[m][dname].append(quantile_mse(u_big, q_dir, [j]))

        if "gan" in chosen:  # the training sets in ensembles of cfg["ensemble"] (one vectorised training each)
            size = max(1, int(cfg.get("ensemble") or cfg["runs"]))
            for lo in range(0, cfg["runs"], size):
                sample = train_gan(np.stack(trains[lo : lo + size]), cfg["epochs"], cfg["batch"], cfg["lr"],
                                   seed=seed + lo, progress=progress)
                for big in sample(max(cfg["gen_sizes"]), seed + 7 + lo):
                    score("gan", big)
        if "cfm" in chosen:
            for run_i in it:
                sample = train_cfm(trains[run_i], cfg["epochs"], cfg["batch"], cfg["cfm_lr"], seed=seed + run_i)
                score("cfm", sample(max(cfg["gen_sizes"]), seed + 7 + run_i))
        M_max = max(cfg["gen_sizes"])
        res: dict = {"n_train": n_train, "runs": cfg["runs"], "seconds": round(time.perf_counter() - t_toy, 1)}

        def factor(values, regions, n=n_train):
            v = np.asarray(values)
            mean, err = v.mean(), (v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
            a = equivalent_points(mean, regions) / n
            return {"value": float(a), "error": float(a * err / mean) if mean > 0 else 0.0}

        for m in chosen:
            res[m] = {"amplification": {k: factor(mse[m][k][M_max], int(k)) for _, k in keys},
                      "amplification_by_direction": {d_: {str(q_dir): factor(v, q_dir)} for d_, v in mse_dir[m].items()},
                      "mse": {k: {str(M): float(np.mean(v)) for M, v in mse[m][k].items()} for _, k in keys}}
        res["train"] = {"amplification": {k: factor(mse_train[k], int(k)) for _, k in keys},
                        "mse": {k: float(np.mean(mse_train[k])) for _, k in keys}}
        res["fit"] = {"amplification": {k: factor(mse_fit[k], int(k)) for _, k in keys},
                      "mse": {k: float(np.mean(mse_fit[k])) for _, k in keys}}
        res["truth_check"] = {k: float(equivalent_points(quantile_mse(ref, q), int(k)) / len(ref)) for q, k in keys}
        metrics[toy] = res
        curves[toy] = (keys, mse, mse_train, mse_fit)
        echo(f"{toy}: " + "; ".join(
            f"{k} regions: " + "".join(f"{m} {res[m]['amplification'][k]['value']:.2f}, " for m in chosen) +
            f"fit {res['fit']['amplification'][k]['value']:.2f}" for _, k in keys) + f" ({res['seconds']:.0f} s)")
    metrics["config"] = {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "quick": quick,
                         "seed": seed, "toys": toys}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    metrics["seed_result"] = ("seed 001 ch. 5 (GAN): camel 1.5 / 2.8 / 6 at 10 / 20 / 50 quantiles (fit better); ring "
                              "r ~4, phi ~1.5, combined ~3.5; sphere per direction 1.3-2.3, combined >3 at 3^5, ~8 at "
                              "4^5, ~30 at 6^5 quantiles")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plots(out, curves, cfg)
    _report(out, metrics, toys)
    return metrics


def _plots(out: Path, curves: dict, cfg: dict) -> None:  # noqa: C901
    from hepgen.report.plots import _setup, panel_grid

    _setup()
    import matplotlib.pyplot as plt

    for toy, (keys, mse, mse_train, mse_fit) in curves.items():
        fig, axes = panel_grid(1, len(keys), figsize=(6 * len(keys), 5), squeeze=False)
        sizes = np.array(cfg["gen_sizes"])
        for ax, (q, k) in zip(axes[0], keys):
            for m, c in (("gan", "C1"), ("cfm", "C3")):
                if m not in mse:
                    continue
                v = np.array([mse[m][k][M] for M in sizes])
                mu, sd = np.sqrt(v.mean(1)), v.std(1) / (2 * np.sqrt(v.mean(1)) + 1e-30)
                ax.plot(sizes, mu, color=c, label=m.upper())
                ax.fill_between(sizes, mu - sd, mu + sd, color=c, alpha=0.3)
            ax.axhline(np.sqrt(np.mean(mse_train[k])), color="C0", label="training data")
            ax.axhline(np.sqrt(np.mean(mse_fit[k])), color="C2", label="fit")
            n_train = TOYS[toy]["n_train"]
            for f in (2, 3, 5, 10):
                e = equivalent_points(1.0, int(k))  # sqrt(E[MSE]) of f x n_train true points
                ax.axhline(np.sqrt(e / (f * n_train)), color="C0", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("generated events")
            ax.set_ylabel("√(quantile MSE)")
            ax.set_title(f"{toy}: {k} quantiles", fontsize="small")
            ax.legend(fontsize="x-small")
        fig.tight_layout()
        fig.savefig(out / f"amplification_{toy}.png", dpi=60)
        plt.close(fig)


def _report(out: Path, metrics: dict, toys: list[str]) -> None:
    from hepgen.report.html import render_report

    rows = []
    for toy in toys:
        for k in metrics[toy]["train"]["amplification"]:
            cell = lambda m: ("{value:.2f} ± {error:.2f}".format(**metrics[toy][m]["amplification"][k])
                              if m in metrics[toy] else "-")
            rows.append({"name": f"{toy}, {k} quantiles", "cells": [cell("gan"), cell("cfm"), cell("fit"), cell("train")]})
    cfg = metrics["config"]
    render_report(out / "report.html", title="GANplification: amplification factors (seed 001 ch. 5)",
                  real="true densities (camel, ring, sphere)", gen="GAN (seed 001) and CFM",
                  n_real=", ".join(str(TOYS[t]["n_train"]) for t in toys), n_gen=max(cfg["gen_sizes"]),
                  floor_file=None, n_floor=0,
                  columns=[{"label": "GAN"}, {"label": "CFM"}, {"label": "fit"}, {"label": "training data"}],
                  rows=rows, metric_note=(f"Amplification = points of truth with the same expected quantile MSE "
                                          f"/ training size, {cfg['runs']} training sets, {cfg['epochs']} epochs. "
                                          f"Seed: {metrics['seed_result']}."),
                  details=[], figures=[{"file": f"amplification_{t}.png", "caption": f"{t}: quantile MSE vs generated "
                                        "events (dotted: 2, 3, 5, 10 x the training size of truth)"} for t in toys])
