"""``hepgen study bump-hunt``: the OnlineFlow bump hunt of seed 001 sec. 9.2.

A falling exponential (b = 1) with a Gaussian bump (mu = 1, sigma = 0.04) in a fraction
lambda = 0.005 of 5M points. Three analyses of the same stream, each a background fit
p(x) = alpha exp(-beta x + gamma x^2 + ... + zeta x^5) to a histogram on [0, 5] in bins of
0.1 followed by a BumpHunter scan for the largest excess over 2-6 bins (``pyBumpHunter``):

* (a) the full data: significance (O - B) / sqrt(B) in the window found;
* (b) prescaled data, 1/f of the points for each prescale f: the same;
* (c) an ensemble of OnlineFlows (:mod:`hepgen.training.online`) trained once over the
  stream: the first half of the ensemble's samples locates the window, the second half
  gives per flow O_i and B_i (each flow's samples normalised to the stream size and
  fitted on its own); with O, B their means and delta_O, delta_B the standard deviations
  of the means, S = O - B, delta_S = sqrt(delta_O^2 + delta_B^2) and the significance is
  S / sqrt(delta_S^2 + B) (the seed's eq. 9.2.5-9.2.8).

The seed finds the flow better than prescaled data for prescales above ~4.
``--quick`` shrinks the stream, the iterations and the ensemble to run in a few minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

EDGES = np.round(np.arange(0.0, 5.0 + 1e-9, 0.1), 10)

FULL = dict(points=5_000_000, buffer=10_000, batch=250, iterations=100, members=20, lr=1e-5, samples=10_000_000,
            prescales=[1, 2, 3, 4, 5, 7, 10, 20, 50, 100])
QUICK = dict(points=400_000, buffer=10_000, batch=250, iterations=4, members=4, lr=2e-3, samples=800_000,
             prescales=[1, 2, 4, 8, 16])


def make_stream(n: int, rng: np.random.Generator, b: float = 1.0, mu: float = 1.0, sigma: float = 0.04,
                lam: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Points and their truth labels (1 = signal); each point is signal with probability lambda."""
    signal = rng.random(n) < lam
    x = np.where(signal, rng.normal(mu, sigma, n), rng.exponential(1.0 / b, n))
    return x, signal


