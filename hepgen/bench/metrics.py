"""Benchmark: hepgen's jet metrics against ``jetnet.evaluation`` on the same jets.

Both compute W1M, W1P, W1EFP, FPD and KPD on two samples of Pythia top jets
(``num_jets`` each), once for every particle count. Each step is timed separately
so the table shows where the time goes (in jetnet: the EFPs, computed twice), and
the values of both are listed side by side to show they agree.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from hepgen.data.jetnet import read_jets, write_jets
from hepgen.metrics.efp import FPD_SET, W1EFP_SET, EFPCalculator
from hepgen.metrics.jets import JetFeatures, fpd, inverse_variance_mean, kpd, w1efp, w1m, w1p

METRICS = ("w1m", "w1p", "w1efp", "fpd", "kpd")


def bench_samples(num_jets: int, max_particles: int, data_dir: Path, echo=print):
    """Two independent top-jet samples with ``max_particles`` particles, cached in ``data_dir``."""
    from hepgen.simulate.jets import generate_jets

    data_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for tag, seed in (("a", 101), ("b", 102)):
        path = data_dir / f"t{max_particles}_{num_jets}_{tag}.h5"
        if not path.exists():
            echo(f"simulating {num_jets} top jets for {path} ...")
            write_jets(generate_jets("t", num_jets, max_particles, seed=seed), path)
        samples.append(read_jets(path))
    return samples


def _timed(times: dict, key: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    times[key] = times.get(key, 0.0) + time.perf_counter() - start
    return out


def time_hepgen(pf1: np.ndarray, pf2: np.ndarray, seed: int = 0) -> tuple[dict, dict]:
    times: dict[str, float] = {}
    calc = EFPCalculator(*FPD_SET)
    f1 = _timed(times, "efps", JetFeatures.from_particle_features, pf1, calc)
    f2 = _timed(times, "efps", JetFeatures.from_particle_features, pf2, calc)
    rng = np.random.default_rng(seed)
    vals = {"w1m": _timed(times, "w1m", w1m, f1.particles, f2.particles, rng=rng)}
    means, stds = _timed(times, "w1p", w1p, f1.particles, f2.particles, f1.mask, f2.mask, rng=rng)
    vals["w1p"] = inverse_variance_mean(means, stds)
    cols = calc.columns_of(EFPCalculator(*W1EFP_SET))
    means, stds = _timed(times, "w1efp", w1efp, f1.efps[:, cols], f2.efps[:, cols], rng=rng)
    vals["w1efp"] = inverse_variance_mean(means, stds)
    vals["fpd"] = _timed(times, "fpd", fpd, f1.efps, f2.efps)
    vals["kpd"] = _timed(times, "kpd", kpd, f1.efps, f2.efps)
    return times, vals


def time_jetnet(pf1: np.ndarray, pf2: np.ndarray, efp_jobs: int | None = None, seed: int = 0) -> tuple[dict, dict]:
    from jetnet.evaluation import gen_metrics as G

    G.rng = np.random.default_rng(seed)
    times: dict[str, float] = {}
    x1, x2 = pf1[..., :3], pf2[..., :3]
    m1, m2 = pf1[..., 3], pf2[..., 3]
    vals = {"w1m": _timed(times, "w1m", G.w1m, x1, x2)}
    means, stds = _timed(times, "w1p", G.w1p, x1, x2, m1, m2)
    vals["w1p"] = inverse_variance_mean(means, stds)
    means, stds = _timed(times, "w1efp (incl. its EFPs)", G.w1efp, x1, x2, efp_jobs=efp_jobs)
    vals["w1efp"] = inverse_variance_mean(means, stds)
    e1 = _timed(times, "efps", G.get_fpd_kpd_jet_features, x1, efp_jobs=efp_jobs)
    e2 = _timed(times, "efps", G.get_fpd_kpd_jet_features, x2, efp_jobs=efp_jobs)
    vals["fpd"] = _timed(times, "fpd", G.fpd, e1, e2)
    vals["kpd"] = _timed(times, "kpd", G.kpd, e1, e2)
    return times, vals


def run_metrics_bench(
    num_jets: int,
    particle_counts: list[int],
    data_dir: Path,
    out: Path,
    jetnet_jobs: int | None = None,
    echo=print,
) -> str:
    """Run the benchmark, write ``metrics_bench.{md,json}`` into ``out``, return the markdown."""
    warnings.simplefilter("ignore", RuntimeWarning)
    a, b = bench_samples(num_jets, max(particle_counts), data_dir, echo)
    results = {}
    for p in sorted(particle_counts):
        pf1, pf2 = a.truncate(p).particle_features, b.truncate(p).particle_features
        echo(f"[{p} particles] hepgen ...")
        t_ours, v_ours = time_hepgen(pf1, pf2)
        echo(f"[{p} particles] jetnet ...")
        t_ref, v_ref = time_jetnet(pf1, pf2, jetnet_jobs)
        results[p] = {
            "hepgen": {"seconds": t_ours, "total": sum(t_ours.values()), "values": v_ours},
            "jetnet": {"seconds": t_ref, "total": sum(t_ref.values()), "values": v_ref},
            "speedup": sum(t_ref.values()) / sum(t_ours.values()),
        }
    md = [f"# Jet metrics: hepgen vs jetnet, {num_jets} vs {num_jets} Pythia top jets", ""]
    md += ["| particles | jetnet [s] | hepgen [s] | speed ratio |", "|---|---|---|---|"]
    for p, r in results.items():
        md.append(f"| {p} | {r['jetnet']['total']:.1f} | {r['hepgen']['total']:.1f} | {r['speedup']:.1f}x |")
    for p, r in results.items():
        md += ["", f"## {p} particles: where the time goes", "", "| step | jetnet [s] | hepgen [s] |", "|---|---|---|"]
        for key in sorted(set(r["jetnet"]["seconds"]) | set(r["hepgen"]["seconds"])):
            tj, th = r["jetnet"]["seconds"].get(key), r["hepgen"]["seconds"].get(key)
            md.append(f"| {key} | {'' if tj is None else f'{tj:.2f}'} | {'' if th is None else f'{th:.2f}'} |")
        md += ["", "| metric | jetnet | hepgen |", "|---|---|---|"]
        for m in METRICS:
            (vj, ej), (vh, eh) = r["jetnet"]["values"][m], r["hepgen"]["values"][m]
            md.append(f"| {m} | {vj:.4g} ± {ej:.2g} | {vh:.4g} ± {eh:.2g} |")
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics_bench.md").write_text(text)
    (out / "metrics_bench.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    return text
