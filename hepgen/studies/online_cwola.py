"""``hepgen study online-cwola``: the OnlineFlow on LHCO-like dijets, judged by CWoLa
(seed 001 sec. 9.3, L2461-2510, Fig. 9.8).

* Data: a background file (``hepgen data dijets --process qcd``) with signal
  (``--process wprime``) injected at ``s_over_b`` (seed: 1 %, L2474) by
  :func:`hepgen.training.anomaly.inject_signal` — the training stream. The test set is a
  separate background file (``test_data``) or, without one, a held-out ``test_fraction`` of
  the background; its signal is the signal file's events not injected into the stream
  (or ``test_signal``). Without files a small synthetic dijet-like toy
  (:func:`toy_dijets`) stands in (``--quick``'s own data; not physics).
* OnlineFlow (:func:`hepgen.training.online.train_online`): one flow, no ensemble, unit
  weights, trained in a single pass over the stream: buffers of ``buffer`` events,
  ``iterations`` passes over each in mini-batches of ``batch`` (seed: 10k, 1000, 250,
  L2476-2482), on the 5 features (m_jj, m_J1, m_J1 - m_J2, tau21 of both jets) plus
  ``pad`` = 5 Gaussian noise dimensions (10-D); MAF of ``blocks`` = 10 MADE blocks of
  2 x ``hidden`` = 128 (L2482), Adam, SWA after the first buffers. Preprocessing: log of
  m_jj and m_J1, then each column standardised by the first buffer's mean and standard
  deviation (the seed does not spell its own out beyond the 1-D toy's log transform).
* CWoLa (:func:`hepgen.training.anomaly.train_cwola` with ``folds = 1``: one 3 x 64
  classifier, class weights, Adam lr 1e-3, the ``ensemble`` = 10 lowest-validation-loss
  epochs averaged; train : validation = 8 : 1 as the seed's 80 % / 10 %, L2480, L2502)
  trained on SR (3.3-3.7 TeV) against sidebands (200 GeV each side) of
  (a) the stream itself ("data") and every ``f``-th event of it for the prescales
  2, 5, 10, 20 (50, 20, 10, 5 %, L2504) and (b) ``flow_ratio`` times as many events sampled
  from the OnlineFlow (seed: 562.5k for a 270k-event training + validation set, L2506).
* Each classifier scores the same real test set; only test events in the SR count (as
  ``hepgen evaluate anomaly``). ``metrics.json`` has per training sample ("data",
  "prescale_2", ..., "online_flow") ``auc``, ``sic_max``, ``inv_eps_b_at_0.2``,
  ``inv_eps_b_at_0.3`` (an infinite eps_B^-1 is written as its lower bound N_B) and their
  bootstrap ``errors``; plots: ROC and SI curves of all samples (Fig. 9.8), the features
  of the stream against the flow's samples (Fig. 9.7).

The seed's result (L2506-2510): the OnlineFlow reaches SI up to ~8 and performs like 10 %
of the training data, i.e. it beats prescaled data for prescales of 10 or more.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hepgen.data.dijets import COLUMNS, DijetSample

SEED_RESULT = ("OnlineFlow data give SI up to ~8 and perform like 10 % of the training data: better than "
               "prescaled data for prescales >= 10 (seed 001 Fig. 9.8, L2506-2510)")

FULL = dict(buffer=10_000, batch=250, iterations=1000, blocks=10, hidden=128, pad=5, lr=1e-5, swa_start=2,
            prescales=[2, 5, 10, 20], s_over_b=0.01, flow_ratio=562_500 / 270_000, epochs=50, cwola_batch=256,
            ensemble=10, test_fraction=0.2, toy_background=270_000)
QUICK = dict(FULL, buffer=2_000, iterations=3, blocks=3, hidden=32, lr=1e-3, epochs=8, ensemble=3,
             toy_background=12_000, s_over_b=0.03, max_events=12_000)

LOG_COLUMNS = ("mjj", "mj1")


def toy_dijets(n_background: int, n_signal: int, rng: np.random.Generator) -> tuple[DijetSample, DijetSample]:
    """A synthetic stand-in with the dijet columns (for ``--quick`` without files; not physics):
    background m_jj = 2.4 TeV + Exp(500 GeV), m_J1 ~ Gamma, m_J2 = m_J1 x U(0.2, 1), tau21 ~
    Beta(5, 3); signal m_jj ~ N(3.5 TeV, 120 GeV), m_J1 ~ N(300, 60), m_J2 ~ N(100, 25),
    tau21 ~ Beta(3, 4) (overlapping the background, so that a few signal events do not suffice)."""
    nb, ns = n_background, n_signal
    mjj = 2400 + rng.exponential(500, nb)
    m1 = rng.gamma(3.0, 40.0, nb) + 5
    m2 = m1 * rng.uniform(0.2, 1.0, nb)
    b = np.c_[mjj, m1, m1 - m2, rng.beta(5, 3, nb), rng.beta(5, 3, nb)]
    s1, s2 = rng.normal(300, 60, ns), rng.normal(100, 25, ns)
    s = np.c_[rng.normal(3500, 120, ns), s1, s1 - s2, rng.beta(3, 4, ns), rng.beta(3, 4, ns)]
    return (DijetSample(b, COLUMNS, label=np.zeros(nb), source="<toy dijets: background>"),
            DijetSample(s, COLUMNS, label=np.ones(ns), source="<toy dijets: signal>"))


def _inputs(cfg: dict, seed: int, data, signal, test_data, test_signal, echo):
    """(training stream, test background, test signal, description)."""
    from hepgen.data.dijets import read_dijets
    from hepgen.errors import OptionError
    from hepgen.training.anomaly import inject_signal

    rng = np.random.default_rng(seed)
    if data is None:
        if signal is not None or test_data is not None or test_signal is not None:
            raise OptionError("--signal/--test-data/--test-signal need --data")
        n_b = int(cfg["toy_background"])
        n_test = int(round(cfg["test_fraction"] * n_b))
        n_sig_train = int(round(cfg["s_over_b"] * (n_b - n_test)))
        bkg, sig = toy_dijets(n_b, n_sig_train + max(200, n_test // 10), rng)
        source = "synthetic dijet toy (hepgen.studies.online_cwola.toy_dijets)"
    else:
        if signal is None:
            raise OptionError("--data needs --signal (the W' file whose events are injected)")
        bkg, sig = read_dijets(data, cfg.get("max_events")), read_dijets(signal)
        source = f"{data} + {signal}"
    bkg = bkg.select(rng.permutation(len(bkg)))
    if test_data is not None:
        test_b = read_dijets(test_data)
        train_b = bkg
    else:
        n_test = int(round(cfg["test_fraction"] * len(bkg)))
        test_b, train_b = bkg.select(slice(0, n_test)), bkg.select(slice(n_test, None))
    n_inj = int(round(cfg["s_over_b"] * len(train_b)))
    perm = rng.permutation(len(sig))
    if n_inj > len(sig):
        raise OptionError(f"--s-over-b {cfg['s_over_b']}: needs {n_inj} signal events, {sig.source} has {len(sig)}")
    sig_train = sig.select(np.sort(perm[:n_inj]))
    if test_signal is not None:
        test_s = read_dijets(test_signal)
    else:
        test_s = sig.select(np.sort(perm[n_inj:]))
        if len(test_s) == 0:
            raise OptionError(f"{sig.source}: all {len(sig)} signal events are injected; none left for the test "
                              "set (give more signal events or --test-signal)")
    stream = inject_signal(train_b, sig_train, cfg["s_over_b"], seed=seed)
    return stream, test_b, test_s, source


def _test_set(test_b: DijetSample, test_s: DijetSample, cfg) -> tuple[np.ndarray, np.ndarray, dict]:
    """The SR events of the test set: (mjj-less feature matrix, labels, counts)."""
    from hepgen.errors import InvalidDataError
    from hepgen.training.anomaly import regions

    sr_b, _ = regions(test_b.mjj, cfg.signal_region, cfg.sideband)
    sr_s, _ = regions(test_s.mjj, cfg.signal_region, cfg.sideband)
    if sr_b.sum() < 2 or sr_s.sum() < 2:
        raise InvalidDataError(f"test set: {int(sr_b.sum())} background and {int(sr_s.sum())} signal events in the "
                               "signal region; give more test events")
    names = [c for c in test_b.columns if c != "mjj"]
    x = np.concatenate([np.stack([s.column(c) for c in names], 1)[m] for s, m in ((test_b, sr_b), (test_s, sr_s))])
    y = np.r_[np.zeros(int(sr_b.sum())), np.ones(int(sr_s.sum()))]
    return x.astype(np.float32), y, {"background_sr": int(sr_b.sum()), "signal_sr": int(sr_s.sum())}


def run(out: str | Path, quick: bool = False, seed: int = 0, data=None, signal=None, test_data=None,
        test_signal=None, progress: bool = True, echo=print, **overrides) -> dict:
    """Train the OnlineFlow and the CWoLa classifiers, write metrics.json, plots and report.html.

    Args:
        out: the output folder.
        quick: :data:`QUICK` instead of :data:`FULL` (minutes; a toy when no files are given).
        seed: the split, the injection, the flow and the classifiers.
        data, signal: background and signal dijet files (both or neither).
        test_data, test_signal: optional separate test files.
        overrides: entries of the configuration (e.g. ``buffer``, ``iterations``, ``epochs``).
    """
    from hepgen.errors import OptionError
    from hepgen.metrics.anomaly import anomaly_metrics, roc_curve
    from hepgen.models.assemblies.anomaly import likelihood_ratio
    from hepgen.training.anomaly import CWoLaConfig, _finite, check_regions, train_cwola
    from hepgen.training.online import train_online

    cfg = dict(QUICK if quick else FULL)
    bad = sorted(set(overrides) - set(cfg) - {"max_events"})
    if bad:
        raise OptionError(f"unknown settings {', '.join(bad)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("buffer", "batch", "iterations", "blocks", "hidden", "epochs", "ensemble"):
        if int(cfg[k]) < 1:
            raise OptionError(f"--{k.replace('_', '-')} must be at least 1, got {cfg[k]}")
    if any(int(f) < 2 for f in cfg["prescales"]):
        raise OptionError(f"--prescales must be integers >= 2, got {cfg['prescales']}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stream, test_b, test_s, source = _inputs(cfg, seed, data, signal, test_data, test_signal, echo)
    ccfg = CWoLaConfig(folds=1, val_fraction=1 / 9, epochs=int(cfg["epochs"]), batch_size=int(cfg["cwola_batch"]),
                       ensemble=int(cfg["ensemble"]), seed=seed)
    x_test, y_test, test_counts = _test_set(test_b, test_s, ccfg)
    check_regions(stream, ccfg)
    echo(f"stream: {len(stream)} events ({int(stream.label.sum())} signal) from {source}; test SR: "
         f"{test_counts['background_sr']} background, {test_counts['signal_sr']} signal")

    # (b) the OnlineFlow, one pass over the stream
    t_flow = time.perf_counter()
    features = stream.features[:, [stream.columns.index(c) for c in COLUMNS]].astype(np.float64)
    log = tuple(i for i, c in enumerate(COLUMNS) if c in LOG_COLUMNS and (features[:, i] > 0).all())
    losses = []
    flow = train_online(features, buffer=int(cfg["buffer"]), progress=progress, seed=seed, pad=int(cfg["pad"]),
                        blocks=int(cfg["blocks"]), hidden=int(cfg["hidden"]), lr=float(cfg["lr"]),
                        batch=int(cfg["batch"]), iterations=int(cfg["iterations"]), swa_start=int(cfg["swa_start"]),
                        log=log, standardize=True, callback=lambda f, loss: losses.append(loss))
    flow_seconds = time.perf_counter() - t_flow
    n_flow = int(round(cfg["flow_ratio"] * len(stream)))
    gen = flow.sample(n_flow, seed=seed + 1)
    ok = np.isfinite(gen).all(1)
    generated = DijetSample(gen[ok], COLUMNS, source="<OnlineFlow samples>")
    echo(f"OnlineFlow: {len(losses)} buffers x {cfg['iterations']} passes in {flow_seconds:.0f} s; "
         f"{len(generated)} samples ({int((~ok).sum())} non-finite dropped)")

    samples = {"data": stream}
    for f in cfg["prescales"]:
        samples[f"prescale_{int(f)}"] = stream.select(slice(0, None, int(f)))
    samples["online_flow"] = generated
    metrics, curves = {}, {}
    for name, sample in samples.items():
        t = time.perf_counter()
        try:
            res = train_cwola(sample, ccfg)
        except Exception as err:  # too few SR/SB events after a large prescale: say so, keep the rest
            from hepgen.errors import InvalidDataError

            if not isinstance(err, InvalidDataError):
                raise
            metrics[name] = {"error": str(err), "events": len(sample)}
            echo(f"{name}: skipped ({err})")
            continue
        names = [c for c in COLUMNS if c != "mjj"]
        xt = x_test[:, [names.index(c) for c in res.ensemble.feature_columns]]
        score = likelihood_ratio(res.ensemble.probability(xt))
        m = _finite(anomaly_metrics(y_test, score, bootstrap=20, seed=seed), test_counts["background_sr"])
        metrics[name] = {k: v["value"] for k, v in m.items()}
        metrics[name]["errors"] = {k: v["error"] for k, v in m.items()}
        metrics[name].update(events=len(sample), events_sr=int(res.in_sr.sum()), events_sb=int(res.in_sb.sum()),
                             seconds=round(time.perf_counter() - t, 1))
        if sample.label is not None:
            metrics[name]["signal_sr"] = int((sample.label.astype(bool) & res.in_sr).sum())
        fpr, tpr, _ = roc_curve(y_test, score)
        curves[name] = (fpr, tpr)
        echo(f"{name}: {len(sample)} events -> AUC {metrics[name]['auc']:.3f}, SI max {metrics[name]['sic_max']:.2f}, "
             f"1/eps_B(0.2) {metrics[name]['inv_eps_b_at_0.2']:.1f}, 1/eps_B(0.3) {metrics[name]['inv_eps_b_at_0.3']:.1f}")
    ranked = [k for k in samples if k.startswith("prescale_") and "auc" in metrics.get(k, {})]
    flow_si = metrics.get("online_flow", {}).get("sic_max")
    factors = sorted(int(k.split("_")[1]) for k in ranked)
    # the smallest prescale from which on the flow's SI max beats every prescaled sample
    beaten = [f for i, f in enumerate(factors) if flow_si is not None
              and all(metrics[f"prescale_{g}"]["sic_max"] < flow_si for g in factors[i:])]
    summary = {
        **metrics,  # one entry per training sample
        "training_samples": list(metrics),
        "test": test_counts,
        "stream": {"events": len(stream), "signal": int(stream.label.sum()), "source": source},
        "flow": {"buffers": len(losses), "loss_per_buffer": [float(v) for v in losses], "seconds": round(flow_seconds, 1),
                 "samples": len(generated), "log_columns": [COLUMNS[i] for i in log]},
        "flow_beats_prescales_from": min(beaten) if beaten else None,
        "config": {**cfg, "quick": quick, "seed": seed, "signal_region": list(ccfg.signal_region),
                   "sideband": ccfg.sideband, "cwola_folds": 1, "cwola_val_fraction": ccfg.val_fraction},
        "seconds": round(time.perf_counter() - t0, 1),
        "seed_result": SEED_RESULT,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    figures = _plots(out, curves, stream, generated, test_counts["background_sr"])
    _report(out, summary, figures)
    echo(f"SI max of the flow beats the prescaled data from prescale {summary['flow_beats_prescales_from']}")
    return summary


def _plots(out: Path, curves: dict, stream: DijetSample, generated: DijetSample, n_background: int) -> list[dict]:
    from hepgen.metrics.anomaly import MIN_BACKGROUND, significance_improvement
    from hepgen.report.plots import _setup, panel_grid

    _setup()
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(15, 6.5))
    blues = plt.cm.Blues(np.linspace(0.95, 0.35, max(1, len(curves) - 1)))
    k = 0
    for name, (fpr, tpr) in curves.items():
        color = "C3" if name == "online_flow" else blues[k]
        k += name != "online_flow"
        keep = fpr > 0
        a1.plot(tpr[keep], 1 / fpr[keep], color=color, label=name)
        es, si = significance_improvement(fpr, tpr, n_background, MIN_BACKGROUND)
        a2.plot(es, si, color=color, label=name)
    grid = np.linspace(0.01, 1, 200)
    a1.plot(grid, 1 / grid, ls=":", color="gray", label="random")
    a1.set_yscale("log")
    a1.set_xlabel(r"signal efficiency $\epsilon_S$")
    a1.set_ylabel(r"background rejection $\epsilon_B^{-1}$")
    a2.axhline(1.0, ls=":", color="gray")
    a2.set_xlabel(r"signal efficiency $\epsilon_S$")
    a2.set_ylabel(r"SI = $\epsilon_S / \epsilon_B^{1/2}$")
    for a in (a1, a2):
        a.set_xlim(0, 1)
        a.legend(fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "roc_sic.png", dpi=80)
    plt.close(fig)
    fig, axes = panel_grid(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 4))
    for ax, c in zip(axes, COLUMNS):
        real, fake = stream.column(c), generated.column(c)
        edges = np.histogram_bin_edges(real, bins=50, range=tuple(np.quantile(real, [0.001, 0.999])))
        ax.hist(real, bins=edges, density=True, histtype="step", label="stream")
        ax.hist(fake, bins=edges, density=True, histtype="step", color="C3", label="OnlineFlow")
        if stream.label is not None and stream.label.any():
            sig = real[stream.label.astype(bool)]
            ax.hist(sig, bins=edges, histtype="step", color="k",
                    weights=np.full(len(sig), 10.0 / len(real) / np.diff(edges)[0]), label="signal x 10")
        ax.set_xlabel(c)
        ax.set_yscale("log")
    axes[0].legend(fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "features.png", dpi=70)
    plt.close(fig)
    return [{"file": "roc_sic.png", "caption": "CWoLa on the stream, prescaled streams and OnlineFlow samples, "
                                               "judged on the same real test set (seed 001 Fig. 9.8)"},
            {"file": "features.png", "caption": "features of the stream and of the OnlineFlow (seed 001 Fig. 9.7)"}]


def _report(out: Path, summary: dict, figures: list[dict]) -> None:
    from hepgen.report.html import render_report

    keys = ("auc", "sic_max", "inv_eps_b_at_0.2", "inv_eps_b_at_0.3")
    rows = []
    for name in summary["training_samples"]:
        m = summary[name]
        if "auc" not in m:
            rows.append({"name": name, "cells": [m.get("error", "-")] + [""] * 4})
            continue
        rows.append({"name": name, "cells": [str(m["events"])] + [f"{m[k]:.3g} ± {m['errors'][k]:.2g}" for k in keys]})
    render_report(out / "report.html", title="OnlineFlow + CWoLa on LHCO-like dijets (seed 001 sec. 9.3)",
                  real=summary["stream"]["source"], gen="OnlineFlow", n_real=summary["stream"]["events"],
                  n_gen=summary["flow"]["samples"], floor_file=None, n_floor=0,
                  columns=[{"label": c} for c in ("training events", "AUC", "SI max", "1/eps_B @ 0.2", "1/eps_B @ 0.3")],
                  rows=rows,
                  metric_note=f"Test set: SR events only ({summary['test']['background_sr']} background, "
                              f"{summary['test']['signal_sr']} signal); errors: bootstrap of the test events. "
                              f"The flow's SI max beats the prescaled data from prescale "
                              f"{summary['flow_beats_prescales_from']}. Seed: {SEED_RESULT}.",
                  details=[], figures=figures)
