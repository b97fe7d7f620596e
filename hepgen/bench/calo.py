"""``hepgen bench calo``: calorimeter models against a fresh reference sample.

For each model (shipped name or run folder): sample as many showers as the reference
sample holds (default 10k), evaluate them with the CaloChallenge-style evaluation
(:func:`hepgen.evaluate.calo.evaluate_calo`: AUC low/high, FPD/KPD, separation powers),
time the sampling at batch 1, 100 and 10000 on this CPU, count parameters. Adds the
truth-floor row (a second reference sample vs the first), the reference simulator's own
time per shower measured in the same run, and, for context, the published CaloChallenge
rows for the same dataset (``results_summary.csv``; Geant4 there, not our stand-in).
Writes ``calo_bench.md`` and ``calo_bench.json`` (``calo_bench_GEOMETRY.*`` for geometries
other than ds2); a report against the same reference sample is extended, not replaced: its
floor and the rows of models not named again are kept.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path


from hepgen.data.calo import read_showers, write_showers
from hepgen.evaluate.calo import evaluate_calo
from hepgen.models.registry import load_model

DATASET_OF = {"ds1-photons": "ds1_photons", "ds1-pions": "ds1_pions", "ds2": "ds2", "ds3": "ds3"}
PUBLISHED = Path(__file__).with_name("results_summary.csv")


def published_rows(geometry: str) -> list[dict]:
    """The final CaloChallenge table rows for ``geometry`` (Krause et al., arXiv:2410.21611)."""
    if geometry not in DATASET_OF or not PUBLISHED.is_file():
        return []
    with PUBLISHED.open() as f:
        return [r for r in csv.DictReader(f) if r["dataset"] == DATASET_OF[geometry]]


def time_model(surrogate, batch: int, repeats_showers: int, **kw) -> float:
    """Milliseconds per shower at batch size ``batch`` (small batches after one warm-up batch)."""
    if batch <= 100:
        surrogate.sample(batch, seed=999, batch_size=batch, progress=False, **kw)
    n = max(batch, repeats_showers)
    start = time.perf_counter()
    surrogate.sample(n, seed=998, batch_size=batch, progress=False, **kw)
    return 1e3 * (time.perf_counter() - start) / n


def time_reference(geometry: str, num: int = 200) -> float:
    """Milliseconds per shower of the parametrised simulator on one core."""
    from hepgen.simulate.showers import simulate_chunk

    simulate_chunk(geometry, 10, 1)
    start = time.perf_counter()
    simulate_chunk(geometry, num, 2)
    return 1e3 * (time.perf_counter() - start) / num


def _fmt(m: dict, key: str, digits: int = 3) -> str:
    if key not in m:
        return "–"
    return f"{m[key]['value']:.{digits}f} ± {m[key]['error']:.{digits}f}"


def _previous(path: Path, results: dict) -> dict:
    """An earlier report in ``path`` made against the same reference sample, else {}."""
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return {}
    same = all(old.get(k) == results[k] for k in ("geometry", "reference", "num_showers"))
    return old if same else {}


def bench_calo(models: list[str], reference: Path, floor: Path | None, out: Path, work: Path,
               classifier_epochs: int = 10, classifier_runs: int = 2, batches=(1, 100, 10_000),
               solver: str | None = None, steps: int | None = None, classifier_options: dict | None = None,
               max_batch_hits: int = 5_000_000, echo=print) -> dict:
    """See the module docstring. The classifiers default to batches of 200 at lr 1e-3 for 10
    epochs: as many updates as the challenge's 50 epochs of batch 1000 at 10k showers, at a
    fifth of the compute. Batch sizes whose hit clouds would exceed ``max_batch_hits`` points
    (mdma-calo at batch 10000) are not timed on this CPU."""
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    real = read_showers(reference)
    geometry = real.geometry.name
    results: dict = {"geometry": geometry, "reference": str(reference), "num_showers": len(real), "models": {}}
    stem = "calo_bench" if geometry == "ds2" else f"calo_bench_{geometry}"
    previous = _previous(out / f"{stem}.json", results)
    if previous:  # same reference: keep the floor and the rows of models not re-run
        results["models"] = {k: v for k, v in previous.get("models", {}).items() if k not in models}
        for key in ("floor", "reference_ms_per_shower"):
            if key in previous:
                results[key] = previous[key]
    kw = dict(classifier_epochs=classifier_epochs, classifier_runs=classifier_runs, plots=False, echo=lambda *a: None,
              progress=False, classifier_options=classifier_options or {"batch_size": 200, "lr": 1e-3})

    def write() -> list[str]:
        """(Re)write the report with what is done so far, so an interrupted run keeps its rows."""
        md = [f"# Calorimeter models on {geometry}: {len(real)} generated vs {len(real)} reference showers", "",
              "Reference: hepgen's parametrised simulator (a stand-in for Geant4). Times on this CPU.", "",
              "| model | AUC low | AUC high | FPD | KPD | max sep. power | "
              + " | ".join(f"ms/shower b={b}" for b in batches) + " | parameters |",
              "|---" * (7 + len(batches)) + "|"]
        if "floor" in results:
            m = results["floor"]
            md.append(f"| truth floor (reference vs reference) | {_fmt(m, 'auc_low')} | {_fmt(m, 'auc_high')} | "
                      f"{_fmt(m, 'fpd', 4)} | {_fmt(m, 'kpd', 5)} | {m.get('separation_power_max', {}).get('value', 0):.4f}"
                      f" | {results['reference_ms_per_shower']:.2f} (simulator, 1 core)" + " |" * len(batches))
        for name, r in results["models"].items():
            m, t = r["metrics"], r["ms_per_shower"]
            sampler = " ".join(str(v) for v in r["sampler"].values() if v)
            md.append(f"| {name} {('(' + sampler + ')') if sampler else ''} | {_fmt(m, 'auc_low')} | "
                      f"{_fmt(m, 'auc_high')} | {_fmt(m, 'fpd', 4)} | {_fmt(m, 'kpd', 5)} | "
                      f"{m.get('separation_power_max', {}).get('value', float('nan')):.4f} | "
                      + " | ".join(f"{t.get(str(b), float('nan')):.2f}" for b in batches) + f" | {r['parameters']:,} |")
        rows = published_rows(geometry)
        if rows:
            md += ["", "## Published CaloChallenge rows for context (Geant4 reference; their hardware)", "",
                   "| submission | AUC low | AUC high | FPD×1e3 | CPU ms b=1 | b=100 | b=10000 | parameters |",
                   "|---|---|---|---|---|---|---|---|"]
            for r in rows:
                md.append(f"| {r['submission name']} | {r['binary cls low']} | {r['binary cls high']} | {r['FPD * 1e3']} | "
                          f"{r['time CPU 1']} | {r['time CPU 100']} | {r['time CPU 10000']} | {r['Parameters generation']} |")
        results["published"] = rows
        (out / f"{stem}.md").write_text("\n".join(md) + "\n")
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=float))
        return md

    if floor is not None and "floor" not in results:
        echo(f"truth floor: {floor} vs {reference} ...")
        ev = evaluate_calo(reference, floor, work / "floor", **kw)
        results["floor"] = ev.metrics
    if "reference_ms_per_shower" not in results:
        echo(f"reference simulator ({geometry}) on one core ...")
        results["reference_ms_per_shower"] = time_reference(geometry)
    write()
    for name in models:
        surrogate = load_model(name)
        if surrogate.cfg["geometry"] != geometry:
            echo(f"{name}: geometry {surrogate.cfg['geometry']} differs from the reference ({geometry}); skipped")
            continue
        echo(f"{name}: sampling {len(real)} showers at batch 100 ...")
        start = time.perf_counter()
        gen = surrogate.sample(len(real), seed=1, energies=real.incident_energies[:, 0], batch_size=100,
                               method=solver, steps=steps)
        main_ms = 1e3 * (time.perf_counter() - start) / len(real)
        path = work / f"{name.replace('/', '_')}.h5"
        write_showers(gen, path)
        echo(f"{name}: evaluating ...")
        ev = evaluate_calo(reference, path, work / name.replace("/", "_"), **kw)
        timing = {"100": main_ms}
        hits = float((gen.showers > 0).sum(1).max())
        for b in batches:
            if str(b) in timing:
                continue
            if surrogate.cfg["model"] == "mdma-calo" and b * hits > max_batch_hits:
                echo(f"{name}: batch {b} x up to {hits:.0f} hits does not fit this CPU's memory; not timed")
                continue
            echo(f"{name}: timing at batch {b} ...")
            timing[str(b)] = time_model(surrogate, b, 20 if b == 1 else b, method=solver, steps=steps)
        results["models"][name] = {"metrics": ev.metrics, "ms_per_shower": timing,
                                   "parameters": surrogate.num_parameters,
                                   "sampler": {"method": solver or surrogate.cfg.get("sampler", {}).get("method"),
                                               "steps": steps or surrogate.cfg.get("sampler", {}).get("steps")}}
        write()
    md = write()
    echo("\n".join(md))
    return results


__all__ = ["bench_calo", "published_rows", "time_model", "time_reference"]
