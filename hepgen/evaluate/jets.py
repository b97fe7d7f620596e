"""``hepgen evaluate jets``: generated vs reference jets -> metrics.json, plots, report.html.

The output folder is filled only after every metric and plot has been made (in a
temporary sibling folder), so a failing run never leaves half a report or spoils an
earlier one.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepgen.data.atomic import atomic_folder
from hepgen.data.jetnet import JetSample, read_jets
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.metrics.efp import FPD_SET, W1EFP_SET, EFPCalculator
from hepgen.metrics.jets import SCALES, JetFeatures, jet_metrics, relative_mass

#: (key, column label) in the order of the thesis tables.
TABLE_COLUMNS = (
    ("w1m", "W1M ×10³"),
    ("w1p", "W1P ×10³"),
    ("w1efp", "W1EFP ×10⁵"),
    ("kpd", "KPD ×10⁴"),
    ("fpd", "FPD ×10⁴"),
)


@dataclass
class JetEvaluation:
    metrics: dict[str, dict[str, float]]
    truth_floor: dict[str, dict[str, float]] | None
    out_dir: Path

    @property
    def report(self) -> Path:
        return self.out_dir / "report.html"


def format_row(metrics: dict[str, dict[str, float]]) -> list[str]:
    """Metric cells 'value ± error' in the thesis' scaled units."""
    cells = []
    for key, _ in TABLE_COLUMNS:
        s = SCALES[key]
        v, e = metrics[key]["value"] * s, metrics[key]["error"] * s
        cells.append(f"{v:.3g} ± {e:.2g}")
    return cells


