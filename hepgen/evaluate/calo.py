"""``hepgen evaluate calo``: generated vs reference calorimeter showers -> metrics.json, plots, report.html.

The CaloChallenge evaluation (Krause et al., arXiv:2410.21611, and the challenge's
``evaluate.py``): separation powers of the high-level-feature histograms, low- and
high-level classifier AUCs with the distribution of the classifier weights, FPD and KPD
on the high-level features, E_tot/E_inc per incident energy where the energies are
discrete (DS1), average-shower images and, for the regular ILD-like grid, the
observables of :mod:`hepgen.metrics.grid`. Both files must use the same geometry; their
incident energies are used as given.

Two protocols (``--protocol``; named in ``metrics.json`` under ``info.protocol`` and in
the report):

* ``hepgen`` (default): no voxel threshold unless ``--cut`` is given; the classic 14
  high-level features for DS1 photons (log10 E_inc/GeV, log10 E_layer, centres and widths
  in eta/phi of the angularly binned layers, :func:`~hepgen.metrics.calo.high_level_inputs`)
  for the high-level classifier and FPD/KPD; classifier inputs standardised, the epoch of
  the lowest validation loss, the AUC of the raw outputs; per-energy E_tot/E_inc
  histograms binned on each energy's reference spread.
* ``calochallenge``: the recipe of the challenge's 2024-25 ``evaluate.py``, to compare with
  its published table: voxels below :data:`CALOCHALLENGE_CUT_MEV` set to 0 in both samples
  (1 MeV for DS1); the 30-feature vector of DS1 photons
  (:func:`~hepgen.metrics.calo.calochallenge_inputs`, in the challenge's column order: log
  E_inc, log E_layer, eta/phi centres and widths where binned in angle, log E_tot, and per
  layer the sparsity and the centre and width in r) for
  the high-level classifier and FPD/KPD; raw classifier inputs (log10 E_inc/MeV,
  voxels / E_inc) to a float64 MLP of 3 x 2048 nodes, training/selection splits of the
  challenge's fixed sizes (80k/20k showers for DS1, 60k/20k for DS2/DS3, the rest
  reported; :data:`CALOCHALLENGE_SPLIT`), the epoch of the best validation accuracy, the
  AUC after isotonic calibration on the validation split, reported on the test split
  (:data:`PROTOCOL_CLASSIFIER`); FPD and KPD as jetnet's defaults draw them (batches of
  20k-50k and 5000 showers, seed 42) whatever the sample sizes; E_tot/E_inc per energy
  with the challenge's bins.

The separation powers of all other histograms use hepgen's binning in both protocols.

``metrics.json`` holds ``{"value": v, "error": e}`` for every metric (``auc_low``,
``auc_high``, ``fpd``, ``kpd``, ``sep_<histogram>``, ``per_energy_sep_<E>MeV``, ...) plus
three entries of another shape: ``flagged`` (the separation-power keys whose excess over
the statistical floor is above the threshold, worst first), ``info`` (protocol, sample
sizes, options, per-histogram floors) and ``timing_s`` (seconds per stage). The per-energy
separations are kept out of ``flagged`` and ``separation_power_max``/``_mean`` (their
own maximum is ``per_energy_sep_max``).

Memory: by default (``stream=True``) each file is read once in chunks; features, the
average shower and the grid observables are accumulated chunk by chunk, and the voxel
classifiers read their batches from raw scratch files
(:class:`~hepgen.metrics.calo.FileRows`), so the peak memory does not grow with the
number of voxels x showers. The in-memory path (``stream=False``) gives the same numbers.

As for the jets, the output folder is filled only after everything has been computed and
drawn in a temporary sibling folder, so a failing run never leaves half a report or
spoils an earlier one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from hepgen.data.calo import ShowerSample, iter_showers, read_showers, shower_file_info
from hepgen.data.geometry import CaloGeometry
from hepgen.data.atomic import atomic_folder
from hepgen.errors import HepgenError, InputFileError, InvalidDataError, OptionError
from hepgen.evaluate import Evaluation
from hepgen.metrics.calo import (
    ArrayRows,
    HighLevelFeatures,
    RowFileWriter,
    Separation,
    apply_cut,
    calochallenge_inputs,
    calochallenge_names,
    chunk_rows,
    classifier_auc,
    feature_edges,
    high_level_inputs,
    high_level_names,
    histogram_separation,
    low_level_inputs,
    per_energy_separations,
    physics_distances,
    separation_from_counts,
    separation_powers,
    spectrum_separation,
    weight_tails,
)

#: The evaluation protocols and what they do (stored in metrics.json and the report).
PROTOCOLS = {
    "hepgen": "no voxel threshold unless --cut, 14-style high-level features (log10 E_inc/GeV, "
              "log10 E_layer, eta/phi centres and widths), standardised classifier inputs, epoch of lowest "
              "validation loss, raw-output AUC",
    "calochallenge": "the CaloChallenge evaluate.py recipe (2024-25): voxels below the challenge threshold set to 0, "
                     "high-level vector of log E_inc, per layer energy, eta/phi centres and widths, log E_tot, "
                     "per layer sparsity and r centre and width (30 for DS1 photons), raw classifier inputs "
                     "(log10 E_inc/MeV, voxels/E_inc), float64 MLP 3 x 2048, fixed train/selection split sizes "
                     "(80k/20k DS1, 60k/20k DS2/DS3), epoch of best validation accuracy, AUC after isotonic "
                     "calibration on the validation split, E_tot/E_inc per energy with the challenge's bins",
}
#: Voxel threshold (MeV) of the calochallenge protocol when --cut is not given: 1 MeV for
#: DS1 (measured side by side with the official evaluate.py), the datasets' read-out
#: threshold 0.5 keV / 0.033 = 15.15 keV for DS2/DS3 (the challenge's ``min_energy``; not
#: checked side by side); no threshold for geometries outside the challenge.
CALOCHALLENGE_CUT_MEV = {"ds1-photons": 1.0, "ds1-pions": 1.0, "ds2": 0.5e-3 / 0.033, "ds3": 0.5e-3 / 0.033}
#: Classifier recipe of each protocol (options of :func:`hepgen.metrics.calo.classifier_auc`,
#: overridden by ``classifier_options``). The challenge's 2024-25 ``evaluate.py``: a DNN of
#: 3 hidden layers of 2048 nodes (its ``--cls_n_hidden 2048``, ``--cls_n_layer 2`` plus the
#: input layer), leaky ReLU, no dropout, Adam lr 2e-4, batches of 1000, 50 epochs, in
#: float64 (torch's default dtype there; ``dtype="float32"`` halves time and scratch disk at
#: the price of rounding), split sizes :data:`CALOCHALLENGE_SPLIT`.
PROTOCOL_CLASSIFIER = {
    "hepgen": {},
    "calochallenge": {"standardise": False, "select": "accuracy", "calibrated_auc": True, "batch_size": 1000,
                      "lr": 2e-4, "hidden": (2048, 2048, 2048), "dropout": 0.0, "dtype": "float64",
                      "split": (0.6, 0.2, 0.2)},
}
#: Showers per sample in the challenge's training and epoch-selection/calibration splits
#: (its ``ttv_split(..., dataset=...)``); the rest of the sample is the split whose AUC is
#: reported (21,000 of DS1 photons' 121,000 test showers, 20,800 of the pions' 120,800,
#: 20,000 of DS2/DS3's 100,000). Smaller samples (where the official script cannot run)
#: fall back to the 60/20/20 fractions of the challenge's earlier versions.
CALOCHALLENGE_SPLIT = {"ds1-photons": (80_000, 20_000), "ds1-pions": (80_000, 20_000),
                       "ds2": (60_000, 20_000), "ds3": (60_000, 20_000)}
#: Seed of jetnet's FPD and KPD, which the challenge calls with their defaults.
JETNET_SEED = 42

CLASSIFIERS = ("low", "high", "low_normed")
CLASSIFIER_TITLES = {"low": "low-level (voxels / E_inc)", "high": "high-level features",
                     "low_normed": "low-level (voxels / E_layer)"}
#: Titles and axis labels of the per-shower histograms (prefix -> (title, x label, log x)).
FEATURE_LABELS = {
    "e_ratio": ("E_tot / E_inc", r"$E_{tot} / E_{inc}$", False),
    "depth": ("longitudinal centre of gravity", "energy-weighted mean layer", False),
    "depth_width": ("longitudinal width", "energy-weighted std of the layer number", False),
    "mean_r": ("mean radius", "energy-weighted mean voxel radius [mm]", False),
    "e_layer": ("energy per layer", "$E_{layer}$ [MeV]", True),
    "center_x": ("centre of energy in x per layer", "$\\langle x \\rangle$ [mm]", False),
    "center_y": ("centre of energy in y per layer", "$\\langle y \\rangle$ [mm]", False),
    "width_x": ("width in x per layer", "$\\sigma_x$ [mm]", False),
    "width_y": ("width in y per layer", "$\\sigma_y$ [mm]", False),
    "sparsity": ("sparsity per layer (fraction of empty voxels)", "sparsity", False),
}


CaloEvaluation = Evaluation


# ---------------------------------------------------------------------------------------
# input
# ---------------------------------------------------------------------------------------
def _load(path: Path, role: str, geometry) -> ShowerSample:
    try:
        return read_showers(path, geometry)
    except HepgenError as exc:
        raise type(exc)(f"--{role}: {exc}") from None


def _info(path: Path, role: str, geometry) -> tuple[int, CaloGeometry]:
    """Number of showers and geometry of a file, checked without reading the voxels."""
    try:
        return shower_file_info(path, geometry)
    except HepgenError as exc:
        raise type(exc)(f"--{role}: {exc}") from None


def same_geometry(a: CaloGeometry, b: CaloGeometry) -> bool:
    return (a.kind, a.layers, a.grid_shape, a.cell_size) == (b.kind, b.layers, b.grid_shape, b.cell_size)


def _check_options(cut, classifier_epochs, classifier_runs, flag_threshold, hit_cut, classifiers):
    if cut < 0:
        raise OptionError(f"--cut must be >= 0 MeV, got {cut}")
    if hit_cut is not None and hit_cut < 0:
        raise OptionError(f"--hit-cut must be >= 0 MeV, got {hit_cut}")
    if classifier_epochs < 1:
        raise OptionError(f"--classifier-epochs must be positive, got {classifier_epochs}")
    if classifier_runs < 0:
        raise OptionError(f"--classifier-runs must be >= 0 (0 skips the classifiers), got {classifier_runs}")
    if flag_threshold < 0:
        raise OptionError(f"--flag-threshold must be >= 0, got {flag_threshold}")
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown:
        raise OptionError(f"--classifiers: unknown {', '.join(unknown)}; choose from {', '.join(CLASSIFIERS)}")


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
def _mv(value: float, error: float = 0.0) -> dict[str, float]:
    return {"value": float(value), "error": float(error)}


def format_table(metrics: dict, title: str) -> str:
    """The one-screen summary printed at the end."""
    rows = summary_rows(metrics)
    width = max(len(r[0]) for r in rows)
    lines = [title, "-" * min(100, max(len(title), width + 30))]
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """(label, formatted value) of the headline numbers."""
    rows: list[tuple[str, str]] = []

    def add(label, key, fmt="{:.4f} ± {:.4f}"):
        if key in metrics:
            rows.append((label, fmt.format(metrics[key]["value"], metrics[key]["error"])))

    info = metrics.get("info", {})
    if "protocol" in info:
        rows.append(("protocol", f"{info['protocol']}: {info.get('protocol_description', '')}"))
    calibrated = any(f"auc_{kind}_uncalibrated" in metrics for kind in CLASSIFIERS)
    for kind in CLASSIFIERS:
        add(f"AUC {CLASSIFIER_TITLES[kind]}" + (" (calibrated)" if calibrated else ""), f"auc_{kind}")
    for kind in CLASSIFIERS:
        if f"w_frac_lt_0.1_{kind}" in metrics:
            lo, hi = metrics[f"w_frac_lt_0.1_{kind}"]["value"], metrics[f"w_frac_gt_10_{kind}"]["value"]
            rows.append((f"weights ({kind}): w<0.1 / w>10", f"{100 * lo:.2f} % / {100 * hi:.2f} %"))
    add("FPD (high-level features)", "fpd", "{:.3g} ± {:.2g}")
    add("KPD (high-level features)", "kpd", "{:.3g} ± {:.2g}")
    seps = {k: v["value"] for k, v in metrics.items() if k.startswith("sep_")}
    if seps:
        worst = max(seps, key=seps.get)
        rows.append(("separation power max", f"{seps[worst]:.4f} ({worst[4:]})"))
        add("separation power mean", "separation_power_mean", "{:.4f}")
        if info.get("per_energy_max_key") in metrics:
            key = info["per_energy_max_key"]
            rows.append((f"E_tot/E_inc per energy: max of {len(info['per_energy'])}",
                         f"{metrics[key]['value']:.4f} (at {key[len('per_energy_sep_'):]})"))
        flagged = metrics["flagged"]
        rows.append((f"flagged (> floor + {info['flag_threshold']:g})",
                     f"{len(flagged)} of {len(seps)}"
                     + (": " + ", ".join(k[4:] for k in flagged[:5]) if flagged else "")
                     + (" ..." if len(flagged) > 5 else "")))
    for key, label in (("grid_e_vis_mu90", "E_vis mu90"), ("grid_n_hits_mu90", "n_hits mu90")):
        if f"{key}_real" in metrics:
            rows.append((f"{label} ref / gen",
                         f"{metrics[f'{key}_real']['value']:.4g} / {metrics[f'{key}_gen']['value']:.4g}"))
    for key, label in (("grid_e_vis_mu90", "E_vis mu90"), ("grid_e_vis_sigma90", "E_vis sigma90")):
        if f"{key}_per_energy_max_dev" in metrics:
            rows.append((f"{label} gen / ref per E_inc bin: max |ratio - 1|",
                         f"{metrics[f'{key}_per_energy_max_dev']['value']:.4f}"))
    add("max |corr. difference|", "grid_corr_max_abs_diff", "{:.3f}")
    timing = metrics.get("timing_s", {})
    if timing:
        rows.append(("time [s]", ", ".join(f"{k} {v:.1f}" for k, v in timing.items())))
    return rows


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _plt():
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    return plt


def _normalised(counts: np.ndarray):
    """In-range fractions of entries and their errors from counts with flow bins."""
    n = max(counts.sum(), 1)
    inside = counts[1:-1]
    return inside / n, np.sqrt(inside) / n


def _draw_ratio_pair(ax, axr, edges, y_real, e_real, y_gen, e_gen, labels, logx=False, logy=False,
                     legend=True, small=False):
    centres = np.sqrt(edges[:-1] * edges[1:]) if logx else 0.5 * (edges[:-1] + edges[1:])
    ax.stairs(y_real, edges, fill=True, alpha=0.3, color="C0", label=labels[0])
    ax.stairs(y_real, edges, color="C0", lw=1)
    ax.stairs(y_gen, edges, color="C1", lw=1.5, label=labels[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(y_real > 0, y_gen / y_real, np.nan)
        err = np.where(y_real > 0, ratio * np.sqrt((e_gen / np.where(y_gen > 0, y_gen, 1)) ** 2
                                                   + (e_real / y_real) ** 2), np.nan)
    axr.axhline(1, color="gray", lw=0.8)
    if small:  # many panels: one line artist instead of an errorbar container per panel
        axr.stairs(ratio, edges, color="C1", lw=0.8, baseline=None)
    else:
        axr.errorbar(centres, ratio, yerr=err, fmt="o", ms=3, color="C1", elinewidth=0.8)
    axr.set_ylim(0.5, 1.5)
    for a in (ax, axr):
        a.set_xlim(edges[0], edges[-1])
        if logx:
            a.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.tick_params(labelbottom=False)
    if legend:
        ax.legend(fontsize="x-small" if small else "small")


def step_ratio_plot(edges, y_real, y_gen, path, xlabel, ylabel="fraction of entries", e_real=None, e_gen=None,
                    labels=("reference", "generated"), logx=False, logy=False, vlines=(), title=None) -> Path:
    """Two step curves (reference filled) with a generated/reference ratio panel; for
    binned quantities that are not raw samples (profiles, spectra kept as counts)."""
    plt = _plt()
    y_real, y_gen = np.asarray(y_real, float), np.asarray(y_gen, float)
    e_real = np.zeros_like(y_real) if e_real is None else np.asarray(e_real, float)
    e_gen = np.zeros_like(y_gen) if e_gen is None else np.asarray(e_gen, float)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(8, 8), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    _draw_ratio_pair(ax, axr, np.asarray(edges, float), y_real, e_real, y_gen, e_gen, labels, logx, logy)
    for x, text in vlines:
        for a in (ax, axr):
            a.axvline(x, color="k", ls="--", lw=1)
        ax.text(x, 0.97, f" {text}", transform=ax.get_xaxis_transform(), va="top", fontsize="x-small")
    ax.set_ylabel(ylabel)
    axr.set_xlabel(xlabel)
    axr.set_ylabel(f"{labels[1]} / {labels[0]}", fontsize="x-small")
    if title:
        ax.set_title(title, fontsize="small", loc="right")
    path = Path(path)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def energy_bins_plot(stats: dict, path, labels=("reference", "generated"), title=None) -> Path:
    """Response and resolution against the incident energy (seed 001 Figs. 6.9, 7.11): per
    observable (a column each; ``stats`` maps a label to an
    :class:`~hepgen.metrics.grid.EnergyBinStats`) mu90 and sigma90 / mu90 per E_inc bin, the
    reference as a band and the model as points, with generated / reference ratio panels."""
    plt = _plt()
    fig, axes = plt.subplots(4, len(stats), figsize=(5.5 * len(stats), 10), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1, 3, 1], "hspace": 0.08, "wspace": 0.3})
    for col, (label, st) in enumerate(stats.items()):
        x = st.centres / 1e3
        half = 0.5 * np.diff(st.edges) / 1e3
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = (("mu90", st.mu90_real, st.mu90_gen, st.errors("mu90", "real"), st.errors("mu90", "gen"),
                     rf"$\mu_{{90}}$ of {label}"),
                    ("res", st.sigma90_real / st.mu90_real, st.sigma90_gen / st.mu90_gen,
                     st.errors("sigma90", "real") / st.mu90_real, st.errors("sigma90", "gen") / st.mu90_gen,
                     rf"$\sigma_{{90}} / \mu_{{90}}$ of {label}"))
        for k, (_, y_real, y_gen, e_real, e_gen, ylabel) in enumerate(rows):
            ax, axr = axes[2 * k, col], axes[2 * k + 1, col]
            ax.fill_between(np.repeat(st.edges / 1e3, 2)[1:-1], np.repeat(y_real - e_real, 2),
                            np.repeat(y_real + e_real, 2), color="C0", alpha=0.3, label=labels[0])
            ax.errorbar(x, y_gen, xerr=half, yerr=e_gen, fmt="o", ms=3, color="C1", label=labels[1])
            ax.set_ylabel(ylabel)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = y_gen / y_real
                err = np.abs(ratio) * np.sqrt((e_gen / y_gen) ** 2 + (e_real / y_real) ** 2)
            axr.axhline(1, color="gray", lw=0.8)
            axr.errorbar(x, ratio, xerr=half, yerr=err, fmt="o", ms=3, color="C1", elinewidth=0.8)
            finite = ratio[np.isfinite(ratio)]
            span = max(0.1, min(1.0, 1.2 * float(np.abs(finite - 1).max()))) if finite.size else 0.5
            axr.set_ylim(1 - span, 1 + span)
            axr.set_ylabel("gen / ref", fontsize="x-small")
            if k == 0 and col == 0:
                ax.legend(fontsize="small")
        axes[-1, col].set_xlabel(r"$E_{inc}$ [GeV]")
    if title:
        fig.suptitle(title, fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def separation_plot(sep: Separation, path, xlabel, labels, logx=False, logy=False, vlines=(), title=None) -> Path:
    y1, e1 = _normalised(sep.counts_real)
    y2, e2 = _normalised(sep.counts_gen)
    title = (title + ", " if title else "") + f"sep. power {sep.value:.4f}"
    return step_ratio_plot(sep.edges, y1, y2, path, xlabel, e_real=e1, e_gen=e2, labels=labels, logx=logx,
                           logy=logy, vlines=vlines, title=title)


def layer_grid_plot(seps: dict, path, title, xlabel, labels, logx=False, ncols=9, panel="layer {}") -> Path:
    """One small histogram + ratio panel per layer (keyed by layer id; ``panel`` formats the
    key in the panel title), sep. power in each."""
    plt = _plt()
    import matplotlib

    layers = list(seps)
    ncols = min(ncols, len(layers))
    nrows = int(np.ceil(len(layers) / ncols))
    from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

    # drawing ticks dominates the time of a 90-axes figure: few major ticks, no minor ones,
    # no tight bounding box (a second full draw)
    with matplotlib.rc_context({"font.size": 7, "xtick.labelsize": 6, "ytick.labelsize": 5,
                                "xtick.major.size": 3, "ytick.major.size": 3, "xtick.minor.visible": False,
                                "ytick.minor.visible": False, "axes.linewidth": 0.6}):
        height = 2.1 * nrows + 0.6
        fig = plt.figure(figsize=(2.3 * ncols, height))
        outer = fig.add_gridspec(nrows, ncols, hspace=0.45, wspace=0.3, left=0.03, right=0.99,
                                 bottom=0.4 / height, top=1 - 0.55 / height)
        for i, layer in enumerate(layers):
            inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
            ax, axr = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            s = seps[layer]
            y1, e1 = _normalised(s.counts_real)
            y2, e2 = _normalised(s.counts_gen)
            _draw_ratio_pair(ax, axr, s.edges, y1, e1, y2, e2, labels, logx=logx, legend=(i == 0), small=True)
            ax.set_title(f"{panel.format(layer)}: {s.value:.3f}", fontsize=7, pad=2)
            ax.yaxis.set_major_locator(NullLocator())
            axr.yaxis.set_major_locator(MaxNLocator(2))
            for a in (ax, axr):
                a.xaxis.set_major_locator(LogLocator(numticks=4) if logx else MaxNLocator(3))
                a.minorticks_off()
        fig.suptitle(f"{title} ({xlabel}); panel titles: separation power", fontsize=10)
        path = Path(path)
        fig.savefig(path, dpi=70)
        plt.close(fig)
    return path


def _mosaic(images: np.ndarray, ncols: int) -> np.ndarray:
    """Tile (L, h, w) images into one array, NaN gaps of one pixel between tiles."""
    n, h, w = images.shape
    nrows = int(np.ceil(n / ncols))
    out = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[i]
    return out


def average_shower_plot(mean_real: np.ndarray, mean_gen: np.ndarray, geometry: CaloGeometry, path,
                        labels=("reference", "generated")) -> Path:
    """Average shower per layer for both samples (and their ratio for regular geometries):
    unrolled (alpha x r) or (x x y) images tiled layer by layer, or polar images per layer
    for the irregular DS1 geometries."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    pos = np.concatenate([mean_real[mean_real > 0], mean_gen[mean_gen > 0]])
    vmax = float(pos.max()) if pos.size else 1.0
    norm = LogNorm(vmin=max(float(pos.min()) if pos.size else 1e-3, vmax * 1e-6), vmax=vmax)
    ids = list(geometry.layer_slices)
    if geometry.is_regular:
        import matplotlib.patheffects as pe

        shape = geometry.shape
        n, h, w = shape
        # tiles per row so that each mosaic is about three times as wide as high
        ncols = min(range(1, n + 1), key=lambda c: abs(c * (w + 1) / (np.ceil(n / c) * (h + 1)) - 3.0))
        tiles = [_mosaic(m.reshape(shape), ncols) for m in (mean_real, mean_gen)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(tiles[0] > 0, tiles[1] / tiles[0], np.nan)
        aspect = tiles[0].shape[1] / tiles[0].shape[0]
        fig, axes = plt.subplots(3, 1, figsize=(16, 3 * 14 / aspect + 1.5), layout="constrained")
        what = "alpha bins down, r bins across" if geometry.kind == "polar" else "x cells down, y cells across"
        for ax, img, name in zip(axes, tiles + [ratio], [*labels, f"{labels[1]} / {labels[0]}"]):
            if img is ratio:
                im = ax.imshow(img, norm=LogNorm(0.5, 2.0), cmap="RdBu_r", interpolation="nearest")
            else:
                im = ax.imshow(np.where(img > 0, img, np.nan), norm=norm, cmap="viridis", interpolation="nearest")
            ax.set_title(name, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.minorticks_off()
            for i, layer in enumerate(ids):
                r, c = divmod(i, ncols)
                ax.text(c * (w + 1) - 0.3, r * (h + 1) - 0.3, str(layer), color="w", fontsize=8, va="top",
                        ha="left", path_effects=[pe.withStroke(linewidth=1.5, foreground="k")])
            fig.colorbar(im, ax=ax, shrink=0.9, label="mean energy [MeV]" if img is not ratio else "ratio")
        fig.suptitle(f"average shower, one tile per layer (layer number in the corner; {what})", fontsize="small")
    else:
        layers = [layer for layer in geometry.layers if layer.num_voxels]
        slices = list(geometry.layer_slices.values())
        fig = plt.figure(figsize=(3.2 * len(layers), 7))
        for row, (mean, name) in enumerate(zip((mean_real, mean_gen), labels)):
            for j, (layer, sl) in enumerate(zip(layers, slices)):
                ax = fig.add_subplot(2, len(layers), row * len(layers) + j + 1, polar=True)
                img = mean[sl].reshape(layer.n_alpha, layer.n_r)
                theta = np.linspace(0, 2 * np.pi, max(layer.n_alpha, 1) * 8 + 1)
                rep = np.repeat(img, 8, axis=0)
                edges = np.asarray(layer.r_edges)
                rr = np.log1p(edges)  # log radius: the DS1 bins span 0-2000 mm
                im = ax.pcolormesh(theta, rr, np.where(rep > 0, rep, np.nan).T, norm=norm, cmap="viridis")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                ax.set_title(f"{name}\nlayer {layer.index}", fontsize="x-small")
        fig.colorbar(im, ax=fig.axes, shrink=0.6, label="mean energy [MeV]")
        fig.suptitle("average shower per layer (radius on a log(1 + r/mm) scale)", fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=70, bbox_inches="tight")
    plt.close(fig)
    return path


def correlation_plot(names: Sequence[str], c_real: np.ndarray, c_gen: np.ndarray, path,
                     labels=("reference", "generated")) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(27, 8.5), layout="constrained")
    for ax, mat, title, cmap, lim in zip(
            axes, (c_real, c_gen, c_gen - c_real), (*labels, f"{labels[1]} - {labels[0]}"),
            ("RdBu_r", "RdBu_r", "PiYG"), (1.0, 1.0, max(0.1, float(np.abs(c_gen - c_real).max())))):
        im = ax.imshow(mat, cmap=cmap, vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize="x-small")
        ax.set_yticks(range(len(names)), names, fontsize="x-small")
        ax.minorticks_off()
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=11)
        ax.set_title(title, fontsize="small")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle("correlations of shower observables", fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=70, bbox_inches="tight")
    plt.close(fig)
    return path


