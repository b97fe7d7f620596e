"""``hepgen evaluate events``: generated vs reference collision events -> metrics.json, plots, report.html.

The metrics of :mod:`hepgen.metrics.events` (its docstring gives every convention): W1,
KL and JS distance per object type, pT order and feature and their count-weighted
averages ``w1_avg``, ``kl_avg``, ``js_avg`` (seed 003 Table 7.20), the same averages over
the inclusive distribution of each type (``*_avg_by_type``), count-vector agreement,
total-E and total-pT distances, the AUC of a real-vs-generated classifier on a fixed event
vector (``auc``, mean ± std over runs of :func:`hepgen.metrics.calo.classifier_auc`) and
``valid_fraction``, the fraction of generated events that pass the Dark Machines object
and event selection (``valid_fraction_real`` for the reference; both only where
:mod:`hepgen.simulate.events` provides ``selection_mask``).

``metrics.json`` holds ``{"value": v, "error": e}`` per metric, plus ``info`` (sample
sizes, options, the weight of every distribution, the skipped ones) and ``timing_s``.
The W1/KL/JS of the features are unit-free (see the metrics module); ``w1_total_e`` and
``w1_total_pt`` are in the files' energy unit.

As for jets and showers, the output folder is filled only after everything has been
computed and drawn in a temporary sibling folder, so a failing run never leaves half a
report or spoils an earlier one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample, concatenate, iter_events
from hepgen.data.atomic import atomic_folder
from hepgen.errors import HepgenError, InputFileError, InvalidDataError, OptionError
from hepgen.evaluate import Evaluation
from hepgen.evaluate.calo import _draw_ratio_pair, _mv, _plt, _timed
from hepgen.metrics.events import (
    BINS,
    MIN_OBJECTS,
    THESIS_TABLE_7_20,
    UNITS,
    EventDistributions,
    EventMetrics,
    FeatureReference,
    _hist,
    _log,
    event_distributions,
    event_feature_matrix,
    event_metrics,
    resolve_max_order,
    selection_function,
)

#: Classifier settings for events: smaller than the CaloChallenge's 3 x 512 (events have ~75 inputs, and
#: the small toy samples of the tests overfit a larger net within a few epochs).
CLASSIFIER_OPTIONS = {"hidden": (256, 256), "lr": 3e-4, "batch_size": 256}
TYPE_NAMES = {"j": "jets", "b": "b-jets", "e-": "electrons", "e+": "positrons", "m-": "negative muons",
              "m+": "positive muons", "g": "photons"}
ORDINALS = {1: "leading", 2: "subleading", 3: "3rd", 4: "4th"}


EventEvaluation = Evaluation


# ---------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------
def _load(path: Path, role: str, max_events: int | None, progress: bool) -> EventSample:
    """Read a Dark Machines file (up to ``max_events`` events) with a progress counter."""
    from tqdm.auto import tqdm

    chunks, n = [], 0
    try:
        with tqdm(desc=f"reading {path.name}", unit=" events", disable=not progress, leave=False) as bar:
            for chunk in iter_events(path, chunk_size=20_000):
                if max_events is not None and n + len(chunk) > max_events:
                    chunk = chunk[:max_events - n]
                chunks.append(chunk)
                n += len(chunk)
                bar.update(len(chunk))
                if max_events is not None and n >= max_events:
                    break
        if not chunks:
            raise InvalidDataError(f"{path}: the file holds no events")
        return concatenate(chunks)
    except HepgenError as exc:
        raise type(exc)(f"--{role}: {exc}") from None


def _check_options(classifier_epochs, classifier_runs, max_events, bootstrap, bins, unit):
    if classifier_epochs < 1:
        raise OptionError(f"--classifier-epochs must be positive, got {classifier_epochs}")
    if classifier_runs < 0:
        raise OptionError(f"--classifier-runs must be >= 0 (0 skips the classifier), got {classifier_runs}")
    if max_events is not None and max_events < 1:
        raise OptionError(f"--max-events must be positive, got {max_events}")
    if bootstrap < 0:
        raise OptionError(f"--bootstrap must be >= 0, got {bootstrap}")
    if bins < 2:
        raise OptionError(f"--bins must be >= 2, got {bins}")
    if unit not in UNITS:
        raise OptionError(f"--unit must be one of {', '.join(UNITS)}, got {unit!r}")


# ---------------------------------------------------------------------------------------
# text output
# ---------------------------------------------------------------------------------------
def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """(label, formatted value) of the headline numbers."""
    rows: list[tuple[str, str]] = []

    def add(label, key, fmt="{:.4g} ± {:.2g}"):
        if key in metrics:
            rows.append((label, fmt.format(metrics[key]["value"], metrics[key]["error"])))

    add("W1 average (Table 7.20 'W divergence')", "w1_avg")
    add("KL average (Table 7.20 'KL divergence')", "kl_avg")
    add("JS distance average (Table 7.20)", "js_avg")
    add("classifier AUC", "auc", "{:.4f} ± {:.4f}")
    add("valid fraction (generated)", "valid_fraction", "{:.4f} ± {:.4f}")
    if "w1_avg_by_type" in metrics:
        rows.append(("W1 / KL / JS averages by type", " / ".join(
            f"{metrics[k]['value']:.4g}" for k in ("w1_avg_by_type", "kl_avg_by_type", "js_avg_by_type"))))
    unit = metrics.get("info", {}).get("unit", "")
    add(f"W1 total E [{unit}]", "w1_total_e", "{:.4g} ± {:.2g}")
    add("JS distance total E", "js_total_e")
    add(f"W1 total pT [{unit}]", "w1_total_pt", "{:.4g} ± {:.2g}")
    add("JS distance total pT", "js_total_pt")
    add("JS distance of count vectors", "count_vector_js")
    add("generated count vectors unseen in reference", "count_vector_unseen_fraction")
    add("JS distance of the multiplicity", "multiplicity_js")
    return rows


def format_table(metrics: dict, title: str) -> str:
    rows = summary_rows(metrics)
    width = max(len(r[0]) for r in rows)
    lines = [title, "-" * min(100, max(len(title), width + 30))]
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _feature_label(feature: str, unit: str) -> str:
    return {"log10E": f"$\\log_{{10}}(E / \\mathrm{{{unit}}})$", "log10pt": f"$\\log_{{10}}(p_T / \\mathrm{{{unit}}})$",
            "eta": r"$\eta$", "phi": r"$\phi$", "log10met": f"$\\log_{{10}}(E_T^{{miss}} / \\mathrm{{{unit}}})$"}[feature]


def _distribution_title(name: str) -> str:
    if name == "met":
        return "MET"
    kind, order = name.rsplit("_", 1)
    if order == "all":
        return f"all {kind}"
    k = int(order.rstrip("+"))
    return f"{ORDINALS.get(k, f'{k}th')}{' and softer' if order.endswith('+') else ''} {kind}"


def grid_figure(panels: list[dict], path: Path, ncols: int, title: str, labels) -> Path:
    """Small histograms with ratio panels: each panel ``{edges, c_real, c_gen, xlabel, title[, logy]}``
    (counts, normalised here)."""
    plt = _plt()
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    with matplotlib.rc_context({"font.size": 8, "xtick.labelsize": 7, "ytick.labelsize": 6,
                                "xtick.minor.visible": False, "ytick.minor.visible": False}):
        height = 3.0 * nrows + 0.6
        fig = plt.figure(figsize=(3.4 * ncols, height))
        outer = fig.add_gridspec(nrows, ncols, hspace=0.55, wspace=0.3, left=0.06, right=0.99,
                                 bottom=0.5 / height, top=1 - 0.6 / height)
        for i, p in enumerate(panels):
            inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
            ax, axr = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            n_r, n_g = max(p["c_real"].sum(), 1), max(p["c_gen"].sum(), 1)
            _draw_ratio_pair(ax, axr, p["edges"], p["c_real"] / n_r, np.sqrt(p["c_real"]) / n_r,
                             p["c_gen"] / n_g, np.sqrt(p["c_gen"]) / n_g, labels, logy=p.get("logy", False),
                             legend=(i == 0), small=True)
            ax.set_title(p["title"], fontsize=8, pad=2)
            axr.set_xlabel(p["xlabel"], fontsize=8)
            for a in (ax, axr):
                a.xaxis.set_major_locator(MaxNLocator(4, integer=p.get("integer", False)))
            axr.yaxis.set_major_locator(MaxNLocator(2))
        fig.suptitle(title, fontsize=10)
        fig.savefig(path, dpi=70)
        plt.close(fig)
    return path


def _make_plots(folder: Path, real: EventDistributions, gen: EventDistributions, result: EventMetrics,
                cls_result, unit: str, bins: int, labels, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    sections: list[dict] = []
    m = result.metrics
    jobs = []

    def feature_panels(names):
        panels = []
        for name in names:
            for f, feat in enumerate(result.features[name]):
                ref = result.references[name][f]
                js = m[f"js_{name}_{feat}"]["value"]
                panels.append({"edges": ref.edges, "c_real": _hist(real.entries(name)[:, f], ref.edges),
                               "c_gen": _hist(gen.entries(name)[:, f], ref.edges), "xlabel": _feature_label(feat, unit),
                               "title": f"{_distribution_title(name)}: JS {js:.3f}"})
        return panels

    figs = []
    sections.append({"title": "Objects by type and pT order", "figures": figs})
    for kind in OBJECT_TYPES:
        names = [n for n in result.features if real.kinds[n] == kind]
        if names:
            file = f"objects_{kind}.png"
            jobs.append((lambda names=names, file=file, kind=kind: grid_figure(
                feature_panels(names), folder / file, 4,
                f"{TYPE_NAMES[kind]} ({kind}): rows = pT order; panel titles: JS distance", labels)))
            figs.append({"file": file, "caption": f"{TYPE_NAMES[kind]} ({kind}) by pT order: log10 E, log10 pT, "
                                                  "η, φ (values outside the reference range in the edge bins)",
                         "wide": True})

    figs = []
    sections.append({"title": "Event level", "figures": figs})
    jobs.append(lambda: grid_figure(feature_panels(["met"]), folder / "met.png", 2, "missing transverse energy",
                                    labels))
    figs.append({"file": "met.png", "caption": "MET and its azimuth"})

    def totals_panels():
        panels = []
        for label, text in (("total_e", "total E"), ("total_pt", "total $p_T$")):
            edges = FeatureReference.of(_log(getattr(real, label)), bins).edges
            panels.append({"edges": edges, "c_real": _hist(_log(getattr(real, label)), edges),
                           "c_gen": _hist(_log(getattr(gen, label)), edges),
                           "xlabel": f"$\\log_{{10}}$({text} / {unit})",
                           "title": f"{text}: JS {m[f'js_{label}']['value']:.3f}"})
        return panels

    jobs.append(lambda: grid_figure(totals_panels(), folder / "totals.png", 2,
                                    "total E = Σ E + MET, total pT = Σ |pT| (seed 003)", labels))
    figs.append({"file": "totals.png", "caption": "total energy (object energies + MET) and scalar sum of the "
                                                  "object pT per event"})

    def count_panels():
        panels = []
        cr, cg = real.count_vectors, gen.count_vectors
        cols = [(cr[:, i], cg[:, i], f"$n_{{{t}}}$", f"{t}: JS {m[f'count_js_{t}']['value']:.3f}")
                for i, t in enumerate(OBJECT_TYPES)]
        cols.append((cr.sum(1), cg.sum(1), "objects per event", f"all: JS {m['multiplicity_js']['value']:.3f}"))
        for a, b, xlabel, title in cols:
            top = int(max(a.max(initial=0), b.max(initial=0))) + 1
            edges = np.arange(top + 1) - 0.5
            panels.append({"edges": edges, "c_real": np.bincount(a, minlength=top).astype(float),
                           "c_gen": np.bincount(b, minlength=top).astype(float), "xlabel": xlabel,
                           "title": title, "logy": True, "integer": True})
        return panels

    jobs.append(lambda: grid_figure(count_panels(), folder / "counts.png", 4, "object multiplicities per type",
                                    labels))
    figs.append({"file": "counts.png", "caption": "number of objects per event, per type and in all", "wide": True})

    if cls_result is not None:
        from hepgen.report.plots import comparison_plot

        def weights():
            lw_real = np.clip(np.log10(cls_result.weights("real")), -2.999, 2.999)
            lw_gen = np.clip(np.log10(cls_result.weights("gen")), -2.999, 2.999)
            comparison_plot(lw_real, lw_gen, folder / "classifier_weights.png",
                            r"$\log_{10} w$, $w = C / (1 - C)$", edges=np.linspace(-3, 3, 61),
                            reference_label=f"{labels[0]} (test)", generated_label=f"{labels[1]} (test)",
                            logy=True, title=f"AUC {cls_result.value:.3f}")

        jobs.append(weights)
        figs.append({"file": "classifier_weights.png",
                     "caption": "classifier weights of the test events (raw outputs; beyond ±3 in the edge bins)"})
    for job in tqdm(jobs, desc="plots", disable=not progress, leave=False):
        job()
    return sections


# ---------------------------------------------------------------------------------------
# the evaluation
# ---------------------------------------------------------------------------------------
def evaluate_events(
    real_path: str | os.PathLike,
    gen_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    plots: bool = True,
    classifier_runs: int = 3,
    classifier_epochs: int = 30,
    max_events: int | None = None,
    bootstrap: int = 5,
    bins: int = BINS,
    max_order: Mapping[str, int] | int | None = None,
    unit: str = "MeV",
    classifier_options: dict | None = None,
    device=None,
    progress: bool = True,
    echo=print,
    labels: tuple[str, str] = ("reference", "generated"),
) -> EventEvaluation:
    """Compare generated with reference events (Dark Machines text files) and write the
    report folder ``out_dir``.

    ``max_events`` reads at most that many events of each file; ``classifier_runs=0``
    skips the classifier; ``classifier_options`` go to
    :func:`hepgen.metrics.calo.classifier_auc` (over :data:`CLASSIFIER_OPTIONS`);
    ``unit`` is the files' energy unit (plot labels and the selection cuts only).
    """
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_options(classifier_epochs, classifier_runs, max_events, bootstrap, bins, unit)
    orders = resolve_max_order(max_order)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out: {out_dir} exists and is not a folder")
    if not out_dir.parent.exists():
        raise InputFileError(f"--out: parent folder {out_dir.parent} does not exist")
    with _timed(timing, "read"):
        real = _load(Path(real_path), "real", max_events, progress)
        gen = _load(Path(gen_path), "gen", max_events, progress)
    n_cls = min(len(real), len(gen))
    if classifier_runs and n_cls < 10:
        raise InvalidDataError(f"the classifier test needs at least 10 events per sample, got {n_cls}; "
                               "use --classifier-runs 0 to skip it")
    echo(f"{len(real)} reference and {len(gen)} generated events")

    with _timed(timing, "distances"):
        d_real, d_gen = event_distributions(real, orders), event_distributions(gen, orders)
        result = event_metrics(d_real, d_gen, bins=bins, bootstrap=bootstrap, seed=seed, progress=progress)
        by_type = event_metrics(real, gen, max_order=1, bins=bins, bootstrap=bootstrap, seed=seed, progress=progress)

    metrics: dict = {k: result.metrics[k] for k in ("w1_avg", "kl_avg", "js_avg")}
    cls_result = None
    if classifier_runs:
        from hepgen.metrics.calo import classifier_auc

        opts = {**CLASSIFIER_OPTIONS, **(classifier_options or {})}
        echo(f"training the event classifier ({classifier_runs} run(s) x {classifier_epochs} epochs) ...")
        with _timed(timing, "classifier"):
            x_real, x_gen = event_feature_matrix(real, orders), event_feature_matrix(gen, orders)
            cls_result = classifier_auc(x_real, x_gen, epochs=classifier_epochs, runs=classifier_runs, seed=seed,
                                        device=device, progress=progress, desc="event classifier", **opts)
            num_inputs = x_real.shape[1]
            del x_real, x_gen
        metrics["auc"] = _mv(cls_result.value, cls_result.error)
        metrics["classifier_jsd"] = _mv(np.mean(cls_result.jsds), np.std(cls_result.jsds))

    select, select_name = selection_function()
    if select is not None:
        with _timed(timing, "selection"):
            for tag, sample in (("", gen), ("_real", real)):
                ok = np.asarray(select(sample, unit=unit), bool)
                p = float(ok.mean())
                metrics[f"valid_fraction{tag}"] = _mv(p, math.sqrt(p * (1 - p) / len(ok)))
    for k in ("w1_avg", "kl_avg", "js_avg"):
        metrics[f"{k}_by_type"] = by_type.metrics[k]
    metrics.update({k: v for k, v in result.metrics.items() if k not in metrics})
    metrics["info"] = {
        "n_real": len(real), "n_gen": len(gen), "unit": unit, "bins": bins, "bootstrap": bootstrap, "seed": seed,
        "max_order": orders, "min_objects": MIN_OBJECTS,
        "weights": result.weights, "weights_by_type": by_type.weights,
        "skipped": result.skipped, "selection": select_name,
        "classifier": ({"epochs": classifier_epochs, "runs": classifier_runs, "best_epochs": cls_result.best_epochs,
                        "inputs": int(num_inputs),
                        **{k: list(v) if isinstance(v, tuple) else v for k, v in
                           {**CLASSIFIER_OPTIONS, **(classifier_options or {})}.items() if k != "device"}}
                       if cls_result is not None else None),
    }

    title = f"Events: {Path(gen_path).name} vs {Path(real_path).name}"
    with atomic_folder(out_dir) as tmp:
        sections = []
        if plots:
            with _timed(timing, "plots"):
                sections = _make_plots(tmp, d_real, d_gen, result, cls_result, unit, bins, labels, progress)
        timing["total"] = round(time.perf_counter() - t_start, 3)
        metrics["timing_s"] = timing
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        from hepgen.report.html import render_report

        ours = [metrics[k]["value"] for k in ("w1_avg", "kl_avg", "js_avg")]
        thesis_rows = [{"name": name, "cells": [f"{v:.3g}" for v in vals[:3]] + [f"{vals[3]:g} (RTX 3060)"]}
                       for name, vals in THESIS_TABLE_7_20.items()]
        dist_rows, per_distribution = [], set()
        for name, feats in result.features.items():
            for f, feat in enumerate(feats):
                dist_rows.append({"name": name, "feature": feat, "n_real": result.weights[name],
                                  "n_gen": d_gen.count(name),
                                  "cells": [metrics[f"{k}_{name}_{feat}"] for k in ("w1", "kl", "js")]})
                per_distribution.update(f"{k}_{name}_{feat}" for k in ("w1", "kl", "js"))
        render_report(
            tmp / "report.html", template="events.html", title=title, real=str(real_path), gen=str(gen_path),
            n_real=len(real), n_gen=len(gen), unit=unit, summary=summary_rows(metrics),
            ours=[{"value": v, "error": metrics[k]["error"]} for v, k in zip(ours, ("w1_avg", "kl_avg", "js_avg"))],
            thesis_rows=thesis_rows, dist_rows=dist_rows, skipped=result.skipped,
            event_rows=[(k, v) for k, v in metrics.items() if isinstance(v, dict) and set(v) == {"value", "error"}
                        and k not in per_distribution],
            timing=timing, sections=sections, selection=select_name, bins=bins,
        )
    echo(format_table(metrics, title))
    return EventEvaluation(metrics, out_dir)
