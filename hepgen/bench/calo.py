"""``hepgen bench calo``: calorimeter models against a fresh reference sample.

For each model (shipped name or run folder): sample as many showers as the reference
sample holds (default 10k), evaluate them with the CaloChallenge-style evaluation
(:func:`hepgen.evaluate.calo.evaluate_calo`: AUC low/high, FPD/KPD, separation powers)
under both protocols -- hepgen's own and ``calochallenge``, the recipe of the challenge's
``evaluate.py`` whose numbers compare with the published table --, time the sampling at
batch 1, 100 and 10000 on this CPU, count parameters. Adds the truth-floor row (a second
reference sample vs the first, under both protocols), the reference simulator's own time
per shower measured in the same run, and, for context, the published CaloChallenge rows
for the same dataset (``results_summary.csv``; Geant4 there, not our stand-in).
Writes ``calo_bench.md`` and ``calo_bench.json`` (``calo_bench_GEOMETRY.*`` for geometries
other than ds2); a report against the same reference sample is extended, not replaced: its
floor and the rows of models not named again are kept.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from hepgen.data.calo import read_incident_energies, shower_file_info, write_showers
from hepgen.evaluate.calo import evaluate_calo
from hepgen.models.registry import load_model

DATASET_OF = {"ds1-photons": "ds1_photons", "ds1-pions": "ds1_pions", "ds2": "ds2", "ds3": "ds3"}
PUBLISHED = Path(__file__).with_name("results_summary.csv")


#: per-shower times of seed 001 for context (one core of a Xeon E5-2640 v4; GPU V100 / A100):
#: Table 6.1 (photons, 10-100 GeV) and Table 7.1 (pions); Geant4 there, our stand-in here
SEED_TIMES = {
    "ild-photons": [("Geant4 (CPU)", 4082.0), ("WGAN (CPU)", 57.99), ("BIB-AE (CPU)", 418.04),
                    ("WGAN (GPU)", 3.25), ("BIB-AE (GPU)", 1.42)],
    "ild-pions": [("Geant4 (CPU)", 2684.0), ("WGAN (CPU)", 47.923), ("BIB-AE (CPU)", 350.82),
                  ("WGAN (GPU)", 0.264), ("BIB-AE (GPU)", 2.051)],
}


def published_rows(geometry: str) -> list[dict]:
    """The final CaloChallenge table rows for ``geometry`` (Krause et al., arXiv:2410.21611)."""
    if geometry not in DATASET_OF or not PUBLISHED.is_file():
        return []
    with PUBLISHED.open() as f:
        return [r for r in csv.DictReader(f) if r["dataset"] == DATASET_OF[geometry]]


def _parameters(surrogate) -> int:
    """Parameters of a calorimeter or grid surrogate (a property of the one, a method of the other)."""
    n = surrogate.num_parameters
    return int(n() if callable(n) else n)


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


def _fmt_dev(m: dict, name: str, stat: str) -> str:
    """The largest per-bin deviation of ``stat`` of grid observable ``name`` with the E_inc
    of its bin, e.g. ``0.0757 (at 95 GeV)``."""
    key = f"grid_{name}_{stat}_per_energy_max_dev"
    if key not in m:
        return "–"
    at = m.get("grid_per_energy", {}).get(name, {}).get(f"{stat}_max_dev_e_inc")
    return f"{m[key]['value']:.4f}" + (f" (at {at / 1e3:.0f} GeV)" if at is not None else "")


def _fmt_scaled(m: dict, key: str, scale: float = 1e3, digits: int = 3) -> str:
    """``value x scale ± error x scale`` (FPD/KPD of the published table are x 1e3)."""
    if key not in m:
        return "–"
    return f"{scale * m[key]['value']:.{digits}f} ± {scale * m[key]['error']:.{digits}f}"


def _previous(path: Path, results: dict) -> dict:
    """An earlier report in ``path`` made against the same reference sample, else {}."""
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return {}
    same = all(old.get(k) == results[k] for k in ("geometry", "reference", "num_showers", "recipes"))
    return old if same else {}


def _protocol_metrics(r: dict, protocol: str) -> dict | None:
    """A row's metrics of a protocol (hepgen's under ``metrics``, older reports have only those)."""
    return r.get("metrics") if protocol == "hepgen" else r.get(f"metrics_{protocol}")


def bench_calo(models: list[str], reference: Path, floor: Path | None, out: Path, work: Path,
               classifier_epochs: int = 10, classifier_runs: int = 2, batches=(1, 100, 10_000),
               solver: str | None = None, steps: int | None = None, classifier_options: dict | None = None,
               max_batch_hits: int = 5_000_000, protocols=("hepgen", "calochallenge"),
               calochallenge_epochs: int = 50, calochallenge_options: dict | None = None, echo=print) -> dict:
    """See the module docstring. hepgen's protocol trains its classifiers on batches of 200 at
    lr 1e-3 for ``classifier_epochs`` (10): as many updates as the challenge's 50 epochs of
    batch 1000 at 10k showers, at a fifth of the compute. The calochallenge protocol keeps
    the challenge's recipe (batch 1000, lr 2e-4) for ``calochallenge_epochs`` (50), with
    ``calochallenge_options`` on top. Batch sizes whose hit clouds would exceed
    ``max_batch_hits`` points (mdma-calo at batch 10000) are not timed on this CPU; grid models
    are timed at batches of at most 1000 (3D convolutions on 10000 ILD grids need tens of GB)."""
    from hepgen.errors import OptionError
    from hepgen.evaluate.calo import PROTOCOLS

    protocols = tuple(dict.fromkeys(protocols))
    if shower_file_info(reference)[1].kind == "grid":  # the challenge's recipe is for its own geometries
        protocols = tuple(p for p in protocols if p != "calochallenge") or ("hepgen",)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise OptionError(f"--protocol: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    num_showers, geo = shower_file_info(reference)
    if geo.kind == "grid":  # a batch of 10000 ILD grids does not fit this CPU's memory: time 1000
        batches = tuple(min(int(b), 1000) for b in batches)
    energies = read_incident_energies(reference).astype(np.float32)  # as the reference sample holds them
    geometry = geo.name
    results: dict = {"geometry": geometry, "reference": str(reference), "num_showers": num_showers, "models": {},
                     "floor_file": str(floor) if floor is not None else None}
    # the classifier recipes are part of what the rows mean: rows of another recipe are not kept
    results["recipes"] = json.loads(json.dumps({
        "hepgen": {"epochs": classifier_epochs, "runs": classifier_runs, **(classifier_options or {})},
        "calochallenge": {"epochs": calochallenge_epochs, "runs": classifier_runs, **(calochallenge_options or {})}}))
    stem = "calo_bench" if geometry == "ds2" else f"calo_bench_{geometry}"
    previous = _previous(out / f"{stem}.json", results)
    if previous:  # same reference: keep the floor and the rows of models not re-run
        results["models"] = {k: v for k, v in previous.get("models", {}).items() if k not in models}
        for key in ("floor", "floor_calochallenge", "reference_ms_per_shower"):
            if key in previous:
                results[key] = previous[key]
    common = dict(classifier_runs=classifier_runs, plots=False, echo=lambda *a: None, progress=False)
    kw = {
        "hepgen": dict(common, protocol="hepgen", classifier_epochs=classifier_epochs,
                       classifier_options=classifier_options or {"batch_size": 200, "lr": 1e-3}),
        "calochallenge": dict(common, protocol="calochallenge", classifier_epochs=calochallenge_epochs,
                              classifier_options=calochallenge_options or {}),
    }
    floor_key = {"hepgen": "floor", "calochallenge": "floor_calochallenge"}

    def write() -> list[str]:
        """(Re)write the report with what is done so far, so an interrupted run keeps its rows."""
        md = [f"# Calorimeter models on {geometry}: {num_showers} generated vs {num_showers} reference showers", "",
              "Reference: hepgen's parametrised simulator (a stand-in for Geant4). Times on this CPU.", "",
              "## hepgen's protocol", "",
              f"Classifiers: {classifier_epochs} epochs of batch 200 at lr 1e-3, standardised inputs, epoch of "
              "lowest validation loss, raw AUC; FPD/KPD on the 14-style high-level features; no voxel cut.", "",
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
        if "calochallenge" in protocols or "floor_calochallenge" in results:
            md += ["", "## CaloChallenge protocol (compare with the published rows below)", "",
                   f"The challenge's evaluate.py recipe: voxel cut, the 2 + 4 L + 4 L_alpha high-level vector, raw "
                   f"classifier inputs, {calochallenge_epochs} epochs of batch 1000 at lr 2e-4, epoch of best "
                   f"validation accuracy, AUC after isotonic calibration; FPD/KPD x 1e3 as in the table.", "",
                   "| model | AUC low | AUC high | FPD×1e3 | KPD×1e3 | max sep. E_tot/E_inc per energy |",
                   "|---|---|---|---|---|---|"]
            rows = [("truth floor (reference vs reference)", results.get("floor_calochallenge"))]
            rows += [(name, _protocol_metrics(r, "calochallenge")) for name, r in results["models"].items()]
            for name, m in rows:
                if m is None:
                    continue
                md.append(f"| {name} | {_fmt(m, 'auc_low')} | {_fmt(m, 'auc_high')} | {_fmt_scaled(m, 'fpd')} | "
                          f"{_fmt_scaled(m, 'kpd')} | {_fmt(m, 'per_energy_sep_max', 4)} |")
        if geo.kind == "grid":
            md += ["", "## Grid observables (seed 001 ch. 6-7)", "",
                   "Per incident-energy bin (10 bins of E_inc): the largest |gen / ref - 1| of mu90 and sigma90 "
                   "of the visible energy (issue target: 1 % and 10 %), and of the response E_vis / E_inc, which "
                   "takes out the bin's energy mix (a second reference sample has other energies, the model the "
                   "reference's own); in brackets the bin's E_inc; the hit-energy spectrum's separation power "
                   "(target < 0.05). The evaluation report of each model plots every bin (grid_per_energy.png).", "",
                   "| model | E_vis mu90 max dev | E_vis sigma90 max dev | response mu90 max dev | "
                   "response sigma90 max dev | n_hits mu90 max dev | sep. hit spectrum | "
                   + " | ".join(f"ms/shower b={b}" for b in batches) + " | speed-up vs stand-in (b=100) |",
                   "|---" * (8 + len(batches)) + "|"]
            grid_rows = [("truth floor (reference vs reference)", results.get("floor"), None)]
            grid_rows += [(name, r["metrics"], r["ms_per_shower"]) for name, r in results["models"].items()]
            for name, m, t in grid_rows:
                if not m:
                    continue
                times = (" | ".join(f"{t.get(str(b), float('nan')):.2f}" for b in batches)
                         + f" | {results['reference_ms_per_shower'] / t.get('100', float('nan')):.1f}x"
                         if t else " | ".join("–" for _ in batches) + " | –")
                md.append(f"| {name} | {_fmt_dev(m, 'e_vis', 'mu90')} | {_fmt_dev(m, 'e_vis', 'sigma90')} | "
                          f"{_fmt_dev(m, 'response', 'mu90')} | {_fmt_dev(m, 'response', 'sigma90')} | "
                          f"{_fmt_dev(m, 'n_hits', 'mu90')} | "
                          f"{_fmt(m, 'sep_grid_hit_energy', 4)} | {times} |")
            md += ["", "Seed 001's per-shower times for context (Tables 6.1, 7.1; Geant4 on a Xeon E5-2640 v4 core, "
                   "GPUs V100 / A100; not this machine):", "", "| simulator | ms per shower |", "|---|---|"]
            md += [f"| {who} | {ms:g} |" for who, ms in SEED_TIMES.get(geometry, [])]
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

    if floor is not None:
        for protocol in protocols:
            if floor_key[protocol] not in results:
                echo(f"truth floor ({protocol} protocol): {floor} vs {reference} ...")
                ev = evaluate_calo(reference, floor, work / f"floor_{protocol}", **kw[protocol])
                results[floor_key[protocol]] = ev.metrics
    if "reference_ms_per_shower" not in results:
        echo(f"reference simulator ({geometry}) on one core ...")
        results["reference_ms_per_shower"] = time_reference(geometry)
    write()
    for name in models:
        surrogate = load_model(name)
        if surrogate.cfg["geometry"] != geometry:
            echo(f"{name}: geometry {surrogate.cfg['geometry']} differs from the reference ({geometry}); skipped")
            continue
        echo(f"{name}: sampling {num_showers} showers at batch 100 ...")
        start = time.perf_counter()
        gen = surrogate.sample(num_showers, seed=1, energies=energies, batch_size=100, method=solver, steps=steps)
        main_ms = 1e3 * (time.perf_counter() - start) / num_showers
        path = work / f"{name.replace('/', '_')}.h5"
        write_showers(gen, path)
        hits = float((gen.showers > 0).sum(1).max())
        del gen
        row = {}
        for protocol in protocols:
            echo(f"{name}: evaluating ({protocol} protocol) ...")
            ev = evaluate_calo(reference, path, work / f"{name.replace('/', '_')}_{protocol}", **kw[protocol])
            row["metrics" if protocol == "hepgen" else f"metrics_{protocol}"] = ev.metrics
        timing = {"100": main_ms}
        results["models"][name] = {"metrics": {}, **row, "ms_per_shower": timing,
                                   "parameters": _parameters(surrogate),
                                   "sampler": {"method": solver or surrogate.cfg.get("sampler", {}).get("method"),
                                               "steps": steps or surrogate.cfg.get("sampler", {}).get("steps")}}
        write()  # the evaluation is kept whatever the timing below does
        for b in batches:
            if str(b) in timing:
                continue
            if surrogate.cfg["model"] == "mdma-calo" and b * hits > max_batch_hits:
                echo(f"{name}: batch {b} x up to {hits:.0f} hits does not fit this CPU's memory; not timed")
                continue
            echo(f"{name}: timing at batch {b} ...")
            timing[str(b)] = time_model(surrogate, b, 20 if b == 1 else b, method=solver, steps=steps)
        write()
    md = write()
    echo("\n".join(md))
    return results


__all__ = ["SEED_TIMES", "bench_calo", "published_rows", "time_model", "time_reference"]