def format_table(rows: list[tuple[str, dict]]) -> str:
    """Plain-text table of metric rows in scaled units."""
    header = ["sample"] + [label for _, label in TABLE_COLUMNS]
    body = [[name] + format_row(m) for name, m in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load(path: Path, role: str, num_particles: int | None = None) -> JetSample:
    try:
        return read_jets(path, num_particles=num_particles)
    except InputFileError as exc:
        raise InputFileError(f"--{role}: {exc}") from None
    except (InvalidDataError, OptionError) as exc:
        raise type(exc)(f"--{role}: {exc}") from None


def _jet_observables(features: JetFeatures, efp_names: list[str], efp_cols: list[int]) -> dict[str, np.ndarray]:
    p = features.particles.astype(np.float64)
    pt, phi = p[..., 2], p[..., 1]
    obs = {
        "mass": relative_mass(p),
        "pt": np.hypot((pt * np.cos(phi)).sum(-1), (pt * np.sin(phi)).sum(-1)),
        "multiplicity": features.mask.sum(-1),
        "etarel": p[..., 0][features.mask],
        "phirel": p[..., 1][features.mask],
        "ptrel": p[..., 2][features.mask],
        "lead_ptrel": p[:, 0, 2],
    }
    for name, col in zip(efp_names, efp_cols):
        obs[name] = features.efps[:, col]
    return obs


def _plots(real: JetFeatures, gen: JetFeatures, folder: Path, calc: EFPCalculator, labels) -> list[dict]:
    from hepgen.report.plots import comparison_plot

    cols = calc.columns_of(EFPCalculator(*W1EFP_SET))
    efp_names = [f"efp_{i}" for i in range(len(cols))]
    o_real = _jet_observables(real, efp_names, cols)
    o_gen = _jet_observables(gen, efp_names, cols)
    num_p = real.particles.shape[1]
    specs = [
        ("mass", "relative jet mass $m_{jet}/p_{T,jet}$", "relative jet mass", {}),
        ("pt", "relative jet $p_T$ (sum of particles)", "relative jet pT (sum of particles)", {}),
        ("multiplicity", "particle multiplicity", "particle multiplicity",
         {"edges": np.arange(-0.5, num_p + 1.5, max(1, num_p // 50)), "logy": True}),
        ("etarel", r"particle $\eta^{rel}$", "particle eta_rel", {"logy": True}),
        ("phirel", r"particle $\phi^{rel}$", "particle phi_rel", {"logy": True}),
        ("ptrel", r"particle $p_T^{rel}$", "particle pT_rel", {"logx": True, "logy": True}),
        ("lead_ptrel", r"leading particle $p_T^{rel}$", "leading particle pT_rel", {}),
    ] + [(n, f"EFP n=4 d=4 #{i} (W1EFP set)", f"EFP n=4 d=4 #{i} (W1EFP set)", {"logx": True})
         for i, n in enumerate(efp_names)]
    figures = []
    for name, xlabel, caption, kw in specs:
        file = f"{name}.png"
        comparison_plot(
            o_real[name], o_gen[name], folder / file, xlabel,
            reference_label=labels[0], generated_label=labels[1], **kw,
        )
        figures.append({"file": file, "caption": caption})
    return figures


def evaluate_jets(
    real_path: str | os.PathLike,
    gen_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    truth_floor_path: str | os.PathLike | None = None,
    seed: int = 0,
    num_eval_samples: int = 50_000,
    num_particles: int | None = None,
    labels: tuple[str, str] = ("reference", "generated"),
    plots: bool = True,
    echo=print,
) -> JetEvaluation:
    """Compare generated jets with reference jets and write the report folder ``out_dir``.

    ``num_particles`` truncates every sample to its P hardest particles first.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out: {out_dir} exists and is not a folder")
    if not out_dir.parent.exists():
        raise InputFileError(f"--out: parent folder {out_dir.parent} does not exist")
    real = _load(Path(real_path), "real", num_particles)
    gen = _load(Path(gen_path), "gen", num_particles)
    floor = _load(Path(truth_floor_path), "truth-floor", num_particles) if truth_floor_path else None
    for other, role in ((gen, "gen"), (floor, "truth-floor")):
        if other is not None and other.num_particles != real.num_particles:
            raise InvalidDataError(
                f"--{role}: {other.num_particles} particles per jet but --real has {real.num_particles}; "
                "compare samples with the same number of particles"
            )

    calc = EFPCalculator(*FPD_SET, progress=True)
    echo(f"computing EFPs of {len(real)} + {len(gen)}{f' + {len(floor)}' if floor else ''} jets ...")
    f_real = JetFeatures.from_particle_features(real.particle_features, calc)
    f_gen = JetFeatures.from_particle_features(gen.particle_features, calc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics = jet_metrics(f_real, f_gen, seed=seed, num_eval_samples=num_eval_samples)
        floor_metrics = None
        if floor is not None:
            f_floor = JetFeatures.from_particle_features(floor.particle_features, calc)
            floor_metrics = jet_metrics(f_real, f_floor, seed=seed, num_eval_samples=num_eval_samples)

    rows = [(f"{labels[1]} vs {labels[0]}", metrics)]
    if floor_metrics:
        rows.append(("truth floor", floor_metrics))
    table = format_table(rows)
    small = min(len(real), len(gen)) < num_eval_samples
    note = (
        "Metrics as in jetnet.evaluation.gen_metrics: W1s over 5 bootstraps of "
        f"{num_eval_samples} jets, W1P/W1EFP by the inverse-variance weighted mean, FPD extrapolated "
        "to infinite N, KPD median of 10 batches of 5000."
        + (" Samples are smaller than the recommended 50k: bootstraps resample with replacement." if small else "")
    )

    with atomic_folder(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if floor_metrics:
            (tmp / "truth_floor.json").write_text(json.dumps(floor_metrics, indent=2) + "\n")
        figures = _plots(f_real, f_gen, tmp, calc, labels) if plots else []
        report_rows = [{"name": n, "cells": format_row(m)} for n, m in rows]
        if floor_metrics:
            ratio = []
            for key, _ in TABLE_COLUMNS:
                f = floor_metrics[key]["value"]
                ratio.append(f"{metrics[key]['value'] / f:.2f}" if f > 0 else "–")
            report_rows.append({"name": "ratio to floor", "cells": ratio})
        from hepgen.report.html import render_report

        render_report(
            tmp / "report.html",
            title=f"Jets: {Path(gen_path).name} vs {Path(real_path).name}",
            real=str(real_path), gen=str(gen_path), n_real=len(real), n_gen=len(gen),
            floor_file=str(truth_floor_path) if floor else None, n_floor=len(floor) if floor else 0,
            columns=[{"label": label} for _, label in TABLE_COLUMNS],
            rows=report_rows, metric_note=note,
            details=[(k, v) for k, v in metrics.items() if k not in SCALES],
            figures=figures,
        )
    echo(table)
    return JetEvaluation(metrics, floor_metrics, out_dir)
