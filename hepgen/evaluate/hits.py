"""``hepgen evaluate hits``: generated vs reference hit clouds, with the truth floor.

Writes ``metrics.json`` (``w1_total_energy``, ``emd``, ``w1_multiplicity``, each
``{"value", "error"}``), ``truth_floor.json`` when a second reference is given, plots of
the total energy, multiplicity and the eta / phi / E marginals of the hits with ratio
panels, and ``report.html``. Output appears only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path


from hepgen.data.hits import read_hits
from hepgen.data.atomic import atomic_folder
from hepgen.errors import InputFileError
from hepgen.evaluate import Evaluation
from hepgen.metrics.hits import hit_metrics, total_energy

COLUMNS = (("w1_total_energy", "W1 total E [GeV]"), ("emd", "EMD [GeV]"), ("w1_multiplicity", "W1 hits"))


def _row(m: dict) -> list[str]:
    return [f"{m[k]['value']:.3g}" + (f" ± {m[k]['error']:.2g}" if m[k]["error"] else "") for k, _ in COLUMNS]


def evaluate_hits(real_path, gen_path, out_dir, truth_floor_path=None, num_pairs: int = 2000,
                  labels=("reference", "generated"), echo=print) -> Evaluation:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(f"--out: {out_dir} exists and is not a folder")
    if not out_dir.parent.exists():
        raise InputFileError(f"--out: parent folder {out_dir.parent} does not exist")
    real, gen = read_hits(real_path), read_hits(gen_path)
    floor = read_hits(truth_floor_path) if truth_floor_path else None
    echo(f"EMD of {min(num_pairs, len(real), len(gen))} pairs of clouds ...")
    metrics = hit_metrics(real.hits, real.mask, gen.hits, gen.mask, num_pairs)
    floor_metrics = hit_metrics(real.hits, real.mask, floor.hits, floor.mask, num_pairs) if floor else None
    with atomic_folder(out_dir) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if floor_metrics:
            (tmp / "truth_floor.json").write_text(json.dumps(floor_metrics, indent=2) + "\n")
        from hepgen.report.html import render_report
        from hepgen.report.plots import comparison_plot

        observables = {
            "total_energy": (total_energy(real.hits, real.mask), total_energy(gen.hits, gen.mask), "total hit energy [GeV]", False),
            "multiplicity": (real.multiplicity, gen.multiplicity, "hits per jet", False),
            "hit_eta": (real.hits[..., 0][real.mask], gen.hits[..., 0][gen.mask], r"hit $\eta_{rel}$", False),
            "hit_phi": (real.hits[..., 1][real.mask], gen.hits[..., 1][gen.mask], r"hit $\phi_{rel}$", False),
            "hit_energy": (real.hits[..., 2][real.mask], gen.hits[..., 2][gen.mask], "hit energy [GeV]", True),
        }
        figures = []
        for name, (a, b, xlabel, logx) in observables.items():
            comparison_plot(a, b, tmp / f"{name}.png", xlabel, reference_label=labels[0], generated_label=labels[1],
                            logx=logx, logy=logx)
            figures.append({"file": f"{name}.png", "caption": xlabel})
        rows = [{"name": f"{labels[1]} vs {labels[0]}", "cells": _row(metrics)}]
        if floor_metrics:
            rows.append({"name": "truth floor", "cells": _row(floor_metrics)})
            rows.append({"name": "ratio to floor", "cells": [
                f"{metrics[k]['value'] / floor_metrics[k]['value']:.2f}" if floor_metrics[k]["value"] > 0 else "–"
                for k, _ in COLUMNS]})
        render_report(tmp / "report.html", title=f"Hit clouds: {Path(gen_path).name} vs {Path(real_path).name}",
                      real=str(real_path), gen=str(gen_path), n_real=len(real), n_gen=len(gen),
                      floor_file=str(truth_floor_path) if floor else None, n_floor=len(floor) if floor else 0,
                      columns=[{"label": label} for _, label in COLUMNS], rows=rows,
                      metric_note=f"EMD (energyflow, exact, R = 1) averaged over {num_pairs} pairs of clouds "
                                  "(± its spread); W1 of the total hit energy and of the hit multiplicity.",
                      details=[], figures=figures)
    for r in rows:
        echo(f"{r['name']:>22}: " + ", ".join(f"{label} {c}" for (_, label), c in zip(COLUMNS, r["cells"])))
    return Evaluation(metrics, out_dir)
