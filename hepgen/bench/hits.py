"""``hepgen bench hits``: hit-cloud models against fresh reference clouds (issue 13 part 2).

For each model (shipped name or run folder) and each sampler (its default, e.g. the
distilled 8-step student, and its undistilled DDIM solve): sample as many clouds as the
reference holds, time the sampling (µs per cloud, this process's threads), and compute
:func:`hepgen.metrics.hits.hit_metrics` (W1 of the total energy, the pair EMD, W1 of the
multiplicity) against the reference. Adds the truth-floor row (a second reference sample
against the first) and the reference producer's own time per jet (Pythia + FastJet + the
ECAL deposit, one worker) measured in the same run, so the speed-up is a ratio on one
machine. Writes ``hits_bench.md`` and ``hits_bench.json`` after every row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hepgen.data.hits import HitSample, read_hits, write_hits
from hepgen.metrics.hits import hit_metrics

KEYS = ("w1_total_energy", "emd", "w1_multiplicity")


def reference_files(data: Path, jet_type: str, num_jets: int, echo=print) -> tuple[Path, Path]:
    """The reference (seed 9001) and floor (seed 9002) clouds of a bench, made when missing."""
    from hepgen.simulate.hits import generate_hits

    data.mkdir(parents=True, exist_ok=True)
    paths = (data / f"{jet_type}_bench_reference_{num_jets}.h5", data / f"{jet_type}_bench_floor_{num_jets}.h5")
    for path, seed in zip(paths, (9001, 9002)):
        if not path.exists():
            echo(f"making {path} ...")
            write_hits(generate_hits(jet_type, num_jets, seed=seed, progress=False), path)
    return paths


def time_reference(jet_type: str, num: int = 200) -> float:
    """Microseconds per hit cloud of the producer on one worker (a warm-up run first)."""
    from hepgen.simulate.hits import generate_hits

    generate_hits(jet_type, 20, seed=1, workers=1, progress=False)
    start = time.perf_counter()
    generate_hits(jet_type, num, seed=2, workers=1, progress=False)
    return (time.perf_counter() - start) / num * 1e6


def _samplers(model, teacher_steps: int) -> list[tuple[str, dict]]:
    default = model.cfg.get("sampler", {})
    method = default.get("method", "ddim")
    steps = model.cfg.get("distilled_steps") if method == "distilled" else default.get("steps")
    rows = [(f"default: {method} {steps}", {})]
    if teacher_steps:
        rows.append((f"ddim {teacher_steps} (undistilled)", {"method": "ddim", "steps": teacher_steps}))
    return rows


def bench_hits(models: list[str], reference: Path, floor: Path, out: Path, num_pairs: int = 1000,
               teacher_steps: int = 64, time_jets: int = 200, echo=print) -> dict:
    """One table: every model and sampler against the clouds of ``reference`` (module docstring)."""
    from hepgen.models.registry import load_model

    out.mkdir(parents=True, exist_ok=True)
    real, second = read_hits(reference), read_hits(floor)
    n = len(real)
    results: dict = {"reference": str(reference), "floor": str(floor), "num_clouds": n, "num_pairs": num_pairs,
                     "rows": []}
    echo(f"truth floor: {floor} vs {reference} ...")
    results["floor_metrics"] = hit_metrics(real.hits, real.mask, second.hits, second.mask, num_pairs)
    jet_type = str(real.attrs.get("jet_type", "t"))
    echo(f"reference producer ({jet_type} jets) on one worker ...")
    results["producer_us_per_cloud"] = time_reference(jet_type, time_jets)
    _write(results, out)
    for name in models:
        model = load_model(name)
        for label, kw in _samplers(model, teacher_steps):
            echo(f"{name}, {label}: sampling {n} clouds ...")
            start = time.perf_counter()
            gen: HitSample = model.sample(n, seed=11, **kw)
            us = (time.perf_counter() - start) / n * 1e6
            metrics = hit_metrics(real.hits, real.mask, gen.hits, gen.mask, num_pairs)
            results["rows"].append({"model": name, "sampler": label, "metrics": metrics, "us_per_cloud": us})
            _write(results, out)
    return results


def _write(results: dict, out: Path) -> None:
    floor = results["floor_metrics"]
    producer = results["producer_us_per_cloud"]

    def cells(m):
        return " | ".join(f"{m[k]['value']:.3g} ({m[k]['value'] / floor[k]['value']:.2f}×)" for k in KEYS)

    md = [f"# Hit-cloud models: {results['num_clouds']} generated vs {results['num_clouds']} reference clouds", "",
          f"Reference: `{results['reference']}` (seed 9001); truth floor: `{results['floor']}` (seed 9002) against "
          f"it. EMD averaged over {results['num_pairs']} pairs; ratios to the floor in brackets. Times on this CPU "
          "in the same run; the producer is Pythia 8 + FastJet + the ECAL deposit on one worker.", "",
          "| model | sampler | W1 total E [GeV] | EMD [GeV] | W1 hits | µs per cloud | × producer |",
          "|---|---|---|---|---|---|---|",
          "| truth floor | – | " + " | ".join(f"{floor[k]['value']:.3g}" for k in KEYS)
          + f" | {producer:.0f} (producer) | 1 |"]
    for r in results["rows"]:
        md.append(f"| {r['model']} | {r['sampler']} | {cells(r['metrics'])} | {r['us_per_cloud']:.0f} | "
                  f"{producer / r['us_per_cloud']:.2f} |")
    (out / "hits_bench.md").write_text("\n".join(md) + "\n")
    (out / "hits_bench.json").write_text(json.dumps(results, indent=2) + "\n")


__all__ = ["bench_hits", "reference_files", "time_reference"]