def fit_background(counts: np.ndarray, edges: np.ndarray = EDGES) -> np.ndarray:
    """Expected counts per bin of alpha exp(-beta x + ... + zeta x^5) fitted by Poisson likelihood."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    u = centres / edges[-1]
    total = max(counts.sum(), 1.0)

    def expected(p):  # the polynomial in u = x / x_max keeps the parameters of similar size
        return np.exp(p[0] + sum(p[k] * u ** k for k in range(1, 6)))

    def nll(p):
        mu = expected(p)
        return float((mu - counts * np.log(np.maximum(mu, 1e-300))).sum())

    p0 = np.zeros(6)
    p0[0] = np.log(max(counts[0], 1.0))
    p0[1] = -edges[-1]
    res = minimize(nll, p0, method="BFGS", options={"maxiter": 5000, "gtol": 1e-8 * total})
    res = minimize(nll, res.x, method="Nelder-Mead", options={"maxiter": 20000, "xatol": 1e-10, "fatol": 1e-10})
    return expected(res.x)


def bump_window(counts: np.ndarray, background: np.ndarray, edges: np.ndarray = EDGES) -> tuple[int, int]:
    """(first bin, width) of the largest excess, 2-6 bins wide (``pyBumpHunter``)."""
    import pyBumpHunter as BH

    bh = BH.BumpHunter1D(rang=(float(edges[0]), float(edges[-1])), bins=edges, width_min=2, width_max=6,
                         npe=10, nworker=1, seed=0, mode="excess")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # pyBumpHunter prints its progress
        bh.bump_scan(counts, background, is_hist=True, do_pseudo=False)
    return int(bh.min_loc_ar[0]), int(bh.min_width_ar[0])


def data_significance(x: np.ndarray) -> dict:
    counts = np.histogram(x, EDGES)[0].astype(float)
    bkg = fit_background(counts)
    lo, width = bump_window(counts, bkg)
    o, b = counts[lo:lo + width].sum(), bkg[lo:lo + width].sum()
    return {"significance": float((o - b) / np.sqrt(b)), "window": [float(EDGES[lo]), float(EDGES[lo + width])],
            "observed": float(o), "background": float(b), "counts": counts.tolist(), "fit": bkg.tolist()}


def flow_significance(samples: list[np.ndarray], n_stream: int) -> dict:
    """The seed's ensemble significance (module docstring) from each flow's samples."""
    half = len(samples) // 2
    scale = n_stream / np.mean([len(s) for s in samples])
    first = np.concatenate(samples[:half])
    c_first = np.histogram(first, EDGES)[0] * (n_stream / len(first))
    lo, width = bump_window(c_first, fit_background(c_first))
    obs, bkg = [], []
    for s in samples[half:]:
        c = np.histogram(s, EDGES)[0] * scale
        f = fit_background(c)
        obs.append(c[lo:lo + width].sum())
        bkg.append(f[lo:lo + width].sum())
    n = len(obs)
    o, b = float(np.mean(obs)), float(np.mean(bkg))
    d_o, d_b = float(np.std(obs) / np.sqrt(n)), float(np.std(bkg) / np.sqrt(n))
    s_ = o - b
    d_s = np.hypot(d_o, d_b)
    return {"significance": float(s_ / np.sqrt(d_s ** 2 + b)), "window": [float(EDGES[lo]), float(EDGES[lo + width])],
            "observed": o, "background": b, "delta_observed": d_o, "delta_background": d_b,
            "counts": c_first.tolist()}


def run(out: str | Path, quick: bool = False, seed: int = 0, progress: bool = True, echo=print,
        resume: bool = False) -> dict:
    """The three analyses of one stream; writes ``metrics.json``, the plots and ``report.html``.

    The ensemble's training is saved into ``out/online.ckpt`` between buffers every few
    minutes (the seed's budget is hours on one core): with ``resume`` a killed run of the
    same budget and seed continues at the next buffer exactly."""
    from hepgen.training.online import train_online_ensemble
    from hepgen.training.resume import LoopCheckpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(QUICK if quick else FULL)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    x, truth = make_stream(cfg["points"], rng)
    echo(f"stream of {len(x)} points, {int(truth.sum())} signal")
    full = data_significance(x)
    prescaled = {}
    for f in cfg["prescales"]:
        keep = np.random.default_rng(seed + f).random(len(x)) < 1.0 / f
        prescaled[str(f)] = data_significance(x[keep])["significance"]
    echo(f"data: significance {full['significance']:.2f} in {full['window']}; prescaled {prescaled}")
    ck = LoopCheckpoint(out / "online.ckpt", key=json.dumps({**cfg, "seed": seed}, sort_keys=True))
    if not resume:
        ck.clear()
    t1 = time.perf_counter()
    ensemble = train_online_ensemble(x, members=cfg["members"], buffer=cfg["buffer"], batch=cfg["batch"],
                                     iterations=cfg["iterations"], lr=cfg["lr"], seed=seed, progress=progress,
                                     checkpoint=ck)
    train_seconds = time.perf_counter() - t1 + ck.earlier_seconds
    samples = ensemble.sample(cfg["samples"] // cfg["members"], seed=seed)
    online = flow_significance(samples, len(x))
    above = [int(f) for f, v in prescaled.items() if v < online["significance"]]
    metrics = {
        "significance_full": full["significance"],
        "significance_online": online["significance"],
        "significance_prescaled": prescaled,
        "crossover_prescale": min(above) if above else None,
        "window_full": full["window"], "window_online": online["window"],
        "config": {**cfg, "quick": quick, "seed": seed}, "seconds": time.perf_counter() - t0,
        "train_seconds": train_seconds,
        "seed_result": "OnlineFlow beats prescaled data for prescales above ~4 (seed 001 Fig. 9.5)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plots(out, full, online, prescaled)
    _report(out, metrics)
    echo(f"OnlineFlow ensemble: significance {online['significance']:.2f} in {online['window']}; "
         f"better than prescaled data from f = {metrics['crossover_prescale']}")
    return metrics


def _plots(out: Path, full: dict, online: dict, prescaled: dict) -> None:
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    f = np.array([int(k) for k in prescaled])
    ax.plot(f, list(prescaled.values()), "o-", label="prescaled data")
    ax.axhline(online["significance"], color="C3", label="OnlineFlow ensemble")
    ax.set_xscale("log")
    ax.set_xlabel("prescale factor")
    ax.set_ylabel("significance S / √B")
    ax.legend()
    fig.savefig(out / "significance_vs_prescale.png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 6))
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    ax.step(centres, full["counts"], where="mid", label="data")
    ax.plot(centres, full["fit"], label="background fit")
    ax.step(centres, online["counts"], where="mid", label="OnlineFlow (first half, scaled)")
    for edge in full["window"]:
        ax.axvline(edge, color="grey", ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("x")
    ax.set_ylabel("points per bin")
    ax.legend()
    fig.savefig(out / "spectrum.png", dpi=80, bbox_inches="tight")
    plt.close(fig)


def _report(out: Path, metrics: dict) -> None:
    from hepgen.report.html import render_report

    rows = [{"name": "full data", "cells": [f"{metrics['significance_full']:.2f}"]},
            {"name": "OnlineFlow ensemble", "cells": [f"{metrics['significance_online']:.2f}"]}]
    rows += [{"name": f"prescale {k}", "cells": [f"{v:.2f}"]} for k, v in metrics["significance_prescaled"].items()]
    render_report(out / "report.html", title="Bump hunt with an OnlineFlow (seed 001 sec. 9.2)", real="toy stream",
                  gen="OnlineFlow ensemble", n_real=metrics["config"]["points"], n_gen=metrics["config"]["samples"],
                  floor_file=None, n_floor=0, columns=[{"label": "significance"}], rows=rows,
                  metric_note=f"BumpHunter window (data) {metrics['window_full']}, (flow) {metrics['window_online']}; "
                              f"crossover prescale {metrics['crossover_prescale']}. {metrics['seed_result']}.",
                  details=[], figures=[{"file": "significance_vs_prescale.png", "caption": "significance vs prescale"},
                                       {"file": "spectrum.png", "caption": "spectrum, fit and window"}])
