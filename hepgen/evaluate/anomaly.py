"""``hepgen evaluate anomaly``: how well a trained anomaly detector separates a signal file
from a background file (seed 001 Fig. 9.8; seed 002 Tables 5.2-5.4).

Both files are scored with the run (:func:`hepgen.training.anomaly.score_run`); for CWoLa
only the events in the run's signal region count (where the method is meant to select,
L2494-2496), unless ``region_only=False``. Writes ``metrics.json`` with ``auc``,
``sic_max``, ``inv_eps_b_at_0.2`` and ``inv_eps_b_at_0.3`` as ``{"value", "error"}``
(errors: standard deviation over Poisson bootstrap replicas of the events; an eps_B^-1
with no background left is written as its lower bound N_B), the ROC (eps_B^-1 against
eps_s, with the random classifier's 1 / eps_s) and SI (eps_s / sqrt(eps_B)) curves as
``roc.png`` and ``sic.png``, score histograms, and ``report.html``. The files should be
independent of those the run was trained on (e.g. another ``--seed``); the run's own
k-fold scores are judged in its ``kfold_metrics.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from hepgen.data.atomic import atomic_folder
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.evaluate import Evaluation
from hepgen.metrics.anomaly import MIN_BACKGROUND, anomaly_metrics, roc_curve, significance_improvement
from hepgen.training.anomaly import _finite, read_run, read_sample, score_run

KEYS = (("auc", "AUC"), ("sic_max", "SI max"), ("inv_eps_b_at_0.2", "1/eps_B at eps_s = 0.2"),
        ("inv_eps_b_at_0.3", "1/eps_B at eps_s = 0.3"))


def _plots(labels, scores, out: Path, title: str) -> list[dict]:
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(labels, scores)
    nb = int((~labels).sum())
    keep = fpr > 0
    figures = []
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.plot(tpr[keep], 1 / fpr[keep], label=title)
    grid = np.linspace(0.01, 1, 200)
    ax.plot(grid, 1 / grid, ls=":", color="gray", label="random")
    ax.set_yscale("log")
    ax.set_xlabel(r"signal efficiency $\epsilon_S$")
    ax.set_ylabel(r"background rejection $\epsilon_B^{-1}$")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=14)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=80)
    plt.close(fig)
    figures.append({"file": "roc.png", "caption": "ROC: background rejection against signal efficiency"})
    es, si = significance_improvement(fpr, tpr, nb, MIN_BACKGROUND)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.plot(es, si, label=title)
    ax.axhline(1.0, ls=":", color="gray", label="random")
    ax.set_xlabel(r"signal efficiency $\epsilon_S$")
    ax.set_ylabel(r"SI = $\epsilon_S\,/\,\epsilon_B^{1/2}$")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=14)
    fig.tight_layout()
    fig.savefig(out / "sic.png", dpi=80)
    plt.close(fig)
    figures.append({"file": "sic.png", "caption": f"significance improvement (cuts keeping >= {MIN_BACKGROUND} background events)"})
    fig, ax = plt.subplots(figsize=(8, 7))
    s = np.log(np.clip(scores, 1e-300, None))
    edges = np.histogram_bin_edges(s, bins=50)
    ax.hist(s[~labels], bins=edges, density=True, histtype="step", label="background")
    ax.hist(s[labels], bins=edges, density=True, histtype="step", label="signal")
    ax.set_xlabel("log score")
    ax.set_ylabel("normalised")
    ax.legend(fontsize=14)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=80)
    plt.close(fig)
    figures.append({"file": "scores.png", "caption": "score distributions"})
    return figures


def evaluate_anomaly(run_dir, background_path, signal_path, out_dir, region_only: bool = True,
                     bootstrap: int = 20, seed: int = 0, echo=print, score: str | None = None) -> Evaluation:
    """Score the two files with the run and write metrics, plots and a report.

    A run with further scores (NAE: ``ae``, the pre-trained plain autoencoder) gets a
    report row for each and ``baseline_metrics.json`` = ``{name: metrics}``.

    Args:
        run_dir: a run folder of ``hepgen anomaly train``.
        background_path, signal_path: files of background and signal events (CWoLa:
            dijets; NAE: jets in the JetNet layout).
        out_dir: the report folder (output appears only when complete).
        region_only: judge only events in the run's region (CWoLa: the signal region).
        bootstrap: bootstrap replicas for the errors (0: none).
        seed: seed of the replicas.
        echo: where progress lines go.
        score: which score ``metrics.json`` and the plots are of (default the method's
            own; NAE: ``ae`` for the plain-AE baseline).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out: {out_dir} exists and is not a folder")
    if not out_dir.parent.exists():
        raise InputFileError(f"--out: parent folder {out_dir.parent} does not exist")
    run = read_run(run_dir)
    bkg, sig = read_sample(run, background_path), read_sample(run, signal_path)
    sb, ss = score_run(run_dir, bkg), score_run(run_dir, sig)
    main_name = run["method"]
    if score is not None and score != run["method"]:
        if score not in sb.extra:
            raise OptionError(f"--score {score}: the {run['method']} run has the scores "
                              f"{', '.join([run['method'], *sb.extra]) }")
        others = {run["method"]: (sb.score, ss.score), **{k: (sb.extra[k], ss.extra[k]) for k in sb.extra if k != score}}
        sb.score, ss.score, main_name = sb.extra[score], ss.extra[score], score
    else:
        others = {k: (sb.extra[k], ss.extra[k]) for k in sb.extra}
    mb = sb.in_region if region_only else np.ones(len(bkg), bool)
    ms = ss.in_region if region_only else np.ones(len(sig), bool)
    where = "in the signal region" if region_only else "in all"
    if not mb.any():
        raise InvalidDataError(f"{background_path}: no background event {where} of the run")
    if not ms.any():
        raise InvalidDataError(f"{signal_path}: no signal event {where} of the run")
    scores = np.concatenate([sb.score[mb], ss.score[ms]])
    labels = np.r_[np.zeros(mb.sum(), bool), np.ones(ms.sum(), bool)]
    echo(f"scored {mb.sum()} background and {ms.sum()} signal events {where}")
    metrics = _finite(anomaly_metrics(labels, scores, bootstrap=bootstrap, seed=seed), int(mb.sum()))
    baselines = {name: _finite(anomaly_metrics(labels, np.concatenate([b[mb], s[ms]]), bootstrap=bootstrap, seed=seed),
                               int(mb.sum())) for name, (b, s) in others.items()}
    with atomic_folder(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if baselines:
            (tmp / "baseline_metrics.json").write_text(json.dumps(baselines, indent=2) + "\n")
        figures = _plots(labels, scores, tmp, main_name)
        for extra in ("loss.png",):
            if (Path(run_dir) / extra).is_file():
                shutil.copy(Path(run_dir) / extra, tmp / extra)
                figures.append({"file": extra, "caption": "NAE: pre-training MSE and the energies of training and "
                                "negative samples" if run["method"] == "nae" else
                                "contrastive loss per epoch; validation MSE of the AEs on z and on raw inputs"
                                if run["method"] in ("anomaly-clr", "dark-clr") else
                                "training loss per fold (dashed: validation)"})
        from hepgen.report.html import render_report

        def cell(m):
            v = m["value"]
            return "–" if v is None else f"{v:.3g}" + (f" ± {m['error']:.2g}" if m["error"] else "")

        rows = [{"name": f"{main_name} ({Path(run_dir).name})", "cells": [cell(metrics[k]) for k, _ in KEYS]}]
        rows += [{"name": f"{name} ({Path(run_dir).name})", "cells": [cell(m[k]) for k, _ in KEYS]}
                 for name, m in baselines.items()]
        kfold = Path(run_dir) / "kfold_metrics.json"
        if kfold.is_file():
            km = json.loads(kfold.read_text())
            rows.append({"name": "k-fold scores of the training sample", "cells": [cell(km[k]) for k, _ in KEYS]})
        cfg = run.get("config", {})
        note = (f"Events {where} of the run"
                + (f" (m_jj in {cfg['signal_region'][0]:g}-{cfg['signal_region'][1]:g} GeV)" if region_only and "signal_region" in cfg else "")
                + f"; SI = eps_s / sqrt(eps_B) maximised over cuts keeping at least {MIN_BACKGROUND} background events; "
                  f"errors from {bootstrap} Poisson bootstrap replicas.")
        render_report(tmp / "report.html", title=f"Anomaly detection: {run['method']} run {Path(run_dir).name}",
                      real=f"{background_path} (background)", gen=f"{signal_path} (signal)",
                      n_real=int(mb.sum()), n_gen=int(ms.sum()), floor_file=None, n_floor=0,
                      columns=[{"label": label} for _, label in KEYS], rows=rows, metric_note=note,
                      details=[], figures=figures)
    for r in rows:
        echo(f"{r['name']}: " + ", ".join(f"{label} {c}" for (_, label), c in zip(KEYS, r["cells"])))
    return Evaluation(metrics, out_dir)