def _profile(values: np.ndarray):
    """Mean over showers and its standard error."""
    return values.mean(0), values.std(0) / np.sqrt(max(len(values), 1))


# ---------------------------------------------------------------------------------------
# the evaluation
# ---------------------------------------------------------------------------------------
@contextmanager
def _timed(timing: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timing[key] = round(timing.get(key, 0.0) + time.perf_counter() - t0, 3)


def _file_chunks(path: Path, role: str, geo: CaloGeometry, cut: float, step: int) -> Iterator[tuple]:
    """(incident energies (n,) float64, showers (n, voxels) float32 with the cut applied) of
    a file, ``step`` showers at a time (one chunk in memory); content errors name the role."""
    try:
        for chunk in iter_showers(path, geo, chunk_size=step):
            yield chunk.incident_energies[:, 0].astype(np.float64), apply_cut(chunk.showers, cut)
    except HepgenError as exc:
        raise type(exc)(f"--{role}: {exc}") from None


def _memory_chunks(sample: ShowerSample, cut: float, step: int) -> Iterator[tuple]:
    """The same chunks from a sample in memory."""
    showers = apply_cut(sample.showers, cut)
    e_inc = sample.incident_energies[:, 0].astype(np.float64)
    for lo in range(0, len(sample), step):
        yield e_inc[lo:lo + step], showers[lo:lo + step]


@dataclass
class _Scan:
    """What one pass over a sample gives: features, the average shower, the grid
    observables (grid geometries) and the classifier input rows by classifier kind."""

    features: HighLevelFeatures
    mean_shower: np.ndarray
    grid: object | None
    rows: dict

    def __len__(self) -> int:
        return len(self.features)


def _merge_grid(parts: list):
    """One :class:`~hepgen.metrics.grid.GridObservables` from those of consecutive chunks."""
    from hepgen.metrics.calo import LogSpectrum
    from hepgen.metrics.grid import GridObservables

    spectrum = LogSpectrum()
    for g in parts:
        spectrum.counts += g.hit_spectrum.counts
        spectrum.zeros += g.hit_spectrum.zeros
    arrays = {k: np.concatenate([getattr(g, k) for g in parts])
              for k in ("e_inc", "n_hits", "e_vis", "cog_x", "cog_y", "cog_z", "longitudinal", "radial")}
    return GridObservables(hit_cut=parts[0].hit_cut, radial_edges=parts[0].radial_edges, hit_spectrum=spectrum,
                           **arrays)


def _scan(chunks: Iterable, geo: CaloGeometry, row_specs: dict, scratch: Path | None, tag: str,
          hit_cut: float | None) -> _Scan:
    """One pass over the chunks of a sample. ``row_specs``: {kind: (normed, energy_unit,
    dtype)} of the voxel classifiers; their input rows go to a raw file in ``scratch``
    (:class:`~hepgen.metrics.calo.FileRows`) or, without scratch, into memory."""
    total = np.zeros(geo.num_voxels)
    grid_parts: list = []
    sinks = {}
    for kind, (normed, unit, dtype) in row_specs.items():
        width = 1 + geo.num_voxels + (geo.num_layers if normed else 0)
        sinks[kind] = RowFileWriter(scratch / f"{tag}_{kind}.rows", width, dtype) if scratch is not None else []

    def tap():
        for e_inc, showers in chunks:
            np.add(total, showers.sum(0, dtype=np.float64), out=total)
            if geo.kind == "grid":
                from hepgen.metrics.grid import grid_observables

                grid_parts.append(grid_observables((e_inc, showers), geo, hit_cut=hit_cut))
            for kind, (normed, unit, dtype) in row_specs.items():
                x = low_level_inputs((e_inc, showers), geo, normed=normed, energy_unit=unit, dtype=dtype)
                if scratch is not None:
                    sinks[kind].write(x)
                else:
                    sinks[kind].append(x)
            yield e_inc, showers

    try:
        features = HighLevelFeatures.from_chunks(tap(), geo)
    except BaseException:
        for sink in sinks.values():
            if isinstance(sink, RowFileWriter):
                sink.finish().close()
        raise
    rows = {kind: sink.finish() if isinstance(sink, RowFileWriter) else ArrayRows(np.concatenate(sink))
            for kind, sink in sinks.items()}
    n = max(len(features), 1)
    return _Scan(features, total / n, _merge_grid(grid_parts) if grid_parts else None, rows)


def protocol_classifier(protocol: str, geometry: CaloGeometry, n: int, options: dict | None = None) -> dict:
    """Options of :func:`~hepgen.metrics.calo.classifier_auc` for a protocol, a geometry and
    ``n`` showers per sample: :data:`PROTOCOL_CLASSIFIER` with ``options`` on top; for the
    calochallenge protocol the challenge's fixed split sizes (:data:`CALOCHALLENGE_SPLIT`)
    where the samples hold them and leave at least 2 showers to report on, unless
    ``options`` sets ``split`` or ``split_counts``."""
    recipe = {**PROTOCOL_CLASSIFIER[protocol], **(options or {})}
    if protocol == "calochallenge" and not {"split", "split_counts"} & set(options or {}):
        counts = CALOCHALLENGE_SPLIT.get(geometry.name)
        if counts is not None and n - sum(counts) >= 2:
            recipe["split_counts"] = counts
    return recipe


def protocol_cut(protocol: str, geometry: CaloGeometry) -> float:
    """The voxel threshold (MeV) a protocol applies when ``--cut`` is not given."""
    if protocol == "calochallenge":
        return CALOCHALLENGE_CUT_MEV.get(geometry.name, 0.0)
    return 0.0


def evaluate_calo(
    real_path: str | os.PathLike,
    gen_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    geometry: str | CaloGeometry | None = None,
    cut: float | None = None,
    classifier_epochs: int = 50,
    classifier_runs: int = 3,
    seed: int = 0,
    plots: bool = True,
    echo=print,
    *,
    protocol: str = "hepgen",
    stream: bool = True,
    flag_threshold: float = 0.01,
    hit_cut: float | None = None,
    classifiers: Sequence[str] = ("low", "high"),
    classifier_options: dict | None = None,
    device=None,
    progress: bool = True,
    labels: tuple[str, str] = ("reference", "generated"),
) -> CaloEvaluation:
    """Compare generated with reference showers and write the report folder ``out_dir``.

    ``protocol``: ``"hepgen"`` (default) or ``"calochallenge"`` (see the module docstring
    and :data:`PROTOCOLS`). ``cut`` (MeV) zeroes smaller voxel energies of both samples
    before everything (default: none for hepgen's protocol, :data:`CALOCHALLENGE_CUT_MEV`
    for the challenge's); ``hit_cut`` is the hit threshold of the grid observables (grid
    geometries only; default: half a MIP of the geometry's cells,
    :data:`hepgen.metrics.grid.HIT_CUTS`); ``classifiers`` picks among ``low``, ``high``, ``low_normed``
    (``classifier_runs=0`` skips them); ``classifier_options`` go to
    :func:`hepgen.metrics.calo.classifier_auc` on top of the protocol's recipe (``hidden``,
    ``dropout``, ``lr``, ``batch_size``, ``dtype``, ...). A separation power is flagged
    when it exceeds the value expected from the sample sizes alone by more than
    ``flag_threshold``.

    ``stream`` (default): the files are read chunk by chunk, once, and the voxel
    classifiers read their input rows batch by batch from raw scratch files beside
    ``out_dir`` (removed at the end; about (N_ref + N_gen) x voxels x 4 bytes of disk), so
    the memory needed is that of the per-shower features and a few chunks, whatever the
    number of voxels. ``stream=False`` reads both files whole; both give the same numbers.
    """
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    classifiers = tuple(dict.fromkeys(classifiers))
    if protocol not in PROTOCOLS:
        raise OptionError(f"--protocol: unknown {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    _check_options(0.0 if cut is None else cut, classifier_epochs, classifier_runs, flag_threshold, hit_cut,
                   classifiers)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out: {out_dir} exists and is not a folder")
    if not out_dir.parent.exists():
        raise InputFileError(f"--out: parent folder {out_dir.parent} does not exist")
    with _timed(timing, "read"):
        n_real, geo = _info(Path(real_path), "real", geometry)
        n_gen, geo_gen = _info(Path(gen_path), "gen", geometry)
        if not same_geometry(geo, geo_gen):
            raise InvalidDataError(
                f"--gen: geometry {geo_gen.name} ({geo_gen.num_voxels} voxels) differs from --real's "
                f"{geo.name} ({geo.num_voxels} voxels); compare showers of the same geometry")
    n_cls = min(n_real, n_gen)
    if classifier_runs and classifiers and n_cls < 10:
        raise InvalidDataError(f"the classifier test needs at least 10 showers per sample, got {n_cls}; "
                               "use --classifier-runs 0 to skip it")
    if n_cls < 4:
        raise InvalidDataError(f"need at least 4 showers per sample, got {n_real} and {n_gen}")
    cut = protocol_cut(protocol, geo) if cut is None else float(cut)
    run_classifiers = bool(classifier_runs and classifiers)
    recipe = protocol_classifier(protocol, geo, n_cls, classifier_options)
    dtype = recipe.get("dtype", "float32")
    energy_unit = 1.0 if protocol == "calochallenge" else 1e3
    row_specs = {kind: (kind == "low_normed", energy_unit, dtype)
                 for kind in classifiers if run_classifiers and kind != "high"}

    echo(f"{geo.describe()}; {n_real} reference and {n_gen} generated showers; protocol {protocol}"
         + (f", voxels below {cut:g} MeV set to 0" if cut > 0 else ""))
    step = chunk_rows(geo.num_voxels)
    scratch = None
    scans: dict[str, _Scan] = {}
    try:
        if stream and row_specs:
            scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.rows.", dir=out_dir.parent))
        with _timed(timing, "features"):
            for role, path in (("real", real_path), ("gen", gen_path)):
                if stream:
                    chunks = _file_chunks(Path(path), role, geo, cut, step)
                else:
                    with _timed(timing, "read"):
                        sample = _load(Path(path), role, geo)
                    chunks = _memory_chunks(sample, cut, step)
                scans[role] = _scan(chunks, geo, row_specs, scratch, role, hit_cut)
                chunks = sample = None
        metrics, seps, per_energy, cls_results, grid = _compute(
            scans["real"], scans["gen"], geo, protocol, recipe, classifiers if run_classifiers else (),
            classifier_epochs, classifier_runs, seed, device, progress, timing, echo)
    finally:
        for scan in scans.values():
            for rows in scan.rows.values():
                rows.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    f_real, f_gen = scans["real"].features, scans["gen"].features

    sep_metrics = {f"sep_{k}": _mv(s.value, s.error) for k, s in seps.items()}
    excess = {f"sep_{k}": s.value - s.floor for k, s in seps.items()}
    flagged = sorted((k for k, v in excess.items() if v > flag_threshold), key=lambda k: -excess[k])
    values = np.array([s.value for s in seps.values()])
    worst = max(seps, key=lambda k: seps[k].value)
    metrics["separation_power_max"] = _mv(seps[worst].value, seps[worst].error)
    metrics["separation_power_mean"] = _mv(values.mean(), values.std() / np.sqrt(len(values)))
    metrics.update(sep_metrics)
    for energy, s in per_energy.items():
        metrics[f"per_energy_sep_{energy:.0f}MeV"] = _mv(s.value, s.error)
    if per_energy:
        e_worst = max(per_energy, key=lambda e: per_energy[e].value)
        metrics["per_energy_sep_max"] = _mv(per_energy[e_worst].value, per_energy[e_worst].error)
    metrics["flagged"] = flagged
    cls_info = {k: v for k, v in recipe.items() if k != "device"}
    if isinstance(cls_info.get("hidden"), tuple):
        cls_info["hidden"] = list(cls_info["hidden"])
    metrics["info"] = {
        "protocol": protocol, "protocol_description": PROTOCOLS[protocol],
        "geometry": geo.name, "n_real": n_real, "n_gen": n_gen, "cut_mev": cut,
        "hit_cut_mev": grid[0].hit_cut if grid is not None else hit_cut,
        "stream": bool(stream), "flag_threshold": flag_threshold, "separation_power_max_key": f"sep_{worst}",
        "high_level_features": _high_level_names(f_real, protocol),
        "classifier": {"epochs": classifier_epochs, "runs": classifier_runs, "kinds": list(cls_results),
                       "best_epochs": {k: r.best_epochs for k, r in cls_results.items()},
                       "split_sizes": {k: list(r.split_sizes) for k, r in cls_results.items()}, **cls_info},
        "separation_power_floor": {f"sep_{k}": round(s.floor, 6) for k, s in seps.items()},
        "per_energy": {f"{e:.0f}": {"n_real": int(s.counts_real.sum()), "n_gen": int(s.counts_gen.sum()),
                                    "floor": round(s.floor, 6)} for e, s in per_energy.items()},
        "per_energy_max_key": f"per_energy_sep_{e_worst:.0f}MeV" if per_energy else None,
    }

    title = (f"Calorimeter showers: {Path(gen_path).name} vs {Path(real_path).name} ({geo.name}), "
             f"protocol {protocol}")
    with atomic_folder(out_dir) as tmp:
        sections = []
        if plots:
            with _timed(timing, "plots"):
                sections = _make_plots(tmp, f_real, f_gen, seps, per_energy, cls_results, grid,
                                       scans["real"].mean_shower, scans["gen"].mean_shower, geo, labels, protocol)
        timing["total"] = round(time.perf_counter() - t_start, 3)
        metrics["timing_s"] = timing
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        from hepgen.report.html import render_report

        summary = summary_rows(metrics)
        sep_rows = sorted(((k, v["value"], v["error"], metrics["info"]["separation_power_floor"][k], k in flagged)
                           for k, v in sep_metrics.items()), key=lambda r: -(r[1] - r[3]))
        render_report(
            tmp / "report.html", template="calo.html", title=title, real=str(real_path), gen=str(gen_path),
            n_real=n_real, n_gen=n_gen, geometry=geo.describe(), cut=cut, summary=summary,
            flagged=flagged, threshold=flag_threshold, sep_rows=sep_rows,
            other=[(k, v) for k, v in metrics.items() if isinstance(v, dict) and set(v) == {"value", "error"}
                   and not k.startswith("sep_")],
            timing=timing, sections=sections,
        )
    echo(format_table(metrics, title))
    return CaloEvaluation(metrics, out_dir)


def _high_level_names(features: HighLevelFeatures, protocol: str) -> list[str]:
    return calochallenge_names(features) if protocol == "calochallenge" else high_level_names(features)


def high_level_vector(features: HighLevelFeatures, protocol: str) -> np.ndarray:
    """The high-level feature vector of a protocol (high-level classifier and FPD/KPD)."""
    return calochallenge_inputs(features) if protocol == "calochallenge" else high_level_inputs(features)


def _compute(real: _Scan, gen: _Scan, geo: CaloGeometry, protocol: str, recipe: dict, classifiers, epochs: int,
             runs: int, seed: int, device, progress: bool, timing: dict, echo):
    """Separation powers, FPD/KPD, classifiers and grid observables of two scans."""
    f_real, f_gen = real.features, gen.features
    with _timed(timing, "separation"):
        seps = separation_powers(f_real, f_gen, seed=seed)
        per_energy = per_energy_separations(f_real, f_gen, protocol=protocol, seed=seed + 2)
    hl_real, hl_gen = high_level_vector(f_real, protocol), high_level_vector(f_gen, protocol)
    with _timed(timing, "fpd_kpd"):
        if protocol == "calochallenge":  # jetnet.evaluation.fpd / kpd with their defaults (seed 42)
            distances = physics_distances(hl_real, hl_gen, seed=JETNET_SEED, jetnet_defaults=True)
        else:
            distances = physics_distances(hl_real, hl_gen, seed=seed)

    metrics: dict = {}
    cls_results = {}
    if classifiers:
        opts = {"epochs": epochs, "runs": runs, "seed": seed, "device": device, "progress": progress, **recipe}
        for kind in classifiers:
            with _timed(timing, f"classifier_{kind}"):
                if kind == "high":
                    x_real, x_gen = hl_real, hl_gen
                else:
                    x_real, x_gen = real.rows[kind], gen.rows[kind]
                echo(f"training the {CLASSIFIER_TITLES[kind]} classifier ({runs} run(s) x {epochs} epochs) ...")
                res = classifier_auc(x_real, x_gen, desc=f"classifier {kind}", **opts)
                del x_real, x_gen
            cls_results[kind] = res
            metrics[f"auc_{kind}"] = _mv(res.value, res.error)
        if recipe.get("calibrated_auc"):
            for kind, res in cls_results.items():
                metrics[f"auc_{kind}_uncalibrated"] = _mv(np.mean(res.raw_aucs), np.std(res.raw_aucs))
        for kind, res in cls_results.items():
            metrics[f"jsd_{kind}"] = _mv(np.mean(res.jsds), np.std(res.jsds))
        for kind, res in cls_results.items():
            for key, v in weight_tails(res.weights("gen")).items():
                metrics[f"w_frac_{key}_{kind}"] = v
    metrics.update(distances)

    grid = None
    if geo.kind == "grid":
        from hepgen.metrics.grid import correlation_matrix, energy_bin_edges, mu90_sigma90, per_energy_mu90_sigma90

        with _timed(timing, "grid"):
            grid = (real.grid, gen.grid)
            rng = np.random.default_rng(seed + 1)
            g_real, g_gen = grid
            hit_cut = g_real.hit_cut
            grid_seps = {"grid_hit_energy": spectrum_separation(g_real.hit_spectrum, g_gen.hit_spectrum,
                                                                lo=max(hit_cut, 1e-6), rng=rng)}
            for name, values in g_real.scalars().items():
                kind = "linear"
                edges = feature_edges(values, kind, 50)
                if name == "n_hits":
                    lo_, hi_ = np.quantile(values, [0.001, 0.999])
                    step = max(1, int(np.ceil((hi_ - lo_ + 1) / 50)))
                    edges = np.arange(np.floor(lo_) - 0.5, np.ceil(hi_) + step + 0.5, step)
                grid_seps[f"grid_{name}"] = histogram_separation(values, g_gen.scalars()[name], edges, rng=rng)
            for name, arr_real, arr_gen, edges in (
                    ("grid_longitudinal_profile", g_real.longitudinal, g_gen.longitudinal,
                     np.arange(g_real.longitudinal.shape[1] + 1) - 0.5),
                    ("grid_radial_profile", g_real.radial, g_gen.radial, g_real.radial_edges)):
                s = separation_power_weighted(arr_real.sum(0), arr_gen.sum(0), edges)
                grid_seps[name] = s
            seps.update(grid_seps)
            for name in ("e_vis", "n_hits"):
                for tag, g in (("real", g_real), ("gen", g_gen)):
                    mu, sigma = mu90_sigma90(getattr(g, name))
                    n90 = max(1, int(0.9 * len(g)))
                    metrics[f"grid_{name}_mu90_{tag}"] = _mv(mu, sigma / np.sqrt(n90))
                    metrics[f"grid_{name}_sigma90_{tag}"] = _mv(sigma, sigma / np.sqrt(2 * n90))
            # per incident-energy bin (seed 001 Figs. 6.9, 7.11): mu90 / sigma90 of the visible
            # energy and of n_hits, the generated over the reference value, in 10 bins of E_inc
            # (fewer for small samples: at least ~50 reference showers a bin). E_vis grows with
            # E_inc inside a 9 GeV bin, so a second reference sample, at other energies, differs
            # by its bin's energy mix (the 10k floor of mu90: 2 %) while a model generated at the
            # reference's energies does not; the response E_vis / E_inc per bin removes that
            # part and gives the floor the model can be held to
            edges = energy_bin_edges(g_real.e_inc)
            binned = {}
            for name in ("e_vis", "n_hits", "response"):
                stats = per_energy_mu90_sigma90(getattr(g_real, name), g_real.e_inc, getattr(g_gen, name),
                                                g_gen.e_inc, edges)
                binned[name] = stats.to_dict()
                for stat in ("mu90", "sigma90"):
                    worst = stats.max_dev(stat)
                    if worst is not None:
                        metrics[f"grid_{name}_{stat}_per_energy_max_dev"] = _mv(worst[0])
                        binned[name][f"{stat}_max_dev_e_inc"] = worst[1]
            metrics["grid_per_energy"] = binned  # per-bin values (which bin is worst), for the report
            c_real = correlation_matrix(g_real.correlation_inputs())
            c_gen = correlation_matrix(g_gen.correlation_inputs())
            metrics["grid_corr_max_abs_diff"] = _mv(np.abs(c_gen - c_real).max())
    return metrics, seps, per_energy, cls_results, grid


def separation_power_weighted(w_real: np.ndarray, w_gen: np.ndarray, edges: np.ndarray) -> Separation:
    """Separation power of two energy-weighted histograms (profiles summed over showers);
    no bootstrap error or statistical floor (both are negligible for energy sums)."""
    c1 = np.concatenate([[0.0], np.asarray(w_real, float), [0.0]])
    c2 = np.concatenate([[0.0], np.asarray(w_gen, float), [0.0]])
    s = separation_from_counts(c1, c2, edges, bootstrap=0)
    s.floor = 0.0
    return s


def _energy_label(energy: float) -> str:
    return f"{energy:.0f} MeV" if energy < 1e3 else (f"{energy / 1e3:.3g} GeV" if energy < 1e6
                                                      else f"{energy / 1e6:.3g} TeV")


def _make_plots(folder: Path, f_real: HighLevelFeatures, f_gen: HighLevelFeatures, seps: dict[str, Separation],
                per_energy: dict[float, Separation], cls_results: dict, grid, mean_real: np.ndarray,
                mean_gen: np.ndarray, geo: CaloGeometry, labels, protocol: str = "hepgen") -> list[dict]:
    """Draw every figure into ``folder``; returns report sections [{title, figures}]."""
    from hepgen.report.plots import comparison_plot

    sections: list[dict] = []

    def section(title):
        sections.append({"title": title, "figures": []})
        return sections[-1]["figures"]

    hf_real, hf_gen = f_real.histogram_features(), f_gen.histogram_features()

    figs = section("Energy and longitudinal shape")
    for name in ("e_ratio", "depth", "depth_width", "mean_r"):
        title, xlabel, logx = FEATURE_LABELS[name]
        s = seps[name]
        comparison_plot(hf_real[name], hf_gen[name], folder / f"{name}.png", xlabel, edges=s.edges,
                        reference_label=labels[0], generated_label=labels[1], logx=logx,
                        title=f"sep. power {s.value:.4f}")
        figs.append({"file": f"{name}.png", "caption": f"{title} (separation power {s.value:.4f})"})
    m_real, e_real = _profile(f_real.e_layer)
    m_gen, e_gen = _profile(f_gen.e_layer)
    step_ratio_plot(np.arange(len(f_real.layer_ids) + 1) - 0.5, m_real, m_gen, folder / "profile_longitudinal.png",
                    "read-out layer (0 .. L-1)", "mean energy [MeV]", e_real, e_gen, labels, logy=True)
    figs.append({"file": "profile_longitudinal.png", "caption": "longitudinal profile: mean energy per layer"})
    m_real, e_real = _profile(f_real.radial)
    m_gen, e_gen = _profile(f_gen.radial)
    step_ratio_plot(f_real.r_edges, m_real, m_gen, folder / "profile_radial.png", "voxel radius [mm]",
                    "mean energy [MeV]", e_real, e_gen, labels, logy=True)
    figs.append({"file": "profile_radial.png", "caption": "radial profile: mean energy per radial bin"})

    if per_energy:
        figs = section("E_tot / E_inc per incident energy")
        layer_grid_plot({_energy_label(e): s for e, s in per_energy.items()}, folder / "e_ratio_per_energy.png",
                        "E_tot / E_inc per incident energy", r"$E_{tot} / E_{inc}$", labels, ncols=5, panel="{}")
        binning = ("the challenge's bins (showers outside are dropped)" if protocol == "calochallenge"
                   else "bins over each energy's reference spread, under-/overflow included")
        figs.append({"file": "e_ratio_per_energy.png", "wide": True,
                     "caption": f"E_tot / E_inc at each incident energy ({binning}; panel title: incident energy, "
                                f"separation power)"})

    figs = section("Per layer")
    for name in ("e_layer", "center_x", "center_y", "width_x", "width_y", "sparsity"):
        title, xlabel, logx = FEATURE_LABELS[name]
        per = {int(k.rsplit("_", 1)[1]): s for k, s in seps.items() if k.rsplit("_", 1)[0] == name}
        if not per:
            continue
        layer_grid_plot(per, folder / f"{name}_layers.png", title, xlabel, labels, logx=logx)
        figs.append({"file": f"{name}_layers.png", "caption": f"{title} (panel title: layer, separation power)",
                     "wide": True})

    figs = section("Voxels")
    s = seps["voxel_energy"]
    separation_plot(s, folder / "voxel_energy.png", "voxel energy [MeV]", labels, logx=True, logy=True,
                    title="non-zero voxels")
    figs.append({"file": "voxel_energy.png",
                 "caption": f"voxel energy spectrum (non-zero voxels; separation power {s.value:.4f})"})
    for k in f_real.brightest_k:
        per = {int(key.rsplit("_", 1)[1]): s for key, s in seps.items() if key.rsplit("_", 1)[0] == f"brightest{k}"}
        if per:
            layer_grid_plot(per, folder / f"brightest{k}_layers.png", f"{k}. brightest voxel / layer energy",
                            f"$E_{{({k})}} / E_{{layer}}$", labels)
            figs.append({"file": f"brightest{k}_layers.png",
                         "caption": f"energy of the {k}. brightest voxel over the layer energy, per layer",
                         "wide": True})

    if cls_results:
        figs = section("Classifier weights")
        edges = np.linspace(-3, 3, 61)
        for kind, res in cls_results.items():
            lw_real = np.clip(np.log10(res.weights("real")), -2.999, 2.999)
            lw_gen = np.clip(np.log10(res.weights("gen")), -2.999, 2.999)
            comparison_plot(lw_real, lw_gen, folder / f"weights_{kind}.png", r"$\log_{10} w$, $w = C / (1 - C)$",
                            edges=edges, reference_label=f"{labels[0]} (test)",
                            generated_label=f"{labels[1]} (test)", logy=True,
                            title=f"{CLASSIFIER_TITLES[kind]}: AUC {res.value:.3f}")
            figs.append({"file": f"weights_{kind}.png",
                         "caption": f"classifier weights of the test showers, {CLASSIFIER_TITLES[kind]} classifier "
                                    f"(raw outputs; values beyond ±3 in the edge bins)"})

    figs = section("Average shower")
    average_shower_plot(mean_real, mean_gen, geo, folder / "average_shower.png", labels)
    figs.append({"file": "average_shower.png", "caption": "average shower per layer", "wide": True})

    if grid is not None:
        from hepgen.metrics.grid import (CORRELATION_LABELS, MIP_MEV, correlation_matrix, energy_bin_edges,
                                         mu90_sigma90, per_energy_mu90_sigma90)

        g_real, g_gen = grid
        figs = section("Grid observables")
        s = seps["grid_hit_energy"]
        separation_plot(s, folder / "grid_hit_energy.png", "hit energy [MeV]", labels, logx=True, logy=True,
                        vlines=[(MIP_MEV, "MIP")],
                        title=f"hits > {g_real.hit_cut:g} MeV")
        figs.append({"file": "grid_hit_energy.png", "caption": f"hit energy spectrum, MIP at {MIP_MEV} MeV "
                                                               f"(separation power {s.value:.4f})"})
        texts = {"n_hits": ("number of hits", "$n_{hits}$"), "e_vis": ("visible energy", "$E_{vis}$ [MeV]"),
                 "cog_x": ("centre of gravity x", "cog x [mm]"), "cog_y": ("centre of gravity y", "cog y [mm]"),
                 "cog_z": ("centre of gravity z", "cog z [layer]")}
        for name, (title, xlabel) in texts.items():
            s = seps[f"grid_{name}"]
            extra = ""
            if name in ("n_hits", "e_vis"):
                mr, sr = mu90_sigma90(getattr(g_real, name))
                mg, sg = mu90_sigma90(getattr(g_gen, name))
                extra = f"; μ90 {mr:.4g} / {mg:.4g}, σ90 {sr:.3g} / {sg:.3g}"
            comparison_plot(g_real.scalars()[name], g_gen.scalars()[name], folder / f"grid_{name}.png", xlabel,
                            edges=s.edges, reference_label=labels[0], generated_label=labels[1],
                            title=f"sep. power {s.value:.4f}")
            figs.append({"file": f"grid_{name}.png", "caption": f"{title} (separation power {s.value:.4f}{extra})"})
        edges = energy_bin_edges(g_real.e_inc)
        binned = {label: per_energy_mu90_sigma90(getattr(g_real, name), g_real.e_inc, getattr(g_gen, name),
                                                 g_gen.e_inc, edges)
                  for name, label in (("response", r"$E_{vis}/E_{inc}$"), ("n_hits", r"$n_{hits}$"))}
        energy_bins_plot(binned, folder / "grid_per_energy.png", labels)
        figs.append({"file": "grid_per_energy.png", "wide": True,
                     "caption": "response E_vis / E_inc and number of hits per incident-energy bin: mu90 and "
                                "the relative width sigma90 / mu90 (seed 001 Figs. 6.9, 7.11)"})
        m_real, e_real = _profile(g_real.longitudinal)
        m_gen, e_gen = _profile(g_gen.longitudinal)
        step_ratio_plot(np.arange(len(m_real) + 1) - 0.5, m_real, m_gen, folder / "grid_longitudinal.png",
                        "layer", "mean energy [MeV]", e_real, e_gen, labels, logy=True)
        figs.append({"file": "grid_longitudinal.png", "caption": "longitudinal profile of the hits"})
        m_real, e_real = _profile(g_real.radial)
        m_gen, e_gen = _profile(g_gen.radial)
        last = int(np.nonzero(m_real + m_gen)[0].max()) + 2 if (m_real + m_gen).any() else len(m_real)
        step_ratio_plot(g_real.radial_edges[:last + 1], m_real[:last], m_gen[:last], folder / "grid_radial.png",
                        "distance from the centre of gravity [mm]", "mean energy [MeV]",
                        e_real[:last], e_gen[:last], labels, logy=True)
        figs.append({"file": "grid_radial.png", "caption": "radial profile around the shower's centre of gravity"})
        names = list(g_real.correlation_inputs())
        correlation_plot([CORRELATION_LABELS[n] for n in names], correlation_matrix(g_real.correlation_inputs()),
                         correlation_matrix(g_gen.correlation_inputs()), folder / "grid_correlations.png", labels)
        figs.append({"file": "grid_correlations.png", "caption": "correlation matrices and their difference",
                     "wide": True})
    return sections
